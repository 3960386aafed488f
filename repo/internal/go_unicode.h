// repo/internal/go_unicode.h: the few pieces of Go's unicode/utf8 and strconv behaviour that
// restic's JSON forms depend on (restic-repo-format.md §9.3). Pure functions; safe for concurrent
// use. Private to repo/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fsb::repo::internal {

inline constexpr char32_t kRuneError = 0xFFFD;

// Go's utf8.DecodeRuneInString on s[i..]: the rune and its width, or (kRuneError, 1) for a byte
// that does not start a well-formed UTF-8 sequence (overlong forms, surrogates and values above
// U+10FFFF included). Requires i < s.size().
inline size_t DecodeUtf8(std::string_view s, size_t i, char32_t* r) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    *r = b0;
    return 1;
  }
  const size_t left = s.size() - i;
  auto cont = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (left >= 2 && (cont(1) & 0xC0) == 0x80) {
      *r = char32_t(b0 & 0x1F) << 6 | (cont(1) & 0x3F);
      return 2;
    }
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    // Second byte range: E0 → A0..BF (no overlongs), ED → 80..9F (no surrogates).
    const uint8_t lo = b0 == 0xE0 ? 0xA0 : 0x80;
    const uint8_t hi = b0 == 0xED ? 0x9F : 0xBF;
    if (left >= 3 && cont(1) >= lo && cont(1) <= hi && (cont(2) & 0xC0) == 0x80) {
      *r = char32_t(b0 & 0x0F) << 12 | char32_t(cont(1) & 0x3F) << 6 | (cont(2) & 0x3F);
      return 3;
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    // F0 → 90..BF (no overlongs), F4 → 80..8F (nothing above U+10FFFF).
    const uint8_t lo = b0 == 0xF0 ? 0x90 : 0x80;
    const uint8_t hi = b0 == 0xF4 ? 0x8F : 0xBF;
    if (left >= 4 && cont(1) >= lo && cont(1) <= hi && (cont(2) & 0xC0) == 0x80 &&
        (cont(3) & 0xC0) == 0x80) {
      *r = char32_t(b0 & 0x07) << 18 | char32_t(cont(1) & 0x3F) << 12 |
           char32_t(cont(2) & 0x3F) << 6 | (cont(3) & 0x3F);
      return 4;
    }
  }
  *r = kRuneError;
  return 1;
}

// Appends the UTF-8 form of `r` (a valid scalar value: not a surrogate, at most U+10FFFF).
inline void AppendUtf8(char32_t r, std::string& out) {
  if (r < 0x80) {
    out += static_cast<char>(r);
  } else if (r < 0x800) {
    out += static_cast<char>(0xC0 | (r >> 6));
    out += static_cast<char>(0x80 | (r & 0x3F));
  } else if (r < 0x10000) {
    out += static_cast<char>(0xE0 | (r >> 12));
    out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (r & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (r >> 18));
    out += static_cast<char>(0x80 | ((r >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (r & 0x3F));
  }
}

// Whether s is entirely well-formed UTF-8 (Go's utf8.ValidString).
bool ValidUtf8(std::string_view s);

// Go 1.19's strconv.IsPrint: letters, marks, numbers, punctuation, symbols (Unicode 13.0) and
// U+0020. Generated tables: go_unicode_tables.inc (gen_go_unicode.py).
bool GoIsPrint(char32_t r);

}  // namespace fsb::repo::internal
