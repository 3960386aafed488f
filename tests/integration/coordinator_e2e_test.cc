// End-to-end tests of `fsb coordinator` (coordinator/coordinator.h): the real fsb binary runs as
// the coordinator and as two node agents (nodes A and B, each with its own kubelet pods
// directory) against the project's Kubernetes test API server, with s3rver as the backup storage
// location; the real restic reads what was backed up. The test plays the kubelet and the
// scheduler: it creates the volume directories and, on restore, puts the recreated pods on node B
// with their restore-wait init container running.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <regex>
#include <set>
#include <thread>

#include "coordinator/records.h"
#include "kube/resource.h"
#include "repo/backend/object_store.h"
#include "repo/backend/open.h"
#include "tests/integration/integration_util.h"
#include "tests/support/child_process.h"
#include "tests/support/kube_api_server.h"
#include "tests/support/s3_server.h"
#include "tests/support/test_util.h"
#include "tests/support/tree_compare.h"
#include "tests/support/tree_gen.h"

namespace fsb::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr char kNs[] = "velero";
constexpr char kAppNs[] = "app-ns";
constexpr char kPassword[] = "static-passw0rd";
constexpr auto kWait = std::chrono::seconds(40);

std::string Phase(const json* o) {
  if (!o || !o->contains("status") || !(*o)["status"].is_object()) return "";
  return (*o)["status"].value("phase", "");
}

fs::path EmptyDirPath(const fs::path& pods, const std::string& uid, const std::string& vol) {
  return pods / uid / "volumes" / "kubernetes.io~empty-dir" / vol;
}
fs::path CsiPath(const fs::path& pods, const std::string& uid, const std::string& pv) {
  return pods / uid / "volumes" / "kubernetes.io~csi" / pv / "mount";
}

