// The fsb binary against damaged repositories and unreadable sources: the exit code, an error that
// names the damaged object or file, no secret printed, and everything undamaged still restored.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/secret.h"
#include "repo/crypto.h"
#include "repo/backend/open.h"
#include "repo/repository.h"
#include "tests/integration/integration_util.h"
#include "tests/support/test_util.h"
#include "tests/support/tree_compare.h"

namespace fsb::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPassword[] = "bad-input-correct-password";

// The names of the files in repo/<dir>/ (data/ has one more level).
std::vector<std::string> ListRepoFiles(const fs::path& repo, const std::string& dir) {
  std::vector<std::string> out;
  if (!fs::exists(repo / dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(repo / dir)) {
    if (e.is_regular_file()) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void MakeWritable(const fs::path& p) {
  fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add);
}

void FlipByte(const fs::path& p, uint64_t offset) {
  MakeWritable(p);
  std::string data = ReadFileToString(p);
  ASSERT_LT(offset, data.size()) << p;
  data[offset] = char(data[offset] ^ 0x01);
  WriteStringToFile(p, data);
}

void TruncateToHalf(const fs::path& p) {
  MakeWritable(p);
  fs::resize_file(p, fs::file_size(p) / 2);
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(FsbBinary())) << FsbBinary() << " is not built";
    password_ = tmp_.path() / "password.txt";
    WriteStringToFile(password_, std::string(kPassword) + "\n");
    repo_ = tmp_.path() / "repo";
    src_ = tmp_.path() / "src";
  }

  RepoCli Cli() const { return RepoCli(repo_, password_); }

  // A small source (a 2 MiB random file among text files), an fsb repository and one snapshot.
  void InitAndBackup() {
    fs::create_directories(src_ / "dir");
    WriteStringToFile(src_ / "a.txt", "alpha\n");
    WriteStringToFile(src_ / "b.txt", "bravo bravo\n");
    WriteStringToFile(src_ / "dir/c.txt", "charlie in a directory\n");
    Bytes victim = SeededRandomBytes(77, 2u << 20);
    WriteStringToFile(src_ / "victim.bin", AsString(victim));
    RunResult r = Cli().Fsb({"init"});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    r = Cli().Fsb({"backup", "."}, src_.string());
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    auto snaps = ListRepoFiles(repo_, "snapshots");
    ASSERT_EQ(snaps.size(), 1u);
    snapshot_ = snaps[0];
  }

  // The pack holding the first data blob of `name` (a file at the snapshot root), and the blob's
  // offset and length in it, from fsb's own index and tree.
  struct BlobPlace {
    std::string pack;
    uint64_t offset = 0, length = 0;
  };
  BlobPlace FirstBlobOf(const std::string& name) {
    RunResult r = Cli().Fsb({"cat", "tree", "latest"});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    nlohmann::json tree = nlohmann::json::parse(r.out, nullptr, false);
    std::string blob;
    if (tree.is_object()) {
      for (const auto& n : tree["nodes"]) {
        if (n.value("name", "") == name && n["content"].is_array() && !n["content"].empty()) {
          blob = n["content"][0].get<std::string>();
        }
      }
    }
    EXPECT_FALSE(blob.empty()) << "no content for " << name << " in " << r.out;
    for (const std::string& idx : ListRepoFiles(repo_, "index")) {
      r = Cli().Fsb({"cat", "index", idx});
      EXPECT_EQ(r.exit_code, 0) << Describe(r);
      nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
      if (!j.is_object()) continue;
      for (const auto& p : j["packs"]) {
        for (const auto& b : p["blobs"]) {
          if (b.value("id", "") == blob) return {p.value("id", ""), b["offset"].get<uint64_t>(), b["length"].get<uint64_t>()};
        }
      }
    }
    ADD_FAILURE() << "blob " << blob << " of " << name << " is in no index";
    return {};
  }

  fs::path PackPath(const std::string& id) const { return repo_ / "data" / id.substr(0, 2) / id; }

  TempDir tmp_;
  fs::path password_, repo_, src_;
  std::string snapshot_;
};

