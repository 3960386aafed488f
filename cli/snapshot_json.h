// cli/snapshot_json.h: snapshot listing helpers shared by snapshots, ls and backup.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "cli/global.h"
#include "repo/node.h"
#include "repo/repository.h"

namespace fsb::cli {

struct SnapshotWithId {
  repo::Id id;
  repo::Snapshot snapshot;
};

// Every snapshot, oldest first; unreadable ones are warned about and skipped.
Result<std::vector<SnapshotWithId>> LoadSnapshots(repo::Repository& r);
// restic's `snapshots --json` object: the snapshot's fields plus "id" and "short_id".
std::string SnapshotJson(const SnapshotWithId& s, const char* struct_type = nullptr);
// True when the snapshot has every tag of one of the filters ("a,b" means a and b).
bool MatchesTags(const repo::Snapshot& s, const std::vector<std::string>& filters);
struct SnapshotRef {
  repo::Id id;
  repo::Snapshot snapshot;
  std::string subpath;  // after the ':' of "SNAPSHOT:SUBPATH", or empty
};
// Resolves "ID[:SUBPATH]" (ID: full, unique prefix or "latest") and loads the snapshot.
Result<SnapshotRef> ResolveSnapshotRef(repo::Repository& r, std::string_view ref);

// What ls and restore start from: the repository opened with a shared lock (or none with
// --no-lock), the snapshot "ID[:SUBPATH]" resolved and loaded, the index loaded.
struct SnapshotForReading {
  LockedRepository locked;
  SnapshotRef ref;
  repo::Repository& repo() { return *locked.repo; }
};
Result<SnapshotForReading> OpenSnapshotForReading(const GlobalOptions& g, std::string_view spec);

// "2006-01-02 15:04:05" in the snapshot's zone.
std::string HumanTime(const repo::Timestamp& t);

}  // namespace fsb::cli
