// repo/crypto.h: restic's cryptography (restic-repo-format.md §2, §3) through OpenSSL 3:
// SHA-256, AES-256-CTR + Poly1305-AES sealed boxes, scrypt, CSPRNG.
// All functions are safe for concurrent use (each call uses its own OpenSSL contexts).
#pragma once

#include <array>
#include <cstdint>

#include "base/bytes.h"
#include "base/status.h"
#include "repo/id.h"

namespace fsb::repo {

// restic-repo-format.md §2.2: IV 16 || ciphertext || MAC 16.
inline constexpr size_t kIvSize = 16;
inline constexpr size_t kMacSize = 16;
inline constexpr size_t kCryptoOverhead = kIvSize + kMacSize;
static_assert(kCryptoOverhead == 32);

// A crypto key: AES-256 encryption key plus the Poly1305-AES key (k, masked r).
struct CryptoKey {
  std::array<uint8_t, 32> encrypt{};
  std::array<uint8_t, 16> mac_k{};
  std::array<uint8_t, 16> mac_r{};  // always stored masked

  // 64 fresh random bytes, r masked.
  static CryptoKey Random();
  // From 64 bytes: encrypt = b[0:32], k = b[32:48], r = mask(b[48:64]) (the user key from scrypt).
  static CryptoKey FromBytes(ByteView b64bytes);
  // restic refuses keys whose encrypt, k or r part is all zero.
  bool Valid() const;
};

// Clears the bits restic/Poly1305 clamp (§2.1).
void MaskPoly1305R(std::array<uint8_t, 16>& r);

// Fills `out` from the CSPRNG (RAND_bytes). Aborts if the CSPRNG fails: no secure fallback exists.
void RandomBytes(MutableByteView out);

// Streaming SHA-256. One thread at a time.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(ByteView data);
  Id Finish();  // resets the state for reuse

 private:
  void* ctx_;  // EVP_MD_CTX*
};

// Seals `plain` with a fresh random IV: returns IV || AES-256-CTR(plain) || MAC.
Bytes Seal(const CryptoKey& key, ByteView plain);
// Appends the sealed form of `plain` to `out` (no intermediate copy). `plain` must not point into
// `out`.
void SealAppend(const CryptoKey& key, ByteView plain, Bytes& out);
// Verifies the MAC (constant time) before decrypting. kCorruption with message
// "ciphertext verification failed" on a bad MAC, a short input or an all-zero IV;
// kInvalidArgument if `key` is not Valid().
Result<Bytes> Open(const CryptoKey& key, ByteView sealed);
// Open into `out`, which must be sealed.size() - kCryptoOverhead bytes (a sealed input shorter
// than the overhead is kCorruption, as in Open).
Status OpenInto(const CryptoKey& key, ByteView sealed, MutableByteView out);
// Open where `sealed` lies: verifies the MAC, then decrypts the ciphertext in place and returns
// it, sealed[kIvSize, size - kMacSize). On an error `sealed` is unchanged.
Result<MutableByteView> OpenInPlace(const CryptoKey& key, MutableByteView sealed);
// Open's checks without the decryption: OK if the MAC of `sealed` is right (constant time).
Status VerifyMac(const CryptoKey& key, ByteView sealed);

// scrypt(password, salt, N, r, p, 64 bytes). kInvalidArgument for parameters OpenSSL refuses.
Result<Bytes> Scrypt(ByteView password, ByteView salt, uint64_t n, uint32_t r, uint32_t p);

}  // namespace fsb::repo
