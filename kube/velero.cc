#include "kube/velero.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "base/bytes.h"
#include "base/go_duration.h"
#include "kube/internal/fields.h"

namespace fsb::kube::velero {

using internal::Describe;
using internal::Fields;
using internal::ReadMeta;

bool IsFinalPhase(std::string_view phase) {
  return phase == kPhaseCompleted || phase == kPhaseFailed || phase == kPhaseCanceled;
}

namespace {

ObjectReference ReadRef(Fields& f, Fields::Path path) {
  const Object* r = f.Obj(path);
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
  b.meta = ReadMeta(f);
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
  r.meta = ReadMeta(f);
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
  l.meta = ReadMeta(f);
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
  r.meta = ReadMeta(f);
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

namespace {

// `*err` gets the first shape error the Fields reader cannot express (a selector that is not an
// object).
std::optional<LabelSelector> ReadSelector(Fields& f, Fields::Path path, const std::string& name,
                                          Status* err) {
  const Object* o = f.Find(path);
  if (!o) return std::nullopt;
  Fields sf(*o, f.what() + ": " + name);
  if (!o->is_object()) {
    if (err->ok()) {
      *err = Status::InvalidArgument(
          fmt::format("{}: {}: want an object, got {}", f.what(), name, o->type_name()));
    }
    return std::nullopt;
  }
  LabelSelector sel;
  sel.match_labels = sf.StrMap({"matchLabels"});
  sf.ForEach({"matchExpressions"}, [&](const Object& e) {
    Fields ef(e, sf.what() + ".matchExpressions");
    LabelSelectorRequirement r;
    r.key = ef.Str({"key"});
    r.op = ef.Str({"operator"});
    r.values = ef.StrList({"values"});
    sf.Absorb(ef);
    sel.match_expressions.push_back(std::move(r));
  });
  f.Absorb(sf);
  return sel;
}

std::vector<LabelSelector> ReadSelectors(Fields& f, Fields::Path path, const std::string& name,
                                         Status* err) {
  std::vector<LabelSelector> out;
  f.ForEach(path, [&](const Object& e) {
    Fields ef(e, f.what());
    std::optional<LabelSelector> s = ReadSelector(ef, {}, name, err);
    f.Absorb(ef);
    if (s) out.push_back(std::move(*s));
  });
  return out;
}

std::optional<bool> OptBool(Fields& f, Fields::Path path) {
  const Object* o = f.Find(path);
  if (!o) return std::nullopt;
  return f.Bool(path);
}

}  // namespace

Status LabelSelector::Validate() const {
  for (const LabelSelectorRequirement& r : match_expressions) {
    if (r.key.empty()) return Status::InvalidArgument("label selector: an expression has no key");
    if (r.op == "In" || r.op == "NotIn") {
      if (r.values.empty()) {
        return Status::InvalidArgument(fmt::format(
            "label selector: key {}: for 'in', 'notin' operators, values set can't be empty",
            r.key));
      }
    } else if (r.op == "Exists" || r.op == "DoesNotExist") {
      if (!r.values.empty()) {
        return Status::InvalidArgument(fmt::format(
            "label selector: key {}: values set must be empty for exists and does not exist",
            r.key));
      }
    } else {
      return Status::InvalidArgument(fmt::format(
          "label selector: key {}: \"{}\" is not a valid label selector operator", r.key, r.op));
    }
  }
  return Status::Ok();
}

bool LabelSelector::Matches(const Labels& labels) const {
  for (const auto& [k, v] : match_labels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  for (const LabelSelectorRequirement& r : match_expressions) {
    auto it = labels.find(r.key);
    const bool has = it != labels.end();
    const bool in =
        has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end();
    if (r.op == "In" && !in) return false;
    if (r.op == "NotIn" && in) return false;
    if (r.op == "Exists" && !has) return false;
    if (r.op == "DoesNotExist" && has) return false;
  }
  return true;
}

Result<Backup> ParseBackup(const Object& obj) {
  if (!obj.is_object()) return Status::InvalidArgument("backup: not a JSON object");
  Fields f(obj, Describe(obj, "backup"));
  Backup b;
  FSB_ASSIGN_OR_RETURN(b.meta, ParseMeta(obj));
  b.included_namespaces = f.StrList({"spec", "includedNamespaces"});
  b.excluded_namespaces = f.StrList({"spec", "excludedNamespaces"});
  b.included_resources = f.StrList({"spec", "includedResources"});
  b.excluded_resources = f.StrList({"spec", "excludedResources"});
  Status shape;
  b.label_selector = ReadSelector(f, {"spec", "labelSelector"}, "spec.labelSelector", &shape);
  b.or_label_selectors =
      ReadSelectors(f, {"spec", "orLabelSelectors"}, "spec.orLabelSelectors", &shape);
  b.default_volumes_to_fs_backup = OptBool(f, {"spec", "defaultVolumesToFsBackup"});
  b.default_volumes_to_restic = OptBool(f, {"spec", "defaultVolumesToRestic"});
  b.storage_location = f.Str({"spec", "storageLocation"});
  b.ttl = f.Str({"spec", "ttl"});
  b.has_uploader_config = f.Find({"spec", "uploaderConfig"}) != nullptr;
  b.parallel_files_upload = f.Int({"spec", "uploaderConfig", "parallelFilesUpload"});
  b.phase = f.Str({"status", "phase"});
  b.validation_errors = f.StrList({"status", "validationErrors"});
  b.start_timestamp = OptStr(f, {"status", "startTimestamp"});
  b.completion_timestamp = OptStr(f, {"status", "completionTimestamp"});
  b.expiration = OptStr(f, {"status", "expiration"});
  b.warnings = f.Int({"status", "warnings"});
  b.errors = f.Int({"status", "errors"});
  b.failure_reason = f.Str({"status", "failureReason"});
  FSB_RETURN_IF_ERROR(f.status());
  FSB_RETURN_IF_ERROR(shape);
  return b;
}

Result<Restore> ParseRestore(const Object& obj) {
  if (!obj.is_object()) return Status::InvalidArgument("restore: not a JSON object");
  Fields f(obj, Describe(obj, "restore"));
  Restore r;
  FSB_ASSIGN_OR_RETURN(r.meta, ParseMeta(obj));
  r.backup_name = f.Str({"spec", "backupName"});
  r.schedule_name = f.Str({"spec", "scheduleName"});
  r.included_namespaces = f.StrList({"spec", "includedNamespaces"});
  r.excluded_namespaces = f.StrList({"spec", "excludedNamespaces"});
  r.included_resources = f.StrList({"spec", "includedResources"});
  r.excluded_resources = f.StrList({"spec", "excludedResources"});
  r.namespace_mapping = f.StrMap({"spec", "namespaceMapping"});
  Status shape;
  r.label_selector = ReadSelector(f, {"spec", "labelSelector"}, "spec.labelSelector", &shape);
  r.or_label_selectors =
      ReadSelectors(f, {"spec", "orLabelSelectors"}, "spec.orLabelSelectors", &shape);
  r.existing_resource_policy = f.Str({"spec", "existingResourcePolicy"});
  r.restore_pvs = OptBool(f, {"spec", "restorePVs"});
  r.has_uploader_config = f.Find({"spec", "uploaderConfig"}) != nullptr;
  r.write_sparse_files = f.Bool({"spec", "uploaderConfig", "writeSparseFiles"});
  r.parallel_files_download = f.Int({"spec", "uploaderConfig", "parallelFilesDownload"});
  r.phase = f.Str({"status", "phase"});
  r.validation_errors = f.StrList({"status", "validationErrors"});
  r.start_timestamp = OptStr(f, {"status", "startTimestamp"});
  r.completion_timestamp = OptStr(f, {"status", "completionTimestamp"});
  r.warnings = f.Int({"status", "warnings"});
  r.errors = f.Int({"status", "errors"});
  r.failure_reason = f.Str({"status", "failureReason"});
  FSB_RETURN_IF_ERROR(f.status());
  FSB_RETURN_IF_ERROR(shape);
  return r;
}

Result<Schedule> ParseSchedule(const Object& obj) {
  if (!obj.is_object()) return Status::InvalidArgument("schedule: not a JSON object");
  Fields f(obj, Describe(obj, "schedule"));
  Schedule s;
  FSB_ASSIGN_OR_RETURN(s.meta, ParseMeta(obj));
  s.schedule = f.Str({"spec", "schedule"});
  s.paused = f.Bool({"spec", "paused"});
  s.use_owner_references_in_backup = f.Bool({"spec", "useOwnerReferencesInBackup"});
  s.skip_immediately = f.Bool({"spec", "skipImmediately"});
  if (const Object* t = f.Find({"spec", "template"})) {
    if (!t->is_object()) {
      return Status::InvalidArgument(f.what() + ": spec.template: want an object");
    }
    s.template_spec = *t;
  }
  s.phase = f.Str({"status", "phase"});
  s.last_backup = OptStr(f, {"status", "lastBackup"});
  s.validation_errors = f.StrList({"status", "validationErrors"});
  FSB_RETURN_IF_ERROR(f.status());
  return s;
}

Result<std::chrono::milliseconds> ParseGoDuration(std::string_view s) {
  FSB_ASSIGN_OR_RETURN(std::chrono::nanoseconds d, fsb::ParseGoDuration(s));
  if (d.count() < 0) {
    return Status::InvalidArgument(fmt::format("negative duration \"{}\"", s));
  }
  // Rounded to the millisecond, as the controllers use it (timeouts, ttl).
  return std::chrono::round<std::chrono::milliseconds>(d);
}

Result<std::string> RepoIdentifier(const BackupStorageLocation& bsl,
                                   std::string_view volume_namespace) {
  const std::string what = "backupstoragelocation " + bsl.meta.Key();
  auto cfg = [&](const char* key) -> std::string {
    auto it = bsl.config.find(key);
    return it == bsl.config.end() ? std::string() : it->second;
  };
  if (std::string prefix = cfg("resticRepoPrefix"); !prefix.empty()) {
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    return fmt::format("{}/{}", prefix, volume_namespace);
  }
  // Velero's GetBackendType: "velero.io/" is prepended to a provider without a slash; a known
  // type (aws, azure, gcp, fs) stays what it is, and any other provider with config.s3Url counts
  // as AWS.
  std::string provider = bsl.provider;
  if (provider.find('/') == std::string::npos) provider = "velero.io/" + provider;
  const std::string s3_url = cfg("s3Url");
  const bool known = provider == "velero.io/aws" || provider == "velero.io/azure" ||
                     provider == "velero.io/gcp" || provider == "velero.io/fs";
  if (!known && !s3_url.empty()) provider = "velero.io/aws";
  if (provider != "velero.io/aws" && provider != "velero.io/azure" && provider != "velero.io/gcp") {
    return Status::InvalidArgument(
        fmt::format("{}: invalid backend type {}: set config.resticRepoPrefix (e.g. a local "
                    "directory) or config.s3Url",
                    what, bsl.provider));
  }
  if (bsl.bucket.empty())
    return Status::InvalidArgument(what + ": spec.objectStorage.bucket is required");
  // <prefix>/restic without empty components, as Velero's layout builds it with path.Join.
  std::string path;
  for (size_t start = 0; start <= bsl.prefix.size();) {
    size_t end = bsl.prefix.find('/', start);
    if (end == std::string::npos) end = bsl.prefix.size();
    if (end > start) path += bsl.prefix.substr(start, end - start) + "/";
    start = end + 1;
  }
  path += "restic";
  if (provider == "velero.io/aws") {
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
  return fmt::format("gs:{}:/{}/{}", bsl.bucket, path, volume_namespace);
}

}  // namespace fsb::kube::velero
