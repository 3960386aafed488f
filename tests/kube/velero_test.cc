#include "kube/velero.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace fsb::kube::velero {
namespace {

using ::testing::HasSubstr;

Object Set(Object o, std::initializer_list<std::string_view> path, Object value) {
  Object* cur = &o;
  for (std::string_view p : path) cur = &(*cur)[std::string(p)];
  *cur = std::move(value);
  return o;
}

// ---- PodVolumeBackup

Object PvbJson() {
  return {{"apiVersion", "velero.io/v1"},
          {"kind", "PodVolumeBackup"},
          {"metadata",
           {{"name", "b1-x7"},
            {"namespace", "velero"},
            {"uid", "pvb-uid"},
            {"labels", {{"velero.io/backup-name", "b1"}, {"velero.io/pvc-uid", "c-uid"}}},
            {"ownerReferences",
             {{{"apiVersion", "velero.io/v1"},
               {"kind", "Backup"},
               {"name", "b1"},
               {"uid", "b1-uid"},
               {"controller", true}}}}}},
          {"spec",
           {{"node", "node-a"},
            {"pod", {{"kind", "Pod"}, {"namespace", "app"}, {"name", "web"}, {"uid", "pod-uid"}}},
            {"volume", "data"},
            {"backupStorageLocation", "default"},
            {"repoIdentifier", "s3:http://minio:9000/velero/restic/app"},
            {"uploaderType", "restic"},
            {"tags", {{"backup", "b1"}, {"volume", "data"}}},
            {"uploaderSettings", {{"k", "v"}}},
            {"cancel", true}}},
          {"status",
           {{"phase", "Completed"},
            {"message", "ok"},
            {"snapshotID", "abcd1234"},
            {"path", "/host_pods/pod-uid/volumes/kubernetes.io~empty-dir/data"},
            {"startTimestamp", "2026-11-26T10:04:05Z"},
            {"completionTimestamp", "2026-11-26T10:05:05Z"},
            {"progress", {{"totalBytes", 1000}, {"bytesDone", 600}}}}}};
}

TEST(ParsePodVolumeBackupTest, ReadsEveryField) {
  Result<PodVolumeBackup> b = ParsePodVolumeBackup(PvbJson());
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->meta.Key(), "velero/b1-x7");
  EXPECT_EQ(b->meta.labels.at(std::string(kLabelPvcUid)), "c-uid");
  ASSERT_NE(b->meta.Controller(), nullptr);
  EXPECT_EQ(b->meta.Controller()->uid, "b1-uid");
  EXPECT_EQ(b->node, "node-a");
  EXPECT_EQ(b->pod.kind, "Pod");
  EXPECT_EQ(b->pod.ns, "app");
  EXPECT_EQ(b->pod.name, "web");
  EXPECT_EQ(b->pod.uid, "pod-uid");
  EXPECT_EQ(b->volume, "data");
  EXPECT_EQ(b->backup_storage_location, "default");
  EXPECT_EQ(b->repo_identifier, "s3:http://minio:9000/velero/restic/app");
  EXPECT_EQ(b->uploader_type, "restic");
  EXPECT_EQ(b->tags.at("volume"), "data");
  EXPECT_EQ(b->uploader_settings.at("k"), "v");
  EXPECT_TRUE(b->cancel);
  EXPECT_EQ(b->phase, "Completed");
  EXPECT_EQ(b->message, "ok");
  EXPECT_EQ(b->snapshot_id, "abcd1234");
  EXPECT_EQ(b->path, "/host_pods/pod-uid/volumes/kubernetes.io~empty-dir/data");
  EXPECT_EQ(b->start_timestamp, "2026-11-26T10:04:05Z");
  EXPECT_EQ(b->completion_timestamp, "2026-11-26T10:05:05Z");
  EXPECT_EQ(b->progress.total_bytes, 1000);
  EXPECT_EQ(b->progress.bytes_done, 600);
}

