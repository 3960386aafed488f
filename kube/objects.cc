#include "kube/objects.h"

#include <fmt/format.h>

#include <ctime>

#include "base/bytes.h"
#include "kube/internal/fields.h"

namespace fsb::kube {

using internal::Fields;

std::string FormatTime(Clock::time_point t) {
  const time_t secs = Clock::to_time_t(t);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {

// Reads exactly `n` digits at s[*pos] into *out.
bool Digits(std::string_view s, size_t* pos, size_t n, int* out) {
  if (*pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    const char c = s[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool Expect(std::string_view s, size_t* pos, std::string_view chars) {
  if (*pos >= s.size() || chars.find(s[*pos]) == std::string_view::npos) return false;
  ++*pos;
  return true;
}

}  // namespace

Result<Clock::time_point> ParseTime(std::string_view s) {
  // RFC 3339 date-time: full-date "T" partial-time time-offset, every field fixed-width digits.
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(fmt::format("time \"{}\": {}", s, why));
  };
  struct tm tm = {};
  size_t pos = 0;
  int year, month, day, hour, minute, second;
  if (!Digits(s, &pos, 4, &year) || !Expect(s, &pos, "-") || !Digits(s, &pos, 2, &month) ||
      !Expect(s, &pos, "-") || !Digits(s, &pos, 2, &day) || !Expect(s, &pos, "Tt") ||
      !Digits(s, &pos, 2, &hour) || !Expect(s, &pos, ":") || !Digits(s, &pos, 2, &minute) ||
      !Expect(s, &pos, ":") || !Digits(s, &pos, 2, &second)) {
    return bad("not RFC 3339");
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
    return bad("field out of range");
  std::chrono::nanoseconds fraction{0};
  if (pos < s.size() && s[pos] == '.') {
    pos++;
    const size_t start = pos;
    int64_t ns = 0;
    for (; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; pos++) {
      if (pos - start < 9) ns = ns * 10 + (s[pos] - '0');
    }
    if (pos == start) return bad("no digits after the decimal point");
    for (size_t n = pos - start; n < 9; n++) ns *= 10;
    fraction = std::chrono::nanoseconds(ns);
  }
  long offset = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    pos++;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    const int sign = s[pos] == '-' ? -1 : 1;
    pos++;
    int oh, om;
    if (!Digits(s, &pos, 2, &oh) || !Expect(s, &pos, ":") || !Digits(s, &pos, 2, &om) || oh > 23 ||
        om > 59) {
      return bad("malformed offset");
    }
    offset = sign * (oh * 3600L + om * 60L);
  } else {
    return bad("no time zone");
  }
  if (pos != s.size()) return bad("trailing text");
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return Clock::from_time_t(timegm(&tm) - offset) +
         std::chrono::duration_cast<Clock::duration>(fraction);
}

const OwnerReference* ObjectMeta::Controller() const {
  for (const OwnerReference& o : owner_references)
    if (o.controller) return &o;
  return nullptr;
}

namespace internal {

ObjectMeta ReadMeta(Fields& f) {
  ObjectMeta m;
  m.name = f.Str({"metadata", "name"});
  m.ns = f.Str({"metadata", "namespace"});
  m.uid = f.Str({"metadata", "uid"});
  m.resource_version = f.Str({"metadata", "resourceVersion"});
  m.generate_name = f.Str({"metadata", "generateName"});
  m.labels = f.StrMap({"metadata", "labels"});
  m.annotations = f.StrMap({"metadata", "annotations"});
  m.finalizers = f.StrList({"metadata", "finalizers"});
  if (f.Find({"metadata", "creationTimestamp"})) {
    m.creation_timestamp = f.Str({"metadata", "creationTimestamp"});
  }
  if (f.Find({"metadata", "deletionTimestamp"})) {
    m.deletion_timestamp = f.Str({"metadata", "deletionTimestamp"});
  }
  f.ForEach({"metadata", "ownerReferences"}, [&](const Object& o) {
    Fields of(o, f.what() + ": metadata.ownerReferences[]");
    OwnerReference r;
    r.api_version = of.Str({"apiVersion"});
    r.kind = of.Str({"kind"});
    r.name = of.Str({"name"});
    r.uid = of.Str({"uid"});
    r.controller = of.Bool({"controller"});
    f.Absorb(of);
    m.owner_references.push_back(std::move(r));
  });
  return m;
}

std::string Describe(const Object& obj, std::string_view kind) {
  std::string name = "?", ns;
  if (obj.is_object()) {
    auto md = obj.find("metadata");
    if (md != obj.end() && md->is_object()) {
      auto n = md->find("name");
      if (n != md->end() && n->is_string()) name = n->get<std::string>();
      auto s = md->find("namespace");
      if (s != md->end() && s->is_string()) ns = s->get<std::string>();
    }
  }
  return fmt::format("{} {}", kind, ns.empty() ? name : ns + "/" + name);
}

}  // namespace internal

namespace {

using internal::Describe;
using internal::ReadMeta;

Status CheckObject(const Object& obj, std::string_view kind) {
  if (!obj.is_object()) return Status::InvalidArgument(fmt::format("{}: not a JSON object", kind));
  return Status::Ok();
}

}  // namespace

Result<ObjectMeta> ParseMeta(const Object& obj) {
  FSB_RETURN_IF_ERROR(CheckObject(obj, "object"));
  Fields f(obj, Describe(obj, "object"));
  ObjectMeta m = ReadMeta(f);
  FSB_RETURN_IF_ERROR(f.status());
  return m;
}

Object ToJson(const ObjectReference& ref) {
  Object o = Object::object();
  o["kind"] = ref.kind;
  o["namespace"] = ref.ns;
  o["name"] = ref.name;
  o["uid"] = ref.uid;
  return o;
}

const PodVolume* Pod::FindVolume(std::string_view name) const {
  for (const PodVolume& v : volumes)
    if (v.name == name) return &v;
  return nullptr;
}

std::string Pod::KubeletUid() const {
  auto it = meta.annotations.find("kubernetes.io/config.mirror");
  return it != meta.annotations.end() && !it->second.empty() ? it->second : meta.uid;
}

Result<Pod> ParsePod(const Object& obj) {
  FSB_RETURN_IF_ERROR(CheckObject(obj, "pod"));
  Fields f(obj, Describe(obj, "pod"));
  Pod p;
  p.meta = ReadMeta(f);
  p.node_name = f.Str({"spec", "nodeName"});
  p.phase = f.Str({"status", "phase"});
  f.ForEach({"spec", "volumes"}, [&](const Object& v) {
    Fields vf(v, f.what() + ": volume");
    PodVolume pv;
    pv.name = vf.Str({"name"});
    static const std::pair<std::string_view, VolumeKind> kKinds[] = {
        {"emptyDir", VolumeKind::kEmptyDir},
        {"persistentVolumeClaim", VolumeKind::kPersistentVolumeClaim},
        {"ephemeral", VolumeKind::kEphemeral},
        {"hostPath", VolumeKind::kHostPath},
        {"csi", VolumeKind::kCsi},
        {"secret", VolumeKind::kSecret},
        {"configMap", VolumeKind::kConfigMap},
        {"projected", VolumeKind::kProjected},
        {"downwardAPI", VolumeKind::kDownwardApi},
    };
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it.key() == "name" || it->is_null()) continue;  // null: an unset source
      pv.source = it.key();
      pv.kind = VolumeKind::kOther;
      for (const auto& [key, kind] : kKinds) {
        if (it.key() == key) pv.kind = kind;
      }
      break;
    }
    if (pv.name.empty()) vf.Fail(f.what() + ": spec.volumes[]: name is required");
    if (pv.kind == VolumeKind::kPersistentVolumeClaim) {
      pv.claim_name = vf.Str({"persistentVolumeClaim", "claimName"});
      if (pv.claim_name.empty()) {  // an empty name would GET the whole PVC collection
        vf.Fail(fmt::format("{}: volume {}: persistentVolumeClaim.claimName is required", f.what(),
                            pv.name));
      }
    } else if (pv.kind == VolumeKind::kHostPath) {
      pv.host_path = vf.Str({"hostPath", "path"});
    } else if (pv.kind == VolumeKind::kEphemeral) {
      pv.claim_name = p.meta.name + "-" + pv.name;  // the PVC Kubernetes creates for it
    }
    f.Absorb(vf);
    p.volumes.push_back(std::move(pv));
  });
  auto read_containers = [&](Fields::Path path, std::vector<ContainerInfo>* out) {
    f.ForEach(path, [&](const Object& c) {
      Fields cf(c, f.what() + ": container");
      ContainerInfo ci;
      ci.name = cf.Str({"name"});
      cf.ForEach({"volumeMounts"}, [&](const Object& m) {
        Fields mf(m, cf.what());
        ci.volume_mounts.push_back(mf.Str({"name"}));
        cf.Absorb(mf);
      });
      cf.ForEach({"volumeDevices"}, [&](const Object& m) {
        Fields mf(m, cf.what());
        ci.volume_devices.push_back(mf.Str({"name"}));
        cf.Absorb(mf);
      });
      f.Absorb(cf);
      out->push_back(std::move(ci));
    });
  };
  read_containers({"spec", "initContainers"}, &p.init_containers);
  read_containers({"spec", "containers"}, &p.containers);
  f.ForEach({"status", "initContainerStatuses"}, [&](const Object& s) {
    Fields sf(s, f.what() + ": initContainerStatus");
    ContainerStatusInfo cs;
    cs.name = sf.Str({"name"});
    cs.running = sf.Find({"state", "running"}) != nullptr;
    cs.terminated = sf.Find({"state", "terminated"}) != nullptr;
    f.Absorb(sf);
    p.init_container_statuses.push_back(std::move(cs));
  });
  FSB_RETURN_IF_ERROR(f.status());
  if (p.meta.name.empty() || p.meta.uid.empty()) {
    return Status::InvalidArgument(f.what() + ": metadata.name and metadata.uid are required");
  }
  return p;
}

Result<PersistentVolumeClaim> ParsePersistentVolumeClaim(const Object& obj) {
  FSB_RETURN_IF_ERROR(CheckObject(obj, "persistentvolumeclaim"));
  Fields f(obj, Describe(obj, "persistentvolumeclaim"));
  PersistentVolumeClaim c;
  c.meta = ReadMeta(f);
  c.volume_name = f.Str({"spec", "volumeName"});
  c.volume_mode = f.Str({"spec", "volumeMode"});
  c.phase = f.Str({"status", "phase"});
  FSB_RETURN_IF_ERROR(f.status());
  return c;
}

Result<PersistentVolume> ParsePersistentVolume(const Object& obj) {
  FSB_RETURN_IF_ERROR(CheckObject(obj, "persistentvolume"));
  Fields f(obj, Describe(obj, "persistentvolume"));
  PersistentVolume v;
  v.meta = ReadMeta(f);
  v.csi_driver = f.Str({"spec", "csi", "driver"});
  v.host_path = f.Str({"spec", "hostPath", "path"});
  v.local_path = f.Str({"spec", "local", "path"});
  v.volume_mode = f.Str({"spec", "volumeMode"});
  if (const Object* spec = f.Find({"spec"}); spec && spec->is_object()) {
    static const std::string_view kNotSources[] = {
        "accessModes",      "capacity",     "claimRef",
        "mountOptions",     "nodeAffinity", "persistentVolumeReclaimPolicy",
        "storageClassName", "volumeMode",   "volumeAttributesClassName"};
    for (auto it = spec->begin(); it != spec->end(); ++it) {
      bool skip = false;
      for (std::string_view k : kNotSources) skip |= it.key() == k;
      if (!skip) {
        v.source = it.key();
        break;
      }
    }
  }
  FSB_RETURN_IF_ERROR(f.status());
  return v;
}

Result<Secret<std::string>> SecretValue(const Object& secret, std::string_view key) {
  FSB_RETURN_IF_ERROR(CheckObject(secret, "secret"));
  const std::string what = Describe(secret, "secret");
  Fields f(secret, what);
  const Object* v = f.Find({"data", key});
  if (!v) {
    // stringData is folded into data by a real API server; accept it from simpler servers.
    const Object* sv = f.Find({"stringData", key});
    FSB_RETURN_IF_ERROR(f.status());
    if (sv && !sv->is_string())
      return Status::InvalidArgument(fmt::format("{}: stringData.{}: not a string", what, key));
    if (sv) return Secret<std::string>(sv->get<std::string>());
    return Status::NotFound(fmt::format("{}: no key \"{}\"", what, key));
  }
  FSB_RETURN_IF_ERROR(f.status());
  if (!v->is_string())
    return Status::InvalidArgument(fmt::format("{}: data.{}: not a string", what, key));
  Result<Bytes> raw = Base64Decode(v->get<std::string>());
  if (!raw.ok()) return Status::InvalidArgument(fmt::format("{}: data.{}: not base64", what, key));
  return Secret<std::string>(std::string(raw->begin(), raw->end()));
}

}  // namespace fsb::kube
