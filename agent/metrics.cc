#include "agent/metrics.h"

#include <fmt/format.h>

namespace fsb::agent {
namespace {

std::string_view OpName(Operation op) { return op == Operation::kBackup ? "backup" : "restore"; }

std::string_view OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kCompleted:
      return "completed";
    case Outcome::kFailed:
      return "failed";
    case Outcome::kCanceled:
      return "canceled";
  }
  return "unknown";
}

// Label values are escaped as the exposition format requires.
std::string Escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

Metrics::Metrics(std::string node) : node_(Escape(node)) {
  for (Operation op : {Operation::kBackup, Operation::kRestore}) {
    started_[op] = 0;
    in_flight_[op] = 0;
    bytes_[op] = 0;
    duration_[op] = Histogram{};
    for (Outcome o : {Outcome::kCompleted, Outcome::kFailed, Outcome::kCanceled})
      finished_[{op, o}] = 0;
  }
}

void Metrics::Started(Operation op) {
  std::lock_guard l(mu_);
  started_[op]++;
  in_flight_[op]++;
}

void Metrics::Finished(Operation op, Outcome outcome, uint64_t bytes, double seconds) {
  std::lock_guard l(mu_);
  finished_[{op, outcome}]++;
  if (in_flight_[op] > 0) in_flight_[op]--;
  bytes_[op] += bytes;
  if (!(seconds >= 0)) seconds = 0;  // NaN or a clock stepped back: not a negative duration
  Histogram& h = duration_[op];
  for (size_t i = 0; i < kBuckets.size(); i++)
    if (seconds <= kBuckets[i]) h.counts[i]++;
  h.count++;
  h.sum += seconds;
}

std::string Metrics::Render() const {
  std::lock_guard l(mu_);
  std::string out;
  auto family = [&](std::string_view name, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  family("fsb_pod_volume_operations_total", "counter",
         "Pod volume backups and restores that reached a final phase, by result.");
  for (const auto& [key, n] : finished_) {
    out += fmt::format(
        "fsb_pod_volume_operations_total{{node=\"{}\",operation=\"{}\",result=\"{}\"}} {}\n", node_,
        OpName(key.first), OutcomeName(key.second), n);
  }
  family("fsb_pod_volume_operations_started_total", "counter",
         "Pod volume backups and restores started.");
  for (const auto& [op, n] : started_) {
    out +=
        fmt::format("fsb_pod_volume_operations_started_total{{node=\"{}\",operation=\"{}\"}} {}\n",
                    node_, OpName(op), n);
  }
  family("fsb_pod_volume_operations_in_flight", "gauge",
         "Pod volume backups and restores running now.");
  for (const auto& [op, n] : in_flight_) {
    out += fmt::format("fsb_pod_volume_operations_in_flight{{node=\"{}\",operation=\"{}\"}} {}\n",
                       node_, OpName(op), n);
  }
  family("fsb_pod_volume_bytes_total", "counter",
         "Bytes of pod volumes processed by finished operations.");
  for (const auto& [op, n] : bytes_) {
    out += fmt::format("fsb_pod_volume_bytes_total{{node=\"{}\",operation=\"{}\"}} {}\n", node_,
                       OpName(op), n);
  }
  family("fsb_pod_volume_operation_duration_seconds", "histogram",
         "Time from InProgress to the final phase of pod volume operations.");
  for (const auto& [op, h] : duration_) {
    for (size_t i = 0; i < kBuckets.size(); i++) {
      out += fmt::format(
          "fsb_pod_volume_operation_duration_seconds_bucket{{node=\"{}\",operation=\"{}\",le=\"{}"
          "\"}} {}\n",
          node_, OpName(op), kBuckets[i], h.counts[i]);
    }
    out += fmt::format(
        "fsb_pod_volume_operation_duration_seconds_bucket{{node=\"{}\",operation=\"{}\",le=\"+"
        "Inf\"}} {}\n",
        node_, OpName(op), h.count);
    out += fmt::format(
        "fsb_pod_volume_operation_duration_seconds_sum{{node=\"{}\",operation=\"{}\"}} {}\n", node_,
        OpName(op), h.sum);
    out += fmt::format(
        "fsb_pod_volume_operation_duration_seconds_count{{node=\"{}\",operation=\"{}\"}} {}\n",
        node_, OpName(op), h.count);
  }
  // Velero's node-agent names (velero-fs-backup.md §10), for existing dashboards.
  family("podVolume_pod_volume_backup_enqueue_count", "counter",
         "Total number of pod volume backups enqueued.");
  out += fmt::format("podVolume_pod_volume_backup_enqueue_count{{node=\"{}\"}} {}\n", node_,
                     started_.at(Operation::kBackup));
  family("podVolume_pod_volume_backup_dequeue_count", "counter",
         "Total number of pod volume backups completed.");
  out += fmt::format("podVolume_pod_volume_backup_dequeue_count{{node=\"{}\"}} {}\n", node_,
                     finished_.at({Operation::kBackup, Outcome::kCompleted}));
  return out;
}

}  // namespace fsb::agent
