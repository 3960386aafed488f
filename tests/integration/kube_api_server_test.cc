// The kube test API server (tests/support/kube_api_server.h) on its own, over HTTP with
// cpp-httplib's client and through its C++ API: selectors, patches, optimistic concurrency,
// finalizers, paging, watch (history, bookmarks, selectors, 410), faults, auth and discovery.
// kubectl_test.cc proves the same server against the real kubectl.

#include "tests/support/kube_api_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kube/resource.h"

namespace fsb::testing {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using namespace std::chrono_literals;

using Names = std::vector<std::string>;

constexpr char kPvbs[] = "/apis/velero.io/v1/namespaces/velero/podvolumebackups";

json Pvb(const std::string& name, json labels = json::object(), const std::string& node = "n1") {
  return {{"apiVersion", "velero.io/v1"},
          {"kind", "PodVolumeBackup"},
          {"metadata", {{"name", name}, {"namespace", "velero"}, {"labels", labels}}},
          {"spec", {{"node", node}, {"volume", "data"}}}};
}

struct HttpReply {
  int status = -1;
  json body;
  std::string content_type;
  std::string raw;
};

// A watch request read on its own thread; events are handed over line by line.
class WatchReader {
 public:
  WatchReader(uint16_t port, std::string path_and_query) {
    thread_ = std::thread([this, port, target = std::move(path_and_query)] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_read_timeout(30, 0);
      {
        std::lock_guard<std::mutex> lock(mu_);
        cli_ = &cli;
      }
      httplib::Result res = cli.Get(
          target.c_str(), httplib::Headers{},
          [this](const httplib::Response& r) {
            std::lock_guard<std::mutex> lock(mu_);
            status_ = r.status;
            return true;
          },
          [this](const char* data, size_t n) {
            std::lock_guard<std::mutex> lock(mu_);
            buf_.append(data, n);
            raw_.append(data, n);
            for (size_t nl; (nl = buf_.find('\n')) != std::string::npos;) {
              events_.push_back(json::parse(buf_.substr(0, nl), nullptr, false));
              buf_.erase(0, nl + 1);
            }
            cv_.notify_all();
            return true;
          });
      std::lock_guard<std::mutex> lock(mu_);
      cli_ = nullptr;
      clean_end_ = static_cast<bool>(res);
      done_ = true;
      cv_.notify_all();
    });
  }
  ~WatchReader() {
    while (!WaitDone(100ms)) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cli_ != nullptr) cli_->stop();
    }
    thread_.join();
  }

  // The next event, or nullopt after `timeout` or at the end of the stream.
  std::optional<json> Next(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty() || done_; })) {
      return std::nullopt;
    }
    if (events_.empty()) return std::nullopt;
    json e = std::move(events_.front());
    events_.pop_front();
    return e;
  }
  bool WaitDone(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_; });
  }
  // True when the stream ended with its terminating chunk (not cut).
  bool clean_end() {
    std::lock_guard<std::mutex> lock(mu_);
    return clean_end_;
  }
  int status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  std::string raw() {
    std::lock_guard<std::mutex> lock(mu_);
    return raw_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  httplib::Client* cli_ = nullptr;  // guarded by mu_
  std::string buf_;                 // guarded by mu_
  std::string raw_;                 // guarded by mu_
  std::deque<json> events_;         // guarded by mu_
  int status_ = -1;                 // guarded by mu_
  bool done_ = false;               // guarded by mu_
  bool clean_end_ = false;          // guarded by mu_
  std::thread thread_;
};

// "TYPE name" of an event (BOOKMARK: "BOOKMARK rv").
std::string Brief(const std::optional<json>& e) {
  if (!e) return "<none>";
  const std::string type = e->value("type", "?");
  const json& md = (*e)["object"]["metadata"];
  if (type == "BOOKMARK") return type + " " + md.value("resourceVersion", "");
  if (type == "ERROR") return type + " " + std::to_string((*e)["object"].value("code", 0));
  return type + " " + md.value("name", "");
}

class KubeApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Restart({}); }

  void Restart(const KubeApiServerOptions& options) {
    server_.reset();
    std::string why;
    server_ = KubeApiServer::Start(options, &why);
    ASSERT_NE(server_, nullptr) << why;
  }

  HttpReply Call(const std::string& method, const std::string& target, const std::string& body = "",
                 const std::string& content_type = "application/json",
                 httplib::Headers headers = {}) {
    httplib::Client cli("127.0.0.1", server_->port());
    cli.set_read_timeout(30, 0);
    httplib::Result res = [&] {
      if (method == "POST") return cli.Post(target.c_str(), headers, body, content_type.c_str());
      if (method == "PUT") return cli.Put(target.c_str(), headers, body, content_type.c_str());
      if (method == "PATCH") return cli.Patch(target.c_str(), headers, body, content_type.c_str());
      if (method == "DELETE") {
        return cli.Delete(target.c_str(), headers, body, content_type.c_str());
      }
      return cli.Get(target.c_str(), headers);
    }();
    HttpReply r;
    if (!res) return r;
    r.status = res->status;
    r.raw = res->body;
    r.content_type = res->get_header_value("Content-Type");
    r.body = json::parse(res->body, nullptr, false);
    return r;
  }

  Names Select(std::string_view label_selector, std::string_view field_selector = "") {
    std::vector<std::string> names;
    for (const json& o :
         server_->List("podvolumebackups", "velero", label_selector, field_selector)) {
      names.push_back(o["metadata"]["name"]);
    }
    return names;
  }

  std::unique_ptr<KubeApiServer> server_;
};

