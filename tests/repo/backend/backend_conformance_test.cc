// The Backend contract (repo/backend/backend.h), checked against every implementation. To add a
// backend (S3 against s3rver, say), write a BackendEnv subclass that owns what it needs and add one
// BackendParam to kBackends; an env that cannot run here (no s3rver) sets skip_reason.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "repo/backend/backend.h"
#include "repo/backend/local/local_backend.h"
#include "repo/backend/s3/s3_backend.h"
#include "tests/support/faulty_backend.h"
#include "tests/support/mem_backend.h"
#include "tests/support/s3_server.h"
#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

using ::fsb::testing::BackendOp;
using ::fsb::testing::FaultyBackend;
using ::fsb::testing::MemBackend;
using ::fsb::testing::SeededRandomBytes;
using ::fsb::testing::TempDir;
using ::testing::HasSubstr;

// One backend under test plus whatever keeps it alive (a temp dir, a server).
class BackendEnv {
 public:
  virtual ~BackendEnv() = default;
  virtual Backend& backend() = 0;
  // Non-empty when this backend cannot be tested here; the test is skipped with this reason.
  std::string skip_reason;
};

class MemEnv : public BackendEnv {
 public:
  Backend& backend() override { return mem_; }

 private:
  MemBackend mem_;
};

class LocalEnv : public BackendEnv {
 public:
  LocalEnv() {
    Result<std::unique_ptr<LocalBackend>> be =
        LocalBackend::Open(dir_.str() + "/repo", {.create_if_missing = true});
    if (!be.ok()) {
      ADD_FAILURE() << "open local backend: " << be.status().ToString();
      return;
    }
    local_ = std::move(be).value();
  }
  Backend& backend() override { return *local_; }

 private:
  TempDir dir_;
  std::unique_ptr<LocalBackend> local_;
};

// FaultyBackend with no faults set must be a transparent decorator.
class FaultyOverMemEnv : public BackendEnv {
 public:
  Backend& backend() override { return faulty_; }

 private:
  MemBackend mem_;
  FaultyBackend faulty_{mem_};
};

// S3Backend against the shared s3rver 3.7.1 (plain http), each env in a bucket of its own that
// Create() makes; optionally under a prefix.
class S3Env : public BackendEnv {
 public:
  explicit S3Env(std::string prefix) {
    std::string why;
    testing::S3Server* server = testing::SharedS3Server(&why);
    if (server == nullptr) {
      if (testing::InteropRequired()) ADD_FAILURE() << "s3rver required but unavailable: " << why;
      skip_reason = "no s3rver: " + why;
      return;
    }
    Result<std::unique_ptr<S3Backend>> be =
        S3Backend::Open(testing::TestS3Config(*server, testing::UniqueBucketName(), prefix));
    if (!be.ok()) {
      ADD_FAILURE() << "open s3 backend: " << be.status().ToString();
      return;
    }
    s3_ = std::move(be).value();
  }
  Backend& backend() override { return *s3_; }

 private:
  std::unique_ptr<S3Backend> s3_;
};

struct BackendParam {
  std::string name;
  std::function<std::unique_ptr<BackendEnv>()> make;
};

const std::vector<BackendParam>& Backends() {
  static const std::vector<BackendParam> kBackends = {
      {"Mem", [] { return std::make_unique<MemEnv>(); }},
      {"Local", [] { return std::make_unique<LocalEnv>(); }},
      {"FaultyOverMem", [] { return std::make_unique<FaultyOverMemEnv>(); }},
      {"S3", [] { return std::make_unique<S3Env>(""); }},
      {"S3WithPrefix", [] { return std::make_unique<S3Env>("velero/restic/app-ns"); }},
  };
  return kBackends;
}

// A content-addressed file as the repository layer would write it: name = SHA-256 of the bytes is
// not needed by the backend, so a seeded 64-hex name stands in for it.
std::string IdName(uint64_t seed) { return HexEncode(SeededRandomBytes(seed, 32)); }

