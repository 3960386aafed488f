// hostpath/beneath.h: opening a path below a directory fd without leaving it. openat2(2) with
// RESOLVE_BENEATH or RESOLVE_IN_ROOT, always with RESOLVE_NO_MAGICLINKS; where openat2 is missing
// (kernels before 5.6) or denied (seccomp profiles that answer EPERM to syscalls they do not know),
// a component-by-component walk with openat(O_PATH | O_NOFOLLOW) that gives the same answers, after
// one warning on the "hostpath" logger. Safe for concurrent use.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <string_view>

#include "base/fd.h"
#include "base/status.h"

namespace fsb::hostpath {

// What a symlink met on the way does.
enum class Symlinks {
  // Refused anywhere on the path (RESOLVE_NO_SYMLINKS), the last component too unless the flags
  // hold O_PATH | O_NOFOLLOW. The kubelet pods tree has none, so one there was planted.
  kRefuse,
  // Followed while resolution stays below the directory (RESOLVE_BENEATH); an absolute target, or a
  // ".." that would climb above the directory, is refused.
  kFollowBeneath,
  // The directory acts as "/" (RESOLVE_IN_ROOT), as in a chroot: an absolute target starts again
  // at the directory and ".." at the directory stays there. For a directory that is a host's "/".
  kFollowInRoot,
};

struct OpenOptions {
  // open(2) flags; O_CLOEXEC is always added. The default is what the uploader reads through with
  // openat. O_PATH is allowed; O_NOFOLLOW leaves a symlink in the last component unfollowed.
  int flags = O_RDONLY | O_DIRECTORY;
  // Permission bits for O_CREAT and O_TMPFILE, ignored otherwise.
  mode_t mode = 0;
  // Refusing is the default so that following symlinks is a decision a caller writes down.
  Symlinks symlinks = Symlinks::kRefuse;
};

// Opens `rel_path` below the directory `dir_fd` (borrowed, for the call only; O_PATH is fine).
// "." and ".." components are allowed while resolution stays below dir_fd; an empty `rel_path` or
// "." opens dir_fd's directory again with `options.flags`. An absolute `rel_path` is refused unless
// options.symlinks is kFollowInRoot, where it starts at dir_fd. Mount points are crossed (a CSI
// volume is one). Errors name `rel_path`:
//   kInvalidArgument: a symlink where refused, resolution leaving dir_fd, more than 40 symlinks,
//                     a non-directory where a directory is needed (ENOTDIR), bad flags
//   kNotFound: a component is missing      kPermissionDenied: EACCES, EPERM
//   kUnavailable: openat2 kept answering EAGAIN (renames racing with a ".." lookup)
// Blocks as openat does.
Result<Fd> OpenBeneath(int dir_fd, std::string_view rel_path, const OpenOptions& options = {});

}  // namespace fsb::hostpath
