#include "uploader/fs_meta.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/fd.h"

namespace fsb::uploader {
namespace {

using repo::Node;
using repo::NodeType;

// A name we act on must be one path component: anything else could walk out of `dir_fd`.
Status CheckName(std::string_view name) {
  if (name.empty() || name == "." || name == ".." ||
      name.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos) {
    return Status::InvalidArgument("bad entry name \"" + std::string(name) + "\"");
  }
  if (name.size() > NAME_MAX) return Status::FromErrno(ENAMETOOLONG, "name", name);
  return Status::Ok();
}

// A path naming `name` in `fd` for the calls that have no *at() form (xattrs, and chmod of an
// O_PATH fd): /proc/self/fd/<fd>/<name>, or /proc/self/fd/<fd> when `name` is empty. The
// magic link resolves to the very directory (or inode) the fd holds; the l*xattr calls then do
// not follow a symlink at `name`. `name` has passed CheckName, so the result fits.
class ProcPath {
 public:
  ProcPath(int fd, std::string_view name) {
    int n = fd == AT_FDCWD ? 0
                           : std::snprintf(buf_, sizeof(buf_), "/proc/self/fd/%d%s", fd,
                                           name.empty() ? "" : "/");
    std::memcpy(buf_ + n, name.data(), name.size());
    buf_[n + name.size()] = '\0';
  }
  const char* c_str() const { return buf_; }

 private:
  char buf_[32 + NAME_MAX + 1];
};

// Errors of an operation on /proc/self/fd/N say so: ENOENT there means /proc is not mounted.
Status ProcErrno(int err, std::string_view op, std::string_view name) {
  Status s = Status::FromErrno(err, op, name);
  if (err == ENOENT) return s.WithContext("via /proc/self/fd (is /proc mounted?)");
  return s;
}

// uid/gid → name, looked up once per id for the life of the process (as restic does: a node
// has millions of files and a handful of owners). Misses are cached as "" too.
class IdNameCache {
 public:
  using Lookup = std::string (*)(uint32_t id);
  explicit IdNameCache(Lookup lookup) : lookup_(lookup) {}

  std::string Get(uint32_t id) {
    {
      std::shared_lock lock(mu_);
      auto it = names_.find(id);
      if (it != names_.end()) return it->second;
    }
    std::string name = lookup_(id);  // unlocked: NSS may be slow (LDAP, sssd)
    std::unique_lock lock(mu_);
    return names_.try_emplace(id, std::move(name)).first->second;
  }

 private:
  const Lookup lookup_;
  std::shared_mutex mu_;
  std::unordered_map<uint32_t, std::string> names_;  // guarded by mu_
};

// getpwuid_r/getgrgid_r with a buffer that grows on ERANGE. "" when unknown or on error, like
// restic's lookupUsername/lookupGroup.
template <typename Entry, typename Fn, typename NameOf>
std::string LookupName(uint32_t id, int size_conf, Fn fn, NameOf name_of) {
  const long hint = sysconf(size_conf);
  std::vector<char> buf(hint > 0 ? static_cast<size_t>(hint) : 1024);
  for (int attempt = 0; attempt < 16; ++attempt) {
    Entry entry;
    Entry* found = nullptr;
    const int rc = fn(id, &entry, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc == EINTR) continue;
    if (rc != 0 || found == nullptr) return {};
    return name_of(*found);
  }
  return {};
}

std::string LookupUser(uint32_t uid) {
  return LookupName<struct passwd>(uid, _SC_GETPW_R_SIZE_MAX, getpwuid_r,
                                   [](const struct passwd& p) { return std::string(p.pw_name); });
}

std::string LookupGroup(uint32_t gid) {
  return LookupName<struct group>(gid, _SC_GETGR_R_SIZE_MAX, getgrgid_r,
                                  [](const struct group& g) { return std::string(g.gr_name); });
}

// Leaked on purpose: worker threads may still look names up during static destruction.
IdNameCache& UserNames() {
  static IdNameCache* cache = new IdNameCache(LookupUser);
  return *cache;
}

IdNameCache& GroupNames() {
  static IdNameCache* cache = new IdNameCache(LookupGroup);
  return *cache;
}

std::optional<NodeType> TypeFromStat(mode_t st_mode) {
  switch (st_mode & S_IFMT) {
    case S_IFREG:
      return NodeType::kFile;
    case S_IFDIR:
      return NodeType::kDir;
    case S_IFLNK:
      return NodeType::kSymlink;
    case S_IFBLK:
      return NodeType::kDev;
    case S_IFCHR:
      return NodeType::kCharDev;
    case S_IFIFO:
      return NodeType::kFifo;
    case S_IFSOCK:
      return NodeType::kSocket;
    default:
      return std::nullopt;
  }
}

repo::Timestamp ToTimestamp(const struct timespec& ts) {
  return repo::LocalTimestamp(ts.tv_sec, static_cast<uint32_t>(ts.tv_nsec));
}

Result<std::string> ReadLinkTarget(int dir_fd, const std::string& name, off_t size_hint) {
  // st_size of a symlink is its target's length on most file systems (0 on some, e.g. /proc).
  size_t cap = size_hint > 0 ? static_cast<size_t>(size_hint) + 1 : 256;
  for (;;) {
    std::string buf(cap, '\0');
    const ssize_t n = readlinkat(dir_fd, name.c_str(), buf.data(), buf.size());
    if (n < 0) return Status::FromErrno(errno, "readlink", name);
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    if (cap >= (1u << 20)) return Status::FromErrno(ENAMETOOLONG, "readlink", name);
    cap *= 2;  // the target grew since lstat
  }
}

// Runs an xattr call that fills a buffer (llistxattr, lgetxattr) into `buf`, growing it to the
// size the kernel reports on ERANGE (the value may grow between calls). Kernel limit: 64 KiB.
// Returns the length, or -1 with errno set. `buf` starts small: the kernel allocates as much as
// it is offered on every call.
template <typename Call>
ssize_t ReadXattrBuffer(const Call& call, std::vector<char>& buf) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    const ssize_t n = call(buf.data(), buf.size());
    if (n >= 0 || errno != ERANGE) return n;
    const ssize_t want = call(nullptr, 0);
    if (want < 0) return want;
    buf.resize(std::max(buf.size() * 2, static_cast<size_t>(want)));
  }
  errno = ERANGE;
  return -1;
}

