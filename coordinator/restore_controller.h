// coordinator/restore_controller.h: a Velero Restore brings back the pods and PVCs of an fsb
// backup and their volume data, on whatever node the scheduler picks (velero-fs-backup.md §6,
// §8.5). From the backup's records in its BSL (coordinator/records.h) it recreates the missing
// namespaces, the PVCs (stripped of their binding so the cluster provisions new volumes) and the
// pods (stripped of nodeName, with Velero's restore-wait init container, §6.2), then creates one
// PodVolumeRestore per volume that has a snapshot, labelled and owned as Velero's server does
// (§6.1), waits for them (§6.5) and sets the Restore's phase and counts. The state machine lives
// in the Restore (phase, fsb.velero.io/* annotations) and restored pods carry the label
// velero.io/restore-name, so a restarted coordinator finds what it created and creates no second
// pod or PVR.
// Thread-safety: as BackupController.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "coordinator/storage.h"
#include "kube/client.h"
#include "kube/velero.h"

namespace fsb::coordinator {

// The restore-wait init container (§6.2).
struct RestoreHelperOptions {
  // Velero's own image of the release whose restore helper fsb's marker protocol matches.
  std::string image = "velero/velero:v1.16.2";
  std::string command = "/velero-restore-helper";
  std::string cpu = "100m";  // requests and limits, Velero's defaults
  std::string memory = "128Mi";
};

struct RestoreControllerOptions {
  std::string ns = "velero";
  bool claim_all = false;  // as BackupControllerOptions::claim_all
  // Velero's --fs-backup-timeout; the Restore annotation velero.io/pod-volume-timeout wins.
  std::chrono::milliseconds fs_backup_timeout{std::chrono::hours(4)};
  RestoreHelperOptions helper;
};

std::vector<std::string> ValidateRestoreSpec(const kube::velero::Restore& restore);

// A backed-up PVC made ready to create in `target_ns`: metadata reset as Velero's resetMetadata
// (uid, resourceVersion, generation, creation/deletion timestamps, ownerReferences,
// managedFields, selfLink, generateName removed), spec.volumeName and the binding annotations
// (pv.kubernetes.io/bind-completed, pv.kubernetes.io/bound-by-controller,
// volume.kubernetes.io/selected-node) removed, status removed, labels velero.io/backup-name and
// velero.io/restore-name added.
kube::Object PrepareRestoredPvc(const kube::Object& pvc, std::string_view target_ns,
                                std::string_view backup, std::string_view restore);

// A backed-up pod made ready to create in `target_ns`: metadata reset as above, spec.nodeName
// and spec.priority removed (the scheduler places it anywhere; priority comes back from its
// class), service-account token volumes (default-token-*, kube-api-access-*) and their mounts
// removed (the new token is mounted by admission), status removed, the restore labels added,
// and, when `restore_volumes` is not empty, Velero's restore-wait init container at index 0
// (replacing any restore-wait/restic-wait): args [restore_uid], env POD_NAMESPACE/POD_NAME from
// fieldRefs, one mount /restores/<volume> per restored volume, requests and limits, and the
// first app container's securityContext or the restricted default.
kube::Object PrepareRestoredPod(const kube::Object& pod, std::string_view target_ns,
                                std::string_view backup, std::string_view restore,
                                std::string_view restore_uid,
                                const std::vector<std::string>& restore_volumes,
                                const RestoreHelperOptions& helper);

class RestoreController {
 public:
  RestoreController(kube::Client& client, StorageLocations& storage,
                    RestoreControllerOptions options);

  // One step for Restore `name`; contract as BackupController::Reconcile.
  Status Reconcile(std::string_view name);

 private:
  Status Start(const kube::Object& obj);
  Status Continue(const kube::Object& obj);
  Status Plan(const kube::Object& obj, const kube::velero::Restore& restore,
              const kube::Object& backup, repo::ObjectStore& store);
  Status Finish(const kube::Object& obj, const kube::velero::Restore& restore,
                std::vector<std::string> extra_errors, std::string failure);
  // The Backup object: in the cluster, else from the records of any BSL (a new cluster).
  // kNotFound when neither has it; *bsl_name gets the BSL it lives in.
  Result<kube::Object> FindBackup(std::string_view name, std::string* bsl_name);

  kube::Client& client_;
  StorageLocations& storage_;
  const RestoreControllerOptions options_;
};

}  // namespace fsb::coordinator
