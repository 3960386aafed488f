// The kube test API server (tests/support/kube_api_server.h) against the real kubectl 1.32: if
// kubectl can create, apply, get, select, patch, watch and delete Velero objects through it, the
// server speaks enough of the real protocol for fsb's own client tests to mean something.
// Each test has its own server, kubeconfig and kubectl --cache-dir (discovery is cached per
// host:port). kubectl runs under `timeout` so a hang fails the test instead of blocking it.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "tests/integration/integration_util.h"
#include "tests/support/kube_api_server.h"
#include "tests/support/test_util.h"

namespace fsb::testing {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr char kPvbYaml[] = R"(apiVersion: velero.io/v1
kind: PodVolumeBackup
metadata:
  name: pvb-1
  namespace: velero
  labels:
    velero.io/backup-name: backup-1
    velero.io/pvc-uid: 1b2c3d4e
spec:
  backupStorageLocation: default
  node: node-a
  pod:
    kind: Pod
    name: web-0
    namespace: app
    uid: 7f1e2d3c-0000-4000-8000-000000000001
  repoIdentifier: s3:http://127.0.0.1:9000/velero/restic/app
  tags:
    backup: backup-1
    pod: web-0
  uploaderType: kopia
  volume: data
)";

constexpr char kBackupYaml[] = R"(apiVersion: velero.io/v1
kind: Backup
metadata:
  name: backup-1
  namespace: velero
spec:
  includedNamespaces:
  - app
  defaultVolumesToFsBackup: true
  storageLocation: default
  ttl: 720h0m0s
)";

constexpr char kDeploymentYaml[] = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: velero
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
)";

json Pvb(const std::string& name, const std::string& backup, const std::string& node) {
  return {
      {"apiVersion", "velero.io/v1"},
      {"kind", "PodVolumeBackup"},
      {"metadata",
       {{"name", name}, {"namespace", "velero"}, {"labels", {{"velero.io/backup-name", backup}}}}},
      {"spec", {{"node", node}, {"volume", "data"}, {"backupStorageLocation", "default"}}}};
}

// Names of the items of a `kubectl get -o json` list, in order.
std::vector<std::string> ItemNames(const std::string& out) {
  std::vector<std::string> names;
  json list = json::parse(out, nullptr, false);
  if (list.is_discarded() || !list.contains("items")) return {"<not a list: " + out + ">"};
  for (const json& item : list["items"]) names.push_back(item["metadata"]["name"]);
  return names;
}

// Splits a stream of concatenated (pretty-printed) JSON values, as `kubectl get -w -o json`
// prints them.
std::vector<json> SplitJsonStream(const std::string& s) {
  std::vector<json> out;
  int depth = 0;
  bool in_string = false;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{') {
      if (depth++ == 0) start = i;
    } else if (c == '}' && --depth == 0) {
      out.push_back(json::parse(s.substr(start, i - start + 1), nullptr, false));
    }
  }
  return out;
}

class KubectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kubectl_ = FindProgram("kubectl");
    if (kubectl_.empty()) {
      if (InteropRequired()) FAIL() << "kubectl is not on PATH but FSB_REQUIRE_INTEROP=1";
      GTEST_SKIP() << "kubectl is not on PATH";
    }
    StartServer({});
  }

  void StartServer(const KubeApiServerOptions& options, const std::string& kubeconfig_token = "") {
    server_.reset();
    std::string why;
    server_ = KubeApiServer::Start(options, &why);
    ASSERT_NE(server_, nullptr) << why;
    server_->WriteKubeconfig(kubeconfig_, "velero", kubeconfig_token);
  }

  RunResult Kubectl(std::vector<std::string> args, const std::string& kubeconfig = "") {
    std::vector<std::string> argv = {"timeout",
                                     "60",
                                     kubectl_,
                                     "--kubeconfig",
                                     kubeconfig.empty() ? kubeconfig_.string() : kubeconfig,
                                     "--cache-dir",
                                     (dir_.path() / "cache").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {"HOME=" + dir_.str()});
  }

  std::string WriteFile(const std::string& name, const std::string& content) {
    const std::filesystem::path p = dir_.path() / name;
    WriteStringToFile(p, content);
    return p.string();
  }

  TempDir dir_;
  std::filesystem::path kubeconfig_ = dir_.path() / "kubeconfig";
  std::string kubectl_;
  std::unique_ptr<KubeApiServer> server_;
};

