#include "agent/repository_access.h"

#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <latch>
#include <thread>

#include "base/bytes.h"
#include "kube/resource.h"
#include "tests/support/kube_api_server.h"
#include "tests/support/test_util.h"

namespace fsb::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::KubeApiServer;
using ::testing::Not;
using testing::ReadFileToString;
using testing::TempDir;
using Json = kube::Object;
using namespace std::chrono_literals;

constexpr char kNs[] = "velero";
constexpr char kAppNs[] = "app";
constexpr char kClaim[] = "fsb.velero.io/init-claim";

std::string B64(std::string_view s) {
  return Base64Encode(ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

size_t CountFiles(const fs::path& dir) {
  if (!fs::is_directory(dir)) return 0;
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

class RepositoryAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static const bool curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    ASSERT_TRUE(curl_ok);
    std::string why;
    testing::KubeApiServerOptions so;
    so.bookmark_interval = 200ms;
    server_ = KubeApiServer::Start(so, &why);
    ASSERT_NE(server_, nullptr) << why;
    client_ = NewClient();
    ASSERT_NE(client_, nullptr);
    repos_ = dir_.path() / "repos";
    PutBsl("default", {{"provider", "velero.io/fs"},
                       {"objectStorage", {{"bucket", "unused"}}},
                       {"config", {{"resticRepoPrefix", repos_.string()}}}});
  }

  std::unique_ptr<kube::Client> NewClient() {
    kube::KubeConfig config;
    config.server = server_->url();
    Result<std::unique_ptr<kube::Client>> c = kube::Client::Create(std::move(config));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  RepositoryAccessOptions Options(const std::string& holder) {
    RepositoryAccessOptions o;
    o.ns = kNs;
    o.scratch_dir = (dir_.path() / ("scratch-" + holder)).string();
    o.holder = holder;
    o.init_wait = 60s;
    return o;
  }

  void Put(const kube::Resource& r, Json obj) {
    Result<Json> stored = server_->Put(r, std::move(obj));
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  }
  void PutBsl(const std::string& name, Json spec) {
    Put(kube::kBackupStorageLocations,
        {{"metadata", {{"name", name}, {"namespace", kNs}}}, {"spec", std::move(spec)}});
  }
  void PutSecret(const std::string& name, Json data) {
    Put(kube::kSecrets,
        {{"metadata", {{"name", name}, {"namespace", kNs}}}, {"data", std::move(data)}});
  }

  Result<RepositoryTarget> Resolve(std::string_view bsl = "default",
                                   std::string_view explicit_id = "") {
    RepositoryAccess access(*client_, Options("node-a"));
    return access.Resolve(bsl, kAppNs, explicit_id);
  }

  std::vector<Json> BackupRepositories() { return server_->List(kube::kBackupRepositories, kNs); }

  TempDir dir_;
  std::unique_ptr<KubeApiServer> server_;
  std::unique_ptr<kube::Client> client_;
  fs::path repos_;
};

// ---- Resolve

TEST_F(RepositoryAccessTest, LocalLocationWithDefaultPassword) {
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->identifier, (repos_ / kAppNs).string());
  EXPECT_EQ(t->bsl, "default");
  EXPECT_EQ(t->volume_namespace, kAppNs);
  EXPECT_FALSE(t->read_only);
  // No velero-repo-credentials secret: Velero's default (§4.4).
  EXPECT_EQ(t->password.Reveal(), "static-passw0rd");
}

TEST_F(RepositoryAccessTest, MissingLocationIsNotFoundNamingIt) {
  Result<RepositoryTarget> t = Resolve("nope");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("velero/nope"));
}

TEST_F(RepositoryAccessTest, EmptyLocationOrNamespaceIsInvalid) {
  RepositoryAccess access(*client_, Options("node-a"));
  EXPECT_EQ(access.Resolve("", kAppNs, "").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(access.Resolve("default", "", "").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RepositoryAccessTest, MalformedLocationIsInvalid) {
  PutBsl("bad", {{"provider", "aws"}, {"config", "x"}});
  Result<RepositoryTarget> t = Resolve("bad");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("spec.config"));
}

TEST_F(RepositoryAccessTest, PasswordSecretWithTrailingNewlineIsTrimmed) {
  PutSecret("velero-repo-credentials", {{"repository-password", B64("s3cret\n")}});
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->password.Reveal(), "s3cret");
}

