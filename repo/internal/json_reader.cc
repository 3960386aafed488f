#include "repo/internal/json_reader.h"

#include <fmt/format.h>

#include <array>
#include <cstring>

#include "repo/internal/go_unicode.h"

namespace fsb::repo::internal {
namespace {

constexpr int kMaxDepth = 512;

// Bytes a string can hold as is: printable ASCII other than '"' and '\\'. Everything else
// (escapes, control bytes, the closing quote, non-ASCII) leaves the fast loop.
constexpr std::array<bool, 256> kPlainStringByte = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[c] = c != '"' && c != '\\';
  return t;
}();

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The 4 hex digits at p (p + 4 <= end checked by the caller), or -1.
int32_t Hex4(const char* p) {
  int32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    const int d = HexDigit(p[i]);
    if (d < 0) return -1;
    v = v << 4 | d;
  }
  return v;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Whether any of the 8 bytes in `v` is '"', '\\', below 0x20 or above 0x7F (may also flag a
// plain byte that follows a flagged one: callers then look byte by byte).
inline bool HasNonPlainByte(uint64_t v) {
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  constexpr uint64_t kHigh = 0x8080808080808080ull;
  auto has_zero = [](uint64_t x) { return (x - kOnes) & ~x & kHigh; };
  return ((v & kHigh) | has_zero(v ^ (kOnes * '"')) | has_zero(v ^ (kOnes * '\\')) |
          ((v - kOnes * 0x20) & ~v & kHigh)) != 0;
}

}  // namespace

Status JsonReader::Error(std::string_view what) const {
  return Status::Corruption(fmt::format("{} at offset {}", what, offset()));
}

bool JsonReader::TryNull() {
  SkipWs();
  if (end_ - p_ >= 4 && std::memcmp(p_, "null", 4) == 0) {
    p_ += 4;
    return true;
  }
  return false;
}

Status JsonReader::Expect(char c) {
  if (TryConsume(c)) return Status::Ok();
  if (p_ == end_) return Error(fmt::format("unexpected end, expected '{}'", c));
  return Error(fmt::format("expected '{}'", c));
}

Status JsonReader::ReadString(std::string_view& out, std::string& scratch) {
  if (Peek() != '"')
    return p_ == end_ ? Error("unexpected end, expected string") : Error("expected string");
  const char* start = ++p_;
  while (true) {
    // Eight plain bytes at a time (IDs, times and most names are plain ASCII).
    while (end_ - p_ >= 8) {
      uint64_t v;
      std::memcpy(&v, p_, 8);
      if (HasNonPlainByte(v)) break;
      p_ += 8;
    }
    if (p_ >= end_) break;
    const auto c = static_cast<uint8_t>(*p_);
    if (kPlainStringByte[c]) {
      ++p_;
      continue;
    }
    if (c == '"') {
      out = std::string_view(start, static_cast<size_t>(p_ - start));
      ++p_;
      return Status::Ok();
    }
    if (c >= 0x80) {
      char32_t r;
      const size_t w = DecodeUtf8(std::string_view(p_, static_cast<size_t>(end_ - p_)), 0, &r);
      if (w > 1) {
        p_ += w;
        continue;
      }
    }
    break;  // an escape, a control byte or invalid UTF-8
  }
  return ReadStringSlow(start, out, scratch);
}

// Go's decoder (encoding/json unquote): the escapes of RFC 8259, a surrogate pair of \u escapes
// joined into one rune and any other surrogate escape replaced by U+FFFD, invalid UTF-8 bytes
// replaced by U+FFFD one at a time, raw control bytes rejected.
Status JsonReader::ReadStringSlow(const char* start, std::string_view& out, std::string& scratch) {
  scratch.assign(start, static_cast<size_t>(p_ - start));
  while (true) {
    if (p_ >= end_) return Error("unterminated string");
    const auto c = static_cast<uint8_t>(*p_);
    if (c == '"') {
      ++p_;
      out = scratch;
      return Status::Ok();
    }
    if (c < 0x20) return Error("control character in string");
    if (c < 0x80 && c != '\\') {
      scratch += static_cast<char>(c);
      ++p_;
      continue;
    }
    if (c >= 0x80) {
      char32_t r;
      const size_t w = DecodeUtf8(std::string_view(p_, static_cast<size_t>(end_ - p_)), 0, &r);
      if (w == 1) {
        AppendUtf8(kRuneError, scratch);
      } else {
        scratch.append(p_, w);
      }
      p_ += w;
      continue;
    }
    // A backslash escape.
    if (end_ - p_ < 2) return Error("unterminated string");
    const char e = p_[1];
    switch (e) {
      case '"':
      case '\\':
      case '/':
        scratch += e;
        p_ += 2;
        continue;
      case 'b':
        scratch += '\b';
        p_ += 2;
        continue;
      case 'f':
        scratch += '\f';
        p_ += 2;
        continue;
      case 'n':
        scratch += '\n';
        p_ += 2;
        continue;
      case 'r':
        scratch += '\r';
        p_ += 2;
        continue;
      case 't':
        scratch += '\t';
        p_ += 2;
        continue;
      case 'u':
        break;
      default:
        return Error("invalid escape in string");
    }
    if (end_ - p_ < 6) return Error("unterminated string");
    int32_t r = Hex4(p_ + 2);
    if (r < 0) return Error("invalid \\u escape in string");
    p_ += 6;
    if (r >= 0xD800 && r < 0xE000) {
      // Go: a high surrogate followed by a \u low surrogate is one rune; anything else is
      // U+FFFD, and whatever follows is decoded on its own.
      int32_t r2 = -1;
      if (end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') r2 = Hex4(p_ + 2);
      if (r < 0xDC00 && r2 >= 0xDC00 && r2 < 0xE000) {
        r = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
        p_ += 6;
      } else {
        r = kRuneError;
      }
    }
    AppendUtf8(static_cast<char32_t>(r), scratch);
  }
}

Status JsonReader::ReadUint(uint64_t max, uint64_t& out) {
  const char c = Peek();
  if (!IsDigit(c)) {
    if (c == '-') return Error("negative number where an unsigned integer is expected");
    return p_ == end_ ? Error("unexpected end, expected integer") : Error("expected integer");
  }
  const char* start = p_;
  uint64_t v = 0;
  bool overflow = false;
  while (p_ < end_ && IsDigit(*p_)) {
    const uint64_t d = static_cast<uint64_t>(*p_ - '0');
    if (v > (UINT64_MAX - d) / 10) overflow = true;
    v = v * 10 + d;
    ++p_;
  }
  if (*start == '0' && p_ - start > 1) return Error("number with a leading zero");
  if (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) {
    return Error("number with a fraction or exponent where an integer is expected");
  }
  if (overflow || v > max) return Error(fmt::format("integer out of range (max {})", max));
  out = v;
  return Status::Ok();
}

Status JsonReader::NextMember(bool& first, bool& has, std::string_view& key, std::string& scratch) {
  if (first) {
    first = false;
    if (TryConsume('}')) {
      has = false;
      return Status::Ok();
    }
  } else {
    if (TryConsume('}')) {
      has = false;
      return Status::Ok();
    }
    if (!TryConsume(',')) {
      return p_ == end_ ? Error("unexpected end in object")
                        : Error("expected ',' or '}' in object");
    }
  }
  if (Peek() != '"') {
    return p_ == end_ ? Error("unexpected end in object") : Error("expected object key");
  }
  FSB_RETURN_IF_ERROR(ReadString(key, scratch));
  FSB_RETURN_IF_ERROR(Expect(':'));
  has = true;
  return Status::Ok();
}

Status JsonReader::NextElement(bool& first, bool& has) {
  if (TryConsume(']')) {
    has = false;
    return Status::Ok();
  }
  if (first) {
    first = false;
  } else if (!TryConsume(',')) {
    return p_ == end_ ? Error("unexpected end in array") : Error("expected ',' or ']' in array");
  }
  if (p_ == end_) return Error("unexpected end in array");
  has = true;
  return Status::Ok();
}

Status JsonReader::SkipValue() { return SkipValueAt(0); }

Status JsonReader::SkipValueAt(int depth) {
  if (depth > kMaxDepth) return Error("JSON nested too deeply");
  std::string scratch;
  std::string_view ignored;
  switch (Peek()) {
    case '{': {
      ++p_;
      bool first = true;
      bool has = false;
      while (true) {
        FSB_RETURN_IF_ERROR(NextMember(first, has, ignored, scratch));
        if (!has) return Status::Ok();
        FSB_RETURN_IF_ERROR(SkipValueAt(depth + 1));
      }
    }
    case '[': {
      ++p_;
      bool first = true;
      bool has = false;
      while (true) {
        FSB_RETURN_IF_ERROR(NextElement(first, has));
        if (!has) return Status::Ok();
        FSB_RETURN_IF_ERROR(SkipValueAt(depth + 1));
      }
    }
    case '"':
      return ReadString(ignored, scratch);
    case 't':
      return SkipLiteral("true");
    case 'f':
      return SkipLiteral("false");
    case 'n':
      return SkipLiteral("null");
    case '\0':
      if (p_ == end_) return Error("unexpected end, expected a value");
      return Error("unexpected character, expected a value");
    default:
      return SkipNumber();
  }
}

Status JsonReader::SkipLiteral(std::string_view word) {
  if (static_cast<size_t>(end_ - p_) < word.size() ||
      std::memcmp(p_, word.data(), word.size()) != 0) {
    return Error("invalid literal");
  }
  p_ += word.size();
  return Status::Ok();
}

// RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
Status JsonReader::SkipNumber() {
  if (p_ < end_ && *p_ == '-') ++p_;
  if (p_ == end_ || !IsDigit(*p_)) return Error("unexpected character, expected a value");
  if (*p_ == '0') {
    ++p_;
  } else {
    while (p_ < end_ && IsDigit(*p_)) ++p_;
  }
  if (p_ < end_ && *p_ == '.') {
    ++p_;
    if (p_ == end_ || !IsDigit(*p_)) return Error("invalid number");
    while (p_ < end_ && IsDigit(*p_)) ++p_;
  }
  if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
    ++p_;
    if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
    if (p_ == end_ || !IsDigit(*p_)) return Error("invalid number");
    while (p_ < end_ && IsDigit(*p_)) ++p_;
  }
  return Status::Ok();
}

std::string CompactJson(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  bool in_string = false;
  for (size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < raw.size()) {
        out += raw[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '"') in_string = true;
    out += c;
  }
  return out;
}

}  // namespace fsb::repo::internal
