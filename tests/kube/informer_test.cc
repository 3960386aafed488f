// kube::Informer against the in-process test API server (tests/support/kube_api_server.h).
#include "kube/informer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "tests/kube/kube_test_util.h"

namespace fsb::kube {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using namespace testing;  // fsb::kube::testing
using fsb::testing::KubeApiServer;
using fsb::testing::KubeApiServerOptions;
using fsb::testing::WatchEnd;

constexpr char kPvbPath[] = "/apis/velero.io/v1/namespaces/velero/podvolumebackups";

// What the handler heard, as "ADDED name" strings, in order.
class Recorder {
 public:
  Informer::Handler Handler() {
    return [this](EventType type, const Object& obj) {
      const char* t = type == EventType::kAdded      ? "ADDED"
                      : type == EventType::kModified ? "MODIFIED"
                      : type == EventType::kDeleted  ? "DELETED"
                                                     : "BOOKMARK";
      // The handler may read the informer's cache: no deadlock, and it already holds the change.
      if (Informer* inf = informer.load()) {
        const std::string ns =
            obj["metadata"].contains("namespace") ? obj["metadata"]["namespace"] : "";
        const bool cached = inf->Get(ns, Name(obj)).has_value();
        if (cached != (type != EventType::kDeleted)) cache_mismatches_++;
      }
      std::lock_guard lock(mu_);
      events_.push_back(std::string(t) + " " + Name(obj));
    };
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  // The events from index `from` on.
  std::vector<std::string> since(size_t from) const {
    std::vector<std::string> all = events();
    return std::vector<std::string>(all.begin() + std::min(from, all.size()), all.end());
  }
  size_t size() const { return events().size(); }
  bool Has(const std::string& ev) const {
    const auto all = events();
    return std::find(all.begin(), all.end(), ev) != all.end();
  }
  int cache_mismatches() const { return cache_mismatches_.load(); }

  std::atomic<Informer*> informer{nullptr};

 private:
  mutable std::mutex mu_;
  std::vector<std::string> events_;  // guarded by mu_
  std::atomic<int> cache_mismatches_{0};
};

class InformerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InitCurlOnce();
    KubeApiServerOptions options;
    options.bookmark_interval = 50ms;
    server_ = StartServer(options);
    ASSERT_NE(server_, nullptr);
    KubeConfig config;
    config.server = server_->url();
    client_ = MakeClient(std::move(config));
    ASSERT_NE(client_, nullptr);
  }

  void TearDown() override {
    informer_.reset();  // before the server and the client
  }

  // An informer on the PVBs of "velero", started and synced.
  void StartInformer(InformerOptions options = {}) {
    options.ns = "velero";
    if (options.backoff_min == InformerOptions{}.backoff_min) options.backoff_min = 10ms;
    if (options.resync == InformerOptions{}.resync) options.resync = std::chrono::seconds(0);
    informer_ = std::make_unique<Informer>(*client_, kPodVolumeBackups, options, rec_.Handler());
    rec_.informer = informer_.get();
    informer_->Start();
  }

  Object Put(const Object& obj) {
    Result<Object> stored = server_->Put(kPodVolumeBackups, obj);
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    return stored.ok() ? *stored : Object();
  }

  size_t ListRequests() const {
    size_t n = 0;
    for (const auto& r : server_->Requests()) {
      if (r.method == "GET" && r.path == kPvbPath &&
          r.query.find("watch=true") == std::string::npos) {
        ++n;
      }
    }
    return n;
  }

  std::unique_ptr<KubeApiServer> server_;
  std::unique_ptr<Client> client_;
  Recorder rec_;
  std::unique_ptr<Informer> informer_;
};

TEST_F(InformerTest, InitialListIsDeliveredAsAddedThenSynced) {
  Put(Pvb("a"));
  Put(Pvb("b"));
  Put(Pvb("c"));
  Put(Pvb("elsewhere", "other"));
  StartInformer();
  ASSERT_TRUE(informer_->WaitForSync(kDeadline));
  EXPECT_TRUE(informer_->synced());
  EXPECT_THAT(rec_.events(), ElementsAre("ADDED a", "ADDED b", "ADDED c"));
  std::optional<Object> b = informer_->Get("velero", "b");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ((*b)["kind"], "PodVolumeBackup");
  EXPECT_FALSE(informer_->Get("other", "elsewhere").has_value());
  EXPECT_EQ(informer_->List().size(), 3u);
  EXPECT_TRUE(informer_->last_error().ok());
  EXPECT_EQ(rec_.cache_mismatches(), 0);
}

