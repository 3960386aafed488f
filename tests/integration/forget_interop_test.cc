// `fsb forget` against the real restic 0.14 `forget`: one restic repository with many snapshots
// at chosen times, zones, hosts, paths and tags (written with repo/ and pointing at the tree of
// one real restic backup), and the same policy given to both tools on copies of it. The kept and
// removed snapshots, per group, and the reasons for each kept one must be the same.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "repo/backend/open.h"
#include "repo/repository.h"
#include "tests/integration/integration_util.h"
#include "tests/support/test_util.h"

namespace fsb::testing {
namespace {

namespace fs = std::filesystem;

// A missing tool is a skip, or a failure under FSB_REQUIRE_INTEROP=1 (CI).
#define REQUIRE_PROGRAM(name)                                                               \
  do {                                                                                      \
    if (FindProgram(name).empty()) {                                                        \
      if (InteropRequired()) FAIL() << name << " is not on PATH but FSB_REQUIRE_INTEROP=1"; \
      GTEST_SKIP() << name << " is not on PATH";                                            \
    }                                                                                       \
  } while (0)

constexpr uint64_t kSeed = 20240917;

// One group of a forget --json result: kept and removed IDs and the reasons per kept ID.
struct GroupResult {
  std::set<std::string> keep;
  std::set<std::string> remove;
  std::map<std::string, std::string> reasons;  // id -> matches + counters, as compact JSON
  bool operator==(const GroupResult&) const = default;
};

std::string Str(const std::set<std::string>& s) {
  std::string out;
  for (const std::string& x : s) out += x.substr(0, 8) + " ";
  return out;
}

class ForgetInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(FsbBinary())) << FsbBinary() << " is not built";
    password_ = tmp_.path() / "password.txt";
    WriteStringToFile(password_, "forget-test-password\n");
    base_ = tmp_.path() / "base";
  }

  // restic and fsb with TZ=UTC: restic reads a time whose offset equals the local zone's into
  // time.Local, whose DST rules would shift AddDate for --keep-within; fsb uses fixed offsets.
  RunResult Restic(const fs::path& repo, std::vector<std::string> args) {
    std::vector<std::string> argv = {"restic", "-r", repo.string(), "--no-cache"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {"RESTIC_PASSWORD_FILE=" + password_.string(), "TZ=UTC"});
  }
  RunResult Fsb(const fs::path& repo, std::vector<std::string> args) {
    std::vector<std::string> argv = {FsbBinary(), "-r", repo.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {"FSB_PASSWORD_FILE=" + password_.string(), "TZ=UTC"});
  }

  // restic init + one backup, then `count` extra snapshots of the same tree written with repo/.
  void BuildRepository(int count) {
    fs::create_directories(tmp_.path() / "src");
    WriteStringToFile(tmp_.path() / "src" / "file.txt", "forget me not\n");
    RunResult r = Restic(base_, {"init"});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    r = RunCommand(
        {"restic", "-r", base_.string(), "--no-cache", "backup", "--host", "base", "--json", "."},
        {"RESTIC_PASSWORD_FILE=" + password_.string()}, (tmp_.path() / "src").string());
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    std::optional<nlohmann::json> summary = JsonMessage(r.out, "summary");
    ASSERT_TRUE(summary.has_value()) << r.out;
    const std::string first_snapshot = summary->value("snapshot_id", "");

    Result<std::unique_ptr<repo::Backend>> be = repo::OpenBackend(base_.string(), false);
    ASSERT_TRUE(be.ok()) << be.status().ToString();
    Result<std::unique_ptr<repo::Repository>> rep = repo::Repository::Open(
        std::move(*be), Secret<std::string>(std::string("forget-test-password")));
    ASSERT_TRUE(rep.ok()) << rep.status().ToString();
    Result<repo::Id> first = (*rep)->FindSnapshot(first_snapshot);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    Result<repo::Snapshot> model = (*rep)->LoadSnapshot(*first);
    ASSERT_TRUE(model.ok()) << model.status().ToString();

    std::mt19937_64 rng(kSeed);
    auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
    const int32_t offsets[] = {0, 0, 3600, -5 * 3600, 19800, 13 * 3600, -11 * 3600};
    const std::vector<std::string> hosts = {"alpha", "beta"};
    const std::vector<std::vector<std::string>> paths = {{"/data"}, {"/srv", "/data"}};
    const std::vector<std::vector<std::string>> tags = {{},       {"daily"}, {"weekly", "daily"},
                                                        {"keep"}, {"daily"}, {}};
    const int64_t start = 1577836800;  // 2020-01-01T00:00:00Z
    const int64_t now = std::time(nullptr);
    std::set<int64_t> used;
    std::vector<int64_t> times;
    // Spread over three years, a dense run of hourly-ish ones at the end, and year/week
    // boundaries in several zones.
    for (int i = 0; i < count; i++) times.push_back(start + int64_t(rng() % (3 * 365 * 86400ull)));
    for (int i = 0; i < 40; i++) times.push_back(start + 3 * 365 * 86400 + i * 2400 + pick(600));
    for (int64_t t : {1609459200, 1640995200, 1672531200}) {  // Jan 1 2021/2022/2023, 00:00Z
      for (int d : {-7200, -1800, -60, 60, 1800, 7200}) times.push_back(t + d);
    }
    times.push_back(now + 400 * 86400);  // in the future: not the "latest" for --keep-within
    for (int64_t t : times) {
      while (!used.insert(t).second) t++;  // equal times are ordered by listing order in restic
      repo::Snapshot s = *model;
      s.parent.reset();
      s.time = repo::Timestamp{t, static_cast<uint32_t>(pick(1000000000)),
                               offsets[pick(std::size(offsets))]};
      s.hostname = hosts[pick(hosts.size())];
      s.paths = paths[pick(paths.size())];
      s.tags = tags[pick(tags.size())];
      Result<repo::Id> id = (*rep)->SaveSnapshot(s);
      ASSERT_TRUE(id.ok()) << id.status().ToString();
    }
    snapshot_count_ = times.size() + 1;
  }

  fs::path Copy(const std::string& name) {
    fs::path dest = tmp_.path() / name;
    CopyTree(base_, dest);
    return dest;
  }

  // Parses forget --json into group key -> result.
  static std::map<std::string, GroupResult> Groups(const std::string& out, std::string& err) {
    std::map<std::string, GroupResult> groups;
    nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
    if (out.empty()) return groups;  // restic prints nothing when nothing is grouped
    if (j.is_discarded() || !j.is_array()) {
      err = "not a JSON array: " + out.substr(0, 500);
      return groups;
    }
    for (const nlohmann::json& g : j) {
      nlohmann::json key = {{"host", g["host"]}, {"paths", g["paths"]}, {"tags", g["tags"]}};
      GroupResult& res = groups[key.dump()];
      if (g["keep"].is_array()) {
        for (const auto& s : g["keep"]) res.keep.insert(s.value("id", ""));
      }
      if (g["remove"].is_array()) {
        for (const auto& s : g["remove"]) res.remove.insert(s.value("id", ""));
      }
      // Reasons are in keep order; the reason's snapshot has no ID, so pair by position.
      if (g["reasons"].is_array() && g["keep"].is_array() &&
          g["reasons"].size() == g["keep"].size()) {
        for (size_t i = 0; i < g["keep"].size(); i++) {
          const nlohmann::json& r = g["reasons"][i];
          nlohmann::json why = {{"matches", r["matches"]},
                                {"counters", r["counters"]},
                                {"time", r["snapshot"]["time"]}};
          res.reasons[g["keep"][i].value("id", "")] = why.dump();
        }
      } else if (!g["reasons"].is_null() || !g["keep"].is_null()) {
        err = "reasons do not pair with keep: " + g.dump().substr(0, 500);
      }
    }
    return groups;
  }

  // Runs both tools' dry run for `policy` on copies and compares; returns the number of
  // snapshots restic would remove.
  size_t CompareDryRun(const std::vector<std::string>& policy, int n) {
    std::string what;
    for (const std::string& a : policy) what += a + " ";
    SCOPED_TRACE("policy: " + what + "(seed " + std::to_string(kSeed) + ")");
    fs::path a = Copy("restic-" + std::to_string(n));
    fs::path b = Copy("fsb-" + std::to_string(n));
    std::vector<std::string> args = {"forget", "--dry-run", "--json"};
    args.insert(args.end(), policy.begin(), policy.end());
    RunResult rr = Restic(a, args);
    EXPECT_EQ(rr.exit_code, 0) << Describe(rr);
    RunResult fr = Fsb(b, args);
    EXPECT_EQ(fr.exit_code, 0) << Describe(fr);
    std::string rerr, ferr;
    std::map<std::string, GroupResult> rg = Groups(rr.out, rerr);
    std::map<std::string, GroupResult> fg = Groups(fr.out, ferr);
    EXPECT_EQ(rerr, "");
    EXPECT_EQ(ferr, "");
    EXPECT_EQ(rg.size(), fg.size());
    size_t removed = 0;
    for (const auto& [key, want] : rg) {
      removed += want.remove.size();
      auto it = fg.find(key);
      if (it == fg.end()) {
        ADD_FAILURE() << "fsb has no group " << key;
        continue;
      }
      const GroupResult& got = it->second;
      EXPECT_EQ(got.keep, want.keep) << "group " << key << "\nrestic keeps " << Str(want.keep)
                                     << "\nfsb keeps    " << Str(got.keep);
      EXPECT_EQ(got.remove, want.remove) << "group " << key;
      for (const auto& [id, why] : want.reasons) {
        auto r = got.reasons.find(id);
        if (r == got.reasons.end()) continue;  // reported by the keep comparison
        EXPECT_EQ(r->second, why) << "reasons for " << id.substr(0, 8) << " in group " << key;
      }
    }
    for (const auto& [key, got] : fg) {
      if (!rg.count(key)) ADD_FAILURE() << "restic has no group " << key;
    }
    // Both left the repositories unchanged (dry run).
    EXPECT_EQ(SnapshotFileCount(a), snapshot_count_);
    EXPECT_EQ(SnapshotFileCount(b), snapshot_count_);
    return removed;
  }

  static size_t SnapshotFileCount(const fs::path& repo) {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(repo / "snapshots")) n += e.is_regular_file();
    return n;
  }

  std::set<std::string> SnapshotIds(const fs::path& repo) {
    RunResult r = Restic(repo, {"snapshots", "--json"});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    std::set<std::string> ids;
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    if (!j.is_array()) return ids;
    for (const auto& s : j) ids.insert(s.value("id", ""));
    return ids;
  }

  TempDir tmp_;
  fs::path password_;
  fs::path base_;
  size_t snapshot_count_ = 0;
};

