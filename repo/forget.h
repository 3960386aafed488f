// repo/forget.h: restic's snapshot retention (`restic forget`): filters, grouping and the keep
// policy, with the same results and reasons as restic 0.14 (internal/restic/snapshot_policy.go,
// snapshot_group.go). Pure functions on values; safe for concurrent use.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "repo/id.h"
#include "repo/node.h"

namespace fsb::repo {

// restic's `Duration` for --keep-within*: calendar years and months, days and hours ("1y2m3d4h";
// `m` is months, not minutes). Not a std::chrono::seconds, because restic subtracts it from the
// newest snapshot's time with Go's AddDate (calendar arithmetic: "1m" before March 31 is March 3).
struct KeepDuration {
  int years = 0;
  int months = 0;
  int days = 0;
  int hours = 0;
  bool zero() const { return years == 0 && months == 0 && days == 0 && hours == 0; }
  // restic's String(): "1y2m3d4h" with zero parts left out ("" for zero).
  std::string ToString() const;
  bool operator==(const KeepDuration&) const = default;
};
// restic's ParseDuration: numbers (optionally negative) each followed by y, m, d or h; a repeated
// unit overrides. kInvalidArgument naming the input otherwise.
Result<KeepDuration> ParseKeepDuration(std::string_view s);

// The --keep-* flags. Counts: 0 = rule unused, N > 0 = the newest N buckets, -1 = every bucket
// (restic ≥ 0.15; restic 0.14 has no "unlimited" and would treat -1 as a non-empty policy that
// keeps nothing, so fsb rejects other negative values in ValidatePolicy).
struct ForgetPolicy {
  int last = 0;
  int hourly = 0;
  int daily = 0;
  int weekly = 0;
  int monthly = 0;
  int yearly = 0;
  KeepDuration within;  // every snapshot newer than (newest - within)
  KeepDuration within_hourly;
  KeepDuration within_daily;
  KeepDuration within_weekly;
  KeepDuration within_monthly;
  KeepDuration within_yearly;
  // --keep-tag: each entry is a tag list "a,b" (a and b); a snapshot matching any entry is kept.
  // An empty tag in a list matches a snapshot without tags (restic's HasTags).
  std::vector<std::string> keep_tags;

  // No rule set: restic then removes nothing (only explicit IDs are forgotten).
  bool Empty() const;
  // restic's description: "keep 3 latest, 7 daily snapshots and all snapshots within 1m of the
  // newest".
  std::string ToString() const;
};
// kInvalidArgument for a count below -1.
Status ValidatePolicy(const ForgetPolicy& p);

// --group-by: which fields put snapshots in the same group (restic 0.14's default host,paths).
struct GroupBy {
  bool host = true;
  bool paths = true;
  bool tags = false;
};
// "host,paths,tags" (singular forms too; "" = no grouping). kInvalidArgument "unknown grouping
// option: 'x'" as restic.
Result<GroupBy> ParseGroupBy(std::string_view s);

// --host / --tag / --path: which snapshots forget considers at all.
struct SnapshotFilter {
  std::vector<std::string> hosts;  // any of them (empty: all)
  std::vector<std::string> tags;   // tag lists "a,b"; any list whose tags the snapshot all has
  std::vector<std::string> paths;  // the snapshot has every one of them
  // restic's HasHostname && HasTagList && HasPaths.
  bool Matches(const Snapshot& s) const;
};

struct SnapshotEntry {
  Id id;
  Snapshot snapshot;
};

// Why a snapshot is kept, as restic's KeepReason: the rules that matched ("last snapshot", "daily
// snapshot", "within 1m", "has tags [a, b]", "daily within 7d", "policy is empty") and the count
// left in each rule after this snapshot (last, hourly, daily, weekly, monthly, yearly).
struct KeepReason {
  Id id;
  Snapshot snapshot;
  std::vector<std::string> matches;
  std::array<int, 6> counters{};
};

struct PolicyResult {
  std::vector<SnapshotEntry> keep;    // newest first
  std::vector<SnapshotEntry> remove;  // newest first
  std::vector<KeepReason> reasons;    // one per kept snapshot, in `keep` order
};

// restic's ApplyPolicy on one group. Snapshots are sorted newest first (equal times: by ID, where
// restic keeps its listing order). Each snapshot is kept when a --keep-tag list matches, when it
// is within `within` of the newest snapshot that is not after `now_sec`, or when it opens a new
// bucket (hour, day, ISO week, month, year of its time in its own UTC offset; "last" makes every
// snapshot a bucket) for a rule with count left, and likewise for the within-* rules. An empty
// policy keeps everything.
PolicyResult ApplyPolicy(std::vector<SnapshotEntry> list, const ForgetPolicy& p, int64_t now_sec);

struct ForgetGroup {
  // The grouping key; nullopt where restic's JSON has null (field not grouped on, or empty).
  std::string host;
  std::optional<std::vector<std::string>> paths;
  std::optional<std::vector<std::string>> tags;
  PolicyResult result;
};

// Groups `snapshots` as restic's GroupSnapshots (which also sorts each snapshot's paths, and its
// tags when grouping by tags, as the JSON then shows) and applies the policy to each group.
// Groups are ordered by key (restic's order is random). An empty policy gives no groups, as
// restic. Does not filter: callers apply SnapshotFilter first.
std::vector<ForgetGroup> PlanForget(std::vector<SnapshotEntry> snapshots, const ForgetPolicy& p,
                                    const GroupBy& group_by, int64_t now_sec);

// restic's JSON for one KeepReason: {"snapshot":{...},"matches":[...],"counters":{...}} (the
// counters object omits zero counts, as Go's omitempty).
std::string KeepReasonJson(const KeepReason& r);

}  // namespace fsb::repo
