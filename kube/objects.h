// kube/objects.h: typed, validated views of the core Kubernetes objects fsb reads (metadata,
// pods, PVCs, PVs, secrets), parsed from the JSON the API server returns. Each Parse function
// checks every field it reads and returns kInvalidArgument naming the object and the field; the
// rest of fsb never walks raw JSON. Value types; safe to copy between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/secret.h"
#include "base/status.h"
#include "kube/client.h"

namespace fsb::kube {

using Clock = std::chrono::system_clock;
using Labels = std::map<std::string, std::string>;

// metav1.Time: RFC 3339 in UTC with second precision ("2026-11-26T10:04:05Z").
std::string FormatTime(Clock::time_point t);
// Accepts RFC 3339 with or without fractional seconds (kept, to the nanosecond) and with Z or a
// numeric offset; anything else (a missing zone, out-of-range fields, trailing text) is
// kInvalidArgument quoting the text.
Result<Clock::time_point> ParseTime(std::string_view s);

struct OwnerReference {
  std::string api_version, kind, name, uid;
  bool controller = false;
};

struct ObjectMeta {
  std::string name, ns, uid, resource_version, generate_name;
  Labels labels, annotations;
  std::vector<OwnerReference> owner_references;
  std::vector<std::string> finalizers;
  std::optional<std::string> creation_timestamp, deletion_timestamp;

  // "ns/name" or "name": how logs and messages name the object.
  std::string Key() const { return ns.empty() ? name : ns + "/" + name; }
  // The ownerReference with controller: true, if any.
  const OwnerReference* Controller() const;
};
Result<ObjectMeta> ParseMeta(const Object& obj);

// corev1.ObjectReference as Velero uses it (spec.pod of PVBs and PVRs).
struct ObjectReference {
  std::string kind, ns, name, uid;
};
Object ToJson(const ObjectReference& ref);

enum class VolumeKind {
  kEmptyDir,
  kPersistentVolumeClaim,
  kEphemeral,  // generic ephemeral volume: a PVC named <pod>-<volume>
  kHostPath,
  kCsi,  // inline CSI volume
  kSecret,
  kConfigMap,
  kProjected,
  kDownwardApi,
  kOther,  // nfs, iscsi, ... : data under the kubelet pods directory
};

struct PodVolume {
  std::string name;
  VolumeKind kind = VolumeKind::kOther;
  std::string source;      // the volume source's JSON key ("emptyDir", "nfs", ...)
  std::string claim_name;  // kPersistentVolumeClaim
  std::string host_path;   // kHostPath
};

struct ContainerInfo {
  std::string name;
  std::vector<std::string> volume_mounts;   // names of mounted volumes
  std::vector<std::string> volume_devices;  // names of block volumes
};

struct ContainerStatusInfo {
  std::string name;
  bool running = false;
  bool terminated = false;
};

struct Pod {
  ObjectMeta meta;
  std::string node_name;  // spec.nodeName; empty until scheduled
  std::string phase;      // status.phase
  std::vector<PodVolume> volumes;
  std::vector<ContainerInfo> init_containers, containers;
  std::vector<ContainerStatusInfo> init_container_statuses;

  const PodVolume* FindVolume(std::string_view name) const;
  // The UID of the kubelet's directory: the config.mirror annotation of a mirror (static) pod,
  // else metadata.uid.
  std::string KubeletUid() const;
};
Result<Pod> ParsePod(const Object& obj);

struct PersistentVolumeClaim {
  ObjectMeta meta;
  std::string volume_name;  // spec.volumeName: the bound PV
  std::string phase;
  std::string volume_mode;  // "Filesystem" (default) or "Block"
};
Result<PersistentVolumeClaim> ParsePersistentVolumeClaim(const Object& obj);

struct PersistentVolume {
  ObjectMeta meta;
  std::string csi_driver;  // spec.csi.driver, empty when not CSI
  std::string host_path;   // spec.hostPath.path (local-path provisioner, kind)
  std::string local_path;  // spec.local.path
  std::string volume_mode;
  // Any other volume source key ("nfs", "awsElasticBlockStore", ...), for messages.
  std::string source;
};
Result<PersistentVolume> ParsePersistentVolume(const Object& obj);

// One key of a Secret's data, base64-decoded. kNotFound naming the secret and key when absent.
Result<Secret<std::string>> SecretValue(const Object& secret, std::string_view key);

}  // namespace fsb::kube