Bytes Content(uint64_t seed, size_t n) { return SeededRandomBytes(seed + 1000, n); }

class BackendConformanceTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    env_ = GetParam().make();
    if (!env_->skip_reason.empty()) GTEST_SKIP() << env_->skip_reason;
    if (HasFailure()) return;
    be_ = &env_->backend();
    ASSERT_TRUE(be_->Create().ok());
  }

  // name -> size, from List.
  std::map<std::string, uint64_t> ListAll(FileType type) {
    std::map<std::string, uint64_t> out;
    Status s = be_->List(type, [&](const FileInfo& f) {
      EXPECT_TRUE(out.emplace(f.name, f.size).second) << "listed twice: " << f.name;
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  void SaveOrDie(const Handle& h, ByteView data) {
    Status s = be_->Save(h, data);
    ASSERT_TRUE(s.ok()) << h.Path() << ": " << s.ToString();
  }

  std::unique_ptr<BackendEnv> env_;
  Backend* be_ = nullptr;
};

constexpr FileType kIdTypes[] = {FileType::kKey, FileType::kPack, FileType::kIndex,
                                 FileType::kSnapshot, FileType::kLock};

TEST_P(BackendConformanceTest, SaveLoadRoundTripEveryType) {
  uint64_t seed = 1;
  for (FileType type : kIdTypes) {
    const Handle h{type, IdName(seed)};
    const Bytes data = Content(seed, 1000 + seed);
    SaveOrDie(h, data);
    Result<Bytes> got = be_->Load(h, 0, 0);
    ASSERT_TRUE(got.ok()) << h.Path() << ": " << got.status().ToString();
    EXPECT_EQ(*got, data) << h.Path();
    seed++;
  }
}

TEST_P(BackendConformanceTest, LargeFileRoundTrip) {
  const Handle h{FileType::kPack, IdName(7)};
  const Bytes data = Content(7, (5 << 20) + 3);  // more than any single write/read syscall chunk
  SaveOrDie(h, data);
  Result<Bytes> got = be_->Load(h, 0, 0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
}

// A byte range of a file, for the ranged-load tests.
struct Range {
  uint64_t offset, length;
};

TEST_P(BackendConformanceTest, RangedLoad) {
  const Handle h{FileType::kPack, IdName(2)};
  const Bytes data = Content(2, 4096);
  SaveOrDie(h, data);
  for (const Range r : {Range{0, 1}, Range{0, 4096}, Range{100, 200}, Range{4095, 1},
                        Range{4092, 4}, Range{1, 4095}}) {
    Result<Bytes> got = be_->Load(h, r.offset, r.length);
    ASSERT_TRUE(got.ok()) << r.offset << "+" << r.length << ": " << got.status().ToString();
    EXPECT_EQ(*got, Bytes(data.begin() + r.offset, data.begin() + r.offset + r.length))
        << r.offset << "+" << r.length;
  }
}

// LoadInto: the same bytes and the same errors as Load, into the caller's buffer.
TEST_P(BackendConformanceTest, LoadIntoReadsTheRangeOrFailsAsLoad) {
  const Handle h{FileType::kPack, IdName(12)};
  const Bytes data = Content(12, 4096);
  SaveOrDie(h, data);
  for (const Range r : {Range{0, 1}, Range{0, 4096}, Range{100, 200}, Range{4095, 1}}) {
    Bytes got(r.length, 0xee);
    Status s = be_->LoadInto(h, r.offset, MutableByteView(got.data(), got.size()));
    ASSERT_TRUE(s.ok()) << r.offset << "+" << r.length << ": " << s.ToString();
    EXPECT_EQ(got, Bytes(data.begin() + r.offset, data.begin() + r.offset + r.length));
  }
  Bytes past(10);
  EXPECT_EQ(be_->LoadInto(h, 4090, MutableByteView(past.data(), past.size())).code(),
            StatusCode::kCorruption);
  EXPECT_EQ(be_->LoadInto({FileType::kPack, IdName(13)}, 0, MutableByteView(past.data(), 1)).code(),
            StatusCode::kNotFound);
}

TEST_P(BackendConformanceTest, ZeroLengthReadsFromOffsetToEnd) {
  const Handle h{FileType::kIndex, IdName(3)};
  const Bytes data = Content(3, 500);
  SaveOrDie(h, data);
  Result<Bytes> tail = be_->Load(h, 123, 0);
  ASSERT_TRUE(tail.ok()) << tail.status().ToString();
  EXPECT_EQ(*tail, Bytes(data.begin() + 123, data.end()));
  Result<Bytes> at_end = be_->Load(h, 500, 0);
  ASSERT_TRUE(at_end.ok()) << at_end.status().ToString();
  EXPECT_TRUE(at_end->empty());
}

TEST_P(BackendConformanceTest, LoadPastEndIsCorruption) {
  const Handle h{FileType::kPack, IdName(4)};
  SaveOrDie(h, Content(4, 100));
  for (const Range r : {Range{0, 101}, Range{90, 11}, Range{100, 1}, Range{101, 0}, Range{1000, 10},
                        Range{1, UINT64_MAX}, Range{UINT64_MAX, 2}}) {
    Result<Bytes> got = be_->Load(h, r.offset, r.length);
    ASSERT_FALSE(got.ok()) << r.offset << "+" << r.length;
    EXPECT_EQ(got.status().code(), StatusCode::kCorruption)
        << r.offset << "+" << r.length << ": " << got.status().ToString();
  }
}

TEST_P(BackendConformanceTest, MissingFileIsNotFound) {
  const Handle h{FileType::kSnapshot, IdName(5)};
  Result<Bytes> loaded = be_->Load(h, 0, 0);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kNotFound) << loaded.status().ToString();
  Result<Bytes> ranged = be_->Load({FileType::kPack, IdName(5)}, 10, 20);
  ASSERT_FALSE(ranged.ok());
  EXPECT_EQ(ranged.status().code(), StatusCode::kNotFound) << ranged.status().ToString();
  Result<uint64_t> size = be_->Size(h);
  ASSERT_FALSE(size.ok());
  EXPECT_EQ(size.status().code(), StatusCode::kNotFound) << size.status().ToString();
  Status removed = be_->Remove(h);
  EXPECT_EQ(removed.code(), StatusCode::kNotFound) << removed.ToString();
  // The name in the message: a person must be able to tell which file is missing.
  EXPECT_THAT(loaded.status().message(), HasSubstr(IdName(5)));
}

TEST_P(BackendConformanceTest, Size) {
  for (size_t n : {size_t{1}, size_t{4096}, size_t{100000}}) {
    const Handle h{FileType::kPack, IdName(10 + n)};
    SaveOrDie(h, Content(n, n));
    Result<uint64_t> size = be_->Size(h);
    ASSERT_TRUE(size.ok()) << size.status().ToString();
    EXPECT_EQ(*size, n);
  }
}

TEST_P(BackendConformanceTest, ListKeepsTypesApartWithSizes) {
  std::map<FileType, std::map<std::string, uint64_t>> want;
  uint64_t seed = 100;
  for (FileType type : kIdTypes) {
    for (int i = 0; i < 3; i++, seed++) {
      const Handle h{type, IdName(seed)};
      SaveOrDie(h, Content(seed, seed));
      want[type][h.name] = seed;
    }
  }
  SaveOrDie(Handle::Config(), ToBytes("config bytes"));
  for (FileType type : kIdTypes) {
    EXPECT_EQ(ListAll(type), want[type]) << FileTypeName(type);
  }
  // "config" is not a 64-hex name, so it is never listed.
  EXPECT_TRUE(ListAll(FileType::kConfig).empty());
}

TEST_P(BackendConformanceTest, ListPacksAcrossPrefixes) {
  // Names chosen to land in different data/xx directories, including the first and last.
  std::map<std::string, uint64_t> want;
  uint64_t seed = 200;
  for (const char* prefix : {"00", "01", "7f", "ab", "ff"}) {
    const std::string name = prefix + IdName(seed).substr(2);
    SaveOrDie({FileType::kPack, name}, Content(seed, seed));
    want[name] = seed;
    seed++;
  }
  // Two packs sharing a prefix directory.
  std::string same = "ab" + IdName(300).substr(2);
  SaveOrDie({FileType::kPack, same}, Content(300, 77));
  want[same] = 77;
  EXPECT_EQ(ListAll(FileType::kPack), want);
}

TEST_P(BackendConformanceTest, ListOfEmptyRepositoryCallsNothing) {
  for (FileType type : kIdTypes) {
    EXPECT_TRUE(ListAll(type).empty()) << FileTypeName(type);
  }
}

TEST_P(BackendConformanceTest, ListStopsAtCallbackError) {
  for (uint64_t i = 0; i < 5; i++) SaveOrDie({FileType::kIndex, IdName(400 + i)}, Content(i, 10));
  int calls = 0;
  Status s = be_->List(FileType::kIndex, [&](const FileInfo&) {
    calls++;
    return calls == 2 ? Status::Cancelled("enough") : Status::Ok();
  });
  EXPECT_EQ(s.code(), StatusCode::kCancelled) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("enough"));
  EXPECT_EQ(calls, 2);
}

TEST_P(BackendConformanceTest, CallbackMayRemoveWhileListing) {
  for (uint64_t i = 0; i < 4; i++) SaveOrDie({FileType::kLock, IdName(500 + i)}, Content(i, 10));
  Status s = be_->List(FileType::kLock, [&](const FileInfo& f) {
    return be_->Remove({FileType::kLock, f.name});
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(ListAll(FileType::kLock).empty());
}

TEST_P(BackendConformanceTest, Remove) {
  const Handle keep{FileType::kKey, IdName(600)};
  const Handle gone{FileType::kKey, IdName(601)};
  SaveOrDie(keep, Content(1, 10));
  SaveOrDie(gone, Content(2, 20));
  ASSERT_TRUE(be_->Remove(gone).ok());
  EXPECT_EQ(be_->Load(gone, 0, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(be_->Size(gone).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ListAll(FileType::kKey), (std::map<std::string, uint64_t>{{keep.name, 10}}));
  EXPECT_EQ(be_->Remove(gone).code(), StatusCode::kNotFound);
  // Removing a pack works through its data/xx directory too.
  const Handle pack{FileType::kPack, IdName(602)};
  SaveOrDie(pack, Content(3, 30));
  ASSERT_TRUE(be_->Remove(pack).ok());
  EXPECT_TRUE(ListAll(FileType::kPack).empty());
}

TEST_P(BackendConformanceTest, SaveReplacesExistingFile) {
  const Handle h{FileType::kSnapshot, IdName(700)};
  SaveOrDie(h, Content(1, 300));
  const Bytes second = Content(2, 100);
  SaveOrDie(h, second);
  Result<Bytes> got = be_->Load(h, 0, 0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, second);
  EXPECT_EQ(ListAll(FileType::kSnapshot),
            (std::map<std::string, uint64_t>{{h.name, second.size()}}));
}

TEST_P(BackendConformanceTest, ConcurrentSavesFromSeveralThreads) {
  constexpr int kThreads = 8;
  constexpr int kFilesPerThread = 16;
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; t++) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kFilesPerThread; i++) {
          const uint64_t seed = 1000 + t * kFilesPerThread + i;
          if (!be_->Save({FileType::kPack, IdName(seed)}, Content(seed, 1000 + seed)).ok()) {
            failures++;
          }
          // Every thread also saves the same file: concurrent replaces of one name must not
          // fail or tear it.
          if (!be_->Save({FileType::kIndex, IdName(1)}, Content(1, 5000)).ok()) failures++;
        }
      });
    }
  }
  ASSERT_EQ(failures.load(), 0);
  std::map<std::string, uint64_t> want;
  for (uint64_t seed = 1000; seed < 1000 + kThreads * kFilesPerThread; seed++) {
    want[IdName(seed)] = 1000 + seed;
  }
  EXPECT_EQ(ListAll(FileType::kPack), want);
  for (uint64_t seed = 1000; seed < 1000 + kThreads * kFilesPerThread; seed++) {
    Result<Bytes> got = be_->Load({FileType::kPack, IdName(seed)}, 0, 0);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(*got == Content(seed, 1000 + seed)) << seed;
  }
  Result<Bytes> shared = be_->Load({FileType::kIndex, IdName(1)}, 0, 0);
  ASSERT_TRUE(shared.ok()) << shared.status().ToString();
  EXPECT_TRUE(*shared == Content(1, 5000));
  EXPECT_EQ(ListAll(FileType::kIndex).size(), 1u);
}

