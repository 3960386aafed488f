#include "agent/metrics.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

namespace fsb::agent {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Sample lines (no comments) as "name{labels}" → value.
std::map<std::string, std::string> Samples(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const std::string& line : Lines(text)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    EXPECT_NE(sp, std::string::npos) << line;
    EXPECT_TRUE(out.emplace(line.substr(0, sp), line.substr(sp + 1)).second)
        << "duplicate sample " << line;
  }
  return out;
}

std::string Bucket(std::string_view op, std::string_view le) {
  return fmt::format(
      "fsb_pod_volume_operation_duration_seconds_bucket{{node=\"n1\",operation=\"{}\",le=\"{}\"}}",
      op, le);
}

TEST(MetricsTest, EveryLineIsACommentOrASample) {
  Metrics m("n1");
  const std::string text = m.Render();
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  for (const std::string& line : Lines(text)) {
    ASSERT_FALSE(line.empty());
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) continue;
    // name{labels} value
    EXPECT_THAT(line, ::testing::MatchesRegex(R"([a-zA-Z_:][a-zA-Z0-9_:]*\{.*\} [0-9.e+]+)"));
  }
}

TEST(MetricsTest, EachFamilyHasHelpThenTypeBeforeItsSamples) {
  Metrics m("n1");
  const std::vector<std::string> lines = Lines(m.Render());
  std::map<std::string, std::string> types;
  std::string current;
  for (size_t i = 0; i < lines.size(); i++) {
    const std::string& line = lines[i];
    if (line.starts_with("# HELP ")) {
      current = line.substr(7, line.find(' ', 7) - 7);
      ASSERT_LT(i + 1, lines.size());
      EXPECT_TRUE(lines[i + 1].starts_with("# TYPE " + current + " ")) << lines[i + 1];
      EXPECT_FALSE(types.contains(current)) << "family twice: " << current;
      types[current] = lines[i + 1].substr(8 + current.size());
      i++;
      continue;
    }
    // A sample belongs to the family announced last (histograms add _bucket, _sum, _count).
    const std::string name = line.substr(0, line.find('{'));
    EXPECT_TRUE(name == current || name == current + "_bucket" || name == current + "_sum" ||
                name == current + "_count")
        << name << " under " << current;
  }
  EXPECT_EQ(types["fsb_pod_volume_operations_total"], "counter");
  EXPECT_EQ(types["fsb_pod_volume_operations_started_total"], "counter");
  EXPECT_EQ(types["fsb_pod_volume_operations_in_flight"], "gauge");
  EXPECT_EQ(types["fsb_pod_volume_bytes_total"], "counter");
  EXPECT_EQ(types["fsb_pod_volume_operation_duration_seconds"], "histogram");
  EXPECT_EQ(types["podVolume_pod_volume_backup_enqueue_count"], "counter");
  EXPECT_EQ(types["podVolume_pod_volume_backup_dequeue_count"], "counter");
}

TEST(MetricsTest, StartsAtZeroForEveryOperationAndOutcome) {
  Metrics m("n1");
  std::map<std::string, std::string> s = Samples(m.Render());
  for (const char* op : {"backup", "restore"}) {
    for (const char* result : {"completed", "failed", "canceled"}) {
      EXPECT_EQ(s[fmt::format("fsb_pod_volume_operations_total{{node=\"n1\",operation=\"{}\","
                              "result=\"{}\"}}",
                              op, result)],
                "0");
    }
    EXPECT_EQ(
        s[fmt::format("fsb_pod_volume_operations_in_flight{{node=\"n1\",operation=\"{}\"}}", op)],
        "0");
  }
  // Velero initialises its enqueue counter to 0 for the node at start-up (§10).
  EXPECT_EQ(s["podVolume_pod_volume_backup_enqueue_count{node=\"n1\"}"], "0");
  EXPECT_EQ(s["podVolume_pod_volume_backup_dequeue_count{node=\"n1\"}"], "0");
}

TEST(MetricsTest, CountersAfterStartedAndFinished) {
  Metrics m("n1");
  m.Started(Operation::kBackup);
  m.Started(Operation::kBackup);
  m.Started(Operation::kBackup);
  m.Started(Operation::kRestore);
  m.Finished(Operation::kBackup, Outcome::kCompleted, 1000, 2);
  m.Finished(Operation::kBackup, Outcome::kFailed, 24, 3);
  m.Finished(Operation::kRestore, Outcome::kCanceled, 5, 1);
  std::map<std::string, std::string> s = Samples(m.Render());
  EXPECT_EQ(s["fsb_pod_volume_operations_started_total{node=\"n1\",operation=\"backup\"}"], "3");
  EXPECT_EQ(s["fsb_pod_volume_operations_started_total{node=\"n1\",operation=\"restore\"}"], "1");
  EXPECT_EQ(s["fsb_pod_volume_operations_in_flight{node=\"n1\",operation=\"backup\"}"], "1");
  EXPECT_EQ(s["fsb_pod_volume_operations_in_flight{node=\"n1\",operation=\"restore\"}"], "0");
  EXPECT_EQ(s["fsb_pod_volume_operations_total{node=\"n1\",operation=\"backup\",result="
              "\"completed\"}"],
            "1");
  EXPECT_EQ(
      s["fsb_pod_volume_operations_total{node=\"n1\",operation=\"backup\",result=\"failed\"}"],
      "1");
  EXPECT_EQ(
      s["fsb_pod_volume_operations_total{node=\"n1\",operation=\"restore\",result=\"canceled\"}"],
      "1");
  EXPECT_EQ(s["fsb_pod_volume_bytes_total{node=\"n1\",operation=\"backup\"}"], "1024");
  EXPECT_EQ(s["fsb_pod_volume_bytes_total{node=\"n1\",operation=\"restore\"}"], "5");
  EXPECT_EQ(s["podVolume_pod_volume_backup_enqueue_count{node=\"n1\"}"], "3");
  // Velero counts only successful backups as dequeued.
  EXPECT_EQ(s["podVolume_pod_volume_backup_dequeue_count{node=\"n1\"}"], "1");
}

