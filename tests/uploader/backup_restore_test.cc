#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>

#include "base/fd.h"
#include "repo/check.h"
#include "repo/pack_saver.h"
#include "repo/repository.h"
#include "tests/support/faulty_backend.h"
#include "tests/support/mem_backend.h"
#include "tests/support/test_util.h"
#include "uploader/backup.h"
#include "uploader/restore.h"

namespace fsb::uploader {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

void Write(const fs::path& p, const Bytes& b) {
  fs::create_directories(p.parent_path());
  testing::WriteStringToFile(p, AsString(b));
}

class BackupRestoreTest : public ::testing::Test {
 protected:
  BackupRestoreTest() {
    repo::InitOptions o;
    o.scrypt_n = 1024;
    faulty_ = std::make_unique<testing::FaultyBackend>(mem_);
    auto f = std::make_unique<ForwardingBackend>(*faulty_);
    repo_ = std::move(*repo::Repository::Init(std::move(f), Secret<std::string>("pw"), o));
    src_ = dir_.path() / "src";
    fs::create_directories(src_);
  }

  // Hands the repository a backend it does not own, so the test keeps the FaultyBackend.
  class ForwardingBackend : public repo::Backend {
   public:
    explicit ForwardingBackend(repo::Backend& b) : b_(b) {}
    std::string Location() const override { return b_.Location(); }
    Status Save(const repo::Handle& h, ByteView d) override { return b_.Save(h, d); }
    Result<Bytes> Load(const repo::Handle& h, uint64_t o, uint64_t l) override { return b_.Load(h, o, l); }
    Result<uint64_t> Size(const repo::Handle& h) override { return b_.Size(h); }
    Status List(repo::FileType t, const std::function<Status(const repo::FileInfo&)>& fn) override {
      return b_.List(t, fn);
    }
    Status Remove(const repo::Handle& h) override { return b_.Remove(h); }
    Status Create() override { return b_.Create(); }
    repo::BackendProperties Properties() const override { return b_.Properties(); }

   private:
    repo::Backend& b_;
  };

  Result<BackupSummary> Backup(std::vector<std::string> targets = {"."},
                               std::vector<std::string> excludes = {}) {
    BackupOptions o;
    o.targets = std::move(targets);
    o.excludes = std::move(excludes);
    o.hostname = "test-host";
    o.file_workers = 3;
    std::error_code ec;
    fs::path old = fs::current_path();
    fs::current_path(src_);
    Result<BackupSummary> r = RunBackup(*repo_, o, nullptr);
    fs::current_path(old, ec);
    return r;
  }

  Result<RestoreSummary> Restore(const repo::Id& snap, const fs::path& target, RestoreOptions o = {}) {
    auto s = repo_->LoadSnapshot(snap);
    if (!s.ok()) return s.status();
    o.target = target.string();
    o.verify = true;
    return RunRestore(*repo_, s->tree, o, nullptr);
  }

  void ExpectSameContent(const fs::path& a, const fs::path& b) {
    for (auto& e : fs::recursive_directory_iterator(a)) {
      fs::path rel = fs::relative(e.path(), a);
      fs::path other = b / rel;
      ASSERT_TRUE(fs::exists(fs::symlink_status(other))) << rel;
      if (e.is_regular_file() && !e.is_symlink()) {
        EXPECT_EQ(testing::ReadFileToString(e.path()), testing::ReadFileToString(other)) << rel;
      }
    }
  }

  testing::TempDir dir_;
  testing::MemBackend mem_;
  std::unique_ptr<testing::FaultyBackend> faulty_;
  std::unique_ptr<repo::Repository> repo_;
  fs::path src_;
};

TEST_F(BackupRestoreTest, RoundTripsContentAndIsCheckClean) {
  Write(src_ / "small.txt", ToBytes("hello\n"));
  Write(src_ / "empty", {});
  // Several chunks whatever the repository's random polynomial: chunks are at most 8 MiB.
  Write(src_ / "big.bin", testing::SeededRandomBytes(1, 17 << 20));
  Write(src_ / "d1/d2/d3/deep.txt", ToBytes("deep"));
  fs::create_directories(src_ / "emptydir");
  fs::create_symlink("small.txt", src_ / "link");
  Result<BackupSummary> sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  EXPECT_TRUE(sum->errors.empty());
  EXPECT_EQ(sum->files_new, 4u);
  EXPECT_GE(sum->data_blobs, 5u);  // small.txt, deep.txt and at least 3 chunks of big.bin
  EXPECT_EQ(sum->snapshot.paths, std::vector<std::string>{src_.string()});

  repo::CheckOptions co;
  co.read_data = true;
  auto check = repo::RunCheck(*repo_, co);
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->errors.empty()) << check->errors[0];

  fs::path out = dir_.path() / "out";
  auto rs = Restore(sum->snapshot_id, out);
  ASSERT_TRUE(rs.ok()) << rs.status().ToString();
  EXPECT_TRUE(rs->errors.empty()) << rs->errors[0];
  EXPECT_EQ(rs->verified_files, 4u);
  ExpectSameContent(src_, out);
  EXPECT_EQ(fs::read_symlink(out / "link"), "small.txt");
  EXPECT_TRUE(fs::is_directory(out / "emptydir"));
}

