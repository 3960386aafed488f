// Self-tests of the tree generator and comparer the interop tests rely on: an interop test that
// passes only because CompareTrees misses a difference would prove nothing.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/test_util.h"
#include "tests/support/tree_compare.h"
#include "tests/support/tree_gen.h"

namespace fsb::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Sets mtime = atime of `p` (not following symlinks).
void SetTime(const fs::path& p, int64_t sec, long nsec) {
  timespec ts[2] = {{sec, nsec}, {sec, nsec}};
  ASSERT_EQ(utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << p;
}

struct stat Lstat(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
  return st;
}

TEST(TreeGenTest, SameSeedGivesEqualTrees) {
  TempDir tmp;
  MakeRichTree(tmp.path() / "a", 7);
  MakeRichTree(tmp.path() / "b", 7);
  std::vector<std::string> diffs = CompareTrees(tmp.path() / "a", tmp.path() / "b");
  EXPECT_THAT(diffs, IsEmpty()) << JoinDifferences(diffs);
}

TEST(TreeGenTest, RichTreeHasEveryKindOfEntry) {
  TempDir tmp;
  fs::path d = tmp.path() / "t";
  MakeRichTree(d, 8);
  EXPECT_EQ(fs::file_size(d / "random.bin"), 5u << 20);
  EXPECT_EQ(fs::file_size(d / "sparse.bin"), 3u << 20);
  EXPECT_EQ(ReadFileToString(d / "sparse.bin"), std::string(3u << 20, '\0'));
  EXPECT_LT(Lstat(d / "sparse.bin").st_blocks * 512, 3 << 20) << "sparse.bin has no hole";
  EXPECT_EQ(Lstat(d / "hardlink-1").st_ino, Lstat(d / "hardlink-2").st_ino);
  EXPECT_EQ(fs::read_symlink(d / "link-dangling"), "../does/not/exist");
  EXPECT_TRUE(S_ISFIFO(Lstat(d / "special/fifo").st_mode));
  EXPECT_EQ(Lstat(d / "modes/m4755").st_mode & 07777, 04755u);
  EXPECT_EQ(Lstat(d / "modes/m2755").st_mode & 07777, 02755u);
  EXPECT_EQ(Lstat(d / "modes/sticky").st_mode & 07777, 01777u);
  EXPECT_EQ(Lstat(d / "modes/private").st_mode & 07777, 0700u);
  EXPECT_TRUE(fs::is_regular_file(d / "deep/l1/l2/l3/l4/l5/leaf.txt"));
  EXPECT_TRUE(fs::exists(fs::symlink_status(d / "names/latin1-\xe9")));
  EXPECT_NE(Lstat(d / "hello.txt").st_mtim.tv_nsec, 0);
  if (UserXattrsSupported(tmp.path())) {
    char buf[16];
    EXPECT_EQ(lgetxattr((d / "xattr.txt").c_str(), "user.fsb.binary", buf, sizeof buf), 4);
  }
  if (geteuid() == 0) {
    EXPECT_EQ(Lstat(d / "modes/m0000").st_mode & 07777, 0u);
    EXPECT_TRUE(S_ISCHR(Lstat(d / "special/chardev-1-3").st_mode));
    EXPECT_TRUE(S_ISBLK(Lstat(d / "special/blockdev-7-0").st_mode));
    EXPECT_EQ(Lstat(d / "owned/file").st_uid, 1234u);
    EXPECT_EQ(Lstat(d / "owned/link").st_gid, 5678u);
  }
}

TEST(TreeGenTest, ManySmallFilesAreDeterministic) {
  TempDir tmp;
  MakeManySmallFiles(tmp.path() / "a", 250, 3);
  MakeManySmallFiles(tmp.path() / "b", 250, 3);
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(tmp.path() / "a")) n += e.is_regular_file();
  EXPECT_EQ(n, 250u);
  std::vector<std::string> diffs = CompareTrees(tmp.path() / "a", tmp.path() / "b");
  EXPECT_THAT(diffs, IsEmpty()) << JoinDifferences(diffs);
}

