// S3 interoperability with the real restic (0.14) through s3rver 3.7.1 over TLS, with a CA and
// certificate made by openssl in the test (restic only works with s3rver over TLS: over plain
// http it sends aws-chunked bodies that s3rver stores verbatim; shared/notes/real-parts.md §1b).
// fsb writes and restic checks (--read-data) and restores; restic writes and fsb restores.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tests/support/s3_server.h"
#include "tests/support/test_util.h"

namespace fsb::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string Show(const RunResult& r) {
  return fmt::format("exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}", r.exit_code, r.out, r.err);
}

// Relative path -> content for regular files, "<dir>" for directories.
std::map<std::string, std::string> Snapshot(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const std::string rel = fs::relative(e.path(), root).string();
    if (e.is_directory()) {
      out[rel] = "<dir>";
    } else if (e.is_regular_file()) {
      out[rel] = ReadFileToString(e.path());
    }
  }
  return out;
}

class S3InteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(FsbBinary())) << FsbBinary() << " is not built";
    if (FindProgram("restic").empty()) FSB_S3_SKIP_OR_FAIL("restic is not on PATH");
    std::string why;
    if (!MakeTestCertificates(tmp_.path(), &why)) FSB_S3_SKIP_OR_FAIL(why);
    server_ = S3Server::Start({.kind = S3ServerKind::kS3rver,
                               .bucket = "",
                               .tls_key = tmp_.path() / "server.key",
                               .tls_cert = tmp_.path() / "server.crt"},
                              &why);
    if (server_ == nullptr) FSB_S3_SKIP_OR_FAIL(why);
    ca_ = (tmp_.path() / "ca.pem").string();
    WriteStringToFile(tmp_.path() / "password", "s3-interop-password\n");
    src_ = tmp_.path() / "src";
    // A small tree: empty, tiny and multi-MiB files (several packs at --pack-size 4), nesting,
    // and a duplicated file for dedup.
    for (int i = 0; i < 20; i++) {
      const fs::path p = src_ / fmt::format("dir{}", i % 3) / fmt::format("sub{}", i % 2) /
                         fmt::format("file{}.bin", i);
      fs::create_directories(p.parent_path());
      const size_t n = i == 0 ? 0 : i % 5 == 0 ? (3u << 20) + static_cast<size_t>(i) : i * 1531u;
      WriteStringToFile(p, AsString(SeededRandomBytes(100 + i, n)));
    }
    fs::copy_file(src_ / "dir1/sub1/file1.bin", src_ / "copy-of-file1.bin");
    fs::create_directories(src_ / "empty-dir");
  }

  // s3:https://127.0.0.1:PORT/BUCKET/restic/ns, the shape Velero writes.
  std::string Repo(const std::string& bucket) const {
    return fmt::format("s3:{}/{}/restic/ns", server_->url(), bucket);
  }
  std::vector<std::string> Env() const {
    return {"AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=S3RVER",
            // Set in this environment to the system bundle; point it at the test CA instead.
            "AWS_CA_BUNDLE=" + ca_, "RESTIC_PASSWORD_FILE=" + (tmp_.path() / "password").string(),
            "FSB_PASSWORD_FILE=" + (tmp_.path() / "password").string()};
  }
  RunResult Fsb(const std::string& repo, std::vector<std::string> args,
                const std::string& cwd = {}) const {
    std::vector<std::string> argv = {FsbBinary(), "-r", repo, "--cacert", ca_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, Env(), cwd);
  }
  RunResult Restic(const std::string& repo, std::vector<std::string> args,
                   const std::string& cwd = {}) const {
    std::vector<std::string> argv = {
        "restic", "-r", repo, "--cacert", ca_, "-o", "s3.region=us-east-1", "--no-cache"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, Env(), cwd);
  }

  TempDir tmp_;
  std::unique_ptr<S3Server> server_;
  std::string ca_;
  fs::path src_;
};

