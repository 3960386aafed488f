#include "repo/node.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <ctime>
#include <limits>
#include <optional>

#include "repo/internal/go_unicode.h"
#include "repo/internal/json_reader.h"

namespace fsb::repo {
namespace {

using internal::AppendUtf8;
using internal::DecodeUtf8;
using internal::GoIsPrint;
using internal::JsonReader;
using internal::kRuneError;
using internal::ValidUtf8;

constexpr char kLowerHex[] = "0123456789abcdef";

void AppendUint(uint64_t v, std::string& out) {
  char buf[20];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, res.ptr);
}

void AppendHexId(const Id& id, std::string& out) {
  const size_t at = out.size();
  out.resize(at + 64);
  char* p = out.data() + at;
  for (uint8_t b : id.bytes) {
    *p++ = kLowerHex[b >> 4];
    *p++ = kLowerHex[b & 15];
  }
}

void AppendBase64(std::string_view bytes, std::string& out) {
  out += '"';
  out += Base64Encode(AsBytes(bytes));
  out += '"';
}

// ---------------------------------------------------------------------------------------------
// Times (§9.4)

constexpr int64_t kSecondsPerDay = 86400;

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
constexpr int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}
static_assert(DaysFromCivil(1970, 1, 1) == 0);
static_assert(DaysFromCivil(2000, 3, 1) == 11017);

struct Civil {
  int64_t year;
  unsigned month;
  unsigned day;
};

constexpr Civil CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int64_t>(yoe) + era * 400 + (m <= 2), m, d};
}

constexpr bool IsLeap(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

constexpr unsigned DaysInMonth(int64_t y, unsigned m) {
  constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

void Append2(unsigned v, std::string& out) {
  out += static_cast<char>('0' + v / 10);
  out += static_cast<char>('0' + v % 10);
}

// Go's time.Format(time.RFC3339Nano), without quotes.
void AppendTimestamp(const Timestamp& t, std::string& out) {
  int64_t sec = t.sec;
  uint32_t nsec = t.nsec;
  if (nsec >= 1000000000) {  // not normalized: carry whole seconds
    sec += nsec / 1000000000;
    nsec %= 1000000000;
  }
  // Civil arithmetic stays exact within ±1e15 s (±31 million years); the year is clamped to
  // 0000..9999 below anyway.
  constexpr int64_t kLimit = 1000000000000000;
  int64_t local = sec;
  if (__builtin_add_overflow(sec, int64_t{t.utc_offset_sec}, &local)) local = sec;
  if (local > kLimit) local = kLimit;
  if (local < -kLimit) local = -kLimit;
  const int64_t days = FloorDiv(local, kSecondsPerDay);
  const auto secs_of_day = static_cast<unsigned>(local - days * kSecondsPerDay);
  Civil c = CivilFromDays(days);
  // restic's fixTime: years outside 0000..9999 are moved into range, changing only the year
  // (Go's AddDate, so 29 February of a non-leap target year becomes 1 March).
  if (c.year < 0 || c.year > 9999) {
    c.year = c.year < 0 ? 0 : 9999;
    if (c.month == 2 && c.day == 29 && !IsLeap(c.year)) {
      c.month = 3;
      c.day = 1;
    }
  }
  const auto year = static_cast<unsigned>(c.year);
  Append2(year / 100, out);
  Append2(year % 100, out);
  out += '-';
  Append2(c.month, out);
  out += '-';
  Append2(c.day, out);
  out += 'T';
  Append2(secs_of_day / 3600, out);
  out += ':';
  Append2(secs_of_day / 60 % 60, out);
  out += ':';
  Append2(secs_of_day % 60, out);
  if (nsec != 0) {
    char frac[9];
    uint32_t v = nsec;
    for (int i = 8; i >= 0; --i) {
      frac[i] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
    int len = 9;
    while (frac[len - 1] == '0') --len;
    out += '.';
    out.append(frac, static_cast<size_t>(len));
  }
  if (t.utc_offset_sec == 0) {
    out += 'Z';
    return;
  }
  // Go prints whole minutes of the offset, truncated toward zero ("Z" only for exactly 0).
  int32_t minutes = t.utc_offset_sec / 60;
  if (minutes < 0) {
    out += '-';
    minutes = -minutes;
  } else {
    out += '+';
  }
  Append2(static_cast<unsigned>(minutes / 60 % 100), out);
  out += ':';
  Append2(static_cast<unsigned>(minutes % 60), out);
}

bool ParseDigits(std::string_view s, size_t pos, size_t n, unsigned& out) {
  if (pos + n > s.size()) return false;
  unsigned v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
  }
  out = v;
  return true;
}

// YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|±hh:mm). Returns what is wrong, or nullptr.
const char* ParseTimestampInto(std::string_view s, Timestamp& t) {
  unsigned year, month, day, hour, minute, second;
  if (!ParseDigits(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !ParseDigits(s, 5, 2, month) ||
      s[7] != '-' || !ParseDigits(s, 8, 2, day) || s[10] != 'T' || !ParseDigits(s, 11, 2, hour) ||
      s[13] != ':' || !ParseDigits(s, 14, 2, minute) || s[16] != ':' ||
      !ParseDigits(s, 17, 2, second)) {
    return "not RFC 3339 (YYYY-MM-DDThh:mm:ss)";
  }
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month)) return "invalid date";
  if (hour > 23 || minute > 59 || second > 59) return "invalid time of day";
  size_t pos = 19;
  uint32_t nsec = 0;
  if (s[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (++digits > 9) return "more than 9 fraction digits";
      nsec = nsec * 10 + static_cast<uint32_t>(s[pos] - '0');
      ++pos;
    }
    if (digits == 0) return "empty fraction";
    for (size_t i = digits; i < 9; ++i) nsec *= 10;
  }
  int32_t offset = 0;
  if (pos < s.size() && s[pos] == 'Z') {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    unsigned oh, om;
    if (!ParseDigits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !ParseDigits(s, pos + 4, 2, om)) {
      return "invalid zone offset";
    }
    if (oh > 23 || om > 59) return "zone offset out of range";
    offset = static_cast<int32_t>(oh * 3600 + om * 60);
    if (s[pos] == '-') offset = -offset;
    pos += 6;
  } else {
    return "missing zone (Z or +hh:mm)";
  }
  if (pos != s.size()) return "trailing characters";
  t.sec = DaysFromCivil(year, month, day) * kSecondsPerDay + hour * 3600 + minute * 60 + second -
          offset;
  t.nsec = nsec;
  t.utc_offset_sec = offset;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Go string encodings (§9.3)

// ASCII that encoding/json copies as is (DEL included).
constexpr std::array<bool, 256> kJsonPlainByte = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) {
    t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&';
  }
  return t;
}();