TEST_F(InformerTest, WatchedChangesFollowTheSync) {
  Object a = Put(Pvb("a"));
  Put(Pvb("b"));
  StartInformer();
  ASSERT_TRUE(informer_->WaitForSync(kDeadline));
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  const size_t synced = rec_.size();
  Put(Pvb("d"));
  a["spec"]["volume"] = "changed";
  Put(a);
  ASSERT_TRUE(server_->Delete(kPodVolumeBackups, "velero", "b").ok());
  ASSERT_TRUE(Eventually([&] { return rec_.size() >= synced + 3; }));
  EXPECT_THAT(rec_.since(synced), ElementsAre("ADDED d", "MODIFIED a", "DELETED b"));
  EXPECT_EQ((*informer_->Get("velero", "a"))["spec"]["volume"], "changed");
  EXPECT_FALSE(informer_->Get("velero", "b").has_value());
  EXPECT_EQ(informer_->List().size(), 2u);
  EXPECT_EQ(rec_.cache_mismatches(), 0);
  // The watch asked for bookmarks and started at the list's version.
  bool watched = false;
  for (const auto& r : server_->Requests()) {
    if (r.query.find("watch=true") == std::string::npos) continue;
    watched = true;
    EXPECT_THAT(r.query, ::testing::HasSubstr("allowWatchBookmarks=true"));
  }
  EXPECT_TRUE(watched);
}

// The informer's watch expires while objects change: the re-list must report exactly the
// differences, whichever way the server says 410.
class InformerRelistTest : public InformerTest, public ::testing::WithParamInterface<bool> {};

TEST_P(InformerRelistTest, ReListAfterGoneReportsTheDifferences) {
  server_->SetExpiredAsHttp410(GetParam());
  Object c = Put(Pvb("c"));
  Put(Pvb("a"));
  Put(Pvb("b"));
  StartInformer();
  ASSERT_TRUE(informer_->WaitForSync(kDeadline));
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  const size_t synced = rec_.size();
  ASSERT_EQ(synced, 3u);

  // End the watch and hold the informer's next request (the re-watch) long enough to change
  // objects and forget the history behind its back.
  server_->ClearRequests();
  server_->HoldNext("GET", kPvbPath, 1, 2s);
  server_->DropWatches(WatchEnd::kClean);
  ASSERT_TRUE(Eventually([&] { return server_->CountRequests("GET", kPvbPath) >= 1; }));
  ASSERT_TRUE(server_->Delete(kPodVolumeBackups, "velero", "b").ok());
  c["spec"]["volume"] = "changed";
  Put(c);
  Put(Pvb("d"));
  server_->CompactHistory();

  ASSERT_TRUE(Eventually([&] { return rec_.size() >= synced + 3; }));
  EXPECT_THAT(rec_.since(synced), ElementsAre("MODIFIED c", "ADDED d", "DELETED b"));
  EXPECT_EQ(ListRequests(), 1u);  // the re-list
  std::vector<std::string> names;
  for (const Object& obj : informer_->List()) names.push_back(Name(obj));
  EXPECT_THAT(names, UnorderedElementsAre("a", "c", "d"));
  EXPECT_EQ((*informer_->Get("velero", "c"))["spec"]["volume"], "changed");
  EXPECT_TRUE(informer_->last_error().ok()) << informer_->last_error().ToString();

  // And it watches on from the re-list's version.
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  Put(Pvb("e"));
  ASSERT_TRUE(Eventually([&] { return rec_.Has("ADDED e"); }));
  EXPECT_EQ(rec_.cache_mismatches(), 0);
}

INSTANTIATE_TEST_SUITE_P(InStreamAndHttp, InformerRelistTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Http410" : "InStreamError";
                         });

TEST_F(InformerTest, DroppedStreamsResumeWithoutLosingOrRepeatingEvents) {
  StartInformer();
  ASSERT_TRUE(informer_->WaitForSync(kDeadline));
  std::vector<std::string> want;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
    const std::string name = fmt::format("x{}", i);
    Put(Pvb(name));
    want.push_back("ADDED " + name);
    server_->DropWatches(i % 2 == 0 ? WatchEnd::kAbort : WatchEnd::kClean);
  }
  ASSERT_TRUE(Eventually([&] { return rec_.size() >= want.size(); }));
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  Put(Pvb("last"));  // a marker: everything before it has been delivered once it arrives
  want.push_back("ADDED last");
  ASSERT_TRUE(Eventually([&] { return rec_.Has("ADDED last"); }));
  EXPECT_EQ(rec_.events(), want);
  EXPECT_EQ(ListRequests(), 1u);  // resumed from the last version, never re-listed
  ASSERT_TRUE(Eventually([&] { return informer_->last_error().ok(); }));
}

