#include "repo/chunker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "repo/id.h"
#include "repo/polynomial.h"
#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

constexpr uint64_t kPolV2 = 0x2ca2f83a5f769d;  // tests/testdata/restic repo-v2
constexpr uint64_t kPolV1 = 0x23c22c30a25373;  // tests/testdata/restic repo-v1

std::shared_ptr<const ChunkerTables> Tables(uint64_t pol) {
  return ChunkerTables::Get(Polynomial(pol));
}

// One row of chunks.txt.
struct ExpectedChunk {
  uint64_t offset = 0;
  uint64_t length = 0;
  std::string blob;
  std::optional<uint64_t> rabin;  // the fingerprint at a cut; none for the file's end
};

// One block of chunks.txt: a file chunked with one repository's polynomial.
struct ExpectedFile {
  uint64_t polynomial = 0;
  std::string name;
  uint64_t size = 0;
  std::string sha256;
  std::vector<ExpectedChunk> chunks;
};

std::vector<ExpectedFile> ParseChunksTxt() {
  std::istringstream in(testing::ReadFileToString(testing::TestDataPath("restic/chunks.txt")));
  std::vector<ExpectedFile> files;
  uint64_t pol = 0;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string word;
    if (!(ls >> word) || word[0] == '#') continue;
    if (word == "repo") {
      std::string repo, key, value;
      ls >> repo >> key >> value;
      EXPECT_EQ(key, "chunker_polynomial");
      pol = std::stoull(value, nullptr, 16);
    } else if (word == "file") {
      ExpectedFile f;
      f.polynomial = pol;
      std::string k1, k2;
      ls >> f.name >> k1 >> f.size >> k2 >> f.sha256;
      EXPECT_EQ(k1, "size");
      EXPECT_EQ(k2, "sha256");
      files.push_back(f);
    } else {
      ExpectedChunk c;
      std::string k1, k2, k3, k4, rabin;
      ls >> k1 >> c.offset >> k2 >> c.length >> k3 >> c.blob >> k4 >> rabin;
      EXPECT_EQ(k1 + k2 + k3 + k4, "offsetlengthblobrabin") << line;
      if (rabin != "-") c.rabin = std::stoull(rabin, nullptr, 16);
      EXPECT_FALSE(files.empty()) << line;
      if (!files.empty()) files.back().chunks.push_back(c);
    }
  }
  return files;
}

// tests/testdata/restic/make_source.py big_bytes(): every byte b of SHA-256("fsb-restic-testdata/
// big.bin/" || counter as u64 LE), counter = 0, 1, ..., gives "ACGT"[b & 3]; 3 MiB.
Bytes BigBin() {
  constexpr size_t kSize = 3 * 1024 * 1024;
  const std::string prefix = "fsb-restic-testdata/big.bin/";
  Bytes out;
  out.reserve(kSize);
  for (uint64_t counter = 0; out.size() < kSize; counter++) {
    Bytes msg = ToBytes(prefix);
    for (int i = 0; i < 8; i++) msg.push_back(uint8_t(counter >> (8 * i)));
    for (uint8_t b : Id::Hash(msg).bytes) out.push_back(uint8_t("ACGT"[b & 3]));
  }
  out.resize(kSize);
  return out;
}

// The files of chunks.txt, by name (tests/testdata/restic/README.md).
Bytes MakeFile(const std::string& name) {
  if (name == "/big.bin") return BigBin();
  if (name == "/zeros") return Bytes(1536 * 1024 + 100, 0x00);
  if (name == "/AAAA") return Bytes(17 * 1024 * 1024, 'A');
  ADD_FAILURE() << "unknown file in chunks.txt: " << name;
  return {};
}

// Feeds `data` through FindCut in pieces whose sizes `next_piece` picks; returns chunk lengths.
template <typename NextPiece>
std::vector<uint64_t> ChunkInPieces(Chunker& chunker, ByteView data, NextPiece next_piece) {
  std::vector<uint64_t> lengths;
  chunker.Reset();
  while (!data.empty()) {
    ByteView piece = data.subspan(0, std::min<size_t>(data.size(), next_piece()));
    data = data.subspan(piece.size());
    while (!piece.empty()) {
      const uint64_t before = chunker.pending();
      bool cut = false;
      const size_t n = chunker.FindCut(piece, &cut);
      EXPECT_GT(n, 0u);
      EXPECT_LE(n, piece.size());
      if (cut) {
        lengths.push_back(before + n);
        EXPECT_EQ(chunker.pending(), 0u);
      } else {
        EXPECT_EQ(n, piece.size());
        EXPECT_EQ(chunker.pending(), before + n);
      }
      piece = piece.subspan(n);
    }
  }
  if (chunker.pending() > 0) lengths.push_back(chunker.pending());
  return lengths;
}

