// repo/pack.h: blobs and pack files (restic-repo-format.md §6, §7): encrypting a blob into its
// stored form, assembling a pack, and reading a pack's header. Pure functions and a one-thread
// PackBuilder.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "repo/compress.h"
#include "repo/crypto.h"
#include "repo/id.h"

namespace fsb::repo {

class Backend;

enum class BlobType : uint8_t { kData = 0, kTree = 1 };
std::string_view BlobTypeName(BlobType t);  // "data" / "tree"

// §7.1 header entries: type 1 + length 4 + id 32, and with uncompressed length 4 more.
inline constexpr size_t kPlainEntrySize = 1 + 4 + 32;
inline constexpr size_t kCompressedEntrySize = 1 + 4 + 4 + 32;
static_assert(kPlainEntrySize == 37);
static_assert(kCompressedEntrySize == 41);
// restic refuses pack headers above 16 MiB (§7.1).
inline constexpr uint64_t kMaxHeaderSize = 16u << 20;
// The smallest valid pack: one 1-byte blob sealed (33) + header with one entry sealed + 4.
inline constexpr uint64_t kMinPackSize = (1 + kCryptoOverhead) + (kPlainEntrySize + kCryptoOverhead) + 4;

// One blob's place in a pack.
struct PackedBlob {
  BlobType type = BlobType::kData;
  Id id;
  uint32_t offset = 0;
  uint32_t length = 0;               // stored (sealed) length
  uint32_t uncompressed_length = 0;  // 0: stored uncompressed
  bool operator==(const PackedBlob&) const = default;
};

// The stored form of a blob: seal(zstd(plain)) or seal(plain). v2 trees are always compressed, v2
// data unless mode is kOff, v1 never; with kAuto, a data blob that LooksIncompressible is stored
// without zstd (§7.1 allows plain data blobs in v2, and restic reads them). zstd could only add its
// frame header to such a blob: for small ones at ~5 µs of fixed cost a call (for a volume of small
// compressed or encrypted files ~11 % of a backup's CPU), for big chunks at ~0.3 ms a MiB, plus the
// copies of its raw blocks and the decompression when the blob is verified and restored (~5 % of
// the CPU of a backup of 1 GiB of random data). Sets *uncompressed_length (0 when not compressed).
Bytes EncodeBlob(const CryptoKey& key, BlobType type, ByteView plain, uint32_t repo_version,
                 CompressionMode mode, uint32_t* uncompressed_length);

inline constexpr size_t kIncompressibleSampleStride = 16u << 10;
// Whether `b` looks like random bytes: 256-byte samples at its start, middle and end, and one every
// kIncompressibleSampleStride bytes between, each hold at least 148 distinct byte values (random
// bytes: 162 on average; text, code, executables and libraries: far fewer). False below 512 bytes.
// Every compressible stretch of more than 16.25 KiB holds a sample, so a blob judged random can
// only hide shorter ones (checking costs ~1.5 % of its bytes). Measured on this machine's files
// (first 64 KiB): true for none of 1285 executables, 1008 shared libraries and 4647 kernel sources;
// for 99.4 % of random blobs; for 70 % of 4364 .gz/.png/.jpg files, of which 1 would have gained
// more than 5 % from zlib.
bool LooksIncompressible(ByteView b);

// EncodeBlob, then proves the stored form before anyone packs it: opens it (MAC, decryption),
// decompresses it and asks `same_as_hashed` whether the result is what the blob's ID was computed
// from (the backup passes a 64-bit xxHash taken in the same pass as the SHA-256, so a bit that
// flipped in `plain` after hashing is caught too); without it, the result is compared with
// `plain` byte for byte. A mismatch (memory corruption, a compressor bug) is kInternal and nothing
// is returned. This is restic's verify-before-upload (≥ 0.16.4) at encoding time, when a cheap
// checksum can stand in for its second SHA-256 of every plaintext byte; PackSaver then only
// re-checks each blob's MAC, which catches any change of the stored bytes since.
Result<Bytes> EncodeBlobChecked(const CryptoKey& key, BlobType type, ByteView plain,
                                uint32_t repo_version, CompressionMode mode,
                                uint32_t* uncompressed_length,
                                const std::function<bool(ByteView decoded)>& same_as_hashed = {});

// Opens, decompresses and verifies a stored blob against `id`. kCorruption naming the blob on a MAC
// failure, a bad frame, a size mismatch or a hash mismatch.
Result<Bytes> DecodeBlob(const CryptoKey& key, const PackedBlob& blob, ByteView stored);
// DecodeBlob without allocating: `stored` is decrypted where it lies (afterwards it holds the
// plaintext or the zstd frame, after a MAC failure it is unchanged), a compressed blob decompressed
// into `scratch`. The result views `stored` or `scratch`. Same errors as DecodeBlob.
Result<ByteView> DecodeBlobInPlace(const CryptoKey& key, const PackedBlob& blob,
                                   MutableByteView stored, ScratchBuffer& scratch);

// Appends a pack's tail for `blobs` to `out`: the sealed header and its 4-byte length (§7.1).
void AppendPackHeader(const CryptoKey& key, const std::vector<PackedBlob>& blobs, Bytes& out);
// The plaintext header size of one entry.
inline size_t PackHeaderEntrySize(uint32_t uncompressed_length) {
  return uncompressed_length ? kCompressedEntrySize : kPlainEntrySize;
}

// Builds one pack in memory. One thread.
class PackBuilder {
 public:
  // Reserves room for `bytes` of blob data (no pages are touched), so a pack is built without
  // reallocating and copying.
  void Reserve(size_t bytes) { data_.reserve(bytes); }
  // Builds the next pack in `buffer` (emptied; its capacity kept), e.g. one from a BufferPool.
  void UseBuffer(Bytes&& buffer) {
    data_ = std::move(buffer);
    data_.clear();
  }
  // Appends an already encoded blob.
  void Add(BlobType type, const Id& id, ByteView stored, uint32_t uncompressed_length);
  // Bytes of blob data so far (restic finishes a pack when this reaches the target size, §7.3).
  uint64_t data_size() const { return data_.size(); }
  size_t count() const { return blobs_.size(); }
  uint64_t header_size() const { return header_size_; }  // plaintext header size so far
  // Seals the header and returns the whole pack file; the builder is empty afterwards.
  Bytes Finish(const CryptoKey& key, std::vector<PackedBlob>* blobs);

 private:
  Bytes data_;
  std::vector<PackedBlob> blobs_;
  uint64_t header_size_ = 0;
};

// Parses a pack's header from the last bytes of the pack. `tail` must be the last `tail.size()`
// bytes of a pack of `pack_size` bytes. When the header does not fit in `tail`, returns an empty
// vector and sets *need_bytes to the tail size to load instead (0 otherwise). kCorruption naming
// the pack on any inconsistency (bad length, MAC, unknown type, unlisted bytes).
Result<std::vector<PackedBlob>> ParsePackHeader(const CryptoKey& key, const Id& pack_id,
                                                uint64_t pack_size, ByteView tail,
                                                uint32_t repo_version, uint64_t* need_bytes);

// Reads and parses the header of pack `pack_id` from the backend (one request in the common case).
Result<std::vector<PackedBlob>> ReadPackHeader(Backend& backend, const CryptoKey& key,
                                               const Id& pack_id, uint64_t pack_size,
                                               uint32_t repo_version);

}  // namespace fsb::repo
