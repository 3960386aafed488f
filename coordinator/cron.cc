#include "coordinator/cron.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <vector>

#include "base/go_duration.h"

namespace fsb::coordinator {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using std::chrono::sys_days;
using std::chrono::sys_seconds;

struct Bounds {
  int min, max;
  const std::array<std::string_view, 12>* names;  // names[i] is value min + i; may be null
};

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 12> kDowNames = {"sun", "mon", "tue", "wed", "thu", "fri",
                                                        "sat", "",    "",    "",    "",    ""};
constexpr Bounds kMinutes{0, 59, nullptr};
constexpr Bounds kHours{0, 23, nullptr};
constexpr Bounds kDom{1, 31, nullptr};
constexpr Bounds kMonths{1, 12, &kMonthNames};
constexpr Bounds kDow{0, 6, &kDowNames};

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t p = s.find(sep, start);
    out.push_back(
        s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) return out;
    start = p + 1;
  }
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Go's strings.Fields for ASCII whitespace.
std::vector<std::string_view> Fields(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && IsSpace(s[i])) i++;
    const size_t start = i;
    while (i < s.size() && !IsSpace(s[i])) i++;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// robfig's mustParseInt: strconv.Atoi, then no negatives.
Result<int> ParseInt(std::string_view expr) {
  std::string_view digits = expr;
  bool neg = false;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
    neg = digits[0] == '-';
    digits.remove_prefix(1);
  }
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (digits.empty() || ec == std::errc::invalid_argument || ptr != digits.data() + digits.size() ||
      (!digits.empty() && digits[0] == '-')) {
    return Status::InvalidArgument(fmt::format(
        "failed to parse int from {}: strconv.Atoi: parsing \"{}\": invalid syntax", expr, expr));
  }
  if (ec == std::errc::result_out_of_range) {
    return Status::InvalidArgument(
        fmt::format("failed to parse int from {}: strconv.Atoi: parsing \"{}\": value out of range",
                    expr, expr));
  }
  if (neg) v = -v;
  if (v < 0) {
    return Status::InvalidArgument(fmt::format("negative number ({}) not allowed: {}", v, expr));
  }
  // Larger values fail the range checks with robfig's message; keep them representable.
  return static_cast<int>(std::min<int64_t>(v, 1'000'000));
}

Result<int> ParseIntOrName(std::string_view expr, const Bounds& r) {
  if (r.names != nullptr) {
    std::string lower(expr);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (size_t i = 0; i < r.names->size(); i++) {
      if (!(*r.names)[i].empty() && (*r.names)[i] == lower) return r.min + static_cast<int>(i);
    }
  }
  return ParseInt(expr);
}

// robfig's getRange: one comma-separated element of a field. Sets *star for `*`/`?` without a
// step above 1.
Result<uint64_t> ParseRange(std::string_view expr, const Bounds& r, bool* star) {
  const std::vector<std::string_view> range_and_step = Split(expr, '/');
  const std::vector<std::string_view> low_and_high = Split(range_and_step[0], '-');
  const bool single = low_and_high.size() == 1;
  int start = 0, end = 0;
  bool is_star = false;
  if (low_and_high[0] == "*" || low_and_high[0] == "?") {
    start = r.min;
    end = r.max;
    is_star = true;
  } else {
    FSB_ASSIGN_OR_RETURN(start, ParseIntOrName(low_and_high[0], r));
    if (low_and_high.size() == 1) {
      end = start;
    } else if (low_and_high.size() == 2) {
      FSB_ASSIGN_OR_RETURN(end, ParseIntOrName(low_and_high[1], r));
    } else {
      return Status::InvalidArgument(fmt::format("too many hyphens: {}", expr));
    }
  }
  int step = 1;
  if (range_and_step.size() == 2) {
    FSB_ASSIGN_OR_RETURN(step, ParseInt(range_and_step[1]));
    if (single) end = r.max;  // "N/step" means "N-max/step"
    if (step > 1) is_star = false;
  } else if (range_and_step.size() > 2) {
    return Status::InvalidArgument(fmt::format("too many slashes: {}", expr));
  }
  if (start < r.min) {
    return Status::InvalidArgument(
        fmt::format("beginning of range ({}) below minimum ({}): {}", start, r.min, expr));
  }
  if (end > r.max) {
    return Status::InvalidArgument(
        fmt::format("end of range ({}) above maximum ({}): {}", end, r.max, expr));
  }
  if (start > end) {
    return Status::InvalidArgument(
        fmt::format("beginning of range ({}) beyond end of range ({}): {}", start, end, expr));
  }
  if (step == 0) {
    return Status::InvalidArgument(
        fmt::format("step of range should be a positive number: {}", expr));
  }
  uint64_t bits = 0;
  for (int v = start; v <= end; v += step) bits |= uint64_t{1} << v;
  if (is_star) *star = true;
  return bits;
}

