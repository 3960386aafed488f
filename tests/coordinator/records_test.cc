// Unit tests of coordinator/records.h (gzip, keys, round trip through a local object store, bad
// input) and of the Backup/Restore object builders of the controllers.
#include "coordinator/records.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "coordinator/backup_controller.h"
#include "coordinator/common.h"
#include "coordinator/restore_controller.h"
#include "coordinator/storage.h"
#include "repo/backend/object_store.h"
#include "tests/support/test_util.h"

namespace fsb::coordinator {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

TEST(RecordsTest, GzipRoundTripAndBadInput) {
  const std::string text(100000, 'x');
  Result<Bytes> gz = Gzip(AsBytes(text));
  ASSERT_TRUE(gz.ok());
  EXPECT_EQ((*gz)[0], 0x1f);  // gzip magic
  EXPECT_EQ((*gz)[1], 0x8b);
  Result<Bytes> back = Gunzip(*gz);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(AsString(*back), text);
  Bytes truncated(gz->begin(), gz->begin() + gz->size() / 2);
  EXPECT_EQ(Gunzip(truncated).status().code(), StatusCode::kCorruption);
  Bytes flipped = *gz;
  flipped[flipped.size() - 6] ^= 0x40;  // the CRC
  EXPECT_EQ(Gunzip(flipped).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(Gunzip(AsBytes("not gzip")).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(Gunzip(*gz, 1000).status().code(), StatusCode::kResourceExhausted);
}

TEST(RecordsTest, VeleroKeys) {
  EXPECT_EQ(BackupRecordKey("b1"), "backups/b1/velero-backup.json");
  EXPECT_EQ(PodVolumeBackupsRecordKey("b1"), "backups/b1/b1-podvolumebackups.json.gz");
  EXPECT_EQ(ResourcesRecordKey("b1"), "backups/b1/b1-fsb-resources.json.gz");
}

TEST(RecordsTest, RoundTripThroughALocalStore) {
  testing::TempDir dir;
  auto store = repo::OpenObjectStore(dir.path().string());
  ASSERT_TRUE(store.ok());
  json backup = {
      {"kind", "Backup"}, {"metadata", {{"name", "b1"}}}, {"status", {{"phase", "Completed"}}}};
  std::vector<json> pvbs = {
      {{"kind", "PodVolumeBackup"}, {"status", {{"snapshotID", "abcd1234"}}}}};
  std::vector<json> res = {{{"kind", "Pod"}}, {{"kind", "PersistentVolumeClaim"}}};
  ASSERT_TRUE(WriteBackupRecord(**store, "b1", backup).ok());
  ASSERT_TRUE(WritePodVolumeBackupsRecord(**store, "b1", pvbs).ok());
  ASSERT_TRUE(WriteResourcesRecord(**store, "b1", res).ok());
  EXPECT_EQ(*ReadBackupRecord(**store, "b1"), backup);
  EXPECT_EQ(*ReadPodVolumeBackupsRecord(**store, "b1"), pvbs);
  EXPECT_EQ(*ReadResourcesRecord(**store, "b1"), res);
  EXPECT_EQ(ReadBackupRecord(**store, "b2").status().code(), StatusCode::kNotFound);
  std::vector<std::string> keys;
  ASSERT_TRUE((*store)
                  ->List("backups/b1/",
                         [&](const std::string& k) {
                           keys.push_back(k);
                           return Status::Ok();
                         })
                  .ok());
  EXPECT_EQ(keys.size(), 3u);
  // Not gzip / not an array: corruption naming the key.
  ASSERT_TRUE((*store)->Put(PodVolumeBackupsRecordKey("b3"), AsBytes("plain")).ok());
  Result<std::vector<json>> bad = ReadPodVolumeBackupsRecord(**store, "b3");
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(bad.status().message(), HasSubstr("b3-podvolumebackups.json.gz"));
  Result<Bytes> obj_gz = Gzip(AsBytes("{\"a\":1}"));
  ASSERT_TRUE((*store)->Put(ResourcesRecordKey("b3"), *obj_gz).ok());
  EXPECT_EQ(ReadResourcesRecord(**store, "b3").status().code(), StatusCode::kCorruption);
  // Keys cannot leave the store.
  EXPECT_EQ((*store)->Put("../x", AsBytes("x")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*store)->Get("a/../../x").status().code(), StatusCode::kInvalidArgument);
}

TEST(RecordsTest, RecordsLocationPerProvider) {
  kube::velero::BackupStorageLocation bsl;
  bsl.meta.name = "default";
  bsl.provider = "aws";
  bsl.bucket = "bkt";
  bsl.prefix = "/cluster1/";
  bsl.config = {{"s3Url", "http://minio:9000/"}};
  EXPECT_EQ(*RecordsLocation(bsl), "s3:http://minio:9000/bkt/cluster1");
  bsl.config = {{"region", "eu-west-1"}};
  EXPECT_EQ(*RecordsLocation(bsl), "s3:s3-eu-west-1.amazonaws.com/bkt/cluster1");
  bsl.provider = "velero.io/fs";
  bsl.config = {{"fspath", "/srv/velero"}};
  EXPECT_EQ(*RecordsLocation(bsl), "/srv/velero/cluster1");
  bsl.config = {{"resticRepoPrefix", "/srv/repos"}};
  EXPECT_THAT(RecordsLocation(bsl).status().message(), HasSubstr("config.fspath"));
  bsl.provider = "gcp";
  bsl.config = {};
  EXPECT_EQ(RecordsLocation(bsl).status().code(), StatusCode::kInvalidArgument);
}

TEST(RecordsTest, ValidLabelValueAsVelero) {
  EXPECT_EQ(ValidLabelValue("short"), "short");
  const std::string long_name(70, 'a');
  const std::string v = ValidLabelValue(long_name);
  EXPECT_EQ(v.size(), 63u);
  EXPECT_EQ(v.substr(0, 57), long_name.substr(0, 57));
}

kube::velero::Backup MakeBackup(bool uploader_config) {
  json b = {{"metadata", {{"name", "bk"}, {"namespace", "velero"}, {"uid", "buid"}}},
            {"spec", {{"storageLocation", "default"}}}};
  if (uploader_config) b["spec"]["uploaderConfig"] = {{"parallelFilesUpload", 4}};
  return *kube::velero::ParseBackup(b);
}

kube::Pod MakeRunningPod() {
  json p = {{"metadata", {{"name", "web"}, {"namespace", "app"}, {"uid", "puid"}}},
            {"spec", {{"nodeName", "node-a"}}},
            {"status", {{"phase", "Running"}}}};
  return *kube::ParsePod(p);
}

TEST(BackupControllerTest, PodVolumeBackupAsVeleroWritesIt) {
  SelectedVolume v{"data", "claim", "cuid"};
  json pvb = BuildPodVolumeBackup(MakeBackup(true), MakeRunningPod(), v, "default",
                                  "s3:http://m/b/restic/app", "velero");
  EXPECT_EQ(pvb["metadata"]["generateName"], "bk-");
  EXPECT_EQ(pvb["metadata"]["namespace"], "velero");
  EXPECT_EQ(pvb["metadata"]["labels"]["velero.io/backup-name"], "bk");
  EXPECT_EQ(pvb["metadata"]["labels"]["velero.io/backup-uid"], "buid");
  EXPECT_EQ(pvb["metadata"]["labels"]["velero.io/pvc-uid"], "cuid");
  EXPECT_EQ(pvb["metadata"]["annotations"]["velero.io/pvc-name"], "claim");
  const json& owner = pvb["metadata"]["ownerReferences"][0];
  EXPECT_EQ(owner["kind"], "Backup");
  EXPECT_EQ(owner["uid"], "buid");
  EXPECT_EQ(owner["controller"], true);
  EXPECT_EQ(pvb["spec"]["node"], "node-a");
  EXPECT_EQ(pvb["spec"]["pod"],
            (json{{"kind", "Pod"}, {"namespace", "app"}, {"name", "web"}, {"uid", "puid"}}));
  EXPECT_EQ(pvb["spec"]["volume"], "data");
  EXPECT_EQ(pvb["spec"]["backupStorageLocation"], "default");
  EXPECT_EQ(pvb["spec"]["repoIdentifier"], "s3:http://m/b/restic/app");
  EXPECT_EQ(pvb["spec"]["uploaderType"], "restic");
  EXPECT_EQ(pvb["spec"]["tags"], (json{{"backup", "bk"},
                                       {"backup-uid", "buid"},
                                       {"pod", "web"},
                                       {"pod-uid", "puid"},
                                       {"ns", "app"},
                                       {"volume", "data"},
                                       {"pvc-uid", "cuid"}}));
  EXPECT_EQ(pvb["spec"]["uploaderSettings"]["ParallelFilesUpload"], "4");
  // The agent's parser accepts it.
  EXPECT_TRUE(kube::velero::ParsePodVolumeBackup(pvb).ok());
  json empty_dir = BuildPodVolumeBackup(MakeBackup(false), MakeRunningPod(),
                                        SelectedVolume{"cache", "", ""}, "default", "", "velero");
  EXPECT_FALSE(empty_dir["metadata"]["labels"].contains("velero.io/pvc-uid"));
  EXPECT_FALSE(empty_dir["spec"]["tags"].contains("pvc-uid"));
  EXPECT_FALSE(empty_dir["spec"].contains("uploaderSettings"));
  EXPECT_TRUE(empty_dir["spec"].contains("repoIdentifier"));  // required key, even when ""
}

TEST(BackupControllerTest, SpecValidation) {
  json b = {{"metadata",
             {{"name", "bk"},
              {"namespace", "velero"},
              {"annotations", {{"velero.io/pod-volume-timeout", "soon"}}}}},
            {"spec",
             {{"ttl", "3 days"},
              {"labelSelector", {{"matchLabels", {{"a", "b"}}}}},
              {"orLabelSelectors", {{{"matchLabels", {{"c", "d"}}}}}}}}};
  std::vector<std::string> errs = ValidateBackupSpec(*kube::velero::ParseBackup(b));
  std::string all;
  for (const std::string& e : errs) all += e + "\n";
  EXPECT_THAT(all, HasSubstr("invalid spec.ttl"));
  EXPECT_THAT(all, HasSubstr("velero.io/pod-volume-timeout"));
  EXPECT_THAT(all, HasSubstr("only one can be specified"));
  // A selector of the wrong shape is a parse error naming the field.
  json shape = {{"metadata", {{"name", "bk"}}}, {"spec", {{"labelSelector", "app=web"}}}};
  EXPECT_THAT(kube::velero::ParseBackup(shape).status().message(), HasSubstr("spec.labelSelector"));
}

TEST(BackupControllerTest, GoDurations) {
  using std::chrono::milliseconds;
  EXPECT_EQ(*kube::velero::ParseGoDuration("720h0m0s"), milliseconds(720LL * 3600 * 1000));
  EXPECT_EQ(*kube::velero::ParseGoDuration("1h30m"), milliseconds(90 * 60 * 1000));
  EXPECT_EQ(*kube::velero::ParseGoDuration("1.5s"), milliseconds(1500));
  EXPECT_EQ(*kube::velero::ParseGoDuration("300ms"), milliseconds(300));
  EXPECT_EQ(*kube::velero::ParseGoDuration("0"), milliseconds(0));
  EXPECT_EQ(*kube::velero::ParseGoDuration("1.0006s"), milliseconds(1001));  // to the nearest ms
  for (const char* bad : {"", "10", "5d", "-1h", "h", "1h x"}) {
    EXPECT_FALSE(kube::velero::ParseGoDuration(bad).ok()) << bad;
  }
  // Go's own messages, as Velero's API server would give them for spec.ttl.
  EXPECT_EQ(kube::velero::ParseGoDuration("5d").status().message(),
            "time: unknown unit \"d\" in duration \"5d\"");
  EXPECT_EQ(kube::velero::ParseGoDuration("-1h").status().message(), "negative duration \"-1h\"");
}

TEST(RestoreControllerTest, PodIsStrippedAndGetsRestoreWait) {
  json pod = {{"metadata",
               {{"name", "web"},
                {"namespace", "app"},
                {"uid", "old"},
                {"resourceVersion", "12"},
                {"creationTimestamp", "2026-01-01T00:00:00Z"},
                {"ownerReferences", {{{"kind", "ReplicaSet"}, {"name", "rs"}}}},
                {"labels", {{"app", "web"}}}}},
              {"spec",
               {{"nodeName", "node-a"},
                {"priority", 5},
                {"volumes",
                 {{{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "c"}}}},
                  {{"name", "kube-api-access-x1"}, {"projected", json::object()}}}},
                {"initContainers", {{{"name", "restic-wait"}}, {{"name", "setup"}}}},
                {"containers",
                 {{{"name", "app"},
                   {"securityContext", {{"runAsUser", 7}}},
                   {"volumeMounts",
                    {{{"name", "data"}, {"mountPath", "/d"}},
                     {{"name", "kube-api-access-x1"}, {"mountPath", "/var/run/secrets"}}}}}}}}},
              {"status", {{"phase", "Running"}}}};
  RestoreHelperOptions helper;
  json out = PrepareRestoredPod(pod, "app2", "bk", "rs", "ruid", {"data"}, helper);
  EXPECT_EQ(out["metadata"]["namespace"], "app2");
  for (const char* k : {"uid", "resourceVersion", "creationTimestamp", "ownerReferences"}) {
    EXPECT_FALSE(out["metadata"].contains(k)) << k;
  }
  EXPECT_EQ(out["metadata"]["labels"]["velero.io/restore-name"], "rs");
  EXPECT_EQ(out["metadata"]["labels"]["velero.io/backup-name"], "bk");
  EXPECT_EQ(out["metadata"]["labels"]["app"], "web");
  EXPECT_FALSE(out["spec"].contains("nodeName"));
  EXPECT_FALSE(out["spec"].contains("priority"));
  EXPECT_FALSE(out.contains("status"));
  ASSERT_EQ(out["spec"]["volumes"].size(), 1u);
  ASSERT_EQ(out["spec"]["containers"][0]["volumeMounts"].size(), 1u);
  const json& inits = out["spec"]["initContainers"];
  ASSERT_EQ(inits.size(), 2u);  // restore-wait first, restic-wait gone, setup kept
  EXPECT_EQ(inits[1]["name"], "setup");
  const json& w = inits[0];
  EXPECT_EQ(w["name"], "restore-wait");
  EXPECT_EQ(w["image"], "velero/velero:v1.16.2");
  EXPECT_EQ(w["command"], json::array({"/velero-restore-helper"}));
  EXPECT_EQ(w["args"], json::array({"ruid"}));
  EXPECT_EQ(w["env"][0]["name"], "POD_NAMESPACE");
  EXPECT_EQ(w["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
  EXPECT_EQ(w["env"][1]["name"], "POD_NAME");
  EXPECT_EQ(w["volumeMounts"], json::array({{{"name", "data"}, {"mountPath", "/restores/data"}}}));
  EXPECT_EQ(w["resources"]["requests"]["cpu"], "100m");
  EXPECT_EQ(w["resources"]["limits"]["memory"], "128Mi");
  EXPECT_EQ(w["securityContext"], (json{{"runAsUser", 7}}));
  // Without an app securityContext: the restricted default.
  pod["spec"]["containers"][0].erase("securityContext");
  json d = PrepareRestoredPod(pod, "app", "bk", "rs", "ruid", {"data"}, helper);
  EXPECT_EQ(d["spec"]["initContainers"][0]["securityContext"]["runAsNonRoot"], true);
  EXPECT_EQ(d["spec"]["initContainers"][0]["securityContext"]["capabilities"]["drop"],
            json::array({"ALL"}));
  // Nothing to restore: no init container.
  json none = PrepareRestoredPod(pod, "app", "bk", "rs", "ruid", {}, helper);
  EXPECT_EQ(none["spec"]["initContainers"].size(), 2u);
}

TEST(RestoreControllerTest, PvcLosesItsBinding) {
  json pvc = {{"metadata",
               {{"name", "c"},
                {"namespace", "app"},
                {"uid", "u"},
                {"annotations",
                 {{"pv.kubernetes.io/bind-completed", "yes"},
                  {"pv.kubernetes.io/bound-by-controller", "yes"},
                  {"volume.kubernetes.io/selected-node", "node-a"},
                  {"keep", "me"}}}}},
              {"spec", {{"volumeName", "pv-1"}, {"storageClassName", "fast"}}},
              {"status", {{"phase", "Bound"}}}};
  json out = PrepareRestoredPvc(pvc, "app", "bk", "rs");
  EXPECT_FALSE(out["spec"].contains("volumeName"));
  EXPECT_EQ(out["spec"]["storageClassName"], "fast");
  EXPECT_EQ(out["metadata"]["annotations"], (json{{"keep", "me"}}));
  EXPECT_FALSE(out.contains("status"));
  EXPECT_FALSE(out["metadata"].contains("uid"));
}

TEST(RestoreControllerTest, SpecValidation) {
  auto errs = [](json spec) {
    json r = {{"metadata", {{"name", "r"}}}, {"spec", spec}};
    std::string all;
    for (const std::string& e : ValidateRestoreSpec(*kube::velero::ParseRestore(r))) all += e;
    return all;
  };
  EXPECT_THAT(errs(json::object()), HasSubstr("Either a backup or schedule"));
  EXPECT_THAT(errs({{"backupName", "a"}, {"scheduleName", "b"}}), HasSubstr("but not both"));
  EXPECT_THAT(errs({{"backupName", "a"}, {"existingResourcePolicy", "replace"}}),
              HasSubstr("Invalid existing resource policy"));
  EXPECT_EQ(errs({{"backupName", "a"}, {"existingResourcePolicy", "update"}}), "");
}

TEST(CommonTest, ClaimRules) {
  kube::ObjectMeta m;
  EXPECT_FALSE(ClaimedByFsb(m, false));
  EXPECT_TRUE(ClaimedByFsb(m, true));
  m.labels["fsb.velero.io/coordinator"] = "true";
  EXPECT_TRUE(ClaimedByFsb(m, false));
  EXPECT_FALSE(HandledByFsb(m));
  m.annotations["fsb.velero.io/handled-by"] = "fsb-coordinator";
  EXPECT_TRUE(HandledByFsb(m));
}

}  // namespace
}  // namespace fsb::coordinator
