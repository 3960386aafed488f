// tests/support/child_process.h: a program started in the background by a test (the fsb agent,
// a server), its stdout and stderr going to a log file. Killed (SIGKILL) and reaped by the
// destructor; it also dies with the test process (PR_SET_PDEATHSIG). One thread at a time.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace fsb::testing {

class ChildProcess {
 public:
  // Starts argv[0] (an absolute path) with the test's environment plus `env` ("K=V" entries
  // replacing same-named ones). nullptr when fork fails.
  static std::unique_ptr<ChildProcess> Start(const std::vector<std::string>& argv,
                                             const std::vector<std::string>& env,
                                             const std::filesystem::path& log);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits until it exits; its exit code (128+signal when killed), or -1 after `timeout`.
  int Wait(std::chrono::milliseconds timeout);
  bool running();
  std::string log() const;  // what it printed so far

 private:
  ChildProcess() = default;
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::filesystem::path log_;
};

}  // namespace fsb::testing
