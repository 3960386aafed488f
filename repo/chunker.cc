#include "repo/chunker.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace fsb::repo {
namespace {

constexpr uint64_t kMask = kChunkerSplitMask;
constexpr size_t kWindow = kChunkerWindowBytes;
// §12.2: bytes [0, min - 64) of a chunk are never hashed; the window at L = min is exact.
constexpr uint64_t kHashStart = kChunkerMinBytes - kChunkerWindowBytes;

// The scan runs kStreams fingerprints in lockstep over consecutive stripes of one block. One
// rolling step is a dependency chain shift -> table load -> XOR, so a single stream is
// latency-bound: 0.45 GB/s on the dev VM (AMD EPYC Zen 4, -O2), against 1.5 GB/s for four
// independent chains, which are then ALU-bound (more streams or unrolling gained nothing).
// Stripes are primed from the 64 bytes before them (§12.3 closed form). A hit in stripe j > 0
// only bounds the answer: the rest of stripes 0..j-1 is rescanned, so stripes are kept short
// (bounded rescans) but long enough that the priming is noise; 8-32 KiB measured the same.
constexpr size_t kStreams = 4;
constexpr size_t kMaxStripe = 16 * 1024;
constexpr size_t kMinStripe = 1024;

// The shift by deg(P) - 8 as a compile-time constant for restic's degree 53, or a run-time one for
// any other degree. Same speed on the dev VM's Zen 4; Intel cores split a shift by CL into 2 uops.
template <int kShift>
struct FixedShift {
  static constexpr int get() { return kShift; }
};
struct VarShift {
  int shift;
  int get() const { return shift; }
};
constexpr int kResticShift = Polynomial::kMaxChunkerDegree - 8;

struct RawTables {
  const uint64_t* out;
  const uint64_t* mod;
};

template <typename Shift>
inline uint64_t Push(const RawTables& t, Shift sh, uint64_t d, uint8_t in) {
  return ((d << 8) | in) ^ t.mod[d >> sh.get()];
}

template <typename Shift>
inline uint64_t Roll(const RawTables& t, Shift sh, uint64_t d, uint8_t out, uint8_t in) {
  return ((d << 8) | in) ^ t.mod[d >> sh.get()] ^ t.out[out];
}

template <typename Shift>
size_t ScanOne(const RawTables& t, Shift sh, const uint8_t* p, size_t begin, size_t end,
               uint64_t* digest) {
  uint64_t d = *digest;
  for (size_t i = begin; i < end; i++) {
    d = Roll(t, sh, d, p[i - kWindow], p[i]);
    if ((d & kMask) == 0) [[unlikely]] {
      *digest = d;
      return i;
    }
  }
  *digest = d;
  return end;
}

template <typename Shift>
size_t ScanMulti(const RawTables& t, Shift sh, const uint8_t* p, size_t begin, size_t end,
                 uint64_t* digest) {
  static_assert(kStreams == 4, "the loop below is written out for four streams");
  uint64_t d0 = *digest;
  while (end - begin >= kStreams * kMinStripe) {
    const size_t stripe = std::min(kMaxStripe, (end - begin) / kStreams);
    const size_t s1 = stripe, s2 = 2 * stripe, s3 = 3 * stripe;
    const uint8_t* q = p + begin;
    uint64_t d1 = 0, d2 = 0, d3 = 0;
    for (size_t k = 0; k < kWindow; k++) {
      d1 = Push(t, sh, d1, q[s1 - kWindow + k]);
      d2 = Push(t, sh, d2, q[s2 - kWindow + k]);
      d3 = Push(t, sh, d3, q[s3 - kWindow + k]);
    }
    const uint8_t* r0 = q;
    const uint8_t* r1 = q + s1;
    const uint8_t* r2 = q + s2;
    const uint8_t* r3 = q + s3;
    constexpr ptrdiff_t kW = kWindow;
    for (ptrdiff_t i = 0; i < static_cast<ptrdiff_t>(stripe); i++) {
      d0 = Roll(t, sh, d0, r0[i - kW], r0[i]);
      d1 = Roll(t, sh, d1, r1[i - kW], r1[i]);
      d2 = Roll(t, sh, d2, r2[i - kW], r2[i]);
      d3 = Roll(t, sh, d3, r3[i - kW], r3[i]);
      // Four fused test+branch pairs: measured faster than folding the tests into one branch.
      if ((d0 & kMask) == 0 || (d1 & kMask) == 0 || (d2 & kMask) == 0 || (d3 & kMask) == 0)
          [[unlikely]] {
        if ((d0 & kMask) == 0) return begin + i;
        const size_t hit = begin + i + ((d1 & kMask) == 0 ? s1 : (d2 & kMask) == 0 ? s2 : s3);
        // The first hit is `hit` or lies in the unscanned rest of the stripes before it.
        return ScanMulti(t, sh, p, begin + i + 1, hit, &d0);
      }
    }
    begin += kStreams * stripe;
    d0 = d3;
  }
  *digest = d0;
  return ScanOne(t, sh, p, begin, end, digest);
}

}  // namespace