TEST_F(KubeApiServerTest, LabelSelectorForms) {
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("a", {{"app", "web"}, {"tier", "1"}})).ok());
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("b", {{"app", "db"}, {"tier", "2"}})).ok());
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("c", {{"app", "web"}})).ok());
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("d")).ok());

  EXPECT_EQ(Select(""), (Names{"a", "b", "c", "d"}));
  EXPECT_EQ(Select("app=web"), (Names{"a", "c"}));
  EXPECT_EQ(Select("app==web"), (Names{"a", "c"}));
  EXPECT_EQ(Select("app!=web"), (Names{"b", "d"}));  // absent labels match !=
  EXPECT_EQ(Select("app in (db, web),tier"), (Names{"a", "b"}));
  EXPECT_EQ(Select("app notin (web)"), (Names{"b", "d"}));
  EXPECT_EQ(Select("tier"), (Names{"a", "b"}));
  EXPECT_EQ(Select("!tier"), (Names{"c", "d"}));
  EXPECT_EQ(Select(" app = web , ! tier "), (Names{"c"}));
  EXPECT_EQ(Select("tier>1"), (Names{"b"}));
  EXPECT_EQ(Select("app in (web"), Names{});  // malformed: nothing

  HttpReply r = Call("GET", std::string(kPvbs) + "?labelSelector=app%20in%20(web");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body["reason"], "BadRequest");
  r = Call("GET", std::string(kPvbs) + "?labelSelector=app%3Dweb%2Ctier%3D1");
  ASSERT_EQ(r.status, 200) << r.raw;
  ASSERT_EQ(r.body["items"].size(), 1u);
  EXPECT_EQ(r.body["items"][0]["metadata"]["name"], "a");
}

TEST_F(KubeApiServerTest, FieldSelectorsOnAnyDottedPath) {
  json a = Pvb("a", {}, "node-a");
  a["status"] = {{"phase", "InProgress"}, {"progress", {{"totalBytes", 10}}}};
  ASSERT_TRUE(server_->Put("podvolumebackups", a).ok());
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("b", {}, "node-b")).ok());
  json other = Pvb("c", {}, "node-a");
  other["metadata"]["namespace"] = "other";
  ASSERT_TRUE(server_->Put("podvolumebackups", other).ok());

  EXPECT_EQ(Select("", "spec.node=node-a"), (Names{"a"}));
  EXPECT_EQ(Select("", "spec.node==node-b"), (Names{"b"}));
  EXPECT_EQ(Select("", "spec.node!=node-a"), (Names{"b"}));
  EXPECT_EQ(Select("", "metadata.name=b"), (Names{"b"}));
  EXPECT_EQ(Select("", "status.phase="), (Names{"b"}));  // a missing field reads as ""
  EXPECT_EQ(Select("", "status.progress.totalBytes=10"), (Names{"a"}));
  EXPECT_EQ(Select("", "spec.node=node-a,status.phase=InProgress"), (Names{"a"}));

  std::vector<std::string> all;
  for (const json& o : server_->List("podvolumebackups", "", "", "spec.node=node-a")) {
    all.push_back(o["metadata"]["namespace"].get<std::string>() + "/" +
                  o["metadata"]["name"].get<std::string>());
  }
  EXPECT_EQ(all, (Names{"other/c", "velero/a"}));
  HttpReply r =
      Call("GET", "/apis/velero.io/v1/podvolumebackups?fieldSelector=metadata.namespace%3Dother");
  ASSERT_EQ(r.status, 200) << r.raw;
  ASSERT_EQ(r.body["items"].size(), 1u);
  EXPECT_EQ(r.body["items"][0]["metadata"]["name"], "c");
}

