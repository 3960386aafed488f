// repo/check.h: repository verification, as `restic check` (restic-repo-format.md §14): index
// files, pack sizes against the index, every tree reachable from every snapshot, every referenced
// blob indexed; with read_data every pack is downloaded, hashed, its header compared with the
// index and every blob decrypted and hashed. Reports every problem found, not only the first.
// RunCheck blocks; its threads are its own.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "repo/repository.h"

namespace fsb::repo {

struct CheckOptions {
  bool read_data = false;
  // --read-data-subset n/m (1-based, m ≤ 256): the packs whose first ID byte % m == n - 1, the
  // same packs restic reads for the same n/m. 0/0 = no bucket selection.
  uint32_t subset_n = 0, subset_m = 0;
  // --read-data-subset x%: a random x % of the packs (at least one), as restic. 0 = unused.
  double subset_percent = 0;
  // --read-data-subset SIZE: random packs, as many as SIZE / total pack bytes of them (restic
  // turns the size into a percentage). 0 = unused.
  uint64_t subset_bytes = 0;
  // Seed of the random subset; 0 draws one (tests fix it).
  uint64_t seed = 0;
  int threads = 4;
};

struct CheckResult {
  std::vector<std::string> errors;  // each names the object (pack, blob, tree, snapshot, file)
  std::vector<std::string> hints;   // not errors: unreferenced packs, duplicate blobs
  uint64_t snapshots = 0, trees = 0, packs = 0, packs_read = 0, blobs_read = 0;
  bool ok() const { return errors.empty(); }
};

// Loads what it needs itself (call on a freshly opened repository). Returns an error only when
// the check could not run at all (listing failed); problems found are in CheckResult::errors.
// `progress` (may be null) is called from the calling thread with a short phase description.
Result<CheckResult> RunCheck(Repository& repo, const CheckOptions& options,
                             const std::function<void(const std::string&)>& progress = nullptr);

}  // namespace fsb::repo
