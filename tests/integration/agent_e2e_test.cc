// End-to-end tests of `fsb agent` (agent/agent.h): the real fsb binary runs as two node agents
// (nodes A and B, each with its own kubelet pods directory) against the project's Kubernetes test
// API server, with a local and an S3 (s3rver) repository, and the real restic checks and restores
// what the agents wrote. Velero's objects are written as Velero's server writes them
// (velero-fs-backup.md §2, §6).
#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <regex>
#include <thread>

#include "base/http.h"
#include "kube/resource.h"
#include "repo/backend/open.h"
#include "repo/lock.h"
#include "repo/repository.h"
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
constexpr char kPassword[] = "static-passw0rd";  // Velero's default: no secret is created here
constexpr auto kWait = std::chrono::seconds(90);

std::string Phase(const json* o) {
  if (!o || !o->contains("status") || !(*o)["status"].is_object()) return "";
  return (*o)["status"].value("phase", "");
}

class AgentE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (FindProgram("restic").empty()) {
      if (InteropRequired()) FAIL() << "restic not found";
      GTEST_SKIP() << "restic not found";
    }
    std::string why;
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
    repos_ = dir_.path() / "repos";
    fs::create_directories(repos_);
    Put(kube::kNamespaces, {{"metadata", {{"name", kNs}}}});
    Put(kube::kNamespaces, {{"metadata", {{"name", kAppNs}}}});
    // A BSL whose repositories are local directories (Velero's resticRepoPrefix).
    Put(kube::kBackupStorageLocations, {{"metadata", {{"name", "default"}, {"namespace", kNs}}},
                                        {"spec",
                                         {{"provider", "velero.io/fs"},
                                          {"objectStorage", {{"bucket", "unused"}}},
                                          {"config", {{"resticRepoPrefix", repos_.string()}}}}}});
  }

  void TearDown() override {
    if (HasFailure()) {
      for (auto& [name, a] : agents_) {
        if (a) std::cerr << "---- agent " << name << " log ----\n" << a->log() << "\n";
      }
    }
  }

  void Put(const kube::Resource& r, json obj) {
    Result<json> res = server_->Put(r, std::move(obj));
    ASSERT_TRUE(res.ok()) << res.status().ToString();
  }

  ChildProcess* StartAgent(const std::string& node, const fs::path& pods,
                           std::vector<std::string> extra = {}) {
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
    argv.insert(argv.end(), extra.begin(), extra.end());
    agents_[node] = ChildProcess::Start(argv, {}, dir_.path() / ("agent-" + node + ".log"));
    return agents_[node].get();
  }

  // A running pod on `node` with the given volumes (pod.spec.volumes entries), all mounted by its
  // one container; with `restore_wait`, Velero's init container, running.
  // Returns the pod's UID (the server assigns it).
  std::string AddPod(const std::string& name, const std::string& node, const json& volumes,
                     bool restore_wait = false) {
    json mounts = json::array();
    for (const json& v : volumes) {
      mounts.push_back(
          {{"name", v["name"]}, {"mountPath", "/mnt/" + v["name"].get<std::string>()}});
    }
    json pod = {
        {"metadata", {{"name", name}, {"namespace", kAppNs}}},
        {"spec",
         {{"nodeName", node},
          {"volumes", volumes},
          {"containers", {{{"name", "app"}, {"image", "busybox"}, {"volumeMounts", mounts}}}}}},
        {"status", {{"phase", restore_wait ? "Pending" : "Running"}}}};
    if (restore_wait) {
      pod["spec"]["initContainers"] = {{{"name", "restore-wait"}, {"image", "velero/velero"}}};
      pod["status"]["initContainerStatuses"] = {
          {{"name", "restore-wait"}, {"state", {{"running", json::object()}}}}};
    }
    Result<json> stored = server_->Put(kube::kPods, pod);
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    return stored.ok() ? (*stored)["metadata"].value("uid", "") : "";
  }

  // PVC `claim` bound to a CSI PV `pv`; returns the PVC's UID.
  std::string AddCsiClaim(const std::string& claim, const std::string& pv) {
    Result<json> pvc = server_->Put(kube::kPersistentVolumeClaims,
                                    {{"metadata", {{"name", claim}, {"namespace", kAppNs}}},
                                     {"spec", {{"volumeName", pv}}},
                                     {"status", {{"phase", "Bound"}}}});
    EXPECT_TRUE(pvc.ok());
    Put(kube::kPersistentVolumes,
        {{"metadata", {{"name", pv}}},
         {"spec", {{"csi", {{"driver", "csi.example.com"}, {"volumeHandle", pv}}}}}});
    return pvc.ok() ? (*pvc)["metadata"].value("uid", "") : "";
  }

  // A PVB as Velero's server writes it (§2.1–2.4).
  json Pvb(const std::string& name, const std::string& node, const std::string& pod,
           const std::string& pod_uid, const std::string& volume, const std::string& pvc_uid = "",
           const std::string& bsl = "default") {
    json labels = {{"velero.io/backup-name", "bk-1"}, {"velero.io/backup-uid", "backup-uid-1"}};
    json tags = {{"backup", "bk-1"}, {"backup-uid", "backup-uid-1"}, {"ns", kAppNs},
                 {"pod", pod},       {"pod-uid", pod_uid},           {"volume", volume}};
    if (!pvc_uid.empty()) {
      labels["velero.io/pvc-uid"] = pvc_uid;
      tags["pvc-uid"] = pvc_uid;
    }
    return {{"metadata", {{"name", name}, {"namespace", kNs}, {"labels", labels}}},
            {"spec",
             {{"node", node},
              {"pod", {{"kind", "Pod"}, {"namespace", kAppNs}, {"name", pod}, {"uid", pod_uid}}},
              {"volume", volume},
              {"backupStorageLocation", bsl},
              {"repoIdentifier", ""},
              {"uploaderType", "restic"},
              {"tags", tags}}}};
  }

  json Pvr(const std::string& name, const std::string& pod, const std::string& pod_uid,
           const std::string& volume, const std::string& snapshot_id,
           const std::string& restore_uid) {
    return {{"metadata",
             {{"name", name},
              {"namespace", kNs},
              {"labels",
               {{"velero.io/restore-name", "rs-1"},
                {"velero.io/restore-uid", restore_uid},
                {"velero.io/pod-uid", pod_uid}}},
              {"ownerReferences",
               {{{"apiVersion", "velero.io/v1"},
                 {"kind", "Restore"},
                 {"name", "rs-1"},
                 {"uid", restore_uid},
                 {"controller", true}}}}}},
            {"spec",
             {{"pod", {{"kind", "Pod"}, {"namespace", kAppNs}, {"name", pod}, {"uid", pod_uid}}},
              {"volume", volume},
              {"backupStorageLocation", "default"},
              {"repoIdentifier", ""},
              {"uploaderType", "restic"},
              {"snapshotID", snapshot_id},
              {"sourceNamespace", kAppNs}}}};
  }

  // Waits until the object's phase is one of `phases`.
  json WaitPhase(const kube::Resource& r, const std::string& name, std::set<std::string> phases,
                 std::chrono::milliseconds timeout = kWait) {
    Result<json> o = server_->WaitFor(
        r, kNs, name, [&](const json* obj) { return phases.count(Phase(obj)) > 0; }, timeout);
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    return o.ok() ? *o : json();
  }

  RepoCli Restic(const std::string& ns) {
    const fs::path pw = dir_.path() / "password";
    if (!fs::exists(pw)) WriteStringToFile(pw, kPassword);
    return RepoCli(repos_ / ns, pw);
  }

  // Holds an exclusive lock on the local repository of kAppNs (as a prune would), creating the
  // repository first if needed.
  std::unique_ptr<repo::RepoLock> HoldExclusiveLock() {
    auto backend = repo::OpenBackend((repos_ / kAppNs).string(), true);
    EXPECT_TRUE(backend.ok());
    Result<std::unique_ptr<repo::Repository>> r =
        repo::Repository::Open(std::move(*backend), Secret<std::string>(kPassword));
    if (!r.ok()) {
      auto b2 = repo::OpenBackend((repos_ / kAppNs).string(), true);
      repo::InitOptions io;
      io.scrypt_n = 1024;
      r = repo::Repository::Init(std::move(*b2), Secret<std::string>(kPassword), io);
    }
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    lock_repo_ = std::move(*r);
    auto lock = repo::RepoLock::Acquire(*lock_repo_, true);
    EXPECT_TRUE(lock.ok()) << lock.status().ToString();
    return lock.ok() ? std::move(*lock) : nullptr;
  }

  // The agent's /metrics (its port is in its log).
  std::string Metrics(ChildProcess* agent) {
    std::smatch m;
    std::string log;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    static const std::regex kPort("serving metrics address=\\S+ port=(\\d+)");
    while (!std::regex_search(log = agent->log(), m, kPort) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (m.empty()) return "";
    HttpClient http(HttpOptions{});
    HttpRequest req;
    req.url = "http://127.0.0.1:" + m[1].str() + "/metrics";
    Result<HttpResponse> res = http.Do(req);
    if (!res.ok()) return "";
    return std::string(res->body.begin(), res->body.end());
  }

  TempDir dir_;
  std::unique_ptr<KubeApiServer> server_;
  fs::path kubeconfig_, pods_a_, pods_b_, repos_;
  std::map<std::string, std::unique_ptr<ChildProcess>> agents_;
  std::unique_ptr<repo::Repository> lock_repo_;
};

