#include "kube/objects.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

namespace fsb::kube {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// 2026-11-26T10:04:05Z
constexpr int64_t kEpoch = 1795687445;

Clock::time_point At(int64_t secs) { return Clock::time_point(std::chrono::seconds(secs)); }

// ---- ParseTime / FormatTime

TEST(TimeTest, FormatIsUtcWithSecondPrecision) {
  EXPECT_EQ(FormatTime(At(kEpoch)), "2026-11-26T10:04:05Z");
  EXPECT_EQ(FormatTime(At(0)), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatTime(At(kEpoch) + 999ms), "2026-11-26T10:04:05Z");
}

TEST(TimeTest, ParsesZulu) {
  Result<Clock::time_point> t = ParseTime("2026-11-26T10:04:05Z");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(*t, At(kEpoch));
  EXPECT_EQ(FormatTime(*t), "2026-11-26T10:04:05Z");
}

TEST(TimeTest, ParsesLowercaseZ) {
  Result<Clock::time_point> t = ParseTime("2026-11-26T10:04:05z");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(*t, At(kEpoch));
}

TEST(TimeTest, NumericOffsetsAreConvertedToUtc) {
  Result<Clock::time_point> plus = ParseTime("2026-11-26T12:34:05+02:30");
  ASSERT_TRUE(plus.ok()) << plus.status().ToString();
  EXPECT_EQ(*plus, At(kEpoch));
  Result<Clock::time_point> minus = ParseTime("2026-11-26T05:04:05-05:00");
  ASSERT_TRUE(minus.ok()) << minus.status().ToString();
  EXPECT_EQ(*minus, At(kEpoch));
  Result<Clock::time_point> zero = ParseTime("2026-11-26T10:04:05+00:00");
  ASSERT_TRUE(zero.ok()) << zero.status().ToString();
  EXPECT_EQ(*zero, At(kEpoch));
}

TEST(TimeTest, OffsetCrossesMidnight) {
  Result<Clock::time_point> t = ParseTime("2026-11-27T01:04:05+15:00");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(*t, At(kEpoch));
}

TEST(TimeTest, FractionalSecondsAreKept) {
  Result<Clock::time_point> t = ParseTime("2026-11-26T10:04:05.25Z");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(*t, At(kEpoch) + 250ms);
  Result<Clock::time_point> micro = ParseTime("2026-11-26T10:04:05.000001+00:00");
  ASSERT_TRUE(micro.ok()) << micro.status().ToString();
  EXPECT_EQ(*micro, At(kEpoch) + 1us);
  // metav1.MicroTime and Go's RFC3339Nano: up to nine digits.
  Result<Clock::time_point> nano = ParseTime("2026-11-26T10:04:05.123456789Z");
  ASSERT_TRUE(nano.ok()) << nano.status().ToString();
  EXPECT_GE(*nano, At(kEpoch) + 123456us);
  EXPECT_LT(*nano, At(kEpoch) + 123457us);
  EXPECT_EQ(FormatTime(*nano), "2026-11-26T10:04:05Z");
}

TEST(TimeTest, LaterFractionSortsLater) {
  Result<Clock::time_point> a = ParseTime("2026-11-26T10:04:05.1Z");
  Result<Clock::time_point> b = ParseTime("2026-11-26T10:04:05.2Z");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_LT(*a, *b);
}

TEST(TimeTest, GarbageIsInvalidArgumentQuotingTheText) {
  for (const char* bad : {
           "",
           "garbage",
           "2026-11-26",
           "2026-11-26T10:04:05",        // no zone
           "2026-11-26T10:04:05Zjunk",   // trailing text
           "2026-11-26T10:04:05 Z",      // space before the zone
           "2026-11-26T10:04:05+0200",   // offset without colon
           "2026-11-26T10:04:05+02",     // short offset
           "2026-11-26T10:04:05+ab:cd",  // offset not digits
           "2026-11-26T10:04:05+02:3x",  // offset not digits
           "2026-11-26T10:04:05+24:00",  // offset hour out of range
           "2026-11-26T10:04:05+02:60",  // offset minute out of range
           "2026-11-26T10:04:05.Z",      // fraction without digits
           "2026-13-26T10:04:05Z",       // month 13
           "2026-11-32T10:04:05Z",       // day 32
           "2026-11-26T24:04:05Z",       // hour 24
           "2026-11-26T10:60:05Z",       // minute 60
           "2026-1-26T10:04:05Z",        // one-digit month
           " 2026-11-26T10:04:05Z",      // leading space
           "2026-11-26X10:04:05Z",       // wrong separator
           "+2026-11-26T10:04:05Z",      // sign
       }) {
    Result<Clock::time_point> t = ParseTime(bad);
    ASSERT_FALSE(t.ok()) << "accepted \"" << bad << "\"";
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(t.status().message(), HasSubstr("\"" + std::string(bad) + "\"")) << bad;
  }
}

TEST(TimeTest, EmbeddedNulIsRejected) {
  const std::string s("2026-11-26T10:04:05Z\0junk", 25);
  EXPECT_FALSE(ParseTime(s).ok());
}

// ---- ParseMeta

Object FullMeta() {
  return {{"metadata",
           {{"name", "pvb-1"},
            {"namespace", "velero"},
            {"uid", "u-1"},
            {"resourceVersion", "42"},
            {"generateName", "pvb-"},
            {"labels", {{"a", "1"}, {"b", "2"}}},
            {"annotations", {{"note", "x"}}},
            {"finalizers", {"velero.io/f"}},
            {"creationTimestamp", "2026-11-26T10:04:05Z"},
            {"deletionTimestamp", "2026-11-26T11:00:00Z"},
            {"ownerReferences",
             {{{"apiVersion", "velero.io/v1"}, {"kind", "Backup"}, {"name", "b0"}, {"uid", "b0u"}},
              {{"apiVersion", "velero.io/v1"},
               {"kind", "Backup"},
               {"name", "b1"},
               {"uid", "b1u"},
               {"controller", true}}}}}}};
}

TEST(ParseMetaTest, ReadsEveryField) {
  Result<ObjectMeta> m = ParseMeta(FullMeta());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->name, "pvb-1");
  EXPECT_EQ(m->ns, "velero");
  EXPECT_EQ(m->uid, "u-1");
  EXPECT_EQ(m->resource_version, "42");
  EXPECT_EQ(m->generate_name, "pvb-");
  EXPECT_EQ(m->labels, (Labels{{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(m->annotations, (Labels{{"note", "x"}}));
  EXPECT_THAT(m->finalizers, ElementsAre("velero.io/f"));
  EXPECT_EQ(m->creation_timestamp, "2026-11-26T10:04:05Z");
  EXPECT_EQ(m->deletion_timestamp, "2026-11-26T11:00:00Z");
  ASSERT_EQ(m->owner_references.size(), 2u);
  EXPECT_EQ(m->owner_references[0].name, "b0");
  EXPECT_FALSE(m->owner_references[0].controller);
  EXPECT_EQ(m->owner_references[1].api_version, "velero.io/v1");
  EXPECT_EQ(m->owner_references[1].kind, "Backup");
  EXPECT_EQ(m->owner_references[1].uid, "b1u");
  EXPECT_TRUE(m->owner_references[1].controller);
  EXPECT_EQ(m->Key(), "velero/pvb-1");
}

TEST(ParseMetaTest, ControllerIsTheOwnerMarkedController) {
  Result<ObjectMeta> m = ParseMeta(FullMeta());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_NE(m->Controller(), nullptr);
  EXPECT_EQ(m->Controller()->name, "b1");
}

TEST(ParseMetaTest, NoControllerWhenNoneIsMarked) {
  Object o = FullMeta();
  o["metadata"]["ownerReferences"][1]["controller"] = false;
  Result<ObjectMeta> m = ParseMeta(o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->Controller(), nullptr);
}

TEST(ParseMetaTest, AbsentAndNullFieldsAreEmpty) {
  Result<ObjectMeta> m = ParseMeta({{"metadata", {{"name", "x"}, {"labels", nullptr}}}});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->Key(), "x");
  EXPECT_TRUE(m->labels.empty());
  EXPECT_TRUE(m->owner_references.empty());
  EXPECT_FALSE(m->creation_timestamp.has_value());
  EXPECT_FALSE(m->deletion_timestamp.has_value());
  EXPECT_EQ(m->Controller(), nullptr);
}

// Each malformed field is kInvalidArgument naming the object and the field.
void ExpectMetaError(const Object& obj, const std::string& field) {
  Result<ObjectMeta> m = ParseMeta(obj);
  ASSERT_FALSE(m.ok()) << "accepted " << obj.dump();
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr(field)) << obj.dump();
}

TEST(ParseMetaTest, WrongTypesNameTheField) {
  ExpectMetaError({{"metadata", {{"name", 7}}}}, "metadata.name");
  ExpectMetaError({{"metadata", {{"name", "x"}, {"labels", {{"a", 1}}}}}}, "metadata.labels");
  ExpectMetaError({{"metadata", {{"name", "x"}, {"labels", "a=b"}}}}, "metadata.labels");
  ExpectMetaError({{"metadata", {{"name", "x"}, {"finalizers", {1}}}}}, "metadata.finalizers");
  ExpectMetaError({{"metadata", {{"name", "x"}, {"ownerReferences", {"b"}}}}},
                  "metadata.ownerReferences");
  ExpectMetaError({{"metadata", {{"name", "x"}, {"ownerReferences", {{{"controller", "yes"}}}}}}},
                  "controller");
  ExpectMetaError({{"metadata", {{"name", "x"}, {"deletionTimestamp", 5}}}},
                  "metadata.deletionTimestamp");
  ExpectMetaError({{"metadata", {{"name", "x"}, {"creationTimestamp", true}}}},
                  "metadata.creationTimestamp");
  ExpectMetaError({{"metadata", "x"}}, "metadata");
}

TEST(ParseMetaTest, ErrorNamesTheObject) {
  Result<ObjectMeta> m =
      ParseMeta({{"metadata", {{"name", "x"}, {"namespace", "ns"}, {"uid", 1}}}});
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("ns/x"));
  EXPECT_THAT(m.status().message(), HasSubstr("metadata.uid"));
}

TEST(ParseMetaTest, NotAnObject) {
  for (const Object& bad : {Object(nullptr), Object("x"), Object::array(), Object(3)}) {
    Result<ObjectMeta> m = ParseMeta(bad);
    ASSERT_FALSE(m.ok()) << bad.dump();
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(ObjectReferenceTest, ToJsonUsesApiFieldNames) {
  ObjectReference r;
  r.kind = "Pod";
  r.ns = "app";
  r.name = "web";
  r.uid = "u";
  EXPECT_EQ(ToJson(r),
            (Object{{"kind", "Pod"}, {"namespace", "app"}, {"name", "web"}, {"uid", "u"}}));
}

// ---- ParsePod

Object PodJson() {
  return {
      {"metadata", {{"name", "web"}, {"namespace", "app"}, {"uid", "pod-uid"}}},
      {"spec",
       {{"nodeName", "node-a"},
        {"volumes",
         {{{"name", "scratch"}, {"emptyDir", Object::object()}},
          {{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "data-claim"}}}},
          {{"name", "eph"}, {"ephemeral", {{"volumeClaimTemplate", {{"spec", Object::object()}}}}}},
          {{"name", "host"}, {"hostPath", {{"path", "/var/log"}, {"type", "Directory"}}}},
          {{"name", "inline"}, {"csi", {{"driver", "secrets-store.csi.k8s.io"}}}},
          {{"name", "creds"}, {"secret", {{"secretName", "s"}}}},
          {{"name", "conf"}, {"configMap", {{"name", "c"}}}},
          {{"name", "token"}, {"projected", {{"sources", Object::array()}}}},
          {{"name", "info"}, {"downwardAPI", {{"items", Object::array()}}}},
          {{"name", "share"}, {"nfs", {{"server", "nfs"}, {"path", "/x"}}}}}},
        {"initContainers",
         {{{"name", "restore-wait"}, {"volumeMounts", {{{"name", "data"}, {"mountPath", "/r"}}}}}}},
        {"containers",
         {{{"name", "app"},
           {"volumeMounts",
            {{{"name", "scratch"}, {"mountPath", "/s"}}, {{"name", "data"}, {"mountPath", "/d"}}}},
           {"volumeDevices", {{{"name", "blk"}, {"devicePath", "/dev/xvda"}}}}},
          {{"name", "sidecar"}}}}}},
      {"status",
       {{"phase", "Pending"},
        {"initContainerStatuses",
         {{{"name", "restore-wait"}, {"state", {{"running", {{"startedAt", "x"}}}}}},
          {{"name", "other"}, {"state", {{"terminated", {{"exitCode", 0}}}}}},
          {{"name", "waiting"}, {"state", {{"waiting", Object::object()}}}}}}}}};
}

TEST(ParsePodTest, ReadsSpecAndStatus) {
  Result<Pod> p = ParsePod(PodJson());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->meta.Key(), "app/web");
  EXPECT_EQ(p->node_name, "node-a");
  EXPECT_EQ(p->phase, "Pending");
  EXPECT_EQ(p->volumes.size(), 10u);
}

