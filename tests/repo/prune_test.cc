#include "repo/prune.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "base/log.h"
#include "repo/check.h"
#include "repo/pack_saver.h"
#include "tests/support/faulty_backend.h"
#include "tests/support/mem_backend.h"
#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

using ::testing::HasSubstr;
using BlobKey = std::pair<int, Id>;  // (type, id)

const Secret<std::string> kPassword{std::string("prune test")};
constexpr uint64_t kSeed = 20261126;
// Small packs, so that a few dozen blobs spread over many packs.
constexpr uint64_t kPackSize = 6000;

RepositoryOptions SmallPacks() {
  RepositoryOptions o;
  o.pack_size = kPackSize;
  return o;
}

// Opens the repository in `mem` through a FaultyBackend (returned in *faulty when asked).
std::unique_ptr<Repository> OpenRepo(testing::MemBackend& mem,
                                     testing::FaultyBackend** faulty = nullptr) {
  auto fb = std::make_unique<testing::FaultyBackend>(mem);
  if (faulty) *faulty = fb.get();
  auto r = Repository::Open(std::move(fb), kPassword, SmallPacks());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(*r) : nullptr;
}

void CopyRepository(testing::MemBackend& from, testing::MemBackend& to) {
  Result<Bytes> config = from.Load(Handle::Config(), 0, 0);
  ASSERT_TRUE(config.ok());
  ASSERT_TRUE(to.Save(Handle::Config(), *config).ok());
  for (FileType t :
       {FileType::kKey, FileType::kPack, FileType::kIndex, FileType::kSnapshot, FileType::kLock}) {
    ASSERT_TRUE(from.List(t,
                          [&](const FileInfo& fi) {
                            Handle h{t, fi.name};
                            FSB_ASSIGN_OR_RETURN(Bytes data, from.Load(h, 0, 0));
                            return to.Save(h, data);
                          })
                    .ok());
  }
}

std::set<std::string> FileNames(testing::MemBackend& mem) {
  std::set<std::string> out;
  for (FileType t : {FileType::kPack, FileType::kIndex, FileType::kSnapshot, FileType::kLock}) {
    EXPECT_TRUE(mem.List(t,
                         [&](const FileInfo& fi) {
                           out.insert(Handle{t, fi.name}.Path());
                           return Status::Ok();
                         })
                    .ok());
  }
  return out;
}

// Every (type, id) reachable from the snapshots, by a plain recursive walk.
std::set<BlobKey> UsedBlobs(testing::MemBackend& mem) {
  auto r = OpenRepo(mem);
  EXPECT_TRUE(r->LoadIndex().ok());
  std::set<BlobKey> used;
  std::function<void(const Id&)> walk = [&](const Id& tree) {
    if (!used.insert({1, tree}).second) return;
    Result<std::vector<Node>> nodes = r->LoadTree(tree);
    ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
    for (const Node& n : *nodes) {
      for (const Id& c : n.content) used.insert({0, c});
      if (n.subtree) walk(*n.subtree);
    }
  };
  Result<std::vector<Id>> snapshots = r->ListSnapshotIds();
  EXPECT_TRUE(snapshots.ok());
  for (const Id& sid : *snapshots) walk(r->LoadSnapshot(sid)->tree);
  return used;
}

// Every index entry (duplicates counted) of every index file.
std::multiset<BlobKey> IndexEntries(testing::MemBackend& mem) {
  auto r = OpenRepo(mem);
  std::multiset<BlobKey> out;
  std::set<std::pair<Id, uint32_t>> seen;  // the same pack in two index files counts once
  EXPECT_TRUE(mem.List(FileType::kIndex,
                       [&](const FileInfo& fi) {
                         Result<Bytes> plain =
                             r->LoadUnpacked(FileType::kIndex, *Id::FromHex(fi.name));
                         EXPECT_TRUE(plain.ok());
                         Result<IndexFile> f = DecodeIndexFile(*plain, r->version());
                         EXPECT_TRUE(f.ok());
                         for (const auto& p : f->packs) {
                           for (const PackedBlob& b : p.blobs) {
                             if (seen.insert({p.id, b.offset}).second)
                               out.insert({static_cast<int>(b.type), b.id});
                           }
                         }
                         return Status::Ok();
                       })
                  .ok());
  return out;
}