fs::path EmptyDirPath(const fs::path& pods, const std::string& uid, const std::string& vol) {
  return pods / uid / "volumes" / "kubernetes.io~empty-dir" / vol;
}
fs::path CsiPath(const fs::path& pods, const std::string& uid, const std::string& pv) {
  return pods / uid / "volumes" / "kubernetes.io~csi" / pv / "mount";
}

TEST_F(AgentE2eTest, BackupOnNodeAThenRestoreOnNodeB) {
  // Node A: pod "web" with an emptyDir and a CSI PVC volume.
  const std::string pvc1 = AddCsiClaim("data", "pv-data");
  const std::string uid_a =
      AddPod("web", "node-a",
             json::array({{{"name", "cache"}, {"emptyDir", json::object()}},
                          {{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "data"}}}}}));
  const fs::path cache = EmptyDirPath(pods_a_, uid_a, "cache");
  const fs::path data = CsiPath(pods_a_, uid_a, "pv-data");
  fs::create_directories(cache.parent_path());
  MakeRichTree(cache, 7);
  fs::create_directories(data);
  MakeManySmallFiles(data / "small", 300, 8);
  WriteStringToFile(data / "big.bin", AsString(SeededRandomBytes(9, 24 << 20)));
  ChildProcess* a = StartAgent("node-a", pods_a_);
  ChildProcess* b = StartAgent("node-b", pods_b_);
  ASSERT_TRUE(a && b);
  Put(kube::kPodVolumeBackups, Pvb("pvb-cache", "node-a", "web", uid_a, "cache"));
  Put(kube::kPodVolumeBackups, Pvb("pvb-data", "node-a", "web", uid_a, "data", pvc1));
  // A kopia PVB is Velero's node-agent's: fsb leaves it alone.
  json kopia = Pvb("pvb-kopia", "node-a", "web", uid_a, "cache");
  kopia["spec"]["uploaderType"] = "kopia";
  Put(kube::kPodVolumeBackups, kopia);

  json pc = WaitPhase(kube::kPodVolumeBackups, "pvb-cache", {"Completed", "Failed"});
  json pd = WaitPhase(kube::kPodVolumeBackups, "pvb-data", {"Completed", "Failed"});
  ASSERT_EQ(Phase(&pc), "Completed") << pc.dump(2);
  ASSERT_EQ(Phase(&pd), "Completed") << pd.dump(2);
  for (const json* p : {&pc, &pd}) {
    const json& st = (*p)["status"];
    EXPECT_TRUE(std::regex_match(st.value("snapshotID", ""), std::regex("[0-9a-f]{8}")))
        << st.dump();
    EXPECT_FALSE(st.value("startTimestamp", "").empty());
    EXPECT_FALSE(st.value("completionTimestamp", "").empty());
    ASSERT_TRUE(st.contains("progress"));
    EXPECT_GT(st["progress"].value("totalBytes", 0), 0);
    EXPECT_EQ(st["progress"].value("totalBytes", 0), st["progress"].value("bytesDone", -1));
  }
  EXPECT_EQ(pd["status"].value("path", ""), data.string());
  auto kopia_now = server_->Get(kube::kPodVolumeBackups, kNs, "pvb-kopia");
  ASSERT_TRUE(kopia_now.ok());
  EXPECT_EQ(Phase(&*kopia_now), "");

  // The real restic reads both snapshots: host velero, Velero's tags, the volume at the root.
  RepoCli restic = Restic(kAppNs);
  RunResult check = restic.Restic({"check", "--read-data"});
  ASSERT_EQ(check.exit_code, 0) << Describe(check);
  const std::string data_id = pd["status"]["snapshotID"];
  RunResult snaps = restic.Restic({"snapshots", "--json", data_id});
  ASSERT_EQ(snaps.exit_code, 0) << Describe(snaps);
  json sj = json::parse(snaps.out);
  ASSERT_EQ(sj.size(), 1u);
  EXPECT_EQ(sj[0]["hostname"], "velero");
  EXPECT_THAT(sj[0]["tags"].dump(), HasSubstr("pvc-uid=" + pvc1));
  const fs::path rt = dir_.path() / "restic-restore";
  RunResult rr = restic.Restic({"restore", data_id, "--target", rt.string()});
  ASSERT_EQ(rr.exit_code, 0) << Describe(rr);
  CompareOptions co;
  co.root_metadata = false;
  std::vector<std::string> diffs = CompareTrees(data, rt, co);
  EXPECT_TRUE(diffs.empty()) << JoinDifferences(diffs);

  // A second backup of the same PVC uses the first as parent (Velero's rule, §5.4).
  WriteStringToFile(data / "new.txt", "after the first backup");
  json pvb2 = Pvb("pvb-data-2", "node-a", "web", uid_a, "data", pvc1);
  Put(kube::kPodVolumeBackups, pvb2);
  json pd2 = WaitPhase(kube::kPodVolumeBackups, "pvb-data-2", {"Completed", "Failed"});
  ASSERT_EQ(Phase(&pd2), "Completed") << pd2.dump(2);
  RunResult s2 = restic.Restic({"snapshots", "--json", pd2["status"]["snapshotID"]});
  json s2j = json::parse(s2.out);
  ASSERT_EQ(s2j.size(), 1u);
  EXPECT_EQ(s2j[0].value("parent", ""), sj[0]["id"].get<std::string>());

  // Node B: the pod comes back (new UID, new PV) with Velero's restore-wait init container.
  server_->Delete(kube::kPods, kAppNs, "web").IgnoreError();  // the old pod is gone
  server_->Delete(kube::kPersistentVolumeClaims, kAppNs, "data").IgnoreError();
  AddCsiClaim("data", "pv-data-b");
  const std::string uid_b =
      AddPod("web", "node-b",
             json::array({{{"name", "cache"}, {"emptyDir", json::object()}},
                          {{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "data"}}}}}),
             /*restore_wait=*/true);
  const fs::path cache_b = EmptyDirPath(pods_b_, uid_b, "cache");
  const fs::path data_b = CsiPath(pods_b_, uid_b, "pv-data-b");
  fs::create_directories(cache_b);
  fs::create_directories(data_b);
  Put(kube::kPodVolumeRestores,
      Pvr("pvr-cache", "web", uid_b, "cache", pc["status"]["snapshotID"], "rs-uid-1"));
  Put(kube::kPodVolumeRestores, Pvr("pvr-data", "web", uid_b, "data", data_id, "rs-uid-1"));
  json rc = WaitPhase(kube::kPodVolumeRestores, "pvr-cache", {"Completed", "Failed"});
  json rd = WaitPhase(kube::kPodVolumeRestores, "pvr-data", {"Completed", "Failed"});
  ASSERT_EQ(Phase(&rc), "Completed") << rc.dump(2);
  ASSERT_EQ(Phase(&rd), "Completed") << rd.dump(2);
  EXPECT_EQ(rd["status"].value("node", ""), "node-b");
  // Velero's helper's marker, byte-compatible: .velero/<restore uid>, dir 0755, empty file 0644.
  for (const fs::path& vol : {cache_b, data_b}) {
    struct stat st;
    ASSERT_EQ(stat((vol / ".velero").c_str(), &st), 0) << vol;
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    ASSERT_EQ(stat((vol / ".velero" / "rs-uid-1").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644u);
    EXPECT_EQ(st.st_size, 0);
  }
  // Data equal (the first snapshot's state: without new.txt), ownership and modes included.
  co.ignore_paths = {".velero"};
  fs::remove(data / "new.txt");
  diffs = CompareTrees(data, data_b, co);
  EXPECT_TRUE(diffs.empty()) << JoinDifferences(diffs);
  diffs = CompareTrees(cache, cache_b, co);
  EXPECT_TRUE(diffs.empty()) << JoinDifferences(diffs);

  const std::string ma = Metrics(a);
  EXPECT_THAT(ma, HasSubstr("fsb_pod_volume_operations_total{node=\"node-a\",operation=\"backup\","
                            "result=\"completed\"} 3"));
  EXPECT_THAT(ma, HasSubstr("podVolume_pod_volume_backup_dequeue_count{node=\"node-a\"} 3"));
  EXPECT_THAT(Metrics(b), HasSubstr("fsb_pod_volume_operations_total{node=\"node-b\",operation="
                                    "\"restore\",result=\"completed\"} 2"));
}

