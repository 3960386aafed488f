// agent/metrics.h: the agent's Prometheus metrics, rendered in the text exposition format for
// GET /metrics. fsb's own families (fsb_pod_volume_*) plus the two counters Velero's node-agent
// exports and dashboards use (podVolume_pod_volume_backup_enqueue_count / _dequeue_count).
// Safe for concurrent use: jobs record from their threads, the HTTP server renders.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace fsb::agent {

enum class Operation { kBackup, kRestore };
enum class Outcome { kCompleted, kFailed, kCanceled };

class Metrics {
 public:
  explicit Metrics(std::string node);

  void Started(Operation op);
  // `bytes`: the volume's bytes processed; `seconds`: from InProgress to the final phase.
  void Finished(Operation op, Outcome outcome, uint64_t bytes, double seconds);

  std::string Render() const;

  // Histogram buckets, in seconds: Velero's latency buckets with small ones added, since fsb
  // finishes most volumes in seconds.
  static constexpr std::array<double, 13> kBuckets = {1,   5,    10,   30,   60,    300,  600,
                                                      900, 1800, 3600, 7200, 10800, 14400};

 private:
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> counts{};
    uint64_t count = 0;
    double sum = 0;
  };
  const std::string node_;
  mutable std::mutex mu_;
  std::map<std::pair<Operation, Outcome>, uint64_t> finished_;  // guarded by mu_
  std::map<Operation, uint64_t> started_, in_flight_, bytes_;   // guarded by mu_
  std::map<Operation, Histogram> duration_;                     // guarded by mu_
};

}  // namespace fsb::agent