TEST(MetricsTest, FinishedWithoutStartedDoesNotUnderflowInFlight) {
  Metrics m("n1");
  m.Finished(Operation::kRestore, Outcome::kFailed, 0, 0);
  std::map<std::string, std::string> s = Samples(m.Render());
  EXPECT_EQ(s["fsb_pod_volume_operations_in_flight{node=\"n1\",operation=\"restore\"}"], "0");
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Metrics m("n1");
  for (double secs : {0.5, 1.0, 4.0, 45.0, 45.0, 20000.0})
    m.Finished(Operation::kBackup, Outcome::kCompleted, 0, secs);
  std::map<std::string, std::string> s = Samples(m.Render());
  EXPECT_EQ(s[Bucket("backup", "1")], "2");  // 0.5 and 1.0 (le is inclusive)
  EXPECT_EQ(s[Bucket("backup", "5")], "3");
  EXPECT_EQ(s[Bucket("backup", "10")], "3");
  EXPECT_EQ(s[Bucket("backup", "30")], "3");
  EXPECT_EQ(s[Bucket("backup", "60")], "5");
  EXPECT_EQ(s[Bucket("backup", "14400")], "5");
  EXPECT_EQ(s[Bucket("backup", "+Inf")], "6");
  EXPECT_EQ(s["fsb_pod_volume_operation_duration_seconds_count{node=\"n1\",operation=\"backup\"}"],
            "6");
  EXPECT_EQ(s["fsb_pod_volume_operation_duration_seconds_sum{node=\"n1\",operation=\"backup\"}"],
            "20095.5");
  EXPECT_EQ(s[Bucket("restore", "+Inf")], "0");
  // Non-decreasing across the buckets, in order, ending at +Inf == count.
  uint64_t prev = 0;
  for (double le : Metrics::kBuckets) {
    const uint64_t n = std::stoull(s[Bucket("backup", fmt::format("{}", le))]);
    EXPECT_GE(n, prev) << le;
    prev = n;
  }
  EXPECT_LE(prev, 6u);
}

TEST(MetricsTest, NegativeOrNanDurationIsCountedAsZero) {
  Metrics m("n1");
  m.Finished(Operation::kBackup, Outcome::kCompleted, 0, -3);
  m.Finished(Operation::kBackup, Outcome::kCompleted, 0, std::nan(""));
  std::map<std::string, std::string> s = Samples(m.Render());
  EXPECT_EQ(s[Bucket("backup", "1")], "2");
  EXPECT_EQ(s["fsb_pod_volume_operation_duration_seconds_sum{node=\"n1\",operation=\"backup\"}"],
            "0");
}

TEST(MetricsTest, NodeLabelIsEscaped) {
  Metrics m("a\"b\\c\nd");
  const std::string text = m.Render();
  EXPECT_THAT(text, HasSubstr(R"(podVolume_pod_volume_backup_enqueue_count{node="a\"b\\c\nd"} 0)"));
  // No raw newline inside a sample: every line still parses.
  for (const std::string& line : Lines(text)) {
    if (line.starts_with("#")) continue;
    EXPECT_TRUE(line.starts_with("fsb_") || line.starts_with("podVolume_")) << line;
  }
}

TEST(MetricsTest, ConcurrentRecordingAndRendering) {
  Metrics m("n1");
  std::vector<std::jthread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 500; i++) {
        m.Started(Operation::kBackup);
        m.Finished(Operation::kBackup, Outcome::kCompleted, 1, 0.1);
      }
    });
  }
  threads.emplace_back([&m] {
    for (int i = 0; i < 50; i++) EXPECT_FALSE(m.Render().empty());
  });
  threads.clear();
  std::map<std::string, std::string> s = Samples(m.Render());
  EXPECT_EQ(s["podVolume_pod_volume_backup_enqueue_count{node=\"n1\"}"], "2000");
  EXPECT_EQ(s["fsb_pod_volume_bytes_total{node=\"n1\",operation=\"backup\"}"], "2000");
  EXPECT_EQ(s["fsb_pod_volume_operations_in_flight{node=\"n1\",operation=\"backup\"}"], "0");
}

}  // namespace
}  // namespace fsb::agent
