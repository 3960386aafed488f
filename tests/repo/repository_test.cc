#include "repo/backend/open.h"
#include "repo/repository.h"

#include <gmock/gmock.h>
#include <atomic>
#include <filesystem>
#include <thread>
#include <gtest/gtest.h>

#include "repo/backend/local/local_backend.h"
#include "repo/pack_saver.h"
#include "tests/support/faulty_backend.h"
#include "tests/support/mem_backend.h"
#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

using ::testing::HasSubstr;

const Secret<std::string> kPassword{std::string("correct horse")};

InitOptions FastInit(uint32_t version = 2) {
  InitOptions o;
  o.version = version;
  o.scrypt_n = 1024;  // tests only: keep key derivation fast
  return o;
}

// Encodes `plain` as restic does and hands it to `saver`.
Status AddEncoded(PackSaver& saver, Repository& r, BlobType type, const Bytes& plain) {
  uint32_t ulen = 0;
  Bytes stored = EncodeBlob(r.key(), type, plain, r.version(), CompressionMode::kAuto, &ulen);
  return saver.Add(type, Id::Hash(plain), std::move(stored), ulen, plain.size());
}

class RepositoryTest : public ::testing::Test {
 protected:
  std::unique_ptr<Repository> InitMem(uint32_t version = 2) {
    auto mem = std::make_unique<testing::MemBackend>();
    mem_ = mem.get();
    auto r = Repository::Init(std::move(mem), kPassword, FastInit(version));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(*r);
  }
  testing::MemBackend* mem_ = nullptr;
};

TEST_F(RepositoryTest, InitThenOpenWithPassword) {
  {
    auto r = InitMem();
    EXPECT_EQ(r->version(), 2u);
    EXPECT_EQ(r->config().id.size(), 64u);
  }
  testing::TempDir dir;
  auto be = LocalBackend::Open(dir.str());
  ASSERT_TRUE(be.ok());
  auto r = Repository::Init(std::move(*be), kPassword, FastInit());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string id = (*r)->config().id;
  const uint64_t poly = (*r)->config().chunker_polynomial;
  auto reopened = Repository::Open(std::move(*LocalBackend::Open(dir.str())), kPassword);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ((*reopened)->config().id, id);
  EXPECT_EQ((*reopened)->config().chunker_polynomial, poly);
}

TEST_F(RepositoryTest, WrongPasswordIsPermissionDeniedWithoutSecret) {
  testing::TempDir dir;
  ASSERT_TRUE(Repository::Init(std::move(*LocalBackend::Open(dir.str())), kPassword, FastInit()).ok());
  auto r = Repository::Open(std::move(*LocalBackend::Open(dir.str())), Secret<std::string>("nope-secret"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(r.status().message(), HasSubstr("wrong password"));
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("nope-secret")));
}

TEST_F(RepositoryTest, InitRefusesExistingRepository) {
  testing::TempDir dir;
  ASSERT_TRUE(Repository::Init(std::move(*LocalBackend::Open(dir.str())), kPassword, FastInit()).ok());
  auto again = Repository::Init(std::move(*LocalBackend::Open(dir.str())), kPassword, FastInit());
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
}

TEST_F(RepositoryTest, UnpackedFilesVerifyTheirName) {
  auto r = InitMem();
  Result<Id> id = r->SaveUnpacked(FileType::kSnapshot, AsBytes("{\"x\":1}"));
  ASSERT_TRUE(id.ok());
  Result<Bytes> back = r->LoadUnpacked(FileType::kSnapshot, *id);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(AsString(*back), "{\"x\":1}");
  // Stored compressed in v2: plaintext starts with 0x02 (restic-repo-format.md §5).
  Bytes raw = *mem_->Load(Handle{FileType::kSnapshot, id->Hex()}, 0, 0);
  Bytes plain = *Open(r->key(), raw);
  EXPECT_EQ(plain[0], 0x02);
  // Tampering is noticed and named.
  raw[20] ^= 1;
  ASSERT_TRUE(mem_->Save(Handle{FileType::kSnapshot, id->Hex()}, raw).ok());
  Result<Bytes> bad = r->LoadUnpacked(FileType::kSnapshot, *id);
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(bad.status().message(), HasSubstr(id->Short()));
}

