#include "uploader/fs_meta.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "tests/support/test_util.h"

namespace fsb::uploader {
namespace {

using repo::Node;
using repo::NodeType;
using ::testing::HasSubstr;

// Go FileMode values from restic-repo-format.md §9.5 (seen in restic 0.14's trees).
constexpr uint32_t kGoFile0644 = 420;
constexpr uint32_t kGoFile0444 = 292;
constexpr uint32_t kGoFile06755 = 12583405;
constexpr uint32_t kGoDir0755 = 2147484141;
constexpr uint32_t kGoStickyDir01777 = 2148532735;
constexpr uint32_t kGoSymlink = 134218239;
constexpr uint32_t kGoBlockDev0644 = 67109284;
constexpr uint32_t kGoCharDev0644 = 69206436;
constexpr uint32_t kGoFifo0644 = 33554852;

struct timespec Ts(int64_t sec, long nsec) {
  return {static_cast<time_t>(sec), nsec};
}

class FsMetaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_fd_ = Fd(open(dir_.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir_fd_.valid()) << std::strerror(errno);
  }

  std::string Path(const std::string& name) const { return (dir_.path() / name).string(); }

  void MakeFile(const std::string& name, const std::string& content, mode_t mode) {
    testing::WriteStringToFile(dir_.path() / name, content);
    ASSERT_EQ(chmod(Path(name).c_str(), mode), 0) << std::strerror(errno);  // umask-proof
  }

  struct stat Lstat(const std::string& name) const {
    struct stat st = {};
    EXPECT_EQ(fstatat(dir_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW), 0)
        << name << ": " << std::strerror(errno);
    return st;
  }

  // lstat + NodeFromStat, as the backup walker does.
  Result<std::optional<Node>> Read(const std::string& name, MetaOptions opts = {}) const {
    const struct stat st = Lstat(name);
    return NodeFromStat(dir_fd_.get(), name, st, opts);
  }

  Node ReadNode(const std::string& name, MetaOptions opts = {}) const {
    Result<std::optional<Node>> r = Read(name, opts);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || !r->has_value()) {
      ADD_FAILURE() << name << ": no node";
      return Node();
    }
    return **r;
  }

  // User xattrs work on this file system (ext4, xfs, btrfs, tmpfs ≥ 6.6 do).
  bool UserXattrsSupported() {
    const std::string probe = Path(".xattr-probe");
    testing::WriteStringToFile(probe, "");
    const bool ok = setxattr(probe.c_str(), "user.fsb.probe", "x", 1, 0) == 0;
    unlink(probe.c_str());
    return ok;
  }

  testing::TempDir dir_;
  Fd dir_fd_;
};

TEST_F(FsMetaTest, RegularFileFieldsMatchLstat) {
  MakeFile("hello.txt", "hello, world\n", 0644);
  const struct timespec times[2] = {Ts(1600000000, 1), Ts(1686832496, 123456789)};
  ASSERT_EQ(utimensat(dir_fd_.get(), "hello.txt", times, 0), 0);
  const struct stat st = Lstat("hello.txt");

  const Node n = ReadNode("hello.txt");
  EXPECT_EQ(n.name, "hello.txt");
  EXPECT_EQ(n.type, NodeType::kFile);
  EXPECT_EQ(n.mode, kGoFile0644);
  EXPECT_EQ(n.mtime.sec, 1686832496);
  EXPECT_EQ(n.mtime.nsec, 123456789u);
  EXPECT_EQ(n.mtime, repo::LocalTimestamp(1686832496, 123456789));
  EXPECT_EQ(n.atime, n.mtime);  // restic without --with-atime
  EXPECT_EQ(n.ctime, repo::LocalTimestamp(st.st_ctim.tv_sec, st.st_ctim.tv_nsec));
  EXPECT_EQ(n.uid, st.st_uid);
  EXPECT_EQ(n.gid, st.st_gid);
  EXPECT_EQ(n.inode, st.st_ino);
  EXPECT_EQ(n.device_id, st.st_dev);
  EXPECT_EQ(n.size, 13u);
  EXPECT_EQ(n.links, 1u);
  EXPECT_TRUE(n.linktarget.empty());
  EXPECT_EQ(n.device, 0u);
  EXPECT_TRUE(n.content.empty());
  EXPECT_FALSE(n.subtree.has_value());
  for (const auto& x : n.xattrs) EXPECT_NE(x.name.rfind("user.", 0), 0u) << x.name;
}