// A check with --read-data; returns the errors, and the hints in *hints.
std::vector<std::string> CheckErrors(testing::MemBackend& mem,
                                     std::vector<std::string>* hints = nullptr) {
  auto r = OpenRepo(mem);
  CheckOptions o;
  o.read_data = true;
  Result<CheckResult> res = RunCheck(*r, o);
  EXPECT_TRUE(res.ok()) << res.status().ToString();
  if (!res.ok()) return {res.status().ToString()};
  if (hints) *hints = res->hints;
  return res->errors;
}

PruneOptions OneThread(PruneOptions o = {}) {
  o.walk_threads = 1;
  o.repack_threads = 1;
  o.delete_threads = 1;
  o.index_load_threads = 1;
  o.pack_saver.upload_threads = 1;
  return o;
}

PruneOptions MaxUnusedZero(PruneOptions o = OneThread()) {
  o.max_unused = *ParseMaxUnused("0%");
  return o;
}

// Builds repositories for the tests: backups as restic makes them (one PackSaver per backup,
// index files written at its end), then forgetting some snapshots.
class PruneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InitOptions init;
    init.scrypt_n = 1024;  // tests only: fast key derivation
    auto r = Repository::Init(std::make_unique<testing::FaultyBackend>(mem_), kPassword, init,
                              SmallPacks());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    std::mt19937_64 rng(kSeed);
    for (int i = 0; i < 80; i++) {
      Bytes b(800 + rng() % 2400);
      for (auto& c : b) c = static_cast<uint8_t>(rng());
      pool_.push_back(std::move(b));
    }
  }

  // Stores a data blob (unless the repository has it and `duplicate` is false).
  Id PutData(Repository& r, PackSaver& saver, const Bytes& plain, bool duplicate = false) {
    Id id = Id::Hash(plain);
    if (!duplicate && !r.ReserveBlob(BlobType::kData, id)) return id;
    uint32_t ulen = 0;
    Bytes stored =
        EncodeBlob(r.key(), BlobType::kData, plain, r.version(), CompressionMode::kAuto, &ulen);
    EXPECT_TRUE(saver.Add(BlobType::kData, id, std::move(stored), ulen, plain.size()).ok());
    return id;
  }
  Id PutTree(Repository& r, PackSaver& saver, const std::vector<Node>& nodes) {
    Bytes plain = EncodeTree(nodes);
    Id id = Id::Hash(plain);
    if (!r.ReserveBlob(BlobType::kTree, id)) return id;
    uint32_t ulen = 0;
    Bytes stored =
        EncodeBlob(r.key(), BlobType::kTree, plain, r.version(), CompressionMode::kAuto, &ulen);
    EXPECT_TRUE(saver.Add(BlobType::kTree, id, std::move(stored), ulen, plain.size()).ok());
    return id;
  }
  static Node File(std::string name, std::vector<Id> content) {
    Node n;
    n.name = std::move(name);
    n.type = NodeType::kFile;
    n.mode = 0644;
    n.content = std::move(content);
    return n;
  }
  static Node Dir(std::string name, Id subtree) {
    Node n;
    n.name = std::move(name);
    n.type = NodeType::kDir;
    n.mode = kGoModeDir | 0755;
    n.subtree = subtree;
    return n;
  }

  // One "backup": snapshot k holds pool blobs [8k, 8k + 24) in two files, one in a subdirectory.
  // Consecutive snapshots share two thirds of their data. `dup_from` re-stores that many of the
  // blobs although the repository has them (duplicates, as two concurrent backups make).
  Id Backup(int k, int dup_count = 0) {
    auto r = OpenRepo(mem_);
    EXPECT_TRUE(r->LoadIndex().ok());
    Id snap;
    {
      PackSaver saver(*r);
      std::vector<Id> a, b;
      for (int i = 0; i < 24; i++) {
        // Stored interleaved (k+0, k+8, k+16, k+1, ...): the blobs the next snapshot no longer
        // uses are spread over every pack of this backup.
        const int j = (i % 3) * 8 + i / 3;
        const Bytes& blob = pool_[static_cast<size_t>(8 * k + j) % pool_.size()];
        Id id = PutData(*r, saver, blob, i < dup_count);
        (i < 12 ? a : b).push_back(id);
      }
      Id sub = PutTree(*r, saver, {File("b.bin", b), File("k" + std::to_string(k), {})});
      Id root = PutTree(*r, saver, {File("a.bin", a), Dir("sub", sub)});
      EXPECT_TRUE(saver.Finish().ok());
      Snapshot s;
      s.time = Timestamp{1700000000 + k * 3600, 0, 0};
      s.tree = root;
      s.paths = {"/src"};
      s.hostname = "test";
      Result<Id> id = r->SaveSnapshot(s);
      EXPECT_TRUE(id.ok());
      snap = *id;
    }
    return snap;
  }

  void Forget(const Id& snapshot) {
    ASSERT_TRUE(mem_.Remove(Handle{FileType::kSnapshot, snapshot.Hex()}).ok());
  }

  // Six backups, every other one forgotten: the first backup's packs are partly used now, the
  // forgotten snapshots' trees are garbage.
  void BuildStandard() {
    for (int k = 0; k < 6; k++) snaps_.push_back(Backup(k));
    for (int k = 0; k < 6; k += 2) Forget(snaps_[static_cast<size_t>(k)]);
  }

  Result<PruneResult> RunPrune(PruneOptions o, PruneStats* stats = nullptr) {
    auto r = OpenRepo(mem_);
    return Prune(*r, std::move(o), stats);
  }

  testing::MemBackend mem_;
  std::vector<Bytes> pool_;
  std::vector<Id> snaps_;
};