TEST(TreeCompareTest, EveryKindOfDifferenceIsReported) {
  TempDir tmp;
  fs::path a = tmp.path() / "a", b = tmp.path() / "b";
  MakeRichTree(a, 9);
  MakeRichTree(b, 9);
  const struct stat deep = Lstat(b / "deep");

  ASSERT_EQ(chmod((b / "modes/m4755").c_str(), 0755), 0);
  struct stat link = Lstat(b / "link-relative");
  SetTime(b / "link-relative", link.st_mtim.tv_sec, link.st_mtim.tv_nsec + 1);
  {
    std::string data = ReadFileToString(b / "random.bin");
    data[3000000] = char(data[3000000] ^ 0x80);
    struct stat st = Lstat(b / "random.bin");
    WriteStringToFile(b / "random.bin", data);
    SetTime(b / "random.bin", st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  }
  fs::remove(b / "link-dangling");
  fs::create_symlink("../does/not/exist/either", b / "link-dangling");
  {
    struct stat st = Lstat(b / "hardlink-2");
    std::string data = ReadFileToString(b / "hardlink-2");
    fs::remove(b / "hardlink-2");
    WriteStringToFile(b / "hardlink-2", data);
    SetTime(b / "hardlink-2", st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  }
  fs::remove(b / "names/latin1-\xe9");
  WriteStringToFile(b / "names/extra", "x");
  fs::remove(b / "special/fifo");
  WriteStringToFile(b / "special/fifo", "");
  SetTime(b / "deep", deep.st_mtim.tv_sec + 1, deep.st_mtim.tv_nsec);
  const bool xattrs = UserXattrsSupported(tmp.path());
  if (xattrs) {
    ASSERT_EQ(lsetxattr((b / "xattr.txt").c_str(), "user.fsb.text", "bye", 3, 0), 0);
  }
  if (geteuid() == 0) {
    ASSERT_EQ(lchown((b / "owned/file").c_str(), 1, 1), 0);
    fs::remove(b / "special/chardev-1-3");
    ASSERT_EQ(mknod((b / "special/chardev-1-3").c_str(), S_IFCHR | 0644, makedev(1, 5)), 0);
  }

  std::vector<std::string> diffs = CompareTrees(a, b);
  const std::string all = JoinDifferences(diffs, 1000);
  EXPECT_THAT(all, HasSubstr("mode of modes/m4755: a 4755, b 0755"));
  EXPECT_THAT(all, HasSubstr("mtime of link-relative"));
  EXPECT_THAT(all, HasSubstr("content of random.bin differs at offset 3000000"));
  EXPECT_THAT(all, HasSubstr("symlink target of link-dangling: a ../does/not/exist, b ../does/not/exist/either"));
  EXPECT_THAT(all, HasSubstr("hard links of hardlink-"));
  EXPECT_THAT(all, HasSubstr("only in a: names/latin1-\\xE9 (file)"));
  EXPECT_THAT(all, HasSubstr("only in b: names/extra (file)"));
  EXPECT_THAT(all, HasSubstr("type of special/fifo: a fifo, b file"));
  EXPECT_THAT(all, HasSubstr("mtime of deep:"));
  if (xattrs) {
    EXPECT_THAT(all, HasSubstr("xattr user.fsb.text of xattr.txt: a \"hello\", b \"bye\""));
  }
  if (geteuid() == 0) {
    EXPECT_THAT(all, HasSubstr("owner of owned/file: a 1234:5678, b 1:1"));
    EXPECT_THAT(all, HasSubstr("rdev of special/chardev-1-3: a 1:3, b 1:5"));
  }

  CompareOptions relaxed;
  relaxed.dir_mtimes = false;
  relaxed.ignore_paths = {"names", "special"};
  diffs = CompareTrees(a, b, relaxed);
  EXPECT_THAT(diffs, Not(Contains(HasSubstr("mtime of deep"))));
  EXPECT_THAT(diffs, Not(Contains(HasSubstr("names/"))));
  EXPECT_THAT(diffs, Not(Contains(HasSubstr("special/"))));
  EXPECT_THAT(diffs, Contains(HasSubstr("mode of modes/m4755")));
}

TEST(TreeCompareTest, RootMetadataCanBeIgnored) {
  TempDir tmp;
  fs::path a = tmp.path() / "a", b = tmp.path() / "b";
  MakeRichTree(a, 10);
  MakeRichTree(b, 10);
  ASSERT_EQ(chmod(b.c_str(), 0700), 0);
  EXPECT_THAT(CompareTrees(a, b), Contains(HasSubstr("mode of <root>")));
  CompareOptions o;
  o.root_metadata = false;
  EXPECT_THAT(CompareTrees(a, b, o), IsEmpty());
}

}  // namespace
}  // namespace fsb::testing