TEST(ParsePodVolumeBackupTest, NewObjectHasEmptyStatus) {
  Object o = PvbJson();
  o.erase("status");
  Result<PodVolumeBackup> b = ParsePodVolumeBackup(o);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->phase, "");
  EXPECT_FALSE(b->start_timestamp.has_value());
  EXPECT_FALSE(b->completion_timestamp.has_value());
  EXPECT_EQ(b->progress.total_bytes, 0);
}

void ExpectPvbError(const Object& obj, const std::string& field) {
  Result<PodVolumeBackup> b = ParsePodVolumeBackup(obj);
  ASSERT_FALSE(b.ok()) << "accepted " << obj.dump();
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(), HasSubstr(field));
  EXPECT_THAT(b.status().message(), HasSubstr("podvolumebackup velero/b1-x7"));
}

TEST(ParsePodVolumeBackupTest, WrongTypesNameTheField) {
  ExpectPvbError(Set(PvbJson(), {"spec", "node"}, 1), "spec.node");
  ExpectPvbError(Set(PvbJson(), {"spec", "volume"}, Object::array()), "spec.volume");
  ExpectPvbError(Set(PvbJson(), {"spec", "cancel"}, "true"), "spec.cancel");
  ExpectPvbError(Set(PvbJson(), {"spec", "tags"}, {{"a", 1}}), "spec.tags");
  ExpectPvbError(Set(PvbJson(), {"spec", "uploaderSettings"}, "x"), "spec.uploaderSettings");
  ExpectPvbError(Set(PvbJson(), {"spec", "pod", "uid"}, 5), "uid");
  ExpectPvbError(Set(PvbJson(), {"spec", "pod"}, "app/web"), "spec.pod");
  ExpectPvbError(Set(PvbJson(), {"status", "progress", "totalBytes"}, "1000"),
                 "status.progress.totalBytes");
  ExpectPvbError(Set(PvbJson(), {"status", "progress", "bytesDone"}, 1.5),
                 "status.progress.bytesDone");
  ExpectPvbError(Set(PvbJson(), {"status", "startTimestamp"}, 0), "status.startTimestamp");
  ExpectPvbError(Set(PvbJson(), {"status"}, "Completed"), "status");
  ExpectPvbError(Set(PvbJson(), {"metadata", "labels"}, {{"a", 1}}), "metadata.labels");
}

TEST(ParsePodVolumeBackupTest, NotAnObject) {
  Result<PodVolumeBackup> b = ParsePodVolumeBackup(Object::array());
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(), HasSubstr("podvolumebackup"));
}

// ---- PodVolumeRestore

Object PvrJson() {
  return {{"metadata",
           {{"name", "r1-x"},
            {"namespace", "velero"},
            {"labels", {{"velero.io/pod-uid", "new-pod"}}},
            {"ownerReferences",
             {{{"apiVersion", "velero.io/v1"},
               {"kind", "Restore"},
               {"name", "r1"},
               {"uid", "r1-uid"},
               {"controller", true}}}}}},
          {"spec",
           {{"pod", {{"kind", "Pod"}, {"namespace", "app2"}, {"name", "web"}, {"uid", "new-pod"}}},
            {"volume", "data"},
            {"backupStorageLocation", "default"},
            {"repoIdentifier", ""},
            {"uploaderType", "restic"},
            {"snapshotID", "abcd1234"},
            {"sourceNamespace", "app"},
            {"uploaderSettings", {{"writeSparseFiles", "true"}}},
            {"cancel", false}}},
          {"status",
           {{"phase", "InProgress"},
            {"startTimestamp", "2026-11-26T10:04:05Z"},
            {"progress", {{"totalBytes", 10}, {"bytesDone", 3}}}}}};
}

