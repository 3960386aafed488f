// uploader/progress.h: counters that backup and restore workers bump and one reporter samples.
// Safe for concurrent use: workers add with relaxed atomics; readers see a recent value.
#pragma once

#include <atomic>
#include <cstdint>

namespace fsb::uploader {

struct Progress {
  std::atomic<uint64_t> total_files{0};  // found by the walk so far
  std::atomic<uint64_t> total_bytes{0};
  std::atomic<uint64_t> files_done{0};
  std::atomic<uint64_t> bytes_done{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<bool> scan_finished{false};  // the walk has seen everything: totals are final
};

}  // namespace fsb::uploader