TEST_F(InformerTest, ListErrorsBackOffAndRecover) {
  Put(Pvb("a"));
  // Two list attempts of three requests each (the client retries reads) get 503.
  server_->FailNext("GET", kPvbPath, 6, 503, "etcd leader changed");
  InformerOptions options;
  options.backoff_min = 50ms;
  StartInformer(options);
  ASSERT_TRUE(Eventually([&] { return !informer_->last_error().ok(); }));
  const Status err = informer_->last_error();
  EXPECT_EQ(err.code(), StatusCode::kUnavailable);
  EXPECT_THAT(err.message(), ::testing::HasSubstr("etcd leader changed"));
  ASSERT_TRUE(informer_->WaitForSync(kDeadline));
  EXPECT_TRUE(informer_->last_error().ok()) << informer_->last_error().ToString();
  EXPECT_THAT(rec_.events(), ElementsAre("ADDED a"));
  EXPECT_EQ(ListRequests(), 7u);
}

TEST_F(InformerTest, WatchErrorsBackOffAndRecover) {
  InformerOptions options;
  options.backoff_min = 100ms;
  StartInformer(options);
  ASSERT_TRUE(informer_->WaitForSync(kDeadline));
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  server_->FailNext("GET", kPvbPath, 3, 503);
  server_->DropWatches(WatchEnd::kClean);
  ASSERT_TRUE(Eventually([&] { return !informer_->last_error().ok(); }));
  EXPECT_EQ(informer_->last_error().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  Put(Pvb("after"));
  ASSERT_TRUE(Eventually([&] { return rec_.Has("ADDED after"); }));
  ASSERT_TRUE(Eventually([&] { return informer_->last_error().ok(); }));
  EXPECT_EQ(ListRequests(), 1u);
}

TEST_F(InformerTest, ResyncRedeliversEveryCachedObject) {
  Put(Pvb("a"));
  Put(Pvb("b"));
  InformerOptions options;
  options.resync = std::chrono::seconds(1);
  StartInformer(options);
  ASSERT_TRUE(informer_->WaitForSync(kDeadline));
  ASSERT_TRUE(Eventually([&] { return rec_.Has("MODIFIED a") && rec_.Has("MODIFIED b"); }));
  EXPECT_THAT(rec_.since(0), ::testing::IsSupersetOf({"ADDED a", "ADDED b"}));
  EXPECT_EQ(ListRequests(), 1u);  // from the cache, not the server
}

TEST_F(InformerTest, StopEndsAnIdleWatchAndIsIdempotent) {
  StartInformer();
  ASSERT_TRUE(informer_->WaitForSync(kDeadline));
  ASSERT_TRUE(server_->WaitForWatches(1, kDeadline));
  informer_->Stop();
  informer_->Stop();
  EXPECT_TRUE(Eventually([&] { return server_->open_watches() == 0; }));
  EXPECT_THAT(rec_.events(), IsEmpty());
}

TEST_F(InformerTest, ClusterScopedObjectsAreKeyedByName) {
  ASSERT_TRUE(server_->Put(kNodes, {{"metadata", {{"name", "node-a"}}}}).ok());
  Recorder rec;
  Informer informer(*client_, kNodes, {}, rec.Handler());
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(kDeadline));
  EXPECT_TRUE(informer.Get("", "node-a").has_value());
  EXPECT_THAT(rec.events(), ElementsAre("ADDED node-a"));
}

TEST(InformerNoServerTest, UnreachableServerIsNotSyncedAndReportsError) {
  InitCurlOnce();
  // A port nothing listens on.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  KubeConfig config;
  config.server = fmt::format("http://127.0.0.1:{}", ntohs(addr.sin_port));
  auto client = MakeClient(std::move(config));
  Recorder rec;
  {
    Informer informer(*client, kPods, {}, rec.Handler());
    informer.Start();
    EXPECT_FALSE(informer.WaitForSync(50ms));
    ASSERT_TRUE(Eventually([&] { return !informer.last_error().ok(); }));
    EXPECT_EQ(informer.last_error().code(), StatusCode::kUnavailable);
    EXPECT_FALSE(informer.synced());
  }  // the destructor stops it during its backoff
  ::close(fd);
  EXPECT_THAT(rec.events(), IsEmpty());
}

}  // namespace
}  // namespace fsb::kube