TEST_F(BadInputTest, WrongPasswordIsRejectedWithoutPrintingSecrets) {
  RunResult r = Cli().Fsb({"init"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const std::string wrong = "this-is-the-wrong-password";
  fs::path wrong_file = tmp_.path() / "wrong.txt";
  WriteStringToFile(wrong_file, wrong + "\n");
  RepoCli wrong_cli(repo_, wrong_file);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"snapshots"}, std::vector<std::string>{"check"},
        std::vector<std::string>{"--json", "snapshots"}}) {
    SCOPED_TRACE(args.back());
    r = wrong_cli.Fsb(args);
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("wrong password")) << Describe(r);
    for (const std::string& secret : {wrong, std::string(kPassword)}) {
      EXPECT_THAT(r.out + r.err, Not(HasSubstr(secret))) << Describe(r);
    }
  }
}

TEST_F(BadInputTest, MissingRepositoryIsNamed) {
  fs::path missing = tmp_.path() / "no-such-repository";
  RepoCli cli(missing, password_);
  for (const std::string cmd : {"snapshots", "check"}) {
    SCOPED_TRACE(cmd);
    RunResult r = cli.Fsb({cmd});
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(missing.string())) << Describe(r);
    EXPECT_FALSE(fs::exists(missing)) << "a read command created the repository directory";
  }
}

TEST_F(BadInputTest, MissingConfigIsClearError) {
  RunResult r = Cli().Fsb({"init"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  fs::remove(repo_ / "config");
  r = Cli().Fsb({"snapshots"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("config")) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(repo_.string())) << Describe(r);
  EXPECT_FALSE(fs::exists(repo_ / "config"));
}

TEST_F(BadInputTest, UnknownRepositoryVersionIsRejected) {
  RunResult r = Cli().Fsb({"init"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  // Re-seal the config with version 3 under the repository's own master key.
  {
    auto be = repo::OpenBackend(repo_.string(), false);
    ASSERT_TRUE(be.ok()) << be.status().message();
    auto repo = repo::Repository::Open(std::move(*be), Secret<std::string>(kPassword));
    ASSERT_TRUE(repo.ok()) << repo.status().message();
    repo::Config c = (*repo)->config();
    c.version = 3;
    Bytes sealed = repo::Seal((*repo)->key(), AsBytes(repo::EncodeConfig(c)));
    fs::remove(repo_ / "config");
    WriteStringToFile(repo_ / "config", AsString(sealed));
  }
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"snapshots"}, std::vector<std::string>{"backup", "."}}) {
    SCOPED_TRACE(args[0]);
    fs::create_directories(src_);
    r = Cli().Fsb(args, src_.string());
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("unsupported repository version 3")) << Describe(r);
  }
  EXPECT_TRUE(ListRepoFiles(repo_, "snapshots").empty()) << "a snapshot was written into a v3 repository";
}

TEST_F(BadInputTest, FlippedPackByteIsNamedByCheckAndRestoreKeepsTheRest) {
  ASSERT_NO_FATAL_FAILURE(InitAndBackup());
  BlobPlace place = FirstBlobOf("victim.bin");
  ASSERT_FALSE(place.pack.empty());
  ASSERT_NO_FATAL_FAILURE(FlipByte(PackPath(place.pack), place.offset + place.length / 2));
  const std::string pack_short = place.pack.substr(0, 8);

  RunResult r = Cli().Fsb({"check"});
  // Without --read-data the pack is not read: the structure is intact.
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  r = Cli().Fsb({"check", "--read-data"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(pack_short)) << Describe(r);

  fs::path out = tmp_.path() / "restored";
  r = Cli().Fsb({"restore", "latest", "--target", out.string()});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("victim.bin")) << Describe(r);
  CompareOptions opts;
  opts.root_metadata = false;
  opts.ignore_paths = {"victim.bin"};
  std::vector<std::string> diffs = CompareTrees(src_, out, opts);
  EXPECT_TRUE(diffs.empty()) << "everything but victim.bin must be restored:\n" << JoinDifferences(diffs);
}

TEST_F(BadInputTest, TruncatedIndexIsNamed) {
  ASSERT_NO_FATAL_FAILURE(InitAndBackup());
  auto indexes = ListRepoFiles(repo_, "index");
  ASSERT_EQ(indexes.size(), 1u);
  TruncateToHalf(repo_ / "index" / indexes[0]);
  const std::string index_short = indexes[0].substr(0, 8);

  RunResult r = Cli().Fsb({"restore", "latest", "--target", (tmp_.path() / "restored").string()});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(index_short)) << Describe(r);
  r = Cli().Fsb({"check"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(index_short)) << Describe(r);
}

