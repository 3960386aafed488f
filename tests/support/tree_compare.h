// tests/support/tree_compare.h: compares two directory trees entry by entry (lstat, never
// following symlinks) and describes every difference. Read-only; one thread at a time.
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <vector>

namespace fsb::testing {

struct CompareOptions {
  // The mode, owner, mtime and xattrs of `a` and `b` themselves. A snapshot of "." holds no node
  // for its root, so a restore target keeps its own metadata: tests of such snapshots turn it off.
  bool root_metadata = true;
  // Directory mtimes (restic restores them, children first).
  bool dir_mtimes = true;
  // uid/gid (only meaningful when the restore ran as root).
  bool owner = true;
  // user.* extended attributes.
  bool xattrs = true;
  // Entries sharing an inode in `a` must share one in `b`, and no others.
  bool hardlinks = true;
  // Paths relative to the roots ("special/socket") skipped with everything below them.
  std::set<std::string> ignore_paths;
};

// Every difference between `a` (expected) and `b` (actual) as one human-readable line, e.g.
// "mode of modes/m4755: a 04755, b 0755". Compared: the set of names, file type, permission bits
// (with setuid/setgid/sticky), uid/gid, size, content bytes, mtime (seconds and nanoseconds, for
// symlinks too), symlink targets, user.* xattrs, rdev of devices, hard-link structure. Empty when
// the trees match. Names with control or non-UTF-8 bytes are shown escaped (\t, \xE9).
std::vector<std::string> CompareTrees(const std::filesystem::path& a, const std::filesystem::path& b,
                                      const CompareOptions& options = {});

// The differences joined with newlines (for failure messages), at most `max_lines` of them.
std::string JoinDifferences(const std::vector<std::string>& diffs, size_t max_lines = 50);

}  // namespace fsb::testing
