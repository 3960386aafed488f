#include "repo/backend/local/local_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string_view>
#include <utility>
#include <vector>

#include "base/dir.h"

namespace fsb::repo {
namespace {

// restic-repo-format.md §1: file names are SHA-256 IDs in lowercase hex.
constexpr size_t kIdHexLength = 64;

bool IsIdName(std::string_view name) {
  if (name.size() != kIdHexLength) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Names come from callers, and a name such as "../../x" would leave the repository: accept only
// what restic writes.
Status CheckHandle(const Handle& h) {
  if (h.type == FileType::kConfig ? h.name == "config" : IsIdName(h.name)) return Status::Ok();
  return Status::InvalidArgument(fmt::format(
      "invalid {} file name \"{}\": want 64 lowercase hex digits", FileTypeName(h.type), h.name));
}

// The directory below the root that holds files of `type` ("" for config; packs are one level
// further down, in data/<first two hex digits>).
std::string TypeDir(FileType type) {
  switch (type) {
    case FileType::kConfig:
      return "";
    case FileType::kKey:
      return "keys";
    case FileType::kPack:
      return "data";
    case FileType::kIndex:
      return "index";
    case FileType::kSnapshot:
      return "snapshots";
    case FileType::kLock:
      return "locks";
  }
  return "";
}

// Splits "data/ab/<id>" into "data/ab" and "<id>"; "config" into "" and "config".
std::pair<std::string, std::string> SplitPath(const std::string& rel) {
  const size_t slash = rel.rfind('/');
  if (slash == std::string::npos) return {"", rel};
  return {rel.substr(0, slash), rel.substr(slash + 1)};
}

// restic names temp files `<final name>-tmp-<random>` (§1.1). getrandom makes the name unique
// across processes; the counter keeps it unique within one even if getrandom is unavailable.
std::string TempName(const std::string& name) {
  static std::atomic<uint64_t> counter{0};
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r)) {
    r = static_cast<uint64_t>(getpid()) << 32;
  }
  r ^= counter.fetch_add(1, std::memory_order_relaxed);
  return fmt::format("{}-tmp-{:016x}", name, r);
}

Status WriteAll(int fd, ByteView data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "write", path);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Reads exactly out.size() bytes at `offset`; kCorruption if the file ends first.
Status PreadAll(int fd, MutableByteView out, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "pread", path);
    }
    if (n == 0) {
      return Status::Corruption(fmt::format("load {}: short read: got {} of {} bytes at offset {}",
                                            path, done, out.size(), offset));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// fsync, tolerating file systems that cannot (restic tolerates ENOTSUP for files and ENOTSUP,
// ENOENT, EINVAL for directories, §1.1).
Status Sync(int fd, bool is_dir, const std::string& path) {
  if (::fsync(fd) == 0) return Status::Ok();
  const int err = errno;
  if (err == ENOTSUP || (is_dir && (err == ENOENT || err == EINVAL))) return Status::Ok();
  return Status::FromErrno(err, "fsync", path);
}

}  // namespace

LocalBackend::LocalBackend(std::string path, Options options, Fd root, bool group_access,
                           bool consistent_listing)
    : path_(std::move(path)),
      options_(options),
      root_(std::move(root)),
      dir_mode_(group_access ? 0770 : 0700),
      temp_mode_(group_access ? 0660 : 0600),
      readonly_mode_(group_access ? 0440 : 0400),
      consistent_listing_(consistent_listing) {}

bool LocalBackend::ListsConsistently(int64_t f_type) {
  switch (static_cast<uint32_t>(f_type)) {
    case EXT4_SUPER_MAGIC:  // also ext2 and ext3
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case F2FS_SUPER_MAGIC:
    case TMPFS_MAGIC:
    case RAMFS_MAGIC:
    case OVERLAYFS_SUPER_MAGIC:
    case 0x2fc12fc1u:  // ZFS (not in linux/magic.h: out of tree)
    case 0xca451a4eu:  // bcachefs
      return true;
    default:
      return false;
  }
}