TEST(ParsePodTest, EveryVolumeKind) {
  Result<Pod> p = ParsePod(PodJson());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  struct Want {
    const char* name;
    VolumeKind kind;
    const char* source;
  };
  for (const Want& w : {
           Want{"scratch", VolumeKind::kEmptyDir, "emptyDir"},
           Want{"data", VolumeKind::kPersistentVolumeClaim, "persistentVolumeClaim"},
           Want{"eph", VolumeKind::kEphemeral, "ephemeral"},
           Want{"host", VolumeKind::kHostPath, "hostPath"},
           Want{"inline", VolumeKind::kCsi, "csi"},
           Want{"creds", VolumeKind::kSecret, "secret"},
           Want{"conf", VolumeKind::kConfigMap, "configMap"},
           Want{"token", VolumeKind::kProjected, "projected"},
           Want{"info", VolumeKind::kDownwardApi, "downwardAPI"},
           Want{"share", VolumeKind::kOther, "nfs"},
       }) {
    const PodVolume* v = p->FindVolume(w.name);
    ASSERT_NE(v, nullptr) << w.name;
    EXPECT_EQ(v->kind, w.kind) << w.name;
    EXPECT_EQ(v->source, w.source) << w.name;
  }
  EXPECT_EQ(p->FindVolume("data")->claim_name, "data-claim");
  EXPECT_EQ(p->FindVolume("host")->host_path, "/var/log");
  EXPECT_TRUE(p->FindVolume("scratch")->claim_name.empty());
  EXPECT_EQ(p->FindVolume("missing"), nullptr);
}

