#include "coordinator/maintenance.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "kube/objects.h"
#include "repo/backend/open.h"
#include "repo/lock.h"
#include "repo/repository.h"
#include "tests/coordinator/fake_clock.h"
#include "tests/kube/kube_test_util.h"
#include "tests/support/test_util.h"
#include "uploader/backup.h"

namespace fsb::coordinator {
namespace {

namespace fs = std::filesystem;
using kube::testing::kDeadline;
using testing::FakeClock;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr const char* kNs = "velero";
constexpr const char* kAppNs = "app";
const Secret<std::string> kPassword{std::string("static-passw0rd")};  // Velero's default

TimePoint T(std::string_view rfc3339) {
  Result<TimePoint> t = kube::ParseTime(rfc3339);
  EXPECT_TRUE(t.ok()) << rfc3339;
  return t.ok() ? *t : TimePoint{};
}

class MaintenanceControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kube::testing::InitCurlOnce();
    server_ = kube::testing::StartServer();
    ASSERT_NE(server_, nullptr);
    kube::KubeConfig config;
    config.server = server_->url();
    client_ = kube::testing::MakeClient(config);
    ASSERT_NE(client_, nullptr);
    repos_ = dir_.path() / "repos";
    repo_path_ = (repos_ / kAppNs).string();
    fs::create_directories(repos_);
    Put(kube::kBackupStorageLocations, {{"metadata", {{"name", "default"}, {"namespace", kNs}}},
                                        {"spec",
                                         {{"provider", "velero.io/fs"},
                                          {"objectStorage", {{"bucket", "unused"}}},
                                          {"config", {{"resticRepoPrefix", repos_.string()}}}}}});
    auto backend = repo::OpenBackend(repo_path_, true);
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    repo::InitOptions init;
    init.scrypt_n = 1024;  // tests only: fast key derivation
    auto r = repo::Repository::Init(std::move(*backend), kPassword, init);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  void TearDown() override { controller_.reset(); }

  kube::Object Put(const kube::Resource& r, kube::Object obj) {
    Result<kube::Object> stored = server_->Put(r, std::move(obj));
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    return stored.ok() ? *stored : kube::Object();
  }

  std::unique_ptr<repo::Repository> OpenRepo() {
    auto backend = repo::OpenBackend(repo_path_, false);
    EXPECT_TRUE(backend.ok());
    auto r = repo::Repository::Open(std::move(*backend), kPassword);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : nullptr;
  }

