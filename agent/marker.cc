#include "agent/marker.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "base/dir.h"
#include "base/fd.h"

namespace fsb::agent {
namespace {

// Removes `name` below `dir_fd`: a directory recursively (entries opened with O_NOFOLLOW), anything
// else with unlinkat. Absent is fine.
Status RemoveTreeAt(int dir_fd, const std::string& name, const std::string& path, int depth) {
  if (depth > 64) return Status::InvalidArgument(path + ": too deep");
  struct stat st;
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno(errno, "stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    Fd sub(openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub.valid()) return Status::FromErrno(errno, "open", path);
    FSB_ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ReadDirectory(sub.get(), path));
    for (const DirEntry& e : entries) {
      FSB_RETURN_IF_ERROR(RemoveTreeAt(sub.get(), e.name, path + "/" + e.name, depth + 1));
    }
    if (unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return Status::FromErrno(errno, "rmdir", path);
    }
    return Status::Ok();
  }
  if (unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT)
    return Status::FromErrno(errno, "unlink", path);
  return Status::Ok();
}

}  // namespace

Status WriteRestoreMarker(int volume_fd, std::string_view restore_uid) {
  const std::string uid(restore_uid);
  if (uid.empty() || uid == "." || uid == ".." || uid.find('/') != std::string::npos ||
      uid.find('\0') != std::string::npos) {
    return Status::InvalidArgument(
        fmt::format("restore uid \"{}\" is not a valid file name", restore_uid));
  }
  FSB_RETURN_IF_ERROR(RemoveTreeAt(volume_fd, ".velero", ".velero", 0));
  if (mkdirat(volume_fd, ".velero", 0755) != 0) {
    return Status::FromErrno(errno, "error creating .velero directory for done file", ".velero");
  }
  Fd dir(openat(volume_fd, ".velero", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.valid()) return Status::FromErrno(errno, "open", ".velero");
  if (fchmod(dir.get(), 0755) != 0)
    return Status::FromErrno(errno, "chmod", ".velero");  // despite the umask
  Fd file(
      openat(dir.get(), uid.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!file.valid()) return Status::FromErrno(errno, "error writing done file", ".velero/" + uid);
  if (fchmod(file.get(), 0644) != 0) return Status::FromErrno(errno, "chmod", ".velero/" + uid);
  if (fsync(file.get()) != 0 || fsync(dir.get()) != 0)
    return Status::FromErrno(errno, "fsync", ".velero/" + uid);
  return Status::Ok();
}

}  // namespace fsb::agent
