// LocalBackend beyond the shared contract (backend_conformance_test.cc): what lands on disk, in
// which mode, and what restic's own repositories look like through it.
#include "repo/backend/local/local_backend.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

namespace fs = std::filesystem;
using ::fsb::testing::CopyTree;
using ::fsb::testing::ReadFileToString;
using ::fsb::testing::RunUnprivileged;
using ::fsb::testing::SeededRandomBytes;
using ::fsb::testing::TempDir;
using ::fsb::testing::TestDataPath;
using ::fsb::testing::WriteStringToFile;
using ::testing::HasSubstr;

std::string IdName(uint64_t seed) { return HexEncode(SeededRandomBytes(seed, 32)); }

mode_t ModeOf(const fs::path& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

mode_t CurrentUmask() {
  const mode_t mask = ::umask(0);
  ::umask(mask);
  return mask;
}

// Every path below `root`, relative, with a trailing '/' for directories.
std::set<std::string> Tree(const fs::path& root) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    std::string rel = fs::relative(e.path(), root).string();
    if (e.is_directory()) rel += '/';
    out.insert(rel);
  }
  return out;
}

std::map<std::string, uint64_t> ListAll(Backend& be, FileType type) {
  std::map<std::string, uint64_t> out;
  Status s = be.List(type, [&](const FileInfo& f) {
    out.emplace(f.name, f.size);
    return Status::Ok();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// name -> size of the regular files directly in `dir` (or one level down, for data/).
std::map<std::string, uint64_t> FilesOnDisk(const fs::path& dir, bool one_level_down) {
  std::map<std::string, uint64_t> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (one_level_down && e.is_directory()) {
      for (const auto& f : fs::directory_iterator(e.path())) {
        out[f.path().filename().string()] = f.file_size();
      }
    } else if (!one_level_down && e.is_regular_file()) {
      out[e.path().filename().string()] = e.file_size();
    }
  }
  return out;
}

class LocalBackendTest : public ::testing::Test {
 protected:
  // A new repository at <tmp>/repo, created the way `init` does it.
  std::unique_ptr<LocalBackend> CreateRepo(LocalBackend::Options options = {}) {
    options.create_if_missing = true;
    Result<std::unique_ptr<LocalBackend>> be = LocalBackend::Open(repo_.string(), options);
    EXPECT_TRUE(be.ok()) << be.status().ToString();
    if (!be.ok()) return nullptr;
    Status s = (*be)->Create();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return std::move(be).value();
  }

  // Opens an existing directory as a repository, without Create.
  std::unique_ptr<LocalBackend> OpenDir(const fs::path& dir) {
    Result<std::unique_ptr<LocalBackend>> be = LocalBackend::Open(dir.string());
    EXPECT_TRUE(be.ok()) << be.status().ToString();
    return be.ok() ? std::move(be).value() : nullptr;
  }

  TempDir tmp_;
  const fs::path repo_ = tmp_.path() / "repo";
};

TEST_F(LocalBackendTest, CreateMakesTheLayoutResticExpects) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  std::set<std::string> want = {"data/", "index/", "keys/", "locks/", "snapshots/"};
  for (int i = 0; i < 256; i++) want.insert(fmt::format("data/{:02x}/", i));
  EXPECT_EQ(Tree(repo_), want);  // and in particular no tmp/ (restic-repo-format.md §1)
  EXPECT_EQ(ModeOf(repo_), 0700u);
  for (const std::string& dir : want) EXPECT_EQ(ModeOf(repo_ / dir), 0700u) << dir;
}

TEST_F(LocalBackendTest, SavedFilesAreReadOnlyAtResticPaths) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  const std::string pack = "ab" + IdName(1).substr(2);
  const std::string key = IdName(2);
  ASSERT_TRUE(be->Save({FileType::kPack, pack}, ToBytes("pack bytes")).ok());
  ASSERT_TRUE(be->Save({FileType::kKey, key}, ToBytes("key bytes")).ok());
  ASSERT_TRUE(be->Save({FileType::kSnapshot, key}, ToBytes("snapshot bytes")).ok());
  ASSERT_TRUE(be->Save({FileType::kIndex, key}, ToBytes("index bytes")).ok());
  ASSERT_TRUE(be->Save({FileType::kLock, key}, ToBytes("lock bytes")).ok());
  ASSERT_TRUE(be->Save(Handle::Config(), ToBytes("config bytes")).ok());

  const std::map<std::string, std::string> want = {
      {"data/ab/" + pack, "pack bytes"},      {"keys/" + key, "key bytes"},
      {"snapshots/" + key, "snapshot bytes"}, {"index/" + key, "index bytes"},
      {"locks/" + key, "lock bytes"},         {"config", "config bytes"},
  };
  for (const auto& [rel, content] : want) {
    EXPECT_EQ(ReadFileToString(repo_ / rel), content) << rel;
    EXPECT_EQ(ModeOf(repo_ / rel), 0400u) << rel;
  }
}