bool XattrUnsupported(int err) { return err == ENOTSUP || err == EOPNOTSUPP; }

// listxattrat(2) (Linux 6.13): the list of `name` in `dir_fd` without a path walk through
// /proc/self/fd. Most files have no xattrs, so on a no-change backup this one call per entry is
// a third of the walker's time when it goes through /proc (two extra lookups and a magic link).
// -1 with errno ENOSYS when the kernel (or a seccomp filter: EPERM) does not offer it; the first
// successful answer is cross-checked against llistxattr once, so a kernel that numbers it
// differently can never feed us another call's result.
constexpr long kSysListxattrat = 465;  // x86_64 and the generic table alike
std::atomic<int> listxattrat_state{0};  // 0 untested, 1 works, -1 unavailable

ssize_t ListXattrsAt(int dir_fd, const std::string& name, const ProcPath& path, char* buf, size_t cap) {
  const int state = listxattrat_state.load(std::memory_order_relaxed);
  if (state >= 0) {
    const long n = syscall(kSysListxattrat, dir_fd, name.c_str(), AT_SYMLINK_NOFOLLOW, buf, cap);
    if (n >= 0 && state == 1) return n;
    if (n >= 0 || (errno != ENOSYS && errno != EPERM && errno != EINVAL)) {
      if (state == 1) return n;  // a real error of the entry (ENOENT, ERANGE, ...)
      // First answer: must agree with the /proc path, else never use the syscall.
      const int saved = errno;
      std::vector<char> check(std::max<size_t>(cap, 1));
      const ssize_t m = llistxattr(path.c_str(), cap ? check.data() : nullptr, cap);
      const bool same = n >= 0 ? (m == n && (n == 0 || cap == 0 || std::memcmp(check.data(), buf, size_t(n)) == 0))
                               : (m < 0 && errno == saved);
      listxattrat_state.store(same ? 1 : -1, std::memory_order_relaxed);
      if (same) {
        errno = saved;
        return n;
      }
    } else {
      listxattrat_state.store(-1, std::memory_order_relaxed);
    }
  }
  return llistxattr(path.c_str(), buf, cap);
}

