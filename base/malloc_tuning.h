// base/malloc_tuning.h: glibc malloc settings for a process that moves large buffers (chunks of
// 0.5-8 MiB, 16 MiB packs) between threads. Call once at the start of main, before any thread.
#pragma once

namespace fsb {

// Fixes glibc's mmap threshold and limits the number of malloc arenas (see the .cc for the why and
// the measurements). Idempotent; does nothing under another C library.
void TuneMalloc();

}  // namespace fsb
