// Crypto and compression throughput (repo/crypto.h, repo/compress.h): SHA-256 (blob and file
// IDs), Seal/Open (AES-256-CTR + Poly1305-AES, every blob and pack header) and zstd level 3 (v2
// blobs), each on 1 MiB, restic's typical blob size order.
// Run: build/bench/fsb_micro_bench --benchmark_filter='Sha256|Seal|Open|Zstd'
#include <benchmark/benchmark.h>

#include <cstdint>

#include "base/bytes.h"
#include "repo/compress.h"
#include "repo/crypto.h"
#include "repo/id.h"

namespace fsb::repo {
namespace {

constexpr size_t kDataBytes = size_t{1} << 20;

// splitmix64 bytes (the bench does not link test support).
Bytes RandomData(uint64_t seed, size_t n) {
  Bytes out(n);
  uint64_t z = seed;
  for (size_t i = 0; i < n; i += 8) {
    z += 0x9e3779b97f4a7c15ULL;
    uint64_t x = z;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    for (size_t j = 0; j < 8 && i + j < n; j++) out[i + j] = uint8_t(x >> (8 * j));
  }
  return out;
}

// Semi-compressible: runs of a small alphabet mixed with random bytes; zstd level 3 gets it to
// roughly half.
Bytes SemiCompressibleData(uint64_t seed, size_t n) {
  Bytes out = RandomData(seed, n);
  static constexpr char kAlphabet[] = "ACGT restic backup ";
  for (size_t i = 0; i < n; ++i) {
    if (out[i] < 192) out[i] = uint8_t(kAlphabet[out[i] % (sizeof kAlphabet - 1)]);
  }
  return out;
}

void SetBytes(benchmark::State& state, size_t n) {
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n));
}

void BM_Sha256(benchmark::State& state) {
  const Bytes data = RandomData(1, size_t(state.range(0)));
  Sha256 h;
  for (auto _ : state) {
    h.Update(data);
    benchmark::DoNotOptimize(h.Finish());
  }
  SetBytes(state, data.size());
}
BENCHMARK(BM_Sha256)->Arg(4 << 10)->Arg(kDataBytes);

void BM_IdHash(benchmark::State& state) {
  const Bytes data = RandomData(2, kDataBytes);
  for (auto _ : state) benchmark::DoNotOptimize(Id::Hash(data));
  SetBytes(state, data.size());
}
BENCHMARK(BM_IdHash);

void BM_Seal(benchmark::State& state) {
  const CryptoKey key = CryptoKey::Random();
  const Bytes data = RandomData(3, size_t(state.range(0)));
  for (auto _ : state) {
    Bytes sealed = Seal(key, data);
    benchmark::DoNotOptimize(sealed.data());
  }
  SetBytes(state, data.size());
}
BENCHMARK(BM_Seal)->Arg(4 << 10)->Arg(kDataBytes)->Arg(8 << 20);

void BM_SealAppendReused(benchmark::State& state) {
  // The pack writer's pattern: seal into a buffer that keeps its capacity.
  const CryptoKey key = CryptoKey::Random();
  const Bytes data = RandomData(4, kDataBytes);
  Bytes out;
  out.reserve(kDataBytes + kCryptoOverhead);
  for (auto _ : state) {
    out.clear();
    SealAppend(key, data, out);
    benchmark::DoNotOptimize(out.data());
  }
  SetBytes(state, data.size());
}
BENCHMARK(BM_SealAppendReused);

void BM_Open(benchmark::State& state) {
  const CryptoKey key = CryptoKey::Random();
  const Bytes sealed = Seal(key, RandomData(5, kDataBytes));
  for (auto _ : state) {
    Result<Bytes> plain = Open(key, sealed);
    benchmark::DoNotOptimize(plain.ok());
  }
  SetBytes(state, kDataBytes);
}
BENCHMARK(BM_Open);

void BM_ZstdCompressLevel3(benchmark::State& state) {
  const Bytes data = SemiCompressibleData(6, kDataBytes);
  size_t frame_bytes = 0;
  for (auto _ : state) {
    Bytes frame = ZstdCompress(data, CompressionMode::kAuto);
    frame_bytes = frame.size();
    benchmark::DoNotOptimize(frame.data());
  }
  SetBytes(state, data.size());
  state.counters["ratio"] = double(frame_bytes) / double(data.size());
}
BENCHMARK(BM_ZstdCompressLevel3);

void BM_ZstdDecompressExact(benchmark::State& state) {
  const Bytes data = SemiCompressibleData(7, kDataBytes);
  const Bytes frame = ZstdCompress(data, CompressionMode::kAuto);
  for (auto _ : state) {
    Result<Bytes> out = ZstdDecompressExact(frame, data.size());
    benchmark::DoNotOptimize(out.ok());
  }
  SetBytes(state, data.size());
}
BENCHMARK(BM_ZstdDecompressExact);

void BM_ZstdDecompressStream(benchmark::State& state) {
  const Bytes data = SemiCompressibleData(8, kDataBytes);
  const Bytes frame = ZstdCompress(data, CompressionMode::kAuto);
  for (auto _ : state) {
    Result<Bytes> out = ZstdDecompressStream(frame);
    benchmark::DoNotOptimize(out.ok());
  }
  SetBytes(state, data.size());
}
BENCHMARK(BM_ZstdDecompressStream);

}  // namespace
}  // namespace fsb::repo
