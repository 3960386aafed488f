#include "repo/forget.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace fsb::repo {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// 2030-01-01T00:00:00Z: "now" for tests, after every snapshot time used below.
constexpr int64_t kNow = 1893456000;

Id TestId(int n) {
  Id id;
  id.bytes[0] = static_cast<uint8_t>(n);
  id.bytes[31] = 0xaa;
  return id;
}

SnapshotEntry Snap(int n, std::string_view time, std::string host = "h",
                   std::vector<std::string> tags = {}, std::vector<std::string> paths = {"/p"}) {
  SnapshotEntry e;
  e.id = TestId(n);
  Result<Timestamp> t = ParseTimestamp(time);
  EXPECT_TRUE(t.ok()) << time;
  e.snapshot.time = *t;
  e.snapshot.hostname = std::move(host);
  e.snapshot.tags = std::move(tags);
  e.snapshot.paths = std::move(paths);
  return e;
}

// The numbers (TestId) of the entries, in order.
std::vector<int> Numbers(const std::vector<SnapshotEntry>& v) {
  std::vector<int> out;
  for (const SnapshotEntry& e : v) out.push_back(e.id.bytes[0]);
  return out;
}

TEST(ForgetPolicyTest, EmptyPolicyKeepsEverything) {
  ForgetPolicy p;
  EXPECT_TRUE(p.Empty());
  PolicyResult r =
      ApplyPolicy({Snap(1, "2021-01-01T00:00:00Z"), Snap(2, "2021-01-02T00:00:00Z")}, p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(2, 1));
  EXPECT_THAT(r.remove, IsEmpty());
  ASSERT_EQ(r.reasons.size(), 2u);
  EXPECT_THAT(r.reasons[0].matches, ElementsAre("policy is empty"));
  // PlanForget (what the CLI uses) forgets nothing and reports no groups, as restic.
  EXPECT_THAT(PlanForget({Snap(1, "2021-01-01T00:00:00Z")}, p, GroupBy{}, kNow), IsEmpty());
}

TEST(ForgetPolicyTest, KeepLastKeepsNewestAndSortsNewestFirst) {
  ForgetPolicy p;
  p.last = 2;
  PolicyResult r = ApplyPolicy({Snap(1, "2021-01-01T00:00:00Z"), Snap(3, "2021-01-03T00:00:00Z"),
                                Snap(2, "2021-01-02T00:00:00Z")},
                               p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(3, 2));
  EXPECT_THAT(Numbers(r.remove), ElementsAre(1));
  ASSERT_EQ(r.reasons.size(), 2u);
  EXPECT_THAT(r.reasons[0].matches, ElementsAre("last snapshot"));
  EXPECT_EQ(r.reasons[0].counters[0], 1);
  EXPECT_EQ(r.reasons[1].counters[0], 0);
}

TEST(ForgetPolicyTest, KeepLastMinusOneKeepsAll) {
  ForgetPolicy p;
  p.last = -1;
  PolicyResult r =
      ApplyPolicy({Snap(1, "2021-01-01T00:00:00Z"), Snap(2, "2021-01-02T00:00:00Z")}, p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(2, 1));
  EXPECT_EQ(r.reasons[1].counters[0], -1);
}

TEST(ForgetPolicyTest, DailyKeepsNewestOfEachDay) {
  ForgetPolicy p;
  p.daily = 2;
  PolicyResult r = ApplyPolicy({Snap(1, "2021-01-01T08:00:00Z"), Snap(2, "2021-01-01T20:00:00Z"),
                                Snap(3, "2021-01-02T08:00:00Z"), Snap(4, "2021-01-02T09:00:00Z"),
                                Snap(5, "2021-01-03T01:00:00Z")},
                               p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(5, 4));
  EXPECT_THAT(Numbers(r.remove), ElementsAre(3, 2, 1));
  EXPECT_THAT(r.reasons[0].matches, ElementsAre("daily snapshot"));
}

TEST(ForgetPolicyTest, HourlyBucketsByHour) {
  ForgetPolicy p;
  p.hourly = 10;
  PolicyResult r = ApplyPolicy({Snap(1, "2021-01-01T08:05:00Z"), Snap(2, "2021-01-01T08:55:00Z"),
                                Snap(3, "2021-01-01T09:00:00Z")},
                               p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(3, 2));
  EXPECT_THAT(Numbers(r.remove), ElementsAre(1));
}