TEST_F(BackupRestoreTest, UnchangedFilesAreNotReadAgain) {
  for (int i = 0; i < 20; i++) Write(src_ / ("f" + std::to_string(i)), testing::SeededRandomBytes(i, 10000));
  auto first = Backup();
  ASSERT_TRUE(first.ok());
  Write(src_ / "f3", testing::SeededRandomBytes(99, 10000));
  Write(src_ / "new", ToBytes("new"));
  faulty_->ResetCounts();
  auto second = Backup();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->parent, first->snapshot_id);
  EXPECT_EQ(second->files_unmodified, 19u);
  EXPECT_EQ(second->files_changed, 1u);
  EXPECT_EQ(second->files_new, 1u);
  EXPECT_EQ(second->data_blobs, 2u);
  fs::path out = dir_.path() / "out";
  auto rs = Restore(second->snapshot_id, out);
  ASSERT_TRUE(rs.ok());
  EXPECT_TRUE(rs->errors.empty());
  ExpectSameContent(src_, out);
}

TEST_F(BackupRestoreTest, ParallelWalkersMakeTheSameTreesAsOne) {
  // Wide and deep, so idle walkers are handed directories at every level.
  for (int a = 0; a < 6; a++) {
    for (int b = 0; b < 5; b++) {
      fs::path d = src_ / ("a" + std::to_string(a)) / ("b" + std::to_string(b));
      for (int f = 0; f < 4; f++) {
        Write(d / ("f" + std::to_string(f)), testing::SeededRandomBytes(a * 100 + b * 10 + f, 3000));
      }
      fs::create_directories(d / "c" / "d" / "e");
      Write(d / "c" / "d" / "e" / "leaf", ToBytes("leaf " + std::to_string(a) + std::to_string(b)));
    }
  }
  auto run = [&](int walkers) {
    BackupOptions o;
    o.targets = {src_.string()};
    o.hostname = "test-host";
    o.no_parent = true;
    o.walk_workers = walkers;
    o.file_workers = 2;
    return RunBackup(*repo_, o, nullptr);
  };
  auto one = run(1);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  for (int walkers : {2, 4, 8}) {
    auto many = run(walkers);
    ASSERT_TRUE(many.ok()) << many.status().ToString();
    EXPECT_EQ(many->snapshot.tree, one->snapshot.tree) << walkers << " walkers";
    EXPECT_EQ(many->files_new, 6u * 5 * 5);
    EXPECT_TRUE(many->errors.empty());
  }
  fs::path out = dir_.path() / "out";
  auto rs = Restore(one->snapshot_id, out);
  ASSERT_TRUE(rs.ok());
  ExpectSameContent(src_, out / fs::relative(src_, "/"));
}

// Pages resident in the page cache, of the first `len` bytes of `path`.
size_t ResidentPages(const fs::path& path, size_t len) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  void* m = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (m == MAP_FAILED) return 0;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((len + page - 1) / page);
  size_t n = 0;
  if (mincore(m, len, vec.data()) == 0) {
    for (unsigned char v : vec) n += v & 1;
  }
  munmap(m, len);
  return n;
}

TEST_F(BackupRestoreTest, BackupKeepsHotFilesInThePageCacheAndDropsColdOnes) {
  constexpr size_t kLen = 2 << 20;
  Write(src_ / "cold", testing::SeededRandomBytes(1, kLen));
  Write(src_ / "hot", testing::SeededRandomBytes(2, kLen));
  {
    Fd cold(open((src_ / "cold").c_str(), O_RDONLY | O_CLOEXEC));
    fdatasync(cold.get());
    posix_fadvise(cold.get(), 0, 0, POSIX_FADV_DONTNEED);
  }
  const size_t pages = kLen / static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (ResidentPages(src_ / "cold", kLen) != 0) GTEST_SKIP() << "this file system keeps dropped pages (tmpfs?)";
  ASSERT_EQ(testing::ReadFileToString(src_ / "hot").size(), kLen);  // an application reads it
  ASSERT_EQ(ResidentPages(src_ / "hot", kLen), pages);
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  EXPECT_EQ(sum->files_new, 2u);
  EXPECT_EQ(ResidentPages(src_ / "hot", kLen), pages) << "the backup evicted an application's pages";
  EXPECT_EQ(ResidentPages(src_ / "cold", kLen), 0u) << "the backup left its reads in the cache";
}

TEST_F(BackupRestoreTest, UnchangedDirectoriesReuseTheParentsTrees) {
  Write(src_ / "a/b/c/deep", ToBytes("deep"));
  Write(src_ / "a/side/f", ToBytes("side"));
  Write(src_ / "top", ToBytes("top"));
  auto first = Backup();
  ASSERT_TRUE(first.ok());
  auto same = Backup();
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->snapshot.tree, first->snapshot.tree);
  EXPECT_EQ(same->tree_blobs, 0u);
  EXPECT_EQ(same->dirs_changed, 0u);
  EXPECT_GE(same->dirs_unmodified, 5u);  // a, a/b, a/b/c, a/side and the path to src_
  // A change deep down makes new trees on its path only, and exactly those a fresh backup makes.
  Write(src_ / "a/b/c/deep", ToBytes("deeper"));
  auto changed = Backup();
  ASSERT_TRUE(changed.ok());
  EXPECT_NE(changed->snapshot.tree, first->snapshot.tree);
  EXPECT_EQ(changed->dirs_unmodified, 1u);  // a/side
  BackupOptions o;
  o.source_dir_fd = open(src_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  o.source_path = src_.string();
  o.hostname = "test-host";
  o.no_parent = true;
  auto fresh = RunBackup(*repo_, o, nullptr);
  close(o.source_dir_fd);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->snapshot.tree, changed->snapshot.tree);
}