// restic's rolling loop exactly as restic-repo-format.md §12.3 writes it (OUT XORed before the
// shift, the ring window reset to a single 1 byte, the skip), one byte at a time, written
// independently of repo/chunker.cc: the reference the fast scan must agree with.
std::vector<uint64_t> ReferenceChunkLengths(Polynomial pol, ByteView data) {
  const int k = pol.Deg();
  uint64_t out_table[256], mod_table[256];
  for (uint64_t b = 0; b < 256; b++) {
    Polynomial h = Polynomial(b).Mod(pol);
    for (int i = 0; i < 63; i++) h = Polynomial(h.value() << 8).Mod(pol);
    out_table[b] = h.value();
    mod_table[b] = Polynomial(b << k).Mod(pol).value() | (b << k);
  }
  uint8_t window[64];
  size_t wpos = 0;
  uint64_t digest = 0, count = 0, skip = 0;
  auto slide = [&](uint8_t b) {
    const uint8_t out = window[wpos];
    window[wpos] = b;
    wpos = (wpos + 1) % 64;
    digest ^= out_table[out];
    const uint64_t top = digest >> (k - 8);
    digest = ((digest << 8) | b) ^ mod_table[top];
  };
  auto reset = [&] {
    std::fill(std::begin(window), std::end(window), 0);
    wpos = 0;
    digest = 0;
    slide(1);
    count = 0;
    skip = kChunkerMinBytes - 64;
  };
  reset();
  std::vector<uint64_t> lengths;
  for (uint8_t b : data) {
    if (skip > 0) {
      skip--;
      count++;
      continue;
    }
    slide(b);
    count++;
    if (((digest & kChunkerSplitMask) == 0 || count >= kChunkerMaxBytes) &&
        count >= kChunkerMinBytes) {
      lengths.push_back(count);
      reset();
    }
  }
  if (count > 0) lengths.push_back(count);
  return lengths;
}

// Random bytes with runs of 64..200 zero bytes planted at random places: a zero window has
// fingerprint 0, so the runs make split points dense, several per scan block and stripe.
Bytes DataWithPlantedSplitPoints(uint64_t seed, size_t size, size_t runs) {
  Bytes data = testing::SeededRandomBytes(seed, size);
  std::mt19937_64 rng(seed);
  for (size_t r = 0; r < runs; r++) {
    const size_t len = 64 + rng() % 137;
    const size_t at = rng() % (size - len);
    std::fill(data.begin() + at, data.begin() + at + len, 0);
  }
  return data;
}

// Every end e >= 64 with (FP(data[e-64, e)) & mask) == 0, by brute force over the closed form.
std::vector<size_t> ReferenceSplitEnds(const ChunkerTables& tables, ByteView data) {
  std::vector<size_t> ends;
  for (size_t e = 64; e <= data.size(); e++) {
    if ((tables.Fingerprint(data.subspan(e - 64, 64)) & kChunkerSplitMask) == 0) ends.push_back(e);
  }
  return ends;
}

TEST(ChunkerTest, BigBinMatchesResticBoundariesAndBlobIdsForBothPolynomials) {
  const Bytes big = BigBin();
  ASSERT_EQ(Id::Hash(big).Hex(),
            "cda55c2900067effc0795f8ee3df0006b61f258ef85ee29e218f0ff343f8cdb3");
  int checked = 0;
  for (const ExpectedFile& f : ParseChunksTxt()) {
    SCOPED_TRACE(f.name + " polynomial " + Polynomial(f.polynomial).Hex());
    const Bytes data = MakeFile(f.name);
    ASSERT_EQ(data.size(), f.size);
    ASSERT_EQ(Id::Hash(data).Hex(), f.sha256);
    const auto tables = Tables(f.polynomial);
    const std::vector<uint64_t> lengths = ChunkBoundaries(tables, data);
    ASSERT_EQ(lengths.size(), f.chunks.size());
    uint64_t offset = 0;
    for (size_t i = 0; i < lengths.size(); i++) {
      const ExpectedChunk& want = f.chunks[i];
      EXPECT_EQ(offset, want.offset) << "chunk " << i;
      EXPECT_EQ(lengths[i], want.length) << "chunk " << i;
      const ByteView chunk = ByteView(data).subspan(offset, lengths[i]);
      EXPECT_EQ(Id::Hash(chunk).Hex(), want.blob) << "chunk " << i;
      if (want.rabin) {
        EXPECT_EQ(tables->Fingerprint(chunk.last(64)), *want.rabin) << "chunk " << i;
      }
      offset += lengths[i];
    }
    EXPECT_EQ(offset, data.size());
    if (f.name == "/big.bin") checked++;
  }
  EXPECT_EQ(checked, 2) << "chunks.txt should list big.bin for two polynomials";
}