TEST_F(LocalBackendTest, SaveMakesMissingDirectories) {
  ASSERT_TRUE(fs::create_directory(repo_));
  auto be = OpenDir(repo_);
  ASSERT_NE(be, nullptr);
  const std::string pack = "cd" + IdName(3).substr(2);
  ASSERT_TRUE(be->Save({FileType::kPack, pack}, ToBytes("x")).ok());
  ASSERT_TRUE(be->Save({FileType::kLock, IdName(4)}, ToBytes("y")).ok());
  EXPECT_EQ(Tree(repo_), (std::set<std::string>{"data/", "data/cd/", "data/cd/" + pack, "locks/",
                                                "locks/" + IdName(4)}));
  EXPECT_EQ(ModeOf(repo_ / "data"), 0700u);
  EXPECT_EQ(ModeOf(repo_ / "data/cd"), 0700u);
  EXPECT_EQ(ModeOf(repo_ / "locks"), 0700u);
}

TEST_F(LocalBackendTest, SaveLeavesNoTempFiles) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  for (uint64_t i = 0; i < 20; i++) {
    ASSERT_TRUE(be->Save({FileType::kPack, IdName(i)}, SeededRandomBytes(i, 1000 + i)).ok());
  }
  // Replacing goes through a temp file too.
  ASSERT_TRUE(be->Save({FileType::kPack, IdName(0)}, SeededRandomBytes(0, 1000)).ok());
  ASSERT_TRUE(be->Save(Handle::Config(), ToBytes("c")).ok());
  for (const std::string& rel : Tree(repo_)) {
    EXPECT_THAT(rel, ::testing::Not(HasSubstr("-tmp-"))) << rel;
  }
}

TEST_F(LocalBackendTest, FailedSaveRemovesItsTempFile) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  // A non-empty directory where the file should go makes the final rename fail.
  const std::string key = IdName(5);
  ASSERT_TRUE(fs::create_directories(repo_ / "keys" / key / "blocker"));
  Status s = be->Save({FileType::kKey, key}, ToBytes("key bytes"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(key));
  EXPECT_EQ(Tree(repo_ / "keys"), (std::set<std::string>{key + "/", key + "/blocker/"}));
}

// A spool file is invisible until published (written in pieces, out of order), then appears
// complete and read-only at the restic path; the repository holds nothing else afterwards.
TEST_F(LocalBackendTest, SpoolFileAppearsOnlyWhenPublished) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  const std::set<std::string> before = Tree(repo_);
  Result<std::unique_ptr<SpoolFile>> spool = be->CreateSpool(FileType::kPack);
  ASSERT_TRUE(spool.ok()) << spool.status().ToString();
  if (*spool == nullptr) GTEST_SKIP() << "no O_TMPFILE on this file system";
  const Bytes content = SeededRandomBytes(7, 300000);
  ASSERT_TRUE((*spool)->WriteAt(100000, ByteView(content).subspan(100000)).ok());
  ASSERT_TRUE((*spool)->WriteAt(0, ByteView(content).first(100000)).ok());
  EXPECT_EQ(Tree(repo_), before);  // nothing named yet, not even a temp file
  Bytes back(1000);
  ASSERT_TRUE((*spool)->ReadAt(99500, back).ok());
  EXPECT_TRUE(std::equal(back.begin(), back.end(), content.begin() + 99500));
  EXPECT_EQ((*spool)->ReadAt(299500, back).code(), StatusCode::kCorruption);  // past the end

  const Handle h{FileType::kPack, "ef" + IdName(8).substr(2)};
  Status s = (*spool)->Publish(h);
  ASSERT_TRUE(s.ok()) << s.ToString();
  spool->reset();
  EXPECT_EQ(ReadFileToString(repo_ / h.Path()), AsString(content));
  EXPECT_EQ(ModeOf(repo_ / h.Path()), 0400u);
  std::set<std::string> want = before;
  want.insert("data/ef/" + h.name);
  EXPECT_EQ(Tree(repo_), want);
}