TEST_F(AgentE2eTest, BadInputFailsWithClearMessagesAndTheAgentKeepsServing) {
  const std::string uid_a =
      AddPod("web", "node-a",
             json::array({{{"name", "cache"}, {"emptyDir", json::object()}},
                          {{"name", "unmounted"}, {"emptyDir", json::object()}},
                          {{"name", "token"}, {"secret", {{"secretName", "s"}}}}}));
  fs::create_directories(EmptyDirPath(pods_a_, uid_a, "cache"));
  WriteStringToFile(EmptyDirPath(pods_a_, uid_a, "cache") / "f", "x");
  // A BSL whose credential secret does not exist.
  Put(kube::kBackupStorageLocations,
      {{"metadata", {{"name", "nocreds"}, {"namespace", kNs}}},
       {"spec",
        {{"provider", "aws"},
         {"objectStorage", {{"bucket", "b"}}},
         {"credential", {{"name", "missing-secret"}, {"key", "cloud"}}},
         {"config", {{"s3Url", "http://127.0.0.1:1"}, {"region", "us-east-1"}}}}}});
  // A running pod of this node without a directory under --host-pods: the agent says so at start.
  const std::string ghost_uid =
      AddPod("ghost", "node-a", json::array({{{"name", "cache"}, {"emptyDir", json::object()}}}));
  ChildProcess* agent = StartAgent("node-a", pods_a_);
  Put(kube::kPodVolumeBackups, Pvb("no-pod", "node-a", "gone", "uid-x", "cache"));
  json bad_repo = Pvb("bad-repo", "node-a", "web", uid_a, "cache");
  bad_repo["spec"]["repoIdentifier"] = "ftp:somewhere/else";
  Put(kube::kPodVolumeBackups, bad_repo);
  Put(kube::kPodVolumeBackups, Pvb("no-secret", "node-a", "web", uid_a, "cache", "", "nocreds"));
  Put(kube::kPodVolumeBackups, Pvb("not-mounted", "node-a", "web", uid_a, "unmounted"));
  Put(kube::kPodVolumeBackups, Pvb("secret-volume", "node-a", "web", uid_a, "token"));
  Put(kube::kPodVolumeBackups, Pvb("no-volume", "node-a", "web", uid_a, "nope"));
  Put(kube::kPodVolumeBackups, Pvb("no-bsl", "node-a", "web", uid_a, "cache", "", "absent-bsl"));
  json malformed = Pvb("malformed", "node-a", "web", uid_a, "cache");
  malformed["spec"]["tags"] = "not a map";
  Put(kube::kPodVolumeBackups, malformed);
  // Another node's PVB is never touched.
  Put(kube::kPodVolumeBackups, Pvb("other-node", "node-z", "web", uid_a, "cache"));

  const std::map<std::string, std::string> expect = {
      {"no-pod", "pods \"gone\" not found"},
      {"bad-repo", "ftp"},
      {"no-secret", "missing-secret"},
      {"not-mounted", "declared but not mounted"},
      {"secret-volume", "holds no data"},
      {"no-volume", "volume not found in pod"},
      {"no-bsl", "absent-bsl"},
      {"malformed", "spec.tags"},
  };
  for (const auto& [name, text] : expect) {
    json o = WaitPhase(kube::kPodVolumeBackups, name, {"Completed", "Failed"});
    EXPECT_EQ(Phase(&o), "Failed") << name;
    EXPECT_THAT(o["status"].value("message", ""), HasSubstr(text)) << name;
    EXPECT_THAT(o["status"].value("message", ""), ::testing::Not(HasSubstr(kPassword)));
  }
  // Still serving: a good PVB after all of that completes.
  Put(kube::kPodVolumeBackups, Pvb("good", "node-a", "web", uid_a, "cache"));
  json good = WaitPhase(kube::kPodVolumeBackups, "good", {"Completed", "Failed"});
  EXPECT_EQ(Phase(&good), "Completed") << good.dump(2);
  EXPECT_THAT(agent->log(), HasSubstr("have no directory under the host pods directory"));
  EXPECT_THAT(agent->log(), HasSubstr("first=" + ghost_uid));
  auto other = server_->Get(kube::kPodVolumeBackups, kNs, "other-node");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(Phase(&*other), "");
  // An empty volume completes without a snapshot, as Velero.
  const std::string uid_e =
      AddPod("empty", "node-a", json::array({{{"name", "empty"}, {"emptyDir", json::object()}}}));
  fs::create_directories(EmptyDirPath(pods_a_, uid_e, "empty"));
  Put(kube::kPodVolumeBackups, Pvb("empty", "node-a", "empty", uid_e, "empty"));
  json e = WaitPhase(kube::kPodVolumeBackups, "empty", {"Completed", "Failed"});
  EXPECT_EQ(Phase(&e), "Completed");
  EXPECT_EQ(e["status"].value("snapshotID", "x"), "");
  EXPECT_THAT(e["status"].value("message", ""), HasSubstr("volume was empty"));
}