TEST_F(KubectlTest, ApplyCreatesThenPatchesWithMergePatch) {
  const std::string pvb = WriteFile("pvb.yaml", kPvbYaml);
  RunResult r = Kubectl({"apply", "-f", pvb});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("podvolumebackup.velero.io/pvb-1 created"));
  Result<json> stored = server_->Get("podvolumebackups", "velero", "pvb-1");
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ((*stored)["spec"]["pod"]["name"], "web-0");
  EXPECT_EQ((*stored)["spec"]["uploaderType"], "kopia");
  EXPECT_EQ((*stored)["metadata"]["generation"], 1);
  EXPECT_FALSE((*stored)["metadata"]["uid"].get<std::string>().empty());
  EXPECT_TRUE((*stored)["metadata"]["annotations"].contains(
      "kubectl.kubernetes.io/last-applied-configuration"));
  EXPECT_EQ(server_->CountRequests("POST", "/apis/velero.io/v1/namespaces/velero/podvolumebackups"),
            1u);

  // The same file again: nothing to do.
  r = Kubectl({"apply", "-f", pvb});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("pvb-1 unchanged"));
  EXPECT_EQ(server_->CountRequests("PATCH", "/podvolumebackups/pvb-1"), 0u);

  // A changed spec: kubectl computes a JSON merge patch for a custom resource.
  std::string changed = kPvbYaml;
  changed.replace(changed.find("volume: data"), 12, "volume: logs");
  r = Kubectl({"apply", "-f", WriteFile("pvb2.yaml", changed)});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("pvb-1 configured"));
  bool saw_patch = false;
  for (const KubeRequestRecord& req : server_->Requests()) {
    if (req.method != "PATCH") continue;
    saw_patch = true;
    EXPECT_EQ(req.path, "/apis/velero.io/v1/namespaces/velero/podvolumebackups/pvb-1");
    EXPECT_EQ(req.content_type, "application/merge-patch+json");
    EXPECT_THAT(req.query, HasSubstr("fieldManager=kubectl-client-side-apply"));
    EXPECT_EQ(req.status, 200);
  }
  EXPECT_TRUE(saw_patch);
  stored = server_->Get("podvolumebackups", "velero", "pvb-1");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ((*stored)["spec"]["volume"], "logs");
  EXPECT_EQ((*stored)["metadata"]["generation"], 2);

  // A Backup too.
  r = Kubectl({"apply", "-f", WriteFile("backup.yaml", kBackupYaml)});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("backup.velero.io/backup-1 created"));
  stored = server_->Get("backups", "velero", "backup-1");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ((*stored)["spec"]["defaultVolumesToFsBackup"], true);
  EXPECT_EQ((*stored)["spec"]["includedNamespaces"], json::array({"app"}));
}

