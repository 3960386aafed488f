// fsb and the real restic 0.14 honour each other's locks (issue #9), both ways:
// - fsb holds a lock while paused at its test hook (FSB_TEST_LOCK_HOLD_FILE, cli/global.cc);
// - restic holds an exclusive lock while `restic key passwd` waits for the new password on its
//   stdin, and a shared one while `restic backup --stdin` reads its stdin: the test keeps that
//   pipe open as long as it wants the lock held.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "repo/lock.h"
#include "tests/integration/bg_process.h"
#include "tests/integration/integration_util.h"
#include "tests/support/test_util.h"

namespace fsb::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

#define REQUIRE_RESTIC()                                                                  \
  do {                                                                                    \
    if (FindProgram("restic").empty()) {                                                  \
      if (InteropRequired()) FAIL() << "restic is not on PATH but FSB_REQUIRE_INTEROP=1"; \
      GTEST_SKIP() << "restic is not on PATH";                                            \
    }                                                                                     \
  } while (0)

class LockInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(FsbBinary())) << FsbBinary() << " is not built";
    WriteStringToFile(tmp_.path() / "password", "lock-interop\n");
    fs::create_directories(src_);
    WriteStringToFile(src_ / "a.txt", "some data to back up\n");
    WriteStringToFile(src_ / "b.bin", std::string(AsString(SeededRandomBytes(3, 200000))));
  }

  RepoCli Cli() const { return RepoCli(repo_, tmp_.path() / "password"); }
  std::vector<std::string> FsbEnv() const {
    return {"FSB_PASSWORD_FILE=" + (tmp_.path() / "password").string()};
  }
  std::vector<std::string> ResticEnv() const {
    return {"RESTIC_PASSWORD_FILE=" + (tmp_.path() / "password").string()};
  }
  std::vector<std::string> FsbArgv(std::vector<std::string> args) const {
    std::vector<std::string> argv = {FsbBinary(), "-r", repo_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  std::vector<std::string> ResticArgv(std::vector<std::string> args) const {
    std::vector<std::string> argv = {"restic", "-r", repo_.string(), "--no-cache"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  size_t LockFiles() const {
    size_t n = 0;
    if (fs::exists(repo_ / "locks")) {
      // Only finished lock files: 64 hex digits (restic writes "<name>-tmp-<random>" first).
      for (auto& e : fs::directory_iterator(repo_ / "locks")) {
        const std::string name = e.path().filename().string();
        n += name.size() == 64 && name.find_first_not_of("0123456789abcdef") == std::string::npos;
      }
    }
    return n;
  }
  // A restic process holding its lock until its stdin closes.
  std::unique_ptr<BackgroundProcess> ResticHolding(std::vector<std::string> args) {
    const size_t before = LockFiles();
    auto p = BackgroundProcess::Start(ResticArgv(args), ResticEnv(), tmp_.path() / "restic.log");
    EXPECT_NE(p, nullptr);
    EXPECT_TRUE(WaitFor([&] { return LockFiles() > before; }, 60s)) << p->Output();
    return p;
  }
  // An fsb command paused at its test hook, holding its lock until Release.
  std::unique_ptr<BackgroundProcess> FsbHolding(std::vector<std::string> args,
                                                const std::string& name) {
    hold_ = tmp_.path() / ("hold-" + name);
    auto p = BackgroundProcess::Start(FsbArgv(args),
                                      {FsbEnv()[0], "FSB_TEST_LOCK_HOLD_FILE=" + hold_.string()},
                                      tmp_.path() / (name + ".log"), src_.string());
    EXPECT_NE(p, nullptr);
    EXPECT_TRUE(WaitFor([&] { return fs::exists(hold_); }, 60s)) << p->Output();
    return p;
  }
  void Release() { fs::remove(hold_); }

  TempDir tmp_;
  fs::path repo_ = tmp_.path() / "repo";
  fs::path src_ = tmp_.path() / "src";
  fs::path hold_;
};

TEST_F(LockInteropTest, ResticRefusesWhileFsbHoldsAnExclusiveLock) {
  REQUIRE_RESTIC();
  RepoCli cli = Cli();
  ASSERT_EQ(cli.Fsb({"init"}).exit_code, 0);
  ASSERT_EQ(cli.Fsb({"backup", "."}, src_.string()).exit_code, 0);
  auto prune = FsbHolding({"prune"}, "prune");
  RunResult r = cli.Restic({"backup", "."}, src_.string());
  EXPECT_NE(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("repository is already locked exclusively"));
  r = cli.Restic({"check"});
  EXPECT_NE(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("already locked"));
  // fsb itself names the holder: its PID, host, user and age.
  r = cli.Fsb({"backup", "."}, src_.string());
  EXPECT_NE(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("repository is already locked exclusively by PID " +
                               std::to_string(prune->pid()) + " on host " + repo::Hostname()));
  EXPECT_THAT(r.err, HasSubstr("(age "));
  // A backup with --retry-lock waits for it and then runs.
  auto waiting = BackgroundProcess::Start(FsbArgv({"backup", "--retry-lock", "2m", "-v", "."}),
                                          FsbEnv(), tmp_.path() / "waiting.log", src_.string());
  ASSERT_TRUE(
      WaitFor([&] { return waiting->Output().find("waiting for lock") != std::string::npos; }, 60s))
      << waiting->Output();
  Release();
  EXPECT_EQ(prune->Wait(120s), 0) << prune->Output();
  EXPECT_EQ(waiting->Wait(120s), 0) << waiting->Output();
  r = cli.Restic({"backup", "."}, src_.string());
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(LockFiles(), 0u);
}

TEST_F(LockInteropTest, FsbRefusesWhileResticHoldsAnExclusiveLock) {
  REQUIRE_RESTIC();
  RepoCli cli = Cli();
  ASSERT_EQ(cli.Fsb({"init"}).exit_code, 0);  // its key opens fast for both tools
  ASSERT_EQ(cli.Restic({"backup", "."}, src_.string()).exit_code, 0);
  // `restic key passwd` takes an exclusive lock, then reads the new password from stdin.
  auto passwd = ResticHolding({"key", "passwd"});
  for (const std::vector<std::string>& args : {std::vector<std::string>{"backup", "."},
                                               {"prune"},
                                               {"check"},
                                               {"forget", "--keep-last", "1"}}) {
    RunResult r = cli.Fsb(args, src_.string());
    EXPECT_NE(r.exit_code, 0) << args[0] << "\n" << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("repository is already locked exclusively by PID " +
                                 std::to_string(passwd->pid()) + " on host " + repo::Hostname()))
        << args[0];
  }
  auto waiting = BackgroundProcess::Start(FsbArgv({"backup", "--retry-lock", "2m", "-v", "."}),
                                          FsbEnv(), tmp_.path() / "waiting.log", src_.string());
  ASSERT_TRUE(
      WaitFor([&] { return waiting->Output().find("waiting for lock") != std::string::npos; }, 60s))
      << waiting->Output();
  passwd->CloseStdin();  // no new password: restic gives up and removes its lock
  EXPECT_NE(passwd->Wait(60s), -1);
  EXPECT_EQ(waiting->Wait(120s), 0) << waiting->Output();
  EXPECT_EQ(LockFiles(), 0u);
  RunResult r = cli.Restic({"check"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
}

TEST_F(LockInteropTest, FsbPruneRefusesWhileResticHoldsASharedLock) {
  REQUIRE_RESTIC();
  RepoCli cli = Cli();
  ASSERT_EQ(cli.Fsb({"init"}).exit_code, 0);
  ASSERT_EQ(cli.Fsb({"backup", "."}, src_.string()).exit_code, 0);
  auto backup =
      ResticHolding({"backup", "--stdin", "--stdin-filename", "piped.txt", "--host", "piped"});
  RunResult r = cli.Fsb({"prune"});
  EXPECT_NE(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err,
              HasSubstr("repository is already locked by PID " + std::to_string(backup->pid())));
  // Shared with shared is fine.
  r = cli.Fsb({"backup", "."}, src_.string());
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_TRUE(backup->WriteStdin("the piped file\n"));
  backup->CloseStdin();
  EXPECT_EQ(backup->Wait(60s), 0) << backup->Output();
  r = cli.Fsb({"prune"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  r = cli.Restic({"check", "--read-data"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
}

TEST_F(LockInteropTest, ResticPruneRefusesWhileFsbHoldsASharedLock) {
  REQUIRE_RESTIC();
  RepoCli cli = Cli();
  ASSERT_EQ(cli.Fsb({"init"}).exit_code, 0);
  auto backup = FsbHolding({"backup", "."}, "backup");
  RunResult r = cli.Restic({"prune"});
  EXPECT_NE(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err,
              HasSubstr("repository is already locked by PID " + std::to_string(backup->pid())));
  r = cli.Restic({"backup", "."}, src_.string());
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  Release();
  EXPECT_EQ(backup->Wait(120s), 0) << backup->Output();
  r = cli.Restic({"prune"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  r = cli.Fsb({"check", "--read-data"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
}

// restic 0.14 lets even a stale lock block it (its `unlock` removes it); fsb ignores a lock
// whose process on this host is gone instead of failing every backup until someone unlocks.
TEST_F(LockInteropTest, LockOfAKilledResticIsStaleForFsb) {
  REQUIRE_RESTIC();
  RepoCli cli = Cli();
  ASSERT_EQ(cli.Fsb({"init"}).exit_code, 0);  // its key opens fast for both tools
  auto passwd = ResticHolding({"key", "passwd"});
  passwd->Kill(SIGKILL);
  EXPECT_EQ(passwd->Wait(30s), 128 + SIGKILL);
  ASSERT_EQ(LockFiles(), 1u);  // left behind
  RunResult r = cli.Restic({"backup", "."}, src_.string());
  EXPECT_NE(r.exit_code, 0) << Describe(r);
  r = cli.Fsb({"backup", "."}, src_.string());
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("ignoring stale lock"));
  r = cli.Fsb({"unlock"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(LockFiles(), 0u);
  r = cli.Restic({"backup", "."}, src_.string());
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
}

}  // namespace
}  // namespace fsb::testing