TEST_F(RepositoryTest, FindSnapshotByPrefixLatestAndAmbiguity) {
  auto r = InitMem();
  std::vector<Id> ids;
  for (int i = 0; i < 40; i++) {
    Snapshot s;
    s.time = Timestamp{1700000000 + i, 0, 0};
    s.tree = Id::Hash(AsBytes("t"));
    s.paths = {"/p"};
    ids.push_back(*r->SaveSnapshot(s));
  }
  EXPECT_EQ(*r->FindSnapshot("latest"), ids.back());
  EXPECT_EQ(*r->FindSnapshot(ids[3].Hex()), ids[3]);
  EXPECT_EQ(*r->FindSnapshot(ids[3].Short()), ids[3]);
  // With 40 snapshots some 1-digit prefix is shared.
  int ambiguous = 0;
  for (char c : std::string("0123456789abcdef")) {
    auto f = r->FindSnapshot(std::string(1, c));
    if (!f.ok() && f.status().code() == StatusCode::kInvalidArgument) ambiguous++;
  }
  EXPECT_GT(ambiguous, 0);
  EXPECT_EQ(r->FindSnapshot("zz").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r->FindSnapshot(std::string(64, '0')).status().code(), StatusCode::kNotFound);
}

// A PackSaver destroyed right after it was made (a backup or prune that failed at once) stops its
// upload threads: a stop requested outside the lock the threads wait under was missed now and then
// (one thread between its check and its wait), and the destructor's join hung.
TEST_F(RepositoryTest, PackSaverDestroyedAtOnceNeverHangs) {
  auto r = InitMem();
  PackSaverOptions o;
  o.upload_threads = 4;
  std::atomic<bool> done{false};
  std::thread run([&] {
    for (int i = 0; i < 20000; i++) PackSaver saver(*r, o);
    done = true;
  });
  for (int i = 0; i < 1200 && !done; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (!done) {
    run.detach();  // hung: leave it, and the repository it uses, to the end of the process
    (void)r.release();
    FAIL() << "a PackSaver's destructor did not return within 60 s";
  }
  run.join();
}

TEST_F(RepositoryTest, PackSaverStoresIndexesAndDedups) {
  auto r = InitMem();
  {
    PackSaver saver(*r);
    for (int i = 0; i < 50; i++) {
      Bytes plain = testing::SeededRandomBytes(i, 100000);
      Id id = Id::Hash(plain);
      ASSERT_TRUE(r->ReserveBlob(BlobType::kData, id));
      EXPECT_FALSE(r->ReserveBlob(BlobType::kData, id));  // reserved: a second writer skips it
      uint32_t ulen = 0;
      Bytes stored = EncodeBlob(r->key(), BlobType::kData, plain, 2, CompressionMode::kAuto, &ulen);
      ASSERT_TRUE(saver.Add(BlobType::kData, id, std::move(stored), ulen, plain.size()).ok());
    }
    ASSERT_TRUE(saver.Finish().ok());
    EXPECT_EQ(saver.stats().index_files, 1u);
  }
  EXPECT_EQ(r->IndexSize(), 50u);
  Bytes plain7 = testing::SeededRandomBytes(7, 100000);
  Result<Bytes> b = r->LoadBlob(BlobType::kData, Id::Hash(plain7));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, plain7);
}

// A backup that failed releases what it reserved and did not store, and only that: another
// writer's reservations and indexed blobs stay.
TEST_F(RepositoryTest, ReleasedReservationsAreTheWritersUnindexedOnes) {
  auto r = InitMem();
  const uint64_t failed = r->NewWriter(), other = r->NewWriter();
  ASSERT_NE(failed, other);
  const Id stored = Id::Hash(AsBytes(std::string("stored")));
  const Id lost = Id::Hash(AsBytes(std::string("lost")));
  const Id others = Id::Hash(AsBytes(std::string("other writer's")));
  ASSERT_TRUE(r->ReserveBlob(BlobType::kData, stored, failed));
  ASSERT_TRUE(r->ReserveBlob(BlobType::kTree, lost, failed));
  ASSERT_TRUE(r->ReserveBlob(BlobType::kData, others, other));
  r->AddToIndex(Id::Hash(AsBytes(std::string("pack"))),
                {PackedBlob{BlobType::kData, stored, 0, 100, 0}});
  r->ReleaseReservations(failed);
  EXPECT_TRUE(r->ReserveBlob(BlobType::kTree, lost, other));      // to be stored again
  EXPECT_FALSE(r->ReserveBlob(BlobType::kData, stored, other));   // indexed
  EXPECT_FALSE(r->ReserveBlob(BlobType::kData, others, failed));  // still the other's
}

