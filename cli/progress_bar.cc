#include "cli/progress_bar.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

#include "cli/global.h"

namespace fsb::cli {
namespace {

std::string Clock(double secs) {
  auto s = static_cast<uint64_t>(secs);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

}  // namespace

ProgressBar::Mode ProgressBar::ChooseMode(bool json, bool quiet) {
  if (json) return Mode::kJson;
  if (quiet || !isatty(STDERR_FILENO)) return Mode::kNone;
  return Mode::kTerminal;
}

ProgressBar::ProgressBar(const uploader::Progress& progress, Mode mode, std::string verb)
    : progress_(progress), mode_(mode), verb_(std::move(verb)), start_(std::chrono::steady_clock::now()) {
  if (mode_ != Mode::kNone) thread_ = std::jthread([this](std::stop_token st) { Loop(st); });
}

ProgressBar::~ProgressBar() { Stop(); }

double ProgressBar::seconds_elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::Stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  cv_.notify_all();
  thread_.join();
  if (mode_ == Mode::kTerminal) {
    Print(true);
    std::fputc('\n', stderr);
  }
}

void ProgressBar::Loop(std::stop_token st) {
  const auto interval = mode_ == Mode::kJson ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(200);
  for (;;) {
    std::unique_lock l(mu_);
    cv_.wait_for(l, st, interval, [] { return false; });
    if (st.stop_requested()) return;
    Print(false);
  }
}

void ProgressBar::Print(bool final) {
  const uint64_t total_files = progress_.total_files.load();
  const uint64_t total_bytes = progress_.total_bytes.load();
  const uint64_t files_done = progress_.files_done.load();
  const uint64_t bytes_done = progress_.bytes_done.load();
  const double elapsed = seconds_elapsed();
  const double pct = total_bytes > 0 ? std::min(1.0, double(bytes_done) / double(total_bytes))
                                     : (total_files > 0 ? double(files_done) / double(total_files) : 0);
  const double rate = elapsed > 0 ? double(bytes_done) / elapsed : 0;
  double remaining = 0;
  if (progress_.scan_finished.load() && rate > 0 && total_bytes > bytes_done) {
    remaining = double(total_bytes - bytes_done) / rate;
  } else if (rate > 0 && pct > 0 && pct < 1) {
    remaining = elapsed * (1 - pct) / pct;
  }
  if (mode_ == Mode::kJson) {
    std::printf(
        "{\"message_type\":\"status\",\"seconds_elapsed\":%llu,\"seconds_remaining\":%llu,"
        "\"percent_done\":%.6f,\"total_files\":%llu,\"files_done\":%llu,\"total_bytes\":%llu,"
        "\"bytes_done\":%llu,\"error_count\":%llu}\n",
        (unsigned long long)elapsed, (unsigned long long)remaining, pct, (unsigned long long)total_files,
        (unsigned long long)files_done, (unsigned long long)total_bytes, (unsigned long long)bytes_done,
        (unsigned long long)progress_.errors.load());
    std::fflush(stdout);
    return;
  }
  const int width = 24;
  int fill = static_cast<int>(pct * width);
  std::string bar(static_cast<size_t>(fill), '=');
  if (fill < width) bar += '>';
  bar.resize(width, ' ');
  std::string line = fmt::format("\r[{}] [{}] {:5.1f}%  {} / {} files  {} / {}  {}/s", Clock(elapsed), bar,
                                 pct * 100, files_done, total_files, FormatBytes(bytes_done),
                                 FormatBytes(total_bytes), FormatBytes(static_cast<uint64_t>(rate)));
  if (!final && remaining > 0) line += fmt::format("  ETA {}", Clock(remaining));
  line += "\033[K";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace fsb::cli