TEST_P(BackendConformanceTest, ConfigHandle) {
  const Handle config = Handle::Config();
  EXPECT_EQ(be_->Load(config, 0, 0).status().code(), StatusCode::kNotFound);
  const Bytes data = ToBytes(R"({"version":2,"id":"x","chunker_polynomial":"y"})");
  SaveOrDie(config, data);
  Result<Bytes> got = be_->Load(config, 0, 0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, data);
  Result<uint64_t> size = be_->Size(config);
  ASSERT_TRUE(size.ok()) << size.status().ToString();
  EXPECT_EQ(*size, data.size());
  // A repository with a config is initialised: Create refuses to touch it.
  Status again = be_->Create();
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists) << again.ToString();
  got = be_->Load(config, 0, 0);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, data);
}

TEST_P(BackendConformanceTest, CreateTwiceWithoutConfigIsFine) { EXPECT_TRUE(be_->Create().ok()); }

TEST_P(BackendConformanceTest, InvalidNameIsInvalidArgument) {
  const std::vector<Handle> bad = {
      {FileType::kKey, "../../../etc/passwd"},
      {FileType::kKey, ""},
      {FileType::kIndex, "abc"},
      {FileType::kPack, IdName(1) + "0"},
      {FileType::kSnapshot, "ABCDEF" + IdName(1).substr(6)},  // restic writes lowercase only
      {FileType::kLock, IdName(1).substr(0, 60) + "/../"},
      {FileType::kConfig, "other"},
  };
  for (const Handle& h : bad) {
    EXPECT_EQ(be_->Save(h, ToBytes("x")).code(), StatusCode::kInvalidArgument) << h.name;
    EXPECT_EQ(be_->Load(h, 0, 0).status().code(), StatusCode::kInvalidArgument) << h.name;
    EXPECT_EQ(be_->Size(h).status().code(), StatusCode::kInvalidArgument) << h.name;
    EXPECT_EQ(be_->Remove(h).code(), StatusCode::kInvalidArgument) << h.name;
  }
}