TEST_F(RepositoryTest, FailedPackUploadIsReportedAndNothingIndexed) {
  testing::MemBackend mem;
  auto faulty = std::make_unique<testing::FaultyBackend>(mem);
  testing::FaultyBackend* f = faulty.get();
  auto r = Repository::Init(std::move(faulty), kPassword, FastInit());
  ASSERT_TRUE(r.ok());
  f->FailAlways(testing::BackendOp::kSave, Status::Unavailable("HTTP 503"));
  PackSaver saver(**r);
  ASSERT_TRUE(AddEncoded(saver, **r, BlobType::kData, testing::SeededRandomBytes(1, 1000)).ok());
  Status s = saver.Finish();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("save pack"));
  EXPECT_EQ((*r)->IndexSize(), 0u);
}

// Local repositories get their packs through spool files (written as blobs come, never held in
// memory). Four threads add small blobs (gathered into one write) and big ones (written directly);
// each pack on disk must be named by the SHA-256 of its bytes, have a valid header listing exactly
// the blobs it holds, and every blob must load back.
TEST_F(RepositoryTest, SpooledPacksAreCompleteAndNamedByTheirHash) {
  testing::TempDir dir;
  auto be = LocalBackend::Open((dir.path() / "r").string(), {.max_connections = 2, .create_if_missing = true});
  ASSERT_TRUE(be.ok());
  RepositoryOptions ro;
  ro.pack_size = 3u << 20;  // several packs from a few MB
  auto r = Repository::Init(std::move(*be), kPassword, FastInit(), ro);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::vector<Bytes> plains;
  for (int i = 0; i < 120; i++) {
    plains.push_back(testing::SeededRandomBytes(i, i % 10 == 0 ? 400000 : 1000 + 997 * i));
  }
  uint64_t packs = 0;
  {
    PackSaver saver(**r);
    std::vector<std::thread> threads;
    std::atomic<bool> ok{true};
    for (int t = 0; t < 4; t++) {
      threads.emplace_back([&, t] {
        for (size_t i = t; i < plains.size(); i += 4) {
          const BlobType type = i % 7 == 3 ? BlobType::kTree : BlobType::kData;
          if (!(*r)->ReserveBlob(type, Id::Hash(plains[i]))) continue;
          if (!AddEncoded(saver, **r, type, plains[i]).ok()) ok = false;
        }
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_TRUE(ok.load());
    Status fin = saver.Finish();
    ASSERT_TRUE(fin.ok()) << fin.ToString();
    packs = saver.stats().packs;
  }
  EXPECT_GE(packs, 3u);
  size_t blobs_in_packs = 0;
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path() / "r" / "data")) {
    if (!e.is_regular_file()) continue;
    files++;
    const std::string name = e.path().filename().string();
    const std::string bytes = testing::ReadFileToString(e.path());
    EXPECT_EQ(Id::Hash(AsBytes(bytes)).Hex(), name);
    Result<Id> id = Id::FromHex(name);
    ASSERT_TRUE(id.ok());
    uint64_t need = 0;
    Result<std::vector<PackedBlob>> header =
        ParsePackHeader((*r)->key(), *id, bytes.size(), AsBytes(bytes), 2, &need);
    ASSERT_TRUE(header.ok()) << header.status().ToString();
    blobs_in_packs += header->size();
    EXPECT_EQ(std::filesystem::status(e.path()).permissions() & std::filesystem::perms::owner_write,
              std::filesystem::perms::none);
  }
  EXPECT_EQ(files, packs);
  EXPECT_EQ(blobs_in_packs, plains.size());
  for (size_t i = 0; i < plains.size(); i++) {
    const BlobType type = i % 7 == 3 ? BlobType::kTree : BlobType::kData;
    Result<Bytes> b = (*r)->LoadBlob(type, Id::Hash(plains[i]));
    ASSERT_TRUE(b.ok()) << i << ": " << b.status().ToString();
    EXPECT_EQ(*b, plains[i]);
  }
}

// A spooled pack whose publication fails is reported, indexes nothing and leaves no file.
TEST_F(RepositoryTest, FailedSpooledPackLeavesNothingBehind) {
  testing::TempDir dir;
  auto be = LocalBackend::Open((dir.path() / "r").string(), {.max_connections = 2, .create_if_missing = true});
  ASSERT_TRUE(be.ok());
  auto faulty = std::make_unique<testing::FaultyBackend>(**be);
  testing::FaultyBackend* f = faulty.get();
  auto r = Repository::Init(std::move(faulty), kPassword, FastInit());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  f->FailAlways(testing::BackendOp::kSave, Status::Unavailable("disk went away"));
  {
    PackSaver saver(**r);
    for (int i = 0; i < 5; i++) {
      ASSERT_TRUE(AddEncoded(saver, **r, BlobType::kData, testing::SeededRandomBytes(i, 300000)).ok());
    }
    Status s = saver.Finish();
    EXPECT_EQ(s.code(), StatusCode::kUnavailable);
    EXPECT_THAT(s.message(), HasSubstr("save pack"));
  }
  EXPECT_GE(f->Calls(testing::BackendOp::kSave), 1);  // the spool's Publish went through the wrapper
  EXPECT_EQ((*r)->IndexSize(), 0u);
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path() / "r" / "data")) {
    EXPECT_FALSE(e.is_regular_file()) << e.path();
  }
}