TEST(ParsePodVolumeRestoreTest, ReadsEveryField) {
  Result<PodVolumeRestore> r = ParsePodVolumeRestore(PvrJson());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->meta.Key(), "velero/r1-x");
  EXPECT_EQ(r->meta.Controller()->uid, "r1-uid");
  EXPECT_EQ(r->pod.ns, "app2");
  EXPECT_EQ(r->pod.uid, "new-pod");
  EXPECT_EQ(r->volume, "data");
  EXPECT_EQ(r->backup_storage_location, "default");
  EXPECT_EQ(r->repo_identifier, "");
  EXPECT_EQ(r->uploader_type, "restic");
  EXPECT_EQ(r->snapshot_id, "abcd1234");
  EXPECT_EQ(r->source_namespace, "app");
  EXPECT_EQ(r->uploader_settings.at("writeSparseFiles"), "true");
  EXPECT_FALSE(r->cancel);
  EXPECT_EQ(r->phase, "InProgress");
  EXPECT_EQ(r->start_timestamp, "2026-11-26T10:04:05Z");
  EXPECT_FALSE(r->completion_timestamp.has_value());
  EXPECT_EQ(r->progress.total_bytes, 10);
  EXPECT_EQ(r->progress.bytes_done, 3);
}

TEST(ParsePodVolumeRestoreTest, WrongTypesNameTheField) {
  for (const auto& [obj, field] : std::vector<std::pair<Object, std::string>>{
           {Set(PvrJson(), {"spec", "snapshotID"}, 1), "spec.snapshotID"},
           {Set(PvrJson(), {"spec", "sourceNamespace"}, true), "spec.sourceNamespace"},
           {Set(PvrJson(), {"spec", "cancel"}, 1), "spec.cancel"},
           {Set(PvrJson(), {"spec", "pod"}, Object::array()), "spec.pod"},
           {Set(PvrJson(), {"status", "message"}, {{"a", "b"}}), "status.message"},
           {Set(PvrJson(), {"status", "completionTimestamp"}, 3), "status.completionTimestamp"},
       }) {
    Result<PodVolumeRestore> r = ParsePodVolumeRestore(obj);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(field));
    EXPECT_THAT(r.status().message(), HasSubstr("podvolumerestore velero/r1-x"));
  }
  EXPECT_FALSE(ParsePodVolumeRestore("x").ok());
}

// ---- BackupStorageLocation

Object BslJson() {
  return {{"metadata", {{"name", "default"}, {"namespace", "velero"}}},
          {"spec",
           {{"provider", "aws"},
            {"objectStorage",
             {{"bucket", "velero"}, {"prefix", "cluster-1"}, {"caCert", "LS0tLS1CRUdJTg=="}}},
            {"config", {{"region", "minio"}, {"s3Url", "http://minio:9000"}}},
            {"credential", {{"name", "bsl-creds"}, {"key", "cloud"}}},
            {"accessMode", "ReadOnly"}}},
          {"status", {{"phase", "Available"}}}};
}

TEST(ParseBackupStorageLocationTest, ReadsEveryField) {
  Result<BackupStorageLocation> l = ParseBackupStorageLocation(BslJson());
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->meta.Key(), "velero/default");
  EXPECT_EQ(l->provider, "aws");
  EXPECT_EQ(l->bucket, "velero");
  EXPECT_EQ(l->prefix, "cluster-1");
  EXPECT_EQ(l->ca_cert, "-----BEGIN");
  EXPECT_EQ(l->config.at("s3Url"), "http://minio:9000");
  EXPECT_EQ(l->credential_secret, "bsl-creds");
  EXPECT_EQ(l->credential_key, "cloud");
  EXPECT_EQ(l->access_mode, "ReadOnly");
  EXPECT_EQ(l->phase, "Available");
}

TEST(ParseBackupStorageLocationTest, ProviderIsRequired) {
  Object o = BslJson();
  o["spec"].erase("provider");
  Result<BackupStorageLocation> l = ParseBackupStorageLocation(o);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(l.status().message(), HasSubstr("spec.provider"));
  EXPECT_THAT(l.status().message(), HasSubstr("backupstoragelocation velero/default"));
}