TEST_F(ForgetInteropTest, DryRunKeepsTheSameSnapshotsAsRestic) {
  REQUIRE_PROGRAM("restic");
  ASSERT_NO_FATAL_FAILURE(BuildRepository(160));
  const std::vector<std::vector<std::string>> policies = {
      {"--keep-last", "5"},
      {"--keep-hourly", "30"},
      {"--keep-daily", "20"},
      {"--keep-weekly", "12"},
      {"--keep-monthly", "18"},
      {"--keep-yearly", "10"},
      {"-l", "3", "-d", "7", "-w", "4", "-m", "12", "-y", "3"},
      {"--keep-within", "1y2m"},
      {"--keep-within", "3m10d5h"},
      {"--keep-within-daily", "2m", "--keep-within-weekly", "1y", "--keep-last", "1"},
      {"--keep-within-hourly", "1d", "--keep-within-monthly", "2y", "--keep-within-yearly", "5y"},
      {"--keep-tag", "keep"},
      {"--keep-tag", "daily,weekly", "--keep-tag", "keep", "--keep-monthly", "2"},
      {"--group-by", "tags", "--keep-last", "2", "--keep-weekly", "3"},
      {"--group-by", "", "--keep-daily", "5", "--keep-yearly", "2"},
      {"--group-by", "host,paths,tags", "--keep-monthly", "3"},
      {"--host", "alpha", "--keep-weekly", "3"},
      {"--tag", "daily", "--keep-last", "2"},
      {"--path", "/srv", "--keep-monthly", "4"},
  };
  size_t total_removed = 0;
  for (size_t i = 0; i < policies.size(); i++) total_removed += CompareDryRun(policies[i], int(i));
  EXPECT_GT(total_removed, 100u);  // the policies do remove things
  std::printf("[ forget  ] %zu policies compared with restic on %zu snapshots\n", policies.size(),
              snapshot_count_);
}