TEST(ChunkerTest, ZerosCutAtExactlyMinSize) {
  const Bytes zeros(1536 * 1024 + 100, 0x00);
  for (uint64_t pol : {kPolV2, kPolV1}) {
    EXPECT_EQ(ChunkBoundaries(Tables(pol), zeros),
              (std::vector<uint64_t>{524288, 524288, 524288, 100}));
  }
}

TEST(ChunkerTest, ConstantBytesCutAtExactlyMaxSize) {
  const Bytes aaaa(17 * 1024 * 1024, 'A');
  for (uint64_t pol : {kPolV2, kPolV1}) {
    EXPECT_EQ(ChunkBoundaries(Tables(pol), aaaa),
              (std::vector<uint64_t>{8388608, 8388608, 1048576}));
  }
}

TEST(ChunkerTest, MaxSizeCutAtEndOfDataLeavesNothingPending) {
  const Bytes aaaa(kChunkerMaxBytes, 'A');
  Chunker chunker(Tables(kPolV2));
  bool cut = false;
  EXPECT_EQ(chunker.FindCut(aaaa, &cut), aaaa.size());
  EXPECT_TRUE(cut);
  EXPECT_EQ(chunker.pending(), 0u);
  EXPECT_EQ(ChunkBoundaries(Tables(kPolV2), aaaa), std::vector<uint64_t>{kChunkerMaxBytes});
}

TEST(ChunkerTest, EmptyInputGivesNoChunk) {
  EXPECT_TRUE(ChunkBoundaries(Tables(kPolV2), ByteView()).empty());
  Chunker chunker(Tables(kPolV2));
  bool cut = true;
  EXPECT_EQ(chunker.FindCut(ByteView(), &cut), 0u);
  EXPECT_FALSE(cut);
  EXPECT_EQ(chunker.pending(), 0u);
}

TEST(ChunkerTest, FileSmallerThanMinSizeIsOneChunk) {
  const auto tables = Tables(kPolV2);
  for (size_t size : {size_t{1}, size_t{100}, size_t{4096}, size_t{kChunkerMinBytes - 1}}) {
    // Zeros would cut at every position past the minimum: there is none here.
    EXPECT_EQ(ChunkBoundaries(tables, Bytes(size, 0)), std::vector<uint64_t>{size});
    EXPECT_EQ(ChunkBoundaries(tables, testing::SeededRandomBytes(size, size)),
              std::vector<uint64_t>{size});
  }
  EXPECT_EQ(ChunkBoundaries(tables, Bytes(kChunkerMinBytes, 0)),
            std::vector<uint64_t>{kChunkerMinBytes});
}

TEST(ChunkerTest, RandomPiecesGiveSameBoundariesAsOnePiece) {
  const uint64_t seed = 42;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::vector<Bytes> inputs;
  inputs.push_back(BigBin());
  inputs.push_back(testing::SeededRandomBytes(seed, 40 << 20));
  inputs.push_back(DataWithPlantedSplitPoints(seed, 12 << 20, 400));
  std::mt19937_64 rng(seed);
  for (const Bytes& data : inputs) {
    for (uint64_t pol : {kPolV2, kPolV1}) {
      const auto tables = Tables(pol);
      const std::vector<uint64_t> whole = ChunkBoundaries(tables, data);
      ASSERT_GE(whole.size(), 3u);
      Chunker chunker(tables);
      // Tiny pieces (the ring head of each call), medium and large ones, mixed.
      auto mixed = [&]() -> size_t {
        switch (rng() % 4) {
          case 0:
            return 1 + rng() % 100;
          case 1:
            return 1 + rng() % 5000;
          case 2:
            return 1 + rng() % 300000;
          default:
            return 1 + rng() % 3000000;
        }
      };
      EXPECT_EQ(ChunkInPieces(chunker, data, mixed), whole);
      EXPECT_EQ(ChunkInPieces(chunker, data, [] { return size_t{65536}; }), whole);
    }
  }
}