TEST_F(BackupRestoreTest, SameDataTwiceAddsNothing) {
  Write(src_ / "a", testing::SeededRandomBytes(5, 3 << 20));
  Write(src_ / "copy-of-a", testing::SeededRandomBytes(5, 3 << 20));
  auto first = Backup();
  ASSERT_TRUE(first.ok());
  // Identical files share every chunk.
  EXPECT_EQ(first->data_added, uint64_t(3) << 20);
  auto again = Backup();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->data_blobs, 0u);
  EXPECT_EQ(again->tree_blobs, 0u);
  EXPECT_EQ(again->snapshot.tree, first->snapshot.tree);
}

TEST_F(BackupRestoreTest, AbsoluteTargetStoresItsComponents) {
  Write(src_ / "x/file", ToBytes("x"));
  auto sum = Backup({(src_ / "x").string()});
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  fs::path out = dir_.path() / "out";
  auto rs = Restore(sum->snapshot_id, out);
  ASSERT_TRUE(rs.ok());
  fs::path rel = fs::path((src_ / "x").string()).relative_path();
  EXPECT_EQ(testing::ReadFileToString(out / rel / "file"), "x");
}

TEST_F(BackupRestoreTest, ExcludesAndIncludes) {
  Write(src_ / "keep/a.txt", ToBytes("a"));
  Write(src_ / "keep/b.log", ToBytes("b"));
  Write(src_ / "cache/c.txt", ToBytes("c"));
  auto sum = Backup({"."}, {"*.log", "cache"});
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  fs::path out = dir_.path() / "out";
  ASSERT_TRUE(Restore(sum->snapshot_id, out).ok());
  EXPECT_TRUE(fs::exists(out / "keep/a.txt"));
  EXPECT_FALSE(fs::exists(out / "keep/b.log"));
  EXPECT_FALSE(fs::exists(out / "cache"));

  Write(src_ / "other/z.txt", ToBytes("z"));
  auto all = Backup();
  ASSERT_TRUE(all.ok());
  RestoreOptions ro;
  ro.includes = {"/keep/*.log"};
  fs::path inc = dir_.path() / "inc";
  auto rs = Restore(all->snapshot_id, inc, ro);
  ASSERT_TRUE(rs.ok());
  EXPECT_TRUE(fs::exists(inc / "keep/b.log"));
  EXPECT_FALSE(fs::exists(inc / "keep/a.txt"));
  EXPECT_FALSE(fs::exists(inc / "other"));
}

