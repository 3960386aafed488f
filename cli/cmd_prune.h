// cli/cmd_prune.h: `fsb prune`, and the prune flags and run that `fsb forget --prune` shares with
// it. One thread (the CLI's main thread); prune's workers are its own.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/global.h"
#include "repo/id.h"
#include "repo/lock.h"
#include "repo/prune.h"
#include "repo/repository.h"

namespace fsb::cli {

// restic 0.14's prune flags (addPruneOptions).
struct PruneFlags {
  std::string max_unused = "5%";
  std::string max_repack_size;  // empty: no limit
  bool repack_cacheable_only = false;
  bool repack_small = false;
  bool repack_uncompressed = false;
};
void AddPruneFlags(CLI::App* sub, PruneFlags& flags);
// The library options the flags stand for; kInvalidArgument with restic's messages.
Result<repo::PruneOptions> PruneOptionsFrom(const PruneFlags& flags);

// Plans a prune on `r` (opened, not index-loaded, held under the exclusive `lock`, which may be
// null only with --no-lock for a dry run), prints restic's statistics, and unless `dry_run`
// carries it out. `ignore_snapshots` are left out of the used-data search (forget --prune passes
// the snapshots it just removed). Returns the process exit code.
int RunPruneWithRepo(const GlobalOptions& g, repo::Repository& r, repo::RepoLock* lock,
                     repo::PruneOptions options, bool dry_run,
                     std::vector<repo::Id> ignore_snapshots);

}  // namespace fsb::cli
