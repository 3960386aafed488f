// Interoperability with the real restic binary (0.14): repositories written by one tool are
// checked, restored and deduplicated against by the other, and the restored trees are compared
// with their sources entry by entry (tests/support/tree_compare.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
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

// A missing tool is a skip, or a failure under FSB_REQUIRE_INTEROP=1 (CI).
#define REQUIRE_PROGRAM(name)                                                                    \
  do {                                                                                           \
    if (FindProgram(name).empty()) {                                                             \
      if (InteropRequired()) FAIL() << name << " is not on PATH but FSB_REQUIRE_INTEROP=1";      \
      GTEST_SKIP() << name << " is not on PATH";                                                 \
    }                                                                                            \
  } while (0)

// Options for comparing a source tree with the restore of a snapshot of "." (which holds no node
// for the root directory itself).
CompareOptions RestoredDotOptions() {
  CompareOptions o;
  o.root_metadata = false;
  o.owner = geteuid() == 0;
  return o;
}

// Number of regular files (each hard-link name counted) below `dir`.
size_t CountRegularFiles(const fs::path& dir) {
  size_t n = 0;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    if (it->symlink_status().type() == fs::file_type::regular) n++;
  }
  return n;
}

class ResticInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(FsbBinary())) << FsbBinary() << " is not built";
    password_ = tmp_.path() / "password.txt";
    WriteStringToFile(password_, "interop-test-password\n");
    src_ = tmp_.path() / "src";
    repo_ = tmp_.path() / "repo";
  }

  RepoCli Cli() const { return RepoCli(repo_, password_); }

  // The snapshot list as `fsb snapshots --json` prints it.
  nlohmann::ordered_json FsbSnapshots() {
    RunResult r = Cli().Fsb({"--json", "snapshots"});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    nlohmann::ordered_json j = ParseJson(r.out);
    EXPECT_TRUE(j.is_array()) << r.out;
    return j.is_array() ? j : nlohmann::ordered_json::array();
  }

  // Why two tree blobs differ: walks both (read with restic, the reference) down to the first
  // differing nodes and prints them; when every node parses equal, the raw bytes around the
  // first difference (escaping, field order, number format).
  void ExplainTreeDiff(const std::string& a, const std::string& b, const std::string& path, std::string& out,
                       int& budget) {
    if (budget <= 0) return;
    RunResult ra = Cli().Restic({"cat", "blob", a});
    RunResult rb = Cli().Restic({"cat", "blob", b});
    if (ra.exit_code != 0 || rb.exit_code != 0) {
      out += "cannot cat trees at " + path + ":\n" + Describe(ra) + "\n" + Describe(rb) + "\n";
      budget = 0;
      return;
    }
    nlohmann::ordered_json ja = ParseJson(ra.out), jb = ParseJson(rb.out);
    if (!ja.is_object() || !jb.is_object() || !ja["nodes"].is_array() || !jb["nodes"].is_array()) {
      out += "unparsable tree at " + path + ":\nrestic's:\n" + ra.out + "\nfsb's:\n" + rb.out + "\n";
      budget = 0;
      return;
    }
    std::map<std::string, nlohmann::ordered_json> na, nb;
    std::vector<std::string> order;
    for (auto& n : ja["nodes"]) {
      order.push_back(n.value("name", ""));
      na[order.back()] = n;
    }
    for (auto& n : jb["nodes"]) {
      std::string name = n.value("name", "");
      if (!na.count(name)) order.push_back(name);
      nb[name] = n;
    }
    bool found = false;
    for (const std::string& name : order) {
      if (budget <= 0) return;
      const std::string p = path + "/" + name;
      if (!na.count(name) || !nb.count(name)) {
        out += "node " + p + " only in " + (na.count(name) ? "restic's" : "fsb's") + " tree\n";
        budget--;
        found = true;
        continue;
      }
      nlohmann::ordered_json x = na[name], y = nb[name];
      auto subtree = [](const nlohmann::ordered_json& n) {
        auto it = n.find("subtree");
        return it != n.end() && it->is_string() ? it->get<std::string>() : std::string();
      };
      std::string sx = subtree(x), sy = subtree(y);
      x.erase("subtree");
      y.erase("subtree");
      if (x != y) {
        out += "node " + p + " differs:\n  restic: " + na[name].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
               "\n  fsb:    " + nb[name].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        budget--;
        found = true;
      }
      if (!sx.empty() && !sy.empty() && sx != sy) {
        found = true;
        ExplainTreeDiff(sx, sy, p, out, budget);
      }
    }
    if (!found) {
      size_t i = 0;
      while (i < ra.out.size() && i < rb.out.size() && ra.out[i] == rb.out[i]) i++;
      size_t from = i > 200 ? i - 200 : 0;
      out += "tree " + path + "/ parses equal but its bytes differ at offset " + std::to_string(i) +
             ":\n  restic: ..." + ra.out.substr(from, 400) + "\n  fsb:    ..." + rb.out.substr(from, 400) + "\n";
      budget--;
    }
  }

  // restic writes (format version `version`), fsb checks and restores.
  void CheckResticRepoWithFsb(int version) {
    SCOPED_TRACE("repository version " + std::to_string(version));
    RepoCli cli = Cli();
    RunResult r = cli.Restic({"init", "--repository-version", std::to_string(version)});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    r = cli.Restic({"backup", "."}, src_.string());
    ASSERT_EQ(r.exit_code, 0) << Describe(r);

    r = cli.Fsb({"check", "--read-data"});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_THAT(r.out, HasSubstr("no errors were found")) << Describe(r);

    fs::path out = tmp_.path() / ("restored-by-fsb-v" + std::to_string(version));
    r = cli.Fsb({"restore", "latest", "--target", out.string(), "--verify"});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    std::vector<std::string> diffs = CompareTrees(src_, out, RestoredDotOptions());
    EXPECT_TRUE(diffs.empty()) << "source vs fsb's restore of restic's snapshot:\n" << JoinDifferences(diffs);
  }

  TempDir tmp_;
  fs::path password_, src_, repo_;
};

