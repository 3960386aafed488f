#include "hostpath/beneath.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "hostpath/internal/beneath.h"
#include "tests/support/test_util.h"

namespace fsb::hostpath {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Runs every test twice: through openat2, and through the component-by-component walk that
// kernels without openat2 (or seccomp profiles that deny it) get.
class OpenBeneathTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    internal::ForceFallbackForTesting(GetParam());
    if (!GetParam() && !internal::UsesOpenat2()) {
      GTEST_SKIP() << "openat2 is not available here; the Fallback instance covers the walk";
    }
    root_ = tmp_.path() / "root";
    outside_ = tmp_.path() / "outside";
    fs::create_directories(root_ / "a" / "b");
    fs::create_directories(outside_);
    testing::WriteStringToFile(root_ / "a" / "b" / "file", "inside");
    testing::WriteStringToFile(outside_ / "secret", "outside");
    dir_ = Fd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir_.valid());
  }
  void TearDown() override { internal::ForceFallbackForTesting(false); }

  // Whether `fd` is the file at `p` (same device and inode).
  static bool SameFile(int fd, const fs::path& p) {
    struct stat a {};
    struct stat b {};
    return ::fstat(fd, &a) == 0 && ::lstat(p.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
  }

  static std::string ReadAll(int fd) {
    char buf[64];
    const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
    return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
  }

  testing::TempDir tmp_;
  fs::path root_;
  fs::path outside_;
  Fd dir_;
};

TEST_P(OpenBeneathTest, OpensAFileBelow) {
  Result<Fd> fd = OpenBeneath(dir_.get(), "a/b/file", {.flags = O_RDONLY});
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  EXPECT_EQ(ReadAll(fd->get()), "inside");
  EXPECT_TRUE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC);
}

TEST_P(OpenBeneathTest, DefaultOpensADirectoryReadOnly) {
  Result<Fd> fd = OpenBeneath(dir_.get(), "a/b");
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  EXPECT_TRUE(SameFile(fd->get(), root_ / "a" / "b"));
  EXPECT_EQ(::fcntl(fd->get(), F_GETFL) & O_ACCMODE, O_RDONLY);
  Result<Fd> file = OpenBeneath(dir_.get(), "a/b/file");  // O_DIRECTORY by default
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kInvalidArgument);
}

TEST_P(OpenBeneathTest, EmptyAndDotReopenTheDirectory) {
  for (const char* rel : {"", ".", "a/..", "./a/./b/../.."}) {
    Result<Fd> fd = OpenBeneath(dir_.get(), rel);
    ASSERT_TRUE(fd.ok()) << rel << ": " << fd.status().ToString();
    EXPECT_TRUE(SameFile(fd->get(), root_)) << rel;
  }
}

TEST_P(OpenBeneathTest, DotDotAboveTheDirectoryIsRefused) {
  for (const Symlinks mode : {Symlinks::kRefuse, Symlinks::kFollowBeneath}) {
    for (const char* rel : {"..", "../outside", "a/../../outside", "a/b/../../../outside/secret"}) {
      Result<Fd> fd = OpenBeneath(dir_.get(), rel, {.flags = O_RDONLY, .symlinks = mode});
      ASSERT_FALSE(fd.ok()) << rel;
      EXPECT_EQ(fd.status().code(), StatusCode::kInvalidArgument) << rel;
      EXPECT_THAT(fd.status().message(), HasSubstr(rel));
    }
  }
}

TEST_P(OpenBeneathTest, AbsolutePathIsRefusedUnlessInRoot) {
  const std::string abs = (outside_ / "secret").string();
  for (const Symlinks mode : {Symlinks::kRefuse, Symlinks::kFollowBeneath}) {
    Result<Fd> fd = OpenBeneath(dir_.get(), abs, {.flags = O_RDONLY, .symlinks = mode});
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.status().code(), StatusCode::kInvalidArgument);
  }
  // In root, "/a/b/file" is the root's own a/b/file.
  Result<Fd> fd = OpenBeneath(dir_.get(), "/a/b/file",
                              {.flags = O_RDONLY, .symlinks = Symlinks::kFollowInRoot});
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  EXPECT_EQ(ReadAll(fd->get()), "inside");
}

TEST_P(OpenBeneathTest, RefuseModeRefusesEverySymlink) {
  fs::create_symlink("b", root_ / "a" / "inner");              // stays inside
  fs::create_symlink(outside_, root_ / "out");                 // absolute, outside
  fs::create_symlink("file", root_ / "a" / "b" / "filelink");  // final component
  for (const char* rel : {"a/inner/file", "a/inner", "out/secret", "out", "a/b/filelink"}) {
    Result<Fd> fd = OpenBeneath(dir_.get(), rel, {.flags = O_RDONLY});
    ASSERT_FALSE(fd.ok()) << rel;
    EXPECT_EQ(fd.status().code(), StatusCode::kInvalidArgument) << rel;
    EXPECT_THAT(fd.status().message(), HasSubstr("a symlink on the path: refused"));
  }
}

