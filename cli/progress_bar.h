// cli/progress_bar.h: the one reporter that samples a Progress on a timer (CONVENTIONS §6):
// a live bar with rate and ETA on a terminal, restic's JSON "status" lines with --json, nothing
// when quiet. Its thread is its own; Stop (or the destructor) joins it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "uploader/progress.h"

namespace fsb::cli {

class ProgressBar {
 public:
  enum class Mode { kNone, kTerminal, kJson };
  // Picks kJson with json, kNone when quiet or stderr is not a terminal, else kTerminal.
  static Mode ChooseMode(bool json, bool quiet);

  ProgressBar(const uploader::Progress& progress, Mode mode, std::string verb);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  void Stop();
  double seconds_elapsed() const;

 private:
  void Loop(std::stop_token st);
  void Print(bool final);

  const uploader::Progress& progress_;
  Mode mode_;
  std::string verb_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::jthread thread_;
};

}  // namespace fsb::cli
