#include "hostpath/hostpath.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <functional>

#include "hostpath/internal/beneath.h"
#include "tests/support/test_util.h"

namespace fsb::hostpath {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUid[] = "5f0e2a1c-7d3b-4c7e-9a61-2b8d0c4e1f00";

// Whether `fd` is the file at `p` (same device and inode; `p` itself, not what a symlink there
// points to).
bool SameFile(int fd, const fs::path& p) {
  struct stat a {};
  struct stat b {};
  return ::fstat(fd, &a) == 0 && ::lstat(p.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

// Runs `body` in a forked child and returns its exit code (-1 if it did not exit). The child must
// not use gtest assertions; it reports through the exit code and stderr.
int RunInChild(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Both resolution paths: openat2, and the walk that kernels without it get.
class ResolutionTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    internal::ForceFallbackForTesting(GetParam());
    if (!GetParam() && !internal::UsesOpenat2()) {
      GTEST_SKIP() << "openat2 is not available here; the Fallback instance covers the walk";
    }
  }
  void TearDown() override { internal::ForceFallbackForTesting(false); }

  testing::TempDir tmp_;
};

std::string ResolutionName(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "Fallback" : "Openat2";
}

// A fake kubelet pods directory:
//   pods/<kUid>/volumes/kubernetes.io~empty-dir/data
//   pods/<kUid>/volumes/kubernetes.io~csi/pvc-x/mount
//   pods/<kUid>/volumes/kubernetes.io~projected/kube-api-access-1
//   pods/<kUid>/volumeDevices/kubernetes.io~csi/pvc-blk
// and, next to it, a directory "outside" that nothing may reach, holding data/ and mount/.
class ResolvePodVolumeTest : public ResolutionTest {
 protected:
  void SetUp() override {
    ResolutionTest::SetUp();
    if (IsSkipped()) return;
    pods_ = tmp_.path() / "pods";
    outside_ = tmp_.path() / "outside";
    pod_ = pods_ / kUid;
    for (const char* d :
         {"volumes/kubernetes.io~empty-dir/data", "volumes/kubernetes.io~csi/pvc-x/mount",
          "volumes/kubernetes.io~projected/kube-api-access-1",
          "volumeDevices/kubernetes.io~csi/pvc-blk"}) {
      fs::create_directories(pod_ / d);
    }
    fs::create_directories(outside_ / "data");
    fs::create_directories(outside_ / "pvc-y" / "mount");
    testing::WriteStringToFile(outside_ / "data" / "secret", "outside");
    Result<Root> root = OpenRoot(pods_.string());
    ASSERT_TRUE(root.ok()) << root.status().ToString();
    root_ = std::move(root).value();
  }

  Result<ResolvedVolume> Resolve(const std::string& uid, const std::string& volume_dir,
                                 bool block = false) {
    return ResolvePodVolume(root_, {.pod_uid = uid,
                                    .volume_dir = volume_dir,
                                    .block = block,
                                    .description = "volume \"v\" of pod ns/web"});
  }

  // A second pod directory, as in kubelet, for a test to plant things in.
  fs::path MakePod(const std::string& uid) {
    fs::create_directories(pods_ / uid / "volumes" / "kubernetes.io~projected" / "token");
    return pods_ / uid;
  }

  fs::path pods_;
  fs::path outside_;
  fs::path pod_;
  Root root_;
};

TEST_P(ResolvePodVolumeTest, FindsEmptyDirVolume) {
  Result<ResolvedVolume> v = Resolve(kUid, "data");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->rel_path, std::string(kUid) + "/volumes/kubernetes.io~empty-dir/data");
  EXPECT_EQ(v->plugin, "kubernetes.io~empty-dir");
  EXPECT_TRUE(SameFile(v->dir.get(), pod_ / "volumes/kubernetes.io~empty-dir/data"));
  // What the uploader reads through: read-only, a directory, close-on-exec.
  EXPECT_EQ(::fcntl(v->dir.get(), F_GETFL) & (O_ACCMODE | O_PATH), O_RDONLY);
  EXPECT_TRUE(::fcntl(v->dir.get(), F_GETFD) & FD_CLOEXEC);
  struct stat st {};
  ASSERT_EQ(::fstat(v->dir.get(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_P(ResolvePodVolumeTest, FindsCsiMountDirectory) {
  Result<ResolvedVolume> v = Resolve(kUid, "pvc-x/mount");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->rel_path, std::string(kUid) + "/volumes/kubernetes.io~csi/pvc-x/mount");
  EXPECT_EQ(v->plugin, "kubernetes.io~csi");
  EXPECT_TRUE(SameFile(v->dir.get(), pod_ / "volumes/kubernetes.io~csi/pvc-x/mount"));
}

TEST_P(ResolvePodVolumeTest, BlockLooksUnderVolumeDevicesOnly) {
  Result<ResolvedVolume> v = Resolve(kUid, "pvc-blk", /*block=*/true);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->rel_path, std::string(kUid) + "/volumeDevices/kubernetes.io~csi/pvc-blk");
  EXPECT_TRUE(SameFile(v->dir.get(), pod_ / "volumeDevices/kubernetes.io~csi/pvc-blk"));

  Result<ResolvedVolume> fs_volume_as_block = Resolve(kUid, "data", /*block=*/true);
  ASSERT_FALSE(fs_volume_as_block.ok());
  EXPECT_EQ(fs_volume_as_block.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(fs_volume_as_block.status().message(),
              HasSubstr(std::string(kUid) + "/volumeDevices/*/data"));
  Result<ResolvedVolume> block_as_fs = Resolve(kUid, "pvc-blk");
  EXPECT_EQ(block_as_fs.status().code(), StatusCode::kNotFound);
}

TEST_P(ResolvePodVolumeTest, MissingPodDirectorySaysWhy) {
  const std::string other = "0c6b9e3e-1111-4222-8333-444455556666";
  Result<ResolvedVolume> v = Resolve(other, "data");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(v.status().message(),
              AllOf(HasSubstr("volume \"v\" of pod ns/web (uid " + other + ")"),
                    HasSubstr("pod has no directory " + other + " under " + pods_.string()),
                    HasSubstr("not running on this node, or --host-pods does not point at the "
                              "kubelet pods directory")));
}

TEST_P(ResolvePodVolumeTest, PodWithoutVolumesDirectory) {
  const std::string uid = "no-volumes";
  fs::create_directories(pods_ / uid / "containers");
  Result<ResolvedVolume> v = Resolve(uid, "data");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(v.status().message(),
              HasSubstr("no directory no-volumes/volumes under " + pods_.string() +
                        ": no volume of the pod is mounted on this node"));
}

TEST_P(ResolvePodVolumeTest, DeclaredButUnmountedVolumeNamesTheSearch) {
  // velero#5036: "expected one matching path, got 0" becomes a sentence.
  Result<ResolvedVolume> v = Resolve(kUid, "cache");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(v.status().message(),
              HasSubstr("volume \"v\" of pod ns/web (uid " + std::string(kUid) +
                        "): no directory " + kUid + "/volumes/*/cache under " + pods_.string() +
                        ": the volume is declared but not mounted on this node"));
  EXPECT_THAT(v.status().message(), Not(HasSubstr("skipped")));
}

TEST_P(ResolvePodVolumeTest, DefaultDescriptionNamesTheVolumeDirectory) {
  Result<ResolvedVolume> v = ResolvePodVolume(root_, {.pod_uid = kUid, .volume_dir = "cache"});
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(),
              HasSubstr("volume \"cache\" of pod (uid " + std::string(kUid) + "): no directory"));
}

TEST_P(ResolvePodVolumeTest, SeveralMatchesAreAllListed) {
  fs::create_directories(pod_ / "volumes/kubernetes.io~nfs/data");
  Result<ResolvedVolume> v = Resolve(kUid, "data");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(),
              AllOf(HasSubstr("2 directories match " + std::string(kUid) + "/volumes/*/data"),
                    HasSubstr(std::string(kUid) + "/volumes/kubernetes.io~empty-dir/data"),
                    HasSubstr(std::string(kUid) + "/volumes/kubernetes.io~nfs/data")));
}

TEST_P(ResolvePodVolumeTest, MalformedNamesAreInvalidArgument) {
  const std::vector<std::string> bad_uids = {"",
                                             ".",
                                             "..",
                                             "a/b",
                                             "/etc",
                                             "../etc",
                                             kUid + std::string("/"),
                                             "x\ny",
                                             std::string("a\0b", 3),
                                             std::string(256, 'a')};
  for (const std::string& uid : bad_uids) {
    Result<ResolvedVolume> v = Resolve(uid, "data");
    ASSERT_FALSE(v.ok()) << uid;
    EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << uid;
    EXPECT_THAT(v.status().message(), HasSubstr("invalid pod uid"));
    EXPECT_THAT(v.status().message(), Not(HasSubstr("\n")));
  }
  const std::vector<std::string> bad_dirs = {"",         ".",         "..",
                                             "../data",  "/data",     "data/",
                                             "/",        "a//b",      "a/b/c",
                                             "pvc-x/..", "../../etc", "data/../../outside",
                                             "pvc x",    "x\ny",      std::string("d\0", 2)};
  for (const std::string& dir : bad_dirs) {
    Result<ResolvedVolume> v = Resolve(kUid, dir);
    ASSERT_FALSE(v.ok()) << dir;
    EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << dir;
    EXPECT_THAT(v.status().message(), HasSubstr("invalid volume directory"));
    EXPECT_THAT(v.status().message(), Not(HasSubstr("\n")));
  }
  Result<ResolvedVolume> v = Resolve(kUid, "x\ny");
  EXPECT_THAT(v.status().message(), HasSubstr("\"x\\x0ay\""));
}

TEST_P(ResolvePodVolumeTest, PodDirectorySymlinkIsRefused) {
  // To the agent's /etc, to a directory outside the root shaped like a pod, and to a real pod.
  fs::create_directories(outside_ / "volumes" / "kubernetes.io~empty-dir" / "data");
  fs::create_symlink("/etc", pods_ / "to-etc");
  fs::create_symlink(outside_, pods_ / "to-outside");
  fs::create_symlink(kUid, pods_ / "to-sibling");
  for (const char* uid : {"to-etc", "to-outside", "to-sibling"}) {
    Result<ResolvedVolume> v = Resolve(uid, "data");
    ASSERT_FALSE(v.ok()) << uid;
    EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << uid;
    EXPECT_THAT(v.status().message(), HasSubstr(std::string(uid) + " under " + pods_.string() +
                                                " is a symlink: refused"));
  }
}

TEST_P(ResolvePodVolumeTest, VolumesDirectorySymlinkIsRefused) {
  fs::create_directories(outside_ / "kubernetes.io~empty-dir" / "data");
  fs::create_directories(pods_ / "p1");
  fs::create_symlink(outside_, pods_ / "p1" / "volumes");
  fs::create_directories(pods_ / "p2");
  fs::create_symlink("../" + std::string(kUid) + "/volumes", pods_ / "p2" / "volumes");
  for (const char* uid : {"p1", "p2"}) {
    Result<ResolvedVolume> v = Resolve(uid, "data");
    ASSERT_FALSE(v.ok()) << uid;
    EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << uid;
    EXPECT_THAT(v.status().message(), HasSubstr(std::string(uid) + "/volumes under " +
                                                pods_.string() + " is a symlink: refused"));
  }
}

TEST_P(ResolvePodVolumeTest, SymlinkedPluginDirectoryIsSkippedAndNamed) {
  const fs::path pod = MakePod("p3");
  fs::create_symlink(outside_, pod / "volumes" / "kubernetes.io~evil");
  Result<ResolvedVolume> v = Resolve("p3", "data");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(
      v.status().message(),
      AllOf(HasSubstr("declared but not mounted on this node"),
            HasSubstr("skipped symlinked plugin directories: p3/volumes/kubernetes.io~evil")));

  // Next to a real match it changes nothing.
  fs::create_directories(pod / "volumes" / "kubernetes.io~empty-dir" / "data");
  Result<ResolvedVolume> real = Resolve("p3", "data");
  ASSERT_TRUE(real.ok()) << real.status().ToString();
  EXPECT_TRUE(SameFile(real->dir.get(), pod / "volumes/kubernetes.io~empty-dir/data"));
}

TEST_P(ResolvePodVolumeTest, VolumeDirectorySymlinkIsRefused) {
  const fs::path pod = MakePod("p4");
  const fs::path empty_dir = pod / "volumes" / "kubernetes.io~empty-dir";
  fs::create_directories(empty_dir);
  fs::create_symlink(outside_ / "data", empty_dir / "abs");
  fs::create_symlink("../../../../outside/data", empty_dir / "rel");
  fs::create_symlink("/etc", empty_dir / "etc");
  fs::create_symlink("token", pod / "volumes" / "kubernetes.io~projected" / "inside");
  for (const char* dir : {"abs", "rel", "etc", "inside"}) {
    Result<ResolvedVolume> v = Resolve("p4", dir);
    ASSERT_FALSE(v.ok()) << dir;
    EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << dir;
    EXPECT_THAT(v.status().message(), HasSubstr(": a symlink on the path: refused"));
  }
}

TEST_P(ResolvePodVolumeTest, CsiPvDirectorySymlinkIsRefused) {
  const fs::path pod = MakePod("p5");
  fs::create_directories(pod / "volumes" / "kubernetes.io~csi");
  fs::create_symlink(outside_ / "pvc-y", pod / "volumes" / "kubernetes.io~csi" / "pvc-y");
  Result<ResolvedVolume> v = Resolve("p5", "pvc-y/mount");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("p5/volumes/kubernetes.io~csi/pvc-y/mount under " +
                                              pods_.string() + ": a symlink on the path: refused"));
}

TEST_P(ResolvePodVolumeTest, SymlinkNextToARealMatchIsListedNotChosen) {
  fs::create_directories(pod_ / "volumes" / "kubernetes.io~nfs");
  fs::create_symlink(outside_ / "data", pod_ / "volumes" / "kubernetes.io~nfs" / "data");
  Result<ResolvedVolume> v = Resolve(kUid, "data");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(),
              HasSubstr("kubernetes.io~nfs/data (a symlink on the path: refused)"));
}