class CoordinatorE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (FindProgram("restic").empty()) {
      if (InteropRequired()) FAIL() << "restic not found";
      GTEST_SKIP() << "restic not found";
    }
    std::string why;
    s3_ = SharedS3Server(&why);
    if (!s3_) FSB_S3_SKIP_OR_FAIL(why);
    KubeApiServerOptions so;
    so.bookmark_interval = std::chrono::milliseconds(500);
    server_ = KubeApiServer::Start(so, &why);
    ASSERT_TRUE(server_) << why;
    kubeconfig_ = dir_.path() / "kubeconfig";
    server_->WriteKubeconfig(kubeconfig_, kNs);
    pods_a_ = dir_.path() / "node-a" / "pods";
    pods_b_ = dir_.path() / "node-b" / "pods";
    fs::create_directories(pods_a_);
    fs::create_directories(pods_b_);
    bucket_ = UniqueBucketName();
    {
      // Velero's BSLs name an existing bucket.
      repo::BackendOptions bo;
      bo.env = [](const std::string& n) -> std::optional<std::string> {
        if (n == "AWS_ACCESS_KEY_ID" || n == "AWS_SECRET_ACCESS_KEY") return "S3RVER";
        return std::nullopt;
      };
      auto be = repo::OpenBackend(fmt::format("s3:{}/{}", s3_->url(), bucket_), true, bo);
      ASSERT_TRUE(be.ok()) << be.status().ToString();
      Status created = (*be)->Create();
      ASSERT_TRUE(created.ok()) << created.ToString();
    }
    Put(kube::kNamespaces, {{"metadata", {{"name", kNs}}}});
    Put(kube::kNamespaces, {{"metadata", {{"name", kAppNs}}}});
    Put(kube::kSecrets, {{"metadata", {{"name", "cloud-credentials"}, {"namespace", kNs}}},
                         {"data",
                          {{"cloud", Base64Encode(ToBytes("[default]\naws_access_key_id = S3RVER\n"
                                                          "aws_secret_access_key = S3RVER\n"))}}}});
    Put(kube::kBackupStorageLocations,
        {{"metadata", {{"name", "default"}, {"namespace", kNs}}},
         {"spec",
          {{"provider", "aws"},
           {"default", true},
           {"objectStorage", {{"bucket", bucket_}, {"prefix", "cluster1"}}},
           {"credential", {{"name", "cloud-credentials"}, {"key", "cloud"}}},
           {"config", {{"s3Url", s3_->url()}, {"region", "us-east-1"}}}}}});
    // Velero's node-agent pods: the coordinator checks one runs on a pod's node (§8.2).
    for (const char* node : {"node-a", "node-b"}) {
      Put(kube::kPods,
          {{"metadata",
            {{"name", std::string("node-agent-") + node},
             {"namespace", kNs},
             {"labels", {{"role", "node-agent"}, {"name", "node-agent"}}}}},
           {"spec",
            {{"nodeName", node}, {"containers", {{{"name", "node-agent"}, {"image", "fsb"}}}}}},
           {"status", {{"phase", "Running"}}}});
    }
  }

  void TearDown() override {
    if (HasFailure()) {
      for (auto& [name, p] : procs_) {
        if (p) std::cerr << "---- " << name << " log ----\n" << p->log() << "\n";
      }
    }
  }

  void Put(const kube::Resource& r, json obj) {
    Result<json> res = server_->Put(r, std::move(obj));
    ASSERT_TRUE(res.ok()) << res.status().ToString();
  }

  ChildProcess* StartAgent(const std::string& node, const fs::path& pods) {
    std::vector<std::string> argv = {
        FsbBinary(),
        "agent",
        "--node-name=" + node,
        "--namespace=" + std::string(kNs),
        "--host-pods=" + pods.string(),
        "--kubeconfig=" + kubeconfig_.string(),
        "--metrics-address=127.0.0.1:0",
        "--progress-interval=1s",
        "--resync=2s",
        "--scratch-dir=" + (dir_.path() / ("scratch-" + node)).string()};
    procs_["agent-" + node] =
        ChildProcess::Start(argv, {}, dir_.path() / ("agent-" + node + ".log"));
    return procs_["agent-" + node].get();
  }

  ChildProcess* StartCoordinator(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {FsbBinary(),
                                     "coordinator",
                                     "--namespace=" + std::string(kNs),
                                     "--kubeconfig=" + kubeconfig_.string(),
                                     "--resync=2s",
                                     "--scratch-dir=" + (dir_.path() / "scratch-coord").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const std::string name = "coordinator-" + std::to_string(++coordinators_);
    procs_[name] = ChildProcess::Start(argv, {}, dir_.path() / (name + ".log"));
    return procs_[name].get();
  }

  // A pod in kAppNs with `volumes`, each mounted by its container unless listed in `unmounted`.
  std::string AddPod(const std::string& name, const std::string& node, const json& volumes,
                     json annotations = json::object(), const std::string& phase = "Running",
                     const std::set<std::string>& unmounted = {}) {
    json mounts = json::array();
    for (const json& v : volumes) {
      const std::string vn = v["name"];
      if (!unmounted.count(vn)) mounts.push_back({{"name", vn}, {"mountPath", "/mnt/" + vn}});
    }
    json pod = {{"metadata",
                 {{"name", name},
                  {"namespace", kAppNs},
                  {"labels", {{"app", name}}},
                  {"annotations", annotations}}},
                {"spec",
                 {{"nodeName", node},
                  {"volumes", volumes},
                  {"containers",
                   {{{"name", "app"},
                     {"image", "busybox"},
                     {"volumeMounts", mounts},
                     {"securityContext", {{"runAsUser", 2000}}}}}}}},
                {"status", {{"phase", phase}}}};
    Result<json> stored = server_->Put(kube::kPods, pod);
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    return stored.ok() ? (*stored)["metadata"].value("uid", "") : "";
  }

  std::string AddCsiClaim(const std::string& claim, const std::string& pv) {
    Result<json> pvc =
        server_->Put(kube::kPersistentVolumeClaims,
                     {{"metadata",
                       {{"name", claim},
                        {"namespace", kAppNs},
                        {"annotations", {{"pv.kubernetes.io/bind-completed", "yes"}}}}},
                      {"spec", {{"volumeName", pv}, {"accessModes", {"ReadWriteMany"}}}},
                      {"status", {{"phase", "Bound"}}}});
    EXPECT_TRUE(pvc.ok());
    Put(kube::kPersistentVolumes,
        {{"metadata", {{"name", pv}}},
         {"spec", {{"csi", {{"driver", "csi.example.com"}, {"volumeHandle", pv}}}}}});
    return pvc.ok() ? (*pvc)["metadata"].value("uid", "") : "";
  }

  json Backup(const std::string& name, json spec) {
    return {
        {"metadata",
         {{"name", name}, {"namespace", kNs}, {"labels", {{"fsb.velero.io/coordinator", "true"}}}}},
        {"spec", spec}};
  }

  json WaitPhase(const kube::Resource& r, const std::string& name, std::set<std::string> phases,
                 std::chrono::milliseconds timeout = kWait) {
    Result<json> o = server_->WaitFor(
        r, kNs, name, [&](const json* obj) { return phases.count(Phase(obj)) > 0; }, timeout);
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    return o.ok() ? *o : json();
  }

  std::vector<json> PvbsOf(const json& backup) {
    return server_->List(kube::kPodVolumeBackups, kNs,
                         "velero.io/backup-uid=" + backup["metadata"].value("uid", ""));
  }

  std::string RepoUrl() const {
    return fmt::format("s3:{}/{}/cluster1/restic/{}", s3_->url(), bucket_, kAppNs);
  }

  RunResult Restic(std::vector<std::string> args) {
    const fs::path pw = dir_.path() / "password";
    if (!fs::exists(pw)) WriteStringToFile(pw, kPassword);
    std::vector<std::string> argv = {"restic", "-r", RepoUrl(), "--no-cache"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {"AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=S3RVER",
                             "RESTIC_PASSWORD_FILE=" + pw.string()});
  }

  std::unique_ptr<repo::ObjectStore> Records() {
    repo::BackendOptions bo;
    bo.env = [](const std::string& n) -> std::optional<std::string> {
      if (n == "AWS_ACCESS_KEY_ID" || n == "AWS_SECRET_ACCESS_KEY") return "S3RVER";
      return std::nullopt;
    };
    auto store = repo::OpenObjectStore(fmt::format("s3:{}/{}/cluster1", s3_->url(), bucket_), bo);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(*store) : nullptr;
  }

  TempDir dir_;
  S3Server* s3_ = nullptr;
  std::unique_ptr<KubeApiServer> server_;
  fs::path kubeconfig_, pods_a_, pods_b_;
  std::string bucket_;
  std::map<std::string, std::unique_ptr<ChildProcess>> procs_;
  int coordinators_ = 0;
};