TEST_F(RepositoryAccessTest, EmptyPasswordIsRejected) {
  for (const char* value : {"", "\n", "  \r\n"}) {
    PutSecret("velero-repo-credentials", {{"repository-password", B64(value)}});
    Result<RepositoryTarget> t = Resolve();
    ASSERT_FALSE(t.ok()) << "accepted \"" << value << "\"";
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr("velero-repo-credentials"));
  }
}

TEST_F(RepositoryAccessTest, PasswordSecretWithoutTheKeyIsAnError) {
  PutSecret("velero-repo-credentials", {{"other", B64("x")}});
  Result<RepositoryTarget> t = Resolve();
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("repository-password"));
}

TEST_F(RepositoryAccessTest, PasswordSecretUnreadableIsNotTheDefault) {
  server_->FailNext("GET", "/secrets/velero-repo-credentials", 10, 403);
  Result<RepositoryTarget> t = Resolve();
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(t.status().message(), HasSubstr("repository password"));
}

TEST_F(RepositoryAccessTest, ExplicitIdentifierWins) {
  Result<RepositoryTarget> t = Resolve("default", "/elsewhere/app");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->identifier, "/elsewhere/app");
}

TEST_F(RepositoryAccessTest, ExplicitIdentifierWinsOverAnUnusableLocation) {
  PutBsl("fs-only", {{"provider", "velero.io/fs"}, {"objectStorage", {{"bucket", "b"}}}});
  EXPECT_FALSE(Resolve("fs-only").ok());
  Result<RepositoryTarget> t = Resolve("fs-only", "/explicit/app");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->identifier, "/explicit/app");
}

TEST_F(RepositoryAccessTest, AzureAndGcsAreRejected) {
  PutBsl("az", {{"provider", "azure"}, {"objectStorage", {{"bucket", "b"}}}});
  PutBsl("gcp", {{"provider", "gcp"}, {"objectStorage", {{"bucket", "b"}}}});
  for (const char* bsl : {"az", "gcp"}) {
    Result<RepositoryTarget> t = Resolve(bsl);
    ASSERT_FALSE(t.ok()) << bsl;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr("only S3-compatible and local"));
  }
  Result<RepositoryTarget> explicit_gs = Resolve("default", "gs:b:/restic/app");
  ASSERT_FALSE(explicit_gs.ok());
  EXPECT_EQ(explicit_gs.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RepositoryAccessTest, S3LocationCarriesRegionTlsAndProfile) {
  PutBsl("s3", {{"provider", "aws"},
                {"objectStorage", {{"bucket", "velero"}}},
                {"config",
                 {{"s3Url", "https://minio:9000"},
                  {"region", "minio"},
                  {"insecureSkipTLSVerify", "true"},
                  {"profile", "backup"}}}});
  Result<RepositoryTarget> t = Resolve("s3");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->identifier, "s3:https://minio:9000/velero/restic/app");
  EXPECT_EQ(t->backend.s3_region, "minio");
  EXPECT_TRUE(t->backend.insecure_tls);
  ASSERT_TRUE(t->backend.env);
  EXPECT_EQ(t->backend.env("AWS_PROFILE"), "backup");
}

TEST_F(RepositoryAccessTest, ReadOnlyLocation) {
  PutBsl("ro", {{"provider", "velero.io/fs"},
                {"objectStorage", {{"bucket", "b"}}},
                {"config", {{"resticRepoPrefix", repos_.string()}}},
                {"accessMode", "ReadOnly"}});
  Result<RepositoryTarget> t = Resolve("ro");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_TRUE(t->read_only);
}

