// kube/velero.h: typed views of Velero's velero.io/v1 objects (the CRDs in deploy/crds/):
// PodVolumeBackup, PodVolumeRestore, BackupStorageLocation, BackupRepository, Backup, Restore and
// Schedule, with the label, annotation and phase names Velero uses (velero-fs-backup.md §2–§4,
// §6, §8). Parsing validates every field read; value types, safe to copy between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "kube/objects.h"

namespace fsb::kube::velero {

inline constexpr std::string_view kApiVersion = "velero.io/v1";
inline constexpr std::string_view kLabelBackupName = "velero.io/backup-name";
inline constexpr std::string_view kLabelBackupUid = "velero.io/backup-uid";
inline constexpr std::string_view kLabelPvcUid = "velero.io/pvc-uid";
inline constexpr std::string_view kLabelRestoreName = "velero.io/restore-name";
inline constexpr std::string_view kLabelRestoreUid = "velero.io/restore-uid";
inline constexpr std::string_view kLabelPodUid = "velero.io/pod-uid";
inline constexpr std::string_view kAnnotationPvcName = "velero.io/pvc-name";

inline constexpr std::string_view kPhaseNew = "New";
inline constexpr std::string_view kPhaseInProgress = "InProgress";
inline constexpr std::string_view kPhaseCompleted = "Completed";
inline constexpr std::string_view kPhaseFailed = "Failed";
inline constexpr std::string_view kPhaseCanceled = "Canceled";
inline constexpr std::string_view kPhaseCanceling = "Canceling";
// Completed, Failed or Canceled.
bool IsFinalPhase(std::string_view phase);

struct Progress {
  int64_t total_bytes = 0, bytes_done = 0;
};

struct PodVolumeBackup {
  ObjectMeta meta;
  std::string node;
  ObjectReference pod;
  std::string volume;
  std::string backup_storage_location;
  std::string repo_identifier;
  std::string uploader_type;
  std::map<std::string, std::string> tags;
  std::map<std::string, std::string> uploader_settings;
  bool cancel = false;
  // status
  std::string phase;  // "" is New
  std::string message, snapshot_id, path;
  std::optional<std::string> start_timestamp, completion_timestamp;
  Progress progress;
};
Result<PodVolumeBackup> ParsePodVolumeBackup(const Object& obj);

struct PodVolumeRestore {
  ObjectMeta meta;
  ObjectReference pod;
  std::string volume;
  std::string backup_storage_location;
  std::string repo_identifier;
  std::string uploader_type;
  std::string snapshot_id;
  std::string source_namespace;
  std::map<std::string, std::string> uploader_settings;
  bool cancel = false;
  // status
  std::string phase;
  std::string message;
  std::optional<std::string> start_timestamp, completion_timestamp;
  Progress progress;
};
Result<PodVolumeRestore> ParsePodVolumeRestore(const Object& obj);

struct BackupStorageLocation {
  ObjectMeta meta;
  std::string provider;  // "aws", "velero.io/aws", ...
  std::string bucket;
  std::string prefix;
  std::string ca_cert;  // objectStorage.caCert, base64-decoded PEM
  std::map<std::string, std::string> config;  // region, s3Url, resticRepoPrefix, ...
  // spec.credential: a key of a secret in the Velero namespace holding an AWS credentials file.
  std::string credential_secret, credential_key;
  std::string access_mode;  // ReadWrite (default) or ReadOnly
  std::string phase;        // status.phase: Available, Unavailable
};
Result<BackupStorageLocation> ParseBackupStorageLocation(const Object& obj);

struct BackupRepository {
  ObjectMeta meta;
  std::string volume_namespace, backup_storage_location, repository_type, restic_identifier;
  std::string maintenance_frequency;
  std::string phase, message;
  std::optional<std::string> last_maintenance_time;
};
Result<BackupRepository> ParseBackupRepository(const Object& obj);

// metav1.LabelSelector: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist).
struct LabelSelectorRequirement {
  std::string key, op;
  std::vector<std::string> values;
};
struct LabelSelector {
  std::map<std::string, std::string> match_labels;
  std::vector<LabelSelectorRequirement> match_expressions;

