#include "hostpath/beneath.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "base/log.h"
#include "hostpath/internal/beneath.h"

namespace fsb::hostpath {
namespace internal {
namespace {

// The kernel's MAXSYMLINKS: the walk gives up after as many symlinks as path resolution does.
constexpr int kMaxSymlinks = 40;
// openat2 answers EAGAIN when a rename or mount raced with a ".." lookup under RESOLVE_BENEATH or
// RESOLVE_IN_ROOT; the man page asks callers to retry. A few tries ride out a busy moment.
constexpr int kMaxEagainRetries = 16;

std::atomic<bool> g_force_fallback{false};
std::once_flag g_probe_once;
std::atomic<bool> g_openat2{true};  // false once openat2 answered ENOSYS (or EPERM to the probe)

// Switches every later call to the walk, with one warning per process.
void SwitchToWalk(int err) {
  if (!g_openat2.exchange(false)) return;
  GetLogger("hostpath")
      ->warn("openat2 unavailable, resolving paths component by component err=\"{}\"",
             std::strerror(err));
}

bool WantsMode(int flags) { return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE; }

long RawOpenat2(int dir_fd, const char* path, int flags, mode_t mode, uint64_t resolve) {
  open_how how{};
  how.flags = static_cast<uint64_t>(static_cast<unsigned>(flags | O_CLOEXEC));
  how.mode = WantsMode(flags) ? mode : 0;  // openat2 refuses a mode without O_CREAT / O_TMPFILE
  how.resolve = resolve;
  return syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
}

void Probe() {
  const long fd = RawOpenat2(AT_FDCWD, "/", O_PATH, 0, RESOLVE_NO_MAGICLINKS);
  if (fd >= 0) {
    ::close(static_cast<int>(fd));
    return;
  }
  const int err = errno;
  // EPERM is what seccomp profiles written before openat2 answer (older Docker defaults); for "/"
  // with O_PATH it cannot mean anything else. Other errors: let the real calls report them.
  if (err == ENOSYS || err == EPERM) SwitchToWalk(err);
}

int Openat2(int dir_fd, const char* path, const OpenOptions& o) {
  uint64_t resolve = RESOLVE_NO_MAGICLINKS;
  switch (o.symlinks) {
    case Symlinks::kRefuse:
      resolve |= RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
      break;
    case Symlinks::kFollowBeneath:
      resolve |= RESOLVE_BENEATH;
      break;
    case Symlinks::kFollowInRoot:
      resolve |= RESOLVE_IN_ROOT;
      break;
  }
  for (int eagain = 0;;) {
    const long fd = RawOpenat2(dir_fd, path, o.flags, o.mode, resolve);
    if (fd >= 0) return static_cast<int>(fd);
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN && ++eagain < kMaxEagainRetries) continue;
    return -err;
  }
}

int RetryOpenat(int dir_fd, const char* name, int flags, mode_t mode) {
  for (;;) {
    const int fd = ::openat(dir_fd, name, flags | O_CLOEXEC, mode);
    if (fd >= 0) return fd;
    if (errno != EINTR) return -errno;
  }
}

// Pushes the components of `path` onto the front of `todo`, in order; empty ones are dropped.
void PushFront(std::deque<std::string>& todo, std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  todo.insert(todo.begin(), parts.begin(), parts.end());
}

// The fallback: what openat2 would do, one component at a time. Every component is opened O_PATH |
// O_NOFOLLOW relative to the directory before it, so nothing is resolved by the kernel past one
// name; symlinks are read (readlinkat on the O_PATH fd, no window between stat and read) and their
// targets walked the same way; ".." pops the stack of directories this walk opened, so it can
// never climb above dir_fd. Every symlink on procfs counts as a magic link (/proc/<pid>/fd/...) and
// is refused: stricter than openat2, which still follows /proc/self. What it cannot see, unlike
// openat2, is a directory renamed out of dir_fd's tree while the walk holds it: that needs write
// access on both sides of the move (kubelet's tree is root's).
int Walk(int dir_fd, std::string_view rel_path, const OpenOptions& o) {
  const bool in_root = o.symlinks == Symlinks::kFollowInRoot;
  if (!rel_path.empty() && rel_path.front() == '/' && !in_root) return -EXDEV;
  // "x/" names a directory: a non-directory at the end is ENOTDIR, as in the kernel.
  const bool must_be_dir = !rel_path.empty() && rel_path.back() == '/';
  std::deque<std::string> todo;
  PushFront(todo, rel_path);
  std::vector<Fd> stack;  // O_PATH directories below dir_fd; back() is where the walk stands
  auto cur = [&] { return stack.empty() ? dir_fd : stack.back().get(); };
  int links = 0;
  std::string leaf;  // set when the last component is to be opened by name in cur()
  while (!todo.empty()) {
    std::string name = std::move(todo.front());
    todo.pop_front();
    const bool last = todo.empty();
    if (name == ".") continue;
    if (name == "..") {
      if (!stack.empty()) {
        stack.pop_back();
      } else if (!in_root) {
        return -EXDEV;
      }
      continue;
    }
    if (last &&
        ((o.flags & O_NOFOLLOW) != 0 || (o.flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))) {
      leaf = std::move(name);  // the caller asked for the symlink itself, or for a new file
      break;
    }
    const int fd = RetryOpenat(cur(), name.c_str(), O_PATH | O_NOFOLLOW, 0);
    if (fd < 0) {
      if (fd == -ENOENT && last && (o.flags & O_CREAT) != 0) {
        leaf = std::move(name);
        break;
      }
      return fd;
    }
    Fd f(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) return -errno;
    if (S_ISLNK(st.st_mode)) {
      if (o.symlinks == Symlinks::kRefuse || ++links > kMaxSymlinks) return -ELOOP;
      struct statfs sfs {};
      if (::fstatfs(fd, &sfs) != 0) return -errno;
      if (sfs.f_type == PROC_SUPER_MAGIC) return -ELOOP;  // RESOLVE_NO_MAGICLINKS
      char target[PATH_MAX];
      const ssize_t n = ::readlinkat(fd, "", target, sizeof target);
      if (n < 0) return -errno;
      if (static_cast<size_t>(n) == sizeof target) return -ENAMETOOLONG;
      if (n == 0) return -ENOENT;
      const std::string_view t(target, static_cast<size_t>(n));
      if (t.front() == '/') {
        if (!in_root) return -EXDEV;
        stack.clear();
      }
      PushFront(todo, t);
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      stack.push_back(std::move(f));
      continue;
    }
    if (!last || must_be_dir) return -ENOTDIR;
    leaf = std::move(name);
  }
  if (!leaf.empty()) return RetryOpenat(cur(), leaf.c_str(), o.flags | O_NOFOLLOW, o.mode);
  // The walk ended on a directory it holds as O_PATH: "." reopens it with the caller's flags and
  // the usual permission checks.
  return RetryOpenat(cur(), ".", o.flags, o.mode);
}

}  // namespace

int OpenBeneathRaw(int dir_fd, std::string_view rel_path, const OpenOptions& options) {
  if (rel_path.find('\0') != std::string_view::npos) return -EINVAL;
  if (!g_force_fallback.load()) {
    std::call_once(g_probe_once, Probe);
    if (g_openat2.load()) {
      const std::string path = rel_path.empty() ? std::string(".") : std::string(rel_path);
      const int fd = Openat2(dir_fd, path.c_str(), options);
      if (fd != -ENOSYS) return fd;
      SwitchToWalk(ENOSYS);  // the probe passed but this call did not: a filter set up since
    }
  }
  return Walk(dir_fd, rel_path, options);
}

void ForceFallbackForTesting(bool force) { g_force_fallback.store(force); }

bool UsesOpenat2() {
  if (g_force_fallback.load()) return false;
  std::call_once(g_probe_once, Probe);
  return g_openat2.load();
}

}  // namespace internal

Result<Fd> OpenBeneath(int dir_fd, std::string_view rel_path, const OpenOptions& options) {
  if (rel_path.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("open: path contains a NUL byte");
  }
  const int fd = internal::OpenBeneathRaw(dir_fd, rel_path, options);
  if (fd >= 0) return Fd(fd);
  const std::string name(rel_path.empty() ? "." : rel_path);
  switch (-fd) {
    case ELOOP:
      if (options.symlinks == Symlinks::kRefuse) {
        return Status::InvalidArgument("open " + name + ": a symlink on the path: refused");
      }
      return Status::InvalidArgument("open " + name +
                                     ": more than 40 symlinks, or a final symlink with O_NOFOLLOW");
    case EXDEV:
      return Status::InvalidArgument("open " + name +
                                     ": resolution would leave the directory it must stay below");
    case EAGAIN:
      return Status::Unavailable("open " + name + ": renames kept racing with path resolution");
    default:
      return Status::FromErrno(-fd, "open", name);
  }
}

}  // namespace fsb::hostpath