TEST(ParsePodTest, EphemeralVolumeClaimIsPodNameDashVolumeName) {
  Result<Pod> p = ParsePod(PodJson());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->FindVolume("eph")->claim_name, "web-eph");
}

TEST(ParsePodTest, NullVolumeSourceKeysAreIgnored) {
  Object o = PodJson();
  // Some clients serialise every optional source as null; only the set one counts.
  o["spec"]["volumes"] = {
      {{"name", "v"}, {"awsElasticBlockStore", nullptr}, {"emptyDir", Object::object()}}};
  Result<Pod> p = ParsePod(o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->volumes[0].kind, VolumeKind::kEmptyDir);
  EXPECT_EQ(p->volumes[0].source, "emptyDir");
}

TEST(ParsePodTest, ContainersAndInitContainersWithMountsAndDevices) {
  Result<Pod> p = ParsePod(PodJson());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->init_containers.size(), 1u);
  EXPECT_EQ(p->init_containers[0].name, "restore-wait");
  EXPECT_THAT(p->init_containers[0].volume_mounts, ElementsAre("data"));
  ASSERT_EQ(p->containers.size(), 2u);
  EXPECT_EQ(p->containers[0].name, "app");
  EXPECT_THAT(p->containers[0].volume_mounts, ElementsAre("scratch", "data"));
  EXPECT_THAT(p->containers[0].volume_devices, ElementsAre("blk"));
  EXPECT_EQ(p->containers[1].name, "sidecar");
  EXPECT_TRUE(p->containers[1].volume_mounts.empty());
  EXPECT_TRUE(p->containers[1].volume_devices.empty());
}

