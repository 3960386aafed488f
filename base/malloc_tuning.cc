#include "base/malloc_tuning.h"

#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace fsb {

void TuneMalloc() {
#if defined(__GLIBC__)
  // glibc serves blocks from M_MMAP_THRESHOLD up (128 KiB at start) with their own mmap, which goes
  // back to the kernel on free. But freeing such a block raises the threshold to its size (up to
  // 32 MiB): after the first 16 MiB pack is freed, every chunk and pack buffer comes from the
  // arenas, whose free space is kept and fragments. Setting the threshold turns that off.
  // 4 MiB: chunk-sized buffers (0.5-8 MiB, 1 MiB on average) mostly come from the arenas and are
  // reused without page faults; a threshold of 1 MiB mapped and unmapped half of them and cost
  // ~4 s more system time for a backup of 1.6 GiB of data (this 2-CPU VM's faults are slow), for
  // ~15 MiB less RSS. Pack buffers are pooled (repo/pack_saver.h), not left to malloc.
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  // Setting the threshold also fixes M_TRIM_THRESHOLD, at 128 KiB: every arena then gave its free
  // top back to the kernel after each chunk and faulted it in again for the next (580 k page
  // faults against 180 k for the large-file backup above, +1.5 s system time). 8 MiB (one maximal
  // chunk) stopped most of that churn; since packs are spooled (no pack buffers) the arenas hold
  // more of the traffic, and 16 MiB halves the faults again (large-file backup: 154-427 k → 77-206 k,
  // system time 1.7-2.4 s → 1.3-2.0 s) for no measurable RSS (100-111 → 111-114 MiB); 32 MiB with a
  // 10 MiB mmap threshold cut them to ~40 k but let RSS wander to 148 MiB.
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  // One arena per thread (glibc allows 8 per CPU) keeps each thread's freed blocks apart, while
  // the pipeline allocates a chunk in one thread and frees it in another: few arenas reuse memory
  // better. malloc is called a few thousand times per GiB of large files, and a small-file backup
  // has about as many threads as CPUs, so one arena per CPU costs no measurable contention.
  const unsigned cpus = std::thread::hardware_concurrency();
  mallopt(M_ARENA_MAX, static_cast<int>(cpus < 2 ? 2 : cpus));  // 2 arenas here
#endif
}

}  // namespace fsb