TEST(ForgetPolicyTest, WeeklyUsesIsoWeeksAcrossYearBoundary) {
  ForgetPolicy p;
  p.weekly = 10;
  // 2020-12-31 (Thu) and 2021-01-03 (Sun) are both in ISO week 2020-W53; 2021-01-04 (Mon) opens
  // 2021-W01; 2019-12-30 (Mon) is in 2020-W01, not 2019's last week.
  PolicyResult r = ApplyPolicy({Snap(1, "2020-12-31T10:00:00Z"), Snap(2, "2021-01-03T10:00:00Z"),
                                Snap(3, "2021-01-04T10:00:00Z"), Snap(4, "2019-12-30T10:00:00Z"),
                                Snap(5, "2020-01-05T10:00:00Z"), Snap(6, "2019-12-29T10:00:00Z")},
                               p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(3, 2, 5, 6));
  EXPECT_THAT(Numbers(r.remove), ElementsAre(1, 4));
}

TEST(ForgetPolicyTest, MonthlyAndYearlyAcrossYearBoundary) {
  ForgetPolicy p;
  p.monthly = 2;
  p.yearly = 3;
  PolicyResult r = ApplyPolicy({Snap(1, "2019-06-01T00:00:00Z"), Snap(2, "2020-11-30T00:00:00Z"),
                                Snap(3, "2020-12-01T00:00:00Z"), Snap(4, "2020-12-31T23:00:00Z"),
                                Snap(5, "2021-01-01T01:00:00Z")},
                               p, kNow);
  // 5: monthly+yearly (2021); 4: monthly+yearly (2020); 3, 2: same year, months used up; 1: 2019.
  EXPECT_THAT(Numbers(r.keep), ElementsAre(5, 4, 1));
  EXPECT_THAT(Numbers(r.remove), ElementsAre(3, 2));
  EXPECT_THAT(r.reasons[0].matches, ElementsAre("monthly snapshot", "yearly snapshot"));
  EXPECT_THAT(r.reasons[2].matches, ElementsAre("yearly snapshot"));
  EXPECT_EQ(r.reasons[2].counters[4], 0);  // monthly
  EXPECT_EQ(r.reasons[2].counters[5], 0);  // yearly: 3 used
}

TEST(ForgetPolicyTest, BucketsUseTheSnapshotsOwnTimeZone) {
  ForgetPolicy p;
  p.yearly = 5;
  // Both are 2020-12-31T23:30Z, but the first was taken where it was already 2021.
  PolicyResult r =
      ApplyPolicy({Snap(1, "2021-01-01T00:30:00+01:00"), Snap(2, "2020-12-31T23:29:00Z")}, p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(1, 2));
  p = {};
  p.daily = 5;
  // 2021-01-02T04:00Z is still January 1 where it was taken; 03:00Z is January 2.
  r = ApplyPolicy({Snap(1, "2021-01-01T23:00:00-05:00"), Snap(2, "2021-01-02T03:00:00Z")}, p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(1, 2));
  r = ApplyPolicy({Snap(1, "2021-01-02T00:00:00Z"), Snap(2, "2021-01-02T03:00:00+02:00")}, p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(2));  // 01:00Z is newer; both are Jan 2 locally
  EXPECT_THAT(Numbers(r.remove), ElementsAre(1));
}

TEST(ForgetPolicyTest, KeepWithinIsRelativeToNewestAndCalendarBased) {
  ForgetPolicy p;
  ASSERT_TRUE(ParseKeepDuration("1m").ok());
  p.within = *ParseKeepDuration("1m");
  // Go: March 31 minus one month is "February 31" = March 3.
  PolicyResult r = ApplyPolicy({Snap(1, "2021-03-31T12:00:00Z"), Snap(2, "2021-03-03T12:00:01Z"),
                                Snap(3, "2021-03-03T12:00:00Z"), Snap(4, "2021-02-28T12:00:00Z")},
                               p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(1, 2));
  EXPECT_THAT(Numbers(r.remove), ElementsAre(3, 4));
  EXPECT_THAT(r.reasons[0].matches, ElementsAre("within 1m"));
}

TEST(ForgetPolicyTest, KeepWithinIgnoresFutureSnapshotsForTheNewest) {
  ForgetPolicy p;
  p.within = {.days = 1};
  PolicyResult r = ApplyPolicy({Snap(1, "2040-01-01T00:00:00Z"), Snap(2, "2021-01-10T00:00:00Z"),
                                Snap(3, "2021-01-09T01:00:00Z"), Snap(4, "2021-01-08T00:00:00Z")},
                               p, kNow);
  // Newest not in the future: 2021-01-10; the future one is after the cutoff and kept too.
  EXPECT_THAT(Numbers(r.keep), ElementsAre(1, 2, 3));
  EXPECT_THAT(Numbers(r.remove), ElementsAre(4));
}