TEST_P(ResolvePodVolumeTest, NonDirectoryMatchIsInvalidArgument) {
  const fs::path pod = MakePod("p6");
  fs::create_directories(pod / "volumes" / "kubernetes.io~empty-dir");
  testing::WriteStringToFile(pod / "volumes" / "kubernetes.io~empty-dir" / "data", "a file");
  ::mkfifo((pod / "volumes" / "kubernetes.io~projected" / "fifo").c_str(), 0600);
  for (const char* dir : {"data", "fifo", "data/mount"}) {
    Result<ResolvedVolume> v = Resolve("p6", dir);
    ASSERT_FALSE(v.ok()) << dir;
    EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << dir;
    EXPECT_THAT(v.status().message(), HasSubstr("not a directory")) << dir;
  }
}

TEST_P(ResolvePodVolumeTest, PodDirectoryThatIsAFileIsInvalidArgument) {
  testing::WriteStringToFile(pods_ / "flat", "");
  Result<ResolvedVolume> v = Resolve("flat", "data");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(),
              HasSubstr("flat under " + pods_.string() + " is not a directory"));
}

TEST_P(ResolvePodVolumeTest, RootGivenAsSymlinkIsFollowed) {
  // --host-pods is configuration: a symlinked kubelet directory (/var/lib/kubelet -> /data/...)
  // is fine.
  fs::create_symlink(pods_, tmp_.path() / "pods-link");
  Result<Root> root = OpenRoot((tmp_.path() / "pods-link").string());
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  Result<ResolvedVolume> v = ResolvePodVolume(*root, {.pod_uid = kUid, .volume_dir = "data"});
  ASSERT_TRUE(v.ok()) << v.status().ToString();
}