TEST_F(FsMetaTest, WithAtimeStoresRealAccessTime) {
  MakeFile("f", "x", 0644);
  const struct timespec times[2] = {Ts(1500000000, 5), Ts(1686832496, 7)};
  ASSERT_EQ(utimensat(dir_fd_.get(), "f", times, 0), 0);
  const Node n = ReadNode("f", MetaOptions{.with_atime = true});
  EXPECT_EQ(n.atime, repo::LocalTimestamp(1500000000, 5));
  EXPECT_EQ(n.mtime, repo::LocalTimestamp(1686832496, 7));
}

TEST_F(FsMetaTest, EmptyFileHasNoSize) {
  MakeFile("empty", "", 0444);
  const Node n = ReadNode("empty");
  EXPECT_EQ(n.size, 0u);
  EXPECT_EQ(n.mode, kGoFile0444);
  EXPECT_EQ(n.links, 1u);
}

TEST_F(FsMetaTest, ZeroPermissionFileHasModeZero) {
  MakeFile("locked", "secret", 0);
  EXPECT_EQ(ReadNode("locked").mode, 0u);  // JSON then omits "mode", as restic does
}

TEST_F(FsMetaTest, UserAndGroupNamesAreLookedUp) {
  MakeFile("f", "x", 0644);
  const Node n = ReadNode("f");
  const struct passwd* pw = getpwuid(n.uid);
  const struct group* gr = getgrgid(n.gid);
  EXPECT_EQ(n.user, pw ? pw->pw_name : "");
  EXPECT_EQ(n.group, gr ? gr->gr_name : "");
  if (n.uid == 0) {
    EXPECT_EQ(n.user, "root");
  }
  // Twice: the second answer comes from the cache and must be the same.
  EXPECT_EQ(ReadNode("f").user, n.user);
}

TEST_F(FsMetaTest, UnknownOwnerHasEmptyNames) {
  if (geteuid() != 0) GTEST_SKIP() << "chown to an unknown uid needs root";
  if (getpwuid(54321) != nullptr || getgrgid(54322) != nullptr) GTEST_SKIP() << "ids exist";
  MakeFile("f", "x", 0644);
  ASSERT_EQ(chown(Path("f").c_str(), 54321, 54322), 0);
  const Node n = ReadNode("f");
  EXPECT_EQ(n.uid, 54321u);
  EXPECT_EQ(n.gid, 54322u);
  EXPECT_EQ(n.user, "");
  EXPECT_EQ(n.group, "");
}

TEST_F(FsMetaTest, ConcurrentReadsAgree) {
  MakeFile("f", "x", 0644);
  const Node expected = ReadNode("f");
  const struct stat st = Lstat("f");
  std::atomic<int> mismatches{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 200; ++i) {
          Result<std::optional<Node>> r = NodeFromStat(dir_fd_.get(), "f", st, {});
          if (!r.ok() || !r->has_value() || **r != expected) mismatches.fetch_add(1);
        }
      });
    }
  }
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_F(FsMetaTest, DirectoryHasModeButNoLinksOrSize) {
  ASSERT_EQ(mkdir(Path("d").c_str(), 0755), 0);
  ASSERT_EQ(chmod(Path("d").c_str(), 0755), 0);
  const Node n = ReadNode("d");
  EXPECT_EQ(n.type, NodeType::kDir);
  EXPECT_EQ(n.mode, kGoDir0755);
  EXPECT_EQ(n.links, 0u);
  EXPECT_EQ(n.size, 0u);
  EXPECT_NE(n.inode, 0u);
  EXPECT_NE(n.device_id, 0u);
}

TEST_F(FsMetaTest, SetuidSetgidFileMode) {
  MakeFile("suid", "#!/bin/sh\n", 06755);
  EXPECT_EQ(ReadNode("suid").mode, kGoFile06755);
}

TEST_F(FsMetaTest, StickyDirectoryMode) {
  ASSERT_EQ(mkdir(Path("tmp").c_str(), 0700), 0);
  ASSERT_EQ(chmod(Path("tmp").c_str(), 01777), 0);
  EXPECT_EQ(ReadNode("tmp").mode, kGoStickyDir01777);
}

TEST_F(FsMetaTest, SymlinkFieldsAndTarget) {
  ASSERT_EQ(symlinkat("../does/not/exist", dir_fd_.get(), "link"), 0);
  const Node n = ReadNode("link");
  EXPECT_EQ(n.type, NodeType::kSymlink);
  EXPECT_EQ(n.mode, kGoSymlink);
  EXPECT_EQ(n.linktarget, "../does/not/exist");
  EXPECT_EQ(n.links, 1u);
  EXPECT_EQ(n.size, 0u);  // st_size of a link is its target length; restic stores none
  EXPECT_TRUE(n.xattrs.empty());
}

