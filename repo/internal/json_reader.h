// repo/internal/json_reader.h: a small pull parser for the JSON restic writes (trees, snapshots),
// decoding strings as Go's encoding/json does (restic-repo-format.md §9.3): invalid UTF-8 and
// unpaired surrogate escapes become U+FFFD. It builds no DOM and copies nothing it can view, so
// trees of millions of nodes decode at memory speed. One thread per reader. Private to repo/.
//
// Every error is kCorruption with a message ending in "at offset N".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace fsb::repo::internal {

class JsonReader {
 public:
  // `in` must outlive the reader and every view it hands out.
  explicit JsonReader(std::string_view in)
      : begin_(in.data()), p_(in.data()), end_(in.data() + in.size()) {}

  size_t offset() const { return static_cast<size_t>(p_ - begin_); }
  // kCorruption "<what> at offset <offset()>".
  Status Error(std::string_view what) const;

  // Skips whitespace and returns the next byte without consuming it, or '\0' at the end.
  char Peek() {
    SkipWs();
    return p_ < end_ ? *p_ : '\0';
  }
  bool AtEnd() {
    SkipWs();
    return p_ == end_;
  }
  // Skips whitespace and consumes `c` if it comes next.
  bool TryConsume(char c) {
    if (Peek() != c) return false;
    ++p_;
    return true;
  }
  // Consumes the literal `null` if it comes next.
  bool TryNull();
  // Skips whitespace and consumes `c`, or fails naming `c`.
  Status Expect(char c);

  // Reads a string value. `out` views the input when the string has no escapes and is valid
  // UTF-8, otherwise the decoded text in `scratch`; either way it lives until the next call
  // that is handed the same `scratch`.
  Status ReadString(std::string_view& out, std::string& scratch);
  // Reads a non-negative integer literal no larger than `max` (as Go decodes into uintN: no
  // sign, fraction or exponent).
  Status ReadUint(uint64_t max, uint64_t& out);
  // Skips any one value, checking its syntax. Nesting deeper than 512 levels is an error.
  Status SkipValue();

  // Object members, after the '{' was consumed: reads the next key and its ':' into `key`
  // (see ReadString for its lifetime), or sets `has` false after consuming the closing '}'.
  // `first` starts true and is maintained by the call.
  Status NextMember(bool& first, bool& has, std::string_view& key, std::string& scratch);
  // Array elements, after the '[' was consumed: `has` false after consuming the closing ']'.
  Status NextElement(bool& first, bool& has);

 private:
  void SkipWs() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  Status ReadStringSlow(const char* start, std::string_view& out, std::string& scratch);
  Status SkipValueAt(int depth);
  Status SkipNumber();
  Status SkipLiteral(std::string_view word);

  const char* begin_;
  const char* p_;
  const char* end_;
};

// `raw` (one valid JSON value) without the whitespace outside its strings.
std::string CompactJson(std::string_view raw);

}  // namespace fsb::repo::internal
