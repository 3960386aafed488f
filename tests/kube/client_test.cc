// kube::Client against the in-process test API server (tests/support/kube_api_server.h).
#include "kube/client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "tests/kube/kube_test_util.h"
#include "tests/support/s3_server.h"  // MakeTestCertificates
#include "tests/support/test_util.h"

namespace fsb::kube {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using namespace testing;  // fsb::kube::testing
using fsb::testing::KubeApiServer;
using fsb::testing::KubeApiServerOptions;
using fsb::testing::WatchEnd;

constexpr char kToken[] = "t0k3n-secret";
constexpr char kPvbPath[] = "/apis/velero.io/v1/namespaces/velero/podvolumebackups";

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InitCurlOnce();
    KubeApiServerOptions options;
    options.bearer_token = kToken;
    options.bookmark_interval = 50ms;
    server_ = StartServer(options);
    ASSERT_NE(server_, nullptr);
    client_ = NewClient();
    ASSERT_NE(client_, nullptr);
  }

  std::unique_ptr<Client> NewClient(ClientOptions options = {}) {
    KubeConfig config;
    config.server = server_->url();
    config.token = Secret<std::string>(kToken);
    return MakeClient(std::move(config), std::move(options));
  }

  Object Put(const Object& obj) {
    Result<Object> stored = server_->Put(kPodVolumeBackups, obj);
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    return stored.ok() ? *stored : Object();
  }

  std::unique_ptr<KubeApiServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, GetReturnsStoredObject) {
  Put(Pvb("pvb-1"));
  Result<Object> obj = client_->Get(kPodVolumeBackups, "velero", "pvb-1");
  ASSERT_TRUE(obj.ok()) << obj.status().ToString();
  EXPECT_EQ(Name(*obj), "pvb-1");
  EXPECT_EQ((*obj)["kind"], "PodVolumeBackup");
  EXPECT_EQ((*obj)["spec"]["volume"], "data");
  const auto requests = server_->Requests();
  ASSERT_FALSE(requests.empty());
  EXPECT_EQ(requests.back().path, std::string(kPvbPath) + "/pvb-1");
  EXPECT_EQ(requests.back().accept, "application/json");
}

TEST_F(ClientTest, GetClusterScopedIgnoresNamespace) {
  ASSERT_TRUE(server_->Put(kNodes, {{"metadata", {{"name", "node-a"}}}}).ok());
  Result<Object> obj = client_->Get(kNodes, "ignored", "node-a");
  ASSERT_TRUE(obj.ok()) << obj.status().ToString();
  EXPECT_EQ(Name(*obj), "node-a");
}

TEST_F(ClientTest, MissingObjectIsNotFoundWithServerMessage) {
  Result<Object> obj = client_->Get(kPodVolumeBackups, "velero", "nope");
  ASSERT_FALSE(obj.ok());
  EXPECT_EQ(obj.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(obj.status().message(), StartsWith("get podvolumebackups.velero.io velero/nope: "
                                                 "podvolumebackups.velero.io \"nope\" not found"));
  EXPECT_THAT(obj.status().message(), Not(HasSubstr(kToken)));
}

TEST_F(ClientTest, ListFollowsContinueTokensAcrossPages) {
  for (int i = 0; i < 25; ++i) Put(Pvb(fmt::format("pvb-{:02}", i)));
  Put(Pvb("elsewhere", "other-ns"));
  server_->ClearRequests();
  ListOptions opts;
  opts.page_size = 10;
  Result<ObjectList> list = client_->List(kPodVolumeBackups, "velero", opts);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->items.size(), 25u);
  for (int i = 0; i < 25; ++i) {
    EXPECT_EQ(Name(list->items[i]), fmt::format("pvb-{:02}", i));
    EXPECT_EQ(list->items[i]["kind"], "PodVolumeBackup");  // filled in for list items
    EXPECT_EQ(list->items[i]["apiVersion"], "velero.io/v1");
  }
  EXPECT_EQ(list->resource_version, std::to_string(server_->resource_version()));
  EXPECT_EQ(server_->CountRequests("GET", kPvbPath), 3u);
  for (const auto& r : server_->Requests()) EXPECT_THAT(r.query, HasSubstr("limit=10"));

  Result<ObjectList> all = client_->List(kPodVolumeBackups, "");
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->items.size(), 26u);
}

