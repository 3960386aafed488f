#include "repo/forget.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <tuple>

namespace fsb::repo {
namespace {

// Civil-date arithmetic on the proleptic Gregorian calendar (Howard Hinnant's algorithms), used
// instead of gmtime/timegm so that any int64 time and any UTC offset work the same everywhere.
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

struct Civil {
  int64_t year;
  int month;  // 1..12
  int day;    // 1..31
};

Civil CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return {yoe + era * 400 + (m <= 2), m, d};
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// A snapshot time as Go's time.Time methods see it in the snapshot's own zone.
struct LocalTime {
  int64_t days;  // since 1970-01-01 in local civil time
  Civil date;
  int hour;
};

LocalTime ToLocal(const Timestamp& t) {
  const int64_t local = t.sec + t.utc_offset_sec;
  LocalTime lt;
  lt.days = FloorDiv(local, 86400);
  lt.date = CivilFromDays(lt.days);
  lt.hour = static_cast<int>((local - lt.days * 86400) / 3600);
  return lt;
}

// Go's ISOWeek: the year and week of the Thursday in the same Monday-based week.
std::pair<int64_t, int> IsoWeek(int64_t days) {
  const int64_t monday_based = ((days + 3) % 7 + 7) % 7;  // 1970-01-01 was a Thursday (3)
  const int64_t thursday = days - monday_based + 3;
  const Civil c = CivilFromDays(thursday);
  const int64_t yday = thursday - DaysFromCivil(c.year, 1, 1);
  return {c.year, static_cast<int>(yday / 7 + 1)};
}

// restic's bucket keys (ymdh, ymd, yw, ym, y); `nr` is the position for "last" (always unique).
enum Bucket { kLast, kHourly, kDaily, kWeekly, kMonthly, kYearly };

int64_t BucketKey(Bucket b, const Timestamp& t, int64_t nr) {
  const LocalTime lt = ToLocal(t);
  const Civil& c = lt.date;
  switch (b) {
    case kLast:
      return nr;
    case kHourly:
      return c.year * 1000000 + c.month * 10000 + c.day * 100 + lt.hour;
    case kDaily:
      return c.year * 10000 + c.month * 100 + c.day;
    case kWeekly: {
      auto [year, week] = IsoWeek(lt.days);
      return year * 100 + week;
    }
    case kMonthly:
      return c.year * 100 + c.month;
    case kYearly:
      return c.year;
  }
  return nr;
}

// Go: t.AddDate(-y, -m, -d).Add(-h hours) in t's fixed zone. AddDate normalises out-of-range
// months into years and days into months ("March 31 minus 1 month" is March 3).
Timestamp Subtract(const Timestamp& t, const KeepDuration& d) {
  const int64_t local = t.sec + t.utc_offset_sec;
  const int64_t days = FloorDiv(local, 86400);
  const int64_t secs_of_day = local - days * 86400;
  const Civil c = CivilFromDays(days);
  int64_t month0 = (c.month - 1) - d.months;  // zero-based month, may be out of range
  int64_t year = c.year - d.years + FloorDiv(month0, 12);
  month0 -= FloorDiv(month0, 12) * 12;
  const int64_t new_days = DaysFromCivil(year, month0 + 1, 1) + (c.day - 1) - d.days;
  Timestamp out = t;
  out.sec = new_days * 86400 + secs_of_day - t.utc_offset_sec - int64_t{d.hours} * 3600;
  return out;
}

bool After(const Timestamp& a, const Timestamp& b) {
  return std::tie(a.sec, a.nsec) > std::tie(b.sec, b.nsec);
}

std::vector<std::string> SplitTagList(std::string_view s) {
  // restic's splitTagList: split at commas, trim white space around each tag.
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    std::string_view part =
        s.substr(start, comma == std::string_view::npos ? s.npos : comma - start);
    while (!part.empty() && (part.front() == ' ' || part.front() == '\t')) part.remove_prefix(1);
    while (!part.empty() && (part.back() == ' ' || part.back() == '\t')) part.remove_suffix(1);
    out.emplace_back(part);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

// restic's Snapshot.HasTags.
bool HasTags(const Snapshot& s, const std::vector<std::string>& list) {
  for (const std::string& tag : list) {
    if (tag.empty() && s.tags.empty()) return true;
    if (std::find(s.tags.begin(), s.tags.end(), tag) == s.tags.end()) return false;
  }
  return true;
}

// Go's fmt %v of a TagList: "[a, b]".
std::string TagListString(const std::vector<std::string>& list) {
  std::string out = "[";
  for (size_t i = 0; i < list.size(); i++) out += (i ? ", " : "") + list[i];
  return out + "]";
}

bool CountActive(int count) { return count > 0 || count == -1; }

void AppendStringArray(const std::vector<std::string>& v, std::string& out) {
  out += '[';
  for (size_t i = 0; i < v.size(); i++) {
    if (i) out += ',';
    AppendGoJsonString(v[i], out);
  }
  out += ']';
}

}  // namespace

std::string KeepDuration::ToString() const {
  std::string s;
  if (years != 0) s += fmt::format("{}y", years);
  if (months != 0) s += fmt::format("{}m", months);
  if (days != 0) s += fmt::format("{}d", days);
  if (hours != 0) s += fmt::format("{}h", hours);
  return s;
}

Result<KeepDuration> ParseKeepDuration(std::string_view s) {
  const std::string_view input = s;
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  KeepDuration d;
  while (!s.empty()) {
    bool negative = false;
    if (s.front() == '-') {
      negative = true;
      s.remove_prefix(1);
    }
    size_t n = 0;
    while (n < s.size() && s[n] >= '0' && s[n] <= '9') n++;
    if (n == 0) {
      return Status::InvalidArgument(
          fmt::format("invalid duration \"{}\": no number found", input));
    }
    int num = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + n, num);
    if (ec != std::errc() || ptr != s.data() + n) {
      return Status::InvalidArgument(
          fmt::format("invalid duration \"{}\": number too large", input));
    }
    if (negative) num = -num;
    s.remove_prefix(n);
    if (s.empty()) {
      return Status::InvalidArgument(
          fmt::format("invalid duration \"{}\": no unit found after number {}", input, num));
    }
    switch (s.front()) {
      case 'y':
        d.years = num;
        break;
      case 'm':
        d.months = num;
        break;
      case 'd':
        d.days = num;
        break;
      case 'h':
        d.hours = num;
        break;
      default:
        return Status::InvalidArgument(
            fmt::format("invalid duration \"{}\": invalid unit '{}' after number {} (y, m, d or h)",
                        input, s.front(), num));
    }
    s.remove_prefix(1);
  }
  return d;
}

bool ForgetPolicy::Empty() const {
  return last == 0 && hourly == 0 && daily == 0 && weekly == 0 && monthly == 0 && yearly == 0 &&
         within.zero() && within_hourly.zero() && within_daily.zero() && within_weekly.zero() &&
         within_monthly.zero() && within_yearly.zero() && keep_tags.empty();
}

std::string ForgetPolicy::ToString() const {
  std::vector<std::string> keeps, keepw;
  auto count = [&](int n, const char* what) {
    if (n > 0) keeps.push_back(fmt::format("{} {}", n, what));
    if (n == -1) keeps.push_back(fmt::format("all {}", what));
  };
  count(last, "latest");
  count(hourly, "hourly");
  count(daily, "daily");
  count(weekly, "weekly");
  count(monthly, "monthly");
  count(yearly, "yearly");
  auto within_rule = [&](const KeepDuration& d, const char* what) {
    if (!d.zero()) keepw.push_back(fmt::format("{} snapshots within {}", what, d.ToString()));
  };
  within_rule(within_hourly, "hourly");
  within_rule(within_daily, "daily");
  within_rule(within_weekly, "weekly");
  within_rule(within_monthly, "monthly");
  within_rule(within_yearly, "yearly");
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (size_t i = 0; i < v.size(); i++) out += (i ? ", " : "") + v[i];
    return out;
  };
  std::string s;
  if (!keeps.empty()) s = join(keeps) + " snapshots";
  if (!keepw.empty()) s += (s.empty() ? "" : ", ") + join(keepw);
  if (!keep_tags.empty()) {
    std::string lists = "[";
    for (size_t i = 0; i < keep_tags.size(); i++) {
      lists += (i ? " " : "") + TagListString(SplitTagList(keep_tags[i]));
    }
    s += (s.empty() ? "" : " and ") + std::string("all snapshots with tags ") + lists + "]";
  }
  if (!within.zero()) {
    s += (s.empty() ? "" : " and ") +
         fmt::format("all snapshots within {} of the newest", within.ToString());
  }
  return "keep " + s;
}

