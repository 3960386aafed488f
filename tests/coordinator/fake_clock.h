// tests/coordinator/fake_clock.h: a Clock that only moves when the test says so. Sleepers wake
// when the time they wait for is reached. Safe for concurrent use.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stop_token>

#include "coordinator/clock.h"

namespace fsb::coordinator::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start) : now_(start) {}

  TimePoint Now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  bool SleepUntil(TimePoint t, std::stop_token stop) const override {
    std::unique_lock lock(mu_);
    sleepers_++;
    cv_.notify_all();
    const bool reached = cv_.wait(lock, stop, [&] { return now_ >= t; });
    sleepers_--;
    return reached;
  }
  void Set(TimePoint t) {
    std::lock_guard lock(mu_);
    now_ = t;
    cv_.notify_all();
  }
  void Advance(std::chrono::system_clock::duration d) {
    std::lock_guard lock(mu_);
    now_ += d;
    cv_.notify_all();
  }
  // Blocks until at least `n` threads sleep on this clock, or `timeout` (real time) passes.
  bool WaitForSleepers(int n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return sleepers_ >= n; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable_any cv_;
  TimePoint now_;             // guarded by mu_
  mutable int sleepers_ = 0;  // guarded by mu_
};

}  // namespace fsb::coordinator::testing