TEST_P(BackendConformanceTest, PropertiesAndLocation) {
  EXPECT_GE(be_->Properties().max_connections, 1);
  EXPECT_FALSE(be_->Location().empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendConformanceTest, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<BackendParam>& info) {
                           return info.param.name;
                         });

// FaultyBackend is test support that other tests lean on: check that it does what it says.
class FaultyBackendTest : public ::testing::Test {
 protected:
  MemBackend mem_;
  FaultyBackend faulty_{mem_};
  const Handle a_{FileType::kPack, IdName(1)};
  const Handle b_{FileType::kPack, IdName(2)};
};

TEST_F(FaultyBackendTest, FailsTheNthCallOnly) {
  ASSERT_TRUE(faulty_.Save(a_, ToBytes("alpha")).ok());
  faulty_.FailNth(BackendOp::kLoad, 2, Status::Unavailable("injected"));
  EXPECT_TRUE(faulty_.Load(a_, 0, 0).ok());
  Result<Bytes> second = faulty_.Load(a_, 0, 0);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("injected"));
  EXPECT_TRUE(faulty_.Load(a_, 0, 0).ok());
  EXPECT_EQ(faulty_.Calls(BackendOp::kLoad), 3);
}

TEST_F(FaultyBackendTest, FaultOnOneHandleAndAfterCall) {
  faulty_.AddFault({.op = BackendOp::kSave,
                    .status = Status::Unavailable("reply lost"),
                    .nth = 1,
                    .times = -1,
                    .handle = b_,
                    .after_call = true});
  EXPECT_TRUE(faulty_.Save(a_, ToBytes("alpha")).ok());
  EXPECT_EQ(faulty_.Save(b_, ToBytes("beta")).code(), StatusCode::kUnavailable);
  EXPECT_EQ(faulty_.Save(b_, ToBytes("beta")).code(), StatusCode::kUnavailable);
  // after_call: the save reached the store even though it was reported as failed.
  EXPECT_TRUE(mem_.Contains(b_));
  faulty_.ClearFaults();
  EXPECT_TRUE(faulty_.Save(b_, ToBytes("beta")).ok());
}

