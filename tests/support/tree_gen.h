// tests/support/tree_gen.h: deterministic source trees for backup/restore tests. One thread at a
// time per destination directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace fsb::testing {

// Builds, under `dir` (created if missing; must be empty), a tree exercising everything restic
// stores. Contents and mtimes depend only on `seed`; inode numbers and ctimes do not.
//
//   hello.txt, notes/*.txt            small text files
//   empty                             0 bytes
//   random.bin                        5 MiB of seeded random bytes (several chunks)
//   sparse.bin                        3 MiB of zeros with a hole in the middle
//   hardlink-1, hardlink-2            two names of one inode
//   link-relative -> hello.txt, link-dangling -> ../does/not/exist,
//   link-absolute -> /nonexistent/fsb/absolute/target
//   special/fifo                      a FIFO
//   special/chardev-1-3, special/blockdev-7-0   (root only)
//   xattr.txt                         user.fsb.text=hello, user.fsb.binary=00 01 fe ff
//                                     (skipped when the file system refuses user xattrs)
//   modes/m0644 m0600 m0444 m4755 m2755 and (root only: nobody else can read it) m0000 (files),
//   modes/sticky (01777 dir),
//   modes/private (0700 dir holding one file)
//   deep/l1/l2/l3/l4/l5/leaf.txt      nested 5 levels below deep/
//   names/quote"and\back, names/tab<TAB>name, names/html<&>, names/café-日本,
//   names/latin1-<0xE9> (not UTF-8), names/-leading-dash
//   owned/, owned/file, owned/link    uid 1234 gid 5678 (root only)
// Every entry, `dir` included, gets a distinct mtime with nanoseconds (atime = mtime); directories
// are timed last, deepest first, so their mtimes stick. Throws std::runtime_error on failure.
void MakeRichTree(const std::filesystem::path& dir, uint64_t seed);

// `n` small files (1-4 KiB of seeded bytes) spread over subdirectories of at most 100 files each,
// with deterministic mtimes. `dir` is created if missing.
void MakeManySmallFiles(const std::filesystem::path& dir, size_t n, uint64_t seed);

// Whether MakeRichTree could set user xattrs under `dir` (false on file systems without them).
bool UserXattrsSupported(const std::filesystem::path& dir);

}  // namespace fsb::testing