TEST_F(S3InteropTest, FsbBackupPassesResticCheckReadDataAndRestores) {
  const std::string repo = Repo("fsb-writes");
  RunResult r = Fsb(repo, {"init"});
  ASSERT_EQ(r.exit_code, 0) << Show(r) << "\nserver log:\n" << server_->Log();
  r = Fsb(repo, {"--pack-size", "4", "backup", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Show(r);
  // A second, incremental backup after a change.
  WriteStringToFile(src_ / "dir0" / "new.txt", "added between backups\n");
  r = Fsb(repo, {"--pack-size", "4", "backup", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Show(r);

  r = Restic(repo, {"check", "--read-data"});
  ASSERT_EQ(r.exit_code, 0) << Show(r);
  EXPECT_THAT(r.out, HasSubstr("no errors were found"));
  const fs::path target = tmp_.path() / "restic-restore";
  r = Restic(repo, {"restore", "latest", "--target", target.string()});
  ASSERT_EQ(r.exit_code, 0) << Show(r);
  EXPECT_EQ(Snapshot(target), Snapshot(src_));
}

TEST_F(S3InteropTest, ResticBackupRestoresWithFsb) {
  const std::string repo = Repo("restic-writes");
  RunResult r = Restic(repo, {"init"});
  ASSERT_EQ(r.exit_code, 0) << Show(r) << "\nserver log:\n" << server_->Log();
  r = Restic(repo, {"backup", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Show(r);

  r = Fsb(repo, {"check", "--read-data"});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  const fs::path target = tmp_.path() / "fsb-restore";
  r = Fsb(repo, {"restore", "latest", "--target", target.string()});
  ASSERT_EQ(r.exit_code, 0) << Show(r);
  EXPECT_EQ(Snapshot(target), Snapshot(src_));
}

// prune over S3: ranged reads of the packs to repack, new packs and index files, deletions.
TEST_F(S3InteropTest, FsbForgetPruneOverS3PassesResticCheckReadData) {
  const std::string repo = Repo("fsb-prunes");
  RunResult r = Fsb(repo, {"init"});
  ASSERT_EQ(r.exit_code, 0) << Show(r) << "\nserver log:\n" << server_->Log();
  r = Fsb(repo, {"--pack-size", "4", "backup", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Show(r);
  // Half of the files go, some new ones come: the first snapshot's packs are partly used.
  for (int i = 1; i < 20; i += 2) {
    fs::remove(src_ / fmt::format("dir{}", i % 3) / fmt::format("sub{}", i % 2) /
               fmt::format("file{}.bin", i));
  }
  WriteStringToFile(src_ / "dir0" / "new.bin", AsString(SeededRandomBytes(7, 500000)));
  r = Fsb(repo, {"--pack-size", "4", "backup", "."}, src_.string());
  ASSERT_EQ(r.exit_code, 0) << Show(r);
  r = Fsb(repo, {"--pack-size", "4", "forget", "--keep-last", "1", "--prune", "--max-unused", "0"});
  ASSERT_EQ(r.exit_code, 0) << Show(r);
  EXPECT_THAT(r.out, HasSubstr("1 snapshots have been removed, running prune"));
  EXPECT_THAT(r.out, HasSubstr("repacking packs"));
  r = Restic(repo, {"check", "--read-data"});
  ASSERT_EQ(r.exit_code, 0) << Show(r);
  EXPECT_THAT(r.out, HasSubstr("no errors were found"));
  const fs::path target = tmp_.path() / "restore-after-prune";
  r = Restic(repo, {"restore", "latest", "--target", target.string()});
  ASSERT_EQ(r.exit_code, 0) << Show(r);
  EXPECT_EQ(Snapshot(target), Snapshot(src_));
}

TEST_F(S3InteropTest, TlsWithoutTheCaIsRefusedUnlessInsecure) {
  const std::string repo = Repo("tls-check");
  RunResult r = RunCommand({FsbBinary(), "-r", repo, "init"},
                           {"AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=S3RVER",
                            "FSB_PASSWORD_FILE=" + (tmp_.path() / "password").string()});
  EXPECT_NE(r.exit_code, 0) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("certificate"));
  r = RunCommand({FsbBinary(), "-r", repo, "--insecure-tls", "init"},
                 {"AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=S3RVER",
                  "FSB_PASSWORD_FILE=" + (tmp_.path() / "password").string()});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
}

}  // namespace
}  // namespace fsb::testing