TEST_F(BackupRestoreTest, SubpathRestoresOnlyThatDirectory) {
  Write(src_ / "a/b/file", ToBytes("in b"));
  Write(src_ / "a/top", ToBytes("top"));
  auto sum = Backup();
  ASSERT_TRUE(sum.ok());
  RestoreOptions ro;
  ro.subpath = "/a/b";
  fs::path out = dir_.path() / "out";
  ASSERT_TRUE(Restore(sum->snapshot_id, out, ro).ok());
  EXPECT_EQ(testing::ReadFileToString(out / "file"), "in b");
  EXPECT_FALSE(fs::exists(out / "top"));
  ro.subpath = "/nope";
  auto missing = Restore(sum->snapshot_id, dir_.path() / "out2", ro);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(BackupRestoreTest, RepositoryFailureFailsBackupWithoutSnapshot) {
  Write(src_ / "big.bin", testing::SeededRandomBytes(3, 2 << 20));
  faulty_->FailAlways(testing::BackendOp::kSave, Status::Unavailable("disk on fire"));
  auto sum = Backup();
  ASSERT_FALSE(sum.ok());
  EXPECT_THAT(sum.status().message(), HasSubstr("disk on fire"));
  faulty_->ClearFaults();
  EXPECT_TRUE(repo_->ListSnapshotIds()->empty());
}

// Chunks of big files are hashed and stored on the encode pool while their readers wait for them:
// a repository failure in the middle must end the backup (no reader left waiting, no snapshot),
// whichever chunk it hits.
TEST_F(BackupRestoreTest, RepositoryFailureWhileBigFilesAreOnThePoolEndsTheBackup) {
  repo::RepositoryOptions options;
  options.pack_size = 1 << 20;  // a pack save every MiB or so: the failures land mid-file
  auto small_packs = repo::Repository::Open(std::make_unique<ForwardingBackend>(*faulty_),
                                            Secret<std::string>("pw"), options);
  ASSERT_TRUE(small_packs.ok()) << small_packs.status().ToString();
  repo_ = std::move(*small_packs);
  for (int i = 0; i < 4; i++) {
    Write(src_ / ("big" + std::to_string(i)), testing::SeededRandomBytes(40 + i, 6 << 20));
  }
  for (int nth : {1, 3, 8}) {
    faulty_->FailNth(testing::BackendOp::kSave, nth, Status::Unavailable("disk on fire"));
    auto sum = Backup();
    ASSERT_FALSE(sum.ok()) << "save " << nth;
    EXPECT_THAT(sum.status().message(), HasSubstr("disk on fire"));
    faulty_->ClearFaults();
    EXPECT_TRUE(repo_->ListSnapshotIds()->empty());
  }
  // And without a failure, the same files back up and come back.
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  ASSERT_TRUE(Restore(sum->snapshot_id, dir_.path() / "out").ok());
  ExpectSameContent(src_, dir_.path() / "out");
}

TEST_F(BackupRestoreTest, AllZeroChunksRestoreAsHoles) {
  Write(src_ / "zeros", Bytes(4 << 20, 0));
  auto sum = Backup();
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(sum->data_blobs, 1u);  // 512 KiB zero chunks all dedup to one blob
  fs::path out = dir_.path() / "out";
  ASSERT_TRUE(Restore(sum->snapshot_id, out).ok());
  struct stat st;
  ASSERT_EQ(stat((out / "zeros").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 4 << 20);
  EXPECT_LT(st.st_blocks * 512, 4 << 20);  // holes, not written zeros
}

TEST_F(BackupRestoreTest, SparseFileChunksLikeItsDenseCopyAndRestoresSparse) {
  // 6 MiB apparent, data only in the first and the fifth MiB; a dense copy of the same bytes.
  Bytes dense(6 << 20, 0);
  Bytes a = testing::SeededRandomBytes(21, 1 << 20), b = testing::SeededRandomBytes(22, 100000);
  std::copy(a.begin(), a.end(), dense.begin());
  std::copy(b.begin(), b.end(), dense.begin() + (4 << 20));
  Write(src_ / "dense", dense);
  {
    int fd = open((src_ / "sparse").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 6 << 20), 0);
    ASSERT_EQ(pwrite(fd, a.data(), a.size(), 0), ssize_t(a.size()));
    ASSERT_EQ(pwrite(fd, b.data(), b.size(), 4 << 20), ssize_t(b.size()));
    close(fd);
  }
  struct stat st;
  ASSERT_EQ(stat((src_ / "sparse").c_str(), &st), 0);
  if (uint64_t(st.st_blocks) * 512 >= uint64_t(st.st_size)) GTEST_SKIP() << "file system makes no holes";
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  auto nodes = repo_->LoadTree(sum->snapshot.tree);
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->size(), 2u);
  // Same bytes, same chunks: the hole-skipping reader cuts exactly where a reader of zeros does.
  EXPECT_EQ((*nodes)[0].content, (*nodes)[1].content);
  EXPECT_EQ((*nodes)[1].size, uint64_t(6) << 20);
  fs::path out = dir_.path() / "out";
  auto rs = Restore(sum->snapshot_id, out);
  ASSERT_TRUE(rs.ok());
  EXPECT_TRUE(rs->errors.empty());
  EXPECT_EQ(testing::ReadFileToString(out / "sparse"), AsString(dense));
  ASSERT_EQ(stat((out / "sparse").c_str(), &st), 0);
  EXPECT_LT(uint64_t(st.st_blocks) * 512, uint64_t(4) << 20);
}

TEST_F(BackupRestoreTest, TreeWalkLoadsEachTreePackOnce) {
  for (int i = 0; i < 60; i++) Write(src_ / ("d" + std::to_string(i)) / "sub" / "f", ToBytes(std::to_string(i)));
  auto sum = Backup();
  ASSERT_TRUE(sum.ok());
  faulty_->ResetCounts();
  int trees = 0;
  std::function<void(const repo::Id&)> walk = [&](const repo::Id& id) {
    auto nodes = repo_->LoadTree(id);
    ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
    trees++;
    for (const auto& n : *nodes)
      if (n.subtree) walk(*n.subtree);
  };
  walk(sum->snapshot.tree);
  EXPECT_EQ(trees, 1 + 60 * 2);
  // 121 trees, all in one tree pack: one request, not one per directory.
  std::map<std::string, int> loads = faulty_->CallsByPath(testing::BackendOp::kLoad);
  ASSERT_EQ(loads.size(), 1u);
  EXPECT_EQ(loads.begin()->second, 1);
}

TEST_F(BackupRestoreTest, HostileTreeNamesCannotEscapeTarget) {
  // A snapshot whose tree names an entry "../escape" (as a malicious repository could).
  repo::Node evil;
  evil.name = "../escape";
  evil.type = repo::NodeType::kFile;
  evil.mode = 0644;
  Bytes tree = repo::EncodeTree({evil});
  repo::Id tid = repo::Id::Hash(tree);
  {
    repo::PackSaver saver(*repo_);
    uint32_t ulen = 0;
    Bytes stored = repo::EncodeBlob(repo_->key(), repo::BlobType::kTree, tree, 2, repo::CompressionMode::kAuto, &ulen);
    ASSERT_TRUE(repo_->ReserveBlob(repo::BlobType::kTree, tid));
    ASSERT_TRUE(saver.Add(repo::BlobType::kTree, tid, std::move(stored), ulen, tree.size()).ok());
    ASSERT_TRUE(saver.Finish().ok());
  }
  RestoreOptions ro;
  ro.target = (dir_.path() / "t/inner").string();
  auto rs = RunRestore(*repo_, tid, ro, nullptr);
  ASSERT_TRUE(rs.ok());
  ASSERT_EQ(rs->errors.size(), 1u);
  EXPECT_THAT(rs->errors[0], HasSubstr("unsafe entry name"));
  EXPECT_FALSE(fs::exists(dir_.path() / "t/escape"));
}