// restic 0.14 fillExtendedAttributes: every attribute listxattr names, in its order.
Status ReadXattrs(int dir_fd, const std::string& name, std::vector<repo::ExtendedAttribute>& out) {
  const ProcPath path(dir_fd, name);
  std::vector<char> list(512);
  const ssize_t list_len = ReadXattrBuffer(
      [&](char* b, size_t n) { return ListXattrsAt(dir_fd, name, path, b, n); }, list);
  if (list_len < 0) {
    if (XattrUnsupported(errno)) return Status::Ok();
    return ProcErrno(errno, "listxattr", name);
  }
  if (list_len == 0) return Status::Ok();
  std::vector<char> value(512);
  for (size_t pos = 0; pos < static_cast<size_t>(list_len);) {
    const char* attr = list.data() + pos;
    const size_t attr_len = strnlen(attr, static_cast<size_t>(list_len) - pos);
    pos += attr_len + 1;
    if (attr_len == 0) continue;
    const std::string attr_name(attr, attr_len);
    const ssize_t n = ReadXattrBuffer(
        [&](char* b, size_t cap) { return lgetxattr(path.c_str(), attr_name.c_str(), b, cap); },
        value);
    if (n < 0) {
      if (errno == ENODATA || XattrUnsupported(errno)) continue;  // removed meanwhile
      return ProcErrno(errno, "getxattr " + attr_name, name);
    }
    out.push_back({attr_name, Bytes(value.begin(), value.begin() + n)});
  }
  return Status::Ok();
}

mode_t StatTypeBits(NodeType t) {
  switch (t) {
    case NodeType::kFile:
      return S_IFREG;
    case NodeType::kDir:
      return S_IFDIR;
    case NodeType::kSymlink:
      return S_IFLNK;
    case NodeType::kDev:
      return S_IFBLK;
    case NodeType::kCharDev:
      return S_IFCHR;
    case NodeType::kFifo:
      return S_IFIFO;
    case NodeType::kSocket:
      return S_IFSOCK;
  }
  return 0;
}

std::string_view StatTypeName(mode_t st_mode) {
  const std::optional<NodeType> t = TypeFromStat(st_mode);
  return t ? repo::NodeTypeName(*t) : std::string_view("unknown type");
}

