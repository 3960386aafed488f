// uploader/restore.h: the restore pipeline. The calling thread walks the snapshot's trees,
// creating directories, special files, empty files, hard-linked files and files whose content
// spans several packs, and plans the contents of a batch of files: which pieces each pack holds.
// It hands each full batch to a pool of workers and walks on meanwhile (at most two batches
// handed over and not yet written, plus the one being walked). The workers read each pack once
// per batch, in ranged requests of about 4 MiB, decrypt, verify and pwrite the blobs into place,
// leaving all-zero blobs as holes; a worker creates each file whose content lies in one pack,
// and whoever writes a file's last piece applies its metadata (owner, xattrs, mode, times)
// through its open fd. Directories get theirs last, children first. Memory is bounded by the
// batch limits in RestoreOptions. RunRestore blocks.
#pragma once

#include <cstdint>
#include <stop_token>
#include <string>
#include <vector>

#include "base/status.h"
#include "repo/id.h"
#include "repo/repository.h"
#include "uploader/progress.h"

namespace fsb::uploader {

struct RestoreOptions {
  std::string target;  // created if missing
  // Instead of `target`: restore into this open directory (borrowed for the call). Everything is
  // created beneath it with openat2(RESOLVE_BENEATH), so a pod volume is written without any host
  // path being resolved again. `target` then only names it in messages.
  int target_dir_fd = -1;
  // A stop request ends the restore promptly with kCancelled (files written so far stay).
  std::stop_token stop;
  // A path inside the snapshot ("/dir/sub"); its contents are restored at target. Empty: all.
  std::string subpath;
  // restic-style patterns matched against the path inside the snapshot ("/a/b"); when given,
  // only matching entries (and everything below a matching directory) are restored, with the
  // directories leading to them.
  std::vector<std::string> includes;
  // Pack download/decrypt/write workers; 0 = the backend's max_connections, at least 2.
  int workers = 0;
  // Files planned per batch and their content bytes: bounds the plan's memory (≈ 300 bytes a
  // file plus 80 a blob; up to three batches at a time: one being walked, two being written).
  size_t batch_files = 20000;
  uint64_t batch_bytes = 4ull << 30;
  // Re-read every restored file and compare each chunk's hash with its blob ID.
  bool verify = false;
  // Restore uid/gid (needs root; restic does it when run as root).
  bool restore_owner = true;
};

struct RestoreSummary {
  uint64_t files = 0, dirs = 0, others = 0, bytes = 0;
  uint64_t packs_read = 0;
  uint64_t verified_files = 0;
  std::vector<std::string> errors;  // per-entry failures; the rest was restored
  // Content restored, but owner, mode, times or xattrs could not be applied (e.g. chown on NFS
  // with root_squash). Never silently dropped: the CLI prints them, the agent reports them.
  std::vector<std::string> metadata_errors;
};

// Restores tree `root` into options.target. Returns an error for failures that stop everything
// (target not creatable, a subpath that does not exist); per-entry failures are in
// RestoreSummary::errors.
Result<RestoreSummary> RunRestore(repo::Repository& repo, const repo::Id& root,
                                  const RestoreOptions& options, Progress* progress);

}  // namespace fsb::uploader