// The agent is SIGKILLed while a backup is InProgress (held back by an exclusive repository lock,
// as a prune holds it); the restarted agent resumes it instead of leaving it stuck (velero#5827).
TEST_F(AgentE2eTest, KilledAgentResumesItsInProgressBackup) {
  const std::string uid_a =
      AddPod("web", "node-a", json::array({{{"name", "cache"}, {"emptyDir", json::object()}}}));
  const fs::path cache = EmptyDirPath(pods_a_, uid_a, "cache");
  fs::create_directories(cache);
  MakeManySmallFiles(cache, 50, 3);
  std::unique_ptr<repo::RepoLock> lock = HoldExclusiveLock();
  ASSERT_TRUE(lock);
  ChildProcess* a = StartAgent("node-a", pods_a_);
  Put(kube::kPodVolumeBackups, Pvb("pvb-1", "node-a", "web", uid_a, "cache"));
  WaitPhase(kube::kPodVolumeBackups, "pvb-1", {"InProgress"});
  a->Signal(SIGKILL);
  ASSERT_EQ(a->Wait(std::chrono::seconds(10)), 128 + SIGKILL);
  StartAgent("node-a", pods_a_);
  // Resumed: handed back to New with a note, then InProgress again.
  Result<json> resumed = server_->WaitFor(
      kube::kPodVolumeBackups, kNs, "pvb-1",
      [](const json* o) {
        return o && Phase(o) == "InProgress" && (*o)["metadata"].contains("annotations") &&
               (*o)["metadata"]["annotations"].value("fsb.velero.io/resumed", "") == "1";
      },
      kWait);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  lock.reset();  // the "prune" ends
  json done = WaitPhase(kube::kPodVolumeBackups, "pvb-1", {"Completed", "Failed"});
  EXPECT_EQ(Phase(&done), "Completed") << done.dump(2);
  RunResult check = Restic(kAppNs).Restic({"check"});
  EXPECT_EQ(check.exit_code, 0) << Describe(check);
}

