// Two fsb backups and an fsb forget --prune run at the same time, several rounds in a row (issue
// #9): every process must succeed (the backups share a lock, prune waits for an exclusive one
// with --retry-lock and they wait for it), and after every round `restic check --read-data`
// passes and every snapshot restores, with restic, equal to the source it was taken from.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/integration/bg_process.h"
#include "tests/integration/integration_util.h"
#include "tests/support/test_util.h"
#include "tests/support/tree_compare.h"
#include "tests/support/tree_gen.h"

namespace fsb::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr int kRounds = 5;
constexpr uint64_t kSeed = 9090;

class PruneConcurrencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(FsbBinary())) << FsbBinary() << " is not built";
    WriteStringToFile(password_, "concurrency\n");
  }

  // Source `who` ("a" or "b") in round r: shared files, files of this source, and files of this
  // round, each state in a directory of its own so that it can be compared after later rounds.
  fs::path MakeState(const std::string& who, int r) {
    const fs::path dir = tmp_.path() / "states" / (who + std::to_string(r));
    fs::create_directories(dir);
    MakeManySmallFiles(dir / "shared", 40, 1);
    MakeManySmallFiles(dir / who, 40, who == "a" ? 2 : 3);
    MakeManySmallFiles(dir / ("round" + std::to_string(r)), 25,
                       1000 + static_cast<uint64_t>(r) * 2 + (who == "a"));
    WriteStringToFile(dir / "big.bin",
                      std::string(AsString(SeededRandomBytes(
                          5000 + static_cast<uint64_t>(r) * 2 + (who == "a"), 700000))));
    return dir;
  }

  std::unique_ptr<BackgroundProcess> Start(std::vector<std::string> args, const std::string& name,
                                           const std::string& cwd = {}) {
    std::vector<std::string> argv = {FsbBinary(), "-r", repo_.string(), "--retry-lock", "3m"};
    argv.insert(argv.end(), args.begin(), args.end());
    return BackgroundProcess::Start(argv, {"FSB_PASSWORD_FILE=" + password_.string()},
                                    tmp_.path() / (name + ".log"), cwd);
  }

  TempDir tmp_;
  fs::path password_ = tmp_.path() / "password";
  fs::path repo_ = tmp_.path() / "repo";
};

TEST_F(PruneConcurrencyTest, TwoBackupsAndAPruneRepeatedly) {
  if (FindProgram("restic").empty()) {
    if (InteropRequired()) FAIL() << "restic is not on PATH but FSB_REQUIRE_INTEROP=1";
    GTEST_SKIP() << "restic is not on PATH";
  }
  RepoCli cli(repo_, password_);
  ASSERT_EQ(cli.Fsb({"init"}).exit_code, 0);
  std::mt19937_64 rng(kSeed);
  std::map<std::string, fs::path> sources;  // "host/tag" → the state that snapshot holds
  for (int r = 0; r < kRounds; r++) {
    SCOPED_TRACE(::testing::Message() << "round " << r << " (seed " << kSeed << ")");
    const fs::path a = MakeState("a", r), b = MakeState("b", r);
    sources["a/r" + std::to_string(r)] = a;
    sources["b/r" + std::to_string(r)] = b;
    // Staggered starts (0-400 ms) so that different rounds interleave differently.
    std::vector<std::pair<std::string, std::unique_ptr<BackgroundProcess>>> procs;
    std::vector<int> order = {0, 1, 2};
    std::shuffle(order.begin(), order.end(), rng);
    for (int which : order) {
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 200));
      const std::string tag = "r" + std::to_string(r);
      if (which == 0) {
        procs.emplace_back(
            "backup a", Start({"backup", "--host", "a", "--tag", tag, "."}, "a" + tag, a.string()));
      } else if (which == 1) {
        procs.emplace_back(
            "backup b", Start({"backup", "--host", "b", "--tag", tag, "."}, "b" + tag, b.string()));
      } else {
        procs.emplace_back(
            "forget --prune",
            Start({"forget", "--group-by", "host", "--keep-last", "2", "--prune"}, "prune" + tag));
      }
    }
    for (auto& [what, p] : procs) {
      ASSERT_NE(p, nullptr);
      const int code = p->Wait(240s);
      ASSERT_EQ(code, 0) << what << " exited " << code << ":\n" << p->Output();
    }
    RunResult check = cli.Restic({"check", "--read-data"});
    ASSERT_EQ(check.exit_code, 0) << Describe(check);
    // Every snapshot there is restores equal to its source.
    RunResult list = cli.Restic({"snapshots", "--json"});
    ASSERT_EQ(list.exit_code, 0) << Describe(list);
    nlohmann::json snaps = nlohmann::json::parse(list.out, nullptr, false);
    ASSERT_TRUE(snaps.is_array()) << list.out;
    EXPECT_GE(snaps.size(), 2u);  // forget keeps the last 2 of each host
    for (const auto& s : snaps) {
      const std::string id = s.value("id", "");
      const std::string key = s.value("hostname", "") + "/" + s["tags"][0].get<std::string>();
      ASSERT_TRUE(sources.count(key)) << key;
      const fs::path target = tmp_.path() / "restore" / (std::to_string(r) + "-" + id.substr(0, 8));
      RunResult res = cli.Restic({"restore", id, "--target", target.string()});
      ASSERT_EQ(res.exit_code, 0) << Describe(res);
      CompareOptions co;
      co.root_metadata = false;
      const std::vector<std::string> diffs = CompareTrees(sources[key], target, co);
      ASSERT_TRUE(diffs.empty()) << "snapshot " << key << " " << id.substr(0, 8) << ":\n"
                                 << JoinDifferences(diffs);
      fs::remove_all(target);
    }
  }
}

}  // namespace
}  // namespace fsb::testing
