#include "coordinator/cron.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kube/objects.h"

namespace fsb::coordinator {
namespace {

using ::testing::HasSubstr;

TimePoint T(std::string_view rfc3339) {
  Result<TimePoint> t = kube::ParseTime(rfc3339);
  EXPECT_TRUE(t.ok()) << rfc3339;
  return t.ok() ? *t : TimePoint{};
}

std::string Next(std::string_view spec, std::string_view after) {
  Result<CronSchedule> c = CronSchedule::Parse(spec);
  EXPECT_TRUE(c.ok()) << spec << ": " << c.status().ToString();
  if (!c.ok()) return "parse error";
  std::optional<TimePoint> n = c->NextAfter(T(after));
  return n ? kube::FormatTime(*n) : "never";
}

std::string ParseError(std::string_view spec) {
  Result<CronSchedule> c = CronSchedule::Parse(spec);
  EXPECT_FALSE(c.ok()) << spec;
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  return c.status().message();
}

TEST(CronScheduleTest, StepsAndRanges) {
  EXPECT_EQ(Next("*/15 * * * *", "2026-11-26T10:07:30Z"), "2026-11-26T10:15:00Z");
  EXPECT_EQ(Next("*/15 * * * *", "2026-11-26T10:45:00Z"), "2026-11-26T11:00:00Z");
  // N/step is N-max/step.
  EXPECT_EQ(Next("5/20 * * * *", "2026-11-26T10:06:00Z"), "2026-11-26T10:25:00Z");
  EXPECT_EQ(Next("5/20 * * * *", "2026-11-26T10:45:00Z"), "2026-11-26T11:05:00Z");
  EXPECT_EQ(Next("10-20/5 * * * *", "2026-11-26T10:16:00Z"), "2026-11-26T10:20:00Z");
  EXPECT_EQ(Next("10-20/5 * * * *", "2026-11-26T10:20:00Z"), "2026-11-26T11:10:00Z");
  EXPECT_EQ(Next("0,30 9-17 * * *", "2026-11-26T17:30:00Z"), "2026-11-27T09:00:00Z");
  EXPECT_EQ(Next("? ? ? ? ?", "2026-11-26T10:07:30Z"), "2026-11-26T10:08:00Z");
}

TEST(CronScheduleTest, StrictlyAfterWholeMinutes) {
  EXPECT_EQ(Next("* * * * *", "2026-11-26T10:07:00Z"), "2026-11-26T10:08:00Z");
  EXPECT_EQ(Next("* * * * *", "2026-11-26T10:07:59Z"), "2026-11-26T10:08:00Z");
  EXPECT_EQ(Next("0 3 * * *", "2026-11-26T03:00:00Z"), "2026-11-27T03:00:00Z");
  EXPECT_EQ(Next("0 3 * * *", "2026-11-26T02:59:59Z"), "2026-11-26T03:00:00Z");
}

TEST(CronScheduleTest, DayOfMonthOrDayOfWeekWhenBothRestricted) {
  // 2026-11-26 is a Thursday. Both fields restricted: either matches (classic cron).
  EXPECT_EQ(Next("0 0 1 * MON", "2026-11-26T12:00:00Z"), "2026-11-30T00:00:00Z");  // a Monday
  EXPECT_EQ(Next("0 0 1 * MON", "2026-11-30T00:00:00Z"), "2026-12-01T00:00:00Z");  // the 1st
  // A step without a star is a restriction too (robfig): */2 on odd days, or Mondays.
  EXPECT_EQ(Next("0 0 */2 * 1", "2026-11-27T12:00:00Z"), "2026-11-29T00:00:00Z");
  EXPECT_EQ(Next("0 0 2-31/2 * 1", "2026-11-28T12:00:00Z"), "2026-11-30T00:00:00Z");
}

TEST(CronScheduleTest, StarInOneDayFieldLetsTheOtherDecide) {
  EXPECT_EQ(Next("0 0 * * MON", "2026-11-26T12:00:00Z"), "2026-11-30T00:00:00Z");
  EXPECT_EQ(Next("0 0 13 * ?", "2026-11-26T12:00:00Z"), "2026-12-13T00:00:00Z");
  // */1 keeps the star (robfig sets it for steps of 1).
  EXPECT_EQ(Next("0 0 */1 * FRI", "2026-11-26T12:00:00Z"), "2026-11-27T00:00:00Z");
  EXPECT_EQ(Next("0 0 1 * */1", "2026-11-26T12:00:00Z"), "2026-12-01T00:00:00Z");
}

TEST(CronScheduleTest, NamesAnyCase) {
  EXPECT_EQ(Next("0 12 * jan-MAR Sun,sat", "2026-11-26T12:00:00Z"), "2027-01-02T12:00:00Z");
  EXPECT_EQ(Next("0 0 1 Dec *", "2026-11-26T12:00:00Z"), "2026-12-01T00:00:00Z");
  EXPECT_EQ(Next("0 0 * * sun-tue", "2026-11-26T12:00:00Z"), "2026-11-29T00:00:00Z");
}

TEST(CronScheduleTest, MonthEndsAndLeapYears) {
  EXPECT_EQ(Next("0 0 31 * *", "2026-01-31T00:00:00Z"), "2026-03-31T00:00:00Z");
  EXPECT_EQ(Next("0 0 31 * *", "2026-05-31T00:00:00Z"), "2026-07-31T00:00:00Z");
  EXPECT_EQ(Next("0 0 30 * *", "2026-01-30T00:00:00Z"), "2026-03-30T00:00:00Z");
  EXPECT_EQ(Next("0 0 29 2 *", "2025-03-01T00:00:00Z"), "2028-02-29T00:00:00Z");
  EXPECT_EQ(Next("0 0 * * *", "2024-02-28T23:59:00Z"), "2024-02-29T00:00:00Z");
  EXPECT_EQ(Next("0 0 * * *", "2023-02-28T23:59:00Z"), "2023-03-01T00:00:00Z");
  EXPECT_EQ(Next("59 23 31 12 *", "2026-12-31T23:59:00Z"), "2027-12-31T23:59:00Z");
  EXPECT_EQ(Next("0 0 1 1 *", "2026-12-31T23:59:59Z"), "2027-01-01T00:00:00Z");
  // 2100 is not a leap year: from 2096 the next Feb 29 is 2104, past robfig's five years.
  EXPECT_EQ(Next("0 0 29 2 *", "2096-03-01T00:00:00Z"), "never");
  EXPECT_EQ(Next("0 0 30 2 *", "2026-01-01T00:00:00Z"), "never");
}

TEST(CronScheduleTest, Descriptors) {
  EXPECT_EQ(Next("@hourly", "2026-11-26T10:07:30Z"), "2026-11-26T11:00:00Z");
  EXPECT_EQ(Next("@daily", "2026-11-26T10:07:30Z"), "2026-11-27T00:00:00Z");
  EXPECT_EQ(Next("@midnight", "2026-11-26T10:07:30Z"), "2026-11-27T00:00:00Z");
  EXPECT_EQ(Next("@weekly", "2026-11-26T10:07:30Z"), "2026-11-29T00:00:00Z");  // Sunday
  EXPECT_EQ(Next("@monthly", "2026-11-26T10:07:30Z"), "2026-12-01T00:00:00Z");
  EXPECT_EQ(Next("@yearly", "2026-11-26T10:07:30Z"), "2027-01-01T00:00:00Z");
  EXPECT_EQ(Next("@annually", "2026-11-26T10:07:30Z"), "2027-01-01T00:00:00Z");
}

TEST(CronScheduleTest, EveryCountsFromTheGivenTime) {
  EXPECT_EQ(Next("@every 1h30m", "2026-11-26T10:07:30Z"), "2026-11-26T11:37:30Z");
  EXPECT_EQ(Next("@every 90s", "2026-11-26T10:07:30Z"), "2026-11-26T10:09:00Z");
  Result<CronSchedule> c = CronSchedule::Parse("@every 500ms");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->is_every());
  // Below a second is a second; fractions of the given time are dropped first.
  EXPECT_EQ(c->NextAfter(T("2026-11-26T10:07:30.700Z")), T("2026-11-26T10:07:31Z"));
  Result<CronSchedule> d = CronSchedule::Parse("@every 1.5s");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->NextAfter(T("2026-11-26T10:07:30Z")), T("2026-11-26T10:07:31Z"));
}