// A spool file dropped before Publish (a failed or interrupted backup) leaves nothing behind; a
// bad name is refused; publishing under an existing name keeps the existing file (same name,
// same content).
TEST_F(LocalBackendTest, UnpublishedSpoolLeavesNothingAndExistingNameIsKept) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  const std::set<std::string> before = Tree(repo_);
  {
    Result<std::unique_ptr<SpoolFile>> spool = be->CreateSpool(FileType::kPack);
    ASSERT_TRUE(spool.ok());
    if (*spool == nullptr) GTEST_SKIP() << "no O_TMPFILE on this file system";
    ASSERT_TRUE((*spool)->WriteAt(0, SeededRandomBytes(9, 5000)).ok());
    EXPECT_EQ((*spool)->Publish({FileType::kPack, "not-hex"}).code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(Tree(repo_), before);

  const Handle h{FileType::kPack, IdName(10)};
  ASSERT_TRUE(be->Save(h, ToBytes("stored before")).ok());
  Result<std::unique_ptr<SpoolFile>> spool = be->CreateSpool(FileType::kPack);
  ASSERT_TRUE(spool.ok());
  ASSERT_TRUE((*spool)->WriteAt(0, ToBytes("stored again")).ok());
  Status s = (*spool)->Publish(h);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ReadFileToString(repo_ / h.Path()), "stored before");
}

TEST_F(LocalBackendTest, ReplacedFileStaysReadOnly) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  const Handle h{FileType::kIndex, IdName(6)};
  ASSERT_TRUE(be->Save(h, ToBytes("first")).ok());
  ASSERT_TRUE(be->Save(h, ToBytes("second")).ok());
  EXPECT_EQ(ReadFileToString(repo_ / h.Path()), "second");
  EXPECT_EQ(ModeOf(repo_ / h.Path()), 0400u);
}

TEST_F(LocalBackendTest, ListIgnoresTempFilesAndJunkNames) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  const std::string key = IdName(7);
  const std::string pack = "ab" + IdName(8).substr(2);
  ASSERT_TRUE(be->Save({FileType::kKey, key}, ToBytes("key")).ok());
  ASSERT_TRUE(be->Save({FileType::kPack, pack}, ToBytes("pack!")).ok());

  std::string upper = IdName(9);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const std::string& junk :
       {key + "-tmp-1234567890", std::string(".gitkeep"), std::string("README"), upper,
        IdName(10).substr(0, 63), IdName(11) + "0"}) {
    WriteStringToFile(repo_ / "keys" / junk, "junk");
    WriteStringToFile(repo_ / "data/ab" / junk, "junk");
  }
  // A directory with an ID name, and a pack-like file directly in data/ (restic walks exactly
  // one level of subdirectories).
  ASSERT_TRUE(fs::create_directory(repo_ / "keys" / IdName(12)));
  WriteStringToFile(repo_ / "data" / IdName(13), "not in a subdirectory");

  EXPECT_EQ(ListAll(*be, FileType::kKey), (std::map<std::string, uint64_t>{{key, 3}}));
  EXPECT_EQ(ListAll(*be, FileType::kPack), (std::map<std::string, uint64_t>{{pack, 5}}));
}

TEST_F(LocalBackendTest, ListToleratesMissingDirectories) {
  ASSERT_TRUE(fs::create_directory(repo_));
  auto be = OpenDir(repo_);
  ASSERT_NE(be, nullptr);
  for (FileType type : {FileType::kConfig, FileType::kKey, FileType::kPack, FileType::kIndex,
                        FileType::kSnapshot, FileType::kLock}) {
    EXPECT_TRUE(ListAll(*be, type).empty()) << FileTypeName(type);
  }
}