TEST_F(BadInputTest, TruncatedKeyFileIsWrongPasswordOrNoKey) {
  RunResult r = Cli().Fsb({"init"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  auto keys = ListRepoFiles(repo_, "keys");
  ASSERT_EQ(keys.size(), 1u);
  TruncateToHalf(repo_ / "keys" / keys[0]);
  r = Cli().Fsb({"snapshots"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, AnyOf(HasSubstr("wrong password"), HasSubstr("no key"))) << Describe(r);
  EXPECT_THAT(r.out + r.err, Not(HasSubstr(kPassword))) << Describe(r);
}

TEST_F(BadInputTest, FlippedSnapshotByteIsNamed) {
  ASSERT_NO_FATAL_FAILURE(InitAndBackup());
  fs::path snap = repo_ / "snapshots" / snapshot_;
  ASSERT_NO_FATAL_FAILURE(FlipByte(snap, fs::file_size(snap) / 2));
  const std::string snap_short = snapshot_.substr(0, 8);

  RunResult r = Cli().Fsb({"restore", snapshot_, "--target", (tmp_.path() / "restored").string()});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(snap_short)) << Describe(r);
  r = Cli().Fsb({"cat", "snapshot", snapshot_});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(snap_short)) << Describe(r);
}

// A file the backup cannot open: exit code 3, the file named, and a snapshot of everything else.
// Root opens any file, so as root the backup runs as nobody (setpriv) over a root-owned 0000 file.
TEST_F(BadInputTest, UnreadableSourceFileGivesPartialSnapshot) {
  std::vector<std::string> as_user;
  if (geteuid() == 0) {
    std::string setpriv = FindProgram("setpriv");
    if (setpriv.empty()) {
      if (InteropRequired()) FAIL() << "setpriv (util-linux) is needed to drop root";
      GTEST_SKIP() << "setpriv (util-linux) is not on PATH: cannot drop root";
    }
    as_user = {setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"};
  }
  ASSERT_NO_FATAL_FAILURE(InitAndBackup());
  WriteStringToFile(src_ / "secret", "nobody may read this\n");
  fs::permissions(src_ / "secret", fs::perms::none);
  WriteStringToFile(src_ / "dir/d.txt", "added before the second backup\n");
  if (geteuid() == 0) {
    // nobody must reach the source, the password file and the repository.
    MakeTraversable(tmp_.path(), src_ / "dir");
    chmod(password_.c_str(), 0644);
    for (const auto& e : fs::recursive_directory_iterator(repo_)) lchown(e.path().c_str(), 65534, 65534);
    lchown(repo_.c_str(), 65534, 65534);
    RunResult probe = RunCommand(
        [&] {
          auto v = as_user;
          v.insert(v.end(), {"test", "-r", (src_ / "a.txt").string()});
          return v;
        }(),
        {}, "/");
    if (probe.exit_code != 0) GTEST_SKIP() << "uid 65534 cannot reach " << src_ << " (a parent of TMPDIR is private)";
  }

  RunResult r = Cli().Fsb({"backup", "."}, src_.string(), as_user);
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("secret")) << Describe(r);
  EXPECT_EQ(ListRepoFiles(repo_, "snapshots").size(), 2u) << Describe(r);

  fs::path out = tmp_.path() / "restored";
  r = Cli().Fsb({"restore", "latest", "--target", out.string()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_FALSE(fs::exists(out / "secret"));
  CompareOptions opts;
  opts.root_metadata = false;
  opts.ignore_paths = {"secret"};
  std::vector<std::string> diffs = CompareTrees(src_, out, opts);
  EXPECT_TRUE(diffs.empty()) << "everything but the unreadable file must be in the snapshot:\n"
                             << JoinDifferences(diffs);
}

TEST_F(BadInputTest, VanishedBackupTargetIsNamed) {
  RunResult r = Cli().Fsb({"init"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  fs::path gone = tmp_.path() / "vanished-volume";
  r = Cli().Fsb({"backup", gone.string()});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(gone.string())) << Describe(r);
  EXPECT_TRUE(ListRepoFiles(repo_, "snapshots").empty()) << "a snapshot was saved without its target";
}

}  // namespace
}  // namespace fsb::testing