// Opens each directory of the relative path `path` (all components but the last) below `dir_fd`
// with O_NOFOLLOW, so neither a symlink nor ".." can lead out. Returns the parent's fd (invalid
// when `path` has one component: use dir_fd) and the last component in `*base`.
Result<Fd> OpenParentBeneath(int dir_fd, std::string_view path, std::string_view* base) {
  // Every component is checked before anything is opened, so a bad path fails the same way
  // whatever exists on disk.
  for (std::string_view rest = path;;) {
    const size_t slash = rest.find('/');
    if (Status s = CheckName(rest.substr(0, slash)); !s.ok()) {
      return s.WithContext("path " + std::string(path));
    }
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  Fd parent;
  for (;;) {
    const size_t slash = path.find('/');
    const std::string_view component = path.substr(0, slash);
    if (slash == std::string_view::npos) {
      *base = component;
      return parent;
    }
    const std::string c(component);
    const int at = parent.valid() ? parent.get() : dir_fd;
    Fd next(openat(at, c.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) return Status::FromErrno(errno, "open directory", c);
    parent = std::move(next);
    path.remove_prefix(slash + 1);
  }
}

// Keeps the first failure of a sequence of steps that all run.
void KeepFirst(Status& first, Status s) {
  if (first.ok() && !s.ok()) first = std::move(s);
}

}  // namespace

Result<std::optional<Node>> NodeFromStat(int dir_fd, std::string_view name, const struct stat& st,
                                         const MetaOptions& opts) {
  FSB_RETURN_IF_ERROR(CheckName(name));
  const std::optional<NodeType> type = TypeFromStat(st.st_mode);
  if (!type) {
    return Status::InvalidArgument("lstat " + std::string(name) + ": unknown file type " +
                                   std::to_string(st.st_mode & S_IFMT));
  }
  if (*type == NodeType::kSocket) return std::optional<Node>();  // restic skips sockets

  Node node;
  node.name = std::string(name);
  node.type = *type;
  node.mode = repo::GoModeFromStat(st.st_mode);
  node.mtime = ToTimestamp(st.st_mtim);
  node.atime = opts.with_atime ? ToTimestamp(st.st_atim) : node.mtime;
  node.ctime = ToTimestamp(st.st_ctim);
  node.uid = st.st_uid;
  node.gid = st.st_gid;
  node.user = UserNames().Get(st.st_uid);
  node.group = GroupNames().Get(st.st_gid);
  node.inode = st.st_ino;
  node.device_id = st.st_dev;

  switch (*type) {
    case NodeType::kFile:
      node.size = static_cast<uint64_t>(st.st_size);
      node.links = st.st_nlink;
      break;
    case NodeType::kSymlink: {
      node.links = st.st_nlink;
      FSB_ASSIGN_OR_RETURN(node.linktarget, ReadLinkTarget(dir_fd, node.name, st.st_size));
      break;
    }
    case NodeType::kDev:
    case NodeType::kCharDev:
      node.links = st.st_nlink;
      node.device = st.st_rdev;
      break;
    case NodeType::kDir:
    case NodeType::kFifo:
    case NodeType::kSocket:
      break;
  }
  // restic reads no xattrs of symlinks (an l*xattr call would get the link's own, if any).
  if (*type != NodeType::kSymlink) {
    FSB_RETURN_IF_ERROR(ReadXattrs(dir_fd, node.name, node.xattrs));
  }
  return std::optional<Node>(std::move(node));
}

Status CreateSpecial(int dir_fd, const Node& n) {
  FSB_RETURN_IF_ERROR(CheckName(n.name));
  int rc = 0;
  const char* op = "";
  switch (n.type) {
    case NodeType::kSymlink:
      if (n.linktarget.find('\0') != std::string::npos) {
        return Status::InvalidArgument("symlink " + n.name + ": target contains NUL");
      }
      op = "symlink";
      rc = symlinkat(n.linktarget.c_str(), dir_fd, n.name.c_str());
      break;
    case NodeType::kFifo:
      op = "mkfifo";
      rc = mkfifoat(dir_fd, n.name.c_str(), 0600);
      break;
    case NodeType::kDev:
    case NodeType::kCharDev:
      op = "mknod";
      rc = mknodat(dir_fd, n.name.c_str(), StatTypeBits(n.type) | 0600,
                   static_cast<dev_t>(n.device));
      break;
    case NodeType::kSocket:
      return Status::Ok();  // restic restores no sockets either
    case NodeType::kFile:
    case NodeType::kDir:
      return Status::InvalidArgument("create special " + n.name + ": type " +
                                     std::string(repo::NodeTypeName(n.type)) +
                                     " is not a special file");
  }
  if (rc != 0) return Status::FromErrno(errno, op, n.name);
  return Status::Ok();
}

// The steps ApplyMetadata and ApplyMetadataToFd share; each takes the system call that reaches
// the entry its own way.

// restic (like cp -a and rsync -a) reports a denied chown only when running as root.
void KeepChownError(Status& first, int err, const std::string& name) {
  if (!((err == EPERM || err == EACCES) && geteuid() != 0)) {
    KeepFirst(first, Status::FromErrno(err, "chown", name));
  }
}

// Sets n.xattrs one by one with `set(name, value, size)` (0 or -1 with errno); ENOTSUP is ignored,
// as restic does; `error(errno, op)` makes the status of any other failure.
template <typename Set, typename Error>
void SetXattrs(const Node& n, Status& first, const Set& set, const Error& error) {
  for (const repo::ExtendedAttribute& x : n.xattrs) {
    if (x.name.find('\0') != std::string::npos) {
      KeepFirst(first, Status::InvalidArgument("setxattr " + n.name + ": name contains NUL"));
      continue;
    }
    if (set(x.name.c_str(), x.value.data(), x.value.size()) != 0) {
      const int err = errno;
      if (XattrUnsupported(err)) continue;
      KeepFirst(first, error(err, "setxattr " + x.name));
    }
  }
}

// atime and mtime of `n` as utimensat/futimens take them.
std::array<struct timespec, 2> NodeTimes(const Node& n) {
  return {{{static_cast<time_t>(n.atime.sec), static_cast<long>(n.atime.nsec)},
           {static_cast<time_t>(n.mtime.sec), static_cast<long>(n.mtime.nsec)}}};
}

Status ApplyMetadata(int dir_fd, const Node& n, const RestoreMetaOptions& opts) {
  FSB_RETURN_IF_ERROR(CheckName(n.name));
  if (n.type == NodeType::kSocket) return Status::Ok();

  // One O_PATH handle for every step: all act on the inode checked here, never on a symlink's
  // target. (O_PATH opens no device or fifo, so it has no side effects and never blocks.)
  const Fd fd(openat(dir_fd, n.name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open", n.name);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "fstat", n.name);
  if ((st.st_mode & S_IFMT) != StatTypeBits(n.type)) {
    return Status::FailedPrecondition("restore metadata " + n.name + ": found " +
                                      std::string(StatTypeName(st.st_mode)) + ", node is " +
                                      std::string(repo::NodeTypeName(n.type)));
  }
  const bool is_symlink = n.type == NodeType::kSymlink;
  const ProcPath self(fd.get(), "");
  Status first;

  // 1. Owner. A symlink fd with AT_EMPTY_PATH changes the link itself, like lchown.
  if (opts.restore_owner && (st.st_uid != n.uid || st.st_gid != n.gid)) {
    if (fchownat(fd.get(), "", n.uid, n.gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
      KeepChownError(first, errno, n.name);
    }
  }

  if (!is_symlink) {
    // 2. Extended attributes, after the chown (which drops security.capability).
    SetXattrs(
        n, first,
        [&](const char* name, const void* value, size_t size) {
          return setxattr(self.c_str(), name, value, size, 0);
        },
        [&](int err, const std::string& op) { return ProcErrno(err, op, n.name); });
    // 3. Mode, after the chown, which clears setuid/setgid. fchmod refuses O_PATH fds; the
    // /proc link reaches the same inode (it is what glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does).
    const mode_t mode = repo::StatModeFromGo(n.mode) & 07777;
    if (fchmodat(AT_FDCWD, self.c_str(), mode, 0) != 0) {
      KeepFirst(first, ProcErrno(errno, "chmod", n.name));
    }
  }

  // 4. Times, last: the steps above may have touched the entry.
  const std::array<struct timespec, 2> t = NodeTimes(n);
  const struct timespec* times = t.data();
  // A symlink's /proc link cannot be followed to the link itself, so a symlink is named again,
  // without following: at worst that reaches another entry of dir_fd, never anything outside.
  const int rc = is_symlink ? utimensat(dir_fd, n.name.c_str(), times, AT_SYMLINK_NOFOLLOW)
                            : utimensat(AT_FDCWD, self.c_str(), times, 0);
  if (rc != 0) KeepFirst(first, ProcErrno(errno, "utimensat", n.name));
  return first;
}

Status ApplyMetadataToFd(int fd, const Node& n, const RestoreMetaOptions& opts,
                         std::optional<FileOwner> owner, bool mode_is_set) {
  if (n.type != NodeType::kFile && n.type != NodeType::kDir) {
    return Status::InvalidArgument("restore metadata " + n.name + ": type " +
                                   std::string(repo::NodeTypeName(n.type)) + " has no writable fd");
  }
  Status first;
  // 1. Owner. Restoring a tree as root, nearly every entry is owned by root: the fstat and the
  // chown are both skipped when the caller knows the owner already matches.
  if (opts.restore_owner) {
    if (!owner) {
      struct stat st;
      if (fstat(fd, &st) != 0) return Status::FromErrno(errno, "fstat", n.name);
      owner = FileOwner{st.st_uid, st.st_gid};
    }
    if (owner->uid != n.uid || owner->gid != n.gid) {
      if (fchown(fd, n.uid, n.gid) != 0) KeepChownError(first, errno, n.name);
    }
  }
  // 2. Extended attributes, after the chown (which drops security.capability).
  SetXattrs(
      n, first,
      [&](const char* name, const void* value, size_t size) { return fsetxattr(fd, name, value, size, 0); },
      [&](int err, const std::string& op) { return Status::FromErrno(err, op, n.name); });
  // 3. Mode, after the chown (which clears setuid/setgid) and the xattrs (see ApplyMetadata).
  if (!mode_is_set && fchmod(fd, repo::StatModeFromGo(n.mode) & 07777) != 0) {
    KeepFirst(first, Status::FromErrno(errno, "chmod", n.name));
  }
  // 4. Times, last: the steps above change ctime only, but writes through other fds of the
  // file must be over by now (the caller's job).
  if (futimens(fd, NodeTimes(n).data()) != 0) KeepFirst(first, Status::FromErrno(errno, "utimensat", n.name));
  return first;
}

Status CreateHardLink(int dir_fd_target, std::string_view name, int dir_fd_existing,
                      std::string_view existing_name) {
  FSB_RETURN_IF_ERROR(CheckName(name));
  std::string_view existing_base;
  FSB_ASSIGN_OR_RETURN(Fd parent,
                       OpenParentBeneath(dir_fd_existing, existing_name, &existing_base));
  const std::string from(existing_base);
  const std::string to(name);
  // flags 0: an existing symlink is linked itself, not its target.
  if (linkat(parent.valid() ? parent.get() : dir_fd_existing, from.c_str(), dir_fd_target,
             to.c_str(), 0) != 0) {
    return Status::FromErrno(errno, "link " + std::string(existing_name) + " to", to);
  }
  return Status::Ok();
}

}  // namespace fsb::uploader