TEST(ParsePodTest, InitContainerStatusesRunningAndTerminated) {
  Result<Pod> p = ParsePod(PodJson());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->init_container_statuses.size(), 3u);
  EXPECT_EQ(p->init_container_statuses[0].name, "restore-wait");
  EXPECT_TRUE(p->init_container_statuses[0].running);
  EXPECT_FALSE(p->init_container_statuses[0].terminated);
  EXPECT_FALSE(p->init_container_statuses[1].running);
  EXPECT_TRUE(p->init_container_statuses[1].terminated);
  EXPECT_FALSE(p->init_container_statuses[2].running);
  EXPECT_FALSE(p->init_container_statuses[2].terminated);
}

TEST(ParsePodTest, RunningWithEmptyStateObjectCounts) {
  Object o = PodJson();
  o["status"]["initContainerStatuses"] = {
      {{"name", "restore-wait"}, {"state", {{"running", Object::object()}}}}};
  Result<Pod> p = ParsePod(o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->init_container_statuses[0].running);
}

TEST(ParsePodTest, KubeletUidOfAMirrorPodIsTheMirrorAnnotation) {
  Object o = PodJson();
  Result<Pod> plain = ParsePod(o);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->KubeletUid(), "pod-uid");
  o["metadata"]["annotations"] = {{"kubernetes.io/config.mirror", "static-hash"}};
  Result<Pod> mirror = ParsePod(o);
  ASSERT_TRUE(mirror.ok()) << mirror.status().ToString();
  EXPECT_EQ(mirror->KubeletUid(), "static-hash");
  o["metadata"]["annotations"] = {{"kubernetes.io/config.mirror", ""}};
  Result<Pod> empty = ParsePod(o);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->KubeletUid(), "pod-uid");
}