TEST_F(FsMetaTest, SymlinkTargetKeepsNonUtf8Bytes) {
  const std::string target = std::string("caf\xe9/\xff\x01\x7f-\xc3\xa9.txt");
  ASSERT_EQ(symlinkat(target.c_str(), dir_fd_.get(), "raw"), 0);
  EXPECT_EQ(ReadNode("raw").linktarget, target);

  Node restored;
  restored.name = "copy";
  restored.type = NodeType::kSymlink;
  restored.linktarget = target;
  ASSERT_TRUE(CreateSpecial(dir_fd_.get(), restored).ok());
  char buf[256];
  const ssize_t len = readlinkat(dir_fd_.get(), "copy", buf, sizeof(buf));
  ASSERT_GT(len, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(len)), target);
}

TEST_F(FsMetaTest, LongSymlinkTargetIsReadWhole) {
  const std::string target = std::string(3000, 'a') + "/end";
  ASSERT_EQ(symlinkat(target.c_str(), dir_fd_.get(), "long"), 0);
  EXPECT_EQ(ReadNode("long").linktarget, target);
}

TEST_F(FsMetaTest, NonUtf8NameIsKeptRaw) {
  const std::string name = "latin1-\xe9.txt";
  MakeFile(name, "x", 0644);
  EXPECT_EQ(ReadNode(name).name, name);
}

TEST_F(FsMetaTest, HardLinksShareInodeAndCountLinks) {
  MakeFile("hardlink-1", "same inode\n", 0644);
  ASSERT_EQ(link(Path("hardlink-1").c_str(), Path("hardlink-2").c_str()), 0);
  const Node a = ReadNode("hardlink-1");
  const Node b = ReadNode("hardlink-2");
  EXPECT_EQ(a.links, 2u);
  EXPECT_EQ(b.links, 2u);
  EXPECT_EQ(a.inode, b.inode);
  EXPECT_EQ(a.device_id, b.device_id);
}

TEST_F(FsMetaTest, FifoHasNoLinks) {
  ASSERT_EQ(mkfifoat(dir_fd_.get(), "fifo", 0644), 0);
  ASSERT_EQ(fchmodat(dir_fd_.get(), "fifo", 0644, 0), 0);
  const Node n = ReadNode("fifo");
  EXPECT_EQ(n.type, NodeType::kFifo);
  EXPECT_EQ(n.mode, kGoFifo0644);
  EXPECT_EQ(n.links, 0u);
  EXPECT_EQ(n.device, 0u);
}

TEST_F(FsMetaTest, DeviceNodesCarryRdev) {
  if (geteuid() != 0) GTEST_SKIP() << "mknod of devices needs root";
  if (mknodat(dir_fd_.get(), "loop0", S_IFBLK | 0644, makedev(7, 0)) != 0) {
    GTEST_SKIP() << "mknod denied here: " << std::strerror(errno);
  }
  ASSERT_EQ(mknodat(dir_fd_.get(), "null", S_IFCHR | 0644, makedev(1, 3)), 0);
  ASSERT_EQ(fchmodat(dir_fd_.get(), "loop0", 0644, 0), 0);
  ASSERT_EQ(fchmodat(dir_fd_.get(), "null", 0644, 0), 0);

  const Node blk = ReadNode("loop0");
  EXPECT_EQ(blk.type, NodeType::kDev);
  EXPECT_EQ(blk.mode, kGoBlockDev0644);
  EXPECT_EQ(blk.device, 1792u);  // 7:0, §9.2
  EXPECT_EQ(blk.links, 1u);
  const Node chr = ReadNode("null");
  EXPECT_EQ(chr.type, NodeType::kCharDev);
  EXPECT_EQ(chr.mode, kGoCharDev0644);
  EXPECT_EQ(chr.device, 259u);  // 1:3
  EXPECT_EQ(chr.links, 1u);
}

TEST_F(FsMetaTest, SocketIsSkipped) {
  const Fd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock.valid());
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  const std::string path = Path("sock");
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);

  Result<std::optional<Node>> r = Read("sock");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->has_value());
}

