// fsb prune against the real restic 0.14 (issue #9):
// - fsb prune on repositories written by restic (v1 and v2) and by fsb: `restic check
//   --read-data` passes and every kept snapshot restores, with restic, equal to its source;
// - restic prune on an fsb repository: fsb check --read-data passes and fsb restores;
// - side by side: after forgetting the same snapshots, fsb prune and restic prune leave the
//   same blobs in the index and print the same statistics.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "repo/id.h"
#include "tests/integration/integration_util.h"
#include "tests/support/test_util.h"
#include "tests/support/tree_compare.h"
#include "tests/support/tree_gen.h"

namespace fsb::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

#define REQUIRE_RESTIC()                                                                  \
  do {                                                                                    \
    if (FindProgram("restic").empty()) {                                                  \
      if (InteropRequired()) FAIL() << "restic is not on PATH but FSB_REQUIRE_INTEROP=1"; \
      GTEST_SKIP() << "restic is not on PATH";                                            \
    }                                                                                     \
  } while (0)

enum class Tool { kFsb, kRestic };

class PruneInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(FsbBinary())) << FsbBinary() << " is not built";
    WriteStringToFile(password_, "prune-interop\n");
  }

  RepoCli Cli(const fs::path& repo) const { return RepoCli(repo, password_); }

  // The source tree of round r, in a directory of its own (kept for the comparisons): files
  // common to every round (deduplicated), files of this round only, and a multi-chunk file of
  // this round only. Backups of two rounds share data; forgetting a round leaves partly used
  // packs behind.
  fs::path MakeRound(int r) {
    const fs::path dir = tmp_.path() / "states" / ("r" + std::to_string(r));
    if (fs::exists(dir)) return dir;
    fs::create_directories(dir);
    MakeManySmallFiles(dir / "common", 60, /*seed=*/1);
    MakeManySmallFiles(dir / ("round" + std::to_string(r)), 30,
                       /*seed=*/100 + static_cast<uint64_t>(r));
    WriteStringToFile(dir / "shared.bin", std::string(AsString(SeededRandomBytes(7, 300000))));
    WriteStringToFile(
        dir / "big.bin",
        std::string(AsString(SeededRandomBytes(1000 + static_cast<uint64_t>(r),
                                               700000 + 1000 * static_cast<size_t>(r)))));
    return dir;
  }

  void Backup(Tool tool, const fs::path& repo, int r) {
    const fs::path dir = MakeRound(r);
    const std::vector<std::string> args = {
        "backup", "--host", "prune-test", "--tag", "r" + std::to_string(r), "."};
    RunResult res = tool == Tool::kFsb ? Cli(repo).Fsb(args, dir.string())
                                       : Cli(repo).Restic(args, dir.string());
    ASSERT_EQ(res.exit_code, 0) << Describe(res);
  }

  // restic snapshots --json: snapshot ID → round (from its tag).
  std::map<std::string, int> Snapshots(const fs::path& repo) {
    RunResult res = Cli(repo).Restic({"snapshots", "--json"});
    EXPECT_EQ(res.exit_code, 0) << Describe(res);
    std::map<std::string, int> out;
    nlohmann::json j = nlohmann::json::parse(res.out, nullptr, false);
    EXPECT_TRUE(j.is_array()) << res.out;
    if (!j.is_array()) return out;
    for (const auto& s : j)
      out[s.value("id", "")] = std::stoi(s["tags"][0].get<std::string>().substr(1));
    return out;
  }

  // Every snapshot restores (with `tool`) equal to the source of its round.
  void ExpectRestoresMatch(Tool tool, const fs::path& repo) {
    for (const auto& [id, round] : Snapshots(repo)) {
      const fs::path target = tmp_.path() / "restore" / id.substr(0, 8);
      const std::vector<std::string> args = {"restore", id, "--target", target.string()};
      RunResult res = tool == Tool::kFsb ? Cli(repo).Fsb(args) : Cli(repo).Restic(args);
      ASSERT_EQ(res.exit_code, 0) << Describe(res);
      CompareOptions co;
      co.root_metadata = false;
      const std::vector<std::string> diffs = CompareTrees(MakeRound(round), target, co);
      EXPECT_TRUE(diffs.empty()) << "snapshot " << id.substr(0, 8) << " (round " << round << "):\n"
                                 << JoinDifferences(diffs);
    }
  }

  void ExpectResticCheckReadData(const fs::path& repo) {
    RunResult res = Cli(repo).Restic({"check", "--read-data"});
    EXPECT_EQ(res.exit_code, 0) << Describe(res);
    EXPECT_THAT(res.out, HasSubstr("no errors were found"));
  }

  // `restic list blobs`, sorted: the blobs the index holds.
  std::vector<std::string> IndexBlobs(const fs::path& repo) {
    RunResult res = Cli(repo).Restic({"list", "blobs"});
    EXPECT_EQ(res.exit_code, 0) << Describe(res);
    std::vector<std::string> lines;
    std::istringstream in(res.out);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) lines.push_back(line);
    }
    std::sort(lines.begin(), lines.end());
    return lines;
  }

  static std::string StatsLines(const std::string& out) {
    std::string keep;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
      for (const char* prefix : {"to repack:", "this removes:", "to delete:", "total prune:",
                                 "remaining:", "unused size after prune:"}) {
        if (line.rfind(prefix, 0) == 0) keep += line + "\n";
      }
    }
    return keep;
  }

  TempDir tmp_;
  fs::path password_ = tmp_.path() / "password";
};

