// hostpath/hostpath.h: from "pod UID + volume directory name", or from a hostPath PV's host path,
// to an open directory fd that cannot lead out of the kubelet pods directory (or the host root).
// Knows kubelet's on-disk layout (velero-fs-backup.md §5.3), nothing of Kubernetes objects: the
// agent does the pod → PVC → PV lookups (§5.3 steps 1-3) and calls here with plain strings.
// Every lookup goes through a directory fd, one name at a time, and no symlink is followed in the
// pods tree; no host path is built by joining names into a string. Safe for concurrent use
// (a Root's fd may be shared by threads; the Root itself has one owner).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/status.h"

namespace fsb::hostpath {

// A directory that resolution stays below: the pods root (--host-pods, /host_pods) or a host root
// (--host-root).
struct Root {
  Fd fd;             // O_RDONLY | O_DIRECTORY | O_CLOEXEC
  std::string path;  // where it was opened, e.g. "/host_pods"; for messages, never opened again
};

// Opens the directory `path`, following symlinks (it is the agent's configuration, not input).
// kNotFound when it does not exist (Velero then runs with fs-backup disabled), kInvalidArgument
// when it is not a directory, kPermissionDenied when it cannot be read (SELinux without privileged
// mode, velero#2085). The message names `path`.
Result<Root> OpenRoot(const std::string& path);

struct VolumeQuery {
  // The pod's directory: metadata.uid, or for a mirror (static) pod the value of its annotation
  // kubernetes.io/config.mirror. One path component of [A-Za-z0-9._-], not "." or "..".
  std::string pod_uid;
  // The directory below the plugin directory: the volume name (emptyDir, inline non-CSI volumes),
  // the PV name (PVC-backed volumes), "<name>/mount" for CSI filesystem volumes (inline CSI or a
  // CSI PV); the PV name for a block volume. One or two path components of [A-Za-z0-9._~-], none
  // "." or "..".
  std::string volume_dir;
  // Raw block (kubelet's volumeDevices/) rather than a filesystem volume (volumes/).
  bool block = false;
  // Names the volume in errors, e.g. `volume "data" of pod ns/web`; " (uid <pod_uid>)" is appended.
  // Empty: `volume "<volume_dir>" of pod` is used. (Initialised so that designated initialisers may
  // leave it out; pod_uid and volume_dir are not, so leaving them out warns.)
  std::string description{};
};

struct ResolvedVolume {
  Fd dir;                // O_RDONLY | O_DIRECTORY | O_CLOEXEC; fstat says it is a directory
  std::string rel_path;  // below the root, e.g. "<uid>/volumes/kubernetes.io~csi/pv-1/mount"
  std::string plugin;    // the plugin directory, e.g. "kubernetes.io~csi"; empty for a host path
};

// Finds <root>/<pod_uid>/<volumes|volumeDevices>/*/<volume_dir> the way Velero globs it (§5.3
// step 4), by listing the volumes directory through its fd, and opens the one match. Nothing on
// the way may be a symlink. Errors start with the query's description and the uid, and name what
// was searched (velero#5036's "expected one matching path, got 0" says which of these it was):
//   kNotFound: the pod has no directory under root ("not running on this node, or --host-pods
//     does not point at the kubelet pods directory"); it has no volumes/ (volumeDevices/)
//     directory; no plugin directory holds volume_dir ("the volume is declared but not mounted on
//     this node"; symlinked plugin directories, which are skipped, are listed).
//   kInvalidArgument: a malformed pod_uid or volume_dir; several matches (all listed); the one
//     match, the pod directory or volumes/ is a symlink or not a directory.
//   kPermissionDenied: passed through from open or readdir.
// A CSI volume's directory should be a mount point while kubelet has it mounted: see IsMountPoint.
Result<ResolvedVolume> ResolvePodVolume(const Root& root, const VolumeQuery& query);

// A hostPath-backed PV (local-path-provisioner, kind: velero#8161, #4962): opens the host directory
// `host_path` (pv.spec.hostPath.path: absolute, no ".." component, as Kubernetes also requires)
// through `host_root`, which is the host directory `root_on_host` mounted into the agent.
// Symlinks on the way are followed but never out of host_root:
//   - root_on_host "/" (the host's / mounted, e.g. at /host): resolved as on the host, within
//     host_root (RESOLVE_IN_ROOT): `/var/lib/x -> /data/x` leads to <host_root>/data/x, not to the
//     agent's own /data/x, and ".." at the top stays at the top.
//   - a narrower root_on_host (e.g. "/var/local-path-provisioner"): symlinks are followed only
//     while they stay below host_root (RESOLVE_BENEATH); an absolute target cannot be placed
//     without the host's /, so it is refused, as is a ".." that climbs above.
// rel_path is host_path below root_on_host, normalised ("var/local-path-provisioner/pvc-1_ns_c");
// plugin is empty. Errors: kInvalidArgument (a relative path, "..", not below root_on_host,
// root_on_host itself, a symlink leading out, not a directory), kNotFound (absent on this node:
// the PV may live on another node's disk), kPermissionDenied.
Result<ResolvedVolume> ResolveHostPath(const Root& host_root, std::string_view host_path,
                                       std::string_view root_on_host = "/");

// The node-agent's start-up check (§5.3): which of `pod_uids` (the pods running on this node; for
// mirror pods the kubernetes.io/config.mirror value) have no directory under root, in the given
// order. A symlink or a non-directory counts as missing, since ResolvePodVolume refuses it. An
// empty answer means --host-pods looks like the kubelet pods directory. kInvalidArgument for a name
// that is not a valid pod UID (see VolumeQuery::pod_uid); other stat failures (EACCES) pass
// through.
Result<std::vector<std::string>> MissingPodDirs(const Root& root,
                                                const std::vector<std::string>& pod_uids);

// Whether the directory open as `dir_fd` is the root of a mount. A CSI volume's mount/ directory
// and a local PV are while kubelet has them mounted; a CSI mount/ that is not one means the volume
// is unmounted and a backup would see an empty directory. One statx (STATX_ATTR_MOUNT_ROOT, Linux
// 5.8); older kernels compare st_dev with "..", which misses a bind mount within one file system.
Result<bool> IsMountPoint(int dir_fd);

}  // namespace fsb::hostpath