// robfig's getField: the union of the comma-separated ranges (empty elements are skipped, as
// strings.FieldsFunc does).
Result<uint64_t> ParseField(std::string_view field, const Bounds& r, bool* star = nullptr) {
  uint64_t bits = 0;
  bool any_star = false;
  for (std::string_view part : Split(field, ',')) {
    if (part.empty()) continue;
    bool s = false;
    FSB_ASSIGN_OR_RETURN(uint64_t b, ParseRange(part, r, &s));
    bits |= b;
    any_star = any_star || s;
  }
  if (star != nullptr) *star = any_star;
  return bits;
}

bool IsUtcZone(std::string_view zone) {
  for (std::string_view z : {"UTC", "Etc/UTC", "GMT", "Etc/GMT", "Zulu", "Etc/Zulu", "Universal",
                             "Etc/Universal", "UCT", "Etc/UCT"}) {
    if (zone == z) return true;
  }
  return false;
}

}  // namespace

Result<CronSchedule> CronSchedule::Parse(std::string_view spec) {
  CronSchedule c;
  c.spec_ = std::string(spec);
  if (spec.empty()) return Status::InvalidArgument("empty spec string");
  if (spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=")) {
    const size_t eq = spec.find('=');
    const size_t space = spec.find(' ');
    if (space == std::string_view::npos) {
      return Status::InvalidArgument(fmt::format("no schedule after the time zone: {}", spec));
    }
    const std::string_view zone = spec.substr(eq + 1, space - eq - 1);
    if (!IsUtcZone(zone)) {
      return Status::InvalidArgument(fmt::format(
          "time zone {} is not supported: fsb evaluates schedules in UTC (use UTC or no prefix)",
          zone));
    }
    spec = TrimSpace(spec.substr(space));
  }
  if (spec.starts_with("@")) {
    struct Descriptor {
      std::string_view name, fields;
    };
    static constexpr Descriptor kDescriptors[] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"},
    };
    for (const Descriptor& d : kDescriptors) {
      if (spec == d.name) {
        Result<CronSchedule> r = Parse(d.fields);
        if (r.ok()) r->spec_ = c.spec_;
        return r;
      }
    }
    constexpr std::string_view kEvery = "@every ";
    if (spec.starts_with(kEvery)) {
      const std::string_view text = spec.substr(kEvery.size());
      Result<std::chrono::nanoseconds> d = ParseGoDuration(text);
      if (!d.ok()) {
        return Status::InvalidArgument(
            fmt::format("failed to parse duration {}: {}", spec, d.status().message()));
      }
      // robfig's Every: below a second becomes a second; the rest is truncated to seconds.
      seconds every = std::chrono::duration_cast<seconds>(*d);
      if (*d < seconds(1)) every = seconds(1);
      c.every_ = every;
      return c;
    }
    return Status::InvalidArgument(fmt::format("unrecognized descriptor: {}", spec));
  }
  const std::vector<std::string_view> fields = Fields(spec);
  if (fields.size() != 5) {
    std::string list;
    for (size_t i = 0; i < fields.size(); i++) {
      if (i > 0) list += ' ';
      list += fields[i];
    }
    return Status::InvalidArgument(
        fmt::format("expected exactly 5 fields, found {}: [{}]", fields.size(), list));
  }
  FSB_ASSIGN_OR_RETURN(c.minute_, ParseField(fields[0], kMinutes));
  FSB_ASSIGN_OR_RETURN(c.hour_, ParseField(fields[1], kHours));
  FSB_ASSIGN_OR_RETURN(c.dom_, ParseField(fields[2], kDom, &c.dom_star_));
  FSB_ASSIGN_OR_RETURN(c.month_, ParseField(fields[3], kMonths));
  FSB_ASSIGN_OR_RETURN(c.dow_, ParseField(fields[4], kDow, &c.dow_star_));
  return c;
}

