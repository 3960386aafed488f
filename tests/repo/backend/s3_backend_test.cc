// repo/backend/s3/s3_backend against real servers on 127.0.0.1: s3rver 3.7.1 (plain http), the
// signature-verifying @20minutes/s3rver 4.0.4, and a fault-injecting proxy in front of s3rver.
// The Backend contract itself is checked by backend_conformance_test.cc (S3 and S3WithPrefix).
#include "repo/backend/s3/s3_backend.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "repo/backend/open.h"
#include "repo/backend/s3/sigv4.h"
#include "repo/check.h"
#include "repo/repository.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/s3_server.h"
#include "tests/support/test_util.h"
#include "uploader/backup.h"
#include "uploader/restore.h"

namespace fsb::repo {
namespace {

namespace fs = std::filesystem;
using ::fsb::testing::FaultProxy;
using ::fsb::testing::S3Server;
using ::fsb::testing::S3ServerKind;
using ::fsb::testing::SeededRandomBytes;
using ::fsb::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using Fault = FaultProxy::Fault;

std::string IdName(uint64_t seed) { return HexEncode(SeededRandomBytes(seed, 32)); }

// The heads the proxy saw that start with `prefix` ("GET ", "PUT /b/...").
std::vector<std::string> HeadsStartingWith(const FaultProxy& proxy, const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& h : proxy.RequestHeads()) {
    if (h.starts_with(prefix)) out.push_back(h);
  }
  return out;
}

std::map<std::string, uint64_t> ListAll(Backend& be, FileType type) {
  std::map<std::string, uint64_t> out;
  Status s = be.List(type, [&](const FileInfo& f) {
    out[f.name] = f.size;
    return Status::Ok();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

class S3BackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    server_ = testing::SharedS3Server(&why);
    if (server_ == nullptr) FSB_S3_SKIP_OR_FAIL(why);
  }

  // A config for a fresh bucket on the shared server, optionally through `proxy`.
  S3Config Config(const FaultProxy* proxy = nullptr, const std::string& prefix = "") {
    S3Config c = testing::TestS3Config(*server_, testing::UniqueBucketName(), prefix);
    if (proxy != nullptr) c.endpoint = proxy->endpoint();
    return c;
  }

  std::unique_ptr<S3Backend> OpenAndCreate(const S3Config& c) {
    Result<std::unique_ptr<S3Backend>> be = S3Backend::Open(c);
    EXPECT_TRUE(be.ok()) << be.status().ToString();
    if (!be.ok()) return nullptr;
    Status created = (*be)->Create();
    EXPECT_TRUE(created.ok()) << created.ToString();
    return std::move(be).value();
  }

  S3Server* server_ = nullptr;
};

TEST_F(S3BackendTest, ObjectKeysFollowResticLayoutUnderThePrefix) {
  FaultProxy proxy(server_->port(), /*seed=*/1);
  const S3Config c = Config(&proxy, "velero/restic/app-ns");
  auto be = OpenAndCreate(c);
  ASSERT_NE(be, nullptr);
  const std::string id = IdName(1);
  const std::map<FileType, std::string> want = {
      {FileType::kConfig, "config"},
      {FileType::kKey, "keys/" + id},
      {FileType::kPack, "data/" + id.substr(0, 2) + "/" + id},
      {FileType::kIndex, "index/" + id},
      {FileType::kSnapshot, "snapshots/" + id},
      {FileType::kLock, "locks/" + id},
  };
  const Bytes body = ToBytes("restic object");
  for (const auto& [type, rel] : want) {
    const Handle h{type, type == FileType::kConfig ? "config" : id};
    EXPECT_EQ(be->Key(h), "velero/restic/app-ns/" + rel);
    ASSERT_TRUE(be->Save(h, body).ok());
    const std::vector<std::string> puts =
        HeadsStartingWith(proxy, fmt::format("PUT /{}/velero/restic/app-ns/{} ", c.bucket, rel));
    ASSERT_EQ(puts.size(), 1u) << rel;
    // The real payload hash, never aws-chunked streaming (s3rver would store the framing).
    EXPECT_THAT(puts[0], HasSubstr("x-amz-content-sha256: " + s3::Sha256Hex(body)));
    EXPECT_THAT(puts[0], HasSubstr("Content-MD5: "));
    EXPECT_THAT(puts[0], HasSubstr("Content-Type: application/octet-stream"));
    EXPECT_THAT(puts[0], Not(HasSubstr("aws-chunked")));
    EXPECT_THAT(puts[0], HasSubstr("Authorization: AWS4-HMAC-SHA256 Credential=S3RVER/"));
  }
  // No directory markers: exactly the six objects.
  EXPECT_EQ(ListAll(*be, FileType::kPack).size(), 1u);
}

TEST_F(S3BackendTest, ListsMoreThan1000ObjectsAcrossPages) {
  FaultProxy proxy(server_->port(), /*seed=*/2);
  auto be = OpenAndCreate(Config(&proxy, "many"));
  ASSERT_NE(be, nullptr);
  constexpr int kObjects = 1010;  // S3 pages hold at most 1000 keys
  std::atomic<int> failures{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 5; t++) {
      threads.emplace_back([&, t] {
        for (int i = t; i < kObjects; i += 5) {
          if (!be->Save({FileType::kPack, IdName(10'000 + i)}, SeededRandomBytes(i, 1 + i % 7))
                   .ok()) {
            failures++;
          }
        }
      });
    }
  }
  ASSERT_EQ(failures.load(), 0);
  const std::map<std::string, uint64_t> listed = ListAll(*be, FileType::kPack);
  ASSERT_EQ(listed.size(), static_cast<size_t>(kObjects));
  for (int i = 0; i < kObjects; i++) {
    auto it = listed.find(IdName(10'000 + i));
    ASSERT_NE(it, listed.end()) << i;
    EXPECT_EQ(it->second, static_cast<uint64_t>(1 + i % 7));
  }
  const std::vector<std::string> lists = HeadsStartingWith(proxy, "GET /");
  int pages = 0, continued = 0;
  for (const std::string& h : lists) {
    if (h.find("list-type=2") == std::string::npos) continue;
    pages++;
    if (h.find("continuation-token=") != std::string::npos) continued++;
  }
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(continued, 1);
}

TEST_F(S3BackendTest, RangedGetsAskForTheRange) {
  FaultProxy proxy(server_->port(), /*seed=*/3);
  auto be = OpenAndCreate(Config(&proxy));
  ASSERT_NE(be, nullptr);
  const Handle h{FileType::kPack, IdName(3)};
  const Bytes data = SeededRandomBytes(3, 64 << 10);
  ASSERT_TRUE(be->Save(h, data).ok());

  Result<Bytes> mid = be->Load(h, 1000, 5000);
  ASSERT_TRUE(mid.ok()) << mid.status().ToString();
  EXPECT_TRUE(*mid == Bytes(data.begin() + 1000, data.begin() + 6000));
  Result<Bytes> tail = be->Load(h, 60'000, 0);
  ASSERT_TRUE(tail.ok()) << tail.status().ToString();
  EXPECT_TRUE(*tail == Bytes(data.begin() + 60'000, data.end()));
  Result<Bytes> whole = be->Load(h, 0, 0);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_TRUE(*whole == data);

  const std::vector<std::string> gets = HeadsStartingWith(proxy, "GET /");
  ASSERT_EQ(gets.size(), 3u);
  EXPECT_THAT(gets[0], HasSubstr("Range: bytes=1000-5999\r\n"));
  EXPECT_THAT(gets[1], HasSubstr("Range: bytes=60000-\r\n"));
  EXPECT_THAT(gets[2], Not(HasSubstr("Range:")));
}

TEST_F(S3BackendTest, CreateMakesTheBucketAndRefusesAnExistingRepository) {
  FaultProxy proxy(server_->port(), /*seed=*/4);
  const S3Config c = Config(&proxy);
  Result<std::unique_ptr<S3Backend>> be = S3Backend::Open(c);
  ASSERT_TRUE(be.ok());
  // Before Create, the bucket does not exist: a clear kNotFound with S3's code.
  Status listed = (*be)->List(FileType::kSnapshot, [](const FileInfo&) { return Status::Ok(); });
  EXPECT_EQ(listed.code(), StatusCode::kNotFound) << listed.ToString();
  EXPECT_THAT(listed.message(), HasSubstr("NoSuchBucket"));
  ASSERT_TRUE((*be)->Create().ok());
  EXPECT_EQ(HeadsStartingWith(proxy, fmt::format("PUT /{} ", c.bucket)).size(), 1u);
  ASSERT_TRUE((*be)->Create().ok());  // the bucket exists now; no config yet
  EXPECT_EQ(HeadsStartingWith(proxy, fmt::format("PUT /{} ", c.bucket)).size(), 1u);
  ASSERT_TRUE((*be)->Save(Handle::Config(), ToBytes("{}")).ok());
  Status again = (*be)->Create();
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists) << again.ToString();
}

TEST_F(S3BackendTest, ClientErrorsFailAtOnceWithTheS3Code) {
  FaultProxy proxy(server_->port(), /*seed=*/5);
  S3Config c = Config(&proxy);
  auto be = OpenAndCreate(c);
  ASSERT_NE(be, nullptr);
  c.credentials.access_key_id = "NOSUCHKEY";
  auto stranger = S3Backend::Open(c);
  ASSERT_TRUE(stranger.ok());
  const int before = proxy.requests();
  Status s = (*stranger)->Save({FileType::kLock, IdName(5)}, ToBytes("x"));
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_THAT(s.message(), AllOf(HasSubstr("InvalidAccessKeyId"), HasSubstr("HTTP 403"),
                                 HasSubstr("locks/" + IdName(5))));
  EXPECT_EQ(proxy.requests(), before + 1) << "a 4xx must not be retried";
  // A 4xx without a body (HEAD) still says what happened.
  Result<uint64_t> size = (*stranger)->Size({FileType::kLock, IdName(5)});
  EXPECT_EQ(size.status().code(), StatusCode::kPermissionDenied) << size.status().ToString();
}

TEST_F(S3BackendTest, OpenBackendTakesS3NamesAndCredentialsFromTheEnvironment) {
  const std::string bucket = testing::UniqueBucketName();
  setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
  Result<std::unique_ptr<Backend>> be =
      OpenBackend(fmt::format("s3:{}/{}/some/prefix", server_->url(), bucket), /*create=*/true);
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  ASSERT_TRUE(be.ok()) << be.status().ToString();
  EXPECT_EQ((*be)->Location(), fmt::format("s3:{}/{}/some/prefix", server_->url(), bucket));
  EXPECT_EQ((*be)->Properties().max_connections, 5);
  EXPECT_FALSE((*be)->Properties().local);
  ASSERT_TRUE((*be)->Create().ok());
  ASSERT_TRUE((*be)->Save(Handle::Config(), ToBytes("cfg")).ok());
  Result<Bytes> got = (*be)->Load(Handle::Config(), 0, 0);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(AsString(*got), "cfg");

  Result<std::unique_ptr<Backend>> bad = OpenBackend("s3:http://127.0.0.1:1", false);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("no bucket"));
}

// --- The signature-verifying server -------------------------------------------------------------

class S3SignatureTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ =
        S3Server::Start(
            {.kind = S3ServerKind::kVerifying, .bucket = "signed", .tls_key = {}, .tls_cert = {}},
            &why_)
            .release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (server_ == nullptr) FSB_S3_SKIP_OR_FAIL(why_);
  }
  S3Config Config(const std::string& prefix) {
    return testing::TestS3Config(*server_, "signed", prefix);
  }

  static S3Server* server_;
  static std::string why_;
};
S3Server* S3SignatureTest::server_ = nullptr;
std::string S3SignatureTest::why_;

// Every request kind fsb sends passes the server's SigV4 check, including percent-encoded keys
// (a prefix with a space, '+', '=' and non-ASCII) and list queries with continuation tokens.
TEST_F(S3SignatureTest, EveryOperationIsSignedCorrectly) {
  auto opened = S3Backend::Open(Config("sig v4/ü+=x"));
  ASSERT_TRUE(opened.ok());
  S3Backend& be = **opened;
  ASSERT_TRUE(be.Create().ok());
  const Bytes data = SeededRandomBytes(9, 100'000);
  for (FileType type :
       {FileType::kKey, FileType::kPack, FileType::kIndex, FileType::kSnapshot, FileType::kLock}) {
    Status s = be.Save({type, IdName(1)}, data);
    ASSERT_TRUE(s.ok()) << FileTypeName(type) << ": " << s.ToString();
  }
  Status s = be.Save(Handle::Config(), ToBytes("config"));
  ASSERT_TRUE(s.ok()) << s.ToString();
  Result<Bytes> range = be.Load({FileType::kPack, IdName(1)}, 10, 20);
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  EXPECT_TRUE(*range == Bytes(data.begin() + 10, data.begin() + 30));
  Result<uint64_t> size = be.Size({FileType::kIndex, IdName(1)});
  ASSERT_TRUE(size.ok()) << size.status().ToString();
  EXPECT_EQ(*size, data.size());
  EXPECT_EQ(ListAll(be, FileType::kSnapshot).size(), 1u);
  ASSERT_TRUE(be.Remove({FileType::kLock, IdName(1)}).ok());
  EXPECT_EQ(be.Create().code(), StatusCode::kAlreadyExists);
}

TEST_F(S3SignatureTest, WrongSecretIsRejectedAndNeverShown) {
  S3Config c = Config("wrong");
  c.credentials.secret_access_key = Secret<std::string>("not-the-S3RVER-secret");
  c.retry.max_total = std::chrono::milliseconds(0);
  auto be = S3Backend::Open(c);
  ASSERT_TRUE(be.ok());
  Status saved = (*be)->Save({FileType::kPack, IdName(2)}, ToBytes("data"));
  EXPECT_EQ(saved.code(), StatusCode::kPermissionDenied) << saved.ToString();
  EXPECT_THAT(saved.message(), HasSubstr("SignatureDoesNotMatch"));
  Result<Bytes> loaded = (*be)->Load({FileType::kPack, IdName(2)}, 0, 0);
  EXPECT_EQ(loaded.status().code(), StatusCode::kPermissionDenied);
  Status listed = (*be)->List(FileType::kPack, [](const FileInfo&) { return Status::Ok(); });
  EXPECT_EQ(listed.code(), StatusCode::kPermissionDenied) << listed.ToString();
  for (const Status& st : {saved, loaded.status(), listed}) {
    EXPECT_THAT(st.message(), Not(HasSubstr("not-the-S3RVER-secret")));
  }
  // The same request with the right secret goes through: the rejection was the signature.
  c.credentials.secret_access_key = Secret<std::string>("S3RVER");
  auto good = S3Backend::Open(c);
  ASSERT_TRUE(good.ok());
  Status ok = (*good)->Save({FileType::kPack, IdName(2)}, ToBytes("data"));
  EXPECT_TRUE(ok.ok()) << ok.ToString();
}

// --- Faults
// ---------------------------------------------------------------------------------------

class S3FaultTest : public S3BackendTest, public ::testing::WithParamInterface<Fault> {};

// The first attempts of each request fail with the fault (two; one for the slow stall); the
// operation still succeeds.
TEST_P(S3FaultTest, OperationsSucceedAfterTransientFaults) {
  FaultProxy proxy(server_->port(), /*seed=*/6);
  S3Config c = Config(&proxy);
  c.http.low_speed_time = std::chrono::seconds(1);  // each stall costs this much
  auto be = OpenAndCreate(c);
  ASSERT_NE(be, nullptr);
  const Handle h{FileType::kPack, IdName(6)};
  const Bytes data = SeededRandomBytes(6, 300'000);
  const int n = GetParam() == Fault::kStall ? 1 : 2;

  proxy.FailNext(n, GetParam());
  Status saved = be->Save(h, data);
  ASSERT_TRUE(saved.ok()) << saved.ToString();
  proxy.FailNext(n, GetParam());
  Result<Bytes> loaded = be->Load(h, 1, 200'000);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(*loaded == Bytes(data.begin() + 1, data.begin() + 200'001));
  proxy.FailNext(n, GetParam());
  Result<uint64_t> size = be->Size(h);
  ASSERT_TRUE(size.ok()) << size.status().ToString();
  EXPECT_EQ(*size, data.size());
  proxy.FailNext(n, GetParam());
  EXPECT_EQ(ListAll(*be, FileType::kPack).size(), 1u);
  EXPECT_EQ(proxy.Count(GetParam()), 4 * n);
}

INSTANTIATE_TEST_SUITE_P(Faults, S3FaultTest,
                         ::testing::Values(Fault::k503, Fault::kReset, Fault::kResetMidway,
                                           Fault::kStall),
                         [](const ::testing::TestParamInfo<Fault>& info) {
                           switch (info.param) {
                             case Fault::k503:
                               return std::string("SlowDown503");
                             case Fault::kReset:
                               return std::string("ConnectionReset");
                             case Fault::kResetMidway:
                               return std::string("ResetMidResponse");
                             case Fault::kStall:
                               return std::string("StalledTransfer");
                             default:
                               return std::string("None");
                           }
                         });

TEST_F(S3BackendTest, GivesUpAfterTheRetryBudgetNamingTheObject) {
  FaultProxy proxy(server_->port(), /*seed=*/7);
  S3Config c = Config(&proxy);
  auto be = OpenAndCreate(c);
  ASSERT_NE(be, nullptr);
  proxy.SetRandomFaults(1.0, {Fault::k503});
  auto impatient_config = c;
  impatient_config.retry.max_total = std::chrono::milliseconds(300);
  auto impatient = S3Backend::Open(impatient_config);
  ASSERT_TRUE(impatient.ok());
  const Handle h{FileType::kSnapshot, IdName(7)};
  Status s = (*impatient)->Save(h, ToBytes("snapshot"));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_THAT(s.message(), AllOf(HasSubstr(be->Key(h)), HasSubstr("giving up after"),
                                 HasSubstr("HTTP 503 SlowDown")));
  EXPECT_GE(proxy.Count(Fault::k503), 2);
}

// A whole backup, check --read-data and restore through the proxy while a quarter of all requests
// fail: the repository ends up complete and valid.
TEST_F(S3BackendTest, BackupCheckAndRestoreSucceedUnderRandomFaults) {
  const uint64_t seed = 20240611;
  SCOPED_TRACE(fmt::format("fault seed {}", seed));
  FaultProxy proxy(server_->port(), seed);
  S3Config c = Config(&proxy, "faulty/repo");
  c.http.low_speed_time = std::chrono::seconds(1);
  auto be = OpenAndCreate(c);
  ASSERT_NE(be, nullptr);

  TempDir dir;
  const fs::path src = dir.path() / "src";
  for (int i = 0; i < 24; i++) {
    const fs::path p = src / fmt::format("d{}", i % 4) / fmt::format("f{}", i);
    fs::create_directories(p.parent_path());
    const size_t n =
        i % 6 == 0 ? (1u << 20) + static_cast<size_t>(i) : static_cast<size_t>(i) * 977;
    testing::WriteStringToFile(p, AsString(SeededRandomBytes(seed + i, n)));
  }
  proxy.SetRandomFaults(
      0.25, {Fault::k503, Fault::k503, Fault::kReset, Fault::kResetMidway, Fault::kStall});

  InitOptions init;
  init.scrypt_n = 1024;
  auto repo = Repository::Init(
      std::move(be), Secret<std::string>("pw"), init,
      {.compression = CompressionMode::kAuto, .pack_size = 4u << 20, .index_load_threads = 2});
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  uploader::BackupOptions bo;
  bo.targets = {src.string()};
  bo.hostname = "fault-host";
  bo.file_workers = 2;
  Result<uploader::BackupSummary> backup = uploader::RunBackup(**repo, bo, nullptr);
  ASSERT_TRUE(backup.ok()) << backup.status().ToString();
  EXPECT_TRUE(backup->errors.empty());

  // Reopen from the bucket, as a later process would.
  auto be2 = S3Backend::Open(c);
  ASSERT_TRUE(be2.ok());
  auto reopened = Repository::Open(std::move(*be2), Secret<std::string>("pw"));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  Result<CheckResult> check =
      RunCheck(**reopened, {.read_data = true, .subset_n = 0, .subset_m = 0, .threads = 2});
  ASSERT_TRUE(check.ok()) << check.status().ToString();
  EXPECT_TRUE(check->ok()) << ::testing::PrintToString(check->errors);
  EXPECT_GT(check->packs_read, 0u);

  auto snap = (*reopened)->LoadSnapshot(backup->snapshot_id);
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  uploader::RestoreOptions ro;
  ro.target = (dir.path() / "restore").string();
  ro.verify = true;
  ro.restore_owner = false;
  Result<uploader::RestoreSummary> restored =
      uploader::RunRestore(**reopened, snap->tree, ro, nullptr);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(restored->errors.empty()) << ::testing::PrintToString(restored->errors);
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const fs::path back = dir.path() / "restore" / fs::relative(e.path(), "/");
    EXPECT_EQ(testing::ReadFileToString(e.path()), testing::ReadFileToString(back)) << back;
    files++;
  }
  EXPECT_EQ(files, 24);
  const int faults = proxy.Count(Fault::k503) + proxy.Count(Fault::kReset) +
                     proxy.Count(Fault::kResetMidway) + proxy.Count(Fault::kStall);
  EXPECT_GT(faults, 5) << "requests=" << proxy.requests();
  std::cerr << fmt::format("fault seed {}: {} requests, 503={} reset={} midway={} stall={}\n", seed,
                           proxy.requests(), proxy.Count(Fault::k503), proxy.Count(Fault::kReset),
                           proxy.Count(Fault::kResetMidway), proxy.Count(Fault::kStall));
}

}  // namespace
}  // namespace fsb::repo