TEST_F(BackupRestoreTest, SourceDirectoryFdBacksUpItsEntriesUnderTheGivenPath) {
  Write(src_ / "a.txt", ToBytes("alpha"));
  Write(src_ / "sub/b.txt", ToBytes("beta"));
  Fd dir(open(src_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir.valid());
  BackupOptions o;
  o.source_dir_fd = dir.get();
  o.source_path = "/host_pods/uid-1/volumes/kubernetes.io~empty-dir/data";
  o.hostname = "velero";
  Result<BackupSummary> sum = RunBackup(*repo_, o, nullptr);
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  EXPECT_EQ(sum->snapshot.paths, std::vector<std::string>{o.source_path});
  auto root = repo_->LoadTree(sum->snapshot.tree);
  ASSERT_TRUE(root.ok());
  ASSERT_EQ(root->size(), 2u);  // the volume's entries at the root, as `restic backup .`
  EXPECT_EQ((*root)[0].name, "a.txt");
  EXPECT_EQ((*root)[1].name, "sub");

  // The same source path is found as parent: nothing is read again.
  Result<BackupSummary> again = RunBackup(*repo_, o, nullptr);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->parent.has_value());
  EXPECT_EQ(*again->parent, sum->snapshot_id);
  EXPECT_EQ(again->files_unmodified, 2u);

  // Restore into a directory fd.
  fs::path target = dir_.path() / "target";
  fs::create_directories(target);
  Fd tfd(open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  RestoreOptions ro;
  ro.target_dir_fd = tfd.get();
  ro.target = "volume data";
  ro.verify = true;
  auto restored = RunRestore(*repo_, sum->snapshot.tree, ro, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(restored->errors.empty());
  ExpectSameContent(src_, target);
}

TEST_F(BackupRestoreTest, SourceDirectoryNeedsAnAbsoluteSnapshotPath) {
  Fd dir(open(src_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  BackupOptions o;
  o.source_dir_fd = dir.get();
  Result<BackupSummary> sum = RunBackup(*repo_, o, nullptr);
  ASSERT_FALSE(sum.ok());
  EXPECT_EQ(sum.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(BackupRestoreTest, StopRequestCancelsBackupWithoutSnapshot) {
  for (int i = 0; i < 200; i++) Write(src_ / ("f" + std::to_string(i)), testing::SeededRandomBytes(i, 64 << 10));
  std::stop_source stop;
  Progress progress;
  BackupOptions o;
  o.targets = {src_.string()};
  o.hostname = "h";
  o.file_workers = 1;
  o.stop = stop.get_token();
  stop.request_stop();  // before the start: nothing may be saved
  Result<BackupSummary> sum = RunBackup(*repo_, o, &progress);
  ASSERT_FALSE(sum.ok());
  EXPECT_EQ(sum.status().code(), StatusCode::kCancelled);
  auto snaps = repo_->ListSnapshotIds();
  ASSERT_TRUE(snaps.ok());
  EXPECT_TRUE(snaps->empty());
  // What was uploaded before the stop is consistent: check passes (unreferenced data is fine).
  auto check = repo::RunCheck(*repo_, repo::CheckOptions{});
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->errors.empty());
}

// Every way a file is restored: by the pack worker alone (one pack), by the walker and the
// workers of several packs, as hard links, empty, and ending in a hole. Contents, modes, times
// and owners as the source.
TEST_F(BackupRestoreTest, FilesOfOneOrManyPacksLinksAndEmptyFilesGetTheirMetadata) {
  // 1 MiB packs: a file of several 512 KiB..8 MiB chunks spans packs.
  repo::RepositoryOptions options;
  options.pack_size = 1 << 20;
  auto small_packs = repo::Repository::Open(std::make_unique<ForwardingBackend>(*faulty_),
                                            Secret<std::string>("pw"), options);
  ASSERT_TRUE(small_packs.ok()) << small_packs.status().ToString();
  repo_ = std::move(*small_packs);
  Write(src_ / "big.bin", testing::SeededRandomBytes(7, 12 << 20));
  Bytes tail_zeros = testing::SeededRandomBytes(8, 1 << 20);
  tail_zeros.resize(9 << 20, 0);
  Write(src_ / "zeros-at-end", tail_zeros);
  Write(src_ / "small", ToBytes("small"));
  Write(src_ / "d/exec", ToBytes("#!/bin/sh\n"));
  Write(src_ / "d/empty", {});
  Write(src_ / "d/link1", ToBytes("linked"));
  fs::create_hard_link(src_ / "d/link1", src_ / "link2");
  ASSERT_EQ(chmod((src_ / "small").c_str(), 0444), 0);
  ASSERT_EQ(chmod((src_ / "d/exec").c_str(), 0750), 0);
  ASSERT_EQ(chmod((src_ / "d/empty").c_str(), 0640), 0);
  ASSERT_EQ(chmod((src_ / "d").c_str(), 0751), 0);
  for (const char* name :
       {"big.bin", "zeros-at-end", "small", "d/exec", "d/empty", "d/link1", "d"}) {
    const struct timespec times[2] = {{1600000000, 5}, {1686832496, 123456789}};
    ASSERT_EQ(utimensat(AT_FDCWD, (src_ / name).c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << name;
  }
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  fs::path out = dir_.path() / "out";
  auto rs = Restore(sum->snapshot_id, out);
  ASSERT_TRUE(rs.ok()) << rs.status().ToString();
  EXPECT_TRUE(rs->errors.empty()) << rs->errors[0];
  EXPECT_TRUE(rs->metadata_errors.empty()) << rs->metadata_errors[0];
  EXPECT_EQ(rs->verified_files, 6u);  // link2 is no file of its own
  EXPECT_GT(rs->packs_read, 3u);
  ExpectSameContent(src_, out);
  for (const char* name :
       {"big.bin", "zeros-at-end", "small", "d/exec", "d/empty", "d/link1", "link2", "d"}) {
    struct stat a, b;
    ASSERT_EQ(lstat((src_ / name).c_str(), &a), 0) << name;
    ASSERT_EQ(lstat((out / name).c_str(), &b), 0) << name;
    EXPECT_EQ(a.st_mode, b.st_mode) << name;
    EXPECT_EQ(a.st_uid, b.st_uid) << name;
    EXPECT_EQ(a.st_gid, b.st_gid) << name;
    EXPECT_EQ(a.st_mtim.tv_sec, b.st_mtim.tv_sec) << name;
    EXPECT_EQ(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec) << name;
    if (!S_ISDIR(a.st_mode)) {
      EXPECT_EQ(a.st_size, b.st_size) << name;
    }
  }
  struct stat l1, l2;
  ASSERT_EQ(stat((out / "d/link1").c_str(), &l1), 0);
  ASSERT_EQ(stat((out / "link2").c_str(), &l2), 0);
  EXPECT_EQ(l1.st_ino, l2.st_ino);
}

// New files are created with their final mode when the umask leaves it intact (no fchmod then);
// every mode must come back exactly whatever the umask: bits the umask would strip, setuid,
// setgid and sticky bits, read-only and no-permission files, with and without xattrs.
TEST_F(BackupRestoreTest, ModesComeBackExactlyUnderAnyUmask) {
  const std::vector<std::pair<std::string, mode_t>> files = {
      {"m644", 0644}, {"m600", 0600}, {"m755", 0755}, {"m666", 0666}, {"m777", 0777},
      {"m444", 0444}, {"m640", 0640}, {"m000", 0000}, {"m4755", 04755}, {"m2750", 02750},
      {"m1755", 01755}, {"big644", 0644}};
  for (const auto& [name, mode] : files) {
    Write(src_ / name, name == "big644" ? testing::SeededRandomBytes(3, 3 << 20) : ToBytes(name));
    ASSERT_EQ(chmod((src_ / name).c_str(), mode), 0) << name;
  }
  Write(src_ / "xattr644", ToBytes("x"));
  const bool have_xattr =
      setxattr((src_ / "xattr644").c_str(), "user.fsb", "v", 1, 0) == 0;
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  const mode_t old_mask = umask(022);
  for (mode_t mask : {mode_t(022), mode_t(077), mode_t(0), mode_t(0777)}) {
    umask(mask);
    fs::path out = dir_.path() / ("out" + std::to_string(mask));
    auto rs = Restore(sum->snapshot_id, out);
    umask(022);
    ASSERT_TRUE(rs.ok()) << rs.status().ToString();
    EXPECT_TRUE(rs->metadata_errors.empty()) << rs->metadata_errors[0];
    for (const auto& [name, mode] : files) {
      struct stat st;
      ASSERT_EQ(lstat((out / name).c_str(), &st), 0) << name;
      EXPECT_EQ(st.st_mode & 07777, mode) << name << " under umask 0" << std::oct << mask;
    }
    if (have_xattr) {
      char v[4] = {};
      EXPECT_EQ(lgetxattr((out / "xattr644").c_str(), "user.fsb", v, sizeof v), 1);
    }
    struct stat st;
    ASSERT_EQ(lstat((out / "xattr644").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644u);
  }
  umask(old_mask);
}

// A restore that is not root must still write read-only files whose content pack workers write
// through a second open (a file spanning packs, a hard link): such files are created writable and
// get their mode at the end; an empty read-only file gets it at creation.
TEST_F(BackupRestoreTest, NonRootRestoreWritesReadOnlyFilesOfManyPacks) {
  repo::RepositoryOptions options;
  options.pack_size = 1 << 20;  // the big file spans packs
  auto small_packs = repo::Repository::Open(std::make_unique<ForwardingBackend>(*faulty_),
                                            Secret<std::string>("pw"), options);
  ASSERT_TRUE(small_packs.ok()) << small_packs.status().ToString();
  repo_ = std::move(*small_packs);
  Write(src_ / "big", testing::SeededRandomBytes(11, 5 << 20));
  Write(src_ / "one", ToBytes("single pack"));
  Write(src_ / "empty", {});
  Write(src_ / "linked", ToBytes("two names"));
  fs::create_hard_link(src_ / "linked", src_ / "linked2");
  for (const char* name : {"big", "one", "empty", "linked"}) {
    ASSERT_EQ(chmod((src_ / name).c_str(), 0444), 0) << name;
  }
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  auto snap = repo_->LoadSnapshot(sum->snapshot_id);
  ASSERT_TRUE(snap.ok());

  // The target's parent belongs to the unprivileged user, and the temp tree lets it through.
  fs::path parent = dir_.path() / "nobody";
  fs::create_directories(parent);
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  fs::path out = parent / "out";
  auto restore = [&]() -> int {
    RestoreOptions o;
    o.target = out.string();
    o.restore_owner = false;
    Result<RestoreSummary> rs = RunRestore(*repo_, snap->tree, o, nullptr);
    if (!rs.ok()) return 1;
    if (!rs->errors.empty()) return 2;
    if (!rs->metadata_errors.empty()) return 3;
    return 0;
  };
  int code = 0;
  if (geteuid() == 0) {
    if (chown(parent.c_str(), 65534, 65534) != 0) GTEST_SKIP() << "cannot chown to nobody";
    code = testing::RunUnprivileged(restore);
    if (code < 0) GTEST_SKIP() << "running as root and cannot drop privileges";
  } else {
    code = restore();
  }
  ASSERT_EQ(code, 0) << "1: restore failed, 2: file errors, 3: metadata errors";
  ExpectSameContent(src_, out);
  for (const char* name : {"big", "one", "empty", "linked", "linked2"}) {
    struct stat st;
    ASSERT_EQ(lstat((out / name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_mode & 07777, 0444u) << name;
  }
}

// A pack of many files is written by several workers, in parts that never split a file.
TEST_F(BackupRestoreTest, PackOfManyFilesIsWrittenInParts) {
  for (int i = 0; i < 120; i++) {
    Write(src_ / ("d" + std::to_string(i % 7)) / ("f" + std::to_string(i)),
          testing::SeededRandomBytes(100 + i, 100000 + i * 997));
  }
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  fs::path out = dir_.path() / "out";
  RestoreOptions ro;
  ro.workers = 3;
  auto rs = Restore(sum->snapshot_id, out, ro);
  ASSERT_TRUE(rs.ok()) << rs.status().ToString();
  EXPECT_TRUE(rs->errors.empty()) << rs->errors[0];
  EXPECT_EQ(rs->verified_files, 120u);
  // About 18 MB of incompressible data: two packs, read in parts of about 4 MiB.
  EXPECT_GE(rs->packs_read, 4u);
  ExpectSameContent(src_, out);
}

// Several workers write parts of one big file at once (each waits for the file while another
// writes it, decoding meanwhile): every byte lands where it belongs.
TEST_F(BackupRestoreTest, BigFileWrittenByManyWorkersAtOnceComesBackWhole) {
  Write(src_ / "big", testing::SeededRandomBytes(31, 40 << 20));  // ~40 plain chunks, 3 packs
  std::string text;
  for (int i = 0; text.size() < (12u << 20); i++)
    text += "line " + std::to_string(i * 7919) + " of a log\n";
  Write(src_ / "log", ToBytes(text));  // compressed chunks
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  for (int workers : {2, 4}) {
    fs::path out = dir_.path() / ("out" + std::to_string(workers));
    RestoreOptions ro;
    ro.workers = workers;
    auto rs = Restore(sum->snapshot_id, out, ro);
    ASSERT_TRUE(rs.ok()) << rs.status().ToString();
    EXPECT_TRUE(rs->errors.empty()) << rs->errors[0];
    EXPECT_EQ(rs->verified_files, 2u);
    EXPECT_GE(rs->packs_read, 6u);  // parts of about 4 MiB, spread over the workers
    ExpectSameContent(src_, out);
  }
}

// A damaged blob fails the file it belongs to, by name, with the blob's ID; nothing of it is
// written, and every other file (of the same pack too) is restored whole.
TEST_F(BackupRestoreTest, CorruptBlobFailsOnlyItsFileWithAClearError) {
  const Bytes big = testing::SeededRandomBytes(41, 12 << 20);
  Write(src_ / "big", big);
  Write(src_ / "small", ToBytes("small file next to it\n"));
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  auto nodes = repo_->LoadTree(sum->snapshot.tree);
  ASSERT_TRUE(nodes.ok());
  const repo::Node& node = (*nodes)[0];
  ASSERT_EQ(node.name, "big");
  // The chunks depend on the repository's random polynomial: damage the middle one, wherever
  // it starts.
  auto plain_size = [&](const repo::Id& id) -> uint64_t {
    std::optional<repo::BlobLocation> l = repo_->FindBlob(repo::BlobType::kData, id);
    if (!l) return 0;
    return l->blob.uncompressed_length ? l->blob.uncompressed_length
                                       : l->blob.length - repo::kCryptoOverhead;
  };
  const size_t k = node.content.size() / 2;
  uint64_t at = 0;  // the damaged chunk's offset in the file
  for (size_t i = 0; i < k; i++) at += plain_size(node.content[i]);
  const repo::Id damaged = node.content[k];
  const uint64_t len = plain_size(damaged);
  std::optional<repo::BlobLocation> loc = repo_->FindBlob(repo::BlobType::kData, damaged);
  ASSERT_TRUE(loc);
  const repo::Handle h{repo::FileType::kPack, loc->pack.Hex()};
  Result<Bytes> pack = mem_.Load(h, 0, 0);
  ASSERT_TRUE(pack.ok());
  (*pack)[loc->blob.offset + 100] ^= 0x20;
  ASSERT_TRUE(mem_.Remove(h).ok());
  ASSERT_TRUE(mem_.Save(h, *pack).ok());

  fs::path out = dir_.path() / "out";
  RestoreOptions ro;
  ro.workers = 2;
  auto rs = Restore(sum->snapshot_id, out, ro);
  ASSERT_TRUE(rs.ok()) << rs.status().ToString();
  ASSERT_EQ(rs->errors.size(), 1u);
  EXPECT_THAT(rs->errors[0], HasSubstr("big"));
  EXPECT_THAT(rs->errors[0], HasSubstr(damaged.Short()));
  EXPECT_THAT(rs->errors[0], HasSubstr("ciphertext verification failed"));
  EXPECT_EQ(testing::ReadFileToString(out / "small"), "small file next to it\n");
  // No unverified byte is written: the damaged chunk's range is a hole (the other chunks of
  // the failed file are not promised: its writers stop once it failed).
  const std::string got = testing::ReadFileToString(out / "big");
  ASSERT_GE(got.size(), at + len);
  EXPECT_TRUE(IsAllZero(AsBytes(got).subspan(at, len)));
}

// A target that already holds entries of the snapshot's names: symlinks planted there (to a file
// and to a directory outside) are replaced or refused, never followed; an old file is rewritten.
TEST_F(BackupRestoreTest, PlantedSymlinksInTargetAreNeverFollowed) {
  Write(src_ / "a.txt", ToBytes("new a"));
  Write(src_ / "old.txt", ToBytes("new content"));
  Write(src_ / "sub/b.txt", ToBytes("new b"));
  ASSERT_EQ(chmod((src_ / "old.txt").c_str(), 0640), 0);
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();

  testing::TempDir outside;
  const fs::path victim = outside.path() / "victim";
  testing::WriteStringToFile(victim, "do not touch");
  ASSERT_EQ(chmod(victim.c_str(), 0600), 0);
  fs::create_directories(outside.path() / "dir");
  fs::path out = dir_.path() / "out";
  fs::create_directories(out);
  fs::create_symlink(victim, out / "a.txt");
  fs::create_symlink(outside.path() / "dir", out / "sub");
  testing::WriteStringToFile(out / "old.txt", "an old and longer content");
  struct stat before;
  ASSERT_EQ(stat(victim.c_str(), &before), 0);

  auto rs = Restore(sum->snapshot_id, out);
  ASSERT_TRUE(rs.ok()) << rs.status().ToString();
  // The directory symlink is refused (the restore does not remove what may be a user's tree).
  ASSERT_EQ(rs->errors.size(), 1u);
  EXPECT_THAT(rs->errors[0], HasSubstr("sub"));
  EXPECT_EQ(testing::ReadFileToString(victim), "do not touch");
  struct stat after;
  ASSERT_EQ(stat(victim.c_str(), &after), 0);
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  EXPECT_FALSE(fs::exists(outside.path() / "dir/b.txt"));
  EXPECT_FALSE(fs::is_symlink(out / "a.txt"));
  EXPECT_EQ(testing::ReadFileToString(out / "a.txt"), "new a");
  EXPECT_EQ(testing::ReadFileToString(out / "old.txt"), "new content");
  EXPECT_EQ(fs::status(out / "old.txt").permissions(), fs::perms(0640));
}

TEST_F(BackupRestoreTest, PlantedFifoAndDeviceAreReplacedNeitherWaitedOnNorWritten) {
  Write(src_ / "fifo.txt", ToBytes("was a fifo"));
  Write(src_ / "dev.txt", ToBytes("was a device"));
  auto sum = Backup();
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  fs::path out = dir_.path() / "out";
  fs::create_directories(out);
  // A fifo with no reader: opening it for writing would block the restore forever.
  ASSERT_EQ(mkfifo((out / "fifo.txt").c_str(), 0600), 0);
  // A character device (/dev/null's numbers): writing "into the file" would go to the device.
  const bool have_dev = mknod((out / "dev.txt").c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0;
  auto rs = Restore(sum->snapshot_id, out);
  ASSERT_TRUE(rs.ok()) << rs.status().ToString();
  EXPECT_TRUE(rs->errors.empty()) << rs->errors[0];
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(out / "fifo.txt")));
  EXPECT_EQ(testing::ReadFileToString(out / "fifo.txt"), "was a fifo");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(out / "dev.txt"))) << "device planted: " << have_dev;
  EXPECT_EQ(testing::ReadFileToString(out / "dev.txt"), "was a device");
}

TEST_F(BackupRestoreTest, StopRequestCancelsRestore) {
  for (int i = 0; i < 50; i++) Write(src_ / ("f" + std::to_string(i)), testing::SeededRandomBytes(i, 4 << 10));
  Result<BackupSummary> sum = Backup();
  ASSERT_TRUE(sum.ok());
  std::stop_source stop;
  stop.request_stop();
  RestoreOptions ro;
  ro.stop = stop.get_token();
  ro.target = (dir_.path() / "t").string();
  auto r = RunRestore(*repo_, sum->snapshot.tree, ro, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled);
}

}  // namespace
}  // namespace fsb::uploader
