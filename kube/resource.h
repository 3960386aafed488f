// kube/resource.h: which API resource a request is about (group, version, plural, scope) and the
// URL paths the API server serves it under. Plain values; safe to share between threads.
#pragma once

#include <string>
#include <string_view>

namespace fsb::kube {

struct Resource {
  std::string_view group;    // "" for the core group
  std::string_view version;  // "v1"
  std::string_view plural;   // "pods", "podvolumebackups"
  std::string_view kind;     // "Pod", "PodVolumeBackup"
  bool namespaced = true;

  // "/api/v1" or "/apis/<group>/<version>".
  std::string GroupVersionPath() const;
  // The collection path in `ns` ("" = all namespaces, or a cluster-scoped resource), or, with a
  // name, the object path, plus "/<subresource>" when given. Names are percent-encoded.
  std::string Path(std::string_view ns, std::string_view name = {},
                   std::string_view subresource = {}) const;
  // "podvolumebackups.velero.io" or "pods": how kubectl and error messages name it.
  std::string QualifiedName() const;
  // "velero.io/v1" or "v1".
  std::string ApiVersion() const;
};

// The resources fsb reads and writes.
inline constexpr Resource kPods{"", "v1", "pods", "Pod", true};
inline constexpr Resource kPersistentVolumeClaims{"", "v1", "persistentvolumeclaims",
                                                  "PersistentVolumeClaim", true};
inline constexpr Resource kPersistentVolumes{"", "v1", "persistentvolumes", "PersistentVolume",
                                             false};
inline constexpr Resource kSecrets{"", "v1", "secrets", "Secret", true};
inline constexpr Resource kConfigMaps{"", "v1", "configmaps", "ConfigMap", true};
inline constexpr Resource kNamespaces{"", "v1", "namespaces", "Namespace", false};
inline constexpr Resource kNodes{"", "v1", "nodes", "Node", false};
inline constexpr Resource kEvents{"", "v1", "events", "Event", true};
inline constexpr Resource kDaemonSets{"apps", "v1", "daemonsets", "DaemonSet", true};
inline constexpr Resource kCSIDrivers{"storage.k8s.io", "v1", "csidrivers", "CSIDriver", false};
inline constexpr Resource kPodVolumeBackups{"velero.io", "v1", "podvolumebackups",
                                            "PodVolumeBackup", true};
inline constexpr Resource kPodVolumeRestores{"velero.io", "v1", "podvolumerestores",
                                             "PodVolumeRestore", true};
inline constexpr Resource kBackupRepositories{"velero.io", "v1", "backuprepositories",
                                              "BackupRepository", true};
inline constexpr Resource kBackupStorageLocations{"velero.io", "v1", "backupstoragelocations",
                                                  "BackupStorageLocation", true};
inline constexpr Resource kBackups{"velero.io", "v1", "backups", "Backup", true};
inline constexpr Resource kRestores{"velero.io", "v1", "restores", "Restore", true};
inline constexpr Resource kSchedules{"velero.io", "v1", "schedules", "Schedule", true};

}  // namespace fsb::kube
