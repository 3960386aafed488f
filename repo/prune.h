// repo/prune.h: `prune` with restic 0.14's semantics (cmd/restic/cmd_prune.go,
// restic-repo-format.md §13): finds the blobs every snapshot still reaches, decides per pack to
// keep, repack or delete it (--max-unused, --max-repack-size, duplicates, packs missing from the
// index, index entries of missing packs), copies the blobs still needed out of repacked packs
// into new packs, rewrites the index and deletes what is no longer referenced.
//
// Crash safety: Execute writes in the order new packs → new index files → delete the old index
// files → delete the packs no longer indexed. The repository is consistent after every single
// backend call: a crash leaves at most unreferenced packs (restic check: "not referenced in any
// index", not an error) and packs listed in several index files (a hint), never an index entry
// without its pack nor a referenced blob without an index entry; the next prune finishes the job.
//
// Memory: one 48-byte record per index entry, sorted by blob ID, plus a 1-byte-per-blob bucket
// directory and a 4-byte permutation by pack; the used-blob set is a bit in those records. Trees
// are read through the repository's tree pack cache; repacking holds one pack per worker plus
// PackSaver's queue. restic 0.14 needs several hash maps of the same blobs on top of its index.
//
// The caller holds an exclusive lock (RepoLock) for the whole run. A Pruner is used by one thread;
// its workers are its own and are joined before each call returns.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "repo/id.h"
#include "repo/pack_saver.h"
#include "repo/repository.h"

namespace fsb::repo {

// restic's parseSizeStr: a decimal integer with an optional unit b/B (bytes), k/K, m/M, g/G, t/T
// (powers of 1024): "100M", "2g", "4096". kInvalidArgument naming the input otherwise.
Result<uint64_t> ParseSize(std::string_view s);

// --max-unused: how much unused data may remain in the repository after prune.
struct MaxUnused {
  enum class Kind { kPercent, kBytes, kUnlimited };
  Kind kind = Kind::kPercent;
  double percent = 5;  // kPercent: 0 ≤ percent < 100 of the total size after prune
  uint64_t bytes = 0;  // kBytes
  // restic's maxUnusedBytes: for kPercent p, p / (100 - p) × used.
  uint64_t Limit(uint64_t used_bytes) const;
};
// "unlimited", "N%" / "N.M%", or a size as ParseSize. kInvalidArgument with restic's messages.
Result<MaxUnused> ParseMaxUnused(std::string_view s);

// The steps of Execute, in order; before_phase sees each one that has work to do.
enum class PrunePhase { kRemoveUnreferenced, kRepack, kWriteIndex, kRemoveIndex, kRemovePacks };
std::string_view PrunePhaseName(PrunePhase p);

// Counters a reporter thread may sample while Plan or Execute runs (CONVENTIONS §6).
struct PruneProgress {
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> total{0};  // 0: unknown
};

struct PruneOptions {
  MaxUnused max_unused;
  // --max-repack-size: stop choosing packs to repack once this many bytes are chosen.
  uint64_t max_repack_bytes = UINT64_MAX;
  // --repack-cacheable-only: never repack data packs (trees only).
  bool repack_cacheable_only = false;
  // --repack-small: packs below 80 % of the target pack size are repacked (default: below 4 %).
  bool repack_small = false;
  // --repack-uncompressed: v2 only; repack packs holding uncompressed data and compress it.
  bool repack_uncompressed = false;
  // Snapshots not to keep data for (forget --prune passes the ones it just removed).
  std::vector<Id> ignore_snapshots;
  // Tree-walk workers (tree decoding is CPU work); 0: 2 or the number of CPUs if more.
  int walk_threads = 0;
  // Repack workers reading packs; 0: the backend's max_connections - 1, at least 1 (restic).
  int repack_threads = 0;
  // Concurrent deletions (restic 0.14 uses 8).
  int delete_threads = 8;
  // Index files loaded at once.
  int index_load_threads = 4;
  // How repacked blobs are packed and uploaded (verify before upload stays on).
  PackSaverOptions pack_saver;
  // Called on the calling thread before each phase of Execute that has work to do; a non-OK
  // status stops Execute there and is returned (the CLI checks that its lock is still fresh;
  // tests stop or pause a run).
  std::function<Status(PrunePhase)> before_phase;
  // Progress lines as restic prints them ("loading indexes...", "repacking packs"), on the
  // calling thread. May be empty.
  std::function<void(std::string_view)> message;
  // Per-phase counters (snapshots walked, packs repacked, files deleted), reset at each message.
  // Borrowed; may be null.
  PruneProgress* progress = nullptr;
};

// restic 0.14's pruneStats, named as it prints them.
struct PruneStats {
  struct Counts {
    uint64_t used = 0, duplicate = 0, unused = 0, remove = 0, repack = 0, repackrm = 0;
  };
  Counts blobs;  // number of blobs
  Counts size;   // stored bytes of those blobs (the header share of a pack counts as used)
  uint64_t unref_bytes = 0;  // packs in no index
  struct {
    uint64_t used = 0, unused = 0, partly_used = 0, unref = 0, keep = 0, repack = 0, remove = 0;
  } packs;
  uint64_t missing_packs = 0;  // unneeded packs named by the index but absent: dropped from it
  uint64_t snapshots = 0;      // snapshots whose trees were walked
  uint64_t index_entries = 0;  // index entries loaded (duplicates included)