TEST_F(FsMetaTest, BadNameIsInvalidArgument) {
  MakeFile("f", "x", 0644);
  const struct stat st = Lstat("f");
  for (const char* bad : {"", ".", "..", "a/b", "../f"}) {
    Result<std::optional<Node>> r = NodeFromStat(dir_fd_.get(), bad, st, {});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(FsMetaTest, VanishedSymlinkIsNotFound) {
  ASSERT_EQ(symlinkat("target", dir_fd_.get(), "gone"), 0);
  const struct stat st = Lstat("gone");
  ASSERT_EQ(unlinkat(dir_fd_.get(), "gone", 0), 0);
  Result<std::optional<Node>> r = NodeFromStat(dir_fd_.get(), "gone", st, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

TEST_F(FsMetaTest, XattrsReadInListxattrOrder) {
  if (!UserXattrsSupported()) GTEST_SKIP() << "no user xattrs on " << dir_.str();
  MakeFile("xattr.txt", "has extended attributes\n", 0644);
  const std::string p = Path("xattr.txt");
  // As made for restic's test vectors (tests/testdata/restic/make_source.py).
  ASSERT_EQ(setxattr(p.c_str(), "user.fsb.text", "hello", 5, 0), 0);
  const char binary[] = {'\x00', '\x01', '\xfe', '\xff'};
  ASSERT_EQ(setxattr(p.c_str(), "user.fsb.binary", binary, 4, 0), 0);

  // restic keeps listxattr's order (its trees show user.fsb.text before user.fsb.binary).
  char list[1024];
  const ssize_t len = llistxattr(p.c_str(), list, sizeof(list));
  ASSERT_GT(len, 0);
  std::vector<std::string> listed;
  for (const char* q = list; q < list + len; q += std::strlen(q) + 1) {
    if (std::strncmp(q, "user.", 5) == 0) listed.emplace_back(q);
  }

  const Node n = ReadNode("xattr.txt");
  std::vector<std::string> got;
  for (const auto& x : n.xattrs) {
    if (x.name.rfind("user.", 0) == 0) got.push_back(x.name);
    if (x.name == "user.fsb.text") {
      EXPECT_EQ(x.value, Bytes({'h', 'e', 'l', 'l', 'o'}));
    } else if (x.name == "user.fsb.binary") {
      EXPECT_EQ(x.value, Bytes({0x00, 0x01, 0xfe, 0xff}));
    }
  }
  EXPECT_EQ(got, listed);
  EXPECT_THAT(got, ::testing::UnorderedElementsAre("user.fsb.text", "user.fsb.binary"));
}

TEST_F(FsMetaTest, LargeXattrValueIsReadWhole) {
  if (!UserXattrsSupported()) GTEST_SKIP() << "no user xattrs on " << dir_.str();
  MakeFile("big", "", 0644);
  const Bytes value = testing::SeededRandomBytes(/*seed=*/7, 3000);
  if (setxattr(Path("big").c_str(), "user.big", value.data(), value.size(), 0) != 0) {
    GTEST_SKIP() << "3000-byte xattr refused: " << std::strerror(errno);
  }
  const Node n = ReadNode("big");
  bool found = false;
  for (const auto& x : n.xattrs) {
    if (x.name == "user.big") {
      found = true;
      EXPECT_EQ(x.value, value);
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(FsMetaTest, DirectoryXattrsAreRead) {
  if (!UserXattrsSupported()) GTEST_SKIP() << "no user xattrs on " << dir_.str();
  ASSERT_EQ(mkdir(Path("d").c_str(), 0755), 0);
  ASSERT_EQ(setxattr(Path("d").c_str(), "user.dir", "v", 1, 0), 0);
  const Node n = ReadNode("d");
  ASSERT_FALSE(n.xattrs.empty());
  EXPECT_EQ(n.xattrs.back().name, "user.dir");
}

// --- restore ---

Node FileNode(const std::string& name, uint32_t go_mode) {
  Node n;
  n.name = name;
  n.type = NodeType::kFile;
  n.mode = go_mode;
  n.uid = geteuid();
  n.gid = getegid();
  n.mtime = {.sec = 1686832496, .nsec = 123456789, .utc_offset_sec = 7200};
  n.atime = {.sec = 1600000000, .nsec = 987654321, .utc_offset_sec = 7200};
  return n;
}

TEST_F(FsMetaTest, ApplyMetadataRestoresTimesWithNanoseconds) {
  MakeFile("f", "data", 0600);
  const Node n = FileNode("f", kGoFile0644);
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), n, {}).ok());
  const struct stat st = Lstat("f");
  EXPECT_EQ(st.st_mtim.tv_sec, 1686832496);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_atim.tv_sec, 1600000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 987654321);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST_F(FsMetaTest, ApplyMetadataRestoresOwnerAsRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "chown needs root";
  MakeFile("f", "data", 0600);
  Node n = FileNode("f", kGoFile0644);
  n.uid = 1234;
  n.gid = 5678;
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), n, {}).ok());
  const struct stat st = Lstat("f");
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
}

TEST_F(FsMetaTest, RestoreOwnerOffLeavesOwner) {
  MakeFile("f", "data", 0600);
  Node n = FileNode("f", kGoFile0644);
  n.uid = 1234;
  n.gid = 5678;
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), n, RestoreMetaOptions{.restore_owner = false}).ok());
  const struct stat st = Lstat("f");
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(st.st_gid, getegid());
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST_F(FsMetaTest, SetuidSurvivesChown) {
  if (geteuid() != 0) GTEST_SKIP() << "chown needs root";
  MakeFile("suid", "#!/bin/sh\n", 0600);
  Node n = FileNode("suid", kGoFile06755);
  n.uid = 1234;
  n.gid = 5678;
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), n, {}).ok());
  const struct stat st = Lstat("suid");
  EXPECT_EQ(st.st_mode & 07777, 06755u);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(ReadNode("suid").mode, kGoFile06755);
}

