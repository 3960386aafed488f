#include "repo/id.h"

#include <openssl/sha.h>

namespace fsb::repo {

Id Id::Hash(ByteView data) {
  Id id;
  SHA256(data.data(), data.size(), id.bytes.data());
  return id;
}

Result<Id> Id::FromHex(std::string_view hex) {
  if (hex.size() != 64) {
    return Status::InvalidArgument("invalid id \"" + std::string(hex.substr(0, 80)) +
                                   "\": want 64 hex digits");
  }
  Result<Bytes> b = HexDecode(hex);
  if (!b.ok()) return Status::InvalidArgument("invalid id \"" + std::string(hex) + "\": not hex");
  Id id;
  std::copy(b->begin(), b->end(), id.bytes.begin());
  return id;
}

}  // namespace fsb::repo