void ExpectPodError(const Object& obj, const std::string& field) {
  Result<Pod> p = ParsePod(obj);
  ASSERT_FALSE(p.ok()) << "accepted " << obj.dump();
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument) << obj.dump();
  EXPECT_THAT(p.status().message(), HasSubstr(field)) << obj.dump();
  EXPECT_THAT(p.status().message(), HasSubstr("app/web")) << obj.dump();
}

TEST(ParsePodTest, MalformedFieldsAreNamed) {
  auto with = [](std::initializer_list<std::string_view> path, Object value) {
    Object o = PodJson();
    Object* cur = &o;
    for (std::string_view p : path) cur = &(*cur)[std::string(p)];
    *cur = std::move(value);
    return o;
  };
  ExpectPodError(with({"spec", "nodeName"}, 1), "spec.nodeName");
  ExpectPodError(with({"status", "phase"}, Object::array()), "status.phase");
  ExpectPodError(with({"spec", "volumes"}, "x"), "spec.volumes");
  ExpectPodError(with({"spec", "volumes"}, {1}), "spec.volumes");
  ExpectPodError(with({"spec", "volumes"}, {{{"name", 3}, {"emptyDir", Object::object()}}}),
                 "name");
  ExpectPodError(with({"spec", "volumes"}, {{{"name", "d"}, {"persistentVolumeClaim", "c"}}}),
                 "persistentVolumeClaim");
  ExpectPodError(
      with({"spec", "volumes"}, {{{"name", "d"}, {"persistentVolumeClaim", {{"claimName", 1}}}}}),
      "persistentVolumeClaim.claimName");
  ExpectPodError(with({"spec", "volumes"}, {{{"name", "h"}, {"hostPath", {{"path", false}}}}}),
                 "hostPath.path");
  ExpectPodError(with({"spec", "containers"}, {{{"name", "a"}, {"volumeMounts", "x"}}}),
                 "volumeMounts");
  ExpectPodError(with({"spec", "containers"}, {{{"name", "a"}, {"volumeMounts", {{{"name", 1}}}}}}),
                 "name");
  ExpectPodError(with({"spec", "initContainers"}, {{{"name", "a"}, {"volumeDevices", {7}}}}),
                 "volumeDevices");
  ExpectPodError(with({"status", "initContainerStatuses"}, {{{"name", "a"}, {"state", "run"}}}),
                 "state");
  ExpectPodError(with({"status", "initContainerStatuses"}, "x"), "status.initContainerStatuses");
  ExpectPodError(with({"spec"}, "x"), "spec");
}

TEST(ParsePodTest, VolumeWithoutNameIsRejected) {
  Object o = PodJson();
  o["spec"]["volumes"] = {{{"emptyDir", Object::object()}}};
  ExpectPodError(o, "name");
}

TEST(ParsePodTest, PvcVolumeWithoutClaimNameIsRejected) {
  Object o = PodJson();
  o["spec"]["volumes"] = {{{"name", "d"}, {"persistentVolumeClaim", Object::object()}}};
  ExpectPodError(o, "persistentVolumeClaim.claimName");
}

TEST(ParsePodTest, NameAndUidAreRequired) {
  Object o = PodJson();
  o["metadata"].erase("uid");
  ExpectPodError(o, "metadata.uid");
  Object n = PodJson();
  n["metadata"].erase("name");
  Result<Pod> p = ParsePod(n);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("metadata.name"));
}

TEST(ParsePodTest, NotAnObject) {
  Result<Pod> p = ParsePod(Object::array());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("pod"));
}

// ---- PVC / PV

