// repo/node.h: tree nodes, trees and snapshots as typed values, and their JSON forms, byte-identical
// to restic 0.14's (restic-repo-format.md §9, §10). Pure functions; safe for concurrent use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "repo/id.h"

namespace fsb::repo {

// A point in time as restic writes it: seconds and nanoseconds since the Unix epoch, and the UTC
// offset of the zone it was written in (0 prints as "Z"). §9.4.
struct Timestamp {
  int64_t sec = 0;
  uint32_t nsec = 0;
  int32_t utc_offset_sec = 0;
  bool operator==(const Timestamp&) const = default;
};

// The local zone's offset for `sec` (localtime_r, so TZ applies), as restic writes times.
Timestamp LocalTimestamp(int64_t sec, uint32_t nsec);
// Go's RFC 3339 "nano" form: fraction without trailing zeros, omitted when zero; "Z" for offset 0.
std::string FormatTimestamp(const Timestamp& t);
// Accepts any offset (or Z) and 0–9 fraction digits. kInvalidArgument otherwise.
Result<Timestamp> ParseTimestamp(std::string_view text);

enum class NodeType { kFile, kDir, kSymlink, kDev, kCharDev, kFifo, kSocket };
std::string_view NodeTypeName(NodeType t);  // "file", "dir", ...

// Go os.FileMode bits (§9.5).
inline constexpr uint32_t kGoModeDir = 1u << 31;
inline constexpr uint32_t kGoModeSymlink = 1u << 27;
inline constexpr uint32_t kGoModeDevice = 1u << 26;
inline constexpr uint32_t kGoModeNamedPipe = 1u << 25;
inline constexpr uint32_t kGoModeSocket = 1u << 24;
inline constexpr uint32_t kGoModeSetuid = 1u << 23;
inline constexpr uint32_t kGoModeSetgid = 1u << 22;
inline constexpr uint32_t kGoModeCharDevice = 1u << 21;
inline constexpr uint32_t kGoModeSticky = 1u << 20;
// st_mode (type + permission + suid/sgid/sticky) → Go FileMode, and back (type bits included).
uint32_t GoModeFromStat(uint32_t st_mode);
uint32_t StatModeFromGo(uint32_t go_mode);

struct ExtendedAttribute {
  std::string name;
  Bytes value;
  bool operator==(const ExtendedAttribute&) const = default;
};

struct Node {
  std::string name;  // raw bytes as on disk (may be invalid UTF-8); quoted only in JSON
  NodeType type = NodeType::kFile;
  uint32_t mode = 0;  // Go FileMode
  Timestamp mtime;
  Timestamp atime;
  Timestamp ctime;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string user;
  std::string group;
  uint64_t inode = 0;
  uint64_t device_id = 0;
  uint64_t size = 0;
  uint64_t links = 0;
  std::string linktarget;  // raw bytes; JSON gets `linktarget_raw` too when not valid UTF-8 (§16)
  std::vector<ExtendedAttribute> xattrs;
  uint64_t device = 0;  // st_rdev for dev/chardev
  std::vector<Id> content;  // file: data blob IDs in order ([] for empty); others: written as null
  // Read side only: the JSON had "content":null or no content key (check reports it for files).
  bool content_null = false;
  std::optional<Id> subtree;  // dir only
  std::string error;
  bool operator==(const Node&) const = default;
};

// The tree blob bytes: {"nodes":[...]}\n, nodes in the given order (callers sort by raw name).
Bytes EncodeTree(const std::vector<Node>& nodes);
// Appends one node's compact JSON to `out` (what EncodeTree writes between the commas).
void AppendNodeJson(const Node& node, std::string& out);
// Lenient as restic: unknown fields ignored, missing newline accepted, order not checked.
// kCorruption (naming the field) on malformed JSON, an unknown node type, a bad ID or time.
Result<std::vector<Node>> DecodeTree(ByteView json);

struct Snapshot {
  Timestamp time;
  std::optional<Id> parent;
  Id tree;
  std::vector<std::string> paths;
  std::string hostname;
  std::string username;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<std::string> excludes;
  std::vector<std::string> tags;
  std::optional<Id> original;
  std::string program_version;
  std::string summary_json;  // restic ≥ 0.17 "summary" object, kept verbatim (compact) if present
  bool operator==(const Snapshot&) const = default;
};

// Compact JSON without a trailing newline, fields in restic's order, omitempty as restic.
std::string EncodeSnapshot(const Snapshot& s);
// kCorruption on malformed JSON or a missing/invalid `tree` or `time`.
Result<Snapshot> DecodeSnapshot(ByteView json);

// Go's encoding/json string rules (§9.3 rule 2), quotes included, appended to `out`.
void AppendGoJsonString(std::string_view s, std::string& out);
// Go's strconv.Quote without the surrounding quotes (§9.3 rule 3), and its inverse.
std::string GoQuoteName(std::string_view raw);
Result<std::string> GoUnquoteName(std::string_view quoted);

}  // namespace fsb::repo
