// repo/id.h: the 32-byte SHA-256 identifier of every repository object and blob
// (restic-repo-format.md §1). Value type.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace fsb::repo {

struct Id {
  std::array<uint8_t, 32> bytes{};

  // SHA-256 of `data` (OpenSSL).
  static Id Hash(ByteView data);
  // Exactly 64 hex digits; kInvalidArgument otherwise.
  static Result<Id> FromHex(std::string_view hex);

  std::string Hex() const { return HexEncode(bytes); }
  // The first 8 hex digits, as restic and Velero show them.
  std::string Short() const { return HexEncode(ByteView(bytes.data(), 4)); }
  bool IsZero() const {
    for (uint8_t b : bytes)
      if (b) return false;
    return true;
  }
  auto operator<=>(const Id&) const = default;
  bool operator==(const Id&) const = default;
};

struct IdHash {
  size_t operator()(const Id& id) const {
    // SHA-256 output is uniform: its first 8 bytes are a perfect hash.
    size_t h;
    std::memcpy(&h, id.bytes.data(), sizeof h);
    return h;
  }
};

}  // namespace fsb::repo

template <>
struct std::hash<fsb::repo::Id> : fsb::repo::IdHash {};