TEST(ForgetPolicyTest, KeepWithinHoursAndWithinDaily) {
  ForgetPolicy p;
  p.within_daily = {.days = 2};
  PolicyResult r = ApplyPolicy({Snap(1, "2021-01-10T20:00:00Z"), Snap(2, "2021-01-10T10:00:00Z"),
                                Snap(3, "2021-01-09T10:00:00Z"), Snap(4, "2021-01-08T21:00:00Z"),
                                Snap(5, "2021-01-08T19:00:00Z")},
                               p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(1, 3, 4));
  EXPECT_THAT(r.reasons[0].matches, ElementsAre("daily within 2d"));
  p = {};
  p.within = {.hours = 5};
  r = ApplyPolicy({Snap(1, "2021-01-10T20:00:00Z"), Snap(2, "2021-01-10T15:00:01Z"),
                   Snap(3, "2021-01-10T15:00:00Z")},
                  p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(1, 2));
}

TEST(ForgetPolicyTest, KeepTagAndWithinOrAcrossLists) {
  ForgetPolicy p;
  p.keep_tags = {"a,b", "c"};
  PolicyResult r = ApplyPolicy(
      {Snap(1, "2021-01-01T00:00:00Z", "h", {"a"}),
       Snap(2, "2021-01-02T00:00:00Z", "h", {"b", "a"}),
       Snap(3, "2021-01-03T00:00:00Z", "h", {"c"}), Snap(4, "2021-01-04T00:00:00Z", "h", {})},
      p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(3, 2));
  EXPECT_THAT(Numbers(r.remove), ElementsAre(4, 1));
  EXPECT_THAT(r.reasons[0].matches, ElementsAre("has tags [c]"));
  EXPECT_THAT(r.reasons[1].matches, ElementsAre("has tags [a, b]"));
  // Tags are not counted: they combine with the other rules.
  p.last = 1;
  r = ApplyPolicy({Snap(1, "2021-01-01T00:00:00Z", "h", {"c"}), Snap(2, "2021-01-02T00:00:00Z")}, p,
                  kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(2, 1));
  EXPECT_EQ(r.reasons[1].counters[0], 0);
}

TEST(ForgetPolicyTest, SeveralRulesGiveSeveralReasons) {
  ForgetPolicy p;
  p.last = 1;
  p.daily = 1;
  p.keep_tags = {"x"};
  p.within = {.days = 1};
  PolicyResult r = ApplyPolicy({Snap(1, "2021-01-01T00:00:00Z", "h", {"x"})}, p, kNow);
  ASSERT_EQ(r.reasons.size(), 1u);
  EXPECT_THAT(r.reasons[0].matches,
              ElementsAre("has tags [x]", "within 1d", "last snapshot", "daily snapshot"));
}

TEST(ForgetPolicyTest, KeepReasonJsonOmitsZeroCounters) {
  KeepReason kr;
  kr.snapshot.time = *ParseTimestamp("2021-01-01T00:00:00Z");
  kr.snapshot.hostname = "h";
  kr.matches = {"daily snapshot"};
  kr.counters = {0, 0, 3, 0, 0, 0};
  std::string j = KeepReasonJson(kr);
  EXPECT_THAT(j, HasSubstr("\"matches\":[\"daily snapshot\"],\"counters\":{\"daily\":3}}"));
  EXPECT_THAT(j, HasSubstr("{\"snapshot\":{\"time\":\"2021-01-01T00:00:00Z\""));
  kr.counters = {};
  EXPECT_THAT(KeepReasonJson(kr), HasSubstr("\"counters\":{}}"));
}

TEST(ForgetPolicyTest, EqualTimesAreOrderedById) {
  ForgetPolicy p;
  p.last = 1;
  PolicyResult r =
      ApplyPolicy({Snap(2, "2021-01-01T00:00:00Z"), Snap(1, "2021-01-01T00:00:00Z")}, p, kNow);
  EXPECT_THAT(Numbers(r.keep), ElementsAre(1));
}

TEST(ForgetPolicyTest, GroupsByHostAndPathsByDefault) {
  ForgetPolicy p;
  p.last = 1;
  std::vector<ForgetGroup> groups =
      PlanForget({Snap(1, "2021-01-01T00:00:00Z", "a", {}, {"/y", "/x"}),
                  Snap(2, "2021-01-02T00:00:00Z", "a", {}, {"/x", "/y"}),
                  Snap(3, "2021-01-03T00:00:00Z", "b", {"t"}, {"/x", "/y"}),
                  Snap(4, "2021-01-04T00:00:00Z", "a", {"t"}, {"/z"})},
                 p, GroupBy{}, kNow);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].host, "a");
  EXPECT_EQ(groups[0].paths, (std::vector<std::string>{"/x", "/y"}));  // sorted, as restic
  EXPECT_FALSE(groups[0].tags.has_value());
  EXPECT_THAT(Numbers(groups[0].result.keep), ElementsAre(2));
  EXPECT_THAT(Numbers(groups[0].result.remove), ElementsAre(1));
  EXPECT_EQ(groups[0].result.remove[0].snapshot.paths, (std::vector<std::string>{"/x", "/y"}));
  EXPECT_EQ(groups[1].paths, (std::vector<std::string>{"/z"}));
  EXPECT_EQ(groups[2].host, "b");
}

