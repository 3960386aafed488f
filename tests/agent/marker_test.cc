#include "agent/marker.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "base/fd.h"
#include "tests/support/test_util.h"

namespace fsb::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ReadFileToString;
using testing::TempDir;
using testing::WriteStringToFile;

constexpr char kUid[] = "0a1b2c3d-restore-uid";

mode_t ModeOf(const fs::path& p) {
  struct stat st;
  EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
  return st.st_mode;
}

class MarkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    volume_ = dir_.path() / "volume";
    fs::create_directories(volume_);
    fd_ = Fd(open(volume_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(fd_.valid());
  }

  TempDir dir_;
  fs::path volume_;
  Fd fd_;
};

// Restores the process umask when the test ends.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t m) : old_(umask(m)) {}
  ~ScopedUmask() { umask(old_); }

 private:
  mode_t old_;
};

TEST_F(MarkerTest, CreatesDirectory0755AndEmptyFile0644DespiteUmask) {
  ScopedUmask mask(077);
  ASSERT_TRUE(WriteRestoreMarker(fd_.get(), kUid).ok());
  const fs::path dir = volume_ / ".velero";
  const fs::path file = dir / kUid;
  EXPECT_TRUE(S_ISDIR(ModeOf(dir)));
  EXPECT_EQ(ModeOf(dir) & 07777, 0755u);
  EXPECT_TRUE(S_ISREG(ModeOf(file)));
  EXPECT_EQ(ModeOf(file) & 07777, 0644u);
  EXPECT_EQ(fs::file_size(file), 0u);
  // Nothing else is in .velero.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

TEST_F(MarkerTest, ReplacesAnExistingVeleroTree) {
  fs::create_directories(volume_ / ".velero" / "old" / "deeper");
  WriteStringToFile(volume_ / ".velero" / "old-uid", "x");
  WriteStringToFile(volume_ / ".velero" / "old" / "deeper" / "f", "y");
  fs::permissions(volume_ / ".velero", fs::perms::owner_all);  // 0700 as restored
  ASSERT_TRUE(WriteRestoreMarker(fd_.get(), kUid).ok());
  EXPECT_FALSE(fs::exists(volume_ / ".velero" / "old-uid"));
  EXPECT_FALSE(fs::exists(volume_ / ".velero" / "old"));
  EXPECT_TRUE(fs::exists(volume_ / ".velero" / kUid));
  EXPECT_EQ(ModeOf(volume_ / ".velero") & 07777, 0755u);
}

TEST_F(MarkerTest, ExistingMarkerOfTheSameRestoreIsRecreated) {
  ASSERT_TRUE(WriteRestoreMarker(fd_.get(), kUid).ok());
  ASSERT_TRUE(WriteRestoreMarker(fd_.get(), kUid).ok());
  EXPECT_TRUE(fs::exists(volume_ / ".velero" / kUid));
}

TEST_F(MarkerTest, ReplacesAFileAtVelero) {
  WriteStringToFile(volume_ / ".velero", "not a directory");
  ASSERT_TRUE(WriteRestoreMarker(fd_.get(), kUid).ok());
  EXPECT_TRUE(fs::is_directory(volume_ / ".velero"));
  EXPECT_TRUE(fs::exists(volume_ / ".velero" / kUid));
}

TEST_F(MarkerTest, SymlinkToOutsideDirectoryIsRemovedNeverFollowed) {
  const fs::path outside = dir_.path() / "outside";
  fs::create_directories(outside / "sub");
  WriteStringToFile(outside / "precious", "keep me");
  WriteStringToFile(outside / "sub" / "also", "keep me too");
  fs::permissions(outside, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  fs::create_directory_symlink(outside, volume_ / ".velero");
  ASSERT_TRUE(WriteRestoreMarker(fd_.get(), kUid).ok());
  // The link itself is replaced by a real directory holding the marker...
  EXPECT_FALSE(fs::is_symlink(volume_ / ".velero"));
  EXPECT_TRUE(fs::is_directory(volume_ / ".velero"));
  EXPECT_TRUE(fs::exists(volume_ / ".velero" / kUid));
  // ...and the target is exactly as it was: no marker, nothing removed, mode unchanged.
  EXPECT_EQ(ReadFileToString(outside / "precious"), "keep me");
  EXPECT_EQ(ReadFileToString(outside / "sub" / "also"), "keep me too");
  EXPECT_FALSE(fs::exists(outside / kUid));
  EXPECT_EQ(ModeOf(outside) & 07777, 0750u);
  EXPECT_EQ(std::distance(fs::directory_iterator(outside), fs::directory_iterator()), 2);
}

TEST_F(MarkerTest, SymlinksInsideVeleroAreRemovedNotFollowed) {
  const fs::path outside = dir_.path() / "outside";
  fs::create_directories(outside);
  WriteStringToFile(outside / "precious", "keep me");
  fs::create_directories(volume_ / ".velero");
  fs::create_directory_symlink(outside, volume_ / ".velero" / "dirlink");
  fs::create_symlink(outside / "precious", volume_ / ".velero" / "filelink");
  ASSERT_TRUE(WriteRestoreMarker(fd_.get(), kUid).ok());
  EXPECT_EQ(ReadFileToString(outside / "precious"), "keep me");
  EXPECT_FALSE(fs::exists(fs::symlink_status(volume_ / ".velero" / "dirlink")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(volume_ / ".velero" / "filelink")));
}

TEST_F(MarkerTest, DanglingSymlinkIsRemoved) {
  fs::create_symlink(dir_.path() / "nowhere", volume_ / ".velero");
  ASSERT_TRUE(WriteRestoreMarker(fd_.get(), kUid).ok());
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(volume_ / ".velero")));
  EXPECT_FALSE(fs::exists(dir_.path() / "nowhere"));
}

TEST_F(MarkerTest, RestoreUidThatIsNotOneFileNameIsRejected) {
  for (std::string_view bad : {std::string_view(""), std::string_view("."), std::string_view(".."),
                               std::string_view("a/b"), std::string_view("../escape"),
                               std::string_view("/abs"), std::string_view("a\0b", 3)}) {
    Status s = WriteRestoreMarker(fd_.get(), bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("restore uid"));
  }
  // Nothing was touched.
  EXPECT_FALSE(fs::exists(volume_ / ".velero"));
  EXPECT_FALSE(fs::exists(dir_.path() / "escape"));
}

TEST_F(MarkerTest, RejectedUidLeavesAnExistingTreeAlone) {
  fs::create_directories(volume_ / ".velero");
  WriteStringToFile(volume_ / ".velero" / "other", "");
  EXPECT_FALSE(WriteRestoreMarker(fd_.get(), "../x").ok());
  EXPECT_TRUE(fs::exists(volume_ / ".velero" / "other"));
}

TEST_F(MarkerTest, BadVolumeFdIsAnError) {
  Status s = WriteRestoreMarker(-1, kUid);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace fsb::agent