Status ValidatePolicy(const ForgetPolicy& p) {
  const std::pair<int, const char*> counts[] = {{p.last, "last"},       {p.hourly, "hourly"},
                                                {p.daily, "daily"},     {p.weekly, "weekly"},
                                                {p.monthly, "monthly"}, {p.yearly, "yearly"}};
  for (const auto& [n, name] : counts) {
    if (n < -1) {
      return Status::InvalidArgument(fmt::format(
          "--keep-{}: {} is negative (only -1, meaning unlimited, is allowed)", name, n));
    }
  }
  return Status::Ok();
}

Result<GroupBy> ParseGroupBy(std::string_view s) {
  GroupBy g{false, false, false};
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    std::string_view opt =
        s.substr(start, comma == std::string_view::npos ? s.npos : comma - start);
    if (opt == "host" || opt == "hosts") {
      g.host = true;
    } else if (opt == "path" || opt == "paths") {
      g.paths = true;
    } else if (opt == "tag" || opt == "tags") {
      g.tags = true;
    } else if (!opt.empty()) {
      return Status::InvalidArgument(fmt::format("unknown grouping option: '{}'", opt));
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return g;
}

bool SnapshotFilter::Matches(const Snapshot& s) const {
  if (!hosts.empty() && std::find(hosts.begin(), hosts.end(), s.hostname) == hosts.end()) {
    return false;
  }
  if (!tags.empty()) {
    bool any = false;
    for (const std::string& list : tags) {
      if (HasTags(s, SplitTagList(list))) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  for (const std::string& p : paths) {
    if (std::find(s.paths.begin(), s.paths.end(), p) == s.paths.end()) return false;
  }
  return true;
}

PolicyResult ApplyPolicy(std::vector<SnapshotEntry> list, const ForgetPolicy& p, int64_t now_sec) {
  // restic: sort.Stable newest first. Its input order is the listing order, which is not stable
  // across runs; fsb breaks ties by ID so that the result is deterministic.
  std::sort(list.begin(), list.end(), [](const SnapshotEntry& a, const SnapshotEntry& b) {
    if (After(a.snapshot.time, b.snapshot.time)) return true;
    if (After(b.snapshot.time, a.snapshot.time)) return false;
    return a.id < b.id;
  });
  PolicyResult out;
  if (p.Empty()) {
    for (SnapshotEntry& e : list) {
      out.reasons.push_back({e.id, e.snapshot, {"policy is empty"}, {}});
      out.keep.push_back(std::move(e));
    }
    return out;
  }
  if (list.empty()) return out;

  struct Rule {
    int count;
    Bucket bucket;
    int64_t last = -1;
    const char* reason;
  };
  std::array<Rule, 6> rules = {{{p.last, kLast, -1, "last snapshot"},
                                {p.hourly, kHourly, -1, "hourly snapshot"},
                                {p.daily, kDaily, -1, "daily snapshot"},
                                {p.weekly, kWeekly, -1, "weekly snapshot"},
                                {p.monthly, kMonthly, -1, "monthly snapshot"},
                                {p.yearly, kYearly, -1, "yearly snapshot"}}};
  struct WithinRule {
    KeepDuration within;
    Bucket bucket;
    int64_t last = -1;
    const char* reason;
  };
  std::array<WithinRule, 5> within_rules = {{{p.within_hourly, kHourly, -1, "hourly within"},
                                             {p.within_daily, kDaily, -1, "daily within"},
                                             {p.within_weekly, kWeekly, -1, "weekly within"},
                                             {p.within_monthly, kMonthly, -1, "monthly within"},
                                             {p.within_yearly, kYearly, -1, "yearly within"}}};

  // restic's findLatestTimestamp: the newest snapshot time that is not in the future. With none,
  // Go's zero time (year 1), before which no real snapshot lies: every snapshot is "within".
  std::optional<Timestamp> latest;
  for (const SnapshotEntry& e : list) {
    const Timestamp& t = e.snapshot.time;
    if (t.sec < now_sec && (!latest || After(t, *latest))) latest = t;
  }
  auto is_within = [&](const Timestamp& t, const KeepDuration& d) {
    return !latest || After(t, Subtract(*latest, d));
  };

  std::vector<std::vector<std::string>> keep_tag_lists;
  for (const std::string& l : p.keep_tags) keep_tag_lists.push_back(SplitTagList(l));

  for (size_t nr = 0; nr < list.size(); nr++) {
    SnapshotEntry& cur = list[nr];
    const Timestamp& t = cur.snapshot.time;
    bool keep = false;
    std::vector<std::string> matches;
    for (const auto& l : keep_tag_lists) {
      if (HasTags(cur.snapshot, l)) {
        keep = true;
        matches.push_back("has tags " + TagListString(l));
      }
    }
    if (!p.within.zero() && is_within(t, p.within)) {
      keep = true;
      matches.push_back("within " + p.within.ToString());
    }
    for (Rule& r : rules) {
      if (!CountActive(r.count)) continue;
      const int64_t key = BucketKey(r.bucket, t, static_cast<int64_t>(nr));
      if (key != r.last) {
        keep = true;
        r.last = key;
        if (r.count > 0) r.count--;
        matches.push_back(r.reason);
      }
    }
    for (WithinRule& r : within_rules) {
      if (r.within.zero() || !is_within(t, r.within)) continue;
      const int64_t key = BucketKey(r.bucket, t, static_cast<int64_t>(nr));
      if (key != r.last) {
        keep = true;
        r.last = key;
        matches.push_back(fmt::format("{} {}", r.reason, r.within.ToString()));
      }
    }
    if (keep) {
      KeepReason kr{cur.id, cur.snapshot, std::move(matches), {}};
      for (size_t i = 0; i < rules.size(); i++) kr.counters[i] = rules[i].count;
      out.reasons.push_back(std::move(kr));
      out.keep.push_back(std::move(cur));
    } else {
      out.remove.push_back(std::move(cur));
    }
  }
  return out;
}

std::vector<ForgetGroup> PlanForget(std::vector<SnapshotEntry> snapshots, const ForgetPolicy& p,
                                    const GroupBy& group_by, int64_t now_sec) {
  std::vector<ForgetGroup> groups;
  if (p.Empty()) return groups;
  using Key = std::tuple<std::string, std::optional<std::vector<std::string>>,
                         std::optional<std::vector<std::string>>>;
  std::map<Key, std::vector<SnapshotEntry>> by_key;
  for (SnapshotEntry& e : snapshots) {
    // restic sorts the snapshot's own tag and path lists in place while grouping.
    std::optional<std::vector<std::string>> tags, paths;
    if (group_by.tags) {
      std::sort(e.snapshot.tags.begin(), e.snapshot.tags.end());
      if (!e.snapshot.tags.empty()) tags = e.snapshot.tags;
    }
    std::sort(e.snapshot.paths.begin(), e.snapshot.paths.end());
    if (group_by.paths && !e.snapshot.paths.empty()) paths = e.snapshot.paths;
    Key key{group_by.host ? e.snapshot.hostname : std::string(), std::move(paths), std::move(tags)};
    by_key[std::move(key)].push_back(std::move(e));
  }
  for (auto& [key, list] : by_key) {
    ForgetGroup g;
    g.host = std::get<0>(key);
    g.paths = std::get<1>(key);
    g.tags = std::get<2>(key);
    g.result = ApplyPolicy(std::move(list), p, now_sec);
    groups.push_back(std::move(g));
  }
  return groups;
}

std::string KeepReasonJson(const KeepReason& r) {
  std::string out = "{\"snapshot\":" + EncodeSnapshot(r.snapshot) + ",\"matches\":";
  AppendStringArray(r.matches, out);
  out += ",\"counters\":{";
  static constexpr const char* kNames[] = {"last",   "hourly",  "daily",
                                           "weekly", "monthly", "yearly"};
  bool first = true;
  for (size_t i = 0; i < r.counters.size(); i++) {
    if (r.counters[i] == 0) continue;
    out += fmt::format("{}\"{}\":{}", first ? "" : ",", kNames[i], r.counters[i]);
    first = false;
  }
  return out + "}}";
}

}  // namespace fsb::repo