Result<std::unique_ptr<LocalBackend>> LocalBackend::Open(std::string path, Options options) {
  if (path.empty()) return Status::InvalidArgument("repository path is empty");
  if (options.max_connections < 1) {
    return Status::InvalidArgument(
        fmt::format("repository {}: max_connections {} below 1", path, options.max_connections));
  }
  if (options.create_if_missing) {
    // mkdir -p: each prefix in turn; existing ones are fine.
    for (size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
      const std::string prefix = path.substr(0, pos);
      if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
        return Status::FromErrno(errno, "mkdir", prefix)
            .WithContext(fmt::format("create repository {}", path));
      }
      if (pos == std::string::npos) break;
    }
  }
  Fd root(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound(fmt::format("repository {} does not exist", path));
    return Status::FromErrno(err, "open", path).WithContext("open repository");
  }
  // restic derives the modes from the config file: group-readable config, group-accessible repo
  // (§1.1). A missing config (before init) means the private modes.
  bool group_access = false;
  struct stat st;
  if (::fstatat(root.get(), "config", &st, 0) == 0) {
    group_access = (st.st_mode & S_IRGRP) != 0;
  } else if (errno != ENOENT) {
    return Status::FromErrno(errno, "stat", path + "/config").WithContext("open repository");
  }
  struct statfs fs;
  const bool consistent = ::fstatfs(root.get(), &fs) == 0 && ListsConsistently(fs.f_type);
  return std::unique_ptr<LocalBackend>(
      new LocalBackend(std::move(path), options, std::move(root), group_access, consistent));
}

std::string LocalBackend::FullPath(const std::string& rel) const {
  if (rel.empty()) return path_;
  if (path_.ends_with('/')) return path_ + rel;
  return path_ + "/" + rel;
}

Status LocalBackend::MakeDir(const std::string& rel) const {
  if (::mkdirat(root_.get(), rel.c_str(), dir_mode_) == 0 || errno == EEXIST) return Status::Ok();
  return Status::FromErrno(errno, "mkdir", FullPath(rel));
}

