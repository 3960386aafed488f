// coordinator/selection.h: which pods and which of their volumes a Backup backs up with
// PodVolumeBackups, exactly as Velero's server decides (velero-fs-backup.md §8.1, §8.2), and the
// namespace and label filters Backups and Restores share. Pure functions on typed objects; safe
// for concurrent use.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "kube/objects.h"
#include "kube/velero.h"

namespace fsb::coordinator {

inline constexpr std::string_view kAnnotationBackupVolumes = "backup.velero.io/backup-volumes";
inline constexpr std::string_view kAnnotationBackupVolumesExcludes =
    "backup.velero.io/backup-volumes-excludes";
inline constexpr std::string_view kLabelExcludeFromBackup = "velero.io/exclude-from-backup";

// Velero's IncludesExcludes for namespaces: an empty include list or "*" includes everything;
// entries may be globs ("app-*"); an excluded match always wins.
bool NamespaceIncluded(std::string_view ns, const std::vector<std::string>& included,
                       const std::vector<std::string>& excluded);

// Whether the resource filter lets `resource` ("pods", "persistentvolumeclaims") through:
// includedResources empty or holding "*" or the resource, and excludedResources not holding it.
// Short names ("pvc", "po") and "<plural>.<group>" forms count as the resource.
bool ResourceIncluded(std::string_view resource, const std::vector<std::string>& included,
                      const std::vector<std::string>& excluded);

// The validation errors Velero reports for a spec's filters (each a message for
// status.validationErrors): overlapping or "*"-excluding namespace lists, labelSelector together
// with orLabelSelectors, malformed selectors.
std::vector<std::string> ValidateFilters(const std::vector<std::string>& included_namespaces,
                                         const std::vector<std::string>& excluded_namespaces,
                                         const std::optional<kube::velero::LabelSelector>& label,
                                         const std::vector<kube::velero::LabelSelector>& or_labels);

// labelSelector when set; else any of orLabelSelectors when set; else everything.
bool LabelsSelected(const kube::Labels& labels,
                    const std::optional<kube::velero::LabelSelector>& label,
                    const std::vector<kube::velero::LabelSelector>& or_labels);

// The comma-separated volume names of a pod annotation, split as Velero does: on ",", no
// whitespace trimming, empty names dropped. Absent → empty.
std::vector<std::string> AnnotationVolumes(const kube::Labels& annotations, std::string_view key);

// What the backup needs to know about a PVC a pod volume names.
struct ClaimInfo {
  std::string uid;
  kube::Labels labels;
  bool pv_is_host_path = false;  // bound to a PV with spec.hostPath
};

struct SelectedVolume {
  std::string name;
  std::string claim_name;  // PVC-backed (persistentVolumeClaim or ephemeral) volumes
  std::string claim_uid;
};

struct SkippedVolume {
  std::string name;
  std::string reason;
  // Velero logs these at warning level (hostPath, not mounted, not in the pod); the others are
  // silent skips (secrets, tokens, ...).
  bool warning = false;
};

struct VolumeSelection {
  std::vector<SelectedVolume> selected;
  std::vector<SkippedVolume> skipped;
};

struct VolumeSelectionOptions {
  bool default_volumes_to_fs_backup = false;  // the effective value (spec, deprecated, flag)
  bool pvcs_included = true;                  // the resource filter lets PVCs through
};

// §8.1 and the per-volume checks of §8.2 for one pod: opt-in (backup.velero.io/backup-volumes)
// or opt-out (backup.velero.io/backup-volumes-excludes) by the annotations; always skipped:
// hostPath volumes and PVCs bound to hostPath PVs, secret, configMap, projected, downwardAPI,
// default-token* volumes, block devices (volumeDevices), volumes no container mounts, names not in
// the pod, PVCs labelled velero.io/exclude-from-backup=true, PVC volumes when PVCs are filtered
// out. `claims` maps claim names of the pod's namespace to what is known of them (a claim not in
// the map is treated as existing with no labels and no UID).
VolumeSelection SelectPodVolumes(const kube::Pod& pod,
                                 const std::map<std::string, ClaimInfo>& claims,
                                 const VolumeSelectionOptions& options);

// The effective defaultVolumesToFsBackup: spec.defaultVolumesToFsBackup, else the deprecated
// spec.defaultVolumesToRestic when true, else the coordinator's flag.
bool EffectiveDefaultVolumesToFsBackup(const kube::velero::Backup& backup, bool flag_default);

}  // namespace fsb::coordinator