  uint64_t total_blobs() const { return blobs.used + blobs.unused + blobs.duplicate; }
  uint64_t total_bytes() const { return size.used + size.duplicate + size.unused + unref_bytes; }
  uint64_t unused_bytes() const { return size.duplicate + size.unused; }
  uint64_t prune_blobs() const { return blobs.remove + blobs.repackrm; }
  uint64_t prune_bytes() const { return size.remove + size.repackrm + unref_bytes; }
  uint64_t unused_bytes_after() const { return unused_bytes() - size.remove - size.repackrm; }
};

// What Execute did.
struct PruneResult {
  uint64_t unreferenced_removed = 0;  // packs in no index, deleted first
  uint64_t blobs_repacked = 0;        // blobs copied into new packs
  uint64_t packs_written = 0;         // new packs
  uint64_t index_files_written = 0;   // for the new packs and the kept ones
  uint64_t index_files_removed = 0;
  uint64_t packs_removed = 0;  // unused and repacked packs deleted
  // Deletions that failed after the new index was in place: harmless (unreferenced packs, which
  // the next prune removes), reported as restic does, with a warning, not an error.
  std::vector<std::string> remove_errors;
};

class Pruner {
 public:
  // Reads only: lists and loads the snapshots (but `ignore_snapshots`), loads every index file,
  // lists the packs, walks every tree reachable from the snapshots to mark the used blobs, and
  // decides what happens to each pack (restic's planPrune). `repo` must be freshly opened,
  // without LoadIndex (the Pruner loads what it needs), and outlive the Pruner.
  // Errors (nothing is changed then): kFailedPrecondition naming the objects when data is
  // missing — a referenced blob not in the index, a tree that cannot be loaded, a needed pack
  // missing or whose size differs from what the index implies; kInvalidArgument for options
  // the repository cannot honour; backend errors with context.
  static Result<std::unique_ptr<Pruner>> Plan(Repository& repo, PruneOptions options);
  ~Pruner();
  Pruner(const Pruner&) = delete;
  Pruner& operator=(const Pruner&) = delete;

  const PruneStats& stats() const { return stats_; }
  // Bytes the plan holds (records, bucket directory, per-pack tables; Execute's permutation once
  // built), not counting the tree blobs in the repository's index or the tree pack cache.
  uint64_t MemoryBytes() const;
  // Whether Execute would change anything.
  bool HasWork() const;
  // The plan, each sorted by ID (dry-run listings, tests).
  std::vector<Id> UnreferencedPacks() const;  // in no index: deleted first
  std::vector<Id> RepackPacks() const;
  std::vector<Id> RemovePacks() const;   // no used blob left
  std::vector<Id> MissingPacks() const;  // indexed, absent, unneeded: dropped from the index

  // Carries the plan out: deletes unreferenced packs, repacks, writes the new index files,
  // deletes the old index files, then deletes the unused and repacked packs (see the file
  // comment for why this order is crash safe). Call at most once. On error the repository is
  // consistent and another prune finishes the job; the status names the failing object.
  Result<PruneResult> Execute();

 private:
  struct State;
  explicit Pruner(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
  PruneStats stats_;
};

// Plan + Execute, for callers with nothing to print in between (the cluster's maintenance).
Result<PruneResult> Prune(Repository& repo, PruneOptions options, PruneStats* stats = nullptr);

}  // namespace fsb::repo