TEST_F(ClientTest, ListSendsEncodedSelectors) {
  Put(Pvb("a", "velero", {{"app", "x"}, {"tier", "db"}}));
  Put(Pvb("b", "velero", {{"app", "y"}}));
  Put(Pvb("c", "velero", {{"app", "x"}}));
  ListOptions opts;
  opts.label_selector = "app=x,tier!=web";
  opts.field_selector = "metadata.name!=c";
  Result<ObjectList> list = client_->List(kPodVolumeBackups, "velero", opts);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->items.size(), 1u);
  EXPECT_EQ(Name(list->items[0]), "a");
  EXPECT_THAT(server_->Requests().back().query, HasSubstr("labelSelector=app%3Dx%2Ctier%21%3Dweb"));
}

TEST_F(ClientTest, ListRestartsOnceWhenContinueTokenExpires) {
  for (int i = 0; i < 5; ++i) Put(Pvb(fmt::format("pvb-{}", i)));
  server_->ClearRequests();
  // The first page is held back long enough for the test to arm a 410 for the next request,
  // which is the second page.
  server_->HoldNext("GET", kPvbPath, 1, 2s);
  ListOptions opts;
  opts.page_size = 3;
  auto list = std::async(std::launch::async,
                         [&] { return client_->List(kPodVolumeBackups, "velero", opts); });
  ASSERT_TRUE(Eventually([&] { return server_->CountRequests("GET", kPvbPath) == 1; }));
  server_->FailNext("GET", kPvbPath, 1, 410,
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.");
  Result<ObjectList> result = list.get();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->items.size(), 5u);
  std::vector<int> statuses;
  std::vector<bool> has_continue;
  for (const auto& r : server_->Requests()) {
    statuses.push_back(r.status);
    has_continue.push_back(r.query.find("continue=") != std::string::npos);
  }
  EXPECT_THAT(statuses, ElementsAre(200, 410, 200, 200));
  EXPECT_THAT(has_continue, ElementsAre(false, true, false, true));
}

