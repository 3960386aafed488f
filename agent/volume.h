// agent/volume.h: finds a pod volume's data on this node: pod → volume → (PVC → PV) → the
// directory kubelet mounted it at under --host-pods (velero-fs-backup.md §5.3), or for a
// hostPath-backed PV (local-path provisioner, kind; Velero skips these, velero#8161) the host
// directory under --host-root. Kubernetes lookups go through the API; the file-system part is
// hostpath/, so nothing can lead out of the pods directory. Safe for concurrent use.
#pragma once

#include <string>

#include "base/status.h"
#include "hostpath/hostpath.h"
#include "kube/client.h"
#include "kube/objects.h"

namespace fsb::agent {

struct VolumeLocation {
  hostpath::ResolvedVolume volume;
  // The path as the agent sees it ("/host_pods/<uid>/volumes/kubernetes.io~csi/pv/mount"):
  // status.path and the snapshot's path, as Velero's legacy agent records them.
  std::string path;
  std::string pvc_uid;  // for PVC-backed volumes
  std::string kind;     // "emptyDir", "csi pv pvc-1", "host path /var/...": for logs
};

struct VolumeRoots {
  const hostpath::Root* pods = nullptr;  // --host-pods; null: not mounted (fs-backup disabled)
  const hostpath::Root* host = nullptr;  // --host-root; null: hostPath PVs are refused
  std::string host_root_on_host = "/";   // what --host-root is on the host
};

// Resolves volume `volume` of `pod`. kNotFound when the volume, PVC, PV or directory does not
// exist (the message says which and, for a directory, what was searched); kInvalidArgument for
// volume kinds that hold no file-system data here (secret, configMap, projected, downwardAPI, a
// block-mode volume) or an unbound PVC; kFailedPrecondition when a hostPath PV is met and
// --host-root is not set.
Result<VolumeLocation> ResolveVolume(kube::Client& client, const VolumeRoots& roots,
                                     const kube::Pod& pod, const std::string& volume);

}  // namespace fsb::agent