TEST_F(CoordinatorE2eTest, BackupThenRestoreOntoAnotherNode) {
  // web (node A): emptyDir, CSI PVC, hostPath (skipped), an annotation-excluded emptyDir, a
  // secret (skipped), an unmounted emptyDir (skipped).
  const std::string pvc_uid = AddCsiClaim("data", "pv-data");
  const std::string uid_web =
      AddPod("web", "node-a",
             json::array({{{"name", "cache"}, {"emptyDir", json::object()}},
                          {{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "data"}}}},
                          {{"name", "host"}, {"hostPath", {{"path", "/var/log"}}}},
                          {{"name", "scratch"}, {"emptyDir", json::object()}},
                          {{"name", "token"}, {"secret", {{"secretName", "s"}}}},
                          {{"name", "spare"}, {"emptyDir", json::object()}}}),
             {{"backup.velero.io/backup-volumes-excludes", "scratch"}}, "Running", {"spare"});
  // db (node B): one emptyDir. worker (node A): shares the PVC (backed up once). pending: not
  // running (skipped). other-ns pod: not in the backup's namespaces.
  const std::string uid_db =
      AddPod("db", "node-b", json::array({{{"name", "db-data"}, {"emptyDir", json::object()}}}));
  AddPod("worker", "node-a",
         json::array({{{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "data"}}}}}));
  AddPod("pending", "", json::array({{{"name", "p"}, {"emptyDir", json::object()}}}),
         json::object(), "Pending");
  const fs::path cache = EmptyDirPath(pods_a_, uid_web, "cache");
  const fs::path data = CsiPath(pods_a_, uid_web, "pv-data");
  const fs::path dbdata = EmptyDirPath(pods_b_, uid_db, "db-data");
  fs::create_directories(cache);
  MakeRichTree(cache, 3);
  fs::create_directories(data);
  MakeManySmallFiles(data, 40, 4);
  fs::create_directories(dbdata);
  WriteStringToFile(dbdata / "table.db", AsString(SeededRandomBytes(5, 1 << 20)));
  fs::create_directories(EmptyDirPath(pods_a_, uid_web, "scratch"));

  ASSERT_TRUE(StartAgent("node-a", pods_a_));
  ASSERT_TRUE(StartAgent("node-b", pods_b_));
  ASSERT_TRUE(StartCoordinator());
  Put(kube::kBackups, Backup("bk-1", {{"includedNamespaces", {kAppNs}},
                                      {"defaultVolumesToFsBackup", true},
                                      {"ttl", "24h0m0s"}}));
  json b = WaitPhase(kube::kBackups, "bk-1",
                     {"Completed", "PartiallyFailed", "Failed", "FailedValidation"});
  ASSERT_EQ(Phase(&b), "Completed") << b.dump(2);
  const json& st = b["status"];
  EXPECT_FALSE(st.value("startTimestamp", "").empty());
  EXPECT_FALSE(st.value("completionTimestamp", "").empty());
  EXPECT_FALSE(st.value("expiration", "").empty());
  EXPECT_EQ(st["progress"].value("totalItems", 0), 3);
  EXPECT_EQ(st["progress"].value("itemsBackedUp", 0), 3);
  EXPECT_GE(st.value("warnings", 0), 2);  // hostPath, not mounted
  EXPECT_EQ(st.value("errors", -1), 0);
  const std::string skipped =
      b["metadata"]["annotations"].value("fsb.velero.io/skipped-volumes", "");
  EXPECT_THAT(skipped, HasSubstr("hostPath"));
  EXPECT_THAT(skipped, HasSubstr("backup.velero.io/backup-volumes-excludes"));
  EXPECT_THAT(skipped, HasSubstr("not mounted by any container"));
  EXPECT_THAT(skipped, HasSubstr("already backed up from another pod"));

  std::vector<json> pvbs = PvbsOf(b);
  std::set<std::string> got;
  for (const json& p : pvbs) {
    got.insert(p["spec"]["pod"].value("name", "") + "/" + p["spec"].value("volume", ""));
    EXPECT_EQ(Phase(&p), "Completed") << p.dump(2);
    EXPECT_EQ(p["metadata"].value("generateName", ""), "bk-1-");
    EXPECT_EQ(p["metadata"]["labels"].value("velero.io/backup-name", ""), "bk-1");
    EXPECT_EQ(p["metadata"]["ownerReferences"][0].value("kind", ""), "Backup");
    EXPECT_TRUE(p["metadata"]["ownerReferences"][0].value("controller", false));
    EXPECT_EQ(p["spec"].value("uploaderType", ""), "restic");
    EXPECT_EQ(p["spec"].value("repoIdentifier", ""), RepoUrl());
    EXPECT_EQ(p["spec"]["tags"].value("backup", ""), "bk-1");
  }
  EXPECT_EQ(got, (std::set<std::string>{"web/cache", "web/data", "db/db-data"}));
  for (const json& p : pvbs) {
    if (p["spec"].value("volume", "") == "data") {
      EXPECT_EQ(p["metadata"]["labels"].value("velero.io/pvc-uid", ""), pvc_uid);
      EXPECT_EQ(p["metadata"]["annotations"].value("velero.io/pvc-name", ""), "data");
      EXPECT_EQ(p["spec"].value("node", ""), "node-a");
    }
    if (p["spec"].value("volume", "") == "db-data") {
      EXPECT_EQ(p["spec"].value("node", ""), "node-b");
    }
  }
  std::vector<json> repos = server_->List(kube::kBackupRepositories, kNs);
  ASSERT_EQ(repos.size(), 1u);
  EXPECT_EQ(repos[0]["metadata"].value("name", ""), std::string(kAppNs) + "-default-restic");

  // restic reads the three snapshots from S3.
  RunResult snaps = Restic({"snapshots", "--json"});
  ASSERT_EQ(snaps.exit_code, 0) << Describe(snaps);
  EXPECT_EQ(json::parse(snaps.out).size(), 3u);
  RunResult check = Restic({"check", "--read-data"});
  EXPECT_EQ(check.exit_code, 0) << Describe(check);

  // The records in the BSL.
  std::unique_ptr<repo::ObjectStore> records = Records();
  ASSERT_TRUE(records);
  Result<json> rec = coordinator::ReadBackupRecord(*records, "bk-1");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(Phase(&*rec), "Completed");
  auto rec_pvbs = coordinator::ReadPodVolumeBackupsRecord(*records, "bk-1");
  ASSERT_TRUE(rec_pvbs.ok()) << rec_pvbs.status().ToString();
  EXPECT_EQ(rec_pvbs->size(), 3u);
  auto rec_res = coordinator::ReadResourcesRecord(*records, "bk-1");
  ASSERT_TRUE(rec_res.ok()) << rec_res.status().ToString();
  EXPECT_EQ(rec_res->size(), 3u);  // web, db, the PVC data

  // The workload is lost; a Restore brings it back.
  for (const char* p : {"web", "db", "worker"}) {
    ASSERT_TRUE(server_->Delete(kube::kPods, kAppNs, p).ok());
  }
  ASSERT_TRUE(server_->Delete(kube::kPersistentVolumeClaims, kAppNs, "data").ok());
  Put(kube::kRestores, {{"metadata",
                         {{"name", "rs-1"},
                          {"namespace", kNs},
                          {"labels", {{"fsb.velero.io/coordinator", "true"}}}}},
                        {"spec", {{"backupName", "bk-1"}}}});
  json rs = WaitPhase(kube::kRestores, "rs-1",
                      {"InProgress", "Completed", "Failed", "FailedValidation", "PartiallyFailed"});
  ASSERT_EQ(Phase(&rs), "InProgress") << rs.dump(2);
  const std::string restore_uid = rs["metadata"].value("uid", "");

  // The pods come back unscheduled with restore-wait; the "scheduler" puts them on node B.
  std::map<std::string, std::string> new_uid;
  for (const char* p : {"web", "db"}) {
    Result<json> pod = server_->WaitFor(
        kube::kPods, kAppNs, p, [](const json* o) { return o != nullptr; }, kWait);
    ASSERT_TRUE(pod.ok()) << pod.status().ToString();
    json& spec = (*pod)["spec"];
    EXPECT_FALSE(spec.contains("nodeName"));
    ASSERT_TRUE(spec.contains("initContainers"));
    const json& wait = spec["initContainers"][0];
    EXPECT_EQ(wait.value("name", ""), "restore-wait");
    EXPECT_EQ(wait.value("image", ""), "velero/velero:v1.16.2");
    EXPECT_EQ(wait["args"], json::array({restore_uid}));
    EXPECT_EQ(wait["securityContext"].value("runAsUser", 0), 2000);
    EXPECT_EQ((*pod)["metadata"]["labels"].value("velero.io/restore-name", ""), "rs-1");
    new_uid[p] = (*pod)["metadata"].value("uid", "");
    EXPECT_NE(new_uid[p], std::string(p) == "web" ? uid_web : uid_db);
  }
  Result<json> pvc = server_->Get(kube::kPersistentVolumeClaims, kAppNs, "data");
  ASSERT_TRUE(pvc.ok());
  EXPECT_FALSE((*pvc)["spec"].contains("volumeName"));
  EXPECT_FALSE((*pvc)["metadata"]["annotations"].contains("pv.kubernetes.io/bind-completed"));
  // Provisioning and scheduling: PVC data gets a new PV, both pods land on node B.
  (*pvc)["spec"]["volumeName"] = "pv-data-b";
  Put(kube::kPersistentVolumeClaims, *pvc);
  Put(kube::kPersistentVolumes,
      {{"metadata", {{"name", "pv-data-b"}}},
       {"spec", {{"csi", {{"driver", "csi.example.com"}, {"volumeHandle", "pv-data-b"}}}}}});
  const fs::path cache_b = EmptyDirPath(pods_b_, new_uid["web"], "cache");
  const fs::path data_b = CsiPath(pods_b_, new_uid["web"], "pv-data-b");
  const fs::path db_b = EmptyDirPath(pods_b_, new_uid["db"], "db-data");
  for (const fs::path& p : {cache_b, data_b, db_b}) fs::create_directories(p);
  for (const char* p : {"web", "db"}) {
    Result<json> pod = server_->Get(kube::kPods, kAppNs, p);
    ASSERT_TRUE(pod.ok());
    (*pod)["spec"]["nodeName"] = "node-b";
    (*pod)["status"] = {{"phase", "Pending"},
                        {"initContainerStatuses",
                         {{{"name", "restore-wait"}, {"state", {{"running", json::object()}}}}}}};
    Put(kube::kPods, *pod);
  }
  rs = WaitPhase(kube::kRestores, "rs-1", {"Completed", "Failed", "PartiallyFailed"});
  ASSERT_EQ(Phase(&rs), "Completed") << rs.dump(2);
  std::vector<json> pvrs =
      server_->List(kube::kPodVolumeRestores, kNs, "velero.io/restore-uid=" + restore_uid);
  ASSERT_EQ(pvrs.size(), 3u);
  for (const json& p : pvrs) {
    EXPECT_EQ(Phase(&p), "Completed") << p.dump(2);
    EXPECT_EQ(p["status"].value("node", ""), "node-b");
    EXPECT_EQ(p["spec"].value("sourceNamespace", ""), kAppNs);
    EXPECT_EQ(p["metadata"]["labels"].value("velero.io/restore-name", ""), "rs-1");
    const std::string pod = p["spec"]["pod"].value("name", "");
    EXPECT_EQ(p["metadata"]["labels"].value("velero.io/pod-uid", ""), new_uid[pod]);
    EXPECT_EQ(p["metadata"]["ownerReferences"][0].value("kind", ""), "Restore");
  }
  for (const fs::path& vol : {cache_b, data_b, db_b}) {
    EXPECT_TRUE(fs::exists(vol / ".velero" / restore_uid)) << vol;
  }
  CompareOptions co;
  co.root_metadata = false;
  co.ignore_paths = {".velero"};
  std::vector<std::string> diffs = CompareTrees(cache, cache_b, co);
  EXPECT_TRUE(diffs.empty()) << JoinDifferences(diffs);
  diffs = CompareTrees(data, data_b, co);
  EXPECT_TRUE(diffs.empty()) << JoinDifferences(diffs);
  diffs = CompareTrees(dbdata, db_b, co);
  EXPECT_TRUE(diffs.empty()) << JoinDifferences(diffs);
  EXPECT_FALSE(server_->Get(kube::kPods, kAppNs, "worker").ok());  // its PVC came from web
}