ChunkerTables::ChunkerTables(Polynomial pol) : pol_(pol) {
  const int k = pol.Deg();
  FSB_CHECK(k >= Polynomial::kMinChunkerDegree && k <= Polynomial::kMaxChunkerDegree);
  shift_ = k - 8;
  for (uint64_t b = 0; b < 256; b++) {
    uint64_t h = Polynomial(b).Mod(pol).value();
    for (size_t i = 0; i < kWindow; i++) h = Polynomial(h << 8).Mod(pol).value();
    out_[b] = h;
    mod_[b] = Polynomial(b << k).Mod(pol).value() | (b << k);
  }
}

std::shared_ptr<const ChunkerTables> ChunkerTables::Get(Polynomial pol) {
  struct Cache {
    std::mutex mu;
    // guarded by mu
    std::unordered_map<uint64_t, std::shared_ptr<const ChunkerTables>> tables;
  };
  static Cache* const cache = new Cache;  // never destroyed: chunkers may outlive static dtors
  std::lock_guard<std::mutex> lock(cache->mu);
  std::shared_ptr<const ChunkerTables>& slot = cache->tables[pol.value()];
  if (!slot) slot.reset(new ChunkerTables(pol));  // the constructor is private to Get
  return slot;
}

uint64_t ChunkerTables::Fingerprint(ByteView window) const {
  FSB_CHECK(window.size() == kWindow);
  uint64_t d = 0;
  for (uint8_t b : window) d = ((d << 8) | b) ^ mod_[d >> shift_];
  return d;
}

size_t ChunkerTables::Scan(const uint8_t* p, size_t begin, size_t end, uint64_t* digest) const {
  const RawTables t{out_.data(), mod_.data()};
  if (shift_ == kResticShift) {
    return ScanMulti(t, FixedShift<kResticShift>{}, p, begin, end, digest);
  }
  return ScanMulti(t, VarShift{shift_}, p, begin, end, digest);
}

std::optional<size_t> ChunkerTables::FindSplitEnd(ByteView data, size_t from) const {
  FSB_CHECK(from >= kWindow);
  if (from > data.size()) return std::nullopt;
  uint64_t d = Fingerprint(data.subspan(from - kWindow, kWindow));
  if ((d & kMask) == 0) return from;
  const size_t i = Scan(data.data(), from, data.size(), &d);
  if (i == data.size()) return std::nullopt;
  return i + 1;
}

Chunker::Chunker(std::shared_ptr<const ChunkerTables> tables) : tables_(std::move(tables)) {
  FSB_CHECK(tables_ != nullptr);
}

void Chunker::Reset() {
  count_ = 0;
  digest_ = 0;
  window_.fill(0);
  wpos_ = 0;
}

size_t Chunker::FindCut(ByteView data, bool* found_cut) {
  *found_cut = false;
  const uint8_t* p = data.data();
  const size_t n = data.size();
  size_t pos = 0;
  if (count_ < kHashStart) {  // not hashed: the window is reset and refilled before any cut
    pos = static_cast<size_t>(std::min<uint64_t>(n, kHashStart - count_));
    count_ += pos;
    if (pos == n) return n;
  }
  // Bytes of this chunk in `data` still to hash: up to the end of `data` or the maximum size.
  const size_t todo = static_cast<size_t>(std::min<uint64_t>(n - pos, kChunkerMaxBytes - count_));
  const ChunkerTables& t = *tables_;
  // The first 64 bytes push out bytes from earlier calls, kept in the ring.
  const size_t head = std::min(todo, kWindow);
  uint64_t d = digest_;
  for (size_t i = 0; i < head; i++) {
    const uint8_t in = p[pos + i];
    d = t.Roll(d, window_[wpos_], in);
    window_[wpos_] = in;
    wpos_ = (wpos_ + 1) % kWindow;
    count_++;
    if ((d & kMask) == 0 && count_ >= kChunkerMinBytes) {
      *found_cut = true;
      const size_t consumed = pos + i + 1;
      Reset();
      return consumed;
    }
  }
  digest_ = d;
  if (todo > head) {
    // Past the head, the byte leaving the window is in `data` too, and count_ >= min: every
    // position may cut on content.
    const size_t begin = pos + head, end = pos + todo;
    const size_t i = t.Scan(p, begin, end, &digest_);
    if (i < end) {
      *found_cut = true;
      Reset();
      return i + 1;
    }
    count_ += end - begin;
    std::copy(p + end - kWindow, p + end, window_.begin());
    wpos_ = 0;
  }
  if (count_ == kChunkerMaxBytes) {
    *found_cut = true;
    Reset();
    return pos + todo;
  }
  return n;
}

std::vector<uint64_t> ChunkBoundaries(const std::shared_ptr<const ChunkerTables>& tables,
                                      ByteView file) {
  std::vector<uint64_t> lengths;
  Chunker chunker(tables);
  while (!file.empty()) {
    const uint64_t before = chunker.pending();
    bool cut = false;
    const size_t n = chunker.FindCut(file, &cut);
    if (cut) lengths.push_back(before + n);
    file = file.subspan(n);
  }
  if (chunker.pending() > 0) lengths.push_back(chunker.pending());
  return lengths;
}

}  // namespace fsb::repo
