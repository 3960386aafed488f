// uploader/backup.h: the backup pipeline. One walker (the calling thread) descends the source with
// directory fds in sorted order; file workers read, chunk, hash, dedup, compress and encrypt;
// PackSaver uploads packs concurrently. Trees are finished bottom-up by whichever thread completes
// a directory's last child. Memory is bounded by the queue sizes (see BackupOptions), not by file
// sizes. RunBackup blocks; its workers are its own and joined before it returns.
#pragma once

#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/sysinfo.h"
#include "repo/id.h"
#include "repo/node.h"
#include "repo/repository.h"
#include "uploader/progress.h"

namespace fsb::uploader {

struct BackupOptions {
  // What to back up, as given on the command line (relative to the working directory or
  // absolute). "." stores the directory's entries at the tree root; an absolute path stores its
  // components as directories (restic's rules).
  std::vector<std::string> targets;
  std::string hostname;                // snapshot host name
  std::vector<std::string> tags;
  std::vector<std::string> excludes;   // restic-style patterns (*, ?, [..], **)
  std::optional<repo::Id> parent;      // explicit parent; otherwise chosen as restic does
  bool no_parent = false;              // --force: read every file
  bool with_atime = false;             // store real atimes (restic --with-atime)
  // File workers reading/chunking/encrypting in parallel; 0 = number of CPUs.
  int file_workers = 0;
  // Threads walking directories (readdir, lstat, xattrs, parent-tree lookups): the calling thread
  // plus walk_workers - 1 helpers that take subdirectories off a busy walker only while they are
  // idle, so each walker stays depth-first and memory stays bounded by walkers × tree depth.
  // 0 = number of CPUs. An unchanged tree is all walking: this is what makes it parallel.
  int walk_workers = 0;
  // Files queued between the walker and the workers: bounds open fds and walker lead.
  int file_queue = 64;
  // Threads compressing and encrypting the chunks of multi-chunk files; 0 = number of CPUs.
  int encode_workers = 0;
  // Chunks waiting for an encoder (each a copy, ≤ 8 MiB, 1 MiB on average): memory ≤
  // encode_queue × 8 MiB. 2 keeps both encoders of a 2-CPU node fed (4 was no faster).
  int encode_queue = 2;
  // Read size per pread; each worker holds at most one chunk (≤ 8 MiB) plus one read.
  // Memory budget of a backup, worst case (typical: chunks of 1 MiB):
  //   file workers × (8 MiB + read_bytes)                     thread-local read buffers
  // + (encode_queue + encode workers) × 8 MiB                 chunk copies being encoded
  // + (encode workers + file workers) × 2 × 8 MiB             zstd frame + sealed blob
  // + PackSaver's packs (repo/pack_saver.h): none on a local repository (written into spool
  //   files as they grow, 2 × 1 MiB gathering small blobs), else (uploads + 1) × 24 MiB + the
  //   open tree pack
  // + per upload thread 2 × 8 MiB                              verify before upload
  // On 2 CPUs with a local repository: 18 + 32 + 64 + 2 + 32 MiB; measured peak RSS ~106 MiB for
  // 1 GiB random + 512 MiB text + a sparse 2 GiB file (bench/RESULTS.md).
  size_t read_bytes = 1u << 20;
  // Instead of `targets`: back up the contents of this open directory (borrowed for the call),
  // as `restic backup .` run inside it: the tree root holds its entries and the snapshot records
  // `source_path` as its one path. The agent uses this for a pod volume resolved under the
  // kubelet pods directory, so no path string is ever re-resolved on the host.
  int source_dir_fd = -1;
  std::string source_path;
  // A stop request ends the backup promptly with kCancelled and saves no snapshot; packs already
  // uploaded stay unreferenced until a prune (nothing in the repository is left half-written).
  std::stop_token stop;
  std::optional<repo::Timestamp> time;  // snapshot time; default now
  std::string program_version = std::string("fsb ") + kFsbVersion;  // as restic ≥ 0.16
};

struct BackupSummary {
  repo::Id snapshot_id;
  repo::Snapshot snapshot;
  std::optional<repo::Id> parent;
  uint64_t files_new = 0, files_changed = 0, files_unmodified = 0;
  uint64_t dirs_new = 0, dirs_changed = 0, dirs_unmodified = 0;
  uint64_t data_blobs = 0, tree_blobs = 0;
  uint64_t data_added = 0;         // plaintext bytes of new blobs
  uint64_t data_added_packed = 0;  // bytes written in packs
  uint64_t total_files_processed = 0, total_bytes_processed = 0;
  // Entries that could not be read (the snapshot has everything else). Non-empty → exit code 3.
  std::vector<std::string> errors;
};

// Backs up `options.targets` into `repo` (whose index must be loaded) and saves a snapshot.
// Returns an error (and saves no snapshot) on repository failures or when a target itself cannot
// be read; unreadable entries below a target are reported in BackupSummary::errors.
// `progress` may be null; its counters are bumped from worker threads.
Result<BackupSummary> RunBackup(repo::Repository& repo, const BackupOptions& options,
                                Progress* progress);

}  // namespace fsb::uploader