TEST_F(KubeApiServerTest, CreateAssignsMetadataAndRefusesADuplicate) {
  const int64_t rv0 = server_->resource_version();
  json obj = Pvb("");
  obj["metadata"].erase("name");
  obj["metadata"]["generateName"] = "backup-1-";
  HttpReply r = Call("POST", kPvbs, obj.dump());
  ASSERT_EQ(r.status, 201) << r.raw;
  const json& md = r.body["metadata"];
  const std::string name = md["name"];
  EXPECT_THAT(name, ::testing::MatchesRegex("backup-1-[bcdfghjklmnpqrstvwxz2456789]{5}"));
  EXPECT_EQ(md["namespace"], "velero");
  EXPECT_EQ(md["resourceVersion"], std::to_string(rv0 + 1));
  EXPECT_EQ(md["generation"], 1);
  EXPECT_EQ(md["uid"].get<std::string>().size(), 36u);
  EXPECT_THAT(md["creationTimestamp"].get<std::string>(),
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"));
  EXPECT_TRUE(server_->Get("podvolumebackups", "velero", name).ok());

  obj["metadata"]["name"] = name;
  r = Call("POST", kPvbs, obj.dump());
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(
      r.body,
      json::parse(R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)"
                  R"("message":"podvolumebackups.velero.io \")" +
                  name + R"(\" already exists","reason":"AlreadyExists","details":{"name":")" +
                  name + R"(","group":"velero.io","kind":"podvolumebackups"},"code":409})"));

  // The namespace of the body must agree with the URL's; neither name nor generateName is 422.
  json wrong_ns = Pvb("x");
  wrong_ns["metadata"]["namespace"] = "other";
  EXPECT_EQ(Call("POST", kPvbs, wrong_ns.dump()).status, 400);
  json nameless = Pvb("");
  nameless["metadata"].erase("name");
  r = Call("POST", kPvbs, nameless.dump());
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.body["reason"], "Invalid");
  EXPECT_EQ(Call("POST", kPvbs, "{not json").status, 400);
  EXPECT_EQ(server_->resource_version(), rv0 + 1);
}

TEST_F(KubeApiServerTest, UpdateNeedsTheCurrentResourceVersion) {
  Result<json> stored = server_->Put("podvolumebackups", Pvb("pvb-1"));
  ASSERT_TRUE(stored.ok());
  json update = *stored;
  update["status"] = {{"phase", "InProgress"}};
  const std::string url = std::string(kPvbs) + "/pvb-1";

  HttpReply r = Call("PUT", url, update.dump());
  ASSERT_EQ(r.status, 200) << r.raw;
  const std::string rv1 = r.body["metadata"]["resourceVersion"];
  EXPECT_NE(rv1, (*stored)["metadata"]["resourceVersion"]);
  EXPECT_EQ(r.body["metadata"]["generation"], 1);  // a status change keeps the generation

  // The same write again carries a stale resourceVersion.
  r = Call("PUT", url, update.dump());
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body["reason"], "Conflict");
  EXPECT_EQ(r.body["message"],
            "Operation cannot be fulfilled on podvolumebackups.velero.io \"pvb-1\": the object "
            "has been modified; please apply your changes to the latest version and try again");

  update["metadata"].erase("resourceVersion");
  r = Call("PUT", url, update.dump());
  EXPECT_EQ(r.status, 422);
  EXPECT_THAT(r.body["message"].get<std::string>(),
              HasSubstr("PodVolumeBackup.velero.io \"pvb-1\" is invalid: "
                        "metadata.resourceVersion"));

  // A no-op update keeps the resourceVersion; a spec change bumps the generation.
  update["metadata"]["resourceVersion"] = rv1;
  r = Call("PUT", url, update.dump());
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["metadata"]["resourceVersion"], rv1);
  update["spec"]["node"] = "n2";
  r = Call("PUT", url, update.dump());
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["metadata"]["generation"], 2);
  // The server owns uid and creationTimestamp.
  EXPECT_EQ(r.body["metadata"]["uid"], (*stored)["metadata"]["uid"]);

  EXPECT_EQ(Call("PUT", std::string(kPvbs) + "/missing", Pvb("missing").dump()).status, 404);
  EXPECT_EQ(Call("PUT", url, Pvb("other-name").dump()).status, 400);
}