TEST(ChunkerTest, MatchesByteAtATimeReferenceOnRandomData) {
  const uint64_t seed = 7;
  SCOPED_TRACE("seed " + std::to_string(seed));
  const Bytes random = testing::SeededRandomBytes(seed, 48 << 20);
  const Bytes planted = DataWithPlantedSplitPoints(seed, 16 << 20, 3000);
  // Restic's two polynomials (the degree-53 fast path) and a degree-31 one (the generic path).
  Polynomial deg31;
  for (uint64_t v = (uint64_t{1} << 31) | 1;; v += 2) {
    if (Polynomial(v).Irreducible()) {
      deg31 = Polynomial(v);
      break;
    }
  }
  for (Polynomial pol : {Polynomial(kPolV2), Polynomial(kPolV1), deg31}) {
    SCOPED_TRACE("polynomial " + pol.Hex());
    const auto tables = ChunkerTables::Get(pol);
    for (const Bytes* data : {&random, &planted}) {
      const std::vector<uint64_t> want = ReferenceChunkLengths(pol, *data);
      EXPECT_GE(want.size(), 10u);
      EXPECT_EQ(ChunkBoundaries(tables, *data), want);
    }
  }
}

TEST(ChunkerTest, FindSplitEndFindsEveryClosedFormSplitPoint) {
  const Bytes data = DataWithPlantedSplitPoints(/*seed=*/3, 3 << 20, 500);
  for (uint64_t pol : {kPolV2, kPolV1}) {
    const auto tables = Tables(pol);
    const std::vector<size_t> want = ReferenceSplitEnds(*tables, data);
    ASSERT_GE(want.size(), 500u);
    std::vector<size_t> got;
    for (std::optional<size_t> e = tables->FindSplitEnd(data, 64); e;
         e = tables->FindSplitEnd(data, *e + 1)) {
      got.push_back(*e);
    }
    EXPECT_EQ(got, want);
  }
}

TEST(ChunkerTest, SplitPointsFromAnyOffsetGiveTheSameBoundaries) {
  // What a parallel scan would do: collect split points range by range (each range given the 64
  // bytes before it), then apply the min/max rule sequentially.
  const Bytes data = testing::SeededRandomBytes(/*seed=*/11, 24 << 20);
  const auto tables = Tables(kPolV1);
  constexpr size_t kRange = 3 << 20;
  std::vector<size_t> splits;
  for (size_t a = 0; a < data.size(); a += kRange) {
    const size_t lookback = std::min<size_t>(a, 64);
    const ByteView range =
        ByteView(data).subspan(a - lookback, std::min(kRange, data.size() - a) + lookback);
    for (std::optional<size_t> e = tables->FindSplitEnd(range, std::max<size_t>(lookback + 1, 64));
         e; e = tables->FindSplitEnd(range, *e + 1)) {
      splits.push_back(a - lookback + *e);
    }
  }
  std::vector<uint64_t> lengths;
  size_t start = 0;
  auto next = splits.begin();
  while (start < data.size()) {
    next = std::lower_bound(next, splits.end(), start + kChunkerMinBytes);
    size_t end = std::min(start + kChunkerMaxBytes, data.size());
    if (next != splits.end() && *next < end) end = *next;
    lengths.push_back(end - start);
    start = end;
  }
  EXPECT_EQ(lengths, ChunkBoundaries(tables, data));
}

TEST(ChunkerTest, ResetStartsANewFile) {
  const Bytes big = BigBin();
  const auto tables = Tables(kPolV2);
  Chunker chunker(tables);
  bool cut = false;
  // Half a chunk of another file, abandoned.
  EXPECT_EQ(chunker.FindCut(ByteView(big).subspan(0, 700000), &cut), 700000u);
  EXPECT_FALSE(cut);
  EXPECT_EQ(ChunkInPieces(chunker, big, [] { return size_t{1} << 20; }),
            (std::vector<uint64_t>{953167, 892307, 1300254}));
}

TEST(ChunkerTest, TablesAreBuiltOncePerPolynomial) {
  EXPECT_EQ(Tables(kPolV2).get(), Tables(kPolV2).get());
  EXPECT_NE(Tables(kPolV2).get(), Tables(kPolV1).get());
  EXPECT_EQ(Tables(kPolV1)->polynomial(), Polynomial(kPolV1));
}

TEST(ChunkerTest, FingerprintIsTheWindowModuloThePolynomial) {
  const Polynomial pol(kPolV2);
  const auto tables = ChunkerTables::Get(pol);
  Bytes window(64, 0);
  EXPECT_EQ(tables->Fingerprint(window), 0u);
  window[63] = 0x5a;  // the last byte has weight x^0
  EXPECT_EQ(tables->Fingerprint(window), 0x5au);
  window[63] = 0;
  window[0] = 1;  // the first byte has weight x^(8*63)
  Polynomial want = Polynomial(1);
  for (int i = 0; i < 8 * 63; i++) want = Polynomial(want.value() << 1).Mod(pol);
  EXPECT_EQ(tables->Fingerprint(window), want.value());
}

}  // namespace
}  // namespace fsb::repo
