#include "tests/support/tree_gen.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "tests/support/test_util.h"

namespace fsb::testing {
namespace fs = std::filesystem;
namespace {

[[noreturn]] void Fail(const std::string& what, const fs::path& p) {
  throw std::runtime_error(what + " " + p.string() + ": " + std::strerror(errno));
}

void WriteAll(int fd, const void* data, size_t n, const fs::path& p) {
  const char* c = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) Fail("write", p);
    c += w;
    n -= size_t(w);
  }
}

void WriteFile(const fs::path& p, const void* data, size_t n) {
  int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) Fail("create", p);
  WriteAll(fd, data, n, p);
  if (close(fd) != 0) Fail("close", p);
}

void WriteFile(const fs::path& p, std::string_view s) { WriteFile(p, s.data(), s.size()); }

void MakeDir(const fs::path& p) {
  if (mkdir(p.c_str(), 0755) != 0) Fail("mkdir", p);
}

// Seeded text: words picked by the random bytes, so every seed gives different (compressible)
// text.
std::string SeededText(uint64_t seed, size_t words) {
  static const char* kWords[] = {"alpha", "bravo",  "charlie", "delta", "echo",   "foxtrot",
                                 "golf",  "hotel",  "india",   "juliet", "kilo",  "lima",
                                 "mike",  "november", "oscar", "papa",  "quebec", "romeo"};
  Bytes r = SeededRandomBytes(seed, words);
  std::string out;
  for (size_t i = 0; i < words; i++) {
    out += kWords[r[i] % (sizeof kWords / sizeof kWords[0])];
    out += (i % 12 == 11) ? '\n' : ' ';
  }
  out += '\n';
  return out;
}

struct Timed {
  fs::path path;
  bool is_dir;
};

// Sets mtime = atime = base + i * 1.000000001 s + seed-derived nanoseconds, without following
// symlinks. Non-directories first, then directories deepest first (the root last).
void ApplyTimes(const fs::path& root, std::vector<Timed> entries, uint64_t seed) {
  std::stable_sort(entries.begin(), entries.end(), [](const Timed& a, const Timed& b) {
    if (a.is_dir != b.is_dir) return !a.is_dir;
    if (!a.is_dir) return false;
    auto depth = [](const fs::path& p) { return std::distance(p.begin(), p.end()); };
    return depth(a.path) > depth(b.path);
  });
  entries.push_back({root, true});
  const int64_t base = 1600000000 + int64_t(seed % 100000000);
  const int64_t base_nsec = int64_t((seed * 2654435761u) % 1000000000u) | 1;  // never 0
  for (size_t i = 0; i < entries.size(); i++) {
    int64_t ns = base_nsec + int64_t(i) * 1000000001LL;
    timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = base + ns / 1000000000LL;
    ts[0].tv_nsec = ts[1].tv_nsec = ns % 1000000000LL;
    if (utimensat(AT_FDCWD, entries[i].path.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
      Fail("utimensat", entries[i].path);
    }
  }
}

}  // namespace

bool UserXattrsSupported(const fs::path& dir) {
  fs::path probe = dir / ".fsb-xattr-probe";
  WriteFile(probe, "");
  bool ok = lsetxattr(probe.c_str(), "user.fsb.probe", "x", 1, 0) == 0;
  unlink(probe.c_str());
  return ok;
}

