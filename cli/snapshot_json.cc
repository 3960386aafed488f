#include "cli/snapshot_json.h"

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "base/log.h"

namespace fsb::cli {

Result<std::vector<SnapshotWithId>> LoadSnapshots(repo::Repository& r) {
  FSB_ASSIGN_OR_RETURN(std::vector<repo::Id> ids, r.ListSnapshotIds());
  std::vector<SnapshotWithId> out;
  for (const repo::Id& id : ids) {
    Result<repo::Snapshot> s = r.LoadSnapshot(id);
    if (!s.ok()) {
      GetLogger("cli")->warn("skipping unreadable snapshot snapshot={} err=\"{}\"", id.Short(),
                             s.status().message());
      continue;
    }
    out.push_back({id, std::move(*s)});
  }
  std::stable_sort(out.begin(), out.end(), [](const SnapshotWithId& a, const SnapshotWithId& b) {
    return std::tie(a.snapshot.time.sec, a.snapshot.time.nsec) < std::tie(b.snapshot.time.sec, b.snapshot.time.nsec);
  });
  return out;
}

std::string SnapshotJson(const SnapshotWithId& s, const char* struct_type) {
  std::string j = repo::EncodeSnapshot(s.snapshot);
  j.pop_back();  // '}'
  j += fmt::format(",\"id\":\"{}\",\"short_id\":\"{}\"", s.id.Hex(), s.id.Short());
  if (struct_type) j += fmt::format(",\"struct_type\":\"{}\"", struct_type);
  j += '}';
  return j;
}

bool MatchesTags(const repo::Snapshot& s, const std::vector<std::string>& filters) {
  if (filters.empty()) return true;
  for (const std::string& f : filters) {
    std::stringstream ss(f);
    std::string tag;
    bool all = true;
    while (std::getline(ss, tag, ',')) {
      if (std::find(s.tags.begin(), s.tags.end(), tag) == s.tags.end()) all = false;
    }
    if (all) return true;
  }
  return false;
}

Result<SnapshotRef> ResolveSnapshotRef(repo::Repository& r, std::string_view ref) {
  SnapshotRef out;
  std::string_view id = ref;
  if (size_t colon = ref.find(':'); colon != std::string_view::npos) {
    out.subpath = std::string(ref.substr(colon + 1));
    id = ref.substr(0, colon);
  }
  FSB_ASSIGN_OR_RETURN(out.id, r.FindSnapshot(id));
  FSB_ASSIGN_OR_RETURN(out.snapshot, r.LoadSnapshot(out.id));
  return out;
}

Result<SnapshotForReading> OpenSnapshotForReading(const GlobalOptions& g, std::string_view spec) {
  SnapshotForReading out;
  FSB_ASSIGN_OR_RETURN(out.locked, OpenLockedRepository(g, false, true));
  FSB_ASSIGN_OR_RETURN(out.ref, ResolveSnapshotRef(out.repo(), spec));
  if (Status s = out.repo().LoadIndex(); !s.ok()) return s.WithContext("load index");
  return out;
}

std::string HumanTime(const repo::Timestamp& t) {
  time_t local = static_cast<time_t>(t.sec + t.utc_offset_sec);
  struct tm tm;
  gmtime_r(&local, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

}  // namespace fsb::cli