TEST(PruneOptionsTest, ParseSizeAsRestic) {
  EXPECT_EQ(*ParseSize("100"), 100u);
  EXPECT_EQ(*ParseSize("1b"), 1u);
  EXPECT_EQ(*ParseSize("2k"), 2048u);
  EXPECT_EQ(*ParseSize("100M"), 100u << 20);
  EXPECT_EQ(*ParseSize("3g"), 3ull << 30);
  EXPECT_EQ(*ParseSize("1T"), 1ull << 40);
  for (const char* bad : {"", "M", "1.5M", "-1", "12x", "1 M"}) {
    EXPECT_EQ(ParseSize(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(PruneOptionsTest, ParseMaxUnusedAsRestic) {
  MaxUnused m = *ParseMaxUnused("5%");
  EXPECT_EQ(m.kind, MaxUnused::Kind::kPercent);
  EXPECT_EQ(m.Limit(950), 50u);  // 5 / 95 of the used bytes: 5 % of the total afterwards
  EXPECT_EQ(ParseMaxUnused("12.5%")->percent, 12.5);
  EXPECT_EQ(ParseMaxUnused(" unlimited ")->Limit(1), UINT64_MAX);
  EXPECT_EQ(ParseMaxUnused("100M")->Limit(1), 100u << 20);
  EXPECT_EQ(ParseMaxUnused("0")->Limit(1000), 0u);
  EXPECT_THAT(ParseMaxUnused("100%").status().message(), HasSubstr("below 100%"));
  EXPECT_THAT(ParseMaxUnused("-1%").status().message(), HasSubstr("must be positive"));
  EXPECT_THAT(ParseMaxUnused("x%").status().message(), HasSubstr("invalid percentage"));
  EXPECT_THAT(ParseMaxUnused("").status().message(), HasSubstr("invalid value for --max-unused"));
  EXPECT_THAT(ParseMaxUnused("5 percent").status().message(), HasSubstr("invalid number of bytes"));
}

TEST_F(PruneTest, RemovesUnusedDataAndKeepsEverythingReferenced) {
  BuildStandard();
  const std::set<BlobKey> used = UsedBlobs(mem_);
  const std::set<std::string> before = FileNames(mem_);
  PruneStats st;
  Result<PruneResult> res = RunPrune(MaxUnusedZero(), &st);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(st.snapshots, 3u);
  EXPECT_EQ(st.blobs.used, used.size());
  EXPECT_GT(st.blobs.unused, 0u);
  EXPECT_GT(st.packs.remove, 0u);
  EXPECT_GT(st.packs.repack, 0u);
  EXPECT_GT(res->packs_written, 0u);
  EXPECT_EQ(res->packs_removed, st.packs.remove + st.packs.repack);
  EXPECT_TRUE(res->remove_errors.empty());
  // With --max-unused 0% exactly the used blobs remain, each once.
  const std::multiset<BlobKey> entries = IndexEntries(mem_);
  EXPECT_EQ(std::set<BlobKey>(entries.begin(), entries.end()), used);
  EXPECT_EQ(entries.size(), used.size());
  std::vector<std::string> hints;
  EXPECT_THAT(CheckErrors(mem_, &hints), ::testing::IsEmpty());
  EXPECT_THAT(hints, ::testing::IsEmpty());  // no unreferenced packs, no pack indexed twice
  EXPECT_NE(FileNames(mem_), before);
  // A second run has nothing to do.
  Result<PruneResult> again = RunPrune(MaxUnusedZero(), &st);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(st.prune_blobs(), 0u);
  EXPECT_EQ(again->packs_removed + again->packs_written + again->index_files_written, 0u);
}

TEST_F(PruneTest, DefaultMaxUnusedToleratesSomeGarbageButDeletesUnusedPacks) {
  BuildStandard();
  PruneStats st;
  Result<PruneResult> res = RunPrune(OneThread(), &st);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_GT(st.packs.remove, 0u);
  EXPECT_LE(st.unused_bytes_after(), ParseMaxUnused("5%")->Limit(st.size.used) + kPackSize);
  EXPECT_THAT(CheckErrors(mem_), ::testing::IsEmpty());
  const std::set<BlobKey> used = UsedBlobs(mem_);
  const std::multiset<BlobKey> entries = IndexEntries(mem_);
  for (const BlobKey& k : used) EXPECT_TRUE(entries.count(k)) << k.second.Short();
}

TEST_F(PruneTest, UnlimitedMaxUnusedOnlyDeletesWholePacks) {
  BuildStandard();
  PruneOptions o = OneThread();
  o.max_unused = *ParseMaxUnused("unlimited");
  PruneStats st;
  Result<PruneResult> res = RunPrune(o, &st);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(st.packs.repack, 0u);
  EXPECT_EQ(res->packs_written, 0u);
  EXPECT_EQ(res->packs_removed, st.packs.remove);
  EXPECT_THAT(CheckErrors(mem_), ::testing::IsEmpty());
}

TEST_F(PruneTest, MaxRepackSizeLimitsRepacking) {
  BuildStandard();
  PruneOptions o = MaxUnusedZero();
  o.max_repack_bytes = 1;  // the first candidate already reaches it
  PruneStats st;
  ASSERT_TRUE(RunPrune(o, &st).ok());
  EXPECT_EQ(st.packs.repack, 0u);
  EXPECT_GT(st.packs.keep, 0u);
  EXPECT_THAT(CheckErrors(mem_), ::testing::IsEmpty());
}

TEST_F(PruneTest, RepackCacheableOnlyLeavesDataPacks) {
  BuildStandard();
  PruneOptions o = MaxUnusedZero();
  o.repack_cacheable_only = true;
  auto r = OpenRepo(mem_);
  auto p = Pruner::Plan(*r, o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  // Every pack chosen for repacking holds trees.
  for (const Id& id : (*p)->RepackPacks()) {
    Result<uint64_t> size = mem_.Size(Handle{FileType::kPack, id.Hex()});
    auto header = ReadPackHeader(mem_, r->key(), id, *size, r->version());
    ASSERT_TRUE(header.ok());
    EXPECT_EQ(header->front().type, BlobType::kTree) << id.Short();
  }
}

TEST_F(PruneTest, DryRunPlanChangesNothing) {
  BuildStandard();
  const std::set<std::string> before = FileNames(mem_);
  auto r = OpenRepo(mem_);
  auto p = Pruner::Plan(*r, MaxUnusedZero());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE((*p)->HasWork());
  EXPECT_FALSE((*p)->RemovePacks().empty());
  EXPECT_FALSE((*p)->RepackPacks().empty());
  EXPECT_EQ(FileNames(mem_), before);
}

TEST_F(PruneTest, PlanMemoryIsAboutFiftyBytesABlob) {
  for (int k = 0; k < 8; k++) snaps_.push_back(Backup(k));
  auto r = OpenRepo(mem_);
  auto p = Pruner::Plan(*r, OneThread());
  ASSERT_TRUE(p.ok());
  const uint64_t blobs = (*p)->stats().index_entries;
  ASSERT_GT(blobs, 50u);
  // 48-byte records + the bucket directory; the per-pack tables weigh more here than in a real
  // repository (2-3 blobs a pack instead of thousands).
  const uint64_t per_pack = sizeof(Id) + 48 + 64;
  EXPECT_LE((*p)->MemoryBytes(), blobs * 53 + (blobs / 2 + 16) * per_pack + 4096)
      << (*p)->MemoryBytes() << " bytes for " << blobs << " index entries";
}

TEST_F(PruneTest, DuplicateBlobsKeepOneCopy) {
  snaps_.push_back(Backup(0));
  // The first ten blobs backup 1 stores, seven of which backup 0 has (pool 8-11 and 16-18).
  snaps_.push_back(Backup(1, /*dup_count=*/10));
  const std::multiset<BlobKey> entries = IndexEntries(mem_);
  ASSERT_GT(entries.size(), std::set<BlobKey>(entries.begin(), entries.end()).size());
  PruneStats st;
  ASSERT_TRUE(RunPrune(MaxUnusedZero(), &st).ok());
  EXPECT_EQ(st.blobs.duplicate, 7u);
  const std::multiset<BlobKey> after = IndexEntries(mem_);
  EXPECT_EQ(after.size(), std::set<BlobKey>(after.begin(), after.end()).size());
  EXPECT_EQ(std::set<BlobKey>(after.begin(), after.end()), UsedBlobs(mem_));
  EXPECT_THAT(CheckErrors(mem_), ::testing::IsEmpty());
}

TEST_F(PruneTest, UnreferencedPacksAreRemovedFirst) {
  BuildStandard();
  // A pack no index names (a backup that died before writing its index).
  auto r = OpenRepo(mem_);
  PackBuilder b;
  uint32_t ulen = 0;
  Bytes plain = testing::SeededRandomBytes(7, 1000);
  b.Add(BlobType::kData, Id::Hash(plain),
        EncodeBlob(r->key(), BlobType::kData, plain, r->version(), CompressionMode::kAuto, &ulen),
        ulen);
  std::vector<PackedBlob> blobs;
  Bytes pack = b.Finish(r->key(), &blobs);
  const Handle orphan{FileType::kPack, Id::Hash(pack).Hex()};
  ASSERT_TRUE(mem_.Save(orphan, pack).ok());
  PruneOptions o = OneThread();
  std::vector<PrunePhase> phases;
  o.before_phase = [&](PrunePhase p) {
    phases.push_back(p);
    return Status::Ok();
  };
  PruneStats st;
  Result<PruneResult> res = RunPrune(o, &st);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(st.packs.unref, 1u);
  EXPECT_EQ(st.unref_bytes, pack.size());
  EXPECT_EQ(res->unreferenced_removed, 1u);
  EXPECT_FALSE(mem_.Contains(orphan));
  ASSERT_FALSE(phases.empty());
  EXPECT_EQ(phases.front(), PrunePhase::kRemoveUnreferenced);
}

TEST_F(PruneTest, UnneededMissingPackIsDroppedFromTheIndex) {
  BuildStandard();
  // Find a pack whose blobs are all unused and delete it behind the index's back.
  auto r = OpenRepo(mem_);
  auto p = Pruner::Plan(*r, OneThread());
  ASSERT_TRUE(p.ok());
  ASSERT_FALSE((*p)->RemovePacks().empty());
  const Id gone = (*p)->RemovePacks().front();
  ASSERT_TRUE(mem_.Remove(Handle{FileType::kPack, gone.Hex()}).ok());
  PruneStats st;
  Result<PruneResult> res = RunPrune(OneThread(), &st);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(st.missing_packs, 1u);
  std::vector<std::string> hints;
  EXPECT_THAT(CheckErrors(mem_, &hints), ::testing::IsEmpty());  // the index no longer names it
}

TEST_F(PruneTest, NeededMissingPackIsAnErrorNamingItAndNothingChanges) {
  BuildStandard();
  auto r = OpenRepo(mem_);
  ASSERT_TRUE(r->LoadIndex().ok());
  const Id needed = r->FindBlob(BlobType::kData, Id::Hash(pool_[40]))->pack;
  ASSERT_TRUE(mem_.Remove(Handle{FileType::kPack, needed.Hex()}).ok());
  const std::set<std::string> before = FileNames(mem_);
  Result<PruneResult> res = RunPrune(OneThread());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(res.status().message(), HasSubstr(needed.Hex()));
  EXPECT_THAT(res.status().message(), HasSubstr("missing"));
  EXPECT_EQ(FileNames(mem_), before);
}

TEST_F(PruneTest, BlobMissingFromTheIndexIsAnErrorAndNothingChanges) {
  BuildStandard();
  // A snapshot pointing at a tree whose data blob was never stored.
  auto r = OpenRepo(mem_);
  ASSERT_TRUE(r->LoadIndex().ok());
  const Id ghost = Id::Hash(AsBytes("never stored"));
  Id tree;
  {
    PackSaver saver(*r);
    tree = PutTree(*r, saver, {File("ghost", {ghost})});
    ASSERT_TRUE(saver.Finish().ok());
  }
  Snapshot s;
  s.time = Timestamp{1800000000, 0, 0};
  s.tree = tree;
  s.paths = {"/ghost"};
  ASSERT_TRUE(r->SaveSnapshot(s).ok());
  const std::set<std::string> before = FileNames(mem_);
  Result<PruneResult> res = RunPrune(OneThread());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(res.status().message(), HasSubstr("data " + ghost.Hex()));
  EXPECT_EQ(FileNames(mem_), before);
}

TEST_F(PruneTest, PackSizeDifferentFromTheIndexIsAnError) {
  BuildStandard();
  auto r = OpenRepo(mem_);
  ASSERT_TRUE(r->LoadIndex().ok());
  const Id pack = r->FindBlob(BlobType::kData, Id::Hash(pool_[40]))->pack;
  Bytes data = *mem_.Load(Handle{FileType::kPack, pack.Hex()}, 0, 0);
  data.push_back(0);
  ASSERT_TRUE(mem_.Save(Handle{FileType::kPack, pack.Hex()}, data).ok());
  Result<PruneResult> res = RunPrune(OneThread());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(res.status().message(), HasSubstr(pack.Hex()));
  EXPECT_THAT(res.status().message(), HasSubstr("does not match real size"));
}

TEST_F(PruneTest, CorruptBlobToRepackFailsBeforeAnythingIsDeleted) {
  BuildStandard();
  auto r0 = OpenRepo(mem_);
  auto plan = Pruner::Plan(*r0, MaxUnusedZero());
  ASSERT_TRUE(plan.ok());
  ASSERT_FALSE((*plan)->RepackPacks().empty());
  // Flip a byte of every blob of every data pack to be repacked (their used blobs have no other
  // copy; tree packs stay readable, or the plan would fail already).
  testing::FaultyBackend* faulty = nullptr;
  auto r = OpenRepo(mem_, &faulty);
  int flipped = 0;
  for (const Id& id : (*plan)->RepackPacks()) {
    const Handle h{FileType::kPack, id.Hex()};
    auto header = ReadPackHeader(mem_, r->key(), id, *mem_.Size(h), r->version());
    ASSERT_TRUE(header.ok());
    if (header->front().type != BlobType::kData) continue;
    for (const PackedBlob& b : *header) faulty->FlipByte(h, b.offset + 20);
    flipped++;
  }
  ASSERT_GT(flipped, 0);
  const std::set<std::string> packs_before = [&] {
    std::set<std::string> s;
    for (const std::string& n : FileNames(mem_))
      if (n.starts_with("data/")) s.insert(n);
    return s;
  }();
  Result<PruneResult> res = Prune(*r, MaxUnusedZero());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(res.status().message(), HasSubstr("repack pack"));
  for (const std::string& p : packs_before)
    EXPECT_TRUE(FileNames(mem_).count(p)) << p << " was deleted";
  EXPECT_THAT(CheckErrors(mem_), ::testing::IsEmpty());
}

TEST_F(PruneTest, IgnoredSnapshotsDoNotKeepData) {
  for (int k = 0; k < 4; k++) snaps_.push_back(Backup(k));
  PruneOptions o = MaxUnusedZero();
  o.ignore_snapshots = {snaps_[0], snaps_[1]};
  auto r = OpenRepo(mem_);
  auto p = Pruner::Plan(*r, o);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->stats().snapshots, 2u);
  EXPECT_GT((*p)->stats().blobs.unused, 0u);
}

TEST_F(PruneTest, BeforePhaseErrorStopsTheRunConsistently) {
  BuildStandard();
  PruneOptions o = MaxUnusedZero();
  o.before_phase = [](PrunePhase p) {
    if (p == PrunePhase::kRemoveIndex) return Status::FailedPrecondition("lock lost");
    return Status::Ok();
  };
  Result<PruneResult> res = RunPrune(o);
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(res.status().message(), HasSubstr("lock lost"));
  std::vector<std::string> hints;
  EXPECT_THAT(CheckErrors(mem_, &hints), ::testing::IsEmpty());
  EXPECT_FALSE(hints.empty());  // old and new index files both name the kept packs
  ASSERT_TRUE(RunPrune(MaxUnusedZero()).ok());
  const std::multiset<BlobKey> entries = IndexEntries(mem_);
  EXPECT_EQ(std::set<BlobKey>(entries.begin(), entries.end()), UsedBlobs(mem_));
}

// The crash test of issue #9: the backend dies at call N (the Nth call fails and so does every
// later one; with after_call the Nth call is carried out first), for every N a prune makes. Each
// time the repository must pass check --read-data with nothing but hints, keep every referenced
// blob, and a second prune must finish the job exactly as an uninterrupted one.
TEST_F(PruneTest, CrashAtEveryBackendCallLeavesACheckableRepository) {
  BuildStandard();
  // Duplicates, an unreferenced pack and more forgotten data make every phase do something.
  snaps_.push_back(Backup(6, /*dup_count=*/4));
  {
    auto r = OpenRepo(mem_);
    PackBuilder b;
    uint32_t ulen = 0;
    Bytes plain = testing::SeededRandomBytes(9, 700);
    b.Add(BlobType::kData, Id::Hash(plain),
          EncodeBlob(r->key(), BlobType::kData, plain, r->version(), CompressionMode::kAuto, &ulen),
          ulen);
    std::vector<PackedBlob> blobs;
    Bytes pack = b.Finish(r->key(), &blobs);
    ASSERT_TRUE(mem_.Save(Handle{FileType::kPack, Id::Hash(pack).Hex()}, pack).ok());
  }
  const std::set<BlobKey> used = UsedBlobs(mem_);

  // An uninterrupted run: how many calls there are, and the end state.
  int clean_calls = 0;
  std::multiset<BlobKey> clean_end;
  {
    testing::MemBackend copy;
    CopyRepository(mem_, copy);
    testing::FaultyBackend* faulty = nullptr;
    auto r = OpenRepo(copy, &faulty);
    faulty->ResetCounts();
    ASSERT_TRUE(Prune(*r, MaxUnusedZero()).ok());
    clean_calls = faulty->TotalCalls();
    clean_end = IndexEntries(copy);
    ASSERT_EQ(std::set<BlobKey>(clean_end.begin(), clean_end.end()), used);
  }
  ASSERT_GT(clean_calls, 40);

  // Every crash makes the deletions warn; thousands of those lines help nobody.
  auto log = GetLogger("repo");
  const spdlog::level::level_enum level = log->level();
  log->set_level(spdlog::level::err);
  int crashed = 0, points = 0;
  // One thread per stage (calls in a fixed order), then the default pools (the order varies).
  for (bool parallel : {false, true}) {
    const PruneOptions options = parallel ? MaxUnusedZero(PruneOptions{}) : MaxUnusedZero();
    for (bool after_call : {false, true}) {
      for (int n = 1; n <= clean_calls + 5; n++, points++) {
        SCOPED_TRACE(::testing::Message()
                     << "crash at call " << n << (after_call ? " after the call" : "")
                     << (parallel ? ", parallel" : ""));
        testing::MemBackend copy;
        CopyRepository(mem_, copy);
        {
          testing::FaultyBackend* faulty = nullptr;
          auto r = OpenRepo(copy, &faulty);
          faulty->CrashAt(n, Status::Unavailable("simulated crash"), after_call);
          Result<PruneResult> res = Prune(*r, options);
          if (!res.ok() || !res->remove_errors.empty()) crashed++;
        }
        std::vector<std::string> hints;
        const std::vector<std::string> errors = CheckErrors(copy, &hints);
        ASSERT_THAT(errors, ::testing::IsEmpty());
        for (const std::string& h : hints) {
          EXPECT_THAT(h, ::testing::AnyOf(HasSubstr("not referenced in any index"),
                                          HasSubstr("listed in several index files")));
        }
        // No referenced blob is lost: every one is indexed (and check read it).
        const std::multiset<BlobKey> mid = IndexEntries(copy);
        for (const BlobKey& k : used) ASSERT_TRUE(mid.count(k)) << k.second.Short() << " lost";
        // The next prune completes the job.
        {
          auto r = OpenRepo(copy);
          Result<PruneResult> res = Prune(*r, MaxUnusedZero());
          ASSERT_TRUE(res.ok()) << res.status().ToString();
        }
        EXPECT_EQ(IndexEntries(copy), clean_end);
        hints.clear();
        ASSERT_THAT(CheckErrors(copy, &hints), ::testing::IsEmpty());
        EXPECT_THAT(hints, ::testing::IsEmpty());
      }
    }
  }
  log->set_level(level);
  EXPECT_GT(crashed, 2 * clean_calls);
  RecordProperty("crash_points", points);
  std::printf(
      "crash points tested: %d (%d calls in an uninterrupted prune; before and after each call; "
      "one thread per stage and the default pools)\n",
      points, clean_calls);
}

}  // namespace
}  // namespace fsb::repo