TEST_F(FsMetaTest, ApplyMetadataToDirectory) {
  ASSERT_EQ(mkdir(Path("d").c_str(), 0700), 0);
  Node n = FileNode("d", kGoStickyDir01777);
  n.type = NodeType::kDir;
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), n, {}).ok());
  const struct stat st = Lstat("d");
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1686832496);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
}

TEST_F(FsMetaTest, ApplyMetadataSetsXattrs) {
  if (!UserXattrsSupported()) GTEST_SKIP() << "no user xattrs on " << dir_.str();
  MakeFile("f", "data", 0600);
  Node n = FileNode("f", kGoFile0444);  // read-only after: xattrs must be set before the chmod
  n.xattrs = {{"user.fsb.text", Bytes({'h', 'i'})}, {"user.fsb.binary", Bytes({0, 1, 0xfe, 0xff})}};
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), n, {}).ok());
  char buf[16];
  ssize_t len = getxattr(Path("f").c_str(), "user.fsb.text", buf, sizeof(buf));
  ASSERT_EQ(len, 2);
  EXPECT_EQ(std::string(buf, 2), "hi");
  len = getxattr(Path("f").c_str(), "user.fsb.binary", buf, sizeof(buf));
  ASSERT_EQ(len, 4);
  EXPECT_EQ(Bytes(buf, buf + 4), Bytes({0, 1, 0xfe, 0xff}));
  EXPECT_EQ(Lstat("f").st_mode & 07777, 0444u);
}

TEST_F(FsMetaTest, ApplyMetadataRunsEveryStepAndReturnsFirstError) {
  if (!UserXattrsSupported()) GTEST_SKIP() << "no user xattrs on " << dir_.str();
  MakeFile("f", "data", 0600);
  Node n = FileNode("f", kGoFile0444);
  n.xattrs = {{"user." + std::string(300, 'a'), Bytes({1})},  // name too long: ERANGE
              {"user.ok", Bytes({2})}};
  const Status s = ApplyMetadata(dir_fd_.get(), n, {});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("setxattr"));
  char v = 0;
  EXPECT_EQ(getxattr(Path("f").c_str(), "user.ok", &v, 1), 1);
  const struct stat st = Lstat("f");
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
}

TEST_F(FsMetaTest, NodeRoundTripsThroughApplyMetadata) {
  const bool xattrs = UserXattrsSupported();
  MakeFile("src", "content", 0640);
  if (xattrs) {
    ASSERT_EQ(setxattr(Path("src").c_str(), "user.k", "v", 1, 0), 0);
  }
  const struct timespec times[2] = {Ts(1234567890, 111), Ts(1234567891, 999999999)};
  ASSERT_EQ(utimensat(dir_fd_.get(), "src", times, 0), 0);
  Node n = ReadNode("src", MetaOptions{.with_atime = true});

  MakeFile("dst", "content", 0600);
  n.name = "dst";
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), n, {}).ok());
  Node back = ReadNode("dst", MetaOptions{.with_atime = true});
  EXPECT_EQ(back.mode, n.mode);
  EXPECT_EQ(back.mtime, n.mtime);
  EXPECT_EQ(back.atime, n.atime);
  EXPECT_EQ(back.uid, n.uid);
  EXPECT_EQ(back.gid, n.gid);
  EXPECT_EQ(back.xattrs, n.xattrs);
}