TEST_F(KubeApiServerTest, PatchTypes) {
  json obj = Pvb("pvb-1", {{"a", "1"}, {"b", "2"}});
  obj["spec"]["tags"] = {{"x", "1"}, {"y", "2"}};
  obj["spec"]["list"] = {1, 2, 3};
  ASSERT_TRUE(server_->Put("podvolumebackups", obj).ok());
  const std::string url = std::string(kPvbs) + "/pvb-1";

  // RFC 7386: null deletes, objects merge, arrays are replaced.
  HttpReply r = Call("PATCH", url,
                     R"({"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"tags":{"x":null,)"
                     R"("z":"3"},"list":[9]}})",
                     "application/merge-patch+json");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["metadata"]["labels"], (json{{"b", "2"}, {"c", "3"}}));
  EXPECT_EQ(r.body["spec"]["tags"], (json{{"y", "2"}, {"z", "3"}}));
  EXPECT_EQ(r.body["spec"]["list"], json::array({9}));

  // Strategic merge is a merge patch here; its directives are dropped, not stored.
  r = Call("PATCH", url, R"({"spec":{"volume":"logs","$setElementOrder/list":[9]}})",
           "application/strategic-merge-patch+json");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["spec"]["volume"], "logs");
  EXPECT_FALSE(r.body["spec"].contains("$setElementOrder/list"));

  // RFC 6902, on the status subresource.
  r = Call("PATCH", url + "/status",
           R"([{"op":"add","path":"/status","value":{"phase":"Completed"}},)"
           R"({"op":"test","path":"/spec/volume","value":"logs"}])",
           "application/json-patch+json");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["status"]["phase"], "Completed");
  EXPECT_EQ(Call("GET", url + "/status").body["status"]["phase"], "Completed");
  r = Call("PATCH", url, R"([{"op":"test","path":"/spec/volume","value":"data"}])",
           "application/json-patch+json");
  EXPECT_EQ(r.status, 422);

  // A resourceVersion in a patch is a precondition.
  r = Call("PATCH", url, R"({"metadata":{"resourceVersion":"1"},"spec":{"volume":"x"}})",
           "application/merge-patch+json");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body["reason"], "Conflict");

  EXPECT_EQ(Call("PATCH", url, "{}", "application/apply-patch+yaml").status, 415);
  EXPECT_EQ(
      Call("PATCH", std::string(kPvbs) + "/missing", "{}", "application/merge-patch+json").status,
      404);
  EXPECT_EQ(server_->Get("podvolumebackups", "velero", "pvb-1")->at("spec").at("volume"), "logs");
}

TEST_F(KubeApiServerTest, DryRunAnswersButDoesNotPersist) {
  const int64_t rv0 = server_->resource_version();
  HttpReply r = Call("POST", std::string(kPvbs) + "?dryRun=All", Pvb("dry").dump());
  EXPECT_EQ(r.status, 201) << r.raw;
  EXPECT_EQ(r.body["metadata"]["name"], "dry");
  EXPECT_EQ(server_->Get("podvolumebackups", "velero", "dry").status().code(),
            StatusCode::kNotFound);

  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("real")).ok());
  const int64_t rv1 = server_->resource_version();
  r = Call("PATCH", std::string(kPvbs) + "/real?dryRun=All", R"({"spec":{"node":"z"}})",
           "application/merge-patch+json");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body["spec"]["node"], "z");
  EXPECT_EQ(Call("DELETE", std::string(kPvbs) + "/real?dryRun=All").status, 200);
  EXPECT_EQ(server_->resource_version(), rv1);
  EXPECT_EQ(rv1, rv0 + 1);
  EXPECT_EQ(server_->Get("podvolumebackups", "velero", "real")->at("spec").at("node"), "n1");
}

TEST_F(KubeApiServerTest, DeleteHonoursFinalizers) {
  json obj = Pvb("pvb-1");
  obj["metadata"]["finalizers"] = {"velero.io/test"};
  ASSERT_TRUE(server_->Put("podvolumebackups", obj).ok());
  WatchReader watch(server_->port(), std::string(kPvbs) + "?watch=true&resourceVersion=" +
                                         std::to_string(server_->resource_version()));
  ASSERT_TRUE(server_->WaitForWatches(1, 10s));

  const std::string url = std::string(kPvbs) + "/pvb-1";
  HttpReply r = Call("DELETE", url, R"({"propagationPolicy":"Background"})");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_TRUE(r.body["metadata"].contains("deletionTimestamp"));
  Result<json> still = server_->Get("podvolumebackups", "velero", "pvb-1");
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE((*still)["metadata"].contains("deletionTimestamp"));

  // Emptying the finalizers completes the deletion.
  r = Call("PATCH", url, R"({"metadata":{"finalizers":null}})", "application/merge-patch+json");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(server_->Get("podvolumebackups", "velero", "pvb-1").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(Brief(watch.Next()), "MODIFIED pvb-1");
  EXPECT_EQ(Brief(watch.Next()), "DELETED pvb-1");

  // Preconditions and a second delete.
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-2")).ok());
  r = Call("DELETE", std::string(kPvbs) + "/pvb-2", R"({"preconditions":{"resourceVersion":"1"}})");
  EXPECT_EQ(r.status, 409);
  EXPECT_THAT(r.body["message"].get<std::string>(), HasSubstr("Precondition failed"));
  EXPECT_TRUE(server_->Delete(kube::kPodVolumeBackups, "velero", "pvb-2").ok());
  EXPECT_EQ(server_->Delete("podvolumebackups", "velero", "pvb-2").code(), StatusCode::kNotFound);
  EXPECT_EQ(Brief(watch.Next()), "ADDED pvb-2");
  EXPECT_EQ(Brief(watch.Next()), "DELETED pvb-2");
}

TEST_F(KubeApiServerTest, ListPagesWithContinue) {
  for (const char* name : {"e", "d", "c", "b", "a"}) {
    ASSERT_TRUE(server_->Put("podvolumebackups", Pvb(name)).ok());
  }
  HttpReply r = Call("GET", std::string(kPvbs) + "?limit=2");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["kind"], "PodVolumeBackupList");
  EXPECT_EQ(r.body["apiVersion"], "velero.io/v1");
  const std::string list_rv = r.body["metadata"]["resourceVersion"];
  EXPECT_EQ(list_rv, std::to_string(server_->resource_version()));
  EXPECT_EQ(r.body["metadata"]["remainingItemCount"], 3);
  std::vector<std::string> names;
  for (int page = 0; page < 5; ++page) {
    for (const json& item : r.body["items"]) names.push_back(item["metadata"]["name"]);
    EXPECT_EQ(r.body["metadata"]["resourceVersion"], list_rv);
    if (!r.body["metadata"].contains("continue")) break;
    ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("z-new")).ok());  // a change between pages
    r = Call("GET", std::string(kPvbs) +
                        "?limit=2&continue=" + r.body["metadata"]["continue"].get<std::string>());
    ASSERT_EQ(r.status, 200) << r.raw;
  }
  // Later pages show the objects as they are now (not a snapshot).
  EXPECT_EQ(names, (Names{"a", "b", "c", "d", "e", "z-new"}));
  EXPECT_EQ(Call("GET", std::string(kPvbs) + "?limit=2&continue=zz").status, 400);
}

