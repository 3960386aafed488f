// Chunker throughput (repo/chunker.h) on seeded random data: the per-byte cost of backup's
// chunking stage. Run: build/bench/fsb_micro_bench --benchmark_filter=Chunker
#include <benchmark/benchmark.h>

#include <cstdint>
#include <optional>

#include "base/bytes.h"
#include "repo/chunker.h"
#include "repo/polynomial.h"

namespace fsb::repo {
namespace {

constexpr uint64_t kBenchPolynomial = 0x2ca2f83a5f769d;  // tests/testdata/restic repo-v2
constexpr size_t kDataBytes = size_t{64} << 20;

// splitmix64: a tiny local generator (the bench does not link test support).
Bytes SeededBytes(uint64_t seed, size_t n) {
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

const Bytes& Data() {
  static const Bytes* data = new Bytes(SeededBytes(/*seed=*/1, kDataBytes));
  return *data;
}

// Chunks all of Data() as one file, pushed in pieces of state.range(0) bytes (as a reader
// stage would hand over its buffers); counts chunks.
void BM_ChunkerThroughput(benchmark::State& state) {
  const Bytes& data = Data();
  const size_t piece = static_cast<size_t>(state.range(0));
  Chunker chunker(ChunkerTables::Get(Polynomial(kBenchPolynomial)));
  uint64_t chunks = 0;
  for (auto _ : state) {
    chunker.Reset();
    for (size_t off = 0; off < data.size(); off += piece) {
      ByteView rest = ByteView(data).subspan(off, std::min(piece, data.size() - off));
      while (!rest.empty()) {
        bool cut = false;
        rest = rest.subspan(chunker.FindCut(rest, &cut));
        chunks += cut;
      }
    }
    chunks += chunker.pending() > 0;
    benchmark::DoNotOptimize(chunks);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(data.size()));
  state.counters["chunks"] = benchmark::Counter(double(chunks) / double(state.iterations()));
}
BENCHMARK(BM_ChunkerThroughput)
    ->Arg(kDataBytes)
    ->Arg(4 << 20)
    ->Arg(1 << 20)
    ->Arg(64 << 10)
    ->Unit(benchmark::kMillisecond);

// The raw fingerprint scan with no skipped bytes (FindSplitEnd over everything): the speed of the
// hashed part of each chunk, and of a parallel large-file scan per core.
void BM_ChunkerSplitPointScan(benchmark::State& state) {
  const Bytes& data = Data();
  const auto tables = ChunkerTables::Get(Polynomial(kBenchPolynomial));
  uint64_t splits = 0;
  for (auto _ : state) {
    for (std::optional<size_t> e = tables->FindSplitEnd(data, kChunkerWindowBytes); e;
         e = tables->FindSplitEnd(data, *e + 1)) {
      splits++;
    }
    benchmark::DoNotOptimize(splits);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(data.size()));
}
BENCHMARK(BM_ChunkerSplitPointScan)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace fsb::repo