  // One backup of 300 KB of its own random data (so forgetting it leaves whole packs unused).
  repo::Id Backup(int k) {
    const fs::path src = dir_.path() / ("src" + std::to_string(k));
    fs::create_directories(src);
    const Bytes data = fsb::testing::SeededRandomBytes(1000 + static_cast<uint64_t>(k), 300'000);
    fsb::testing::WriteStringToFile(src / "data.bin", std::string(data.begin(), data.end()));
    auto r = OpenRepo();
    EXPECT_TRUE(r->LoadIndex().ok());
    uploader::BackupOptions o;
    o.targets = {src.string()};
    o.hostname = "node-agent-x";
    o.file_workers = 1;
    o.encode_workers = 1;
    Result<uploader::BackupSummary> s = uploader::RunBackup(*r, o, nullptr);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? s->snapshot_id : repo::Id{};
  }

  size_t Count(repo::FileType t) {
    auto r = OpenRepo();
    size_t n = 0;
    EXPECT_TRUE(r->backend()
                    .List(t,
                          [&](const repo::FileInfo&) {
                            n++;
                            return Status::Ok();
                          })
                    .ok());
    return n;
  }

  std::set<std::string> LockHosts() {
    auto r = OpenRepo();
    Result<std::vector<std::pair<repo::Id, repo::LockInfo>>> locks = repo::ListLocks(*r);
    EXPECT_TRUE(locks.ok());
    std::set<std::string> hosts;
    for (const auto& [id, l] : *locks) hosts.insert(l.hostname);
    return hosts;
  }

  // A lock file as a pod `host` would have left it, `age` ago (real time: lock files carry it).
  void WriteLock(const std::string& host, bool exclusive, std::chrono::seconds age) {
    repo::LockInfo l;
    l.time.sec = std::chrono::duration_cast<std::chrono::seconds>(
                     (std::chrono::system_clock::now() - age).time_since_epoch())
                     .count();
    l.exclusive = exclusive;
    l.hostname = host;
    l.username = "root";
    l.pid = 7;
    auto r = OpenRepo();
    const std::string json = repo::EncodeLock(l);
    ASSERT_TRUE(
        r->SaveUnpacked(repo::FileType::kLock,
                        ByteView(reinterpret_cast<const uint8_t*>(json.data()), json.size()))
            .ok());
  }

  void PutPod(const std::string& name) {
    Put(kube::kPods, {{"metadata", {{"name", name}, {"namespace", kNs}}},
                      {"spec", {{"nodeName", "n1"}}},
                      {"status", {{"phase", "Running"}}}});
  }

  void PutRepository(const std::string& identifier, kube::Object status = {{"phase", "Ready"}}) {
    Put(kube::kBackupRepositories,
        {{"metadata", {{"name", "app-default-restic"}, {"namespace", kNs}}},
         {"spec",
          {{"volumeNamespace", kAppNs},
           {"backupStorageLocation", "default"},
           {"repositoryType", "restic"},
           {"resticIdentifier", identifier},
           {"maintenanceFrequency", "168h0m0s"}}},
         {"status", status}});
  }

  kube::Object WaitForRepository(const std::function<bool(const kube::Object&)>& pred) {
    Result<kube::Object> o = server_->WaitFor(
        kube::kBackupRepositories, kNs, "app-default-restic",
        [&](const kube::Object* x) { return x && pred(*x); }, kDeadline);
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    return o.ok() ? *o : kube::Object();
  }
  static size_t HistorySize(const kube::Object& o) {
    return o.contains("status") && o["status"].contains("recentMaintenance")
               ? o["status"]["recentMaintenance"].size()
               : 0;
  }

  void StartController(MaintenanceOptions o = {}) {
    o.sync_timeout = 20s;
    o.repo_target.scratch_dir = (dir_.path() / "scratch").string();
    controller_ = std::make_unique<MaintenanceController>(*client_, o, clock_);
    Status s = controller_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void WaitUntilIdle() {
    ASSERT_TRUE(clock_.WaitForSleepers(1, kDeadline));
    std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(clock_.WaitForSleepers(1, kDeadline));
  }

  void ResticCheck() {
    const std::string restic = fsb::testing::FindProgram("restic");
    if (restic.empty()) {
      if (fsb::testing::InteropRequired()) ADD_FAILURE() << "restic not found";
      return;
    }
    fsb::testing::RunResult r = fsb::testing::RunCommand(
        {restic, "-r", repo_path_, "--no-cache", "check"}, {"RESTIC_PASSWORD=static-passw0rd"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  fsb::testing::TempDir dir_;
  fs::path repos_;
  std::string repo_path_;
  FakeClock clock_{T("2026-11-26T12:00:00Z")};
  std::unique_ptr<fsb::testing::KubeApiServer> server_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<MaintenanceController> controller_;
};

TEST_F(MaintenanceControllerTest, PrunesRemovesLocksOfGonePodsAndRecordsStatus) {
  std::vector<repo::Id> snaps;
  for (int k = 0; k < 3; k++) snaps.push_back(Backup(k));
  {
    auto r = OpenRepo();
    ASSERT_TRUE(r->backend().Remove(repo::Handle{repo::FileType::kSnapshot, snaps[0].Hex()}).ok());
  }
  const size_t packs_before = Count(repo::FileType::kPack);
  // A pod of the agent DaemonSet that is gone left an exclusive lock 10 minutes ago (not yet
  // stale by age); a person's restic on a laptop left one too (not ours to judge).
  WriteLock("node-agent-gone", true, 10min);
  PutRepository(repo_path_);

  StartController();
  kube::Object br = WaitForRepository([](const kube::Object& o) { return HistorySize(o) == 1; });
  const kube::Object& entry = br["status"]["recentMaintenance"][0];
  EXPECT_EQ(entry["result"], "Succeeded") << entry.dump();
  EXPECT_EQ(entry["startTimestamp"], "2026-11-26T12:00:00Z");
  EXPECT_EQ(entry["completeTimestamp"], "2026-11-26T12:00:00Z");
  EXPECT_THAT(entry["message"].get<std::string>(), HasSubstr("removed 1 stale lock(s)"));
  EXPECT_EQ(br["status"]["lastMaintenanceTime"], "2026-11-26T12:00:00Z");
  EXPECT_LT(Count(repo::FileType::kPack), packs_before);
  EXPECT_TRUE(LockHosts().empty());
  EXPECT_EQ(Count(repo::FileType::kSnapshot), 2u);
  ResticCheck();

  // Not again before the frequency has passed; then every 168 h, the history capped at 3.
  WaitUntilIdle();
  clock_.Advance(100h);
  WaitUntilIdle();
  EXPECT_EQ(HistorySize(*server_->Get(kube::kBackupRepositories, kNs, "app-default-restic")), 1u);
  for (size_t runs = 2; runs <= 4; runs++) {
    clock_.Advance(168h);
    br = WaitForRepository([&](const kube::Object& o) {
      return o["status"].value("lastMaintenanceTime", "") == kube::FormatTime(clock_.Now());
    });
  }
  EXPECT_EQ(HistorySize(br), 3u);
  EXPECT_EQ(br["status"]["recentMaintenance"][2]["completeTimestamp"],
            kube::FormatTime(clock_.Now()));
}

TEST_F(MaintenanceControllerTest, LockOfALivePodKeepsTheRepositoryBusy) {
  Backup(0);
  PutPod("node-agent-live");
  WriteLock("node-agent-live", false, 10min);  // a backup running on a live agent
  WriteLock("node-agent-gone", false, 10min);
  WriteLock("laptop", false, 10min);  // not a pod name of ours: only age makes it stale
  PutRepository(repo_path_);
  const size_t packs_before = Count(repo::FileType::kPack);
  StartController();
  WaitUntilIdle();
  EXPECT_EQ(LockHosts(), (std::set<std::string>{"laptop", "node-agent-live"}));
  EXPECT_EQ(Count(repo::FileType::kPack), packs_before);
  // Postponed, not failed: nothing recorded.
  Result<kube::Object> br = server_->Get(kube::kBackupRepositories, kNs, "app-default-restic");
  ASSERT_TRUE(br.ok());
  EXPECT_EQ(HistorySize(*br), 0u);
  EXPECT_FALSE((*br)["status"].contains("lastMaintenanceTime"));
}

TEST_F(MaintenanceControllerTest, FailureIsRecordedWithAnEvent) {
  PutRepository((dir_.path() / "no-such-repo").string());
  StartController();
  kube::Object br = WaitForRepository([](const kube::Object& o) { return HistorySize(o) == 1; });
  EXPECT_EQ(br["status"]["recentMaintenance"][0]["result"], "Failed");
  EXPECT_THAT(br["status"]["recentMaintenance"][0]["message"].get<std::string>(),
              HasSubstr("no-such-repo"));
  EXPECT_FALSE(br["status"].contains("lastMaintenanceTime"));
  std::vector<kube::Object> events = server_->List(kube::kEvents, kNs);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["reason"], "MaintenanceFailed");
  EXPECT_EQ(events[0]["type"], "Warning");
  EXPECT_EQ(events[0]["involvedObject"]["name"], "app-default-restic");
}

TEST_F(MaintenanceControllerTest, ExpiredBackupIsCollectedWithItsSnapshots) {
  const repo::Id old_snap = Backup(0);
  const repo::Id new_snap = Backup(1);
  auto put_backup = [&](const std::string& name, const std::string& expiration) {
    return Put(kube::kBackups, {{"metadata",
                                 {{"name", name},
                                  {"namespace", kNs},
                                  {"labels", {{"fsb.velero.io/coordinator", "true"}}}}},
                                {"spec", {{"storageLocation", "default"}}},
                                {"status", {{"phase", "Completed"}, {"expiration", expiration}}}});
  };
  auto put_pvb = [&](const std::string& name, const kube::Object& backup, const std::string& snap) {
    Put(kube::kPodVolumeBackups,
        {{"metadata",
          {{"name", name},
           {"namespace", kNs},
           {"labels",
            {{"velero.io/backup-uid", backup["metadata"]["uid"]},
             {"velero.io/backup-name", backup["metadata"]["name"]}}}}},
         {"spec",
          {{"node", "n1"},
           {"volume", "data"},
           {"backupStorageLocation", "default"},
           {"pod", {{"kind", "Pod"}, {"namespace", kAppNs}, {"name", "p"}}}}},
         {"status", {{"phase", "Completed"}, {"snapshotID", snap}}}});
  };
  const kube::Object old_backup = put_backup("old", "2026-11-26T11:00:00Z");
  const kube::Object new_backup = put_backup("new", "2026-11-27T12:00:00Z");
  put_pvb("old-pvb", old_backup, old_snap.Hex());
  put_pvb("old-pvb-empty", old_backup, "");          // a volume that failed: no snapshot
  put_pvb("new-pvb", new_backup, new_snap.Short());  // a short ID works too
  // Not ours: left to whoever made it.
  Put(kube::kBackups,
      {{"metadata", {{"name", "velero-made"}, {"namespace", kNs}}},
       {"spec", {{"storageLocation", "default"}}},
       {"status", {{"phase", "Completed"}, {"expiration", "2026-11-20T00:00:00Z"}}}});

  StartController();
  ASSERT_TRUE(server_
                  ->WaitFor(
                      kube::kBackups, kNs, "old",
                      [](const kube::Object* o) { return o == nullptr; }, kDeadline)
                  .ok());
  EXPECT_FALSE(server_->Get(kube::kPodVolumeBackups, kNs, "old-pvb").ok());
  EXPECT_FALSE(server_->Get(kube::kPodVolumeBackups, kNs, "old-pvb-empty").ok());
  EXPECT_TRUE(server_->Get(kube::kPodVolumeBackups, kNs, "new-pvb").ok());
  EXPECT_TRUE(server_->Get(kube::kBackups, kNs, "new").ok());
  EXPECT_TRUE(server_->Get(kube::kBackups, kNs, "velero-made").ok());
  {
    auto r = OpenRepo();
    EXPECT_FALSE(r->FindSnapshot(old_snap.Hex()).ok());
    EXPECT_TRUE(r->FindSnapshot(new_snap.Hex()).ok());
  }
  EXPECT_TRUE(LockHosts().empty());
  std::vector<kube::Object> events = server_->List(kube::kEvents, kNs);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["reason"], "BackupExpired");
  EXPECT_EQ(events[0]["involvedObject"]["name"], "old");
  EXPECT_THAT(events[0]["message"].get<std::string>(), HasSubstr(old_snap.Hex()));
  EXPECT_THAT(events[0]["message"].get<std::string>(), HasSubstr("forgot 1 snapshot(s)"));
  ResticCheck();

  // A day later the other one expires.
  clock_.Set(T("2026-11-27T12:00:00Z"));
  ASSERT_TRUE(server_
                  ->WaitFor(
                      kube::kBackups, kNs, "new",
                      [](const kube::Object* o) { return o == nullptr; }, kDeadline)
                  .ok());
  EXPECT_FALSE(server_->Get(kube::kPodVolumeBackups, kNs, "new-pvb").ok());
  EXPECT_EQ(Count(repo::FileType::kSnapshot), 0u);
}

}  // namespace
}  // namespace fsb::coordinator