TEST_F(AgentE2eTest, CancelStopsARunningBackupAndSigtermHandsBackTheRest) {
  const std::string uid_a =
      AddPod("web", "node-a", json::array({{{"name", "cache"}, {"emptyDir", json::object()}}}));
  const fs::path cache = EmptyDirPath(pods_a_, uid_a, "cache");
  fs::create_directories(cache);
  MakeManySmallFiles(cache, 20, 4);
  std::unique_ptr<repo::RepoLock> lock = HoldExclusiveLock();
  ASSERT_TRUE(lock);
  ChildProcess* a = StartAgent("node-a", pods_a_);
  Put(kube::kPodVolumeBackups, Pvb("to-cancel", "node-a", "web", uid_a, "cache"));
  Put(kube::kPodVolumeBackups, Pvb("to-hand-back", "node-a", "web", uid_a, "cache"));
  json c = WaitPhase(kube::kPodVolumeBackups, "to-cancel", {"InProgress"});
  WaitPhase(kube::kPodVolumeBackups, "to-hand-back", {"InProgress"});
  c["spec"]["cancel"] = true;
  Put(kube::kPodVolumeBackups, c);
  json canceled = WaitPhase(kube::kPodVolumeBackups, "to-cancel",
                            {"Canceled", "Completed", "Failed"}, std::chrono::seconds(20));
  EXPECT_EQ(Phase(&canceled), "Canceled") << canceled.dump(2);
  EXPECT_FALSE(canceled["status"].value("completionTimestamp", "").empty());

  a->Signal(SIGTERM);
  EXPECT_EQ(a->Wait(std::chrono::seconds(20)), 0);
  auto back = server_->Get(kube::kPodVolumeBackups, kNs, "to-hand-back");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(Phase(&*back), "New");
  EXPECT_THAT((*back)["status"].value("message", ""), HasSubstr("stopped"));
  // The next agent finishes it once the lock is gone.
  lock.reset();
  StartAgent("node-a", pods_a_);
  json done = WaitPhase(kube::kPodVolumeBackups, "to-hand-back", {"Completed", "Failed"});
  EXPECT_EQ(Phase(&done), "Completed") << done.dump(2);
}

