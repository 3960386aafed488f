// repo/chunker.h: restic's content-defined chunker (Rabin fingerprints of a 64-byte window,
// restic-repo-format.md §12), cutting exactly where restic 0.14 (chunker library v0.4.0) cuts.
// ChunkerTables are immutable and safe for concurrent use; a Chunker is used by one thread at a
// time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "base/bytes.h"
#include "repo/polynomial.h"

namespace fsb::repo {

// restic-repo-format.md §12: restic 0.14 uses the chunker library's defaults.
inline constexpr uint64_t kChunkerWindowBytes = 64;
inline constexpr uint64_t kChunkerMinBytes = 512 * 1024;
inline constexpr uint64_t kChunkerMaxBytes = 8 * 1024 * 1024;
inline constexpr uint64_t kChunkerSplitMask = (uint64_t{1} << 20) - 1;
static_assert(kChunkerMinBytes == 524288 && kChunkerMaxBytes == 8388608);

// The two 256-entry lookup tables of one polynomial (§12.3) and the scan loops that use them.
class ChunkerTables {
 public:
  // The tables for `pol`, built on first use and then cached for the life of the process (4 KiB
  // each; a process sees about one polynomial per repository). `pol` must have a degree in
  // [Polynomial::kMinChunkerDegree, kMaxChunkerDegree] (FSB_CHECK): Polynomial::Parse and Random
  // guarantee it. Thread-safe. The result is shared by the cache and every user of `pol`.
  static std::shared_ptr<const ChunkerTables> Get(Polynomial pol);

  ChunkerTables(const ChunkerTables&) = delete;
  ChunkerTables& operator=(const ChunkerTables&) = delete;

  Polynomial polynomial() const { return pol_; }

  // §12.1: the fingerprint of a window of exactly kChunkerWindowBytes (FSB_CHECK) bytes,
  // a value below 2^deg(P). Bytes of a chunk cut on content end in a window with
  // (Fingerprint & kChunkerSplitMask) == 0.
  uint64_t Fingerprint(ByteView window) const;

  // Split points for a scan that does not start at a chunk start (§12.3 closed form), e.g. a
  // parallel scan of one large file cut into ranges: returns the smallest end e in
  // [from, data.size()] whose preceding window has (Fingerprint(data[e-64, e)) & mask) == 0, or
  // nullopt. Requires from >= kChunkerWindowBytes (FSB_CHECK): a worker for file range [a, b)
  // passes the 64 bytes before a too. Chunk boundaries follow from the sorted split points of a
  // file: from a chunk start s, the first split point e with e - s >= kChunkerMinBytes cuts, unless
  // s + kChunkerMaxBytes comes first (then that cuts), and the file's end ends the last chunk.
  std::optional<size_t> FindSplitEnd(ByteView data, size_t from) const;

 private:
  friend class Chunker;
  explicit ChunkerTables(Polynomial pol);

  // Slides byte `in` into a window whose oldest byte `out` leaves, given the window's digest.
  uint64_t Roll(uint64_t digest, uint8_t out, uint8_t in) const {
    return ((digest << 8) | in) ^ mod_[digest >> shift_] ^ out_[out];
  }
  // Rolls p[begin, end) in; on entry *digest is the fingerprint of p[begin-64, begin), which must
  // be readable. Returns the first i whose window p[i-63, i] has (fingerprint & mask) == 0, or
  // `end` with *digest the fingerprint of p[end-64, end). *digest is unspecified after a hit.
  size_t Scan(const uint8_t* p, size_t begin, size_t end, uint64_t* digest) const;

  Polynomial pol_;
  int shift_;  // deg(P) - 8: digest >> shift_ is the byte that overflows on the next shift
  // out_[b] = b * x^(8*64) mod P: the contribution of a byte leaving the window, after the shift
  // (restic XORs b * x^(8*63) mod P before it; same result, off the critical path).
  std::array<uint64_t, 256> out_;
  // mod_[b] = (b * x^deg mod P) | (b << deg): reduces the overflow byte and clears it (§12.3).
  std::array<uint64_t, 256> mod_;
};

// Finds restic's chunk boundaries in a stream of files pushed through it in pieces of any size.
// It never copies or owns the data: the caller keeps the bytes of the current chunk itself.
//
//   chunker.Reset();                          // new file
//   for each piece of the file:
//     while (!piece.empty()) {
//       bool cut;
//       size_t n = chunker.FindCut(piece, &cut);
//       ... the current chunk continues with piece[0, n); if cut, it ends there ...
//       piece = piece.subspan(n);
//     }
//   if (chunker.pending() > 0) ... the last chunk ends at the end of the file ...
//
// The first kChunkerMinBytes - 64 bytes of every chunk are skipped without hashing; after that the
// scan runs four independent fingerprint streams in lockstep (3.3x one stream; ~2 GB/s overall
// on the dev VM, bench/micro/chunker_bench.cc).
class Chunker {
 public:
  // Shares `tables` (must not be null) with every other chunker of the same polynomial.
  explicit Chunker(std::shared_ptr<const ChunkerTables> tables);

  // Starts a new file (also needed after the last chunk of a file whose length was not a cut).
  void Reset();

  // Scans `data`, the next bytes of the current file. Returns the number of bytes consumed: up to
  // and including a cut point (then *found_cut is true, the chunk ends there and the chunker is
  // ready for the next chunk of the same file), or data.size() with *found_cut false. Returns 0
  // only for empty `data`. `data` is borrowed for the call.
  size_t FindCut(ByteView data, bool* found_cut);

  // Bytes of the current chunk seen so far (0 right after a cut or Reset).
  uint64_t pending() const { return count_; }

  const std::shared_ptr<const ChunkerTables>& tables() const { return tables_; }

 private:
  std::shared_ptr<const ChunkerTables> tables_;
  uint64_t count_ = 0;   // bytes of the current chunk seen
  uint64_t digest_ = 0;  // fingerprint of window_ (read from wpos_ on, wrapping)
  // The last 64 hashed bytes, as a ring; all zero (digest 0) while the chunk's start is skipped,
  // which gives the exact window once 64 bytes are hashed (§12.2).
  std::array<uint8_t, kChunkerWindowBytes> window_{};
  size_t wpos_ = 0;  // oldest byte of window_
};

// The chunk lengths of one whole file, in order (empty for an empty file). For tests and tools.
std::vector<uint64_t> ChunkBoundaries(const std::shared_ptr<const ChunkerTables>& tables,
                                      ByteView file);

}  // namespace fsb::repo