  bool Empty() const { return match_labels.empty() && match_expressions.empty(); }
  // As metav1.LabelSelectorAsSelector: an unknown operator, In/NotIn without values or
  // Exists/DoesNotExist with values is kInvalidArgument naming the key.
  Status Validate() const;
  // All of matchLabels and every expression hold. An empty selector matches everything.
  bool Matches(const Labels& labels) const;
};

// The Backup fields fsb acts on (crds/velero.io_backups.yaml).
struct Backup {
  ObjectMeta meta;
  std::vector<std::string> included_namespaces, excluded_namespaces;
  std::vector<std::string> included_resources, excluded_resources;
  std::optional<LabelSelector> label_selector;
  std::vector<LabelSelector> or_label_selectors;
  std::optional<bool> default_volumes_to_fs_backup;
  std::optional<bool> default_volumes_to_restic;  // deprecated alias
  std::string storage_location;
  std::string ttl;  // Go duration; "" = the server default (720h)
  // spec.uploaderConfig.parallelFilesUpload, 0 when absent; has_uploader_config when present.
  bool has_uploader_config = false;
  int64_t parallel_files_upload = 0;
  // status
  std::string phase;  // "" is New
  std::vector<std::string> validation_errors;
  std::optional<std::string> start_timestamp, completion_timestamp, expiration;
  int64_t warnings = 0, errors = 0;
  std::string failure_reason;
};
Result<Backup> ParseBackup(const Object& obj);

// The Restore fields fsb acts on (crds/velero.io_restores.yaml).
struct Restore {
  ObjectMeta meta;
  std::string backup_name, schedule_name;
  std::vector<std::string> included_namespaces, excluded_namespaces;
  std::vector<std::string> included_resources, excluded_resources;
  std::map<std::string, std::string> namespace_mapping;
  std::optional<LabelSelector> label_selector;
  std::vector<LabelSelector> or_label_selectors;
  std::string existing_resource_policy;  // "" (none) or "update"
  std::optional<bool> restore_pvs;
  bool has_uploader_config = false;
  bool write_sparse_files = false;
  int64_t parallel_files_download = 0;
  // status
  std::string phase;
  std::vector<std::string> validation_errors;
  std::optional<std::string> start_timestamp, completion_timestamp;
  int64_t warnings = 0, errors = 0;
  std::string failure_reason;
};
Result<Restore> ParseRestore(const Object& obj);

// The Schedule fields (crds/velero.io_schedules.yaml); `template_spec` is the Backup spec to copy.
struct Schedule {
  ObjectMeta meta;
  std::string schedule;  // cron expression
  bool paused = false;
  bool use_owner_references_in_backup = false;
  bool skip_immediately = false;
  Object template_spec = Object::object();
  // status
  std::string phase;
  std::optional<std::string> last_backup;
  std::vector<std::string> validation_errors;
};
Result<Schedule> ParseSchedule(const Object& obj);

// A Go time.Duration string as Velero writes them ("720h0m0s", "90m", "1.5h", "300ms", "0s"),
// parsed as Go does (base/go_duration.h), to the millisecond. kInvalidArgument with Go's message
// for anything else, and for a negative duration.
Result<std::chrono::milliseconds> ParseGoDuration(std::string_view s);

// The restic repository of `volume_namespace` in `bsl`, as Velero's GetRepoIdentifier builds it
// (velero-fs-backup.md §4.3): config.resticRepoPrefix + "/" + namespace when set (the only form
// for a local directory); for aws (or a provider Velero does not know, with config.s3Url)
// "s3:<s3Url>/<bucket>/<prefix>/restic/<namespace>" or
// "s3:s3-<region>.amazonaws.com/<bucket>/...", azure "azure:<bucket>:/...", gcp
// "gs:<bucket>:/...". kInvalidArgument naming the location for anything else (velero.io/fs
// without a prefix, aws without s3Url or region, no bucket).
Result<std::string> RepoIdentifier(const BackupStorageLocation& bsl,
                                   std::string_view volume_namespace);

}  // namespace fsb::kube::velero