TEST(ForgetPolicyTest, GroupsByTagsOrNothing) {
  ForgetPolicy p;
  p.last = 1;
  std::vector<SnapshotEntry> list = {Snap(1, "2021-01-01T00:00:00Z", "a", {"y", "x"}),
                                     Snap(2, "2021-01-02T00:00:00Z", "b", {"x", "y"}),
                                     Snap(3, "2021-01-03T00:00:00Z", "a", {})};
  Result<GroupBy> by_tags = ParseGroupBy("tags");
  ASSERT_TRUE(by_tags.ok());
  std::vector<ForgetGroup> groups = PlanForget(list, p, *by_tags, kNow);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_FALSE(groups[0].tags.has_value());  // untagged: null, as Go marshals a nil slice
  EXPECT_EQ(groups[0].host, "");
  EXPECT_FALSE(groups[0].paths.has_value());
  EXPECT_EQ(groups[1].tags, (std::vector<std::string>{"x", "y"}));
  EXPECT_THAT(Numbers(groups[1].result.keep), ElementsAre(2));
  EXPECT_THAT(Numbers(groups[1].result.remove), ElementsAre(1));

  Result<GroupBy> none = ParseGroupBy("");
  ASSERT_TRUE(none.ok());
  groups = PlanForget(list, p, *none, kNow);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_THAT(Numbers(groups[0].result.keep), ElementsAre(3));
}

TEST(ForgetPolicyTest, ParseGroupByRejectsUnknown) {
  Result<GroupBy> g = ParseGroupBy("host,colour");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(g.status().message(), HasSubstr("unknown grouping option: 'colour'"));
  g = ParseGroupBy("hosts,path,tag");
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->host && g->paths && g->tags);
}

TEST(ForgetPolicyTest, ParseKeepDurationAsRestic) {
  Result<KeepDuration> d = ParseKeepDuration("1y2m3d4h");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, (KeepDuration{1, 2, 3, 4}));
  EXPECT_EQ(d->ToString(), "1y2m3d4h");
  EXPECT_EQ(ParseKeepDuration("7d")->ToString(), "7d");
  EXPECT_TRUE(ParseKeepDuration("")->zero());
  for (const char* bad : {"5", "x", "3w", "1h30s", "99999999999d"}) {
    Result<KeepDuration> r = ParseKeepDuration(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    }
  }
}

TEST(ForgetPolicyTest, ValidatePolicyRejectsNegativeCounts) {
  ForgetPolicy p;
  p.daily = -2;
  EXPECT_EQ(ValidatePolicy(p).code(), StatusCode::kInvalidArgument);
  p.daily = -1;
  EXPECT_TRUE(ValidatePolicy(p).ok());
}

TEST(ForgetPolicyTest, PolicyDescriptionAsRestic) {
  ForgetPolicy p;
  p.last = 3;
  p.daily = 7;
  p.within_hourly = {.days = 1};
  p.keep_tags = {"a,b", "c"};
  p.within = {.months = 1};
  EXPECT_EQ(p.ToString(),
            "keep 3 latest, 7 daily snapshots, hourly snapshots within 1d and all snapshots with "
            "tags [[a, b] [c]] and all snapshots within 1m of the newest");
}

TEST(ForgetPolicyTest, FilterMatchesHostsTagsAndPaths) {
  SnapshotEntry e = Snap(1, "2021-01-01T00:00:00Z", "h1", {"a", "b"}, {"/x", "/y"});
  EXPECT_TRUE(SnapshotFilter{}.Matches(e.snapshot));
  EXPECT_TRUE((SnapshotFilter{{"h2", "h1"}, {}, {}}).Matches(e.snapshot));
  EXPECT_FALSE((SnapshotFilter{{"h2"}, {}, {}}).Matches(e.snapshot));
  EXPECT_TRUE((SnapshotFilter{{}, {"c", "a,b"}, {}}).Matches(e.snapshot));
  EXPECT_FALSE((SnapshotFilter{{}, {"a,c"}, {}}).Matches(e.snapshot));
  EXPECT_TRUE((SnapshotFilter{{}, {}, {"/x", "/y"}}).Matches(e.snapshot));
  EXPECT_FALSE((SnapshotFilter{{}, {}, {"/x", "/z"}}).Matches(e.snapshot));  // all paths needed
  SnapshotEntry untagged = Snap(2, "2021-01-01T00:00:00Z");
  EXPECT_TRUE((SnapshotFilter{{}, {""}, {}}).Matches(untagged.snapshot));  // "" = no tags
}

}  // namespace
}  // namespace fsb::repo
