// Unit tests of coordinator/selection.h: Velero's pod and volume selection (§8.1, §8.2).
#include "coordinator/selection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace fsb::coordinator {
namespace {

using json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

kube::Pod MakePod(const json& volumes, const json& annotations = json::object(),
                  const json& extra_container = json()) {
  json mounts = json::array();
  for (const json& v : volumes) mounts.push_back({{"name", v["name"]}, {"mountPath", "/m"}});
  json containers = {{{"name", "app"}, {"volumeMounts", mounts}}};
  if (!extra_container.is_null()) containers = json::array({extra_container});
  json pod = {{"metadata",
               {{"name", "p"}, {"namespace", "ns"}, {"uid", "u1"}, {"annotations", annotations}}},
              {"spec", {{"nodeName", "n"}, {"volumes", volumes}, {"containers", containers}}},
              {"status", {{"phase", "Running"}}}};
  Result<kube::Pod> p = kube::ParsePod(pod);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return *p;
}

std::vector<std::string> Names(const VolumeSelection& s) {
  std::vector<std::string> out;
  for (const SelectedVolume& v : s.selected) out.push_back(v.name);
  return out;
}

std::string Reason(const VolumeSelection& s, const std::string& name) {
  for (const SkippedVolume& v : s.skipped)
    if (v.name == name) return v.reason;
  return "";
}

const json kMixed =
    json::array({{{"name", "cache"}, {"emptyDir", json::object()}},
                 {{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "c"}}}},
                 {{"name", "host"}, {"hostPath", {{"path", "/x"}}}},
                 {{"name", "sec"}, {"secret", {{"secretName", "s"}}}},
                 {{"name", "cm"}, {"configMap", {{"name", "c"}}}},
                 {{"name", "proj"}, {"projected", json::object()}},
                 {{"name", "down"}, {"downwardAPI", json::object()}},
                 {{"name", "default-token-abc"}, {"secret", json::object()}}});

TEST(SelectionTest, DefaultVolumesToFsBackupTakesAllButTheAlwaysSkippedKinds) {
  VolumeSelectionOptions o;
  o.default_volumes_to_fs_backup = true;
  std::map<std::string, ClaimInfo> claims = {{"c", {"pvc-uid", {}, false}}};
  VolumeSelection s = SelectPodVolumes(MakePod(kMixed), claims, o);
  EXPECT_THAT(Names(s), ElementsAre("cache", "data"));
  EXPECT_EQ(s.selected[1].claim_uid, "pvc-uid");
  EXPECT_THAT(Reason(s, "host"), HasSubstr("hostPath volume which is not supported"));
  for (const char* n : {"sec", "cm", "proj", "down", "default-token-abc"}) {
    EXPECT_FALSE(Reason(s, n).empty()) << n;
  }
}

TEST(SelectionTest, OptOutAnnotationIsSplitWithoutTrimming) {
  VolumeSelectionOptions o;
  o.default_volumes_to_fs_backup = true;
  // " data" (with the space) is not "data": Velero does not trim.
  VolumeSelection s = SelectPodVolumes(
      MakePod(kMixed, {{"backup.velero.io/backup-volumes-excludes", "cache, data"}}), {}, o);
  EXPECT_THAT(Names(s), ElementsAre("data"));
  EXPECT_THAT(Reason(s, "cache"), HasSubstr("backup-volumes-excludes"));
}

TEST(SelectionTest, OptInAnnotationSelectsOnlyListedVolumes) {
  VolumeSelectionOptions o;
  VolumeSelection s = SelectPodVolumes(
      MakePod(kMixed, {{"backup.velero.io/backup-volumes", "data,host,missing,,data"}}), {}, o);
  EXPECT_THAT(Names(s), ElementsAre("data"));
  EXPECT_FALSE(Reason(s, "host").empty());
  EXPECT_THAT(Reason(s, "missing"), HasSubstr("not found in pod"));
  EXPECT_TRUE(SelectPodVolumes(MakePod(kMixed), {}, o).selected.empty());
}

TEST(SelectionTest, UnmountedBlockAndHostPathPvVolumesAreSkipped) {
  json vols = json::array({{{"name", "a"}, {"emptyDir", json::object()}},
                           {{"name", "blk"}, {"persistentVolumeClaim", {{"claimName", "b"}}}},
                           {{"name", "hp"}, {"persistentVolumeClaim", {{"claimName", "h"}}}},
                           {{"name", "unmounted"}, {"emptyDir", json::object()}}});
  json c = {{"name", "app"},
            {"volumeMounts",
             {{{"name", "a"}, {"mountPath", "/a"}}, {{"name", "hp"}, {"mountPath", "/h"}}}},
            {"volumeDevices", {{{"name", "blk"}, {"devicePath", "/dev/x"}}}}};
  VolumeSelectionOptions o;
  o.default_volumes_to_fs_backup = true;
  std::map<std::string, ClaimInfo> claims = {{"h", {"h-uid", {}, true}}};
  VolumeSelection s = SelectPodVolumes(MakePod(vols, json::object(), c), claims, o);
  EXPECT_THAT(Names(s), ElementsAre("a"));
  EXPECT_THAT(Reason(s, "blk"), HasSubstr("block volume"));
  EXPECT_THAT(Reason(s, "hp"), HasSubstr("hostPath persistent volume"));
  EXPECT_THAT(Reason(s, "unmounted"), HasSubstr("not mounted by any container"));
}