TEST_F(RepositoryTest, OpensResticFixturesAndLoadsEverything) {
  for (const std::string v : {"repo-v1", "repo-v2"}) {
    testing::TempDir dir;
    testing::CopyTree(testing::TestDataPath("restic/" + v), dir.path() / "r");
    std::string pw = testing::ReadFileToString(testing::TestDataPath("restic/password.txt"));
    pw.erase(pw.find_last_not_of("\n") + 1);
    auto r = Repository::Open(std::move(*LocalBackend::Open((dir.path() / "r").string())), Secret<std::string>(pw));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)->version(), v == "repo-v1" ? 1u : 2u);
    ASSERT_TRUE((*r)->LoadIndex().ok());
    auto ids = (*r)->ListSnapshotIds();
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(ids->size(), v == "repo-v1" ? 1u : 4u);
    for (const Id& id : *ids) {
      auto s = (*r)->LoadSnapshot(id);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      auto tree = (*r)->LoadBlob(BlobType::kTree, s->tree);
      ASSERT_TRUE(tree.ok()) << tree.status().ToString();
      // Identical bytes to what restic cat blob printed.
      EXPECT_EQ(AsString(*tree), testing::ReadFileToString(testing::TestDataPath(
                                     "restic/decoded/" + v + "/trees/" + s->tree.Hex() + ".json")));
    }
  }
}

TEST_F(RepositoryTest, ConfigVersionAndPolynomialAreChecked) {
  Config c;
  c.version = 3;
  c.id = std::string(64, 'a');
  c.chunker_polynomial = 0x2ca2f83a5f769dULL;
  Result<Config> r = DecodeConfig(AsBytes(EncodeConfig(c)));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("unsupported repository version 3"));
  c.version = 2;
  c.chunker_polynomial = 0x2ca2f83a5f769dULL * 3 & ((1ULL << 54) - 1);
  EXPECT_FALSE(DecodeConfig(AsBytes(EncodeConfig(c))).ok());
  c.chunker_polynomial = 0x2ca2f83a5f769dULL;
  EXPECT_EQ(EncodeConfig(c), "{\"version\":2,\"id\":\"" + c.id + "\",\"chunker_polynomial\":\"2ca2f83a5f769d\"}");
}

TEST_F(RepositoryTest, MissingRepositoryIsNotFound) {
  auto be = OpenBackend("/nonexistent/fsb/repo", false);
  ASSERT_FALSE(be.ok());
  EXPECT_EQ(be.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(be.status().message(), HasSubstr("/nonexistent/fsb/repo"));
  auto s3 = OpenBackend("sftp:host:/x", false);
  EXPECT_EQ(s3.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fsb::repo