// ASCII that both strconv.Quote and encoding/json copy as is (DEL is \x7f for Quote).
constexpr std::array<bool, 256> kQuotePlainByte = [] {
  std::array<bool, 256> t = kJsonPlainByte;
  t[0x7F] = false;
  return t;
}();

void AppendHex(uint32_t v, int digits, std::string& out) {
  for (int i = digits - 1; i >= 0; --i) out += kLowerHex[(v >> (4 * i)) & 15];
}

// The escape strconv.Quote writes for an ASCII control byte or DEL (without the backslash).
void AppendControlEscape(uint8_t b, std::string& out) {
  switch (b) {
    case '\a':
      out += 'a';
      return;
    case '\b':
      out += 'b';
      return;
    case '\f':
      out += 'f';
      return;
    case '\n':
      out += 'n';
      return;
    case '\r':
      out += 'r';
      return;
    case '\t':
      out += 't';
      return;
    case '\v':
      out += 'v';
      return;
    default:
      out += 'x';
      AppendHex(b, 2, out);
  }
}

// strconv.Quote(raw) without the surrounding quotes. With `json`, the result is also escaped
// as encoding/json escapes a string (each backslash doubled, '"' escaped, <>& as \u00XX), in one
// pass; nothing else in strconv.Quote's output needs JSON escaping: it is printable UTF-8, and
// U+2028/U+2029 are not printable, so they arrive as \u2028 text.
template <bool json>
void AppendGoQuoted(std::string_view raw, std::string& out) {
  const char* bs = json ? "\\\\" : "\\";
  size_t i = 0;
  while (i < raw.size()) {
    // The common case: a run of bytes that need no escaping at all.
    size_t run = i;
    while (run < raw.size() && kQuotePlainByte[static_cast<uint8_t>(raw[run])]) ++run;
    if (run > i) {
      out.append(raw.data() + i, run - i);
      i = run;
      if (i == raw.size()) break;
    }
    const auto b = static_cast<uint8_t>(raw[i]);
    if (b < 0x80) {
      ++i;
      if (b == '"') {
        out += json ? "\\\\\\\"" : "\\\"";
      } else if (b == '\\') {
        out += json ? "\\\\\\\\" : "\\\\";
      } else if (b == '<' || b == '>' || b == '&') {
        if (json) {
          out += "\\u00";
          AppendHex(b, 2, out);
        } else {
          out += static_cast<char>(b);
        }
      } else {  // control byte or DEL
        out += bs;
        AppendControlEscape(b, out);
      }
      continue;
    }
    char32_t r;
    const size_t w = DecodeUtf8(raw, i, &r);
    if (w == 1) {  // not UTF-8: the byte itself
      out += bs;
      out += 'x';
      AppendHex(b, 2, out);
    } else if (GoIsPrint(r)) {
      out.append(raw.data() + i, w);
    } else if (r < 0x10000) {
      out += bs;
      out += 'u';
      AppendHex(r, 4, out);
    } else {
      out += bs;
      out += 'U';
      AppendHex(r, 8, out);
    }
    i += w;
  }
}