TEST_F(FaultyBackendTest, FailAlwaysBeforeCallDoesNotReachInner) {
  faulty_.FailAlways(BackendOp::kRemove, Status::PermissionDenied("nope"));
  ASSERT_TRUE(faulty_.Save(a_, ToBytes("alpha")).ok());
  EXPECT_EQ(faulty_.Remove(a_).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(faulty_.Remove(a_).code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(mem_.Contains(a_));
}

TEST_F(FaultyBackendTest, FlipsAByteInRangesCoveringIt) {
  const Bytes data = Content(1, 100);
  ASSERT_TRUE(faulty_.Save(a_, data).ok());
  ASSERT_TRUE(faulty_.Save(b_, data).ok());
  faulty_.FlipByte(a_, 50, 0x80);
  Result<Bytes> whole = faulty_.Load(a_, 0, 0);
  ASSERT_TRUE(whole.ok());
  Bytes want = data;
  want[50] ^= 0x80;
  EXPECT_EQ(*whole, want);
  Result<Bytes> range = faulty_.Load(a_, 40, 20);
  ASSERT_TRUE(range.ok());
  EXPECT_EQ((*range)[10], data[50] ^ 0x80);
  Result<Bytes> before = faulty_.Load(a_, 0, 50);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(*before, Bytes(data.begin(), data.begin() + 50));
  Result<Bytes> other = faulty_.Load(b_, 0, 0);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*other, data);
  // The stored file is untouched.
  EXPECT_EQ(*mem_.Load(a_, 0, 0), data);
}

TEST_F(FaultyBackendTest, CountsCallsPerOperationAndFile) {
  ASSERT_TRUE(faulty_.Save(a_, ToBytes("alpha")).ok());
  ASSERT_TRUE(faulty_.Save(b_, ToBytes("beta")).ok());
  ASSERT_TRUE(faulty_.Load(a_, 0, 0).ok());
  ASSERT_TRUE(faulty_.Load(a_, 1, 2).ok());
  ASSERT_TRUE(faulty_.Load(b_, 0, 0).ok());
  ASSERT_TRUE(faulty_.List(FileType::kPack, [](const FileInfo&) { return Status::Ok(); }).ok());
  EXPECT_EQ(faulty_.Calls(BackendOp::kSave), 2);
  EXPECT_EQ(faulty_.Calls(BackendOp::kLoad), 3);
  EXPECT_EQ(faulty_.Calls(BackendOp::kLoad, a_), 2);
  EXPECT_EQ(faulty_.Calls(BackendOp::kLoad, b_), 1);
  EXPECT_EQ(faulty_.Calls(BackendOp::kList), 1);
  EXPECT_EQ(faulty_.Calls(BackendOp::kRemove), 0);
  EXPECT_EQ(faulty_.CallsByPath(BackendOp::kLoad),
            (std::map<std::string, int>{{a_.Path(), 2}, {b_.Path(), 1}}));
  faulty_.ResetCounts();
  EXPECT_EQ(faulty_.Calls(BackendOp::kLoad), 0);
  EXPECT_TRUE(faulty_.CallsByPath(BackendOp::kLoad).empty());
}

}  // namespace
}  // namespace fsb::repo
