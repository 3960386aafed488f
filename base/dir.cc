#include "base/dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fsb {

Result<std::vector<DirEntry>> ReadDirectory(int dir_fd, std::string_view path) {
  const int dup_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return Status::FromErrno(errno, "opendir", path);
  DIR* d = fdopendir(dup_fd);
  if (d == nullptr) {
    const int err = errno;
    close(dup_fd);
    return Status::FromErrno(err, "opendir", path);
  }
  rewinddir(d);  // the duplicate shares the offset with dir_fd: start from the beginning
  std::vector<DirEntry> out;
  for (;;) {
    errno = 0;
    const dirent* e = readdir(d);
    if (e == nullptr) {
      const int err = errno;
      closedir(d);
      if (err != 0) return Status::FromErrno(err, "readdir", path);
      return out;
    }
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    out.push_back({e->d_name, e->d_type});
  }
}

}  // namespace fsb