// strconv.Unquote('"' + quoted + '"') into `out`. Returns what is wrong, or nullptr.
// Like Go: raw '"' and newline are errors, invalid UTF-8 becomes U+FFFD; \xNN and octal \NNN are
// raw bytes, \u and \U valid code points. Unlike Go, \' is accepted too (spec §9.3).
const char* GoUnquoteInto(std::string_view q, std::string& out) {
  bool plain = true;
  for (char c : q) {
    if (c == '\\' || c == '"' || c == '\n' || static_cast<uint8_t>(c) >= 0x80) {
      plain = false;
      break;
    }
  }
  if (plain || (q.find_first_of("\\\"\n") == std::string_view::npos && ValidUtf8(q))) {
    out.assign(q);
    return nullptr;
  }
  out.clear();
  size_t i = 0;
  while (i < q.size()) {
    const auto c = static_cast<uint8_t>(q[i]);
    if (c == '"') return "unescaped '\"'";
    if (c == '\n') return "unescaped newline";
    if (c >= 0x80) {
      char32_t r;
      const size_t w = DecodeUtf8(q, i, &r);
      if (w == 1) {
        AppendUtf8(kRuneError, out);
      } else {
        out.append(q.data() + i, w);
      }
      i += w;
      continue;
    }
    if (c != '\\') {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (i + 1 >= q.size()) return "trailing backslash";
    const char e = q[i + 1];
    i += 2;
    switch (e) {
      case 'a':
        out += '\a';
        continue;
      case 'b':
        out += '\b';
        continue;
      case 'f':
        out += '\f';
        continue;
      case 'n':
        out += '\n';
        continue;
      case 'r':
        out += '\r';
        continue;
      case 't':
        out += '\t';
        continue;
      case 'v':
        out += '\v';
        continue;
      case '\\':
      case '"':
      case '\'':
        out += e;
        continue;
      case 'x':
      case 'u':
      case 'U': {
        const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        if (i + n > q.size()) return "truncated escape";
        uint32_t v = 0;
        for (size_t k = 0; k < n; ++k) {
          const char h = q[i + k];
          int d = -1;
          if (h >= '0' && h <= '9') d = h - '0';
          if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
          if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
          if (d < 0) return "invalid hex escape";
          v = v << 4 | static_cast<uint32_t>(d);
        }
        i += n;
        if (e == 'x') {
          out += static_cast<char>(v);
        } else {
          if (v > 0x10FFFF || (v >= 0xD800 && v < 0xE000)) return "escape of an invalid code point";
          AppendUtf8(v, out);
        }
        continue;
      }
      case '0':
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7': {
        if (i + 2 > q.size()) return "truncated octal escape";
        uint32_t v = static_cast<uint32_t>(e - '0');
        for (size_t k = 0; k < 2; ++k) {
          const char o = q[i + k];
          if (o < '0' || o > '7') return "invalid octal escape";
          v = v << 3 | static_cast<uint32_t>(o - '0');
        }
        i += 2;
        if (v > 255) return "octal escape out of range";
        out += static_cast<char>(v);
        continue;
      }
      default:
        return "unknown escape";
    }
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Node and tree encoding (§9.1, §9.2)

constexpr std::array<std::string_view, 7> kNodeTypeNames = {"file",    "dir",  "symlink", "dev",
                                                            "chardev", "fifo", "socket"};

void AppendField(std::string_view key, std::string& out) {
  out += ",\"";
  out += key;
  out += "\":";
}

void AppendUintField(std::string_view key, uint64_t v, std::string& out) {
  AppendField(key, out);
  AppendUint(v, out);
}

void AppendStringField(std::string_view key, std::string_view v, std::string& out) {
  AppendField(key, out);
  AppendGoJsonString(v, out);
}

void AppendTimeField(std::string_view key, const Timestamp& t, std::string& out) {
  AppendField(key, out);
  out += '"';
  AppendTimestamp(t, out);
  out += '"';
}

void AppendIdField(std::string_view key, const Id& id, std::string& out) {
  AppendField(key, out);
  out += '"';
  AppendHexId(id, out);
  out += '"';
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers

int HexNibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// restic's ID.UnmarshalJSON: 64 hex digits, either case.
Status ReadId(JsonReader& r, std::string& scratch, Id& id) {
  std::string_view s;
  FSB_RETURN_IF_ERROR(r.ReadString(s, scratch));
  if (s.size() != 64) return r.Error(fmt::format("invalid id (length {}, want 64)", s.size()));
  for (size_t i = 0; i < 32; ++i) {
    const int hi = HexNibble(s[2 * i]);
    const int lo = HexNibble(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return r.Error("invalid id (not hex)");
    id.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return Status::Ok();
}

Status ReadTime(JsonReader& r, std::string& scratch, Timestamp& t) {
  if (r.TryNull()) return Status::Ok();  // Go's Time.UnmarshalJSON: null is a no-op
  std::string_view s;
  FSB_RETURN_IF_ERROR(r.ReadString(s, scratch));
  if (const char* err = ParseTimestampInto(s, t)) {
    return r.Error(fmt::format("invalid time \"{}\": {}", s.substr(0, 64), err));
  }
  return Status::Ok();
}

// Go leaves a string field unchanged for null.
Status ReadStringField(JsonReader& r, std::string& scratch, std::string& out) {
  if (r.TryNull()) return Status::Ok();
  std::string_view s;
  FSB_RETURN_IF_ERROR(r.ReadString(s, scratch));
  out.assign(s);
  return Status::Ok();
}

template <typename T>
Status ReadUintField(JsonReader& r, T& out) {
  if (r.TryNull()) return Status::Ok();
  uint64_t v = 0;
  FSB_RETURN_IF_ERROR(r.ReadUint(std::numeric_limits<T>::max(), v));
  out = static_cast<T>(v);
  return Status::Ok();
}

// A []byte field: standard base64 with padding; null is empty.
Status ReadBase64(JsonReader& r, std::string& scratch, std::string& out) {
  out.clear();
  if (r.TryNull()) return Status::Ok();
  std::string_view s;
  FSB_RETURN_IF_ERROR(r.ReadString(s, scratch));
  Result<Bytes> bytes = Base64Decode(s);
  if (!bytes.ok()) return r.Error("invalid base64: " + bytes.status().message());
  out.assign(bytes->begin(), bytes->end());
  return Status::Ok();
}

// Go matches JSON keys to fields exactly first, then case-insensitively. (Go's folding also
// maps U+212A and U+017F to k and s; restic never writes such keys.)
bool KeyIs(std::string_view key, std::string_view field) {
  if (key.size() != field.size()) return false;
  if (key == field) return true;
  for (size_t i = 0; i < key.size(); ++i) {
    char c = key[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != field[i]) return false;
  }
  return true;
}

enum class NodeField {
  kUnknown,
  kName,
  kType,
  kMode,
  kMtime,
  kAtime,
  kCtime,
  kUid,
  kGid,
  kUser,
  kGroup,
  kInode,
  kDeviceId,
  kSize,
  kLinks,
  kLinkTarget,
  kLinkTargetRaw,
  kXattrs,
  kDevice,
  kContent,
  kSubtree,
  kError,
};

struct NodeFieldName {
  std::string_view name;
  NodeField field;
};

constexpr NodeFieldName kNodeFields[] = {
    {"name", NodeField::kName},
    {"type", NodeField::kType},
    {"mode", NodeField::kMode},
    {"mtime", NodeField::kMtime},
    {"atime", NodeField::kAtime},
    {"ctime", NodeField::kCtime},
    {"uid", NodeField::kUid},
    {"gid", NodeField::kGid},
    {"user", NodeField::kUser},
    {"group", NodeField::kGroup},
    {"inode", NodeField::kInode},
    {"device_id", NodeField::kDeviceId},
    {"size", NodeField::kSize},
    {"links", NodeField::kLinks},
    {"linktarget", NodeField::kLinkTarget},
    {"linktarget_raw", NodeField::kLinkTargetRaw},
    {"extended_attributes", NodeField::kXattrs},
    {"device", NodeField::kDevice},
    {"content", NodeField::kContent},
    {"subtree", NodeField::kSubtree},
    {"error", NodeField::kError},
};

// `next` is where the search starts, and is left after the key found: keys arrive in restic's
// order, so nearly every lookup is one comparison.
NodeField LookupNodeField(std::string_view key, size_t& next) {
  constexpr size_t n = std::size(kNodeFields);
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (next + k) % n;
    if (key == kNodeFields[i].name) {
      next = (i + 1) % n;
      return kNodeFields[i].field;
    }
  }
  for (const NodeFieldName& f : kNodeFields) {
    if (KeyIs(key, f.name)) return f.field;
  }
  return NodeField::kUnknown;
}

bool ParseNodeType(std::string_view s, NodeType& t) {
  for (size_t i = 0; i < kNodeTypeNames.size(); ++i) {
    if (s == kNodeTypeNames[i]) {
      t = static_cast<NodeType>(i);
      return true;
    }
  }
  return false;
}

struct DecodeScratch {
  std::string key;
  std::string value;
  size_t next_field = 0;  // LookupNodeField's cursor
};

Status ReadXattrs(JsonReader& r, DecodeScratch& scratch, std::vector<ExtendedAttribute>& xattrs) {
  xattrs.clear();
  if (r.TryNull()) return Status::Ok();
  FSB_RETURN_IF_ERROR(r.Expect('['));
  bool first = true;
  bool has = false;
  while (true) {
    FSB_RETURN_IF_ERROR(r.NextElement(first, has));
    if (!has) return Status::Ok();
    FSB_RETURN_IF_ERROR(r.Expect('{'));
    ExtendedAttribute& attr = xattrs.emplace_back();
    bool first_member = true;
    bool has_member = false;
    std::string_view key;
    while (true) {
      FSB_RETURN_IF_ERROR(r.NextMember(first_member, has_member, key, scratch.key));
      if (!has_member) break;
      if (KeyIs(key, "name")) {
        FSB_RETURN_IF_ERROR(ReadStringField(r, scratch.value, attr.name));
      } else if (KeyIs(key, "value")) {
        std::string value;
        FSB_RETURN_IF_ERROR(ReadBase64(r, scratch.value, value));
        attr.value.assign(value.begin(), value.end());
      } else {
        FSB_RETURN_IF_ERROR(r.SkipValue());
      }
    }
  }
}

Status ReadContent(JsonReader& r, DecodeScratch& scratch, Node& node) {
  node.content.clear();
  node.content_null = false;
  if (r.TryNull()) {
    node.content_null = true;
    return Status::Ok();
  }
  FSB_RETURN_IF_ERROR(r.Expect('['));
  bool first = true;
  bool has = false;
  while (true) {
    FSB_RETURN_IF_ERROR(r.NextElement(first, has));
    if (!has) return Status::Ok();
    FSB_RETURN_IF_ERROR(ReadId(r, scratch.value, node.content.emplace_back()));
  }
}

Status ReadNodeField(JsonReader& r, NodeField field, DecodeScratch& scratch, Node& node,
                     bool& have_type, std::optional<std::string>& raw_target) {
  std::string_view s;
  switch (field) {
    case NodeField::kName: {
      if (r.TryNull()) return Status::Ok();
      FSB_RETURN_IF_ERROR(r.ReadString(s, scratch.value));
      if (const char* err = GoUnquoteInto(s, node.name)) {
        return r.Error(fmt::format("name \"{}\" does not unquote: {}", s.substr(0, 256), err));
      }
      return Status::Ok();
    }
    case NodeField::kType:
      if (r.TryNull()) return Status::Ok();
      FSB_RETURN_IF_ERROR(r.ReadString(s, scratch.value));
      if (!ParseNodeType(s, node.type)) {
        return r.Error(fmt::format("unknown node type \"{}\"", s.substr(0, 64)));
      }
      have_type = true;
      return Status::Ok();
    case NodeField::kMode:
      return ReadUintField(r, node.mode);
    case NodeField::kMtime:
      return ReadTime(r, scratch.value, node.mtime);
    case NodeField::kAtime:
      return ReadTime(r, scratch.value, node.atime);
    case NodeField::kCtime:
      return ReadTime(r, scratch.value, node.ctime);
    case NodeField::kUid:
      return ReadUintField(r, node.uid);
    case NodeField::kGid:
      return ReadUintField(r, node.gid);
    case NodeField::kUser:
      return ReadStringField(r, scratch.value, node.user);
    case NodeField::kGroup:
      return ReadStringField(r, scratch.value, node.group);
    case NodeField::kInode:
      return ReadUintField(r, node.inode);
    case NodeField::kDeviceId:
      return ReadUintField(r, node.device_id);
    case NodeField::kSize:
      return ReadUintField(r, node.size);
    case NodeField::kLinks:
      return ReadUintField(r, node.links);
    case NodeField::kLinkTarget:
      return ReadStringField(r, scratch.value, node.linktarget);
    case NodeField::kLinkTargetRaw:
      if (r.TryNull()) return Status::Ok();
      raw_target.emplace();
      return ReadBase64(r, scratch.value, *raw_target);
    case NodeField::kXattrs:
      return ReadXattrs(r, scratch, node.xattrs);
    case NodeField::kDevice:
      return ReadUintField(r, node.device);
    case NodeField::kContent:
      return ReadContent(r, scratch, node);
    case NodeField::kSubtree:
      if (r.TryNull()) {
        node.subtree.reset();
        return Status::Ok();
      }
      return ReadId(r, scratch.value, node.subtree.emplace());
    case NodeField::kError:
      return ReadStringField(r, scratch.value, node.error);
    case NodeField::kUnknown:
      return r.SkipValue();
  }
  return r.SkipValue();
}

Status ReadNode(JsonReader& r, DecodeScratch& scratch, Node& node) {
  FSB_RETURN_IF_ERROR(r.Expect('{'));
  bool first = true;
  bool has = false;
  bool have_type = false;
  bool have_content = false;
  std::optional<std::string> raw_target;
  std::string_view key;
  while (true) {
    FSB_RETURN_IF_ERROR(r.NextMember(first, has, key, scratch.key));
    if (!has) break;
    const NodeField field = LookupNodeField(key, scratch.next_field);
    if (field == NodeField::kContent) have_content = true;
    Status st = ReadNodeField(r, field, scratch, node, have_type, raw_target);
    if (!st.ok()) {
      for (const NodeFieldName& f : kNodeFields) {
        if (f.field == field) return st.WithContext(f.name);
      }
      return st.WithContext(fmt::format("field \"{}\"", key.substr(0, 64)));  // unknown field
    }
  }
  if (!have_content) node.content_null = true;  // Go: an absent slice is nil, as null
  // restic ≥ 0.16: linktarget_raw holds the exact bytes and wins over the lossy linktarget.
  if (raw_target) node.linktarget = std::move(*raw_target);
  if (!have_type) return r.Error("node without a type");
  if (node.name.empty()) return r.Error("node without a name");
  return Status::Ok();
}

// Occurrences of `{"name":` in `json`: an upper bound of the nodes in a compact tree (xattrs
// count too). Inside a JSON string '"' is always escaped, so each one starts an object.
size_t CountNameKeys(std::string_view json) {
  constexpr std::string_view kKey = "{\"name\":";
  size_t count = 0;
  const char* p = json.data();
  const char* end = p + json.size();
  while ((p = static_cast<const char*>(std::memchr(p, '{', static_cast<size_t>(end - p))))) {
    if (static_cast<size_t>(end - p) >= kKey.size() &&
        std::memcmp(p, kKey.data(), kKey.size()) == 0) {
      ++count;
    }
    ++p;
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// Snapshots (§10)

void AppendStringArray(const std::vector<std::string>& v, std::string& out) {
  out += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    AppendGoJsonString(v[i], out);
  }
  out += ']';
}

// A []string field; null is empty, and so is a null element (Go leaves the string zero).
Status ReadStringArray(JsonReader& r, std::string& scratch, std::vector<std::string>& out) {
  out.clear();
  if (r.TryNull()) return Status::Ok();
  FSB_RETURN_IF_ERROR(r.Expect('['));
  bool first = true;
  bool has = false;
  while (true) {
    FSB_RETURN_IF_ERROR(r.NextElement(first, has));
    if (!has) return Status::Ok();
    FSB_RETURN_IF_ERROR(ReadStringField(r, scratch, out.emplace_back()));
  }
}

Status ReadOptionalId(JsonReader& r, std::string& scratch, std::optional<Id>& id) {
  if (r.TryNull()) {
    id.reset();
    return Status::Ok();
  }
  return ReadId(r, scratch, id.emplace());
}

Status ReadSnapshotField(JsonReader& r, std::string_view key, std::string_view json,
                         std::string& scratch, Snapshot& s, bool& have_time, bool& have_tree) {
  if (KeyIs(key, "time")) {
    if (r.TryNull()) return Status::Ok();
    have_time = true;
    return ReadTime(r, scratch, s.time);
  }
  if (KeyIs(key, "parent")) return ReadOptionalId(r, scratch, s.parent);
  if (KeyIs(key, "tree")) {
    if (r.TryNull()) {
      have_tree = false;
      return Status::Ok();
    }
    have_tree = true;
    return ReadId(r, scratch, s.tree);
  }
  if (KeyIs(key, "paths")) return ReadStringArray(r, scratch, s.paths);
  if (KeyIs(key, "hostname")) return ReadStringField(r, scratch, s.hostname);
  if (KeyIs(key, "username")) return ReadStringField(r, scratch, s.username);
  if (KeyIs(key, "uid")) return ReadUintField(r, s.uid);
  if (KeyIs(key, "gid")) return ReadUintField(r, s.gid);
  if (KeyIs(key, "excludes")) return ReadStringArray(r, scratch, s.excludes);
  if (KeyIs(key, "tags")) return ReadStringArray(r, scratch, s.tags);
  if (KeyIs(key, "original")) return ReadOptionalId(r, scratch, s.original);
  if (KeyIs(key, "program_version")) return ReadStringField(r, scratch, s.program_version);
  if (KeyIs(key, "summary")) {
    if (r.TryNull()) {
      s.summary_json.clear();
      return Status::Ok();
    }
    if (r.Peek() != '{') return r.Error("summary is not an object");
    const size_t start = r.offset();
    FSB_RETURN_IF_ERROR(r.SkipValue());
    s.summary_json = internal::CompactJson(json.substr(start, r.offset() - start));
    return Status::Ok();
  }
  return r.SkipValue();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API

Timestamp LocalTimestamp(int64_t sec, uint32_t nsec) {
  Timestamp t{sec, nsec, 0};
  const auto tt = static_cast<time_t>(sec);
  struct tm tm {};
  if (localtime_r(&tt, &tm) != nullptr) t.utc_offset_sec = static_cast<int32_t>(tm.tm_gmtoff);
  return t;
}

std::string FormatTimestamp(const Timestamp& t) {
  std::string out;
  out.reserve(35);
  AppendTimestamp(t, out);
  return out;
}

Result<Timestamp> ParseTimestamp(std::string_view text) {
  Timestamp t;
  if (const char* err = ParseTimestampInto(text, t)) {
    return Status::InvalidArgument(fmt::format("invalid time \"{}\": {}", text.substr(0, 64), err));
  }
  return t;
}

std::string_view NodeTypeName(NodeType t) {
  const auto i = static_cast<size_t>(t);
  return i < kNodeTypeNames.size() ? kNodeTypeNames[i] : std::string_view("invalid");
}

// Go's os.fillFileStatFromSys (Linux): permission bits plus Go's type and special bits.
uint32_t GoModeFromStat(uint32_t st_mode) {
  uint32_t m = st_mode & 0777;
  switch (st_mode & S_IFMT) {
    case S_IFBLK:
      m |= kGoModeDevice;
      break;
    case S_IFCHR:
      m |= kGoModeDevice | kGoModeCharDevice;
      break;
    case S_IFDIR:
      m |= kGoModeDir;
      break;
    case S_IFIFO:
      m |= kGoModeNamedPipe;
      break;
    case S_IFLNK:
      m |= kGoModeSymlink;
      break;
    case S_IFSOCK:
      m |= kGoModeSocket;
      break;
    default:
      break;
  }
  if (st_mode & S_ISGID) m |= kGoModeSetgid;
  if (st_mode & S_ISUID) m |= kGoModeSetuid;
  if (st_mode & S_ISVTX) m |= kGoModeSticky;
  return m;
}

uint32_t StatModeFromGo(uint32_t go_mode) {
  uint32_t m = go_mode & 0777;
  if (go_mode & kGoModeDir) {
    m |= S_IFDIR;
  } else if (go_mode & kGoModeSymlink) {
    m |= S_IFLNK;
  } else if (go_mode & kGoModeDevice) {
    m |= (go_mode & kGoModeCharDevice) ? S_IFCHR : S_IFBLK;
  } else if (go_mode & kGoModeNamedPipe) {
    m |= S_IFIFO;
  } else if (go_mode & kGoModeSocket) {
    m |= S_IFSOCK;
  } else {
    m |= S_IFREG;
  }
  if (go_mode & kGoModeSetuid) m |= S_ISUID;
  if (go_mode & kGoModeSetgid) m |= S_ISGID;
  if (go_mode & kGoModeSticky) m |= S_ISVTX;
  return m;
}

void AppendGoJsonString(std::string_view s, std::string& out) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    size_t run = i;
    while (run < s.size() && kJsonPlainByte[static_cast<uint8_t>(s[run])]) ++run;
    if (run > i) {
      out.append(s.data() + i, run - i);
      i = run;
      if (i == s.size()) break;
    }
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      ++i;
      out += '\\';
      switch (b) {
        case '"':
        case '\\':
          out += static_cast<char>(b);
          break;
        case '\n':
          out += 'n';
          break;
        case '\r':
          out += 'r';
          break;
        case '\t':
          out += 't';
          break;
        default:  // other control bytes and <, >, &
          out += "u00";
          AppendHex(b, 2, out);
      }
      continue;
    }
    char32_t r;
    const size_t w = DecodeUtf8(s, i, &r);
    if (w == 1) {
      out += "\\ufffd";
    } else if (r == 0x2028 || r == 0x2029) {
      out += "\\u202";
      out += kLowerHex[r & 15];
    } else {
      out.append(s.data() + i, w);
    }
    i += w;
  }
  out += '"';
}

std::string GoQuoteName(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() + 8);
  AppendGoQuoted<false>(raw, out);
  return out;
}

Result<std::string> GoUnquoteName(std::string_view quoted) {
  std::string out;
  if (const char* err = GoUnquoteInto(quoted, out)) {
    return Status::InvalidArgument(
        fmt::format("name \"{}\" does not unquote: {}", quoted.substr(0, 256), err));
  }
  return out;
}

void AppendNodeJson(const Node& node, std::string& out) {
  out += "{\"name\":\"";
  AppendGoQuoted<true>(node.name, out);
  out += "\",\"type\":\"";
  out += NodeTypeName(node.type);
  out += '"';
  if (node.mode != 0) AppendUintField("mode", node.mode, out);
  AppendTimeField("mtime", node.mtime, out);
  AppendTimeField("atime", node.atime, out);
  AppendTimeField("ctime", node.ctime, out);
  AppendUintField("uid", node.uid, out);
  AppendUintField("gid", node.gid, out);
  if (!node.user.empty()) AppendStringField("user", node.user, out);
  if (!node.group.empty()) AppendStringField("group", node.group, out);
  if (node.inode != 0) AppendUintField("inode", node.inode, out);
  if (node.device_id != 0) AppendUintField("device_id", node.device_id, out);
  if (node.size != 0) AppendUintField("size", node.size, out);
  if (node.links != 0) AppendUintField("links", node.links, out);
  if (!node.linktarget.empty()) {
    AppendStringField("linktarget", node.linktarget, out);
    // restic ≥ 0.16 (§16): the exact bytes too, only when the JSON string had to lose some.
    if (!ValidUtf8(node.linktarget)) {
      AppendField("linktarget_raw", out);
      AppendBase64(node.linktarget, out);
    }
  }
  if (!node.xattrs.empty()) {
    AppendField("extended_attributes", out);
    out += '[';
    for (size_t i = 0; i < node.xattrs.size(); ++i) {
      if (i) out += ',';
      out += "{\"name\":";
      AppendGoJsonString(node.xattrs[i].name, out);
      out += ",\"value\":";
      AppendBase64(AsString(node.xattrs[i].value), out);
      out += '}';
    }
    out += ']';
  }
  if (node.device != 0) AppendUintField("device", node.device, out);
  AppendField("content", out);
  if (node.type == NodeType::kFile) {
    out += '[';
    for (size_t i = 0; i < node.content.size(); ++i) {
      if (i) out += ',';
      out += '"';
      AppendHexId(node.content[i], out);
      out += '"';
    }
    out += ']';
  } else {
    out += "null";
  }
  if (node.subtree) AppendIdField("subtree", *node.subtree, out);
  if (!node.error.empty()) AppendStringField("error", node.error, out);
  out += '}';
}

Bytes EncodeTree(const std::vector<Node>& nodes) {
  std::string out;
  out.reserve(16 + nodes.size() * 480);  // a typical file node is 400-450 bytes
  out += "{\"nodes\":[";
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (i) out += ',';
    AppendNodeJson(nodes[i], out);
  }
  out += "]}\n";
  return Bytes(out.begin(), out.end());
}

Result<std::vector<Node>> DecodeTree(ByteView json) {
  JsonReader r(AsString(json));
  std::vector<Node> nodes;
  DecodeScratch scratch;
  auto fail = [&](const Status& st) { return st.WithContext("decode tree"); };
  if (Status st = r.Expect('{'); !st.ok()) return fail(st);
  bool first = true;
  bool has = false;
  std::string_view key;
  while (true) {
    if (Status st = r.NextMember(first, has, key, scratch.key); !st.ok()) return fail(st);
    if (!has) break;
    if (!KeyIs(key, "nodes")) {
      if (Status st = r.SkipValue(); !st.ok()) return fail(st);
      continue;
    }
    nodes.clear();
    if (r.TryNull()) continue;
    if (Status st = r.Expect('['); !st.ok()) return fail(st.WithContext("nodes"));
    // Size the vector once: a Node is ~350 bytes, and growing by doubling would move each one
    // twice and leave up to half unused. Only a hint: JSON that is not compact (or puts "name"
    // later in the object) just regrows. Capped by size: a node restic writes takes at least
    // ~150 bytes, so a blob stuffed with `{"name":` cannot make this reserve more than ~4x
    // its own size.
    nodes.reserve(std::min(CountNameKeys(AsString(json).substr(r.offset())), json.size() / 100));
    bool first_node = true;
    bool has_node = false;
    while (true) {
      if (Status st = r.NextElement(first_node, has_node); !st.ok()) return fail(st);
      if (!has_node) break;
      Node& node = nodes.emplace_back();
      if (Status st = ReadNode(r, scratch, node); !st.ok()) {
        std::string where = fmt::format("node {}", nodes.size() - 1);
        if (!node.name.empty()) where += fmt::format(" \"{}\"", GoQuoteName(node.name));
        return fail(st.WithContext(where));
      }
    }
  }
  if (!r.AtEnd()) return fail(r.Error("data after the tree object"));
  return nodes;
}

std::string EncodeSnapshot(const Snapshot& s) {
  std::string out;
  out.reserve(512);
  out += "{\"time\":\"";
  AppendTimestamp(s.time, out);
  out += '"';
  if (s.parent) AppendIdField("parent", *s.parent, out);
  AppendIdField("tree", s.tree, out);
  AppendField("paths", out);
  if (s.paths.empty()) {
    out += "null";  // Go's nil slice; restic always has at least one path
  } else {
    AppendStringArray(s.paths, out);
  }
  if (!s.hostname.empty()) AppendStringField("hostname", s.hostname, out);
  if (!s.username.empty()) AppendStringField("username", s.username, out);
  if (s.uid != 0) AppendUintField("uid", s.uid, out);
  if (s.gid != 0) AppendUintField("gid", s.gid, out);
  if (!s.excludes.empty()) {
    AppendField("excludes", out);
    AppendStringArray(s.excludes, out);
  }
  if (!s.tags.empty()) {
    AppendField("tags", out);
    AppendStringArray(s.tags, out);
  }
  if (s.original) AppendIdField("original", *s.original, out);
  if (!s.program_version.empty()) AppendStringField("program_version", s.program_version, out);
  if (!s.summary_json.empty()) {
    AppendField("summary", out);
    out += s.summary_json;
  }
  out += '}';
  return out;
}

Result<Snapshot> DecodeSnapshot(ByteView json) {
  const std::string_view text = AsString(json);
  JsonReader r(text);
  Snapshot s;
  std::string key_scratch;
  std::string scratch;
  auto fail = [&](const Status& st) { return st.WithContext("decode snapshot"); };
  if (Status st = r.Expect('{'); !st.ok()) return fail(st);
  bool first = true;
  bool has = false;
  bool have_time = false;
  bool have_tree = false;
  std::string_view key;
  while (true) {
    if (Status st = r.NextMember(first, has, key, key_scratch); !st.ok()) return fail(st);
    if (!has) break;
    std::string field(key.substr(0, 64));
    if (Status st = ReadSnapshotField(r, key, text, scratch, s, have_time, have_tree); !st.ok()) {
      return fail(st.WithContext(field));
    }
  }
  if (!r.AtEnd()) return fail(r.Error("data after the snapshot object"));
  if (!have_time) return fail(Status::Corruption("missing time"));
  if (!have_tree) return fail(Status::Corruption("missing tree"));
  return s;
}

}  // namespace fsb::repo
