// uploader/fs_meta.h: file metadata between the local file system and restic tree nodes.
// Backup fills a repo::Node from lstat as restic 0.14 does (restic-repo-format.md §9.2, §9.5);
// restore creates special files and hard links and applies owner, mode, xattrs and times.
//
// Every entry is named by one path component relative to an open directory fd (except the
// existing side of CreateHardLink, see there), and nothing here follows a symlink at that name:
// a symlink planted in a restore target is changed itself or refused, never its target.
// Extended attributes and modes go through /proc/self/fd, so /proc must be mounted.
//
// Safe for concurrent use: the functions share only the process-wide user/group name cache,
// which is locked.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string_view>

#include "base/status.h"
#include "repo/node.h"

namespace fsb::uploader {

struct MetaOptions {
  // restic --with-atime: store the real access time. Off (restic's default) stores mtime as
  // atime, so that merely reading a file does not change its node and the tree deduplicates.
  bool with_atime = false;
};

// The node restic 0.14 writes for the entry `name` in `dir_fd`, whose lstat result is `st`
// (callers stat with AT_SYMLINK_NOFOLLOW; the values are taken from `st` as given, so inode,
// device_id, ctime, mtime and size match lstat exactly, as parent-snapshot reuse requires).
//
// Per type (§9.2): all get name (raw bytes), type, mode (Go FileMode), mtime, atime (= mtime
// unless opts.with_atime), ctime (local time zone, nanoseconds), uid, gid, user and group names
// (looked up once per id and cached for the process; "" when unknown), inode and device_id.
// file: + size, links. symlink: + links, linktarget (raw readlink bytes). dev/chardev: + links,
// device (st_rdev). dir and fifo: nothing more. Extended attributes are read for every type but
// symlinks, in the order listxattr returns them (restic's order); a file system without xattr
// support (ENOTSUP), or an attribute removed while reading (ENODATA), is not an error.
// `content` and `subtree` are left empty for the caller to fill.
//
// Returns std::nullopt for a socket: restic 0.14 skips sockets silently, so the caller must
// leave the entry out of the tree without reporting it. Errors: kInvalidArgument if `name` is
// not a single path component or `st` has an unknown file type; the errno status of readlinkat,
// llistxattr or lgetxattr otherwise (e.g. kNotFound when the entry vanished meanwhile).
// Blocks on the file system and, on the first sight of a uid/gid, on NSS.
Result<std::optional<repo::Node>> NodeFromStat(int dir_fd, std::string_view name,
                                               const struct stat& st, const MetaOptions& opts);

struct RestoreMetaOptions {
  // chown to the node's uid/gid. As restic (and cp -a), a permission error is ignored when the
  // process is not root, since only root can give files away.
  bool restore_owner = true;
};

// Creates the special file `n.name` in `dir_fd`: a symlink to n.linktarget (symlinkat), a fifo
// (mkfifoat), or a block/char device with n.device (mknodat). Fifos and devices are created with
// mode 0600; ApplyMetadata sets the final mode. A socket node creates nothing and returns OK
// (restic does the same). kInvalidArgument for files and directories (the restore pipeline
// makes those), a bad name, or a link target containing NUL; kAlreadyExists if the name exists
// (nothing is replaced); kPermissionDenied for devices when not root.
Status CreateSpecial(int dir_fd, const repo::Node& n);

// Applies n's metadata to the existing entry `n.name` in `dir_fd`, in this order:
//   1. owner: uid/gid, if opts.restore_owner (see there);
//   2. extended attributes (not for symlinks): set one by one; attributes already on the entry
//      that the node lacks are kept, as restic does; ENOTSUP is ignored, as restic does;
//   3. mode (not for symlinks): permission bits plus setuid/setgid/sticky, after the chown
//      (which clears setuid/setgid) and after the xattrs (a non-root owner needs write
//      permission to set user.* attributes on a file that may be about to become read-only);
//   4. atime and mtime with nanoseconds, last, because the steps before may touch the entry.
// The entry is opened once with O_PATH|O_NOFOLLOW and every step acts on that inode, so a name
// that is (or becomes) a symlink is never followed. Every step runs even when an earlier one
// fails; the first failure is returned. kFailedPrecondition if the entry's type differs from
// n.type (e.g. a symlink where a file was restored), kNotFound if it does not exist,
// kInvalidArgument for a bad name. A socket node is a no-op (CreateSpecial made nothing).
//
// Directories: the caller must apply a directory's metadata only after all its children are
// restored, because creating children changes the directory's mtime and a restored mode such
// as 0500 could forbid creating them.
Status ApplyMetadata(int dir_fd, const repo::Node& n, const RestoreMetaOptions& opts);

// The owner an open file is known to have, so that ApplyMetadataToFd needs no fstat: the
// restore pipeline knows it for a file it has just created (its euid/egid, see restore.cc).
struct FileOwner {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

// ApplyMetadata for a regular file or directory the caller holds open itself (a writable fd of
// a file it created with O_NOFOLLOW, or a directory opened with O_DIRECTORY beneath the target),
// so no name is resolved again and no /proc path is needed: fchown, fsetxattr, fchmod, futimens.
// Same order, same steps and same error semantics as ApplyMetadata (every step runs, the first
// failure is returned; a denied chown is not reported when not root; ENOTSUP xattrs are
// ignored). Messages name n.name. `owner`: the fd's current uid/gid if the caller knows it;
// std::nullopt costs an fstat. The chown is skipped when the owner already matches.
// kInvalidArgument for any other node type (symlinks and special files have no such fd: use
// ApplyMetadata). The caller guarantees that `fd` is of n.type; it is borrowed for the call.
// `mode_is_set`: the caller created the file with its final mode (no special bits, no xattrs,
// not narrowed by the umask), so the fchmod is skipped.
Status ApplyMetadataToFd(int fd, const repo::Node& n, const RestoreMetaOptions& opts,
                         std::optional<FileOwner> owner, bool mode_is_set = false);

// Makes `name` in `dir_fd_target` a hard link to `existing_name` in `dir_fd_existing` (linkat;
// restic restores nodes with links > 1 and the same inode and device_id this way).
// `existing_name` may be a relative path ("dir/sub/file") below dir_fd_existing; it is resolved
// one component at a time without following symlinks and without "." or "..", and its last
// component is linked itself even if it is a symlink. `name` is a single component.
// kInvalidArgument for a bad name or path, kAlreadyExists if `name` exists, kNotFound if the
// existing entry does not, the errno status of openat or linkat otherwise (EXDEV: other fs).
Status CreateHardLink(int dir_fd_target, std::string_view name, int dir_fd_existing,
                      std::string_view existing_name);

}  // namespace fsb::uploader