bool CronSchedule::DayMatches(int mday, int wday) const {
  const bool dom = (dom_ >> mday) & 1;
  const bool dow = (dow_ >> wday) & 1;
  if (dom_star_ || dow_star_) return dom && dow;
  return dom || dow;
}

std::optional<TimePoint> CronSchedule::NextAfter(TimePoint t) const {
  const sys_seconds t_sec = std::chrono::floor<seconds>(t);
  if (is_every()) return TimePoint(t_sec + every_);
  // robfig: start at the next whole second; the seconds field is 0, so the next whole minute.
  sys_seconds m = std::chrono::ceil<minutes>(t_sec + seconds(1));
  const int year_limit =
      static_cast<int>(std::chrono::year_month_day(std::chrono::floor<days>(m)).year()) + 5;
  while (true) {
    const sys_days d = std::chrono::floor<days>(m);
    const std::chrono::year_month_day ymd(d);
    if (static_cast<int>(ymd.year()) > year_limit) return std::nullopt;
    const unsigned month = static_cast<unsigned>(ymd.month());
    if (!((month_ >> month) & 1)) {
      const std::chrono::year_month next = ymd.year() / ymd.month() + std::chrono::months(1);
      m = sys_days(next / 1);
      continue;
    }
    const int mday = static_cast<int>(static_cast<unsigned>(ymd.day()));
    const int wday = static_cast<int>(std::chrono::weekday(d).c_encoding());
    if (!DayMatches(mday, wday)) {
      m = d + days(1);
      continue;
    }
    const int hour = static_cast<int>(std::chrono::floor<hours>(m - d).count());
    if (!((hour_ >> hour) & 1)) {
      m = d + hours(hour + 1);
      continue;
    }
    const int minute = static_cast<int>(std::chrono::floor<minutes>(m - d - hours(hour)).count());
    if (!((minute_ >> minute) & 1)) {
      m += minutes(1);
      continue;
    }
    return TimePoint(m);
  }
}

std::optional<TimePoint> CronSchedule::LatestDue(TimePoint after, TimePoint now) const {
  std::optional<TimePoint> first = NextAfter(after);
  if (!first || *first > now) return std::nullopt;
  if (is_every()) {
    // after' + k × every for the largest k with the result ≤ now.
    const auto k = (std::chrono::floor<seconds>(now) - *first) / every_;
    return *first + k * every_;
  }
  // The last activation ≤ now does not depend on where the walk starts as long as it starts
  // before that activation; start close to now so that a months-old `after` costs nothing.
  for (auto window : {std::chrono::duration_cast<seconds>(hours(25)),
                      std::chrono::duration_cast<seconds>(days(367)),
                      std::chrono::duration_cast<seconds>(days(6 * 366))}) {
    TimePoint start = std::max(after, now - window);
    std::optional<TimePoint> cur = start == after ? first : NextAfter(start);
    if (!cur || *cur > now) continue;
    while (true) {
      std::optional<TimePoint> next = NextAfter(*cur);
      if (!next || *next > now) return cur;
      cur = next;
    }
  }
  return first;  // unreachable: the widest window reaches back past robfig's five-year limit
}

}  // namespace fsb::coordinator
