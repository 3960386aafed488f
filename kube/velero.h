// kube/velero.h: typed views of Velero's velero.io/v1 objects (the CRDs in deploy/crds/):
// PodVolumeBackup, PodVolumeRestore, BackupStorageLocation, BackupRepository, with the label,
// annotation and phase names Velero uses (velero-fs-backup.md §2–§4, §6). Parsing validates
// every field read; value types, safe to copy between threads.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

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

// The restic repository of `volume_namespace` in `bsl`, as Velero's GetRepoIdentifier builds it
// (velero-fs-backup.md §4.3): config.resticRepoPrefix + "/" + namespace when set (the only form
// for a local directory); for aws (or any provider with config.s3Url)
// "s3:<s3Url>/<bucket>/<prefix>/restic/<namespace>" or
// "s3:s3-<region>.amazonaws.com/<bucket>/...", azure "azure:<bucket>:/...", gcp
// "gs:<bucket>:/...". kInvalidArgument naming the location for anything else (velero.io/fs
// without a prefix, aws without s3Url or region, no bucket).
Result<std::string> RepoIdentifier(const BackupStorageLocation& bsl, std::string_view volume_namespace);

}  // namespace fsb::kube::velero