TEST_F(ClientTest, CreateStoresObjectAndGenerateNameGetsAName) {
  Result<Object> created = client_->Create(kPodVolumeBackups, "velero", Pvb("pvb-1"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(Name(*created), "pvb-1");
  EXPECT_FALSE(Rv(*created).empty());
  EXPECT_EQ(server_->Requests().back().content_type, "application/json");

  Object gen = Pvb("");
  gen["metadata"].erase("name");
  gen["metadata"]["generateName"] = "pvb-gen-";
  Result<Object> generated = client_->Create(kPodVolumeBackups, "velero", gen);
  ASSERT_TRUE(generated.ok()) << generated.status().ToString();
  EXPECT_THAT(Name(*generated), StartsWith("pvb-gen-"));
  EXPECT_GT(Name(*generated).size(), std::string("pvb-gen-").size());
  EXPECT_TRUE(server_->Get(kPodVolumeBackups, "velero", Name(*generated)).ok());
}

TEST_F(ClientTest, CreateUsesObjectNamespaceWhenNoneGiven) {
  Result<Object> created = client_->Create(kPodVolumeBackups, "", Pvb("pvb-1", "other"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ((*created)["metadata"]["namespace"], "other");
}

TEST_F(ClientTest, CreateExistingIsAlreadyExists) {
  Put(Pvb("pvb-1"));
  Result<Object> created = client_->Create(kPodVolumeBackups, "velero", Pvb("pvb-1"));
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(created.status().message(), HasSubstr("already exists"));
  EXPECT_FALSE(IsConflict(created.status()));
}

TEST_F(ClientTest, CreateWithoutNameIsInvalidArgumentWithoutARequest) {
  Object obj = Pvb("x");
  obj["metadata"].erase("name");
  server_->ClearRequests();
  Result<Object> created = client_->Create(kPodVolumeBackups, "velero", obj);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(server_->Requests().empty());
}

TEST_F(ClientTest, UpdateWithStaleResourceVersionIsConflict) {
  Put(Pvb("pvb-1"));
  Result<Object> read = client_->Get(kPodVolumeBackups, "velero", "pvb-1");
  ASSERT_TRUE(read.ok());
  Object changed = *read;
  changed["spec"]["volume"] = "other";
  Put(changed);  // someone else writes first: a new resourceVersion

  Object mine = *read;
  mine["spec"]["volume"] = "mine";
  Result<Object> updated = client_->Update(kPodVolumeBackups, "velero", mine);
  ASSERT_FALSE(updated.ok());
  EXPECT_EQ(updated.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(IsConflict(updated.status())) << updated.status().ToString();
  EXPECT_THAT(updated.status().message(),
              HasSubstr("update podvolumebackups.velero.io velero/pvb-1"));
  EXPECT_THAT(updated.status().message(), HasSubstr("Operation cannot be fulfilled"));

  Result<Object> fresh = client_->Get(kPodVolumeBackups, "velero", "pvb-1");
  ASSERT_TRUE(fresh.ok());
  (*fresh)["spec"]["volume"] = "mine";
  Result<Object> ok = client_->Update(kPodVolumeBackups, "velero", *fresh);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ((*ok)["spec"]["volume"], "mine");
  EXPECT_NE(Rv(*ok), Rv(*fresh));
}

TEST_F(ClientTest, UpdateWithRetryRereadsAfterConflicts) {
  Put(Pvb("pvb-1"));
  server_->ClearRequests();
  server_->FailNext("PUT", "/pvb-1", 2, 409);
  int mutations = 0;
  Result<Object> updated =
      UpdateWithRetry(client_.get()[0], kPodVolumeBackups, "velero", "pvb-1", [&](Object& obj) {
        ++mutations;
        obj["spec"]["volume"] = "retried";
        return Status::Ok();
      });
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ((*updated)["spec"]["volume"], "retried");
  EXPECT_EQ(mutations, 3);
  EXPECT_EQ(server_->CountRequests("PUT", kPvbPath), 3u);
  EXPECT_EQ(server_->CountRequests("GET", kPvbPath), 3u);
}

TEST_F(ClientTest, UpdateWithRetryGivesUpAndPassesMutateErrors) {
  Put(Pvb("pvb-1"));
  server_->FailNext("PUT", "/pvb-1", 5, 409);
  auto set = [](Object& obj) {
    obj["spec"]["volume"] = "x";
    return Status::Ok();
  };
  Result<Object> updated =
      UpdateWithRetry(*client_, kPodVolumeBackups, "velero", "pvb-1", set, /*attempts=*/3);
  ASSERT_FALSE(updated.ok());
  EXPECT_TRUE(IsConflict(updated.status()));

  Result<Object> refused = UpdateWithRetry(*client_, kPodVolumeBackups, "velero", "pvb-1",
                                           [](Object&) { return Status::Cancelled("no need"); });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(refused.status().message(), "no need");

  Result<Object> missing = UpdateWithRetry(*client_, kPodVolumeBackups, "velero", "nope", set);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(ClientTest, MergePatchChangesObjectAndStatusSubresource) {
  Put(Pvb("pvb-1", "velero", {{"keep", "yes"}, {"drop", "me"}}));
  Result<Object> patched =
      client_->MergePatch(kPodVolumeBackups, "velero", "pvb-1",
                          {{"metadata", {{"labels", {{"drop", nullptr}, {"new", "1"}}}}}});
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  EXPECT_EQ(patched->at("metadata").at("labels"), Object({{"keep", "yes"}, {"new", "1"}}));
  EXPECT_EQ(server_->Requests().back().content_type, "application/merge-patch+json");

  Result<Object> status = client_->MergePatch(kPodVolumeBackups, "velero", "pvb-1",
                                              {{"status", {{"phase", "InProgress"}}}}, "status");
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ((*status)["status"]["phase"], "InProgress");
  EXPECT_EQ(server_->Requests().back().path, std::string(kPvbPath) + "/pvb-1/status");
  EXPECT_EQ(server_->Requests().back().method, "PATCH");
  Result<Object> stored = server_->Get(kPodVolumeBackups, "velero", "pvb-1");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ((*stored)["status"]["phase"], "InProgress");

  Result<Object> missing =
      client_->MergePatch(kPodVolumeBackups, "velero", "nope", {{"status", {}}}, "status");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("patch podvolumebackups.velero.io velero/nope (status)"));
}

TEST_F(ClientTest, DeleteRemovesAndAgainIsNotFound) {
  Put(Pvb("pvb-1"));
  ASSERT_TRUE(client_->Delete(kPodVolumeBackups, "velero", "pvb-1").ok());
  EXPECT_THAT(server_->Requests().back().body, HasSubstr("\"propagationPolicy\":\"Background\""));
  EXPECT_EQ(server_->Get(kPodVolumeBackups, "velero", "pvb-1").status().code(),
            StatusCode::kNotFound);
  Status again = client_->Delete(kPodVolumeBackups, "velero", "pvb-1");
  EXPECT_EQ(again.code(), StatusCode::kNotFound);
  EXPECT_THAT(again.message(), HasSubstr("delete podvolumebackups.velero.io velero/pvb-1"));
}

TEST_F(ClientTest, WrongTokenIsPermissionDeniedAndNeverLogged) {
  KubeConfig config;
  config.server = server_->url();
  config.token = Secret<std::string>("wrong-token");
  auto client = MakeClient(std::move(config));
  Result<Object> obj = client->Get(kPodVolumeBackups, "velero", "pvb-1");
  ASSERT_FALSE(obj.ok());
  EXPECT_EQ(obj.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(obj.status().message(), HasSubstr("Unauthorized"));
  EXPECT_THAT(obj.status().message(), Not(HasSubstr("wrong-token")));
}

TEST_F(ClientTest, RotatedTokenFileIsPickedUpAfterA401) {
  fsb::testing::TempDir dir;
  const std::string token_file = (dir.path() / "token").string();
  fsb::testing::WriteStringToFile(token_file, std::string(kToken) + "\n");
  KubeConfig config;
  config.server = server_->url();
  config.token_file = token_file;
  ClientOptions options;
  options.token_recheck_interval = std::chrono::seconds(3600);  // only the 401 re-reads it
  auto client = MakeClient(std::move(config), options);
  ASSERT_NE(client, nullptr);
  Put(Pvb("pvb-1"));
  ASSERT_TRUE(client->Get(kPodVolumeBackups, "velero", "pvb-1").ok());

  // The kubelet rotates the projected token: a new file swapped in.
  fsb::testing::WriteStringToFile(dir.path() / "token.new", "rotated-token\n");
  std::filesystem::rename(dir.path() / "token.new", token_file);
  server_->SetBearerToken("rotated-token");
  server_->ClearRequests();
  Result<Object> obj = client->Get(kPodVolumeBackups, "velero", "pvb-1");
  ASSERT_TRUE(obj.ok()) << obj.status().ToString();
  std::vector<int> statuses;
  for (const auto& r : server_->Requests()) statuses.push_back(r.status);
  EXPECT_THAT(statuses, ElementsAre(401, 200));

  // A token that really is wrong stays a 401 (one re-read, no loop).
  server_->SetBearerToken("something-else");
  Result<Object> denied = client->Get(kPodVolumeBackups, "velero", "pvb-1");
  EXPECT_EQ(denied.status().code(), StatusCode::kPermissionDenied);
}

TEST_F(ClientTest, TokenFileIsRecheckedWhenItChanges) {
  fsb::testing::TempDir dir;
  const std::string token_file = (dir.path() / "token").string();
  fsb::testing::WriteStringToFile(token_file, kToken);
  KubeConfig config;
  config.server = server_->url();
  config.token_file = token_file;
  ClientOptions options;
  options.token_recheck_interval = std::chrono::seconds(0);  // a stat before every request
  auto client = MakeClient(std::move(config), options);
  ASSERT_NE(client, nullptr);
  Put(Pvb("pvb-1"));
  fsb::testing::WriteStringToFile(dir.path() / "token.new", "second");
  std::filesystem::rename(dir.path() / "token.new", token_file);
  server_->SetBearerToken("second");
  server_->ClearRequests();
  ASSERT_TRUE(client->Get(kPodVolumeBackups, "velero", "pvb-1").ok());
  ASSERT_EQ(server_->Requests().size(), 1u);  // no 401 first
  EXPECT_EQ(server_->Requests()[0].status, 200);
}

TEST_F(ClientTest, MissingTokenFileFailsCreate) {
  KubeConfig config;
  config.server = server_->url();
  config.token_file = "/nonexistent/token";
  Result<std::unique_ptr<Client>> c = Client::Create(std::move(config));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/token"));
}

TEST_F(ClientTest, ReadsAreRetriedOn503WritesAreNot) {
  Put(Pvb("pvb-1"));
  server_->ClearRequests();
  server_->FailNext("GET", kPvbPath, 2, 503);
  Result<Object> obj = client_->Get(kPodVolumeBackups, "velero", "pvb-1");
  ASSERT_TRUE(obj.ok()) << obj.status().ToString();
  EXPECT_EQ(server_->CountRequests("GET", kPvbPath), 3u);

  server_->FailNext("GET", kPvbPath, 3, 503, "etcd is sad");
  Result<Object> failed = client_->Get(kPodVolumeBackups, "velero", "pvb-1");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(failed.status().message(), HasSubstr("etcd is sad (HTTP 503"));

  server_->ClearRequests();
  server_->FailNext("POST", kPvbPath, 1, 503);
  Result<Object> created = client_->Create(kPodVolumeBackups, "velero", Pvb("pvb-2"));
  EXPECT_EQ(created.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(server_->CountRequests("POST", kPvbPath), 1u);

  server_->FailNext("PATCH", kPvbPath, 1, 500);
  Result<Object> patched =
      client_->MergePatch(kPodVolumeBackups, "velero", "pvb-1", {{"spec", {{"x", 1}}}});
  EXPECT_EQ(patched.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(server_->CountRequests("PATCH", kPvbPath), 1u);
}

TEST_F(ClientTest, BadRequestIsInvalidArgument) {
  ListOptions opts;
  opts.label_selector = "app in in";
  Result<ObjectList> list = client_->List(kPodVolumeBackups, "velero", opts);
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(list.status().message(), HasSubstr("list podvolumebackups.velero.io velero: "));
}

// A port nothing listens on: bound, never listened to, closed at the end.
class UnusedPort {
 public:
  UnusedPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~UnusedPort() { ::close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

TEST(ClientConnectTest, RefusedConnectionIsUnavailable) {
  InitCurlOnce();
  UnusedPort port;
  ASSERT_NE(port.port(), 0);
  KubeConfig config;
  config.server = fmt::format("http://127.0.0.1:{}", port.port());
  auto client = MakeClient(std::move(config));
  Result<Object> obj = client->Get(kPods, "default", "x");
  EXPECT_EQ(obj.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(obj.status().message(), HasSubstr("get pods default/x: GET http://127.0.0.1:"));
  Result<Object> created = client->Create(kPods, "default", {{"metadata", {{"name", "x"}}}});
  EXPECT_EQ(created.status().code(), StatusCode::kUnavailable);
}

TEST(ClientConnectTest, ServerMustBeAnHttpUrl) {
  KubeConfig config;
  config.server = "10.0.0.1:443";
  Result<std::unique_ptr<Client>> c = Client::Create(std::move(config));
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
}

// ---- Watch.

// Runs Client::Watch on its own thread and records what it delivers.
class WatchRecorder {
 public:
  WatchRecorder(Client& client, const Resource& r, std::string ns, std::string rv,
                ListOptions opts = {}) {
    thread_ = std::jthread([this, &client, &r, ns, rv, opts](std::stop_token stop) {
      Status s = client.Watch(
          r, ns, opts, rv,
          [this](const WatchEvent& ev) {
            std::lock_guard lock(mu_);
            events_.push_back(ev);
            return handler_result_;
          },
          stop);
      std::lock_guard lock(mu_);
      result_ = s;
      done_ = true;
    });
  }
  ~WatchRecorder() { Stop(); }

  void Stop() {
    thread_.request_stop();
    if (thread_.joinable()) thread_.join();
  }
  void FailHandlerWith(Status s) {
    std::lock_guard lock(mu_);
    handler_result_ = std::move(s);
  }
  std::vector<WatchEvent> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  // The events other than bookmarks, as "TYPE name".
  std::vector<std::string> changes() const {
    std::vector<std::string> out;
    for (const WatchEvent& ev : events()) {
      if (ev.type == EventType::kBookmark) continue;
      const char* t = ev.type == EventType::kAdded      ? "ADDED"
                      : ev.type == EventType::kModified ? "MODIFIED"
                                                        : "DELETED";
      out.push_back(std::string(t) + " " + Name(ev.object));
    }
    return out;
  }
  bool done() const {
    std::lock_guard lock(mu_);
    return done_;
  }
  Status result() const {
    std::lock_guard lock(mu_);
    return result_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<WatchEvent> events_;  // guarded by mu_
  Status handler_result_;           // guarded by mu_
  Status result_;                   // guarded by mu_
  bool done_ = false;               // guarded by mu_
  std::jthread thread_;
};

TEST_F(ClientTest, WatchDeliversChangesInOrderFromResourceVersion) {
  Put(Pvb("before"));
  Result<ObjectList> list = client_->List(kPodVolumeBackups, "velero");
  ASSERT_TRUE(list.ok());
  WatchRecorder watch(*client_, kPodVolumeBackups, "velero", list->resource_version);
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  Object a = Put(Pvb("a"));
  a["spec"]["volume"] = "changed";
  Put(a);
  ASSERT_TRUE(server_->Delete(kPodVolumeBackups, "velero", "a").ok());
  Put(Pvb("b"));
  ASSERT_TRUE(Eventually([&] { return watch.changes().size() >= 4; }));
  EXPECT_THAT(watch.changes(), ElementsAre("ADDED a", "MODIFIED a", "DELETED a", "ADDED b"));
  int64_t last = 0;
  for (const WatchEvent& ev : watch.events()) {
    const int64_t rv = std::stoll(Rv(ev.object));
    EXPECT_GE(rv, last);
    last = rv;
    if (ev.type != EventType::kBookmark) {
      EXPECT_EQ(ev.object["kind"], "PodVolumeBackup");
    }
  }
  const auto requests = server_->Requests();
  const auto watch_req = std::find_if(requests.begin(), requests.end(), [](const auto& r) {
    return r.query.find("watch=true") != std::string::npos;
  });
  ASSERT_NE(watch_req, requests.end());
  EXPECT_THAT(watch_req->query, HasSubstr("allowWatchBookmarks=true"));
  EXPECT_THAT(watch_req->query, HasSubstr("resourceVersion=" + list->resource_version));
  EXPECT_THAT(watch_req->query, HasSubstr("timeoutSeconds=300"));

  watch.Stop();
  EXPECT_EQ(watch.result().code(), StatusCode::kCancelled);
}

TEST_F(ClientTest, WatchDeliversBookmarks) {
  Result<ObjectList> list = client_->List(kPodVolumeBackups, "velero");
  ASSERT_TRUE(list.ok());
  WatchRecorder watch(*client_, kPodVolumeBackups, "velero", list->resource_version);
  ASSERT_TRUE(Eventually([&] {
    for (const WatchEvent& ev : watch.events()) {
      if (ev.type == EventType::kBookmark) return true;
    }
    return false;
  }));
  for (const WatchEvent& ev : watch.events()) {
    EXPECT_EQ(ev.type, EventType::kBookmark);
    EXPECT_FALSE(Rv(ev.object).empty());
  }
}

TEST_F(ClientTest, WatchOnlySeesSelectedObjects) {
  Result<ObjectList> list = client_->List(kPodVolumeBackups, "velero");
  ASSERT_TRUE(list.ok());
  ListOptions opts;
  opts.label_selector = "velero.io/pvc-uid=abc";
  WatchRecorder watch(*client_, kPodVolumeBackups, "velero", list->resource_version, opts);
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  Put(Pvb("other", "velero", {{"velero.io/pvc-uid", "xyz"}}));
  Put(Pvb("mine", "velero", {{"velero.io/pvc-uid", "abc"}}));
  ASSERT_TRUE(Eventually([&] { return !watch.changes().empty(); }));
  EXPECT_THAT(watch.changes(), ElementsAre("ADDED mine"));
}

TEST_F(ClientTest, WatchFromCompactedVersionIsGoneInStreamOrAsHttp410) {
  Result<ObjectList> list = client_->List(kPodVolumeBackups, "velero");
  ASSERT_TRUE(list.ok());
  Put(Pvb("a"));
  server_->CompactHistory();
  for (bool http_410 : {false, true}) {
    server_->SetExpiredAsHttp410(http_410);
    Status s = client_->Watch(
        kPodVolumeBackups, "velero", {}, list->resource_version,
        [](const WatchEvent&) { return Status::Ok(); }, std::stop_token());
    EXPECT_TRUE(IsGone(s)) << http_410 << ": " << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr("watch podvolumebackups.velero.io velero: "));
    EXPECT_THAT(s.message(), HasSubstr("too old resource version"));
  }
}

TEST_F(ClientTest, WatchEndsOkWhenServerEndsStreamAndUnavailableWhenCut) {
  Result<ObjectList> list = client_->List(kPodVolumeBackups, "velero");
  ASSERT_TRUE(list.ok());
  {
    WatchRecorder watch(*client_, kPodVolumeBackups, "velero", list->resource_version);
    ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
    server_->DropWatches(WatchEnd::kClean);
    ASSERT_TRUE(Eventually([&] { return watch.done(); }));
    EXPECT_TRUE(watch.result().ok()) << watch.result().ToString();
  }
  {
    WatchRecorder watch(*client_, kPodVolumeBackups, "velero", list->resource_version);
    ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
    server_->DropWatches(WatchEnd::kAbort);
    ASSERT_TRUE(Eventually([&] { return watch.done(); }));
    EXPECT_EQ(watch.result().code(), StatusCode::kUnavailable) << watch.result().ToString();
  }
}

TEST_F(ClientTest, WatchReturnsHandlerError) {
  Result<ObjectList> list = client_->List(kPodVolumeBackups, "velero");
  ASSERT_TRUE(list.ok());
  WatchRecorder watch(*client_, kPodVolumeBackups, "velero", list->resource_version);
  watch.FailHandlerWith(Status::Internal("handler says no"));
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  Put(Pvb("a"));
  ASSERT_TRUE(Eventually([&] { return watch.done(); }));
  EXPECT_EQ(watch.result().code(), StatusCode::kInternal);
  EXPECT_EQ(watch.result().message(), "handler says no");
}

TEST_F(ClientTest, StopTokenEndsAQuietWatch) {
  // No changes and no server timeout: only the stop token can end this watch.
  auto quiet = NewClient();
  Result<ObjectList> list = quiet->List(kPodVolumeBackups, "velero");
  ASSERT_TRUE(list.ok());
  std::stop_source stop;
  auto result = std::async(std::launch::async, [&] {
    return quiet->Watch(
        kPodVolumeBackups, "velero", {}, list->resource_version,
        [](const WatchEvent&) { return Status::Ok(); }, stop.get_token());
  });
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  stop.request_stop();
  ASSERT_EQ(result.wait_for(kDeadline), std::future_status::ready);
  EXPECT_EQ(result.get().code(), StatusCode::kCancelled);
}

TEST_F(ClientTest, IdleWatchIsUnavailable) {
  // Bookmarks every hour: nothing arrives within the one-second idle timeout.
  KubeApiServerOptions options;
  options.bookmark_interval = std::chrono::hours(1);
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  KubeConfig config;
  config.server = server->url();
  ClientOptions client_options;
  client_options.watch_idle_timeout = std::chrono::seconds(1);
  auto client = MakeClient(std::move(config), client_options);
  Status s = client->Watch(
      kPodVolumeBackups, "velero", {}, std::to_string(server->resource_version()),
      [](const WatchEvent&) { return Status::Ok(); }, std::stop_token());
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("no data for"));
}

TEST_F(ClientTest, WatchWithWrongTokenIsPermissionDenied) {
  KubeConfig config;
  config.server = server_->url();
  config.token = Secret<std::string>("nope");
  auto client = MakeClient(std::move(config));
  Status s = client->Watch(
      kPodVolumeBackups, "velero", {}, "1", [](const WatchEvent&) { return Status::Ok(); },
      std::stop_token());
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
}

// ---- TLS.

class ClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InitCurlOnce();
    KubeApiServerOptions options;
    options.tls = true;
    std::string why;
    server_ = KubeApiServer::Start(options, &why);
    if (server_ == nullptr) {
      if (fsb::testing::InteropRequired()) FAIL() << why;
      GTEST_SKIP() << "no TLS test server: " << why;
    }
    ASSERT_TRUE(server_->Put(kPodVolumeBackups, Pvb("pvb-1")).ok());
  }

  Status GetWith(KubeConfig config) {
    config.server = server_->url();
    Result<std::unique_ptr<Client>> c = Client::Create(std::move(config));
    if (!c.ok()) return c.status();
    return (*c)->Get(kPodVolumeBackups, "velero", "pvb-1").status();
  }

  std::unique_ptr<KubeApiServer> server_;
};

TEST_F(ClientTlsTest, CaFileOrCaDataIsTrusted) {
  KubeConfig by_file;
  by_file.ca_file = server_->ca_file();
  EXPECT_TRUE(GetWith(by_file).ok()) << GetWith(by_file).ToString();
  KubeConfig by_data;
  by_data.ca_data = fsb::testing::ReadFileToString(server_->ca_file());
  Status s = GetWith(by_data);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(ClientTlsTest, UnknownCaIsFailedPreconditionUnlessInsecure) {
  Status s = GetWith(KubeConfig{});
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_FALSE(IsConflict(s));
  KubeConfig insecure;
  insecure.insecure_skip_tls_verify = true;
  s = GetWith(insecure);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(ClientTlsTest, ClientCertificateFilesOrDataAreLoaded) {
  // The test server asks for no client certificate, so this checks that curl loads (and pairs)
  // what it is given, from files and from PEM data, and refuses what is not a certificate.
  fsb::testing::TempDir dir;
  std::string why;
  ASSERT_TRUE(fsb::testing::MakeTestCertificates(dir.path(), &why)) << why;
  const std::string cert = (dir.path() / "server.crt").string();
  const std::string key = (dir.path() / "server.key").string();

  KubeConfig files;
  files.ca_file = server_->ca_file();
  files.client_cert_file = cert;
  files.client_key_file = key;
  Status s = GetWith(files);
  EXPECT_TRUE(s.ok()) << s.ToString();

  KubeConfig data;
  data.ca_file = server_->ca_file();
  data.client_cert_data = fsb::testing::ReadFileToString(cert);
  data.client_key_data = Secret<std::string>(fsb::testing::ReadFileToString(key));
  s = GetWith(data);
  EXPECT_TRUE(s.ok()) << s.ToString();

  KubeConfig garbage = data;
  garbage.client_cert_data = "not a certificate";
  s = GetWith(garbage);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
}

}  // namespace
}  // namespace fsb::kube