Result<Fd> LocalBackend::OpenDir(const std::string& rel, bool create) const {
  if (rel.empty()) {
    // The root fd is shared and const; hand out a private one so callers own what they get.
    Fd fd(::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd.valid()) return Status::FromErrno(errno, "dup", path_);
    return fd;
  }
  for (int attempt = 0;; attempt++) {
    Fd fd(::openat(root_.get(), rel.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.valid()) return fd;
    const int err = errno;
    if (err != ENOENT || !create || attempt > 0) {
      return Status::FromErrno(err, "open", FullPath(rel));
    }
    // Missing directories are made on demand, as restic does: each prefix of "data/ab".
    for (size_t pos = rel.find('/');; pos = rel.find('/', pos + 1)) {
      FSB_RETURN_IF_ERROR(MakeDir(rel.substr(0, pos)));
      if (pos == std::string::npos) break;
    }
  }
}

Status LocalBackend::Save(const Handle& h, ByteView data) {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  const std::string rel = h.Path();
  const std::pair<std::string, std::string> split = SplitPath(rel);
  const std::string& dir_rel = split.first;
  const std::string& name = split.second;
  FSB_ASSIGN_OR_RETURN(Fd dir, OpenDir(dir_rel, /*create=*/true));

  // restic-repo-format.md §1.1: temp file in the final directory, write, fsync, rename, fsync the
  // directory, read-only mode.
  std::string tmp_name;
  std::string tmp_path;
  Fd file;
  for (int attempt = 0; !file.valid(); attempt++) {
    tmp_name = TempName(name);
    tmp_path = FullPath(dir_rel.empty() ? tmp_name : dir_rel + "/" + tmp_name);
    const int fd =
        ::openat(dir.get(), tmp_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, temp_mode_);
    const int err = errno;
    file = Fd(fd);
    if (!file.valid() && (err != EEXIST || attempt >= 10)) {
      return Status::FromErrno(err, "create", tmp_path).WithContext(fmt::format("save {}", rel));
    }
  }
  auto fail = [&](const Status& s) {
    file.Reset();
    // Best effort: the save already failed, and a leftover temp name is ignored by List.
    ::unlinkat(dir.get(), tmp_name.c_str(), 0);
    return s.WithContext(fmt::format("save {}", rel));
  };

  if (Status s = WriteAll(file.get(), data, tmp_path); !s.ok()) return fail(s);
  // The read-only mode is set before the fsync (restic chmods after the rename), so the mode is as
  // durable as the content and the final name is never writable. Like restic, a file system that
  // refuses chmod is not an error.
  if (::fchmod(file.get(), readonly_mode_) != 0 && errno != EPERM && errno != EACCES &&
      errno != ENOTSUP) {
    return fail(Status::FromErrno(errno, "chmod", tmp_path));
  }
  if (Status s = Sync(file.get(), /*is_dir=*/false, tmp_path); !s.ok()) return fail(s);
  // close() can report a deferred write error (NFS); EINTR still closed the fd on Linux.
  if (::close(file.Release()) != 0 && errno != EINTR) {
    return fail(Status::FromErrno(errno, "close", tmp_path));
  }
  if (::renameat(dir.get(), tmp_name.c_str(), dir.get(), name.c_str()) != 0) {
    return fail(Status::FromErrno(errno, "rename", tmp_path));
  }
  return Sync(dir.get(), /*is_dir=*/true, FullPath(dir_rel))
      .WithContext(fmt::format("save {}", rel));
}

namespace {

// Gives the unnamed (O_TMPFILE) inode `fd` the name `name` in `dir`, atomically. AT_EMPTY_PATH
// needs CAP_DAC_READ_SEARCH, the /proc link needs /proc. 0, or -1 with errno set.
int LinkUnnamed(int fd, int dir, const char* name) {
  if (::linkat(fd, "", dir, name, AT_EMPTY_PATH) == 0) return 0;
  if (errno != EPERM && errno != ENOENT && errno != EACCES) return -1;
  const std::string proc = fmt::format("/proc/self/fd/{}", fd);
  return ::linkat(AT_FDCWD, proc.c_str(), dir, name, AT_SYMLINK_FOLLOW);
}

}  // namespace

class LocalBackend::LocalSpool : public SpoolFile {
 public:
  LocalSpool(const LocalBackend& backend, Fd file, std::string dir_rel)
      : backend_(backend), file_(std::move(file)), dir_rel_(std::move(dir_rel)) {}

  Status WriteAt(uint64_t offset, ByteView data) override {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::pwrite(file_.get(), data.data() + done, data.size() - done,
                                 static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno(errno, "write", Name());
      }
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  Status ReadAt(uint64_t offset, MutableByteView out) override {
    return PreadAll(file_.get(), out, offset, Name());
  }

  Status Publish(const Handle& h) override {
    FSB_RETURN_IF_ERROR(CheckHandle(h));
    const std::string rel = h.Path();
    auto fail = [&](const Status& s) { return s.WithContext(fmt::format("save {}", rel)); };
    // As Save: read-only before the fsync, so the mode is as durable as the content.
    if (::fchmod(file_.get(), backend_.readonly_mode_) != 0 && errno != EPERM && errno != EACCES &&
        errno != ENOTSUP) {
      return fail(Status::FromErrno(errno, "chmod", Name()));
    }
    if (Status s = Sync(file_.get(), /*is_dir=*/false, Name()); !s.ok()) return fail(s);
    const std::pair<std::string, std::string> split = SplitPath(rel);
    Result<Fd> dir = backend_.OpenDir(split.first, /*create=*/true);
    if (!dir.ok()) return fail(dir.status());
    // The name appears with the complete, synced content. The same name is the same content: a
    // pack saved before (a retried backup) is kept.
    if (LinkUnnamed(file_.get(), dir->get(), split.second.c_str()) != 0 && errno != EEXIST) {
      return fail(Status::FromErrno(errno, "link", backend_.FullPath(rel)));
    }
    file_.Reset();
    return Sync(dir->get(), /*is_dir=*/true, backend_.FullPath(split.first))
        .WithContext(fmt::format("save {}", rel));
  }

 private:
  std::string Name() const { return backend_.FullPath(dir_rel_) + "/(unnamed pack being written)"; }

  const LocalBackend& backend_;
  Fd file_;
  const std::string dir_rel_;
};

Result<std::unique_ptr<SpoolFile>> LocalBackend::CreateSpool(FileType type) {
  // The type's top directory ("data" for packs): the same file system as the final name.
  const std::string sample = Handle{type, std::string(64, '0')}.Path();
  const size_t slash = sample.find('/');
  const std::string dir_rel = slash == std::string::npos ? std::string() : sample.substr(0, slash);
  FSB_ASSIGN_OR_RETURN(Fd dir, OpenDir(dir_rel, /*create=*/true));
  if (spool_state_.load() == kSpoolRefused) return std::unique_ptr<SpoolFile>();
  Fd file(::openat(dir.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, temp_mode_));
  if (!file.valid()) {
    const int err = errno;
    // No O_TMPFILE on this file system (or kernel): not offered, the caller uses Save.
    if (err == EOPNOTSUPP || err == EISDIR || err == EINVAL) {
      spool_state_.store(kSpoolRefused);
      return std::unique_ptr<SpoolFile>();
    }
    return Status::FromErrno(err, "create", FullPath(dir_rel) + "/(unnamed file)");
  }
  if (spool_state_.load() == kSpoolUnknown) {
    // Once per backend: can an unnamed file be given a name here at all (no CAP_DAC_READ_SEARCH
    // and no /proc: no)? Otherwise every pack would fail at its end, not fall back to Save.
    Fd probe(::openat(dir.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, temp_mode_));
    const std::string name = TempName(".fsb-link-probe");
    const bool linked = probe.valid() && LinkUnnamed(probe.get(), dir.get(), name.c_str()) == 0;
    if (linked) ::unlinkat(dir.get(), name.c_str(), 0);
    spool_state_.store(linked ? kSpoolOffered : kSpoolRefused);
    if (!linked) return std::unique_ptr<SpoolFile>();
  }
  return std::unique_ptr<SpoolFile>(new LocalSpool(*this, std::move(file), dir_rel));
}

Result<LocalBackend::OpenedRange> LocalBackend::OpenRange(const Handle& h, uint64_t offset,
                                                          uint64_t length) const {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  const std::string rel = h.Path();
  OpenedRange r{Fd(::openat(root_.get(), rel.c_str(), O_RDONLY | O_CLOEXEC)), FullPath(rel), 0};
  if (!r.file.valid()) return Status::FromErrno(errno, "open", r.path);
  struct stat st;
  if (::fstat(r.file.get(), &st) != 0) return Status::FromErrno(errno, "stat", r.path);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  // Checked before allocating: a length from a corrupt header must not become a huge buffer.
  if (offset > size || (length > 0 && length > size - offset)) {
    return Status::Corruption(fmt::format("load {}: short read: range {}+{} beyond size {}", r.path,
                                          offset, length, size));
  }
  r.length = length == 0 ? size - offset : length;
  return r;
}

Result<Bytes> LocalBackend::Load(const Handle& h, uint64_t offset, uint64_t length) {
  FSB_ASSIGN_OR_RETURN(OpenedRange r, OpenRange(h, offset, length));
  Bytes out(r.length);
  FSB_RETURN_IF_ERROR(PreadAll(r.file.get(), out, offset, r.path));
  return out;
}

Status LocalBackend::LoadInto(const Handle& h, uint64_t offset, MutableByteView out) {
  FSB_CHECK(!out.empty());
  FSB_ASSIGN_OR_RETURN(OpenedRange r, OpenRange(h, offset, out.size()));
  return PreadAll(r.file.get(), out, offset, r.path);
}

Result<uint64_t> LocalBackend::Size(const Handle& h) {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  const std::string rel = h.Path();
  struct stat st;
  if (::fstatat(root_.get(), rel.c_str(), &st, 0) != 0) {
    return Status::FromErrno(errno, "stat", FullPath(rel));
  }
  return static_cast<uint64_t>(st.st_size);
}

Status LocalBackend::ListDir(const std::string& rel,
                             const std::function<Status(const FileInfo&)>& fn) const {
  Result<Fd> dir = OpenDir(rel, /*create=*/false);
  if (!dir.ok()) {
    // A directory restic has not made yet (or a fixture without empty ones) lists as empty.
    if (dir.status().code() == StatusCode::kNotFound) return Status::Ok();
    return dir.status().WithContext(fmt::format("list {}", rel));
  }
  // Collect first, call fn after: fn may save or remove files in this directory, and the DIR
  // stream is closed before any callback runs.
  FSB_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ReadDirectory(dir->get(), FullPath(rel)));
  std::vector<FileInfo> files;
  for (const DirEntry& e : entries) {
    if (!IsIdName(e.name)) continue;  // temp files, .gitkeep, ... (§1)
    struct stat st;
    if (::fstatat(dir->get(), e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed while listing
      return Status::FromErrno(errno, "stat", FullPath(rel + "/" + e.name));
    }
    if (!S_ISREG(st.st_mode)) continue;
    files.push_back({e.name, static_cast<uint64_t>(st.st_size)});
  }
  for (const FileInfo& f : files) FSB_RETURN_IF_ERROR(fn(f));
  return Status::Ok();
}

Status LocalBackend::List(FileType type, const std::function<Status(const FileInfo&)>& fn) {
  // A config is not an ID-named file; nothing to list (List reports 64-hex names only).
  if (type == FileType::kConfig) return Status::Ok();
  const std::string dir = TypeDir(type);
  if (type != FileType::kPack) return ListDir(dir, fn);

  // Packs: one level of subdirectories under data/, whatever their names, as restic walks it.
  Result<Fd> data = OpenDir(dir, /*create=*/false);
  if (!data.ok()) {
    if (data.status().code() == StatusCode::kNotFound) return Status::Ok();
    return data.status().WithContext("list data");
  }
  FSB_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ReadDirectory(data->get(), FullPath(dir)));
  std::vector<std::string> subdirs;
  for (const DirEntry& e : entries) {
    struct stat st;
    if (e.type == DT_DIR ||
        (e.type == DT_UNKNOWN &&
         ::fstatat(data->get(), e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         S_ISDIR(st.st_mode))) {
      subdirs.push_back(e.name);
    }
  }
  for (const std::string& sub : subdirs) FSB_RETURN_IF_ERROR(ListDir(dir + "/" + sub, fn));
  return Status::Ok();
}

Status LocalBackend::Remove(const Handle& h) {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  const std::string rel = h.Path();
  // restic makes the file writable first (it matters on Windows and some network file systems);
  // permission errors are ignored, a missing file is reported.
  if (::fchmodat(root_.get(), rel.c_str(), 0666, 0) != 0 && errno != EPERM && errno != EACCES &&
      errno != ENOTSUP) {
    return Status::FromErrno(errno, "chmod", FullPath(rel)).WithContext("remove");
  }
  if (::unlinkat(root_.get(), rel.c_str(), 0) != 0) {
    return Status::FromErrno(errno, "unlink", FullPath(rel)).WithContext("remove");
  }
  return Status::Ok();
}

Status LocalBackend::Create() {
  struct stat st;
  if (::fstatat(root_.get(), "config", &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return Status::AlreadyExists(
        fmt::format("repository {} already exists: it has a config file", path_));
  }
  if (errno != ENOENT) return Status::FromErrno(errno, "stat", FullPath("config"));

  // restic-repo-format.md §1: init makes data/00 ... data/ff plus index keys locks snapshots
  // (not tmp/).
  for (const char* dir : {"data", "index", "keys", "locks", "snapshots"}) {
    FSB_RETURN_IF_ERROR(MakeDir(dir).WithContext("create repository"));
  }
  for (int i = 0; i < 256; i++) {
    FSB_RETURN_IF_ERROR(MakeDir(fmt::format("data/{:02x}", i)).WithContext("create repository"));
  }
  // Make the new entries durable before anything is written into them.
  for (const char* dir : {"data", ""}) {
    FSB_ASSIGN_OR_RETURN(Fd fd, OpenDir(dir, /*create=*/false));
    FSB_RETURN_IF_ERROR(Sync(fd.get(), /*is_dir=*/true, FullPath(dir)));
  }
  return Status::Ok();
}

}  // namespace fsb::repo