TEST_P(OpenBeneathTest, PathNoFollowOpensTheSymlinkItself) {
  fs::create_symlink(outside_ / "secret", root_ / "link");
  Result<Fd> fd = OpenBeneath(dir_.get(), "link", {.flags = O_PATH | O_NOFOLLOW});
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  struct stat st {};
  ASSERT_EQ(::fstat(fd->get(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
}

TEST_P(OpenBeneathTest, BeneathFollowsSymlinksThatStayInside) {
  fs::create_symlink("b", root_ / "a" / "inner");
  fs::create_symlink("../a/b/file", root_ / "a" / "up");
  const OpenOptions follow{.flags = O_RDONLY, .symlinks = Symlinks::kFollowBeneath};
  for (const char* rel : {"a/inner/file", "a/up", "a/inner/../b/file"}) {
    Result<Fd> fd = OpenBeneath(dir_.get(), rel, follow);
    ASSERT_TRUE(fd.ok()) << rel << ": " << fd.status().ToString();
    EXPECT_EQ(ReadAll(fd->get()), "inside") << rel;
  }
}

TEST_P(OpenBeneathTest, BeneathRefusesSymlinksThatLeave) {
  fs::create_symlink(outside_, root_ / "abs");      // absolute
  fs::create_symlink("../outside", root_ / "rel");  // relative, climbs out
  fs::create_symlink("../../../outside", root_ / "a" / "b" / "deep");
  fs::create_symlink("/etc", root_ / "etc");
  const OpenOptions follow{.flags = O_RDONLY, .symlinks = Symlinks::kFollowBeneath};
  for (const char* rel : {"abs/secret", "rel/secret", "a/b/deep/secret", "etc/passwd", "abs"}) {
    Result<Fd> fd = OpenBeneath(dir_.get(), rel, follow);
    ASSERT_FALSE(fd.ok()) << rel;
    EXPECT_EQ(fd.status().code(), StatusCode::kInvalidArgument) << rel;
  }
}

TEST_P(OpenBeneathTest, InRootResolvesAbsoluteSymlinksAndDotDotInsideTheRoot) {
  fs::create_directories(root_ / "etc");
  testing::WriteStringToFile(root_ / "etc" / "passwd", "root's own");
  fs::create_symlink("/etc", root_ / "a" / "etc");
  fs::create_symlink("../../../../../../etc/passwd", root_ / "a" / "b" / "climb");
  const OpenOptions in_root{.flags = O_RDONLY, .symlinks = Symlinks::kFollowInRoot};
  for (const char* rel : {"a/etc/passwd", "a/b/climb", "../../etc/passwd", "/../etc/passwd"}) {
    Result<Fd> fd = OpenBeneath(dir_.get(), rel, in_root);
    ASSERT_TRUE(fd.ok()) << rel << ": " << fd.status().ToString();
    EXPECT_EQ(ReadAll(fd->get()), "root's own") << rel;
  }
  // A target that exists only outside the root is not found, not followed out.
  fs::create_symlink(outside_ / "secret", root_ / "away");
  Result<Fd> fd = OpenBeneath(dir_.get(), "away", in_root);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kNotFound);
}

TEST_P(OpenBeneathTest, SymlinkLoopIsInvalidArgument) {
  fs::create_symlink("loop2", root_ / "loop1");
  fs::create_symlink("loop1", root_ / "loop2");
  Result<Fd> fd = OpenBeneath(dir_.get(), "loop1", {.symlinks = Symlinks::kFollowBeneath});
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kInvalidArgument);
}

TEST_P(OpenBeneathTest, MagicLinksAreRefused) {
  // /proc/self/root is a magic link to "/": following it would leave any directory.
  const Fd proc_self(::open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(proc_self.valid());
  for (const Symlinks mode : {Symlinks::kFollowBeneath, Symlinks::kFollowInRoot}) {
    Result<Fd> fd = OpenBeneath(proc_self.get(), "root/etc", {.symlinks = mode});
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST_P(OpenBeneathTest, MissingComponentIsNotFound) {
  Result<Fd> fd = OpenBeneath(dir_.get(), "a/nope/file", {.flags = O_RDONLY});
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(fd.status().message(), HasSubstr("a/nope/file"));
}

TEST_P(OpenBeneathTest, FileInTheMiddleIsInvalidArgument) {
  Result<Fd> fd = OpenBeneath(dir_.get(), "a/b/file/x", {.flags = O_RDONLY});
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kInvalidArgument);
}

TEST_P(OpenBeneathTest, CreatesBelowButNeverThroughASymlink) {
  Result<Fd> fd =
      OpenBeneath(dir_.get(), "a/new", {.flags = O_WRONLY | O_CREAT | O_EXCL, .mode = 0600});
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  EXPECT_TRUE(fs::is_regular_file(root_ / "a" / "new"));
  Result<Fd> again =
      OpenBeneath(dir_.get(), "a/new", {.flags = O_WRONLY | O_CREAT | O_EXCL, .mode = 0600});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);

  // A dangling symlink pointing outside: O_CREAT must not create its target.
  fs::create_symlink(outside_ / "planted", root_ / "dangling");
  for (const Symlinks mode : {Symlinks::kRefuse, Symlinks::kFollowBeneath}) {
    Result<Fd> created = OpenBeneath(dir_.get(), "dangling",
                                     {.flags = O_WRONLY | O_CREAT, .mode = 0600, .symlinks = mode});
    EXPECT_FALSE(created.ok());
    EXPECT_FALSE(fs::exists(outside_ / "planted"));
  }
}

TEST_P(OpenBeneathTest, NulInPathIsInvalidArgument) {
  Result<Fd> fd = OpenBeneath(dir_.get(), std::string_view("a\0b", 3));
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Resolution, OpenBeneathTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Fallback" : "Openat2";
                         });

}  // namespace
}  // namespace fsb::hostpath