TEST_F(AgentE2eTest, S3RepositoryFromTheBackupStorageLocation) {
  std::string why;
  S3Server* s3 = SharedS3Server(&why);
  if (!s3) {
    if (InteropRequired()) FAIL() << why;
    GTEST_SKIP() << why;
  }
  const std::string bucket = UniqueBucketName();
  // Credentials come from the BSL's secret, as Velero's cloud-credentials file.
  Put(kube::kSecrets, {{"metadata", {{"name", "s3-creds"}, {"namespace", kNs}}},
                       {"data",
                        {{"cloud", Base64Encode(ToBytes("[default]\naws_access_key_id = S3RVER\n"
                                                        "aws_secret_access_key = S3RVER\n"))}}}});
  Put(kube::kSecrets, {{"metadata", {{"name", "velero-repo-credentials"}, {"namespace", kNs}}},
                       {"data", {{"repository-password", Base64Encode(ToBytes("s3cret-pw\n"))}}}});
  Put(kube::kBackupStorageLocations,
      {{"metadata", {{"name", "s3"}, {"namespace", kNs}}},
       {"spec",
        {{"provider", "aws"},
         {"objectStorage", {{"bucket", bucket}, {"prefix", "cluster1"}}},
         {"credential", {{"name", "s3-creds"}, {"key", "cloud"}}},
         {"config", {{"s3Url", s3->url()}, {"region", "us-east-1"}}}}}});
  const std::string uid_a =
      AddPod("web", "node-a", json::array({{{"name", "cache"}, {"emptyDir", json::object()}}}));
  const fs::path cache = EmptyDirPath(pods_a_, uid_a, "cache");
  fs::create_directories(cache);
  MakeManySmallFiles(cache, 100, 5);
  // Two agents' first backups into the same new repository: one initialises it, once.
  const std::string uid_b2 =
      AddPod("web2", "node-b", json::array({{{"name", "cache"}, {"emptyDir", json::object()}}}));
  const fs::path cache2 = EmptyDirPath(pods_b_, uid_b2, "cache");
  fs::create_directories(cache2);
  MakeManySmallFiles(cache2, 100, 6);
  StartAgent("node-a", pods_a_);
  StartAgent("node-b", pods_b_);
  Put(kube::kPodVolumeBackups, Pvb("s3-a", "node-a", "web", uid_a, "cache", "", "s3"));
  Put(kube::kPodVolumeBackups, Pvb("s3-b", "node-b", "web2", uid_b2, "cache", "", "s3"));
  json pa = WaitPhase(kube::kPodVolumeBackups, "s3-a", {"Completed", "Failed"});
  json pb = WaitPhase(kube::kPodVolumeBackups, "s3-b", {"Completed", "Failed"});
  ASSERT_EQ(Phase(&pa), "Completed") << pa.dump(2);
  ASSERT_EQ(Phase(&pb), "Completed") << pb.dump(2);
  std::vector<json> repos = server_->List(kube::kBackupRepositories, kNs);
  ASSERT_EQ(repos.size(), 1u);
  EXPECT_EQ(Phase(&repos[0]), "Ready");
  const std::string repo_url =
      fmt::format("s3:{}/{}/cluster1/restic/{}", s3->url(), bucket, kAppNs);
  EXPECT_EQ(repos[0]["spec"].value("resticIdentifier", ""), repo_url);

  // restic reads both snapshots from S3 with the secret's password (whitespace trimmed).
  const fs::path pw = dir_.path() / "s3pw";
  WriteStringToFile(pw, "s3cret-pw");
  const std::vector<std::string> env = {"AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=S3RVER",
                                        "RESTIC_PASSWORD_FILE=" + pw.string()};
  RunResult keys =
      RunCommand({"restic", "-r", repo_url, "--no-cache", "key", "list", "--json"}, env);
  ASSERT_EQ(keys.exit_code, 0) << Describe(keys);
  EXPECT_EQ(json::parse(keys.out).size(), 1u);  // initialised once: one key, one config
  RunResult check =
      RunCommand({"restic", "-r", repo_url, "--no-cache", "check", "--read-data"}, env);
  EXPECT_EQ(check.exit_code, 0) << Describe(check);
  const fs::path rt = dir_.path() / "s3-restore";
  RunResult rr = RunCommand({"restic", "-r", repo_url, "--no-cache", "restore",
                             pa["status"]["snapshotID"], "--target", rt.string()},
                            env);
  ASSERT_EQ(rr.exit_code, 0) << Describe(rr);
  CompareOptions co;
  co.root_metadata = false;
  std::vector<std::string> diffs = CompareTrees(cache, rt, co);
  EXPECT_TRUE(diffs.empty()) << JoinDifferences(diffs);
}

}  // namespace
}  // namespace fsb::testing