TEST_P(ResolvePodVolumeTest, PermissionDeniedPassesThrough) {
  // Root reads everything, so the denial is made as nobody in a child.
  ASSERT_EQ(::chmod(pods_.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(pod_.c_str(), 0755), 0);
  ASSERT_EQ(::chmod((pod_ / "volumes").c_str(), 0700), 0);
  const int code = RunInChild([&] {
    if (::geteuid() == 0 &&
        (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)) {
      return 3;
    }
    Result<ResolvedVolume> v = Resolve(kUid, "data");
    std::fprintf(stderr, "child: %s\n", v.status().ToString().c_str());
    if (v.ok()) return 1;
    if (v.status().code() != StatusCode::kPermissionDenied) return 2;
    return v.status().message().find(std::string(kUid) + "/volumes under " + pods_.string()) !=
                   std::string::npos
               ? 0
               : 4;
  });
  if (code == 3) GTEST_SKIP() << "cannot switch to uid 65534";
  EXPECT_EQ(code, 0) << "1: resolved, 2: another code, 4: message does not name the path";
}

TEST_P(ResolvePodVolumeTest, MountedCsiVolumeIsCrossedAndIsAMountPoint) {
  const fs::path mount_dir = pod_ / "volumes/kubernetes.io~csi/pvc-x/mount";
  const int code = RunInChild([&] {
    if (::unshare(CLONE_NEWNS) != 0) return 3;
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 3;
    if (::mount("tmpfs", mount_dir.c_str(), "tmpfs", 0, "size=1m") != 0) return 3;
    testing::WriteStringToFile(mount_dir / "on-the-volume", "x");
    // The root fd opened before unshare walks the parent's mount tree, where nothing is mounted.
    // (In the agent, a CSI mount made after start-up reaches the agent's own mount tree through
    // HostToContainer propagation, so one root fd sees it.)
    Result<Root> root = OpenRoot(pods_.string());
    if (!root.ok()) return 1;
    root_ = std::move(root).value();
    Result<ResolvedVolume> v = Resolve(kUid, "pvc-x/mount");
    if (!v.ok()) return 1;
    struct stat st {};
    if (::fstatat(v->dir.get(), "on-the-volume", &st, 0) != 0) return 2;
    Result<bool> mounted = IsMountPoint(v->dir.get());
    if (!mounted.ok() || !*mounted) return 4;
    Result<ResolvedVolume> empty_dir = Resolve(kUid, "data");
    if (!empty_dir.ok()) return 1;
    Result<bool> not_mounted = IsMountPoint(empty_dir->dir.get());
    if (!not_mounted.ok() || *not_mounted) return 5;
    return 0;
  });
  if (code == 3) GTEST_SKIP() << "cannot mount a tmpfs in a new mount namespace here";
  EXPECT_EQ(code, 0) << "1: not resolved, 2: not the mounted fs, 4/5: IsMountPoint wrong";
}

TEST_P(ResolvePodVolumeTest, SeccompAnsweringEnosysSwitchesToTheWalk) {
  // A container runtime's seccomp profile that predates openat2: the probe passed in this process,
  // then the filter arrives, and the next call must fall back rather than fail.
  fs::create_symlink("/etc", pods_ / "to-etc");
  const int code = RunInChild([&] {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 3;
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return 3;
    if (::syscall(SYS_openat2, AT_FDCWD, "/", nullptr, 0) != -1 || errno != ENOSYS) return 3;
    Result<ResolvedVolume> v = Resolve(kUid, "pvc-x/mount");
    if (!v.ok() || !SameFile(v->dir.get(), pod_ / "volumes/kubernetes.io~csi/pvc-x/mount"))
      return 1;
    if (internal::UsesOpenat2()) return 2;
    Result<ResolvedVolume> escape = Resolve("to-etc", "data");
    if (escape.ok() || escape.status().code() != StatusCode::kInvalidArgument) return 4;
    return 0;
  });
  if (code == 3) GTEST_SKIP() << "cannot install a seccomp filter here";
  EXPECT_EQ(code, 0) << "1: not resolved, 2: still on openat2, 4: symlink not refused";
}

INSTANTIATE_TEST_SUITE_P(Resolution, ResolvePodVolumeTest, ::testing::Values(false, true),
                         ResolutionName);

// A fake host "/" (what --host-root shows of the host) with a local-path-provisioner volume, its
// own /etc, and symlinks of every kind.
class ResolveHostPathTest : public ResolutionTest {
 protected:
  void SetUp() override {
    ResolutionTest::SetUp();
    if (IsSkipped()) return;
    host_ = tmp_.path() / "host";
    provisioner_ = host_ / "var" / "local-path-provisioner";
    fs::create_directories(provisioner_ / "pvc-1_ns_claim");
    fs::create_directories(host_ / "etc");
    fs::create_directories(host_ / "data" / "x");
    testing::WriteStringToFile(host_ / "etc" / "passwd", "the host's");
    Result<Root> root = OpenRoot(host_.string());
    ASSERT_TRUE(root.ok()) << root.status().ToString();
    root_ = std::move(root).value();
  }

  fs::path host_;
  fs::path provisioner_;
  Root root_;
};

TEST_P(ResolveHostPathTest, FindsProvisionerDirectory) {
  for (const char* p : {"/var/local-path-provisioner/pvc-1_ns_claim",
                        "//var/./local-path-provisioner//pvc-1_ns_claim/"}) {
    Result<ResolvedVolume> v = ResolveHostPath(root_, p);
    ASSERT_TRUE(v.ok()) << p << ": " << v.status().ToString();
    EXPECT_EQ(v->rel_path, "var/local-path-provisioner/pvc-1_ns_claim");
    EXPECT_EQ(v->plugin, "");
    EXPECT_TRUE(SameFile(v->dir.get(), provisioner_ / "pvc-1_ns_claim"));
    EXPECT_EQ(::fcntl(v->dir.get(), F_GETFL) & (O_ACCMODE | O_PATH), O_RDONLY);
  }
}

TEST_P(ResolveHostPathTest, AbsoluteSymlinksResolveInsideTheHostRoot) {
  fs::create_symlink("/etc", host_ / "var" / "x");  // /var/x -> /etc means the host's /etc
  fs::create_directories(host_ / "var" / "lib");
  fs::create_symlink("/data/x", host_ / "var" / "lib" / "x");
  fs::create_symlink("../../../../../../../etc", host_ / "var" / "up");  // ".." stops at the top
  const std::vector<std::pair<std::string, fs::path>> cases = {
      {"/var/x", host_ / "etc"}, {"/var/lib/x", host_ / "data" / "x"}, {"/var/up", host_ / "etc"}};
  for (const auto& [path, want] : cases) {
    Result<ResolvedVolume> v = ResolveHostPath(root_, path);
    ASSERT_TRUE(v.ok()) << path << ": " << v.status().ToString();
    EXPECT_TRUE(SameFile(v->dir.get(), want)) << path;
    EXPECT_FALSE(SameFile(v->dir.get(), "/etc")) << path;
  }
}

TEST_P(ResolveHostPathTest, SymlinkToWhatExistsOnlyOutsideIsNotFound) {
  // The agent's own /usr exists; the fake host has none. Following out would have found it.
  ASSERT_TRUE(fs::is_directory("/usr"));
  fs::create_symlink("/usr", host_ / "var" / "usr");
  Result<ResolvedVolume> v = ResolveHostPath(root_, "/var/usr");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(v.status().message(),
              HasSubstr("host path \"/var/usr\": not found under " + host_.string() +
                        " (the host's /): it does not exist on this node"));
}

TEST_P(ResolveHostPathTest, MalformedPathsAreInvalidArgument) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"var/local-path-provisioner/pvc-1_ns_claim", "not absolute"},
      {"", "not absolute"},
      {"/var/../etc", "contains a \"..\" component"},
      {"/var/local-path-provisioner/pvc-1_ns_claim/..", "contains a \"..\" component"},
      {"/", "is the host root"},
      {"//./", "is the host root"},
      {std::string("/var\0/x", 7), "NUL"},
  };
  for (const auto& [path, want] : cases) {
    Result<ResolvedVolume> v = ResolveHostPath(root_, path);
    ASSERT_FALSE(v.ok()) << path;
    EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << path;
    EXPECT_THAT(v.status().message(), HasSubstr(want)) << path;
  }
}