TEST_F(ForgetInteropTest, ForgetRemovesWhatResticWouldAndResticCheckPasses) {
  REQUIRE_PROGRAM("restic");
  ASSERT_NO_FATAL_FAILURE(BuildRepository(60));
  const std::vector<std::string> policy = {"--keep-daily",   "7", "--keep-weekly", "4",
                                           "--keep-monthly", "6", "--keep-tag",    "keep"};
  fs::path a = Copy("by-restic");
  fs::path b = Copy("by-fsb");
  std::vector<std::string> args = {"forget"};
  args.insert(args.end(), policy.begin(), policy.end());
  RunResult rr = Restic(a, args);
  ASSERT_EQ(rr.exit_code, 0) << Describe(rr);
  RunResult fr = Fsb(b, args);
  ASSERT_EQ(fr.exit_code, 0) << Describe(fr);
  EXPECT_THAT(fr.out, ::testing::HasSubstr("remove "));
  std::set<std::string> kept_by_restic = SnapshotIds(a);
  std::set<std::string> kept_by_fsb = SnapshotIds(b);
  EXPECT_LT(kept_by_fsb.size(), snapshot_count_);
  EXPECT_EQ(kept_by_fsb, kept_by_restic);
  RunResult check = Restic(b, {"check"});
  EXPECT_EQ(check.exit_code, 0) << Describe(check);
  // The exclusive lock is gone: restic can lock again.
  RunResult unlock_free = Restic(b, {"forget", "--keep-last", "1000"});
  EXPECT_EQ(unlock_free.exit_code, 0) << Describe(unlock_free);
}

