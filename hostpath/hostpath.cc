#include "hostpath/hostpath.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "base/dir.h"
#include "hostpath/beneath.h"
#include "hostpath/internal/beneath.h"

namespace fsb::hostpath {
namespace {

// NAME_MAX on every Linux file system kubelet uses.
constexpr size_t kMaxComponent = 255;

bool UidChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

// Volume names are DNS labels and PV names DNS subdomains; '~' because kubelet's escaped plugin
// names use it, and a caller may one day pass one.
bool VolumeChar(char c) { return UidChar(c) || c == '~'; }

bool ValidComponent(std::string_view s, bool (*allowed)(char)) {
  return !s.empty() && s.size() <= kMaxComponent && s != "." && s != ".." &&
         std::all_of(s.begin(), s.end(), allowed);
}

bool ValidVolumeDir(std::string_view s) {
  const size_t slash = s.find('/');
  if (slash == std::string_view::npos) return ValidComponent(s, VolumeChar);
  return ValidComponent(s.substr(0, slash), VolumeChar) &&
         ValidComponent(s.substr(slash + 1), VolumeChar);  // a second '/' fails VolumeChar
}

// `s` in double quotes, with quotes, backslashes and bytes outside printable ASCII escaped, so a
// hostile name cannot forge a line in a log or a message.
std::string Quoted(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u > 0x7e) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

// The opening of every ResolvePodVolume error.
std::string Context(const VolumeQuery& q, bool uid_valid) {
  std::string c =
      q.description.empty() ? fmt::format("volume {} of pod", Quoted(q.volume_dir)) : q.description;
  if (uid_valid) c += fmt::format(" (uid {})", q.pod_uid);
  return c;
}

// A directory on the way to the volume (the pod's, volumes/) that could not be opened.
Status DirError(const std::string& ctx, const std::string& rel, const Root& root, int err) {
  switch (err) {
    case ELOOP:
      return Status::InvalidArgument(
          fmt::format("{}: {} under {} is a symlink: refused", ctx, rel, root.path));
    case ENOTDIR:
      return Status::InvalidArgument(
          fmt::format("{}: {} under {} is not a directory", ctx, rel, root.path));
    default:
      return Status::FromErrno(err, "open", rel + " under " + root.path).WithContext(ctx);
  }
}

Status CheckIsDirectory(int fd, const std::string& rel, const std::string& root_path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "fstat", rel + " under " + root_path);
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(fmt::format("{} under {} is not a directory", rel, root_path));
  }
  return Status::Ok();
}

// A directory under volumes/*/ that matched volume_dir, or something there that cannot be used.
struct Candidate {
  std::string plugin;
  std::string rel;                // below the root
  Fd dir{};                       // valid when usable
  const char* problem = nullptr;  // why not, otherwise
};

// The components of an absolute path, "." and empty ones dropped. Empty result: "/" itself.
Result<std::vector<std::string>> SplitAbsolute(std::string_view path, std::string_view what) {
  if (path.empty() || path.front() != '/') {
    return Status::InvalidArgument(fmt::format("{} {}: not absolute", what, Quoted(path)));
  }
  if (path.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument(fmt::format("{} {}: contains a NUL byte", what, Quoted(path)));
  }
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view part = path.substr(start, end - start);
    if (part == "..") {
      return Status::InvalidArgument(
          fmt::format("{} {}: contains a \"..\" component", what, Quoted(path)));
    }
    if (!part.empty() && part != ".") parts.emplace_back(part);
    start = end + 1;
  }
  return parts;
}

}  // namespace

Result<Root> OpenRoot(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open root", path);
  Root root{Fd(fd), path};
  FSB_RETURN_IF_ERROR(CheckIsDirectory(root.fd.get(), ".", path));
  return root;
}