TEST(CronScheduleTest, UtcTimeZonePrefixAccepted) {
  EXPECT_EQ(Next("CRON_TZ=UTC 0 3 * * *", "2026-11-26T10:00:00Z"), "2026-11-27T03:00:00Z");
  EXPECT_EQ(Next("TZ=Etc/UTC   @daily", "2026-11-26T10:00:00Z"), "2026-11-27T00:00:00Z");
}

TEST(CronScheduleTest, OtherTimeZonesRejected) {
  EXPECT_THAT(ParseError("CRON_TZ=Europe/Berlin 0 3 * * *"),
              HasSubstr("time zone Europe/Berlin is not supported"));
  EXPECT_THAT(ParseError("TZ=America/New_York 0 3 * * *"), HasSubstr("UTC"));
  EXPECT_THAT(ParseError("TZ=UTC"), HasSubstr("no schedule after the time zone"));
}

TEST(CronScheduleTest, MalformedWithRobfigMessages) {
  EXPECT_EQ(ParseError(""), "empty spec string");
  EXPECT_EQ(ParseError("* * * *"), "expected exactly 5 fields, found 4: [* * * *]");
  EXPECT_EQ(ParseError("0 * * * * *"), "expected exactly 5 fields, found 6: [0 * * * * *]");
  EXPECT_EQ(ParseError("60 * * * *"), "end of range (60) above maximum (59): 60");
  EXPECT_EQ(ParseError("* 24 * * *"), "end of range (24) above maximum (23): 24");
  EXPECT_EQ(ParseError("* * 0 * *"), "beginning of range (0) below minimum (1): 0");
  EXPECT_EQ(ParseError("* * * 13 *"), "end of range (13) above maximum (12): 13");
  EXPECT_EQ(ParseError("* * * * 7"), "end of range (7) above maximum (6): 7");
  EXPECT_EQ(ParseError("5-1 * * * *"), "beginning of range (5) beyond end of range (1): 5-1");
  EXPECT_EQ(ParseError("1-2-3 * * * *"), "too many hyphens: 1-2-3");
  EXPECT_EQ(ParseError("*/2/3 * * * *"), "too many slashes: */2/3");
  EXPECT_EQ(ParseError("*/0 * * * *"), "step of range should be a positive number: */0");
  EXPECT_EQ(ParseError("x * * * *"),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax");
  EXPECT_EQ(ParseError("*/-1 * * * *"), "negative number (-1) not allowed: -1");
  EXPECT_EQ(ParseError("* * * FOO *"),
            "failed to parse int from FOO: strconv.Atoi: parsing \"FOO\": invalid syntax");
  EXPECT_EQ(ParseError("@often"), "unrecognized descriptor: @often");
  EXPECT_EQ(ParseError("@daily "), "unrecognized descriptor: @daily ");
  EXPECT_THAT(ParseError("@every 1d"), HasSubstr("failed to parse duration @every 1d"));
  EXPECT_THAT(ParseError("@every"), HasSubstr("unrecognized descriptor"));
}

TEST(CronScheduleTest, LatestDueIsTheLastActivationBeforeNow) {
  Result<CronSchedule> hourly = CronSchedule::Parse("0 * * * *");
  ASSERT_TRUE(hourly.ok());
  EXPECT_EQ(hourly->LatestDue(T("2026-11-26T10:00:00Z"), T("2026-11-26T10:59:59Z")), std::nullopt);
  EXPECT_EQ(hourly->LatestDue(T("2026-11-26T10:00:00Z"), T("2026-11-26T11:00:00Z")),
            T("2026-11-26T11:00:00Z"));
  EXPECT_EQ(hourly->LatestDue(T("2026-11-26T10:00:00Z"), T("2026-11-26T14:30:00Z")),
            T("2026-11-26T14:00:00Z"));
  // A last run long ago does not mean a long walk, and the answer does not depend on it.
  EXPECT_EQ(hourly->LatestDue(T("2016-01-01T00:00:00Z"), T("2026-11-26T14:30:00Z")),
            T("2026-11-26T14:00:00Z"));
  Result<CronSchedule> leap = CronSchedule::Parse("0 0 29 2 *");
  ASSERT_TRUE(leap.ok());
  EXPECT_EQ(leap->LatestDue(T("2023-01-01T00:00:00Z"), T("2026-11-26T14:30:00Z")),
            T("2024-02-29T00:00:00Z"));
  Result<CronSchedule> every = CronSchedule::Parse("@every 1h");
  ASSERT_TRUE(every.ok());
  EXPECT_EQ(every->LatestDue(T("2026-11-26T10:15:00Z"), T("2026-11-26T13:20:00Z")),
            T("2026-11-26T13:15:00Z"));
  EXPECT_EQ(every->LatestDue(T("2026-11-26T10:15:00Z"), T("2026-11-26T11:14:59Z")), std::nullopt);
}

}  // namespace
}  // namespace fsb::coordinator
