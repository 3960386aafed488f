// coordinator/backup_controller.h: a Velero Backup becomes PodVolumeBackups for the node agents,
// exactly as Velero's server decides and writes them (velero-fs-backup.md §2, §8.1–8.4), and its
// outcome is recorded in the Backup's status and in its backup storage location
// (coordinator/records.h). One Reconcile is one step of a state machine kept in the Backup itself
// (phase and fsb.velero.io/* annotations), so a restarted coordinator resumes where the last one
// stopped and never creates a PodVolumeBackup twice (existing ones are found by the label
// velero.io/backup-uid before any is created).
//   New → (validation errors) FailedValidation
//       → InProgress: select pods and volumes, ensure the BackupRepositories, write the pod and
//         PVC manifests to the BSL, create the missing PVBs
//       → (every PVB final, or the timeout) write velero-backup.json and the PVBs to the BSL
//         → Completed | PartiallyFailed (errors > 0) | Failed (the records could not be written,
//         the BSL disappeared)
// Thread-safety: Reconcile may run concurrently for different Backups; one Backup is reconciled
// by one thread at a time (the coordinator's work queue guarantees it).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "coordinator/selection.h"
#include "coordinator/storage.h"
#include "kube/client.h"
#include "kube/objects.h"
#include "kube/velero.h"

namespace fsb::coordinator {

struct BackupControllerOptions {
  std::string ns = "velero";  // Velero's namespace: Backups, PVBs, BSLs, node-agent pods
  // Act on every Backup, not only those labelled fsb.velero.io/coordinator=true: for clusters
  // without a Velero server.
  bool claim_all = false;
  // Velero's --default-volumes-to-fs-backup: the value when a Backup does not say.
  bool default_volumes_to_fs_backup = false;
  // Velero's --fs-backup-timeout (240m): how long a Backup waits for its PVBs; the Backup
  // annotation velero.io/pod-volume-timeout overrides it.
  std::chrono::milliseconds fs_backup_timeout{std::chrono::hours(4)};
  // Velero's --default-backup-ttl (720h): expiration = start + ttl when spec.ttl is empty.
  std::chrono::milliseconds default_ttl{std::chrono::hours(720)};
  // Velero's --default-backup-storage-location: used when spec.storageLocation is empty and no
  // BSL has spec.default: true.
  std::string default_bsl = "default";
};

// The spec checks that need no API calls (filters, ttl, the timeout annotation), as messages for
// status.validationErrors.
std::vector<std::string> ValidateBackupSpec(const kube::velero::Backup& backup);

// The PodVolumeBackup Velero's server writes for one volume (§2.1–2.4): generateName
// "<backup>-", labels velero.io/backup-name / backup-uid (/ pvc-uid), annotation
// velero.io/pvc-name for PVC volumes, a controlling ownerReference to the Backup, spec.node =
// the pod's node, spec.pod, spec.volume, backupStorageLocation, repoIdentifier, uploaderType
// restic, tags, uploaderSettings (ParallelFilesUpload when the Backup has uploaderConfig).
kube::Object BuildPodVolumeBackup(const kube::velero::Backup& backup, const kube::Pod& pod,
                                  const SelectedVolume& volume, std::string_view bsl,
                                  std::string_view repo_identifier, std::string_view ns);

class BackupController {
 public:
  // `client` and `storage` must outlive the controller.
  BackupController(kube::Client& client, StorageLocations& storage,
                   BackupControllerOptions options);

  // One step for Backup `name` (see the file comment). Blocks for the API calls and record
  // uploads of that step, never for the agents. OK when there is nothing to do now (the next
  // PVB event or resync calls again); non-OK for a transient failure to retry later.
  Status Reconcile(std::string_view name);

 private:
  Status Start(const kube::Object& obj);
  Status Continue(const kube::Object& obj);
  Status Plan(const kube::Object& obj, const kube::velero::Backup& backup,
              const kube::velero::BackupStorageLocation& bsl, repo::ObjectStore& store);
  Status Finish(const kube::Object& obj, const kube::velero::Backup& backup,
                repo::ObjectStore* store, bool timed_out, std::string failure);
  Status EnsureBackupRepository(std::string_view volume_ns,
                                const kube::velero::BackupStorageLocation& bsl);
  // The BSL a Backup uses: spec.storageLocation, else the one with spec.default, else
  // options_.default_bsl. kNotFound (with the name) when there is none.
  Result<kube::velero::BackupStorageLocation> ResolveBsl(const kube::velero::Backup& backup);

  kube::Client& client_;
  StorageLocations& storage_;
  const BackupControllerOptions options_;
};

}  // namespace fsb::coordinator