TEST_F(LocalBackendTest, OpenMissingPathIsNotFound) {
  const std::string missing = (tmp_.path() / "no" / "such" / "repo").string();
  Result<std::unique_ptr<LocalBackend>> be = LocalBackend::Open(missing);
  ASSERT_FALSE(be.ok());
  EXPECT_EQ(be.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(be.status().message(), HasSubstr("repository " + missing + " does not exist"));
  EXPECT_FALSE(fs::exists(tmp_.path() / "no"));  // nothing made on the way
}

TEST_F(LocalBackendTest, OpenFileIsInvalidArgument) {
  WriteStringToFile(tmp_.path() / "file", "x");
  Result<std::unique_ptr<LocalBackend>> be = LocalBackend::Open((tmp_.path() / "file").string());
  ASSERT_FALSE(be.ok());
  EXPECT_EQ(be.status().code(), StatusCode::kInvalidArgument) << be.status().ToString();
}

TEST_F(LocalBackendTest, CreateIfMissingMakesParents) {
  const fs::path deep = tmp_.path() / "a" / "b" / "c";
  Result<std::unique_ptr<LocalBackend>> be =
      LocalBackend::Open(deep.string(), {.create_if_missing = true});
  ASSERT_TRUE(be.ok()) << be.status().ToString();
  ASSERT_TRUE((*be)->Create().ok());
  EXPECT_TRUE(fs::is_directory(deep / "data" / "ff"));
  EXPECT_EQ((*be)->Location(), deep.string());
}

TEST_F(LocalBackendTest, CreateOnExistingRepositoryIsAlreadyExists) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  ASSERT_TRUE(be->Save(Handle::Config(), ToBytes("config")).ok());
  const std::set<std::string> before = Tree(repo_);

  auto reopened = OpenDir(repo_);
  ASSERT_NE(reopened, nullptr);
  Status s = reopened->Create();
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr(repo_.string()));
  EXPECT_EQ(Tree(repo_), before);
  EXPECT_EQ(ReadFileToString(repo_ / "config"), "config");
}

TEST_F(LocalBackendTest, CreateKeepsUnrelatedFilesOfAnExistingDirectory) {
  ASSERT_TRUE(fs::create_directories(repo_ / "keys"));
  WriteStringToFile(repo_ / "notes.txt", "mine");
  auto be = OpenDir(repo_);
  ASSERT_NE(be, nullptr);
  ASSERT_TRUE(be->Create().ok());
  EXPECT_EQ(ReadFileToString(repo_ / "notes.txt"), "mine");
  EXPECT_TRUE(fs::is_directory(repo_ / "data" / "00"));
}

TEST_F(LocalBackendTest, SaveIntoReadOnlyDirectoryIsPermissionDenied) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  // Others may enter the repository, but keys/ is read-only for everyone.
  ASSERT_EQ(::chmod(repo_.c_str(), 0755), 0);
  ASSERT_EQ(::chmod((repo_ / "keys").c_str(), 0555), 0);
  const Handle h{FileType::kKey, IdName(14)};
  auto save = [&]() -> Status { return be->Save(h, ToBytes("key")); };

  if (::geteuid() != 0) {
    Status s = save();
    EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr((repo_ / "keys").string()));
  } else {
    // Root bypasses permissions: check as an unprivileged child, through the same open backend.
    const int code = RunUnprivileged([&] { return static_cast<int>(save().code()); });
    if (code < 0) GTEST_SKIP() << "running as root and cannot drop privileges";
    EXPECT_EQ(code, static_cast<int>(StatusCode::kPermissionDenied));
  }
  EXPECT_TRUE(fs::is_empty(repo_ / "keys"));
}

TEST_F(LocalBackendTest, GroupReadableConfigGivesGroupModes) {
  // restic-repo-format.md §1.1: a group-readable config makes dirs 0770 and files 0440.
  ASSERT_TRUE(fs::create_directory(repo_));
  WriteStringToFile(repo_ / "config", "config");
  ASSERT_EQ(::chmod((repo_ / "config").c_str(), 0640), 0);
  auto be = OpenDir(repo_);
  ASSERT_NE(be, nullptr);
  const std::string pack = "ef" + IdName(15).substr(2);
  ASSERT_TRUE(be->Save({FileType::kPack, pack}, ToBytes("p")).ok());
  EXPECT_EQ(ModeOf(repo_ / "data/ef" / pack), 0440u);
  EXPECT_EQ(ModeOf(repo_ / "data/ef"), 0770u & ~CurrentUmask());
}

