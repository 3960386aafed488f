// repo/backend/local/local_backend.h: a repository in a local directory, laid out and written the
// way restic's local backend does it (restic-repo-format.md §1, §1.1), so restic can read what fsb
// writes and the other way round. Safe for concurrent use: every operation works relative to one
// directory fd of the repository root that is fixed at Open, and shares no other state.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>

#include "base/fd.h"
#include "repo/backend/backend.h"

namespace fsb::repo {

class LocalBackend : public Backend {
 public:
  struct Options {
    // Reported as Properties().max_connections. 2 is restic's default for local repositories
    // (§1.1); a local SSD or NVMe disk keeps up with more (4-8 concurrent pack writes), so
    // callers that know the disk may raise it.
    int max_connections = 2;
    // Creates the repository directory and its missing parents (mkdir -p, mode 0700) when it does
    // not exist, for `init` followed by Create(). Off for everything else, so a mistyped path is
    // a clear kNotFound rather than a new empty repository.
    bool create_if_missing = false;
  };

  // Opens the repository directory `path` (it need not hold a repository yet: Create() makes
  // one). kNotFound "repository <path> does not exist" if it is missing (and !create_if_missing),
  // kInvalidArgument if it is not a directory, kPermissionDenied if it cannot be opened.
  // As restic does, a group-readable `config` makes new directories 0770 and files 0440 instead
  // of 0700 and 0400. Blocks on the file system.
  static Result<std::unique_ptr<LocalBackend>> Open(std::string path, Options options);
  static Result<std::unique_ptr<LocalBackend>> Open(std::string path) {
    return Open(std::move(path), Options());
  }

  // The path given to Open.
  std::string Location() const override { return path_; }

  // Writes `<name>-tmp-<random>` in the final directory (creating missing directories), fsyncs
  // it, renames it over the final name, fsyncs the directory and leaves the file read-only. An
  // existing file of the same name is replaced. On failure the temp file is removed.
  // kInvalidArgument for a name that is not 64 lowercase hex (or "config" for kConfig).
  Status Save(const Handle& h, ByteView data) override;
  // `length` 0 reads from `offset` to the end. kNotFound if absent, kCorruption ("short read")
  // if the file ends before offset + length.
  Result<Bytes> Load(const Handle& h, uint64_t offset, uint64_t length) override;
  // Reads straight into `out`; errors as Load.
  Status LoadInto(const Handle& h, uint64_t offset, MutableByteView out) override;
  Result<uint64_t> Size(const Handle& h) override;
  // Lists regular files with 64-lowercase-hex names; packs are found one directory level below
  // data/. A missing directory lists as empty. `fn` runs on the calling thread.
  Status List(FileType type, const std::function<Status(const FileInfo&)>& fn) override;
  // Makes the file writable (errors ignored, as restic does), then unlinks it. kNotFound if
  // absent.
  Status Remove(const Handle& h) override;
  // Makes keys/ index/ locks/ snapshots/ data/ and data/00 ... data/ff (existing ones are kept)
  // and fsyncs them. kAlreadyExists if the directory already holds a `config`.
  Status Create() override;
  BackendProperties Properties() const override {
    return {.max_connections = options_.max_connections,
            .local = true,
            .consistent_listing = consistent_listing_};
  }
  // Whether a file system of this statfs f_type is one only this kernel mounts (ext2/3/4, xfs,
  // btrfs, f2fs, zfs, bcachefs, tmpfs, ramfs, overlayfs), so that a rename is in every later
  // readdir: the `consistent_listing` of a repository there. Network and FUSE file systems (NFS,
  // CIFS, CephFS, 9p, s3fs ...) may serve listings from a cache, and unknown ones are taken to.
  static bool ListsConsistently(int64_t f_type);
  // An unnamed file (O_TMPFILE) in the type's directory; Publish fsyncs it, makes it read-only,
  // links it under its final name (making missing directories) and fsyncs that directory. A
  // crash before Publish leaves nothing (no temp names to clean up). nullptr when the file system
  // has no O_TMPFILE, or when such a file cannot be linked here (no CAP_DAC_READ_SEARCH and no
  // /proc; probed once): callers then use Save.
  Result<std::unique_ptr<SpoolFile>> CreateSpool(FileType type) override;

 private:
  class LocalSpool;
  LocalBackend(std::string path, Options options, Fd root, bool group_access,
               bool consistent_listing);

  // The file of `h`, opened, with the checked length of the range (length 0: to the end).
  struct OpenedRange {
    Fd file;
    std::string path;  // for messages
    uint64_t length;
  };
  Result<OpenedRange> OpenRange(const Handle& h, uint64_t offset, uint64_t length) const;
  // path_ + "/" + rel, for messages.
  std::string FullPath(const std::string& rel) const;
  // Opens the directory `rel` ("" is the root) below the root; with `create`, makes it and its
  // missing parents first.
  Result<Fd> OpenDir(const std::string& rel, bool create) const;
  // mkdirat(root_, rel) with dir_mode_; an existing directory is fine.
  Status MakeDir(const std::string& rel) const;
  Status ListDir(const std::string& rel, const std::function<Status(const FileInfo&)>& fn) const;

  const std::string path_;
  const Options options_;
  const Fd root_;                  // O_RDONLY | O_DIRECTORY of path_; only used through *at() calls
  const mode_t dir_mode_;          // 0700, or 0770 when config is group-readable (§1.1)
  const mode_t temp_mode_;         // 0600 or 0660: the temp file while it is written
  const mode_t readonly_mode_;     // 0400 or 0440: the file once saved
  const bool consistent_listing_;  // ListsConsistently(the root's file system), at Open
  // Whether CreateSpool can give an unnamed file a name here (probed once, see CreateSpool).
  enum { kSpoolUnknown, kSpoolOffered, kSpoolRefused };
  mutable std::atomic<int> spool_state_{kSpoolUnknown};
};

}  // namespace fsb::repo