TEST_F(ForgetInteropTest, ExplicitIdsAreForgottenAndEmptyPolicyRemovesNothing) {
  REQUIRE_PROGRAM("restic");
  ASSERT_NO_FATAL_FAILURE(BuildRepository(5));
  fs::path b = Copy("ids");
  std::set<std::string> before = SnapshotIds(b);
  RunResult r = Fsb(b, {"forget"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, ::testing::HasSubstr("no policy was specified"));
  EXPECT_EQ(SnapshotIds(b), before);
  std::string victim = *before.begin();
  std::string second = *std::next(before.begin());
  r = Fsb(b, {"forget", victim.substr(0, 8), second, "ffffffffffff"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err, ::testing::HasSubstr("ffffffffffff"));
  std::set<std::string> after = SnapshotIds(b);
  EXPECT_EQ(after.size(), before.size() - 2);
  EXPECT_FALSE(after.count(victim));
  EXPECT_FALSE(after.count(second));
  // forget --prune: the kept snapshots are a subset, and the pruned repository checks clean.
  r = Fsb(b, {"forget", "--prune", "--keep-last", "1"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  std::set<std::string> pruned = SnapshotIds(b);
  EXPECT_LT(pruned.size(), after.size());
  EXPECT_TRUE(std::includes(after.begin(), after.end(), pruned.begin(), pruned.end()));
  RunResult check = Restic(b, {"check", "--read-data"});
  EXPECT_EQ(check.exit_code, 0) << Describe(check);
}

}  // namespace
}  // namespace fsb::testing