TEST(ParseBackupStorageLocationTest, CaCertNotBase64) {
  Result<BackupStorageLocation> l =
      ParseBackupStorageLocation(Set(BslJson(), {"spec", "objectStorage", "caCert"}, "-----"));
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(l.status().message(), HasSubstr("spec.objectStorage.caCert"));
}

TEST(ParseBackupStorageLocationTest, WrongTypesNameTheField) {
  for (const auto& [obj, field] : std::vector<std::pair<Object, std::string>>{
           {Set(BslJson(), {"spec", "provider"}, 1), "spec.provider"},
           {Set(BslJson(), {"spec", "objectStorage"}, "velero"), "spec.objectStorage"},
           {Set(BslJson(), {"spec", "objectStorage", "bucket"}, 1), "spec.objectStorage.bucket"},
           {Set(BslJson(), {"spec", "config"}, {{"region", 1}}), "spec.config"},
           {Set(BslJson(), {"spec", "credential", "key"}, false), "spec.credential.key"},
           {Set(BslJson(), {"spec", "accessMode"}, Object::array()), "spec.accessMode"},
       }) {
    Result<BackupStorageLocation> l = ParseBackupStorageLocation(obj);
    ASSERT_FALSE(l.ok()) << field;
    EXPECT_EQ(l.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(l.status().message(), HasSubstr(field));
  }
}

// ---- BackupRepository

TEST(ParseBackupRepositoryTest, ReadsEveryField) {
  Result<BackupRepository> r = ParseBackupRepository(
      {{"metadata", {{"name", "app-default-restic"}, {"namespace", "velero"}}},
       {"spec",
        {{"volumeNamespace", "app"},
         {"backupStorageLocation", "default"},
         {"repositoryType", "restic"},
         {"resticIdentifier", "/repos/app"},
         {"maintenanceFrequency", "168h0m0s"}}},
       {"status",
        {{"phase", "Ready"}, {"message", ""}, {"lastMaintenanceTime", "2026-11-26T10:04:05Z"}}}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->volume_namespace, "app");
  EXPECT_EQ(r->backup_storage_location, "default");
  EXPECT_EQ(r->repository_type, "restic");
  EXPECT_EQ(r->restic_identifier, "/repos/app");
  EXPECT_EQ(r->maintenance_frequency, "168h0m0s");
  EXPECT_EQ(r->phase, "Ready");
  EXPECT_EQ(r->last_maintenance_time, "2026-11-26T10:04:05Z");
}

TEST(ParseBackupRepositoryTest, WrongTypesNameTheField) {
  Result<BackupRepository> r = ParseBackupRepository(
      {{"metadata", {{"name", "r"}, {"namespace", "velero"}}}, {"spec", {{"volumeNamespace", 3}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("spec.volumeNamespace"));
  EXPECT_THAT(r.status().message(), HasSubstr("backuprepository velero/r"));
  Result<BackupRepository> s = ParseBackupRepository(
      {{"metadata", {{"name", "r"}, {"namespace", "velero"}}}, {"status", {{"phase", 1}}}});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("status.phase"));
  EXPECT_FALSE(ParseBackupRepository(nullptr).ok());
}

TEST(IsFinalPhaseTest, CompletedFailedCanceled) {
  EXPECT_TRUE(IsFinalPhase(kPhaseCompleted));
  EXPECT_TRUE(IsFinalPhase(kPhaseFailed));
  EXPECT_TRUE(IsFinalPhase(kPhaseCanceled));
  EXPECT_FALSE(IsFinalPhase(""));
  EXPECT_FALSE(IsFinalPhase(kPhaseNew));
  EXPECT_FALSE(IsFinalPhase(kPhaseInProgress));
  EXPECT_FALSE(IsFinalPhase(kPhaseCanceling));
}

// ---- RepoIdentifier (velero-fs-backup.md §4.3)

BackupStorageLocation Bsl(std::string provider, std::string bucket, std::string prefix,
                          std::map<std::string, std::string> config) {
  BackupStorageLocation l;
  l.meta.name = "loc";
  l.meta.ns = "velero";
  l.provider = std::move(provider);
  l.bucket = std::move(bucket);
  l.prefix = std::move(prefix);
  l.config = std::move(config);
  return l;
}

std::string Id(const BackupStorageLocation& l, std::string_view ns = "app-ns") {
  Result<std::string> id = RepoIdentifier(l, ns);
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  return id.ok() ? *id : "<" + id.status().ToString() + ">";
}

TEST(RepoIdentifierTest, ResticRepoPrefixWinsForAnyProvider) {
  EXPECT_EQ(Id(Bsl("velero.io/fs", "", "", {{"resticRepoPrefix", "/var/repos"}})),
            "/var/repos/app-ns");
  EXPECT_EQ(Id(Bsl("aws", "b", "p", {{"resticRepoPrefix", "s3:http://h/b/x"}, {"s3Url", "u"}})),
            "s3:http://h/b/x/app-ns");
  EXPECT_EQ(Id(Bsl("example.com/custom", "", "", {{"resticRepoPrefix", "/r"}})), "/r/app-ns");
}

TEST(RepoIdentifierTest, ResticRepoPrefixTrailingSlashesTrimmed) {
  EXPECT_EQ(Id(Bsl("velero.io/fs", "", "", {{"resticRepoPrefix", "/var/repos/"}})),
            "/var/repos/app-ns");
  EXPECT_EQ(Id(Bsl("velero.io/fs", "", "", {{"resticRepoPrefix", "/var/repos///"}})),
            "/var/repos/app-ns");
  EXPECT_EQ(Id(Bsl("velero.io/fs", "", "", {{"resticRepoPrefix", "/"}})), "/app-ns");
}

TEST(RepoIdentifierTest, AwsWithS3Url) {
  EXPECT_EQ(Id(Bsl("aws", "velero", "", {{"s3Url", "http://minio:9000"}})),
            "s3:http://minio:9000/velero/restic/app-ns");
  EXPECT_EQ(Id(Bsl("velero.io/aws", "velero", "", {{"s3Url", "http://minio:9000/"}})),
            "s3:http://minio:9000/velero/restic/app-ns");
}

TEST(RepoIdentifierTest, AwsWithS3UrlAndPrefix) {
  EXPECT_EQ(Id(Bsl("aws", "velero", "cluster-1", {{"s3Url", "https://s3.example.com/"}})),
            "s3:https://s3.example.com/velero/cluster-1/restic/app-ns");
  // Velero's layout cleans the prefix (path.Join): no doubled or leading slashes.
  EXPECT_EQ(Id(Bsl("aws", "velero", "cluster-1/", {{"s3Url", "http://m"}})),
            "s3:http://m/velero/cluster-1/restic/app-ns");
  EXPECT_EQ(Id(Bsl("aws", "velero", "/a//b/", {{"s3Url", "http://m"}})),
            "s3:http://m/velero/a/b/restic/app-ns");
}

TEST(RepoIdentifierTest, AwsWithRegion) {
  EXPECT_EQ(Id(Bsl("aws", "bucket", "prefix", {{"region", "eu-west-1"}}), "repo-1"),
            "s3:s3-eu-west-1.amazonaws.com/bucket/prefix/restic/repo-1");
  EXPECT_EQ(Id(Bsl("velero.io/aws", "bucket", "", {{"region", "us-east-2"}})),
            "s3:s3-us-east-2.amazonaws.com/bucket/restic/app-ns");
}

TEST(RepoIdentifierTest, AwsWithoutRegionOrS3UrlIsInvalidNamingTheLocation) {
  Result<std::string> id = RepoIdentifier(Bsl("aws", "bucket", "", {}), "app-ns");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("velero/loc"));
  EXPECT_THAT(id.status().message(), HasSubstr("region"));
}

TEST(RepoIdentifierTest, Azure) {
  EXPECT_EQ(Id(Bsl("azure", "azure-bucket", "azure-prefix", {}), "azure-repo"),
            "azure:azure-bucket:/azure-prefix/restic/azure-repo");
  EXPECT_EQ(Id(Bsl("velero.io/azure", "b", "", {})), "azure:b:/restic/app-ns");
}

TEST(RepoIdentifierTest, Gcp) {
  EXPECT_EQ(Id(Bsl("gcp", "gcp-bucket", "gcp-prefix", {}), "gcp-repo"),
            "gs:gcp-bucket:/gcp-prefix/restic/gcp-repo");
  EXPECT_EQ(Id(Bsl("velero.io/gcp", "b", "", {})), "gs:b:/restic/app-ns");
}

TEST(RepoIdentifierTest, FsWithoutPrefixIsInvalidNamingTheLocation) {
  for (const BackupStorageLocation& l :
       {Bsl("velero.io/fs", "bucket", "", {}), Bsl("fs", "", "", {}),
        // fs is a known backend type: s3Url does not make it AWS (Velero's GetBackendType).
        Bsl("velero.io/fs", "bucket", "", {{"s3Url", "http://minio:9000"}})}) {
    Result<std::string> id = RepoIdentifier(l, "app-ns");
    ASSERT_FALSE(id.ok()) << *id;
    EXPECT_EQ(id.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(id.status().message(), HasSubstr("backupstoragelocation velero/loc"));
    EXPECT_THAT(id.status().message(), HasSubstr("invalid backend type"));
    EXPECT_THAT(id.status().message(), HasSubstr("resticRepoPrefix"));
  }
}

TEST(RepoIdentifierTest, ProviderWithoutSlashGetsVeleroPrefix) {
  // "aws" and "velero.io/aws" are the same backend; "example.com/aws" is not.
  EXPECT_EQ(Id(Bsl("aws", "b", "", {{"region", "r"}})),
            Id(Bsl("velero.io/aws", "b", "", {{"region", "r"}})));
  Result<std::string> other =
      RepoIdentifier(Bsl("example.com/aws", "b", "", {{"region", "r"}}), "app-ns");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(other.status().message(), HasSubstr("example.com/aws"));
}

TEST(RepoIdentifierTest, UnknownProviderWithS3UrlCountsAsAws) {
  EXPECT_EQ(Id(Bsl("example.com/minio", "velero", "p", {{"s3Url", "http://minio:9000/"}})),
            "s3:http://minio:9000/velero/p/restic/app-ns");
  EXPECT_EQ(Id(Bsl("minio", "velero", "", {{"s3Url", "http://minio:9000"}})),
            "s3:http://minio:9000/velero/restic/app-ns");
}

TEST(RepoIdentifierTest, KnownNonAwsProviderKeepsItsTypeDespiteS3Url) {
  // GetBackendType: a valid backend type is kept; only an unknown one with s3Url becomes AWS.
  EXPECT_EQ(Id(Bsl("azure", "b", "", {{"s3Url", "http://minio:9000"}})), "azure:b:/restic/app-ns");
  EXPECT_EQ(Id(Bsl("velero.io/gcp", "b", "", {{"s3Url", "http://minio:9000"}})),
            "gs:b:/restic/app-ns");
}

TEST(RepoIdentifierTest, UnknownProviderWithoutS3UrlIsInvalid) {
  Result<std::string> id = RepoIdentifier(Bsl("example.com/x", "b", "", {}), "app-ns");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("velero/loc"));
}

TEST(RepoIdentifierTest, MissingBucketIsInvalid) {
  Result<std::string> id = RepoIdentifier(Bsl("aws", "", "", {{"s3Url", "http://m"}}), "app-ns");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("bucket"));
  EXPECT_THAT(id.status().message(), HasSubstr("velero/loc"));
}

TEST(RepoIdentifierTest, EmptyConfigValuesCountAsUnset) {
  EXPECT_EQ(Id(Bsl("aws", "b", "", {{"resticRepoPrefix", ""}, {"s3Url", ""}, {"region", "r"}})),
            "s3:s3-r.amazonaws.com/b/restic/app-ns");
}

}  // namespace
}  // namespace fsb::kube::velero