TEST(ParsePersistentVolumeClaimTest, ReadsBindingAndMode) {
  Result<PersistentVolumeClaim> c = ParsePersistentVolumeClaim(
      {{"metadata", {{"name", "data"}, {"namespace", "app"}, {"uid", "c-uid"}}},
       {"spec", {{"volumeName", "pv-1"}, {"volumeMode", "Block"}}},
       {"status", {{"phase", "Bound"}}}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->meta.uid, "c-uid");
  EXPECT_EQ(c->volume_name, "pv-1");
  EXPECT_EQ(c->volume_mode, "Block");
  EXPECT_EQ(c->phase, "Bound");
}

TEST(ParsePersistentVolumeClaimTest, UnboundHasNoVolumeName) {
  Result<PersistentVolumeClaim> c = ParsePersistentVolumeClaim(
      {{"metadata", {{"name", "data"}, {"namespace", "app"}}}, {"status", {{"phase", "Pending"}}}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->volume_name.empty());
  EXPECT_EQ(c->phase, "Pending");
}

TEST(ParsePersistentVolumeClaimTest, MalformedFieldsAreNamed) {
  Result<PersistentVolumeClaim> c = ParsePersistentVolumeClaim(
      {{"metadata", {{"name", "data"}, {"namespace", "app"}}}, {"spec", {{"volumeName", 5}}}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("spec.volumeName"));
  EXPECT_THAT(c.status().message(), HasSubstr("persistentvolumeclaim app/data"));
  EXPECT_FALSE(ParsePersistentVolumeClaim("pvc").ok());
}

TEST(ParsePersistentVolumeTest, Csi) {
  Result<PersistentVolume> v = ParsePersistentVolume(
      {{"metadata",
        {{"name", "pv-1"}, {"annotations", {{"pv.kubernetes.io/provisioned-by", "ebs"}}}}},
       {"spec",
        {{"accessModes", {"ReadWriteOnce"}},
         {"capacity", {{"storage", "1Gi"}}},
         {"claimRef", {{"name", "data"}}},
         {"csi", {{"driver", "ebs.csi.aws.com"}, {"volumeHandle", "vol-1"}}},
         {"persistentVolumeReclaimPolicy", "Delete"},
         {"storageClassName", "gp3"},
         {"volumeMode", "Filesystem"}}}});
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->csi_driver, "ebs.csi.aws.com");
  EXPECT_EQ(v->source, "csi");
  EXPECT_EQ(v->volume_mode, "Filesystem");
  EXPECT_TRUE(v->host_path.empty());
  EXPECT_EQ(v->meta.annotations.at("pv.kubernetes.io/provisioned-by"), "ebs");
}

TEST(ParsePersistentVolumeTest, HostPathAndLocal) {
  Result<PersistentVolume> h =
      ParsePersistentVolume({{"metadata", {{"name", "pvc-1"}}},
                             {"spec",
                              {{"hostPath", {{"path", "/var/local-path-provisioner/pvc-1"}}},
                               {"nodeAffinity", Object::object()}}}});
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->host_path, "/var/local-path-provisioner/pvc-1");
  EXPECT_EQ(h->source, "hostPath");
  EXPECT_TRUE(h->csi_driver.empty());
  Result<PersistentVolume> l = ParsePersistentVolume(
      {{"metadata", {{"name", "local-1"}}},
       {"spec", {{"local", {{"path", "/mnt/disks/ssd1"}}}, {"capacity", Object::object()}}}});
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->local_path, "/mnt/disks/ssd1");
  EXPECT_EQ(l->source, "local");
}

TEST(ParsePersistentVolumeTest, OtherSourceKeyIsReported) {
  Result<PersistentVolume> v = ParsePersistentVolume({{"metadata", {{"name", "nfs-1"}}},
                                                      {"spec",
                                                       {{"accessModes", {"ReadWriteMany"}},
                                                        {"mountOptions", {"hard"}},
                                                        {"nfs", {{"server", "s"}, {"path", "/x"}}},
                                                        {"volumeAttributesClassName", "c"}}}});
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->source, "nfs");
  EXPECT_TRUE(v->csi_driver.empty());
}

