#include "repo/internal/go_unicode.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace fsb::repo::internal {
namespace {

#include "repo/internal/go_unicode_tables.inc"

template <typename T, size_t N>
bool InRanges(const T (&ranges)[N][2], char32_t r) {
  // The last range whose start is <= r, if any, is the only one that can hold r.
  const auto* it = std::upper_bound(std::begin(ranges), std::end(ranges), r,
                                    [](char32_t v, const T(&range)[2]) { return v < range[0]; });
  if (it == std::begin(ranges)) return false;
  --it;
  return r <= (*it)[1];
}

}  // namespace

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    char32_t r;
    const size_t w = DecodeUtf8(s, i, &r);
    if (w == 1) return false;  // a width-1 decode of a byte >= 0x80 is always an error
    i += w;
  }
  return true;
}

bool GoIsPrint(char32_t r) {
  // strconv.IsPrint's Latin-1 rule: ASCII graphic and space, and 0xA1..0xFF except soft hyphen.
  if (r <= 0xFF) {
    if (r >= 0x20 && r <= 0x7E) return true;
    if (r >= 0xA1) return r != 0xAD;
    return false;
  }
  if (r <= 0xFFFF) return InRanges(kGoPrintBmp, r);
  return InRanges(kGoPrintAstral, r);
}

}  // namespace fsb::repo::internal