TEST_F(LocalBackendTest, PropertiesFollowOptions) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  EXPECT_EQ(be->Properties().max_connections, 2);  // restic's default for local (§1.1)
  EXPECT_TRUE(be->Properties().local);
  EXPECT_EQ(be->Location(), repo_.string());

  Result<std::unique_ptr<LocalBackend>> wide =
      LocalBackend::Open(repo_.string(), {.max_connections = 8});
  ASSERT_TRUE(wide.ok()) << wide.status().ToString();
  EXPECT_EQ((*wide)->Properties().max_connections, 8);

  Result<std::unique_ptr<LocalBackend>> none =
      LocalBackend::Open(repo_.string(), {.max_connections = 0});
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(LocalBackendTest, ListingIsConsistentOnTheFileSystemsOfOneKernelOnly) {
  auto be = CreateRepo();
  ASSERT_NE(be, nullptr);
  struct statfs fs;
  ASSERT_EQ(::statfs(repo_.c_str(), &fs), 0);
  // What this machine's temp directory is on decides; the classification is checked below.
  EXPECT_EQ(be->Properties().consistent_listing, LocalBackend::ListsConsistently(fs.f_type));
  for (int64_t local :
       std::initializer_list<int64_t>{0xEF53, 0x58465342, 0x9123683E, 0x01021994, 0x794c7630}) {
    EXPECT_TRUE(LocalBackend::ListsConsistently(local)) << std::hex << local;
  }
  // NFS, SMB2, CIFS, CephFS, 9p (v9fs), FUSE: listings may come from a cache; unknown: assumed to.
  for (int64_t remote : std::initializer_list<int64_t>{0x6969, 0xFE534D42, 0xFF534D42, 0x00C36400,
                                                       0x01021997, 0x65735546, 0x12345678}) {
    EXPECT_FALSE(LocalBackend::ListsConsistently(remote)) << std::hex << remote;
  }
}

TEST_F(LocalBackendTest, ResticFixtureRepositoryListsExactlyItsFiles) {
  CopyTree(TestDataPath("restic/repo-v2"), repo_);
  auto be = OpenDir(repo_);
  ASSERT_NE(be, nullptr);

  const std::map<std::string, uint64_t> keys = ListAll(*be, FileType::kKey);
  const std::map<std::string, uint64_t> indexes = ListAll(*be, FileType::kIndex);
  const std::map<std::string, uint64_t> snapshots = ListAll(*be, FileType::kSnapshot);
  const std::map<std::string, uint64_t> packs = ListAll(*be, FileType::kPack);
  EXPECT_EQ(keys.size(), 1u);
  EXPECT_EQ(indexes.size(), 3u);
  EXPECT_EQ(snapshots.size(), 4u);
  EXPECT_EQ(packs.size(), 6u);
  EXPECT_TRUE(ListAll(*be, FileType::kLock).empty());  // the fixture has no locks/ at all

  EXPECT_EQ(keys, FilesOnDisk(repo_ / "keys", false));
  EXPECT_EQ(indexes, FilesOnDisk(repo_ / "index", false));
  EXPECT_EQ(snapshots, FilesOnDisk(repo_ / "snapshots", false));
  EXPECT_EQ(packs, FilesOnDisk(repo_ / "data", true));

  // Every listed file loads whole, at the path its handle names.
  for (const auto& [name, size] : packs) {
    Result<Bytes> data = be->Load({FileType::kPack, name}, 0, 0);
    ASSERT_TRUE(data.ok()) << data.status().ToString();
    EXPECT_EQ(data->size(), size);
  }
  Result<Bytes> config = be->Load(Handle::Config(), 0, 0);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(AsString(*config), ReadFileToString(TestDataPath("restic/repo-v2/config")));
}

}  // namespace
}  // namespace fsb::repo