TEST_F(CoordinatorE2eTest, MalformedBackupsAndRestoresFailWithClearMessages) {
  ASSERT_TRUE(StartCoordinator());
  Put(kube::kBackups,
      Backup("bad-selector",
             {{"labelSelector",
               {{"matchExpressions", {{{"key", "app"}, {"operator", "Sometimes"}}}}}}}));
  Put(kube::kBackups, Backup("no-bsl", {{"storageLocation", "nowhere"}}));
  Put(kube::kBackups,
      Backup("overlap", {{"includedNamespaces", {"a"}}, {"excludedNamespaces", {"a"}}}));
  Put(kube::kBackupStorageLocations, {{"metadata", {{"name", "ro"}, {"namespace", kNs}}},
                                      {"spec",
                                       {{"provider", "aws"},
                                        {"accessMode", "ReadOnly"},
                                        {"objectStorage", {{"bucket", bucket_}}},
                                        {"config", {{"s3Url", s3_->url()}}}}}});
  Put(kube::kBackups, Backup("read-only", {{"storageLocation", "ro"}}));
  // Not labelled for fsb: a Velero server's; never touched.
  Put(kube::kBackups, {{"metadata", {{"name", "velero-owned"}, {"namespace", kNs}}},
                       {"spec", {{"storageLocation", "nowhere"}}}});
  Put(kube::kRestores, {{"metadata",
                         {{"name", "no-backup"},
                          {"namespace", kNs},
                          {"labels", {{"fsb.velero.io/coordinator", "true"}}}}},
                        {"spec", {{"backupName", "missing"}}}});
  const std::map<std::string, std::string> expect = {
      {"bad-selector", "\"Sometimes\" is not a valid label selector operator"},
      {"no-bsl", "a BackupStorageLocation CRD with the name specified in the backup spec"},
      {"overlap", "excludes list cannot contain an item in the includes list: a"},
      {"read-only", "read-only mode"}};
  for (const auto& [name, text] : expect) {
    json o = WaitPhase(kube::kBackups, name, {"FailedValidation", "Failed", "Completed"});
    EXPECT_EQ(Phase(&o), "FailedValidation") << name;
    ASSERT_TRUE(o["status"]["validationErrors"].is_array()) << o.dump(2);
    EXPECT_THAT(o["status"]["validationErrors"][0].get<std::string>(), HasSubstr(text)) << name;
  }
  json r = WaitPhase(kube::kRestores, "no-backup", {"FailedValidation", "Failed", "Completed"});
  EXPECT_EQ(Phase(&r), "FailedValidation");
  ASSERT_TRUE(r["status"]["validationErrors"].is_array()) << r.dump(2);
  EXPECT_THAT(r["status"]["validationErrors"][0].get<std::string>(),
              HasSubstr("backups.velero.io \"missing\" not found"));
  Result<json> untouched = server_->Get(kube::kBackups, kNs, "velero-owned");
  ASSERT_TRUE(untouched.ok());
  EXPECT_EQ(Phase(&*untouched), "");
}

