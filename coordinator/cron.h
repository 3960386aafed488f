// coordinator/cron.h: cron expressions as Velero's Schedule accepts them: robfig/cron v3's
// ParseStandard (what Velero's schedule controller calls), evaluated in UTC.
//
//   five fields "minute hour day-of-month month day-of-week" separated by whitespace; each a
//   comma list of `*`, `?` (same as `*`), N, N-M, with an optional /STEP (`N/STEP` = N-max/STEP);
//   months JAN–DEC and weekdays SUN–SAT by name (any case); day-of-week 0–6 (7 is out of range,
//   as in robfig); descriptors @yearly @annually @monthly @weekly @daily @midnight @hourly and
//   "@every <Go duration>" (truncated to whole seconds, at least 1 s, counted from the time given
//   to NextAfter: from the last run, not aligned to the clock).
//
// Day-of-month and day-of-week combine as robfig does: when either field is `*` or `?` (also
// `*/1`), both must match (so the other one alone decides); otherwise a day matches when either
// does (classic cron's OR: "0 0 1 * MON" runs on the 1st and on every Monday).
//
// Time zones: a "CRON_TZ=<zone> " or "TZ=<zone> " prefix is accepted for UTC (UTC, Etc/UTC, GMT,
// Etc/GMT, Zulu, Universal) and rejected with kInvalidArgument for any other zone: fsb evaluates
// every schedule in UTC, which is what Velero does in its (UTC) server pod without a prefix.
// Value type; safe for concurrent use.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "coordinator/clock.h"

namespace fsb::coordinator {

class CronSchedule {
 public:
  // kInvalidArgument with robfig's message ("expected exactly 5 fields, found 4: [* * * *]",
  // "end of range (60) above maximum (59): 60", "unrecognized descriptor: @often", "failed to
  // parse duration @every x: ...", "empty spec string"), which Velero shows as
  // "invalid schedule: <message>".
  static Result<CronSchedule> Parse(std::string_view spec);

  // The first activation strictly after `t`, at whole seconds (whole minutes for a five-field
  // expression); nullopt when there is none in the next five years (robfig's limit: "0 0 30 2 *"
  // never runs).
  std::optional<TimePoint> NextAfter(TimePoint t) const;

  // The latest activation in (`after`, `now`] counting from `after` as Velero does
  // (NextAfter(after), then each next one), or nullopt when NextAfter(after) is later than
  // `now`. For a five-field expression this is simply the last activation at or before `now`
  // when one is after `after`; cost is bounded by the activations in the last day (or year)
  // before `now`, not by how long ago `after` was.
  std::optional<TimePoint> LatestDue(TimePoint after, TimePoint now) const;

  const std::string& spec() const { return spec_; }
  bool is_every() const { return every_.count() > 0; }

 private:
  CronSchedule() = default;
  bool DayMatches(int mday, int wday) const;

  std::string spec_;
  std::chrono::seconds every_{0};  // @every: the delay; 0 for a field schedule
  uint64_t minute_ = 0, hour_ = 0, dom_ = 0, month_ = 0, dow_ = 0;  // bit N: value N matches
  bool dom_star_ = false, dow_star_ = false;
};

}  // namespace fsb::coordinator
