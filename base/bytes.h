// base/bytes.h: binary data types and their text forms (hex, base64), little-endian codecs.
// Pure functions; safe for concurrent use.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace fsb {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;
using MutableByteView = std::span<uint8_t>;

inline ByteView AsBytes(std::string_view s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string_view AsString(ByteView b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}
inline Bytes ToBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Lowercase hex.
std::string HexEncode(ByteView data);
// Accepts upper or lower case; kInvalidArgument on odd length or a non-hex digit.
Result<Bytes> HexDecode(std::string_view hex);

// Standard base64 with padding (RFC 4648 §4).
std::string Base64Encode(ByteView data);
// Standard alphabet, padding required, as Go's StdEncoding (and so restic) requires;
// kInvalidArgument on anything malformed.
Result<Bytes> Base64Decode(std::string_view text);

inline uint32_t DecodeLE32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline uint64_t DecodeLE64(const uint8_t* p) {
  return uint64_t(DecodeLE32(p)) | uint64_t(DecodeLE32(p + 4)) << 32;
}
inline void EncodeLE32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
  p[2] = uint8_t(v >> 16);
  p[3] = uint8_t(v >> 24);
}
inline void AppendLE32(Bytes& out, uint32_t v) {
  uint8_t b[4];
  EncodeLE32(b, v);
  out.insert(out.end(), b, b + 4);
}
inline void Append(Bytes& out, ByteView v) { out.insert(out.end(), v.begin(), v.end()); }

// True for an empty view or one of only zero bytes; memcmp-fast (not constant time).
inline bool IsAllZero(ByteView b) {
  return b.empty() || (b[0] == 0 && std::memcmp(b.data(), b.data() + 1, b.size() - 1) == 0);
}

// A buffer reused for one item after another, each filled in full before it is read (a pack part
// read, a blob decrypted or decompressed): it grows to the largest size asked and is never
// zero-filled, so its pages are faulted in once, not for every item. One thread at a time; a view
// from Get stays valid until the next Get.
class ScratchBuffer {
 public:
  MutableByteView Get(size_t n) {
    if (cap_ < n) {
      data_.reset();  // the old one goes first: one buffer at a time
      data_ = std::make_unique_for_overwrite<uint8_t[]>(n);
      cap_ = n;
    }
    return MutableByteView(data_.get(), n);
  }

 private:
  std::unique_ptr<uint8_t[]> data_;
  size_t cap_ = 0;
};

}  // namespace fsb
