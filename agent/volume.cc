#include "agent/volume.h"

#include <fmt/format.h>

namespace fsb::agent {
namespace {

// Whether a PV is CSI: spec.csi, or a provisioned-by / migrated-to annotation naming a CSIDriver
// that exists (Velero's rule, §5.3 step 3: in-tree volumes migrated to CSI are mounted by CSI).
// A failed lookup is an error, not "not CSI": that would search the wrong directory and report
// the volume as not mounted.
Result<bool> IsCsi(kube::Client& client, const kube::PersistentVolume& pv) {
  if (!pv.csi_driver.empty()) return true;
  for (const char* key : {"pv.kubernetes.io/provisioned-by", "pv.kubernetes.io/migrated-to"}) {
    auto it = pv.meta.annotations.find(key);
    if (it == pv.meta.annotations.end() || it->second.empty()) continue;
    Result<kube::Object> driver = client.Get(kube::kCSIDrivers, "", it->second);
    if (driver.ok()) return true;
    if (driver.status().code() != StatusCode::kNotFound) {
      return driver.status().WithContext(fmt::format(
          "persistentvolume {}: look up csidriver {} named by {}", pv.meta.name, it->second, key));
    }
  }
  return false;
}

std::string JoinHostPath(const std::string& root, const std::string& rel) {
  if (root.empty()) return rel;
  return root.back() == '/' ? root + rel : root + "/" + rel;
}

}  // namespace

Result<VolumeLocation> ResolveVolume(kube::Client& client, const VolumeRoots& roots,
                                     const kube::Pod& pod, const std::string& volume) {
  const std::string what = fmt::format("volume \"{}\" of pod {}", volume, pod.meta.Key());
  const kube::PodVolume* v = pod.FindVolume(volume);
  if (!v) return Status::NotFound(what + ": volume not found in pod");
  VolumeLocation loc;
  hostpath::VolumeQuery q;
  q.pod_uid = pod.KubeletUid();
  q.description = what;
  std::string host_path;
  switch (v->kind) {
    case kube::VolumeKind::kSecret:
    case kube::VolumeKind::kConfigMap:
    case kube::VolumeKind::kProjected:
    case kube::VolumeKind::kDownwardApi:
      return Status::InvalidArgument(
          fmt::format("{}: a {} volume holds no data to back up", what, v->source));
    case kube::VolumeKind::kHostPath:
      host_path = v->host_path;
      loc.kind = "host path " + host_path;
      break;
    case kube::VolumeKind::kCsi:
      q.volume_dir = v->name + "/mount";
      loc.kind = "inline csi";
      break;
    case kube::VolumeKind::kEmptyDir:
    case kube::VolumeKind::kOther:
      q.volume_dir = v->name;
      loc.kind = v->source;
      break;
    case kube::VolumeKind::kPersistentVolumeClaim:
    case kube::VolumeKind::kEphemeral: {
      Result<kube::Object> pvc_obj =
          client.Get(kube::kPersistentVolumeClaims, pod.meta.ns, v->claim_name);
      if (!pvc_obj.ok()) {
        return pvc_obj.status().WithContext(
            fmt::format("{}: persistentvolumeclaim {}/{}", what, pod.meta.ns, v->claim_name));
      }
      FSB_ASSIGN_OR_RETURN(kube::PersistentVolumeClaim pvc,
                           kube::ParsePersistentVolumeClaim(*pvc_obj));
      loc.pvc_uid = pvc.meta.uid;
      if (pvc.volume_name.empty()) {
        return Status::InvalidArgument(fmt::format(
            "{}: persistentvolumeclaim {} is not bound to a volume", what, pvc.meta.Key()));
      }
      Result<kube::Object> pv_obj = client.Get(kube::kPersistentVolumes, "", pvc.volume_name);
      if (!pv_obj.ok()) {
        return pv_obj.status().WithContext(
            fmt::format("{}: persistentvolume {}", what, pvc.volume_name));
      }
      FSB_ASSIGN_OR_RETURN(kube::PersistentVolume pv, kube::ParsePersistentVolume(*pv_obj));
      if (pv.volume_mode == "Block" || pvc.volume_mode == "Block") {
        return Status::InvalidArgument(fmt::format(
            "{}: persistentvolume {} is a block volume, which file-system backup cannot read", what,
            pv.meta.name));
      }
      if (!pv.host_path.empty()) {
        host_path = pv.host_path;
        loc.kind = fmt::format("host path pv {} ({})", pv.meta.name, host_path);
        break;
      }
      Result<bool> csi = IsCsi(client, pv);
      if (!csi.ok()) return csi.status().WithContext(what);
      if (*csi) {
        q.volume_dir = pv.meta.name + "/mount";
        loc.kind = "csi pv " + pv.meta.name;
      } else {
        q.volume_dir = pv.meta.name;
        loc.kind = (pv.source.empty() ? std::string("pv ") : pv.source + " pv ") + pv.meta.name;
      }
      break;
    }
  }
  if (!host_path.empty()) {
    if (!roots.host) {
      return Status::FailedPrecondition(fmt::format(
          "{}: data is in host directory {} (a hostPath volume), and the agent has no --host-root "
          "to reach it",
          what, host_path));
    }
    Result<hostpath::ResolvedVolume> r =
        hostpath::ResolveHostPath(*roots.host, host_path, roots.host_root_on_host);
    if (!r.ok()) return r.status().WithContext(what);
    loc.path = JoinHostPath(roots.host->path, r->rel_path);
    loc.volume = std::move(*r);
    return loc;
  }
  if (!roots.pods) {
    return Status::FailedPrecondition(
        what + ": the kubelet pods directory is not mounted in the agent (--host-pods)");
  }
  FSB_ASSIGN_OR_RETURN(hostpath::ResolvedVolume r, hostpath::ResolvePodVolume(*roots.pods, q));
  loc.path = JoinHostPath(roots.pods->path, r.rel_path);
  loc.volume = std::move(r);
  return loc;
}

}  // namespace fsb::agent