TEST_P(ResolveHostPathTest, NonDirectoryIsInvalidArgument) {
  fs::create_symlink("/etc/passwd", host_ / "var" / "pw");
  for (const char* p : {"/etc/passwd", "/var/pw", "/etc/passwd/x"}) {
    Result<ResolvedVolume> v = ResolveHostPath(root_, p);
    ASSERT_FALSE(v.ok()) << p;
    EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << p;
    EXPECT_THAT(v.status().message(), HasSubstr("is not a directory")) << p;
  }
}

TEST_P(ResolveHostPathTest, NarrowerRootFollowsOnlySymlinksThatStayBelow) {
  Result<Root> narrow = OpenRoot(provisioner_.string());
  ASSERT_TRUE(narrow.ok()) << narrow.status().ToString();
  const std::string on_host = "/var/local-path-provisioner";
  fs::create_symlink("pvc-1_ns_claim", provisioner_ / "alias");
  fs::create_symlink("/var/local-path-provisioner/pvc-1_ns_claim", provisioner_ / "absolute");
  fs::create_symlink("../../../etc", provisioner_ / "climb");

  Result<ResolvedVolume> v =
      ResolveHostPath(*narrow, "/var/local-path-provisioner/pvc-1_ns_claim", on_host);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->rel_path, "pvc-1_ns_claim");
  EXPECT_TRUE(SameFile(v->dir.get(), provisioner_ / "pvc-1_ns_claim"));
  Result<ResolvedVolume> alias =
      ResolveHostPath(*narrow, "/var/local-path-provisioner/alias", on_host);
  ASSERT_TRUE(alias.ok()) << alias.status().ToString();
  EXPECT_TRUE(SameFile(alias->dir.get(), provisioner_ / "pvc-1_ns_claim"));

  for (const char* p :
       {"/var/local-path-provisioner/absolute", "/var/local-path-provisioner/climb"}) {
    Result<ResolvedVolume> out = ResolveHostPath(*narrow, p, on_host);
    ASSERT_FALSE(out.ok()) << p;
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << p;
    EXPECT_THAT(out.status().message(), HasSubstr("leads out of " + provisioner_.string() +
                                                  " (the host's /var/local-path-provisioner)"));
  }
  for (const char* p : {"/srv/pvc", "/var/local-path-provisionerX/pvc-1_ns_claim", "/var"}) {
    Result<ResolvedVolume> out = ResolveHostPath(*narrow, p, on_host);
    ASSERT_FALSE(out.ok()) << p;
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << p;
    EXPECT_THAT(out.status().message(), HasSubstr("not below /var/local-path-provisioner")) << p;
  }
}