// fsb prune on a repository restic wrote (both format versions); restic restores what is kept.
class FsbPruneOnResticRepository : public PruneInteropTest,
                                   public ::testing::WithParamInterface<int> {};

TEST_P(FsbPruneOnResticRepository, ResticChecksAndRestoresWhatIsKept) {
  REQUIRE_RESTIC();
  const fs::path repo = tmp_.path() / "repo";
  // restic makes the v2 repository, key included; for v1 fsb's init (its key opens in a tenth of
  // the time of restic's calibrated one) and restic everything else.
  const std::vector<std::string> init = {"init", "--repository-version",
                                         std::to_string(GetParam())};
  RunResult res = GetParam() == 2 ? Cli(repo).Restic(init) : Cli(repo).Fsb(init);
  ASSERT_EQ(res.exit_code, 0) << Describe(res);
  for (int r = 0; r < 4; r++) Backup(Tool::kRestic, repo, r);
  res = Cli(repo).Restic({"forget", "--group-by", "host", "--keep-last", "2"});
  ASSERT_EQ(res.exit_code, 0) << Describe(res);
  const std::vector<std::string> before = IndexBlobs(repo);
  res = Cli(repo).Fsb({"prune", "--max-unused", "0"});
  ASSERT_EQ(res.exit_code, 0) << Describe(res);
  EXPECT_THAT(res.out, HasSubstr("repacking packs"));
  EXPECT_THAT(res.out, HasSubstr("done"));
  EXPECT_LT(IndexBlobs(repo).size(), before.size());
  ExpectResticCheckReadData(repo);
  ExpectRestoresMatch(Tool::kRestic, repo);
  EXPECT_EQ(Snapshots(repo).size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Versions, FsbPruneOnResticRepository, ::testing::Values(1, 2),
                         [](const auto& info) { return "v" + std::to_string(info.param); });

TEST_F(PruneInteropTest, ForgetPruneOnFsbRepositoryResticChecksAndRestores) {
  REQUIRE_RESTIC();
  const fs::path repo = tmp_.path() / "repo";
  ASSERT_EQ(Cli(repo).Fsb({"init"}).exit_code, 0);
  for (int r = 0; r < 4; r++) Backup(Tool::kFsb, repo, r);
  RunResult res = Cli(repo).Fsb({"forget", "--group-by", "host", "--keep-last", "2", "--prune"});
  ASSERT_EQ(res.exit_code, 0) << Describe(res);
  EXPECT_THAT(res.out, HasSubstr("2 snapshots have been removed, running prune"));
  EXPECT_THAT(res.out, HasSubstr("total prune:"));
  ExpectResticCheckReadData(repo);
  ExpectRestoresMatch(Tool::kRestic, repo);
  res = Cli(repo).Fsb({"check", "--read-data"});
  EXPECT_EQ(res.exit_code, 0) << Describe(res);
}

TEST_F(PruneInteropTest, ResticPruneOnFsbRepositoryFsbChecksAndRestores) {
  REQUIRE_RESTIC();
  const fs::path repo = tmp_.path() / "repo";
  ASSERT_EQ(Cli(repo).Fsb({"init"}).exit_code, 0);
  for (int r = 0; r < 4; r++) Backup(Tool::kFsb, repo, r);
  RunResult res = Cli(repo).Fsb({"forget", "--group-by", "host", "--keep-last", "2"});
  ASSERT_EQ(res.exit_code, 0) << Describe(res);
  res = Cli(repo).Restic({"prune", "--max-unused", "0"});
  ASSERT_EQ(res.exit_code, 0) << Describe(res);
  EXPECT_THAT(res.out, HasSubstr("repacking packs"));
  res = Cli(repo).Fsb({"check", "--read-data"});
  EXPECT_EQ(res.exit_code, 0) << Describe(res);
  ExpectRestoresMatch(Tool::kFsb, repo);
}

// fsb prune killed (SIGKILL, its lock left behind) where each step would start: restic unlock
// removes the dead process's lock, restic check --read-data accepts what is left, and the next fsb
// prune finishes with the same blobs as an uninterrupted one.
TEST_F(PruneInteropTest, KilledPruneLeavesARepositoryResticAccepts) {
  REQUIRE_RESTIC();
  const fs::path base = tmp_.path() / "base";
  ASSERT_EQ(Cli(base).Fsb({"init"}).exit_code, 0);
  for (int r = 0; r < 4; r++) Backup(Tool::kFsb, base, r);
  ASSERT_EQ(Cli(base).Fsb({"forget", "--group-by", "host", "--keep-last", "2"}).exit_code, 0);
  // A pack no index names, as a backup killed before its index leaves one.
  const std::string orphan = std::string(AsString(SeededRandomBytes(77, 5000)));
  const std::string orphan_id = repo::Id::Hash(AsBytes(orphan)).Hex();
  fs::create_directories(base / "data" / orphan_id.substr(0, 2));
  WriteStringToFile(base / "data" / orphan_id.substr(0, 2) / orphan_id, orphan);

  const fs::path clean = tmp_.path() / "clean";
  CopyTree(base, clean);
  RunResult res = Cli(clean).Fsb({"prune", "--max-unused", "0"});
  ASSERT_EQ(res.exit_code, 0) << Describe(res);
  const std::vector<std::string> expected = IndexBlobs(clean);

  for (const char* phase : {"remove unreferenced packs", "repack", "write index",
                            "remove old index files", "remove packs"}) {
    SCOPED_TRACE(phase);
    const fs::path repo =
        tmp_.path() / ("killed-" + std::to_string(std::hash<std::string>()(phase)));
    CopyTree(base, repo);
    res = RunCommand({FsbBinary(), "-r", repo.string(), "prune", "--max-unused", "0"},
                     {"FSB_PASSWORD_FILE=" + password_.string(),
                      std::string("FSB_TEST_PRUNE_KILL_AT=") + phase});
    ASSERT_NE(res.exit_code, 0) << Describe(res);  // killed
    res = Cli(repo).Restic({"unlock"});
    ASSERT_EQ(res.exit_code, 0) << Describe(res);
    ExpectResticCheckReadData(repo);
    res = Cli(repo).Fsb({"prune", "--max-unused", "0"});
    ASSERT_EQ(res.exit_code, 0) << Describe(res);
    EXPECT_EQ(IndexBlobs(repo), expected);
    res = Cli(repo).Restic({"check"});
    EXPECT_EQ(res.exit_code, 0) << Describe(res);
    EXPECT_THAT(res.out, ::testing::Not(HasSubstr("not referenced in any index")));
  }
}

TEST_F(PruneInteropTest, BadFlagsAreRejectedWithResticsMessages) {
  const fs::path repo = tmp_.path() / "repo";
  ASSERT_EQ(Cli(repo).Fsb({"init"}).exit_code, 0);
  Backup(Tool::kFsb, repo, 0);
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"prune", "--max-unused", "100%"}, "percentage for --max-unused must be below 100%"},
      {{"prune", "--max-unused", "lots"}, "invalid number of bytes \"lots\" for --max-unused"},
      {{"prune", "--max-repack-size", "1.5G"}, "--max-repack-size: invalid size"},
      {{"forget", "--keep-last", "1", "--prune", "--max-unused", "-1%"}, "must be positive"},
      {{"check", "--read-data-subset", "0/5"}, "n/t values must be positive integers"},
      {{"check", "--read-data-subset", "1/300"}, "t must be at most 256"},
      {{"check", "--read-data-subset", "0%"}, "x must be above 0.0% and at most 100.0%"},
      {{"check", "--read-data-subset", "banana"}, "--read-data-subset has invalid value"},
      {{"check", "--read-data", "--read-data-subset", "1/2"}, "cannot be used together"},
  };
  for (const auto& [args, message] : cases) {
    RunResult r = Cli(repo).Fsb(args);
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(message)) << args.back();
  }
  // The subset forms that are valid read some packs and pass.
  for (const char* subset : {"1/2", "2/2", "50%", "100%", "1M", "1"}) {
    RunResult r = Cli(repo).Fsb({"check", "--read-data-subset", subset});
    EXPECT_EQ(r.exit_code, 0) << subset << "\n" << Describe(r);
    EXPECT_THAT(r.out, HasSubstr("no errors were found"));
  }
  // Nothing to prune on a fresh repository; --json gives one summary object.
  RunResult r = Cli(repo).Fsb({"prune", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::optional<nlohmann::json> summary = JsonMessage(r.out, "summary");
  ASSERT_TRUE(summary.has_value()) << r.out;
  EXPECT_EQ((*summary)["total_prune_blobs"], 0);
  EXPECT_EQ((*summary)["packs_removed"], 0);
}

// The same repository (restic's and fsb's backups mixed), the same snapshots forgotten, then
// fsb prune on one copy and restic prune on the other, with the same --max-unused.
class SideBySidePrune : public PruneInteropTest,
                        public ::testing::WithParamInterface<const char*> {};

TEST_P(SideBySidePrune, FsbAndResticRemoveTheSameBlobs) {
  REQUIRE_RESTIC();
  const fs::path base = tmp_.path() / "base";
  ASSERT_EQ(Cli(base).Fsb({"init"}).exit_code, 0);
  for (int r = 0; r < 6; r++) Backup(r % 2 ? Tool::kFsb : Tool::kRestic, base, r);
  std::vector<std::string> forget = {"forget"};
  for (const auto& [id, round] : Snapshots(base)) {
    if (round == 0 || round == 2 || round == 3) forget.push_back(id);
  }
  ASSERT_EQ(forget.size(), 4u);
  const fs::path a = tmp_.path() / "with-fsb", b = tmp_.path() / "with-restic";
  CopyTree(base, a);
  CopyTree(base, b);
  ASSERT_EQ(Cli(a).Restic(forget).exit_code, 0);
  ASSERT_EQ(Cli(b).Restic(forget).exit_code, 0);
  RunResult fsb = Cli(a).Fsb({"prune", "--max-unused", GetParam()});
  ASSERT_EQ(fsb.exit_code, 0) << Describe(fsb);
  RunResult restic = Cli(b).Restic({"prune", "--max-unused", GetParam()});
  ASSERT_EQ(restic.exit_code, 0) << Describe(restic);
  EXPECT_EQ(StatsLines(fsb.out), StatsLines(restic.out)) << "fsb:\n"
                                                         << fsb.out << "\nrestic:\n"
                                                         << restic.out;
  EXPECT_NE(StatsLines(fsb.out).find("total prune"), std::string::npos);
  const std::vector<std::string> fsb_blobs = IndexBlobs(a), restic_blobs = IndexBlobs(b);
  EXPECT_GT(fsb_blobs.size(), 0u);
  EXPECT_EQ(fsb_blobs, restic_blobs);
  ExpectResticCheckReadData(a);
  ExpectRestoresMatch(Tool::kRestic, a);
}

INSTANTIATE_TEST_SUITE_P(MaxUnused, SideBySidePrune, ::testing::Values("0", "5%"),
                         [](const auto& info) {
                           return std::string(info.param) == "0" ? "Zero" : "FivePercent";
                         });

}  // namespace
}  // namespace fsb::testing
