// tests/integration/bg_process.h: a program a test runs in the background while it runs others
// (restic holding a lock while it waits on its stdin, fsb paused at a test hook, concurrent
// backups). Its stdin is a pipe the test may keep open, its stdout and stderr go to one log file.
// The destructor kills (SIGKILL) and reaps it if it still runs. Header-only; one thread at a time.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/support/test_util.h"

namespace fsb::testing {

class BackgroundProcess {
 public:
  // Starts argv (argv[0] looked up in PATH) in `cwd` (if not empty) with the test's environment
  // plus `env` ("K=V"). nullptr when pipe or fork fails.
  static std::unique_ptr<BackgroundProcess> Start(const std::vector<std::string>& argv,
                                                  const std::vector<std::string>& env,
                                                  const std::filesystem::path& log,
                                                  const std::string& cwd = {}) {
    // Everything the child needs is made before fork: only async-signal-safe calls after it.
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; e++) {
      const std::string kv = *e;
      const std::string key = kv.substr(0, kv.find('='));
      bool replaced = false;
      for (const std::string& x : env) replaced |= x.substr(0, x.find('=')) == key;
      if (!replaced) envs.push_back(kv);
    }
    envs.insert(envs.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (const std::string& kv : envs) envp.push_back(const_cast<char*>(kv.c_str()));
    envp.push_back(nullptr);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int in[2];
    if (pipe2(in, O_CLOEXEC) != 0) return nullptr;
    std::unique_ptr<BackgroundProcess> p(new BackgroundProcess);
    p->log_ = log;
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return nullptr;
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      int out = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (out < 0 || dup2(in[0], 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) _exit(127);
      if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(127);
      execvpe(args[0], args.data(), envp.data());
      _exit(127);
    }
    close(in[0]);
    p->pid_ = pid;
    p->stdin_ = in[1];
    return p;
  }

  ~BackgroundProcess() {
    CloseStdin();
    if (exit_code_ == kRunning && pid_ > 0) {
      kill(pid_, SIGKILL);
      int st = 0;
      waitpid(pid_, &st, 0);
    }
  }
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool WriteStdin(std::string_view data) {
    while (!data.empty() && stdin_ >= 0) {
      ssize_t n = write(stdin_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return stdin_ >= 0;
  }
  void CloseStdin() {
    if (stdin_ >= 0) close(stdin_);
    stdin_ = -1;
  }
  void Kill(int sig) {
    if (exit_code_ == kRunning) kill(pid_, sig);
  }
  // Its exit code (128 + signal when killed), or -1 when it is still running after `timeout`.
  int Wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (exit_code_ == kRunning) {
      int st = 0;
      pid_t r = waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return exit_code_;
  }
  std::string Output() const { return ReadFileToString(log_); }

 private:
  static constexpr int kRunning = -1000;
  BackgroundProcess() = default;
  pid_t pid_ = -1;
  int stdin_ = -1;
  int exit_code_ = kRunning;
  std::filesystem::path log_;
};

// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
inline bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace fsb::testing