TEST_F(KubeApiServerTest, WatchFromAResourceVersionAndFromZero) {
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("a")).ok());
  const int64_t rv = server_->resource_version();
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("b")).ok());
  json a = Pvb("a");
  a["status"] = {{"phase", "Completed"}};
  ASSERT_TRUE(server_->Put("podvolumebackups", a).ok());
  json elsewhere = Pvb("x");
  elsewhere["metadata"]["namespace"] = "other";
  ASSERT_TRUE(server_->Put("podvolumebackups", elsewhere).ok());
  // Another type in the same namespace: not part of this watch.
  ASSERT_TRUE(
      server_->Put("backups", {{"metadata", {{"name", "b"}, {"namespace", "velero"}}}}).ok());

  {
    WatchReader from_rv(server_->port(), std::string(kPvbs) + "?watch=1&resourceVersion=" +
                                             std::to_string(rv) + "&timeoutSeconds=1");
    EXPECT_EQ(Brief(from_rv.Next()), "ADDED b");
    std::optional<json> e = from_rv.Next();
    EXPECT_EQ(Brief(e), "MODIFIED a");
    EXPECT_EQ((*e)["object"]["status"]["phase"], "Completed");
    EXPECT_EQ(Brief(from_rv.Next()), "<none>");  // the stream ends after timeoutSeconds
    EXPECT_TRUE(from_rv.WaitDone(10s));
    EXPECT_TRUE(from_rv.clean_end());
    EXPECT_EQ(from_rv.status(), 200);
  }
  {
    // "0": synthetic ADDED for what exists now, then live events (Python's watch=True).
    WatchReader from_zero(server_->port(), std::string(kPvbs) + "?watch=True&resourceVersion=0");
    EXPECT_EQ(Brief(from_zero.Next()), "ADDED a");
    EXPECT_EQ(Brief(from_zero.Next()), "ADDED b");
    ASSERT_TRUE(server_->WaitForWatches(1, 10s));
    ASSERT_TRUE(server_->Delete("podvolumebackups", "velero", "b").ok());
    std::optional<json> e = from_zero.Next();
    EXPECT_EQ(Brief(e), "DELETED b");
    EXPECT_EQ((*e)["object"]["metadata"]["resourceVersion"],
              std::to_string(server_->resource_version()));
    server_->DropWatches();
    EXPECT_TRUE(from_zero.WaitDone(10s));
    EXPECT_TRUE(from_zero.clean_end());
  }
  // Not a boolean Go accepts as true: a plain list.
  HttpReply r = Call("GET", std::string(kPvbs) + "?watch=yes");
  EXPECT_EQ(r.body["kind"], "PodVolumeBackupList");
}

