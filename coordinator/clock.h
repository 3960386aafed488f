// coordinator/clock.h: the time seam of the coordinator's timed controllers (Schedule,
// maintenance, backup GC): what time it is, and a sleep until a wall-clock time that a stop token
// cuts short. The real clock is SystemClock; tests pass a fake one that they move by hand, so a
// Schedule can fire twice in a test without waiting for a minute boundary.
// Thread-safety: implementations are safe for concurrent use (several controllers share one).
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stop_token>

namespace fsb::coordinator {

using TimePoint = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  // Blocks until Now() >= `t` (true) or `stop` is requested (false, at once).
  virtual bool SleepUntil(TimePoint t, std::stop_token stop) const = 0;
};

// The wall clock. A sleep re-reads the time at least every `kMaxSleepSlice`, so a wall-clock
// step (NTP, a VM resumed) delays a due Schedule by at most that much.
class SystemClock final : public Clock {
 public:
  static constexpr std::chrono::seconds kMaxSleepSlice{60};

  TimePoint Now() const override { return std::chrono::system_clock::now(); }
  bool SleepUntil(TimePoint t, std::stop_token stop) const override {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    while (!stop.stop_requested()) {
      const TimePoint now = Now();
      if (now >= t) return true;
      const auto slice = std::min<std::chrono::system_clock::duration>(t - now, kMaxSleepSlice);
      cv.wait_for(lock, stop, slice, [] { return false; });
    }
    return false;
  }
};

}  // namespace fsb::coordinator