TEST(ParsePersistentVolumeTest, MalformedFieldsAreNamed) {
  for (const auto& [spec, field] : std::vector<std::pair<Object, std::string>>{
           {{{"csi", {{"driver", 1}}}}, "spec.csi.driver"},
           {{{"csi", "x"}}, "spec.csi"},
           {{{"hostPath", {{"path", Object::array()}}}}, "spec.hostPath.path"},
           {{{"local", {{"path", 2}}}}, "spec.local.path"},
           {{{"volumeMode", true}}, "spec.volumeMode"},
       }) {
    Result<PersistentVolume> v =
        ParsePersistentVolume({{"metadata", {{"name", "pv-x"}}}, {"spec", spec}});
    ASSERT_FALSE(v.ok()) << spec.dump();
    EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(v.status().message(), HasSubstr(field));
    EXPECT_THAT(v.status().message(), HasSubstr("persistentvolume pv-x"));
  }
}

// ---- SecretValue

Object SecretJson(Object data, Object string_data = nullptr) {
  Object s = {{"metadata", {{"name", "creds"}, {"namespace", "velero"}}},
              {"data", std::move(data)}};
  if (!string_data.is_null()) s["stringData"] = std::move(string_data);
  return s;
}

TEST(SecretValueTest, DecodesBase64) {
  Result<Secret<std::string>> v = SecretValue(SecretJson({{"cloud", "c2VjcmV0"}}), "cloud");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->Reveal(), "secret");
}

TEST(SecretValueTest, KeepsBinaryAndNewlines) {
  Result<Secret<std::string>> v =
      SecretValue(SecretJson({{"k", "cGFzc3dvcmQK"}, {"z", "AP8="}}), "k");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->Reveal(), "password\n");
  Result<Secret<std::string>> z = SecretValue(SecretJson({{"z", "AP8="}}), "z");
  ASSERT_TRUE(z.ok()) << z.status().ToString();
  EXPECT_EQ(z->Reveal(), std::string("\0\xff", 2));
}

TEST(SecretValueTest, EmptyValueIsEmpty) {
  Result<Secret<std::string>> v = SecretValue(SecretJson({{"k", ""}}), "k");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->Reveal(), "");
}

TEST(SecretValueTest, MissingKeyIsNotFoundNamingSecretAndKey) {
  for (const Object& s : {SecretJson({{"other", "eA=="}}), SecretJson(nullptr),
                          Object{{"metadata", {{"name", "creds"}, {"namespace", "velero"}}}}}) {
    Result<Secret<std::string>> v = SecretValue(s, "cloud");
    ASSERT_FALSE(v.ok()) << s.dump();
    EXPECT_EQ(v.status().code(), StatusCode::kNotFound);
    EXPECT_THAT(v.status().message(), HasSubstr("velero/creds"));
    EXPECT_THAT(v.status().message(), HasSubstr("\"cloud\""));
  }
}

TEST(SecretValueTest, NotBase64IsInvalidAndDoesNotLeakTheValue) {
  Result<Secret<std::string>> v = SecretValue(SecretJson({{"cloud", "hunter2!"}}), "cloud");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("data.cloud"));
  EXPECT_THAT(v.status().message(), HasSubstr("base64"));
  EXPECT_THAT(v.status().message(), ::testing::Not(HasSubstr("hunter2")));
}

TEST(SecretValueTest, ValueNotAStringIsInvalid) {
  Result<Secret<std::string>> v = SecretValue(SecretJson({{"cloud", 12}}), "cloud");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("data.cloud"));
}

TEST(SecretValueTest, DataNotAnObjectIsInvalid) {
  Result<Secret<std::string>> v = SecretValue(SecretJson("c2VjcmV0"), "cloud");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("data"));
}

TEST(SecretValueTest, StringDataIsPlainText) {
  Result<Secret<std::string>> v = SecretValue(SecretJson(nullptr, {{"cloud", "plain"}}), "cloud");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->Reveal(), "plain");
  // data wins over stringData (a real server folds stringData into data).
  Result<Secret<std::string>> both =
      SecretValue(SecretJson({{"cloud", "ZGF0YQ=="}}, {{"cloud", "plain"}}), "cloud");
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  EXPECT_EQ(both->Reveal(), "data");
}

TEST(SecretValueTest, StringDataNotAStringIsInvalid) {
  Result<Secret<std::string>> v = SecretValue(SecretJson(nullptr, {{"cloud", 1}}), "cloud");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("stringData.cloud"));
}

TEST(SecretValueTest, NotAnObject) {
  Result<Secret<std::string>> v = SecretValue(Object("x"), "cloud");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fsb::kube
