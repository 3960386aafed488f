// repo/key.h: restic key files (`keys/<id>`, restic-repo-format.md §3): the scrypt parameters and
// the sealed master key that a password opens. Pure functions on value types; safe for concurrent
// use.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"
#include "repo/crypto.h"

namespace fsb::repo {

// §3: salt must decode to exactly this many bytes.
inline constexpr size_t kKeySaltSize = 64;

// One key file, decoded (salt and data are the base64-decoded bytes).
struct KeyFile {
  std::string created;  // RFC 3339 as written, informational
  std::string username;
  std::string hostname;
  std::string kdf;  // always "scrypt" once decoded
  uint64_t n = 0;
  uint32_t r = 0;
  uint32_t p = 0;
  Bytes salt;  // kKeySaltSize bytes
  Bytes data;  // sealed box (§2.2) holding the master key JSON
};

// scrypt parameters for a new key file. restic writes N=32768, r=8 and a p calibrated to ~0.5 s;
// p=1 is fine (it only makes brute force cheaper). Tests may use a small N for speed.
struct KeyParams {
  uint64_t n = 32768;
  uint32_t r = 8;
  uint32_t p = 1;
};

// Parses and validates a key file: kdf must be "scrypt" (else kInvalidArgument); anything else
// malformed (JSON, field types, base64, salt not 64 bytes, N not a power of two above 1, r or p
// zero, data shorter than 32 bytes) is kCorruption.
Result<KeyFile> DecodeKeyFile(ByteView json);

// Compact JSON exactly as restic writes it (Go json.Marshal, field order created, username,
// hostname, kdf, N, r, p, salt, data; no trailing newline). Its SHA-256 is the file name.
std::string EncodeKeyFile(const KeyFile& kf);

// Derives the user key from `password` and opens the master key. kPermissionDenied ("wrong
// password") when the MAC does not verify; kCorruption if the key file or the master key JSON
// inside it is malformed or the master key is invalid; kInvalidArgument for an unsupported kdf or
// scrypt parameters. Blocks for the scrypt derivation (~0.1-1 s at restic's parameters).
Result<CryptoKey> OpenKeyFile(const KeyFile& kf, std::string_view password);

// A new key file wrapping `master` under `password`, with a fresh random salt. kInvalidArgument
// for an invalid master key or scrypt parameters. Blocks for the scrypt derivation.
Result<KeyFile> CreateKeyFile(const CryptoKey& master, std::string_view password,
                              const KeyParams& params, std::string created, std::string username,
                              std::string hostname);

// The master key JSON: {"mac":{"k":"<b64>","r":"<b64>"},"encrypt":"<b64>"} (compact).
std::string EncodeMasterKeyJson(const CryptoKey& key);
// Parses the master key JSON (any whitespace; extra fields ignored). r is masked on read.
// kCorruption if malformed, a part has the wrong length, or the key is not Valid().
Result<CryptoKey> DecodeMasterKeyJson(ByteView json);

}  // namespace fsb::repo