TEST_F(KubectlTest, GetListsByNameLabelAndFieldSelector) {
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-a1", "backup-a", "node-a")).ok());
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-a2", "backup-a", "node-b")).ok());
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-b1", "backup-b", "node-a")).ok());
  json other = Pvb("pvb-x", "backup-a", "node-a");
  other["metadata"]["namespace"] = "other";
  ASSERT_TRUE(server_->Put("podvolumebackups", other).ok());

  RunResult r = Kubectl({"get", "podvolumebackups", "-n", "velero", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ItemNames(r.out), (std::vector<std::string>{"pvb-a1", "pvb-a2", "pvb-b1"}));
  EXPECT_EQ(json::parse(r.out)["kind"], "List");

  r = Kubectl({"get", "podvolumebackup", "pvb-a2", "-n", "velero", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const json one = json::parse(r.out, nullptr, false);
  EXPECT_EQ(one["metadata"]["name"], "pvb-a2");
  EXPECT_EQ(one["spec"]["node"], "node-b");

  r = Kubectl(
      {"get", "podvolumebackups.velero.io", "-o", "json", "-l", "velero.io/backup-name=backup-a"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ItemNames(r.out), (std::vector<std::string>{"pvb-a1", "pvb-a2"}));

  r = Kubectl(
      {"get", "podvolumebackups", "-o", "json", "-l", "velero.io/backup-name notin (backup-a)"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ItemNames(r.out), (std::vector<std::string>{"pvb-b1"}));

  r = Kubectl({"get", "podvolumebackups", "-o", "json", "--field-selector", "spec.node=node-a"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ItemNames(r.out), (std::vector<std::string>{"pvb-a1", "pvb-b1"}));

  r = Kubectl({"get", "podvolumebackups", "-A", "-o", "json", "--field-selector",
               "spec.node=node-a,metadata.namespace!=velero"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ItemNames(r.out), (std::vector<std::string>{"pvb-x"}));

  // The default (table) output: kubectl asks for a Table, gets a list and prints it itself.
  r = Kubectl({"get", "podvolumebackups", "-l", "velero.io/backup-name=backup-b"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("NAME"));
  EXPECT_THAT(r.out, HasSubstr("pvb-b1"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("pvb-a1")));
}

TEST_F(KubectlTest, PatchMergeStatusSubresourceAndJsonPatch) {
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-1", "backup-1", "node-a")).ok());

  RunResult r = Kubectl({"patch", "podvolumebackup", "pvb-1", "--type", "merge", "-p",
                         R"({"spec":{"cancel":true},"metadata":{"labels":{"x":"y"}}})"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("podvolumebackup.velero.io/pvb-1 patched"));

  r = Kubectl({"patch", "podvolumebackups.velero.io", "pvb-1", "--subresource=status", "--type",
               "merge", "-p", R"({"status":{"phase":"InProgress","progress":{"totalBytes":10}}})"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);

  r = Kubectl({"patch", "podvolumebackup", "pvb-1", "--type", "json", "-p",
               R"([{"op":"replace","path":"/status/phase","value":"Completed"},)"
               R"({"op":"remove","path":"/metadata/labels/x"}])"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);

  Result<json> stored = server_->Get("podvolumebackups", "velero", "pvb-1");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ((*stored)["spec"]["cancel"], true);
  EXPECT_EQ((*stored)["status"]["phase"], "Completed");
  EXPECT_EQ((*stored)["status"]["progress"]["totalBytes"], 10);
  EXPECT_FALSE((*stored)["metadata"]["labels"].contains("x"));
  EXPECT_EQ((*stored)["metadata"]["generation"], 2);  // only the spec patch counts

  std::vector<std::string> content_types;
  for (const KubeRequestRecord& req : server_->Requests()) {
    if (req.method == "PATCH") content_types.push_back(req.path + " " + req.content_type);
  }
  const std::string obj = "/apis/velero.io/v1/namespaces/velero/podvolumebackups/pvb-1";
  EXPECT_EQ(content_types, (std::vector<std::string>{
                               obj + " application/merge-patch+json",
                               obj + "/status application/merge-patch+json",
                               obj + " application/json-patch+json",
                           }));

  // A failing JSON patch test operation is refused and changes nothing.
  const int64_t rv = server_->resource_version();
  r = Kubectl({"patch", "podvolumebackup", "pvb-1", "--type", "json", "-p",
               R"([{"op":"test","path":"/status/phase","value":"Failed"}])"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("is invalid"));
  EXPECT_EQ(server_->resource_version(), rv);
}

TEST_F(KubectlTest, CreateOfExistingObjectIsAlreadyExists) {
  const std::string pvb = WriteFile("pvb.yaml", kPvbYaml);
  RunResult r = Kubectl({"create", "-f", pvb});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("podvolumebackup.velero.io/pvb-1 created"));
  // Server-side field validation was asked for (the OpenAPI document says the server does it).
  bool strict = false;
  for (const KubeRequestRecord& req : server_->Requests()) {
    if (req.method == "POST")
      strict = req.query.find("fieldValidation=Strict") != std::string::npos;
  }
  EXPECT_TRUE(strict);

  r = Kubectl({"create", "-f", pvb});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("Error from server (AlreadyExists)"));
  EXPECT_THAT(r.err, HasSubstr("podvolumebackups.velero.io \"pvb-1\" already exists"));
}

TEST_F(KubectlTest, WatchPrintsEventsInOrderAndEndsWithTheStream) {
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-w", "backup-1", "node-a")).ok());
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-other", "backup-1", "node-a")).ok());
  std::future<RunResult> watch = std::async(std::launch::async, [this] {
    return Kubectl({"get", "podvolumebackups", "pvb-w", "-n", "velero", "-w",
                    "--output-watch-events", "-o", "json"});
  });
  ASSERT_TRUE(server_->WaitForWatches(1, 30s)) << "kubectl did not start watching";

  json pvb = Pvb("pvb-w", "backup-1", "node-a");
  pvb["status"] = {{"phase", "InProgress"}};
  ASSERT_TRUE(server_->Put("podvolumebackups", pvb).ok());
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-other", "backup-2", "node-a")).ok());
  RunResult r = Kubectl({"patch", "podvolumebackup", "pvb-w", "--subresource=status", "--type",
                         "merge", "-p", R"({"status":{"phase":"Completed"}})"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  r = Kubectl({"delete", "podvolumebackup", "pvb-w"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const int64_t last_rv = server_->resource_version();
  server_->DropWatches(WatchEnd::kClean);

  ASSERT_EQ(watch.wait_for(60s), std::future_status::ready);
  r = watch.get();
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::vector<std::string> seen;
  int64_t prev_rv = 0;
  for (const json& e : SplitJsonStream(r.out)) {
    ASSERT_TRUE(e.is_object()) << r.out;
    const json& obj = e["object"];
    seen.push_back(e.value("type", "?") + " " + obj["metadata"]["name"].get<std::string>() + " " +
                   obj.value("status", json::object()).value("phase", "-"));
    const int64_t rv = std::stoll(obj["metadata"]["resourceVersion"].get<std::string>());
    EXPECT_GT(rv, prev_rv);
    prev_rv = rv;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"ADDED pvb-w -", "MODIFIED pvb-w InProgress",
                                            "MODIFIED pvb-w Completed", "DELETED pvb-w Completed"}))
      << r.out;
  EXPECT_EQ(prev_rv, last_rv);
}

TEST_F(KubectlTest, DeleteThenGetIsNotFound) {
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-1", "backup-1", "node-a")).ok());
  RunResult r = Kubectl({"delete", "podvolumebackup", "pvb-1", "-n", "velero"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("podvolumebackup.velero.io \"pvb-1\" deleted"));
  EXPECT_EQ(server_->Get("podvolumebackups", "velero", "pvb-1").status().code(),
            StatusCode::kNotFound);

  r = Kubectl({"get", "podvolumebackup", "pvb-1", "-n", "velero"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("Error from server (NotFound): podvolumebackups.velero.io "
                               "\"pvb-1\" not found"));
}

// kubectl sends a bearer token only over https (over http it sends none), hence tls.
TEST_F(KubectlTest, WrongBearerTokenIsUnauthorized) {
  KubeApiServerOptions options;
  options.tls = true;
  options.bearer_token = "right-token";
  StartServer(options, "right-token");
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-1", "backup-1", "node-a")).ok());

  RunResult r = Kubectl({"get", "podvolumebackups", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ItemNames(r.out), (std::vector<std::string>{"pvb-1"}));

  const std::string wrong = (dir_.path() / "wrong-kubeconfig").string();
  server_->WriteKubeconfig(wrong, "velero", "wrong-token");
  r = Kubectl({"get", "podvolumebackups", "-o", "json"}, wrong);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  // client-go's wording for a 401.
  EXPECT_THAT(r.err, HasSubstr("You must be logged in to the server"));
  bool saw_401 = false;
  for (const KubeRequestRecord& req : server_->Requests()) saw_401 |= req.status == 401;
  EXPECT_TRUE(saw_401);
}

TEST_F(KubectlTest, ServerDryRunDoesNotPersist) {
  RunResult r =
      Kubectl({"apply", "-f", WriteFile("deploy.yaml", kDeploymentYaml), "--dry-run=server"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("deployment.apps/web created (server dry run)"));
  EXPECT_EQ(server_->Get("deployments", "velero", "web").status().code(), StatusCode::kNotFound);

  // An existing custom resource: the dry-run merge patch is answered but not stored.
  r = Kubectl({"apply", "-f", WriteFile("pvb.yaml", kPvbYaml)});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const int64_t rv = server_->resource_version();
  std::string changed = kPvbYaml;
  changed.replace(changed.find("node: node-a"), 12, "node: node-z");
  r = Kubectl({"apply", "-f", WriteFile("pvb2.yaml", changed), "--dry-run=server"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("pvb-1 configured (server dry run)"));
  EXPECT_EQ(server_->resource_version(), rv);
  Result<json> stored = server_->Get("podvolumebackups", "velero", "pvb-1");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ((*stored)["spec"]["node"], "node-a");
}

TEST_F(KubectlTest, AllNamespacesPodsByNodeName) {
  const auto pod = [](const std::string& ns, const std::string& name, const std::string& node) {
    return json{
        {"apiVersion", "v1"},
        {"kind", "Pod"},
        {"metadata", {{"name", name}, {"namespace", ns}}},
        {"spec", {{"nodeName", node}, {"containers", {{{"name", "c"}, {"image", "busybox"}}}}}}};
  };
  ASSERT_TRUE(server_->Put("pods", pod("app", "web-0", "node-a")).ok());
  ASSERT_TRUE(server_->Put("pods", pod("app", "web-1", "node-b")).ok());
  ASSERT_TRUE(server_->Put("pods", pod("db", "pg-0", "node-a")).ok());
  ASSERT_TRUE(server_->Put("pods", pod("velero", "node-agent-x", "node-b")).ok());

  RunResult r =
      Kubectl({"get", "pods", "-A", "--field-selector", "spec.nodeName=node-a", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ItemNames(r.out), (std::vector<std::string>{"web-0", "pg-0"}));
  bool all_namespaces = false;
  for (const KubeRequestRecord& req : server_->Requests()) {
    all_namespaces |= req.method == "GET" && req.path == "/api/v1/pods" &&
                      req.query.find("fieldSelector=spec.nodeName%3Dnode-a") != std::string::npos;
  }
  EXPECT_TRUE(all_namespaces);

  r = Kubectl({"get", "po", "-n", "app", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ItemNames(r.out), (std::vector<std::string>{"web-0", "web-1"}));
}

TEST_F(KubectlTest, HttpsWithTheServersCa) {
  KubeApiServerOptions options;
  options.tls = true;
  options.bearer_token = "tls-token";
  StartServer(options, "tls-token");
  ASSERT_THAT(server_->url(), ::testing::StartsWith("https://127.0.0.1:"));
  ASSERT_TRUE(server_->Put("podvolumebackups", Pvb("pvb-1", "backup-1", "node-a")).ok());

  RunResult r = Kubectl({"get", "podvolumebackups", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ItemNames(r.out), (std::vector<std::string>{"pvb-1"}));
  r = Kubectl({"apply", "-f", WriteFile("backup.yaml", kBackupYaml)});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_TRUE(server_->Get("backups", "velero", "backup-1").ok());
}

}  // namespace
}  // namespace fsb::testing