TEST_F(KubeApiServerTest, BookmarksAndInitialEventsEnd) {
  KubeApiServerOptions options;
  options.bookmark_interval = 100ms;
  Restart(options);
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("a")).ok());
  WatchReader watch(server_->port(),
                    std::string(kPvbs) +
                        "?watch=true&allowWatchBookmarks=true&sendInitialEvents=true"
                        "&resourceVersionMatch=NotOlderThan");
  EXPECT_EQ(Brief(watch.Next()), "ADDED a");
  std::optional<json> end = watch.Next();
  ASSERT_EQ(Brief(end), "BOOKMARK " + std::to_string(server_->resource_version()));
  EXPECT_EQ((*end)["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
  EXPECT_EQ((*end)["object"]["kind"], "PodVolumeBackup");
  EXPECT_EQ((*end)["object"]["apiVersion"], "velero.io/v1");
  // Then periodic bookmarks, which carry the resourceVersion the watch has reached.
  ASSERT_TRUE(
      server_->Put("backups", {{"metadata", {{"name", "b1"}, {"namespace", "velero"}}}}).ok());
  std::optional<json> e;
  do {
    e = watch.Next();
  } while (e && (*e)["object"]["metadata"]["resourceVersion"] !=
                    std::to_string(server_->resource_version()));
  EXPECT_EQ(Brief(e), "BOOKMARK " + std::to_string(server_->resource_version()));
}

TEST_F(KubeApiServerTest, WatchSelectorsTurnLeavingIntoDeleted) {
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("a", {{"app", "web"}})).ok());
  WatchReader watch(server_->port(), std::string(kPvbs) +
                                         "?watch=true&labelSelector=app%3Dweb&resourceVersion=" +
                                         std::to_string(server_->resource_version()));
  ASSERT_TRUE(server_->WaitForWatches(1, 10s));
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("b", {{"app", "db"}})).ok());  // not seen
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("a", {{"app", "db"}})).ok());
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("b", {{"app", "web"}})).ok());
  json a = Pvb("b", {{"app", "web"}});
  a["status"] = {{"phase", "New"}};
  ASSERT_TRUE(server_->Put("podvolumebackups", a).ok());
  EXPECT_EQ(Brief(watch.Next()), "DELETED a");
  EXPECT_EQ(Brief(watch.Next()), "ADDED b");
  EXPECT_EQ(Brief(watch.Next()), "MODIFIED b");
}

TEST_F(KubeApiServerTest, TooOldResourceVersionIsExpired) {
  KubeApiServerOptions options;
  options.history_size = 3;
  Restart(options);
  const int64_t first = server_->resource_version();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("p" + std::to_string(i))).ok());
  }
  const std::string old_watch =
      std::string(kPvbs) + "?watch=true&resourceVersion=" + std::to_string(first);
  {
    WatchReader watch(server_->port(), old_watch);
    std::optional<json> e = watch.Next();
    ASSERT_EQ(Brief(e), "ERROR 410");
    EXPECT_EQ((*e)["object"]["reason"], "Expired");
    EXPECT_THAT((*e)["object"]["message"].get<std::string>(),
                HasSubstr("too old resource version: " + std::to_string(first)));
    EXPECT_TRUE(watch.WaitDone(10s));
    EXPECT_EQ(watch.status(), 200);
  }
  server_->SetExpiredAsHttp410(true);
  HttpReply r = Call("GET", old_watch);
  EXPECT_EQ(r.status, 410);
  EXPECT_EQ(r.body["reason"], "Expired");

  // Within the history: fine. After CompactHistory only the current version is.
  const int64_t now = server_->resource_version();
  {
    WatchReader watch(server_->port(), std::string(kPvbs) + "?watch=true&resourceVersion=" +
                                           std::to_string(now - 1) + "&timeoutSeconds=1");
    EXPECT_EQ(Brief(watch.Next()), "ADDED p4");
  }
  server_->CompactHistory();
  EXPECT_EQ(
      Call("GET", std::string(kPvbs) + "?watch=true&resourceVersion=" + std::to_string(now - 1))
          .status,
      410);
  WatchReader current(server_->port(),
                      std::string(kPvbs) + "?watch=true&resourceVersion=" + std::to_string(now));
  ASSERT_TRUE(server_->WaitForWatches(1, 10s));
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("p5")).ok());
  EXPECT_EQ(Brief(current.Next()), "ADDED p5");
}

TEST_F(KubeApiServerTest, DropWatchesCleanOrAborted) {
  WatchReader clean(server_->port(), std::string(kPvbs) + "?watch=true");
  ASSERT_TRUE(server_->WaitForWatches(1, 10s));
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("a")).ok());
  server_->DropWatches(WatchEnd::kClean);
  EXPECT_EQ(Brief(clean.Next()), "ADDED a");  // what happened before the drop is delivered
  ASSERT_TRUE(clean.WaitDone(10s));
  EXPECT_TRUE(clean.clean_end());

  WatchReader aborted(server_->port(), std::string(kPvbs) + "?watch=true");
  ASSERT_TRUE(server_->WaitForWatches(1, 10s));
  EXPECT_EQ(Brief(aborted.Next()), "ADDED a");
  server_->DropWatches(WatchEnd::kAbort);
  ASSERT_TRUE(aborted.WaitDone(10s));
  EXPECT_FALSE(aborted.clean_end());
  EXPECT_EQ(server_->open_watches(), 0u);
}

