// repo/backend/backend.h: where repository files live. Opaque named files; knows nothing of packs,
// keys or snapshots. Implementations are safe for concurrent use.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace fsb::repo {

// restic-repo-format.md §1: the kinds of repository files.
enum class FileType { kConfig, kKey, kPack, kIndex, kSnapshot, kLock };
std::string_view FileTypeName(FileType t);  // "config", "key", "data", "index", "snapshot", "lock"

struct Handle {
  FileType type = FileType::kConfig;
  std::string name;  // 64 lowercase hex, or "config"

  static Handle Config() { return {FileType::kConfig, "config"}; }
  // Relative path in the default layout: "config", "keys/<id>", "data/ab/<id>", "index/<id>", ...
  std::string Path() const;
  bool operator==(const Handle&) const = default;
};

struct FileInfo {
  std::string name;
  uint64_t size = 0;
};

struct BackendProperties {
  int max_connections = 2;  // concurrent requests worth issuing
  bool local = true;        // true when reads are cheap (no per-request latency)
  // true when a completed Save is in every List that starts after it, whoever lists: the file
  // system of one kernel. Then a lock's second look needs no wait for a racing locker's file to
  // become visible (lock.h). false (wait) for object stores and network or FUSE file systems.
  bool consistent_listing = false;
};

// A file given to the backend in pieces and published under its name only when complete: a pack,
// whose name is the hash of its content and so is known only at the end. Nothing of it is visible
// in the repository before Publish, and an unpublished file leaves nothing behind, also when the
// process dies (the local backend uses an unnamed O_TMPFILE inode).
class SpoolFile {
 public:
  virtual ~SpoolFile() = default;  // discards the file unless it was published
  // Safe for concurrent calls on disjoint ranges.
  virtual Status WriteAt(uint64_t offset, ByteView data) = 0;
  // Reads back what was written; kCorruption if the file ends first.
  virtual Status ReadAt(uint64_t offset, MutableByteView out) = 0;
  // Durable and visible under `h` on return, atomically (readers see all of it or nothing). An
  // existing file of that name is left (names are content hashes). Call at most once, after
  // every WriteAt returned.
  virtual Status Publish(const Handle& h) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // A human-readable location for messages ("/srv/repo", "s3:host/bucket/prefix"); no secrets.
  virtual std::string Location() const = 0;
  // Atomic and durable on return: readers see all of `data` or nothing. An existing file of the
  // same name is replaced (names are content hashes, so the content is the same; the repository
  // layer guards `config`). `data` lives for the call; retries resend it.
  virtual Status Save(const Handle& h, ByteView data) = 0;
  // `length` 0 reads to the end. kNotFound if absent, kCorruption if shorter than asked.
  virtual Result<Bytes> Load(const Handle& h, uint64_t offset, uint64_t length) = 0;
  // Load of out.size() (> 0) bytes into `out`, for callers that reuse a buffer (no allocation and
  // no zero-fill a call: a restore reads its packs in 4 MiB parts). The default goes through Load.
  virtual Status LoadInto(const Handle& h, uint64_t offset, MutableByteView out);
  virtual Result<uint64_t> Size(const Handle& h) = 0;
  // Calls fn for each file of `type` whose name is 64 hex digits (others are ignored, as restic
  // does); a non-OK return from fn stops the listing and is returned. Order unspecified.
  virtual Status List(FileType type, const std::function<Status(const FileInfo&)>& fn) = 0;
  // kNotFound if absent.
  virtual Status Remove(const Handle& h) = 0;
  // Creates the layout for a new repository (directories, where the backend has them).
  virtual Status Create() = 0;
  virtual BackendProperties Properties() const = 0;
  // A file of `type` to be written in pieces (see SpoolFile), for backends that can take one
  // without the caller holding it in memory. nullptr: not offered (use Save); the default.
  virtual Result<std::unique_ptr<SpoolFile>> CreateSpool(FileType type) {
    (void)type;
    return std::unique_ptr<SpoolFile>();
  }
};

}  // namespace fsb::repo