TEST(SelectionTest, ExcludedPvcLabelAndResourceFilterSkipClaims) {
  VolumeSelectionOptions o;
  o.default_volumes_to_fs_backup = true;
  std::map<std::string, ClaimInfo> claims = {
      {"c", {"u", {{"velero.io/exclude-from-backup", "true"}}, false}}};
  VolumeSelection s = SelectPodVolumes(MakePod(kMixed), claims, o);
  EXPECT_THAT(Names(s), ElementsAre("cache"));
  EXPECT_THAT(Reason(s, "data"), HasSubstr("velero.io/exclude-from-backup"));
  o.pvcs_included = false;
  s = SelectPodVolumes(MakePod(kMixed), {}, o);
  EXPECT_THAT(Names(s), ElementsAre("cache"));
  EXPECT_THAT(Reason(s, "data"), HasSubstr("resource filter"));
}

TEST(SelectionTest, NamespacesWithGlobsAndExcludesWinning) {
  EXPECT_TRUE(NamespaceIncluded("x", {}, {}));
  EXPECT_TRUE(NamespaceIncluded("x", {"*"}, {}));
  EXPECT_TRUE(NamespaceIncluded("app-1", {"app-*"}, {}));
  EXPECT_FALSE(NamespaceIncluded("db", {"app-*"}, {}));
  EXPECT_FALSE(NamespaceIncluded("app-1", {"*"}, {"app-1"}));
  EXPECT_FALSE(NamespaceIncluded("kube-system", {}, {"kube-*"}));
}

TEST(SelectionTest, ResourceFilterUnderstandsShortNames) {
  EXPECT_TRUE(ResourceIncluded("pods", {}, {}));
  EXPECT_TRUE(ResourceIncluded("pods", {"*"}, {}));
  EXPECT_FALSE(ResourceIncluded("persistentvolumeclaims", {}, {"pvc"}));
  EXPECT_FALSE(ResourceIncluded("persistentvolumeclaims", {"pods"}, {}));
  EXPECT_TRUE(ResourceIncluded("pods", {"Pods", "deployments"}, {}));
}

TEST(SelectionTest, LabelSelectorsAndOrSelectors) {
  kube::velero::LabelSelector app;
  app.match_labels = {{"app", "web"}};
  kube::velero::LabelSelector tier;
  tier.match_expressions = {{"tier", "In", {"db", "cache"}}};
  kube::velero::LabelSelector none;
  none.match_expressions = {{"skip", "DoesNotExist", {}}};
  EXPECT_TRUE(LabelsSelected({{"app", "web"}}, app, {}));
  EXPECT_FALSE(LabelsSelected({{"app", "db"}}, app, {}));
  EXPECT_TRUE(LabelsSelected({{"tier", "db"}}, std::nullopt, {app, tier}));
  EXPECT_FALSE(LabelsSelected({{"tier", "x"}}, std::nullopt, {app, tier}));
  EXPECT_TRUE(LabelsSelected({}, std::nullopt, {}));
  EXPECT_FALSE(LabelsSelected({{"skip", "1"}}, none, {}));
}

TEST(SelectionTest, FilterValidationMessagesAsVelero) {
  kube::velero::LabelSelector bad;
  bad.match_expressions = {{"app", "Sometimes", {}}};
  kube::velero::LabelSelector in_empty;
  in_empty.match_expressions = {{"app", "In", {}}};
  std::vector<std::string> e = ValidateFilters({"a", "b"}, {"b", "*"}, bad, {in_empty});
  std::string all;
  for (const std::string& s : e) all += s + "\n";
  EXPECT_THAT(all, HasSubstr("excludes list must not contain '*'"));
  EXPECT_THAT(all, HasSubstr("excludes list cannot contain an item in the includes list: b"));
  EXPECT_THAT(all, HasSubstr("only one can be specified"));
  EXPECT_THAT(all, HasSubstr("\"Sometimes\" is not a valid label selector operator"));
  EXPECT_THAT(all, HasSubstr("values set can't be empty"));
  EXPECT_TRUE(ValidateFilters({"a"}, {"b"}, std::nullopt, {}).empty());
}

TEST(SelectionTest, EffectiveDefaultVolumesToFsBackup) {
  kube::velero::Backup b;
  EXPECT_FALSE(EffectiveDefaultVolumesToFsBackup(b, false));
  EXPECT_TRUE(EffectiveDefaultVolumesToFsBackup(b, true));
  b.default_volumes_to_restic = true;
  EXPECT_TRUE(EffectiveDefaultVolumesToFsBackup(b, false));
  b.default_volumes_to_fs_backup = false;
  EXPECT_FALSE(EffectiveDefaultVolumesToFsBackup(b, true));
}

}  // namespace
}  // namespace fsb::coordinator