TEST_F(KubeApiServerTest, FaultsHoldsAndTheRequestLog) {
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("a")).ok());
  server_->FailNext("GET", "/podvolumebackups/a", 2, 503);
  server_->FailNext("PATCH", "", 1, 409, "custom conflict");
  HttpReply r = Call("GET", std::string(kPvbs) + "/a");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body["reason"], "ServiceUnavailable");
  EXPECT_EQ(Call("GET", std::string(kPvbs)).status, 200);  // not matching: served
  EXPECT_EQ(Call("GET", std::string(kPvbs) + "/a").status, 503);
  EXPECT_EQ(Call("GET", std::string(kPvbs) + "/a").status, 200);
  r = Call("PATCH", std::string(kPvbs) + "/a", R"({"spec":{"node":"x"}})",
           "application/merge-patch+json");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body["message"], "custom conflict");
  EXPECT_EQ(server_->Get("podvolumebackups", "velero", "a")->at("spec").at("node"), "n1");

  std::vector<KubeRequestRecord> log = server_->Requests();
  ASSERT_EQ(log.size(), 5u);
  EXPECT_EQ(log[4].method, "PATCH");
  EXPECT_EQ(log[4].path, std::string(kPvbs) + "/a");
  EXPECT_EQ(log[4].content_type, "application/merge-patch+json");
  EXPECT_EQ(log[4].body, R"({"spec":{"node":"x"}})");
  EXPECT_EQ(log[4].status, 409);
  EXPECT_EQ(server_->CountRequests("GET", "/podvolumebackups/a"), 3u);
  Call("GET", std::string(kPvbs) + "?limit=5&labelSelector=a%3Db");
  EXPECT_EQ(server_->Requests().back().query, "limit=5&labelSelector=a%3Db");
  server_->ClearRequests();
  EXPECT_TRUE(server_->Requests().empty());

  // A held request is answered after its delay (a lower bound; nothing else is timed).
  server_->HoldNext("GET", "/podvolumebackups/a", 1, 300ms);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Call("GET", std::string(kPvbs) + "/a").status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);

  // Held after handling: the change is visible while its answer is still on the way.
  server_->HoldNext("PATCH", "", 1, 30s, HoldPoint::kAfterHandling);
  std::future<HttpReply> patch = std::async(std::launch::async, [this] {
    return Call("PATCH", std::string(kPvbs) + "/a", R"({"spec":{"node":"held"}})",
                "application/merge-patch+json");
  });
  EXPECT_TRUE(
      server_
          ->WaitFor(
              "podvolumebackups", "velero", "a",
              [](const json* o) { return o != nullptr && o->at("spec").at("node") == "held"; }, 30s)
          .ok());
  EXPECT_EQ(patch.wait_for(0s), std::future_status::timeout);
  server_->ClearHolds();  // releases it
  EXPECT_EQ(patch.get().status, 200);
}

TEST_F(KubeApiServerTest, WaitForSeesAChangeMadeOverHttp) {
  ASSERT_TRUE(server_->Put(kube::kPodVolumeBackups, Pvb("a")).ok());
  std::future<HttpReply> patch = std::async(std::launch::async, [this] {
    return Call("PATCH", std::string(kPvbs) + "/a/status", R"({"status":{"phase":"Completed"}})",
                "application/merge-patch+json");
  });
  Result<json> done = server_->WaitFor(
      kube::kPodVolumeBackups, "velero", "a",
      [](const json* o) { return o != nullptr && o->contains("status"); }, 30s);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ((*done)["status"]["phase"], "Completed");
  EXPECT_EQ(patch.get().status, 200);

  Result<json> timeout = server_->WaitFor(
      "podvolumebackups", "velero", "a", [](const json* o) { return o == nullptr; }, 50ms);
  EXPECT_EQ(timeout.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(timeout.status().message(), HasSubstr("Completed"));      // its last state
  ASSERT_TRUE(server_->Delete("podvolumebackup", "velero", "a").ok());  // by singular name
  EXPECT_TRUE(
      server_
          ->WaitFor(
              "PodVolumeBackup", "velero", "a", [](const json* o) { return o == nullptr; }, 1s)
          .ok());
}

TEST_F(KubeApiServerTest, BearerToken) {
  KubeApiServerOptions options;
  options.bearer_token = "t0ken";
  Restart(options);
  HttpReply r = Call("GET", kPvbs);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.body["reason"], "Unauthorized");
  EXPECT_EQ(Call("GET", kPvbs, "", "", {{"Authorization", "Bearer wrong"}}).status, 401);
  EXPECT_EQ(Call("GET", kPvbs, "", "", {{"Authorization", "Bearer t0ken"}}).status, 200);
  server_->SetBearerToken("");
  EXPECT_EQ(Call("GET", kPvbs).status, 200);
}