INSTANTIATE_TEST_SUITE_P(Resolution, ResolveHostPathTest, ::testing::Values(false, true),
                         ResolutionName);

class MissingPodDirsTest : public ::testing::Test {
 protected:
  testing::TempDir tmp_;
};

TEST_F(MissingPodDirsTest, ReportsMissingInOrderAndCountsSymlinksAndFilesAsMissing) {
  const fs::path pods = tmp_.path() / "pods";
  fs::create_directories(pods / "uid-a");
  fs::create_directories(pods / "0123456789abcdef0123456789abcdef");  // a mirror pod's hash
  fs::create_symlink("uid-a", pods / "uid-link");
  testing::WriteStringToFile(pods / "uid-file", "");
  Result<Root> root = OpenRoot(pods.string());
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  Result<std::vector<std::string>> missing = MissingPodDirs(
      *root, {"uid-z", "uid-a", "uid-link", "0123456789abcdef0123456789abcdef", "uid-file"});
  ASSERT_TRUE(missing.ok()) << missing.status().ToString();
  EXPECT_EQ(*missing, (std::vector<std::string>{"uid-z", "uid-link", "uid-file"}));

  Result<std::vector<std::string>> none = MissingPodDirs(*root, {"uid-a"});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(MissingPodDirsTest, MalformedUidIsInvalidArgument) {
  Result<Root> root = OpenRoot(tmp_.str());
  ASSERT_TRUE(root.ok());
  for (const char* uid : {"..", "a/b", "/etc", ""}) {
    Result<std::vector<std::string>> missing = MissingPodDirs(*root, {uid});
    ASSERT_FALSE(missing.ok()) << uid;
    EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument) << uid;
    EXPECT_THAT(missing.status().message(), HasSubstr("invalid pod uid"));
  }
}

TEST(OpenRootTest, MissingOrNotADirectory) {
  testing::TempDir tmp;
  Result<Root> missing = OpenRoot((tmp.path() / "host_pods").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(tmp.str() + "/host_pods"));

  testing::WriteStringToFile(tmp.path() / "file", "");
  Result<Root> file = OpenRoot((tmp.path() / "file").string());
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kInvalidArgument);

  Result<Root> ok = OpenRoot(tmp.str());
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->path, tmp.str());
  EXPECT_TRUE(::fcntl(ok->fd.get(), F_GETFD) & FD_CLOEXEC);
}

TEST(IsMountPointTest, PlainDirectoryIsNotAndProcIs) {
  testing::TempDir tmp;
  fs::create_directories(tmp.path() / "d");
  const Fd d(::open((tmp.path() / "d").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(d.valid());
  Result<bool> plain = IsMountPoint(d.get());
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_FALSE(*plain);

  const Fd proc(::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(proc.valid());
  Result<bool> mounted = IsMountPoint(proc.get());
  ASSERT_TRUE(mounted.ok()) << mounted.status().ToString();
  EXPECT_TRUE(*mounted);
}

}  // namespace
}  // namespace fsb::hostpath