TEST_F(RepositoryAccessTest, CaCertIsWrittenToA0600File) {
  const std::string pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  PutBsl("tls", {{"provider", "aws"},
                 {"objectStorage", {{"bucket", "velero"}, {"caCert", B64(pem)}}},
                 {"config", {{"s3Url", "https://minio:9000"}}}});
  Result<RepositoryTarget> t = Resolve("tls");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_FALSE(t->backend.ca_file.empty());
  EXPECT_TRUE(t->backend.ca_file.starts_with((dir_.path() / "scratch-node-a").string()))
      << t->backend.ca_file;
  EXPECT_EQ(ReadFileToString(t->backend.ca_file), pem);
  struct stat st;
  ASSERT_EQ(stat(t->backend.ca_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(stat(fs::path(t->backend.ca_file).parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(RepositoryAccessTest, ConcurrentResolvesOfOneLocationAllSucceed) {
  PutBsl("tls", {{"provider", "aws"},
                 {"objectStorage", {{"bucket", "velero"}, {"caCert", B64("PEM DATA\n")}}},
                 {"config", {{"s3Url", "https://minio:9000"}}},
                 {"credential", {{"name", "bsl-creds"}, {"key", "cloud"}}}});
  PutSecret("bsl-creds", {{"cloud", B64("[default]\naws_access_key_id=AK\n")}});
  RepositoryAccess access(*client_, Options("node-a"));
  std::vector<Status> results(8);
  {
    std::latch go(8);
    std::vector<std::jthread> threads;
    for (size_t i = 0; i < results.size(); i++) {
      threads.emplace_back([&, i] {
        go.arrive_and_wait();
        for (int n = 0; n < 10 && results[i].ok(); n++) {
          Result<RepositoryTarget> t = access.Resolve("tls", kAppNs, "");
          if (!t.ok()) {
            results[i] = t.status();
          } else if (ReadFileToString(t->backend.ca_file) != "PEM DATA\n") {
            results[i] = Status::Internal("torn CA file");
          }
        }
      });
    }
  }
  for (const Status& s : results) EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(RepositoryAccessTest, CredentialSecretBecomesTheOnlyCredentialsSource) {
  PutBsl("s3", {{"provider", "aws"},
                {"objectStorage", {{"bucket", "velero"}}},
                {"config", {{"s3Url", "http://minio:9000"}}},
                {"credential", {{"name", "bsl-creds"}, {"key", "cloud"}}}});
  const std::string file = "[default]\naws_access_key_id=AK\naws_secret_access_key=SK\n";
  PutSecret("bsl-creds", {{"cloud", B64(file)}});
  Result<RepositoryTarget> t = Resolve("s3");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  std::optional<std::string> path = t->backend.env("AWS_SHARED_CREDENTIALS_FILE");
  ASSERT_TRUE(path.has_value());
  EXPECT_EQ(ReadFileToString(*path), file);
  struct stat st;
  ASSERT_EQ(stat(path->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_FALSE(t->backend.env("AWS_ACCESS_KEY_ID").has_value());
  EXPECT_FALSE(t->backend.env("AWS_SECRET_ACCESS_KEY").has_value());
}

TEST_F(RepositoryAccessTest, MissingCredentialSecretIsNotFoundNamingTheLocation) {
  PutBsl("s3", {{"provider", "aws"},
                {"objectStorage", {{"bucket", "velero"}}},
                {"config", {{"s3Url", "http://minio:9000"}}},
                {"credential", {{"name", "absent"}, {"key", "cloud"}}}});
  Result<RepositoryTarget> t = Resolve("s3");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("backup storage location s3"));
  EXPECT_THAT(t.status().message(), HasSubstr("absent"));
}

TEST_F(RepositoryAccessTest, CredentialSecretWithoutTheKeyNamesKeyNotValue) {
  PutBsl("s3", {{"provider", "aws"},
                {"objectStorage", {{"bucket", "velero"}}},
                {"config", {{"s3Url", "http://minio:9000"}}},
                {"credential", {{"name", "bsl-creds"}, {"key", "cloud"}}}});
  PutSecret("bsl-creds", {{"other", B64("TOPSECRET")}});
  Result<RepositoryTarget> t = Resolve("s3");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("\"cloud\""));
  EXPECT_THAT(t.status().message(), HasSubstr("bsl-creds"));
  EXPECT_THAT(t.status().message(), Not(HasSubstr("TOPSECRET")));
}

TEST_F(RepositoryAccessTest, CredentialSecretNotBase64IsInvalid) {
  PutBsl("s3", {{"provider", "aws"},
                {"objectStorage", {{"bucket", "velero"}}},
                {"config", {{"s3Url", "http://minio:9000"}}},
                {"credential", {{"name", "bsl-creds"}, {"key", "cloud"}}}});
  PutSecret("bsl-creds", {{"cloud", "not base64!"}});
  Result<RepositoryTarget> t = Resolve("s3");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
}

// ---- Open

TEST_F(RepositoryAccessTest, OpenMissingWithoutCreateIsNotFound) {
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  RepositoryAccess access(*client_, Options("node-a"));
  Result<std::unique_ptr<repo::Repository>> r = access.Open(*t, false, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr(t->identifier));
  EXPECT_FALSE(fs::exists(repos_ / kAppNs / "config"));
  EXPECT_TRUE(BackupRepositories().empty());
}

TEST_F(RepositoryAccessTest, OpenMissingOnReadOnlyLocationIsFailedPrecondition) {
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  t->read_only = true;
  RepositoryAccess access(*client_, Options("node-a"));
  Result<std::unique_ptr<repo::Repository>> r = access.Open(*t, true, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("read-only"));
  EXPECT_FALSE(fs::exists(repos_ / kAppNs / "config"));
}

TEST_F(RepositoryAccessTest, OpenWithCreateInitialisesAndMarksReady) {
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  RepositoryAccess access(*client_, Options("node-a"));
  Result<std::unique_ptr<repo::Repository>> r = access.Open(*t, true, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(fs::exists(repos_ / kAppNs / "config"));
  EXPECT_EQ(CountFiles(repos_ / kAppNs / "keys"), 1u);
  std::vector<Json> brs = BackupRepositories();
  ASSERT_EQ(brs.size(), 1u);
  EXPECT_EQ(brs[0]["metadata"]["name"], "app-default-restic");
  EXPECT_EQ(brs[0]["metadata"]["labels"]["velero.io/volume-namespace"], kAppNs);
  EXPECT_EQ(brs[0]["metadata"]["labels"]["velero.io/storage-location"], "default");
  EXPECT_EQ(brs[0]["metadata"]["labels"]["velero.io/repository-type"], "restic");
  EXPECT_EQ(brs[0]["spec"]["resticIdentifier"], t->identifier);
  EXPECT_EQ(brs[0]["status"]["phase"], "Ready");
  EXPECT_FALSE(brs[0]["metadata"]["annotations"].contains(kClaim));
  // Opening again uses the repository as it is.
  Result<std::unique_ptr<repo::Repository>> again = access.Open(*t, false, {});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(CountFiles(repos_ / kAppNs / "keys"), 1u);
}

TEST_F(RepositoryAccessTest, WrongPasswordIsNotAReasonToInit) {
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  RepositoryAccess access(*client_, Options("node-a"));
  ASSERT_TRUE(access.Open(*t, true, {}).ok());
  RepositoryTarget wrong = *t;
  wrong.password = Secret<std::string>("other");
  Result<std::unique_ptr<repo::Repository>> r = access.Open(wrong, true, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(CountFiles(repos_ / kAppNs / "keys"), 1u);
}

// Two agents (two RepositoryAccess objects with their own clients and holders), two workers each,
// back up the first volumes of a namespace at once: one initialisation, one BackupRepository.
TEST_F(RepositoryAccessTest, ConcurrentCreatesAcrossAgentsInitialiseOnce) {
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  std::unique_ptr<kube::Client> client_b = NewClient();
  ASSERT_NE(client_b, nullptr);
  RepositoryAccess agent_a(*client_, Options("node-a"));
  RepositoryAccess agent_b(*client_b, Options("node-b"));
  std::vector<Status> results(4);
  std::vector<std::string> repo_ids(4);
  {
    std::latch go(4);
    std::vector<std::jthread> threads;
    for (size_t i = 0; i < results.size(); i++) {
      threads.emplace_back([&, i] {
        RepositoryAccess& access = i % 2 == 0 ? agent_a : agent_b;
        go.arrive_and_wait();
        Result<std::unique_ptr<repo::Repository>> r = access.Open(*t, true, {});
        if (r.ok()) {
          repo_ids[i] = (*r)->config().id;
        } else {
          results[i] = r.status();
        }
      });
    }
  }
  for (const Status& s : results) EXPECT_TRUE(s.ok()) << s.ToString();
  for (const std::string& id : repo_ids) EXPECT_EQ(id, repo_ids[0]);
  EXPECT_TRUE(fs::exists(repos_ / kAppNs / "config"));
  EXPECT_EQ(CountFiles(repos_ / kAppNs / "keys"), 1u);
  std::vector<Json> brs = BackupRepositories();
  ASSERT_EQ(brs.size(), 1u);
  EXPECT_EQ(brs[0]["status"]["phase"], "Ready");
  EXPECT_FALSE(brs[0]["metadata"]["annotations"].contains(kClaim));
}

Json BackupRepositoryWithClaim(const std::string& claim) {
  return {{"metadata",
           {{"name", "app-default-restic"},
            {"namespace", kNs},
            {"labels",
             {{"velero.io/volume-namespace", kAppNs},
              {"velero.io/storage-location", "default"},
              {"velero.io/repository-type", "restic"}}},
            {"annotations", {{kClaim, claim}}}}},
          {"spec",
           {{"volumeNamespace", kAppNs},
            {"backupStorageLocation", "default"},
            {"repositoryType", "restic"},
            {"maintenanceFrequency", "168h0m0s"}}},
          {"status", {{"phase", "New"}}}};
}

std::string NowSeconds(std::chrono::seconds offset = 0s) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                            (std::chrono::system_clock::now() + offset).time_since_epoch())
                            .count());
}

TEST_F(RepositoryAccessTest, StaleClaimIsTakenOver) {
  Put(kube::kBackupRepositories, BackupRepositoryWithClaim("node-dead|" + NowSeconds(-3600s)));
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  RepositoryAccess access(*client_, Options("node-a"));
  Result<std::unique_ptr<repo::Repository>> r = access.Open(*t, true, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(CountFiles(repos_ / kAppNs / "keys"), 1u);
  std::vector<Json> brs = BackupRepositories();
  ASSERT_EQ(brs.size(), 1u);
  EXPECT_EQ(brs[0]["status"]["phase"], "Ready");
  EXPECT_FALSE(brs[0]["metadata"]["annotations"].contains(kClaim));
}

TEST_F(RepositoryAccessTest, MalformedClaimIsTakenOver) {
  Put(kube::kBackupRepositories, BackupRepositoryWithClaim("garbage"));
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  RepositoryAccess access(*client_, Options("node-a"));
  Result<std::unique_ptr<repo::Repository>> r = access.Open(*t, true, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

TEST_F(RepositoryAccessTest, FreshClaimOfAnotherAgentIsWaitedForThenTimesOut) {
  Put(kube::kBackupRepositories, BackupRepositoryWithClaim("node-b|" + NowSeconds()));
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  RepositoryAccessOptions o = Options("node-a");
  o.init_wait = 1s;
  RepositoryAccess access(*client_, o);
  Result<std::unique_ptr<repo::Repository>> r = access.Open(*t, true, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("app-default-restic"));
  EXPECT_FALSE(fs::exists(repos_ / kAppNs / "config"));
}

TEST_F(RepositoryAccessTest, WaitingAgentOpensWhenTheClaimHolderFinishes) {
  Put(kube::kBackupRepositories, BackupRepositoryWithClaim("node-b|" + NowSeconds()));
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  RepositoryAccess access(*client_, Options("node-a"));
  Result<std::unique_ptr<repo::Repository>> r = Status::Internal("not run");
  std::jthread waiter([&] { r = access.Open(*t, true, {}); });
  // Act as node-b: initialise, then mark Ready (which ends the waiter's watch).
  ASSERT_TRUE(server_->WaitForWatches(1, 20s));
  {
    Result<std::unique_ptr<repo::Backend>> be = repo::OpenBackend(t->identifier, true);
    ASSERT_TRUE(be.ok()) << be.status().ToString();
    repo::InitOptions init;
    init.scrypt_n = 1024;
    ASSERT_TRUE(repo::Repository::Init(std::move(*be), t->password, init).ok());
  }
  Json ready = BackupRepositoryWithClaim("");
  ready["metadata"].erase("annotations");
  ready["status"]["phase"] = "Ready";
  Put(kube::kBackupRepositories, ready);
  waiter.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(CountFiles(repos_ / kAppNs / "keys"), 1u);
}

TEST_F(RepositoryAccessTest, StopCutsTheWaitShort) {
  Put(kube::kBackupRepositories, BackupRepositoryWithClaim("node-b|" + NowSeconds()));
  Result<RepositoryTarget> t = Resolve();
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  RepositoryAccess access(*client_, Options("node-a"));
  std::stop_source stop;
  Result<std::unique_ptr<repo::Repository>> r = Status::Internal("not run");
  std::jthread waiter([&] { r = access.Open(*t, true, stop.get_token()); });
  ASSERT_TRUE(server_->WaitForWatches(1, 20s));
  stop.request_stop();
  waiter.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled);
}

}  // namespace
}  // namespace fsb::agent