TEST_F(FsMetaTest, ApplyMetadataNeverFollowsSymlink) {
  testing::TempDir outside;
  const std::string victim = (outside.path() / "victim").string();
  testing::WriteStringToFile(victim, "do not touch");
  ASSERT_EQ(chmod(victim.c_str(), 0644), 0);
  const struct timespec old_times[2] = {Ts(1000000000, 0), Ts(1000000000, 0)};
  ASSERT_EQ(utimensat(AT_FDCWD, victim.c_str(), old_times, 0), 0);
  struct stat before = {};
  ASSERT_EQ(lstat(victim.c_str(), &before), 0);
  ASSERT_EQ(symlinkat(victim.c_str(), dir_fd_.get(), "link"), 0);

  // A file node whose name is now a symlink: refused, the victim untouched.
  Node as_file = FileNode("link", kGoFile06755);
  as_file.uid = 1234;
  as_file.gid = 5678;
  Status s = ApplyMetadata(dir_fd_.get(), as_file, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("symlink"));

  // A symlink node: the link itself changes, the victim does not.
  Node as_link = as_file;
  as_link.type = NodeType::kSymlink;
  as_link.mode = kGoSymlink;
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), as_link, {}).ok());
  const struct stat link_st = Lstat("link");
  EXPECT_EQ(link_st.st_mtim.tv_sec, 1686832496);
  EXPECT_EQ(link_st.st_mtim.tv_nsec, 123456789);
  if (geteuid() == 0) {
    EXPECT_EQ(link_st.st_uid, 1234u);
    EXPECT_EQ(link_st.st_gid, 5678u);
  }

  struct stat after = {};
  ASSERT_EQ(lstat(victim.c_str(), &after), 0);
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(after.st_gid, before.st_gid);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  EXPECT_EQ(after.st_atim.tv_sec, before.st_atim.tv_sec);
  EXPECT_EQ(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
  EXPECT_EQ(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
}

Fd OpenForWrite(int dir_fd, const std::string& name) {
  return Fd(openat(dir_fd, name.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
}

TEST_F(FsMetaTest, ApplyMetadataToFdSetsOwnerXattrsModeAndTimes) {
  const bool xattrs = UserXattrsSupported();
  MakeFile("f", "data", 0600);
  Node n = FileNode("f", kGoFile06755);  // setuid/setgid: the chown must come before the chmod
  if (geteuid() == 0) {
    n.uid = 1234;
    n.gid = 5678;
  } else {
    n.uid = geteuid();
    n.gid = getegid();
  }
  if (xattrs) n.xattrs = {{"user.fsb.k", Bytes({'v'})}};
  const Fd fd = OpenForWrite(dir_fd_.get(), "f");
  ASSERT_TRUE(fd.valid());
  const Status s = ApplyMetadataToFd(fd.get(), n, {}, std::nullopt);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const struct stat st = Lstat("f");
  EXPECT_EQ(st.st_mode & 07777, 06755u);
  EXPECT_EQ(st.st_uid, n.uid);
  EXPECT_EQ(st.st_gid, n.gid);
  EXPECT_EQ(st.st_mtim.tv_sec, 1686832496);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_atim.tv_sec, 1600000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 987654321);
  if (xattrs) {
    char v = 0;
    EXPECT_EQ(getxattr(Path("f").c_str(), "user.fsb.k", &v, 1), 1);
    EXPECT_EQ(v, 'v');
  }
}

TEST_F(FsMetaTest, ApplyMetadataToFdTrustsAKnownOwner) {
  if (geteuid() != 0) GTEST_SKIP() << "chown needs root";
  MakeFile("f", "data", 0600);
  Node n = FileNode("f", kGoFile0644);
  n.uid = 1234;
  n.gid = 5678;
  const Fd fd = OpenForWrite(dir_fd_.get(), "f");
  ASSERT_TRUE(fd.valid());
  // The caller says the file is owned as the node wants already: no fstat, no chown.
  ASSERT_TRUE(ApplyMetadataToFd(fd.get(), n, {}, FileOwner{1234, 5678}).ok());
  EXPECT_EQ(Lstat("f").st_uid, geteuid());
  // The true owner: chowned.
  ASSERT_TRUE(ApplyMetadataToFd(fd.get(), n, {}, FileOwner{geteuid(), getegid()}).ok());
  EXPECT_EQ(Lstat("f").st_uid, 1234u);
  EXPECT_EQ(Lstat("f").st_gid, 5678u);
}

TEST_F(FsMetaTest, ApplyMetadataToFdOfDirectory) {
  ASSERT_EQ(mkdir(Path("d").c_str(), 0700), 0);
  Node n = FileNode("d", kGoStickyDir01777);
  n.type = NodeType::kDir;
  const Fd fd(openat(dir_fd_.get(), "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_TRUE(ApplyMetadataToFd(fd.get(), n, {}, std::nullopt).ok());
  const struct stat st = Lstat("d");
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
}

TEST_F(FsMetaTest, ApplyMetadataToFdRunsEveryStepAndReturnsFirstError) {
  if (!UserXattrsSupported()) GTEST_SKIP() << "no user xattrs on " << dir_.str();
  MakeFile("f", "data", 0600);
  Node n = FileNode("f", kGoFile0444);
  n.xattrs = {{"user." + std::string(300, 'a'), Bytes({1})},  // name too long: ERANGE
              {"user.ok", Bytes({2})}};
  const Fd fd = OpenForWrite(dir_fd_.get(), "f");
  ASSERT_TRUE(fd.valid());
  const Status s = ApplyMetadataToFd(fd.get(), n, {}, std::nullopt);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("setxattr"));
  char v = 0;
  EXPECT_EQ(getxattr(Path("f").c_str(), "user.ok", &v, 1), 1);
  const struct stat st = Lstat("f");
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
}

TEST_F(FsMetaTest, ApplyMetadataToFdRefusesOtherTypes) {
  MakeFile("f", "data", 0600);
  const Fd fd = OpenForWrite(dir_fd_.get(), "f");
  ASSERT_TRUE(fd.valid());
  Node n = FileNode("f", kGoSymlink);
  n.type = NodeType::kSymlink;
  EXPECT_EQ(ApplyMetadataToFd(fd.get(), n, {}, std::nullopt).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Lstat("f").st_mode & 07777, 0600u);
}

TEST_F(FsMetaTest, ApplyMetadataMissingEntryIsNotFound) {
  const Status s = ApplyMetadata(dir_fd_.get(), FileNode("missing", kGoFile0644), {});
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
}

TEST_F(FsMetaTest, ApplyMetadataRejectsEscapingName) {
  const Status s = ApplyMetadata(dir_fd_.get(), FileNode("../etc", kGoFile0644), {});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

TEST_F(FsMetaTest, ApplyMetadataToSocketIsNoOp) {
  Node n = FileNode("sock", 0);
  n.type = NodeType::kSocket;
  EXPECT_TRUE(CreateSpecial(dir_fd_.get(), n).ok());
  EXPECT_TRUE(ApplyMetadata(dir_fd_.get(), n, {}).ok());
  struct stat st = {};
  EXPECT_NE(fstatat(dir_fd_.get(), "sock", &st, AT_SYMLINK_NOFOLLOW), 0);
}

TEST_F(FsMetaTest, CreateFifoAndApplyMode) {
  Node n = FileNode("fifo", kGoFifo0644);
  n.type = NodeType::kFifo;
  ASSERT_TRUE(CreateSpecial(dir_fd_.get(), n).ok());
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), n, {}).ok());  // must not block opening the fifo
  const struct stat st = Lstat("fifo");
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(ReadNode("fifo").mode, kGoFifo0644);
}

TEST_F(FsMetaTest, CreateDeviceNodes) {
  if (geteuid() != 0) GTEST_SKIP() << "mknod of devices needs root";
  Node blk = FileNode("loop0", kGoBlockDev0644);
  blk.type = NodeType::kDev;
  blk.device = 1792;  // 7:0
  Status s = CreateSpecial(dir_fd_.get(), blk);
  if (s.code() == StatusCode::kPermissionDenied) GTEST_SKIP() << "mknod denied: " << s.message();
  ASSERT_TRUE(s.ok()) << s.ToString();
  Node chr = FileNode("null", kGoCharDev0644);
  chr.type = NodeType::kCharDev;
  chr.device = 259;  // 1:3
  ASSERT_TRUE(CreateSpecial(dir_fd_.get(), chr).ok());
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), blk, {}).ok());
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), chr, {}).ok());

  const struct stat b = Lstat("loop0");
  EXPECT_TRUE(S_ISBLK(b.st_mode));
  EXPECT_EQ(major(b.st_rdev), 7u);
  EXPECT_EQ(minor(b.st_rdev), 0u);
  EXPECT_EQ(b.st_mode & 07777, 0644u);
  const struct stat c = Lstat("null");
  EXPECT_TRUE(S_ISCHR(c.st_mode));
  EXPECT_EQ(major(c.st_rdev), 1u);
  EXPECT_EQ(minor(c.st_rdev), 3u);
  const Node back = ReadNode("null");
  EXPECT_EQ(back.mode, kGoCharDev0644);
  EXPECT_EQ(back.device, 259u);
}