// Killed while its PVBs run (here: no agent yet), a restarted coordinator creates no second PVB
// and finishes the Backup once the agent has done the work. The pod opts one volume in.
TEST_F(CoordinatorE2eTest, RestartMidBackupCreatesNoDuplicatePvbs) {
  const std::string uid = AddPod("web", "node-a",
                                 json::array({{{"name", "cache"}, {"emptyDir", json::object()}},
                                              {{"name", "other"}, {"emptyDir", json::object()}}}),
                                 {{"backup.velero.io/backup-volumes", "cache"}});
  fs::create_directories(EmptyDirPath(pods_a_, uid, "cache"));
  WriteStringToFile(EmptyDirPath(pods_a_, uid, "cache") / "f", "opted in");
  ChildProcess* c = StartCoordinator();
  ASSERT_TRUE(c);
  Put(kube::kBackups, Backup("bk-r", {{"includedNamespaces", {kAppNs}}}));
  Result<json> planned = server_->WaitFor(
      kube::kBackups, kNs, "bk-r",
      [](const json* o) {
        return o && (*o)["metadata"].contains("annotations") &&
               (*o)["metadata"]["annotations"].contains("fsb.velero.io/pvbs-created");
      },
      kWait);
  ASSERT_TRUE(planned.ok()) << planned.status().ToString();
  ASSERT_EQ(PvbsOf(*planned).size(), 1u);
  c->Signal(SIGKILL);
  ASSERT_EQ(c->Wait(std::chrono::seconds(10)), 128 + SIGKILL);
  // Forget that the PVBs were created: the next coordinator must plan again and find them.
  json again = *server_->Get(kube::kBackups, kNs, "bk-r");
  again["metadata"]["annotations"].erase("fsb.velero.io/pvbs-created");
  Put(kube::kBackups, again);
  StartCoordinator();
  StartAgent("node-a", pods_a_);
  json b = WaitPhase(kube::kBackups, "bk-r", {"Completed", "PartiallyFailed", "Failed"});
  EXPECT_EQ(Phase(&b), "Completed") << b.dump(2);
  std::vector<json> pvbs = PvbsOf(b);
  ASSERT_EQ(pvbs.size(), 1u);
  EXPECT_EQ(pvbs[0]["spec"].value("volume", ""), "cache");
}

}  // namespace
}  // namespace fsb::testing
