#include "base/go_duration.h"

#include <fmt/format.h>

#include <cstdint>
#include <limits>

namespace fsb {
namespace {

// Nanoseconds per unit; 0 when `unit` is not one of Go's.
uint64_t UnitNanos(std::string_view unit) {
  if (unit == "ns") return 1;
  if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs")
    return 1'000;  // µs (U+00B5), μs (U+03BC)
  if (unit == "ms") return 1'000'000;
  if (unit == "s") return 1'000'000'000;
  if (unit == "m") return 60ull * 1'000'000'000;
  if (unit == "h") return 3600ull * 1'000'000'000;
  return 0;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

// time/format.go ParseDuration: the same grammar, limits and messages.
Result<std::chrono::nanoseconds> ParseGoDuration(std::string_view s) {
  const std::string orig(s);
  auto invalid = [&] {
    return Status::InvalidArgument(fmt::format("time: invalid duration \"{}\"", orig));
  };
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return std::chrono::nanoseconds(0);
  if (s.empty()) return invalid();
  constexpr uint64_t kMax = uint64_t{1} << 63;  // |min int64|
  uint64_t total = 0;
  while (!s.empty()) {
    if (!(IsDigit(s[0]) || s[0] == '.')) return invalid();
    // Integer part.
    uint64_t whole = 0;
    size_t i = 0;
    bool overflow = false;
    while (i < s.size() && IsDigit(s[i])) {
      if (whole > (kMax - 9) / 10) overflow = true;
      whole = whole * 10 + static_cast<uint64_t>(s[i] - '0');
      i++;
    }
    if (overflow) return invalid();
    const bool pre = i > 0;
    // Fraction: keep up to 18 significant digits (more cannot change the nanoseconds).
    uint64_t frac = 0, scale = 1;
    bool post = false;
    if (i < s.size() && s[i] == '.') {
      i++;
      const size_t start = i;
      while (i < s.size() && IsDigit(s[i])) {
        if (scale < 1'000'000'000'000'000'000ull) {
          frac = frac * 10 + static_cast<uint64_t>(s[i] - '0');
          scale *= 10;
        }
        i++;
      }
      post = i > start;
    }
    if (!pre && !post) return invalid();  // "." or ".s"
    // Unit: up to the next digit or '.'.
    size_t u = i;
    while (u < s.size() && !IsDigit(s[u]) && s[u] != '.') u++;
    if (u == i) {
      return Status::InvalidArgument(fmt::format("time: missing unit in duration \"{}\"", orig));
    }
    const std::string_view unit = s.substr(i, u - i);
    const uint64_t unit_ns = UnitNanos(unit);
    if (unit_ns == 0) {
      return Status::InvalidArgument(
          fmt::format("time: unknown unit \"{}\" in duration \"{}\"", unit, orig));
    }
    if (whole > kMax / unit_ns) return invalid();
    uint64_t v = whole * unit_ns;
    if (frac > 0) {
      // frac/scale of a unit, in nanoseconds, without overflowing (unit_ns ≤ 3.6e12).
      const long double f = static_cast<long double>(frac) * static_cast<long double>(unit_ns) /
                            static_cast<long double>(scale);
      v += static_cast<uint64_t>(f);
      if (v > kMax) return invalid();
    }
    total += v;
    if (total > kMax) return invalid();
    s.remove_prefix(u);
  }
  if (!neg && total > kMax - 1) return invalid();
  const int64_t signed_total =
      neg ? (total == kMax ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(total))
          : static_cast<int64_t>(total);
  return std::chrono::nanoseconds(signed_total);
}

}  // namespace fsb