TEST_F(ResticInteropTest, FsbBackupPassesResticCheckAndRestores) {
  REQUIRE_PROGRAM("restic");
  const uint64_t seed = 1001;
  SCOPED_TRACE("tree seed " + std::to_string(seed));
  MakeRichTree(src_, seed);
  RepoCli cli = Cli();
  RunResult r = cli.Fsb({"init"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  r = cli.Fsb({"backup", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Describe(r);

  r = cli.Restic({"check", "--read-data"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("no errors were found")) << Describe(r);

  fs::path out = tmp_.path() / "restored-by-restic";
  r = cli.Restic({"restore", "latest", "--target", out.string()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::vector<std::string> diffs = CompareTrees(src_, out, RestoredDotOptions());
  EXPECT_TRUE(diffs.empty()) << "source vs restic's restore of fsb's snapshot:\n" << JoinDifferences(diffs);
}

TEST_F(ResticInteropTest, ResticBackupRestoresWithFsb) {
  REQUIRE_PROGRAM("restic");
  const uint64_t seed = 1002;
  SCOPED_TRACE("tree seed " + std::to_string(seed));
  MakeRichTree(src_, seed);
  CheckResticRepoWithFsb(2);
}

TEST_F(ResticInteropTest, ResticV1BackupRestoresWithFsb) {
  REQUIRE_PROGRAM("restic");
  const uint64_t seed = 1003;
  SCOPED_TRACE("tree seed " + std::to_string(seed));
  MakeRichTree(src_, seed);
  CheckResticRepoWithFsb(1);
}

TEST_F(ResticInteropTest, FsbDedupsAgainstRestic) {
  REQUIRE_PROGRAM("restic");
  const uint64_t seed = 1004;
  SCOPED_TRACE("tree seed " + std::to_string(seed));
  MakeRichTree(src_, seed);
  RepoCli cli = Cli();
  RunResult r = cli.Restic({"init"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  r = cli.Restic({"backup", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Describe(r);

  r = cli.Fsb({"--json", "backup", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::optional<nlohmann::json> summary = JsonMessage(r.out, "summary");
  ASSERT_TRUE(summary.has_value()) << Describe(r);
  EXPECT_EQ((*summary)["data_blobs"], 0) << "fsb stored new data for an unchanged tree: " << summary->dump();
  const std::string fsb_snap = summary->value("snapshot_id", "");

  nlohmann::ordered_json snaps = FsbSnapshots();
  ASSERT_EQ(snaps.size(), 2u) << snaps.dump();
  std::string fsb_tree, restic_tree;
  for (const auto& s : snaps) {
    (s.value("id", "") == fsb_snap ? fsb_tree : restic_tree) = s.value("tree", "");
  }
  ASSERT_FALSE(fsb_tree.empty()) << "fsb's snapshot " << fsb_snap << " not listed: " << snaps.dump();
  ASSERT_FALSE(restic_tree.empty()) << snaps.dump();
  if (fsb_tree != restic_tree) {
    std::string why;
    int budget = 25;
    ExplainTreeDiff(restic_tree, fsb_tree, "", why, budget);
    ADD_FAILURE() << "fsb's root tree " << fsb_tree << " != restic's " << restic_tree
                  << " for the same unchanged directory:\n"
                  << why;
  }

  // With --force fsb reads and chunks every file itself: its chunker (with the repository's
  // polynomial) must cut where restic did, so still no new data and the same tree.
  r = cli.Fsb({"--json", "backup", "--force", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  summary = JsonMessage(r.out, "summary");
  ASSERT_TRUE(summary.has_value()) << Describe(r);
  EXPECT_EQ((*summary)["data_blobs"], 0) << "fsb --force chunked differently from restic: " << summary->dump();
  EXPECT_EQ((*summary)["files_new"], CountRegularFiles(src_)) << summary->dump();
  const std::string forced_snap = summary->value("snapshot_id", "");
  std::string forced_tree;
  for (const auto& s : FsbSnapshots()) {
    if (s.value("id", "") == forced_snap) forced_tree = s.value("tree", "");
  }
  if (forced_tree != restic_tree) {
    std::string why;
    int budget = 25;
    if (!forced_tree.empty()) ExplainTreeDiff(restic_tree, forced_tree, "", why, budget);
    ADD_FAILURE() << "fsb --force root tree " << forced_tree << " != restic's " << restic_tree << ":\n" << why;
  }
}

TEST_F(ResticInteropTest, IncrementalBackupReadsOnlyChangedFiles) {
  REQUIRE_PROGRAM("restic");
  const uint64_t seed = 1005;
  SCOPED_TRACE("tree seed " + std::to_string(seed));
  MakeRichTree(src_, seed);
  RepoCli cli = Cli();
  RunResult r = cli.Fsb({"init"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  r = cli.Fsb({"--json", "backup", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::optional<nlohmann::json> first = JsonMessage(r.out, "summary");
  ASSERT_TRUE(first.has_value()) << Describe(r);
  const size_t files = CountRegularFiles(src_);
  EXPECT_EQ((*first)["files_new"], files) << first->dump();

  WriteStringToFile(src_ / "hello.txt", "changed after the first backup, and longer than before\n");
  WriteStringToFile(src_ / "added.txt", "new in the second backup\n");

  r = cli.Fsb({"--json", "backup", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::optional<nlohmann::json> second = JsonMessage(r.out, "summary");
  ASSERT_TRUE(second.has_value()) << Describe(r);
  EXPECT_EQ((*second)["files_changed"], 1) << second->dump();
  EXPECT_EQ((*second)["files_new"], 1) << second->dump();
  EXPECT_EQ((*second)["files_unmodified"], files - 1) << second->dump();
  EXPECT_EQ(second->value("parent", ""), first->value("snapshot_id", "")) << second->dump();
  const std::string snap2 = second->value("snapshot_id", "");
  ASSERT_FALSE(snap2.empty());

  r = cli.Restic({"check", "--read-data"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("no errors were found")) << Describe(r);

  fs::path out = tmp_.path() / "restored-second";
  r = cli.Restic({"restore", snap2, "--target", out.string()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::vector<std::string> diffs = CompareTrees(src_, out, RestoredDotOptions());
  EXPECT_TRUE(diffs.empty()) << "modified source vs restic's restore of fsb's second snapshot:\n"
                             << JoinDifferences(diffs);
}

// restic (cobra) accepts its global flags after the subcommand too, and callers such as Velero
// put them there: `restic backup --json --repo R ...`.
TEST_F(ResticInteropTest, GlobalFlagsAfterSubcommandAreAccepted) {
  REQUIRE_PROGRAM("restic");
  fs::create_directories(src_);
  WriteStringToFile(src_ / "file.txt", "flags after the subcommand\n");
  RepoCli cli = Cli();
  RunResult r = cli.Fsb({"init"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  // The same placement works with restic (the reference) on this repository.
  r = cli.Restic({"backup", "--json", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  ASSERT_TRUE(JsonMessage(r.out, "summary").has_value()) << Describe(r);

  r = cli.Fsb({"backup", "--json", "."}, src_.string());
  EXPECT_EQ(r.exit_code, 0) << "fsb -r REPO backup --json . : " << Describe(r);
  EXPECT_TRUE(JsonMessage(r.out, "summary").has_value()) << Describe(r);
  r = cli.Fsb({"snapshots", "--json"});
  EXPECT_EQ(r.exit_code, 0) << "fsb -r REPO snapshots --json : " << Describe(r);
  EXPECT_TRUE(ParseJson(r.out).is_array()) << Describe(r);
  r = RunCommand({FsbBinary(), "snapshots", "-r", repo_.string(), "--password-file", password_.string()});
  EXPECT_EQ(r.exit_code, 0) << "fsb snapshots -r REPO --password-file F : " << Describe(r);
}

// The committed reference repositories (tests/testdata/restic, made by restic 0.14).
TEST_F(ResticInteropTest, SharedFixturesRestore) {
  REQUIRE_PROGRAM("python3");
  if (geteuid() != 0) {
    // make_source.py reads back its 0000 file and the snapshots hold device nodes.
    GTEST_SKIP() << "the fixture source tree can only be rebuilt (and restored) as root";
  }
  const fs::path fixtures = TestDataPath("restic");
  fs::path source = tmp_.path() / "fixture-source";
  RunResult r = RunCommand({"python3", (fixtures / "make_source.py").string(), source.string(), "--manifest",
                            (tmp_.path() / "manifest.json").string()});
  ASSERT_EQ(r.exit_code, 0) << "make_source.py: " << Describe(r);
  const fs::path password = fixtures / "password.txt";

  struct Case {
    std::string repo;
    std::string snapshot;
  };
  for (const Case& c : {Case{"repo-v2", "982f3458"}, Case{"repo-v1", "854d0e19"}}) {
    SCOPED_TRACE(c.repo + " snapshot " + c.snapshot);
    fs::path repo = tmp_.path() / c.repo;
    CopyTree(fixtures / c.repo, repo);
    RepoCli cli(repo, password);
    fs::path out = tmp_.path() / ("restored-" + c.repo);
    r = cli.Fsb({"restore", c.snapshot, "--target", out.string(), "--verify"});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    CompareOptions opts = RestoredDotOptions();
    opts.ignore_paths = {"special/socket"};  // restic 0.14 skips sockets
    std::vector<std::string> diffs = CompareTrees(source, out, opts);
    EXPECT_TRUE(diffs.empty()) << "make_source.py tree vs fsb's restore:\n" << JoinDifferences(diffs);
  }

  // chunker-edges: zeros (cut at exactly 512 KiB) and AAAA (cut at exactly 8 MiB), both deduped.
  fs::path repo = tmp_.path() / "repo-v2";  // copied above
  RepoCli cli(repo, password);
  fs::path out = tmp_.path() / "restored-chunker-edges";
  r = cli.Fsb({"restore", "712126ad", "--target", out.string(), "--verify"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const int64_t mtime = 1686830400;  // 2023-06-15 12:00:00 UTC
  struct Want {
    std::string name;
    std::string content;
  };
  for (const Want& w : {Want{"zeros", std::string(3 * 512 * 1024 + 100, '\0')},
                        Want{"AAAA", std::string(17 * 1024 * 1024, 'A')}}) {
    SCOPED_TRACE(w.name);
    fs::path p = out / w.name;
    ASSERT_TRUE(fs::is_regular_file(p));
    EXPECT_EQ(fs::file_size(p), w.content.size());
    EXPECT_EQ(repo::Id::Hash(AsBytes(ReadFileToString(p))).Hex(), repo::Id::Hash(AsBytes(w.content)).Hex());
    struct stat st {};
    ASSERT_EQ(lstat(p.c_str(), &st), 0);
    EXPECT_EQ(st.st_mtim.tv_sec, mtime);
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(out)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"AAAA", "zeros"}));
}

}  // namespace
}  // namespace fsb::testing