TEST_F(FsMetaTest, CreateSymlinkAndApplyTimes) {
  Node n = FileNode("link", kGoSymlink);
  n.type = NodeType::kSymlink;
  n.linktarget = "../does/not/exist";
  ASSERT_TRUE(CreateSpecial(dir_fd_.get(), n).ok());
  ASSERT_TRUE(ApplyMetadata(dir_fd_.get(), n, {}).ok());  // dangling: nothing to follow anyway
  const struct stat st = Lstat("link");
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_mtim.tv_sec, 1686832496);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(ReadNode("link").linktarget, "../does/not/exist");
}

TEST_F(FsMetaTest, CreateSpecialExistingNameIsAlreadyExists) {
  MakeFile("taken", "keep me", 0644);
  Node n = FileNode("taken", kGoFifo0644);
  n.type = NodeType::kFifo;
  EXPECT_EQ(CreateSpecial(dir_fd_.get(), n).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(testing::ReadFileToString(dir_.path() / "taken"), "keep me");
}

TEST_F(FsMetaTest, CreateSpecialRefusesFilesDirsAndBadInput) {
  EXPECT_EQ(CreateSpecial(dir_fd_.get(), FileNode("f", kGoFile0644)).code(),
            StatusCode::kInvalidArgument);
  Node dir = FileNode("d", kGoDir0755);
  dir.type = NodeType::kDir;
  EXPECT_EQ(CreateSpecial(dir_fd_.get(), dir).code(), StatusCode::kInvalidArgument);
  Node nul = FileNode("l", kGoSymlink);
  nul.type = NodeType::kSymlink;
  nul.linktarget = std::string("a\0b", 3);
  EXPECT_EQ(CreateSpecial(dir_fd_.get(), nul).code(), StatusCode::kInvalidArgument);
  nul.linktarget = "ok";
  nul.name = "sub/l";
  EXPECT_EQ(CreateSpecial(dir_fd_.get(), nul).code(), StatusCode::kInvalidArgument);
}

TEST_F(FsMetaTest, CreateHardLinkSharesInode) {
  MakeFile("first", "linked\n", 0644);
  ASSERT_TRUE(CreateHardLink(dir_fd_.get(), "second", dir_fd_.get(), "first").ok());
  EXPECT_EQ(Lstat("second").st_ino, Lstat("first").st_ino);
  EXPECT_EQ(ReadNode("second").links, 2u);
}

TEST_F(FsMetaTest, CreateHardLinkFromPathBelowDirectory) {
  ASSERT_EQ(mkdir(Path("a").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(Path("a/b").c_str(), 0755), 0);
  MakeFile("a/b/first", "linked\n", 0644);
  ASSERT_TRUE(CreateHardLink(dir_fd_.get(), "second", dir_fd_.get(), "a/b/first").ok());
  EXPECT_EQ(Lstat("second").st_ino, Lstat("a/b/first").st_ino);
}

TEST_F(FsMetaTest, CreateHardLinkDoesNotFollowSymlinkedDirectory) {
  testing::TempDir outside;
  testing::WriteStringToFile(outside.path() / "secret", "outside");
  ASSERT_EQ(symlinkat(outside.str().c_str(), dir_fd_.get(), "escape"), 0);
  const Status s = CreateHardLink(dir_fd_.get(), "stolen", dir_fd_.get(), "escape/secret");
  EXPECT_FALSE(s.ok());
  struct stat st = {};
  EXPECT_NE(fstatat(dir_fd_.get(), "stolen", &st, AT_SYMLINK_NOFOLLOW), 0);
}

TEST_F(FsMetaTest, CreateHardLinkRejectsDotDotAndBadNames) {
  MakeFile("first", "x", 0644);
  EXPECT_EQ(CreateHardLink(dir_fd_.get(), "l", dir_fd_.get(), "../first").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateHardLink(dir_fd_.get(), "l", dir_fd_.get(), "a//first").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateHardLink(dir_fd_.get(), "x/l", dir_fd_.get(), "first").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateHardLink(dir_fd_.get(), "first", dir_fd_.get(), "first").code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(CreateHardLink(dir_fd_.get(), "l", dir_fd_.get(), "missing").code(),
            StatusCode::kNotFound);
}

TEST_F(FsMetaTest, CreateHardLinkToSymlinkLinksTheLinkItself) {
  ASSERT_EQ(symlinkat("target-elsewhere", dir_fd_.get(), "sym"), 0);
  ASSERT_TRUE(CreateHardLink(dir_fd_.get(), "sym2", dir_fd_.get(), "sym").ok());
  const struct stat st = Lstat("sym2");
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_ino, Lstat("sym").st_ino);
}

}  // namespace
}  // namespace fsb::uploader