Result<ResolvedVolume> ResolvePodVolume(const Root& root, const VolumeQuery& q) {
  const bool uid_valid = ValidComponent(q.pod_uid, UidChar);
  const std::string ctx = Context(q, uid_valid);
  if (!uid_valid) {
    return Status::InvalidArgument(fmt::format(
        "{}: invalid pod uid {}: want one path component of [A-Za-z0-9._-], not \".\" or \"..\"",
        ctx, Quoted(q.pod_uid)));
  }
  if (!ValidVolumeDir(q.volume_dir)) {
    return Status::InvalidArgument(
        fmt::format("{}: invalid volume directory {}: want one or two path components of "
                    "[A-Za-z0-9._~-], none \".\" or \"..\"",
                    ctx, Quoted(q.volume_dir)));
  }
  const std::string& uid = q.pod_uid;

  // kubelet's tree has no symlinks: every open below refuses them (Symlinks::kRefuse).
  int fd = internal::OpenBeneathRaw(root.fd.get(), uid, {.flags = O_PATH | O_DIRECTORY});
  if (fd == -ENOENT) {
    return Status::NotFound(fmt::format(
        "{}: pod has no directory {} under {} (not running on this node, or --host-pods does not "
        "point at the kubelet pods directory)",
        ctx, uid, root.path));
  }
  if (fd < 0) return DirError(ctx, uid, root, -fd);
  const Fd pod_dir(fd);

  const std::string kind = q.block ? "volumeDevices" : "volumes";
  const std::string volumes_rel = uid + "/" + kind;
  fd = internal::OpenBeneathRaw(pod_dir.get(), kind, {});
  if (fd == -ENOENT) {
    return Status::NotFound(
        fmt::format("{}: no directory {} under {}: {}", ctx, volumes_rel, root.path,
                    q.block ? "no block volume of the pod is mapped on this node"
                            : "no volume of the pod is mounted on this node"));
  }
  if (fd < 0) return DirError(ctx, volumes_rel, root, -fd);
  const Fd volumes(fd);

  // The glob over plugin directories, as a listing of volumes/ through its fd.
  Result<std::vector<DirEntry>> listed =
      ReadDirectory(volumes.get(), volumes_rel + " under " + root.path);
  if (!listed.ok()) return listed.status().WithContext(ctx);
  std::vector<DirEntry> entries = std::move(listed).value();
  std::sort(entries.begin(), entries.end(),
            [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });

  std::vector<Candidate> found;
  std::vector<std::string> skipped;  // symlinked plugin directories
  for (const DirEntry& e : entries) {
    const std::string plugin_rel = volumes_rel + "/" + e.name;
    uint8_t type = e.type;
    if (type == DT_UNKNOWN) {  // file systems without d_type (some XFS, overlay cases)
      struct stat st {};
      if (::fstatat(volumes.get(), e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // gone since the listing
        return Status::FromErrno(errno, "stat", plugin_rel + " under " + root.path)
            .WithContext(ctx);
      }
      type = S_ISLNK(st.st_mode) ? DT_LNK : S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
    }
    if (type == DT_LNK) {
      skipped.push_back(plugin_rel);
      continue;
    }
    if (type != DT_DIR) continue;
    Candidate c{.plugin = e.name, .rel = plugin_rel + "/" + q.volume_dir};
    fd = internal::OpenBeneathRaw(volumes.get(), e.name + "/" + q.volume_dir, {});
    if (fd == -ENOENT) continue;
    if (fd >= 0) {
      c.dir.Reset(fd);
    } else if (fd == -ELOOP) {
      c.problem = "a symlink on the path: refused";
    } else if (fd == -ENOTDIR) {
      c.problem = "not a directory";
    } else {
      return Status::FromErrno(-fd, "open", c.rel + " under " + root.path).WithContext(ctx);
    }
    found.push_back(std::move(c));
  }

  const std::string pattern = fmt::format("{}/*/{}", volumes_rel, q.volume_dir);
  if (found.empty()) {
    std::string msg = fmt::format(
        "{}: no directory {} under {}: the {} is declared but not {} on this node", ctx, pattern,
        root.path, q.block ? "block volume" : "volume", q.block ? "mapped" : "mounted");
    if (!skipped.empty()) msg += "; skipped symlinked plugin directories: " + Join(skipped, ", ");
    return Status::NotFound(std::move(msg));
  }
  if (found.size() > 1) {
    std::vector<std::string> names;
    for (const Candidate& c : found) {
      names.push_back(c.problem ? fmt::format("{} ({})", c.rel, c.problem) : c.rel);
    }
    return Status::InvalidArgument(fmt::format("{}: {} directories match {} under {}, want one: {}",
                                               ctx, found.size(), pattern, root.path,
                                               Join(names, ", ")));
  }
  Candidate& c = found.front();
  if (c.problem) {
    return Status::InvalidArgument(
        fmt::format("{}: {} under {}: {}", ctx, c.rel, root.path, c.problem));
  }
  FSB_RETURN_IF_ERROR(CheckIsDirectory(c.dir.get(), c.rel, root.path).WithContext(ctx));
  return ResolvedVolume{std::move(c.dir), std::move(c.rel), std::move(c.plugin)};
}

Result<ResolvedVolume> ResolveHostPath(const Root& host_root, std::string_view host_path,
                                       std::string_view root_on_host) {
  FSB_ASSIGN_OR_RETURN(const std::vector<std::string> root_parts,
                       SplitAbsolute(root_on_host, "host root"));
  FSB_ASSIGN_OR_RETURN(const std::vector<std::string> parts, SplitAbsolute(host_path, "host path"));
  const std::string ctx = fmt::format("host path {}", Quoted(host_path));
  const std::string root_name = "/" + Join(root_parts, "/");
  const std::string where = fmt::format("{} (the host's {})", host_root.path, root_name);
  if (parts.size() < root_parts.size() ||
      !std::equal(root_parts.begin(), root_parts.end(), parts.begin())) {
    return Status::InvalidArgument(
        fmt::format("{}: not below {}, the host directory at {}", ctx, root_name, host_root.path));
  }
  if (parts.size() == root_parts.size()) {
    return Status::InvalidArgument(
        fmt::format("{}: is the host root {} itself: refused", ctx, where));
  }
  const std::vector<std::string> below(parts.begin() + static_cast<ptrdiff_t>(root_parts.size()),
                                       parts.end());
  const std::string rel = Join(below, "/");
  // With the host's "/" as the root, symlinks mean on the host what they say: RESOLVE_IN_ROOT.
  // Below a narrower root an absolute target has no place: RESOLVE_BENEATH refuses it.
  const Symlinks mode = root_parts.empty() ? Symlinks::kFollowInRoot : Symlinks::kFollowBeneath;
  const int fd = internal::OpenBeneathRaw(host_root.fd.get(), rel, {.symlinks = mode});
  switch (fd >= 0 ? 0 : -fd) {
    case 0:
      break;
    case ENOENT:
      return Status::NotFound(
          fmt::format("{}: not found under {}: it does not exist on this node", ctx, where));
    case EXDEV:
      return Status::InvalidArgument(
          fmt::format("{}: a symlink or \"..\" on the way leads out of {}: refused", ctx, where));
    case ELOOP:
      return Status::InvalidArgument(fmt::format("{}: more than 40 symlinks under {}", ctx, where));
    case ENOTDIR:
      return Status::InvalidArgument(fmt::format(
          "{}: under {}: it, or a component on the way, is not a directory", ctx, where));
    default:
      return Status::FromErrno(-fd, "open", rel + " under " + host_root.path).WithContext(ctx);
  }
  Fd dir(fd);
  FSB_RETURN_IF_ERROR(CheckIsDirectory(dir.get(), rel, host_root.path).WithContext(ctx));
  return ResolvedVolume{std::move(dir), rel, ""};
}

Result<std::vector<std::string>> MissingPodDirs(const Root& root,
                                                const std::vector<std::string>& pod_uids) {
  std::vector<std::string> missing;
  for (const std::string& uid : pod_uids) {
    if (!ValidComponent(uid, UidChar)) {
      return Status::InvalidArgument(fmt::format(
          "check pod directories under {}: invalid pod uid {}", root.path, Quoted(uid)));
    }
    struct stat st {};
    if (::fstatat(root.fd.get(), uid.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        missing.push_back(uid);
        continue;
      }
      return Status::FromErrno(errno, "stat", uid + " under " + root.path);
    }
    if (!S_ISDIR(st.st_mode)) missing.push_back(uid);
  }
  return missing;
}

Result<bool> IsMountPoint(int dir_fd) {
  struct statx stx {};
  if (::statx(dir_fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, 0, &stx) == 0) {
    if ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0) {
      return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    }
  } else if (errno != ENOSYS) {
    return Status::FromErrno(errno, "statx", "volume directory");
  }
  struct stat self {};
  struct stat parent {};
  if (::fstat(dir_fd, &self) != 0) return Status::FromErrno(errno, "fstat", "volume directory");
  if (::fstatat(dir_fd, "..", &parent, AT_SYMLINK_NOFOLLOW) != 0) {
    return Status::FromErrno(errno, "stat", "volume directory/..");
  }
  // ".." of a namespace's "/" is itself, and "/" is a mount root.
  return self.st_dev != parent.st_dev || self.st_ino == parent.st_ino;
}

}  // namespace fsb::hostpath
