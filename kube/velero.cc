#include "kube/velero.h"

#include <fmt/format.h>

#include "base/bytes.h"
#include "kube/internal/fields.h"

namespace fsb::kube::velero {

using internal::Fields;

bool IsFinalPhase(std::string_view phase) {
  return phase == kPhaseCompleted || phase == kPhaseFailed || phase == kPhaseCanceled;
}

namespace {

std::string Describe(const Object& obj, std::string_view kind) {
  Result<ObjectMeta> m = ParseMeta(obj);
  return fmt::format("{} {}", kind, m.ok() ? m->Key() : std::string("?"));
}

ObjectReference ReadRef(Fields& f, Fields::Path path) {
  const Object* r = f.Find(path);
  ObjectReference ref;
  if (!r) return ref;
  Fields rf(*r, f.what() + ": spec.pod");
  ref.kind = rf.Str({"kind"});
  ref.ns = rf.Str({"namespace"});
  ref.name = rf.Str({"name"});
  ref.uid = rf.Str({"uid"});
  f.Absorb(rf);
  return ref;
}

Progress ReadProgress(Fields& f) {
  Progress p;
  p.total_bytes = f.Int({"status", "progress", "totalBytes"});
  p.bytes_done = f.Int({"status", "progress", "bytesDone"});
  return p;
}

std::optional<std::string> OptStr(Fields& f, Fields::Path path) {
  std::string s = f.Str(path);
  if (s.empty()) return std::nullopt;
  return s;
}

Status Require(const Fields& f,
               std::initializer_list<std::pair<std::string_view, const std::string*>> fields) {
  for (const auto& [name, value] : fields) {
    if (value->empty())
      return Status::InvalidArgument(fmt::format("{}: {} is required", f.what(), name));
  }
  return Status::Ok();
}

}  // namespace

Result<PodVolumeBackup> ParsePodVolumeBackup(const Object& obj) {
  if (!obj.is_object()) return Status::InvalidArgument("podvolumebackup: not a JSON object");
  Fields f(obj, Describe(obj, "podvolumebackup"));
  PodVolumeBackup b;
  FSB_ASSIGN_OR_RETURN(b.meta, ParseMeta(obj));
  b.node = f.Str({"spec", "node"});
  b.pod = ReadRef(f, {"spec", "pod"});
  b.volume = f.Str({"spec", "volume"});
  b.backup_storage_location = f.Str({"spec", "backupStorageLocation"});
  b.repo_identifier = f.Str({"spec", "repoIdentifier"});
  b.uploader_type = f.Str({"spec", "uploaderType"});
  b.tags = f.StrMap({"spec", "tags"});
  b.uploader_settings = f.StrMap({"spec", "uploaderSettings"});
  b.cancel = f.Bool({"spec", "cancel"});
  b.phase = f.Str({"status", "phase"});
  b.message = f.Str({"status", "message"});
  b.snapshot_id = f.Str({"status", "snapshotID"});
  b.path = f.Str({"status", "path"});
  b.start_timestamp = OptStr(f, {"status", "startTimestamp"});
  b.completion_timestamp = OptStr(f, {"status", "completionTimestamp"});
  b.progress = ReadProgress(f);
  FSB_RETURN_IF_ERROR(f.status());
  return b;
}

Result<PodVolumeRestore> ParsePodVolumeRestore(const Object& obj) {
  if (!obj.is_object()) return Status::InvalidArgument("podvolumerestore: not a JSON object");
  Fields f(obj, Describe(obj, "podvolumerestore"));
  PodVolumeRestore r;
  FSB_ASSIGN_OR_RETURN(r.meta, ParseMeta(obj));
  r.pod = ReadRef(f, {"spec", "pod"});
  r.volume = f.Str({"spec", "volume"});
  r.backup_storage_location = f.Str({"spec", "backupStorageLocation"});
  r.repo_identifier = f.Str({"spec", "repoIdentifier"});
  r.uploader_type = f.Str({"spec", "uploaderType"});
  r.snapshot_id = f.Str({"spec", "snapshotID"});
  r.source_namespace = f.Str({"spec", "sourceNamespace"});
  r.uploader_settings = f.StrMap({"spec", "uploaderSettings"});
  r.cancel = f.Bool({"spec", "cancel"});
  r.phase = f.Str({"status", "phase"});
  r.message = f.Str({"status", "message"});
  r.start_timestamp = OptStr(f, {"status", "startTimestamp"});
  r.completion_timestamp = OptStr(f, {"status", "completionTimestamp"});
  r.progress = ReadProgress(f);
  FSB_RETURN_IF_ERROR(f.status());
  return r;
}

Result<BackupStorageLocation> ParseBackupStorageLocation(const Object& obj) {
  if (!obj.is_object()) return Status::InvalidArgument("backupstoragelocation: not a JSON object");
  Fields f(obj, Describe(obj, "backupstoragelocation"));
  BackupStorageLocation l;
  FSB_ASSIGN_OR_RETURN(l.meta, ParseMeta(obj));
  l.provider = f.Str({"spec", "provider"});
  l.bucket = f.Str({"spec", "objectStorage", "bucket"});
  l.prefix = f.Str({"spec", "objectStorage", "prefix"});
  const std::string ca = f.Str({"spec", "objectStorage", "caCert"});
  l.config = f.StrMap({"spec", "config"});
  l.credential_secret = f.Str({"spec", "credential", "name"});
  l.credential_key = f.Str({"spec", "credential", "key"});
  l.access_mode = f.Str({"spec", "accessMode"});
  l.phase = f.Str({"status", "phase"});
  FSB_RETURN_IF_ERROR(f.status());
  FSB_RETURN_IF_ERROR(Require(f, {{"spec.provider", &l.provider}}));
  if (!ca.empty()) {
    Result<Bytes> pem = Base64Decode(ca);
    if (!pem.ok())
      return Status::InvalidArgument(f.what() + ": spec.objectStorage.caCert: not base64");
    l.ca_cert.assign(pem->begin(), pem->end());
  }
  return l;
}

Result<BackupRepository> ParseBackupRepository(const Object& obj) {
  if (!obj.is_object()) return Status::InvalidArgument("backuprepository: not a JSON object");
  Fields f(obj, Describe(obj, "backuprepository"));
  BackupRepository r;
  FSB_ASSIGN_OR_RETURN(r.meta, ParseMeta(obj));
  r.volume_namespace = f.Str({"spec", "volumeNamespace"});
  r.backup_storage_location = f.Str({"spec", "backupStorageLocation"});
  r.repository_type = f.Str({"spec", "repositoryType"});
  r.restic_identifier = f.Str({"spec", "resticIdentifier"});
  r.maintenance_frequency = f.Str({"spec", "maintenanceFrequency"});
  r.phase = f.Str({"status", "phase"});
  r.message = f.Str({"status", "message"});
  r.last_maintenance_time = OptStr(f, {"status", "lastMaintenanceTime"});
  FSB_RETURN_IF_ERROR(f.status());
  return r;
}

Result<std::string> RepoIdentifier(const BackupStorageLocation& bsl,
                                   std::string_view volume_namespace) {
  const std::string what = "backupstoragelocation " + bsl.meta.Key();
  auto cfg = [&](const char* key) -> std::string {
    auto it = bsl.config.find(key);
    return it == bsl.config.end() ? std::string() : it->second;
  };
  if (std::string prefix = cfg("resticRepoPrefix"); !prefix.empty()) {
    while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
    return fmt::format("{}/{}", prefix, volume_namespace);
  }
  std::string provider = bsl.provider;
  if (provider.find('/') == std::string::npos) provider = "velero.io/" + provider;
  const std::string s3_url = cfg("s3Url");
  if (bsl.bucket.empty())
    return Status::InvalidArgument(what + ": spec.objectStorage.bucket is required");
  std::string path = bsl.prefix.empty() ? "restic" : bsl.prefix + "/restic";
  while (!path.empty() && path.front() == '/') path.erase(path.begin());
  if (provider == "velero.io/aws" || !s3_url.empty()) {
    if (!s3_url.empty()) {
      std::string url = s3_url;
      while (!url.empty() && url.back() == '/') url.pop_back();
      return fmt::format("s3:{}/{}/{}/{}", url, bsl.bucket, path, volume_namespace);
    }
    const std::string region = cfg("region");
    if (region.empty()) {
      return Status::InvalidArgument(
          what + ": config.region (or config.s3Url) is required to locate the bucket");
    }
    return fmt::format("s3:s3-{}.amazonaws.com/{}/{}/{}", region, bsl.bucket, path,
                       volume_namespace);
  }
  if (provider == "velero.io/azure")
    return fmt::format("azure:{}:/{}/{}", bsl.bucket, path, volume_namespace);
  if (provider == "velero.io/gcp")
    return fmt::format("gs:{}:/{}/{}", bsl.bucket, path, volume_namespace);
  return Status::InvalidArgument(
      fmt::format("{}: invalid backend type {}: set config.resticRepoPrefix (e.g. a local "
                  "directory) or config.s3Url",
                  what, bsl.provider));
}

}  // namespace fsb::kube::velero