TEST_F(KubeApiServerTest, DiscoveryOpenApiAndVersion) {
  const std::string aggregated =
      "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
      "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
      "application/json";
  HttpReply r = Call("GET", "/apis", "", "", {{"Accept", aggregated}});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
  bool found = false;
  for (const json& g : r.body["items"]) {
    if (g["metadata"]["name"] != "velero.io") continue;
    for (const json& res : g["versions"][0]["resources"]) {
      if (res["resource"] != "podvolumebackups") continue;
      found = true;
      EXPECT_EQ(res["scope"], "Namespaced");
      EXPECT_EQ(res["responseKind"]["kind"], "PodVolumeBackup");
    }
  }
  EXPECT_TRUE(found) << r.raw;
  r = Call("GET", "/api", "", "", {{"Accept", aggregated}});
  EXPECT_EQ(r.body["items"][0]["metadata"]["name"], "");

  r = Call("GET", "/api");
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body["kind"], "APIVersions");
  r = Call("GET", "/apis");
  EXPECT_EQ(r.body["kind"], "APIGroupList");
  r = Call("GET", "/apis/velero.io/v1");
  EXPECT_EQ(r.body["groupVersion"], "velero.io/v1");
  r = Call("GET", "/api/v1");
  bool pv_cluster = false;
  for (const json& res : r.body["resources"]) {
    if (res["name"] == "persistentvolumes") pv_cluster = res["namespaced"] == false;
  }
  EXPECT_TRUE(pv_cluster);

  r = Call("GET", "/openapi/v3");
  ASSERT_TRUE(r.body["paths"].contains("apis/velero.io/v1")) << r.raw;
  r = Call("GET", r.body["paths"]["apis/velero.io/v1"]["serverRelativeURL"].get<std::string>());
  EXPECT_TRUE(r.body["paths"].contains(
      "/apis/velero.io/v1/namespaces/{namespace}/podvolumebackups/{name}"));
  EXPECT_EQ(Call("GET", "/openapi/v2").status, 404);
  EXPECT_EQ(Call("GET", "/version").body["minor"], "32");
  r = Call("GET", "/apis/velero.io/v1/namespaces/velero/nosuchthings");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body["kind"], "Status");

  // A type registered later is served and discovered.
  server_->Register({"example.com", "v1", "widgets", "widget", "Widget", false, {"wd"}});
  r = Call("POST", "/apis/example.com/v1/widgets", R"({"metadata":{"name":"w1"}})");
  EXPECT_EQ(r.status, 201) << r.raw;
  EXPECT_EQ(r.body["kind"], "Widget");
  EXPECT_TRUE(server_->Get("wd", "", "w1").ok());
  EXPECT_EQ(Call("GET", "/apis/example.com/v1").body["resources"][0]["name"], "widgets");
}

TEST_F(KubeApiServerTest, ClusterScopedObjectsAndNamespaces) {
  ASSERT_TRUE(server_
                  ->Put("persistentvolumes",
                        {{"metadata", {{"name", "pv-1"}}}, {"spec", {{"capacity", "1Gi"}}}})
                  .ok());
  HttpReply r = Call("GET", "/api/v1/persistentvolumes/pv-1");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_FALSE(r.body["metadata"].contains("namespace"));
  EXPECT_EQ(r.body["kind"], "PersistentVolume");

  // Namespaces exist implicitly for GET; a stored one is listed and patchable (also /status).
  r = Call("GET", "/api/v1/namespaces/anything");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body["status"]["phase"], "Active");
  EXPECT_TRUE(Call("GET", "/api/v1/namespaces").body["items"].empty());
  r = Call("POST", "/api/v1/namespaces", R"({"metadata":{"name":"velero"}})");
  ASSERT_EQ(r.status, 201) << r.raw;
  r = Call("PATCH", "/api/v1/namespaces/velero/status", R"({"status":{"phase":"Terminating"}})",
           "application/merge-patch+json");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(server_->Get(kube::kNamespaces, "", "velero")->at("status").at("phase"), "Terminating");
  EXPECT_EQ(Call("GET", "/api/v1/namespaces").body["items"].size(), 1u);

  // A namespaced object needs its namespace: in the object for Put.
  EXPECT_EQ(server_->Put("pods", {{"metadata", {{"name", "p"}}}}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(server_->Put("nosuch", {{"metadata", {{"name", "p"}}}}).status().code(),
            StatusCode::kNotFound);
}

TEST_F(KubeApiServerTest, DestructorClosesIdleKeptAliveConnections) {
  KubeApiServerOptions options;
  options.keep_alive_timeout = 120s;
  Restart(options);
  httplib::Client cli("127.0.0.1", server_->port());
  cli.set_keep_alive(true);
  ASSERT_TRUE(cli.Get("/version"));  // the connection now idles in a server worker
  const auto start = std::chrono::steady_clock::now();
  server_.reset();
  // Far below the keep-alive timeout the destructor would otherwise wait out.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 60s);
}

}  // namespace
}  // namespace fsb::testing