void MakeRichTree(const fs::path& dir, uint64_t seed) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) Fail("mkdir", dir);
  const bool root = geteuid() == 0;
  std::vector<Timed> timed;
  auto file = [&](const std::string& rel, std::string_view content) {
    WriteFile(dir / rel, content);
    timed.push_back({dir / rel, false});
  };
  auto subdir = [&](const std::string& rel) {
    MakeDir(dir / rel);
    timed.push_back({dir / rel, true});
  };
  auto other = [&](const std::string& rel) { timed.push_back({dir / rel, false}); };

  // Small text files and an empty one.
  file("hello.txt", "Hello, fsb and restic!\n" + SeededText(seed, 20));
  file("empty", "");
  subdir("notes");
  for (int i = 0; i < 5; i++) {
    file("notes/note-" + std::to_string(i) + ".txt", SeededText(seed + 100 + uint64_t(i), 50 + 40 * size_t(i)));
  }

  // 5 MiB of random bytes: several chunks at restic's 512 KiB..8 MiB (1 MiB average).
  {
    Bytes big = SeededRandomBytes(seed ^ 0x5eed5eedULL, 5u << 20);
    WriteFile(dir / "random.bin", big.data(), big.size());
    timed.push_back({dir / "random.bin", false});
  }

  // 3 MiB of zeros: 64 KiB written, then a hole, then the last 64 KiB written.
  {
    fs::path p = dir / "sparse.bin";
    int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) Fail("create", p);
    std::string zeros(64 << 10, '\0');
    WriteAll(fd, zeros.data(), zeros.size(), p);
    if (lseek(fd, (3 << 20) - off_t(zeros.size()), SEEK_SET) < 0) Fail("lseek", p);
    WriteAll(fd, zeros.data(), zeros.size(), p);
    if (close(fd) != 0) Fail("close", p);
    timed.push_back({p, false});
  }

  // Hard links: two names, one inode.
  file("hardlink-1", "one inode, two names\n" + SeededText(seed + 7, 10));
  if (link((dir / "hardlink-1").c_str(), (dir / "hardlink-2").c_str()) != 0) Fail("link", dir / "hardlink-2");

  // Symlinks.
  for (auto [name, target] : {std::pair{"link-relative", "hello.txt"}, std::pair{"link-dangling", "../does/not/exist"},
                              std::pair{"link-absolute", "/nonexistent/fsb/absolute/target"}}) {
    if (symlink(target, (dir / name).c_str()) != 0) Fail("symlink", dir / name);
    other(name);
  }

  // Special files.
  subdir("special");
  if (mkfifo((dir / "special/fifo").c_str(), 0644) != 0) Fail("mkfifo", dir / "special/fifo");
  other("special/fifo");
  if (root) {
    if (mknod((dir / "special/chardev-1-3").c_str(), S_IFCHR | 0644, makedev(1, 3)) != 0) {
      Fail("mknod", dir / "special/chardev-1-3");
    }
    other("special/chardev-1-3");
    if (mknod((dir / "special/blockdev-7-0").c_str(), S_IFBLK | 0640, makedev(7, 0)) != 0) {
      Fail("mknod", dir / "special/blockdev-7-0");
    }
    other("special/blockdev-7-0");
  }

  // Extended attributes.
  file("xattr.txt", "has extended attributes\n");
  {
    fs::path p = dir / "xattr.txt";
    static const unsigned char kBinary[] = {0x00, 0x01, 0xfe, 0xff};
    if (lsetxattr(p.c_str(), "user.fsb.text", "hello", 5, 0) == 0) {
      if (lsetxattr(p.c_str(), "user.fsb.binary", kBinary, sizeof kBinary, 0) != 0) Fail("setxattr", p);
    } else if (errno != ENOTSUP && errno != EPERM) {
      Fail("setxattr", p);
    }
  }

  // Nested directories, 5 levels below deep/.
  {
    std::string rel = "deep";
    subdir(rel);
    for (int i = 1; i <= 5; i++) {
      rel += "/l" + std::to_string(i);
      subdir(rel);
    }
    file(rel + "/leaf.txt", SeededText(seed + 9, 8));
  }

  // Odd names.
  subdir("names");
  const std::vector<std::string> odd = {"quote\"and\\back", "tab\tname", "html<&>", "caf\xc3\xa9-\xe6\x97\xa5\xe6\x9c\xac",
                                        "latin1-\xe9", "-leading-dash"};
  for (size_t i = 0; i < odd.size(); i++) file("names/" + odd[i], "name " + std::to_string(i) + "\n");

  // Owners (root only), before the modes: chown clears setuid/setgid.
  subdir("owned");
  file("owned/file", "owned by 1234:5678\n");
  if (symlink("file", (dir / "owned/link").c_str()) != 0) Fail("symlink", dir / "owned/link");
  other("owned/link");
  if (root) {
    for (const char* rel : {"owned", "owned/file", "owned/link"}) {
      if (lchown((dir / rel).c_str(), 1234, 5678) != 0) Fail("lchown", dir / rel);
    }
  }

  // Permission bits.
  subdir("modes");
  std::vector<std::pair<std::string, mode_t>> modes = {{"m0644", 0644}, {"m0600", 0600}, {"m0444", 0444},
                                                       {"m4755", 04755}, {"m2755", 02755}};
  // Only root can read (hence back up) a 0000 file.
  if (root) modes.push_back({"m0000", 0000});
  for (const auto& [name, mode] : modes) file("modes/" + name, "mode " + name + "\n");
  subdir("modes/sticky");
  subdir("modes/private");
  file("modes/private/inside.txt", "in a 0700 directory\n");
  for (const auto& [name, mode] : modes) {
    if (chmod((dir / "modes" / name).c_str(), mode) != 0) Fail("chmod", dir / "modes" / name);
  }
  if (chmod((dir / "modes/sticky").c_str(), 01777) != 0) Fail("chmod", dir / "modes/sticky");
  if (chmod((dir / "modes/private").c_str(), 0700) != 0) Fail("chmod", dir / "modes/private");

  // Non-directories first, then directories deepest first, the root last.
  ApplyTimes(dir, std::move(timed), seed);
}

void MakeManySmallFiles(const fs::path& dir, size_t n, uint64_t seed) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) Fail("mkdir", dir);
  std::vector<Timed> timed;
  Bytes sizes = SeededRandomBytes(seed, n * 2 + 2);
  for (size_t i = 0; i < n; i++) {
    fs::path sub = dir / ("d" + std::to_string(i / 100));
    if (i % 100 == 0) {
      MakeDir(sub);
      timed.push_back({sub, true});
    }
    size_t len = 1024 + ((size_t(sizes[2 * i]) << 8 | sizes[2 * i + 1]) % 3072);
    Bytes content = SeededRandomBytes(seed * 1000003 + i, len);
    fs::path p = sub / ("f" + std::to_string(i));
    WriteFile(p, content.data(), content.size());
    timed.push_back({p, false});
  }
  ApplyTimes(dir, std::move(timed), seed);
}

}  // namespace fsb::testing
