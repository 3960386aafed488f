#include "agent/volume.h"

#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "kube/resource.h"
#include "tests/support/kube_api_server.h"
#include "tests/support/test_util.h"

namespace fsb::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::KubeApiServer;
using testing::ReadFileToString;
using testing::TempDir;
using testing::WriteStringToFile;
using Json = kube::Object;

constexpr char kPodUid[] = "11111111-2222-3333-4444-555555555555";
constexpr char kNs[] = "app";

class ResolveVolumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static const bool curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    ASSERT_TRUE(curl_ok);
    std::string why;
    server_ = KubeApiServer::Start({}, &why);
    ASSERT_NE(server_, nullptr) << why;
    kube::KubeConfig config;
    config.server = server_->url();
    Result<std::unique_ptr<kube::Client>> c = kube::Client::Create(std::move(config));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);

    pods_dir_ = dir_.path() / "pods";
    host_dir_ = dir_.path() / "host";
    fs::create_directories(pods_dir_);
    fs::create_directories(host_dir_);
    Result<hostpath::Root> pods = hostpath::OpenRoot(pods_dir_.string());
    ASSERT_TRUE(pods.ok()) << pods.status().ToString();
    pods_root_ = std::move(*pods);
    Result<hostpath::Root> host = hostpath::OpenRoot(host_dir_.string());
    ASSERT_TRUE(host.ok()) << host.status().ToString();
    host_root_ = std::move(*host);
    roots_.pods = &pods_root_;
    roots_.host = &host_root_;
  }

  // A kubelet volume directory with one file, so a test can tell which directory was opened.
  fs::path MakeVolumeDir(const std::string& plugin, const std::string& volume_dir,
                         const std::string& marker, const char* kind = "volumes") {
    const fs::path p = pods_dir_ / kPodUid / kind / plugin / volume_dir;
    fs::create_directories(p);
    WriteStringToFile(p / "marker", marker);
    return p;
  }

  void Put(const kube::Resource& r, Json obj) {
    Result<Json> stored = server_->Put(r, std::move(obj));
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  }

  // Returns the claim's UID (the server assigns it).
  std::string PutClaim(const std::string& name, const std::string& pv,
                       Json spec_extra = Json::object()) {
    Json spec = std::move(spec_extra);
    if (!pv.empty()) spec["volumeName"] = pv;
    Result<Json> stored = server_->Put(kube::kPersistentVolumeClaims,
                                       {{"metadata", {{"name", name}, {"namespace", kNs}}},
                                        {"spec", spec},
                                        {"status", {{"phase", pv.empty() ? "Pending" : "Bound"}}}});
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    return stored.ok() ? (*stored)["metadata"].value("uid", "") : "";
  }

  void PutPv(const std::string& name, Json spec, Json annotations = Json::object()) {
    Put(kube::kPersistentVolumes,
        {{"metadata", {{"name", name}, {"annotations", std::move(annotations)}}},
         {"spec", std::move(spec)}});
  }

  kube::Pod MakePod(Json volumes, Json annotations = Json::object()) {
    Result<kube::Pod> p = kube::ParsePod(
        {{"metadata",
          {{"name", "web"}, {"namespace", kNs}, {"uid", kPodUid}, {"annotations", annotations}}},
         {"spec", {{"nodeName", "node-a"}, {"volumes", std::move(volumes)}}}});
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? *p : kube::Pod();
  }

  kube::Pod PodWithClaim(const std::string& claim) {
    return MakePod({{{"name", "data"}, {"persistentVolumeClaim", {{"claimName", claim}}}}});
  }

  Result<VolumeLocation> Resolve(const kube::Pod& pod, const std::string& volume) {
    return ResolveVolume(*client_, roots_, pod, volume);
  }

  // The marker of the directory a location opened, read through its fd.
  static std::string MarkerOf(const VolumeLocation& loc) {
    return ReadFileToString(fs::path("/proc/self/fd") / std::to_string(loc.volume.dir.get()) /
                            "marker");
  }

  TempDir dir_;
  std::unique_ptr<KubeApiServer> server_;
  std::unique_ptr<kube::Client> client_;
  fs::path pods_dir_, host_dir_;
  hostpath::Root pods_root_, host_root_;
  VolumeRoots roots_;
};

TEST_F(ResolveVolumeTest, EmptyDir) {
  MakeVolumeDir("kubernetes.io~empty-dir", "scratch", "empty-dir");
  Result<VolumeLocation> loc =
      Resolve(MakePod({{{"name", "scratch"}, {"emptyDir", Json::object()}}}), "scratch");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->path, (pods_dir_ / kPodUid / "volumes/kubernetes.io~empty-dir/scratch").string());
  EXPECT_EQ(loc->volume.plugin, "kubernetes.io~empty-dir");
  EXPECT_TRUE(loc->pvc_uid.empty());
  EXPECT_EQ(loc->kind, "emptyDir");
  EXPECT_EQ(MarkerOf(*loc), "empty-dir");
}

TEST_F(ResolveVolumeTest, MirrorPodUsesTheMirrorUid) {
  const fs::path p = pods_dir_ / "static-hash" / "volumes/kubernetes.io~empty-dir/scratch";
  fs::create_directories(p);
  WriteStringToFile(p / "marker", "mirror");
  Result<VolumeLocation> loc =
      Resolve(MakePod({{{"name", "scratch"}, {"emptyDir", Json::object()}}},
                      {{"kubernetes.io/config.mirror", "static-hash"}}),
              "scratch");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(MarkerOf(*loc), "mirror");
}

TEST_F(ResolveVolumeTest, VolumeNotInPodIsNotFound) {
  Result<VolumeLocation> loc =
      Resolve(MakePod({{{"name", "scratch"}, {"emptyDir", Json::object()}}}), "other");
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(loc.status().message(), HasSubstr("volume not found in pod"));
  EXPECT_THAT(loc.status().message(), HasSubstr("\"other\""));
  EXPECT_THAT(loc.status().message(), HasSubstr("app/web"));
}

TEST_F(ResolveVolumeTest, DeclaredButNotMountedIsNotFoundSayingWhatWasSearched) {
  Result<VolumeLocation> loc =
      Resolve(MakePod({{{"name", "scratch"}, {"emptyDir", Json::object()}}}), "scratch");
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(loc.status().message(), HasSubstr("app/web"));
  EXPECT_THAT(loc.status().message(), HasSubstr(kPodUid));
}

TEST_F(ResolveVolumeTest, InlineCsiVolumeUsesMount) {
  MakeVolumeDir("kubernetes.io~csi", "inline/mount", "inline-csi");
  Result<VolumeLocation> loc =
      Resolve(MakePod({{{"name", "inline"}, {"csi", {{"driver", "d"}}}}}), "inline");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(MarkerOf(*loc), "inline-csi");
  EXPECT_THAT(loc->path, ::testing::EndsWith("kubernetes.io~csi/inline/mount"));
}

TEST_F(ResolveVolumeTest, CsiPersistentVolume) {
  const std::string claim_uid = PutClaim("data-claim", "pvc-1234");
  PutPv("pvc-1234", {{"csi", {{"driver", "ebs.csi.aws.com"}, {"volumeHandle", "vol-1"}}}});
  MakeVolumeDir("kubernetes.io~csi", "pvc-1234/mount", "csi-pv");
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->path, (pods_dir_ / kPodUid / "volumes/kubernetes.io~csi/pvc-1234/mount").string());
  EXPECT_FALSE(claim_uid.empty());
  EXPECT_EQ(loc->pvc_uid, claim_uid);
  EXPECT_EQ(loc->kind, "csi pv pvc-1234");
  EXPECT_EQ(MarkerOf(*loc), "csi-pv");
}

TEST_F(ResolveVolumeTest, EphemeralVolumeResolvesThroughPodNameDashVolume) {
  const std::string claim_uid = PutClaim("web-eph", "pvc-eph");
  PutPv("pvc-eph", {{"csi", {{"driver", "d"}}}});
  MakeVolumeDir("kubernetes.io~csi", "pvc-eph/mount", "ephemeral");
  Result<VolumeLocation> loc = Resolve(
      MakePod({{{"name", "eph"}, {"ephemeral", {{"volumeClaimTemplate", Json::object()}}}}}),
      "eph");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(MarkerOf(*loc), "ephemeral");
  EXPECT_EQ(loc->pvc_uid, claim_uid);
}

TEST_F(ResolveVolumeTest, ProvisionedByAnExistingCsiDriverCountsAsCsi) {
  Put(kube::kCSIDrivers, {{"metadata", {{"name", "ebs.csi.aws.com"}}}, {"spec", Json::object()}});
  PutClaim("data-claim", "pv-migrated");
  PutPv("pv-migrated", {{"awsElasticBlockStore", {{"volumeID", "vol-1"}}}},
        {{"pv.kubernetes.io/provisioned-by", "ebs.csi.aws.com"}});
  MakeVolumeDir("kubernetes.io~csi", "pv-migrated/mount", "migrated");
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(MarkerOf(*loc), "migrated");
  EXPECT_EQ(loc->kind, "csi pv pv-migrated");
}

TEST_F(ResolveVolumeTest, MigratedToAnExistingCsiDriverCountsAsCsi) {
  Put(kube::kCSIDrivers, {{"metadata", {{"name", "pd.csi.storage.gke.io"}}}});
  PutClaim("data-claim", "pv-gce");
  PutPv("pv-gce", {{"gcePersistentDisk", {{"pdName", "d"}}}},
        {{"pv.kubernetes.io/migrated-to", "pd.csi.storage.gke.io"}});
  MakeVolumeDir("kubernetes.io~csi", "pv-gce/mount", "gce");
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(MarkerOf(*loc), "gce");
}

TEST_F(ResolveVolumeTest, ProvisionedByAnUnknownDriverIsNotCsi) {
  PutClaim("data-claim", "pv-nfs");
  PutPv("pv-nfs", {{"nfs", {{"server", "s"}, {"path", "/x"}}}},
        {{"pv.kubernetes.io/provisioned-by", "example.com/nfs"}});
  MakeVolumeDir("kubernetes.io~nfs", "pv-nfs", "nfs");
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(MarkerOf(*loc), "nfs");
  EXPECT_EQ(loc->kind, "nfs pv pv-nfs");
  EXPECT_EQ(loc->path, (pods_dir_ / kPodUid / "volumes/kubernetes.io~nfs/pv-nfs").string());
}

TEST_F(ResolveVolumeTest, CsiDriverLookupFailureIsReportedNotTakenAsNonCsi) {
  PutClaim("data-claim", "pv-migrated");
  PutPv("pv-migrated", {{"awsElasticBlockStore", {{"volumeID", "vol-1"}}}},
        {{"pv.kubernetes.io/provisioned-by", "ebs.csi.aws.com"}});
  MakeVolumeDir("kubernetes.io~csi", "pv-migrated/mount", "migrated");
  server_->FailNext("GET", "/csidrivers/", 10, 503);
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(loc.status().message(), HasSubstr("ebs.csi.aws.com"));
}

TEST_F(ResolveVolumeTest, LocalPersistentVolumeIsUnderThePodsDirectory) {
  PutClaim("data-claim", "local-pv");
  PutPv("local-pv", {{"local", {{"path", "/mnt/disks/ssd1"}}}});
  MakeVolumeDir("kubernetes.io~local-volume", "local-pv", "local");
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(MarkerOf(*loc), "local");
}

TEST_F(ResolveVolumeTest, UnboundClaimIsInvalidArgument) {
  PutClaim("data-claim", "");
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(loc.status().message(), HasSubstr("app/data-claim"));
  EXPECT_THAT(loc.status().message(), HasSubstr("not bound"));
}

TEST_F(ResolveVolumeTest, BlockClaimIsInvalidArgument) {
  PutClaim("data-claim", "pv-block", {{"volumeMode", "Block"}});
  PutPv("pv-block", {{"csi", {{"driver", "d"}}}, {"volumeMode", "Block"}});
  MakeVolumeDir("kubernetes.io~csi", "pv-block", "block", "volumeDevices");
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(loc.status().message(), HasSubstr("block"));
  EXPECT_THAT(loc.status().message(), HasSubstr("pv-block"));
}

TEST_F(ResolveVolumeTest, SecretAndOtherApiVolumesAreInvalidArgument) {
  kube::Pod pod = MakePod({{{"name", "creds"}, {"secret", {{"secretName", "s"}}}},
                           {{"name", "conf"}, {"configMap", {{"name", "c"}}}},
                           {{"name", "token"}, {"projected", {{"sources", Json::array()}}}},
                           {{"name", "info"}, {"downwardAPI", Json::object()}}});
  for (const char* name : {"creds", "conf", "token", "info"}) {
    MakeVolumeDir("kubernetes.io~secret", name, "x");
    Result<VolumeLocation> loc = Resolve(pod, name);
    ASSERT_FALSE(loc.ok()) << name;
    EXPECT_EQ(loc.status().code(), StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(loc.status().message(), HasSubstr("holds no data")) << name;
  }
}

TEST_F(ResolveVolumeTest, MissingClaimIsNotFoundNamingIt) {
  Result<VolumeLocation> loc = Resolve(PodWithClaim("gone"), "data");
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(loc.status().message(), HasSubstr("persistentvolumeclaim app/gone"));
}

TEST_F(ResolveVolumeTest, MissingPersistentVolumeIsNotFoundNamingIt) {
  PutClaim("data-claim", "pv-gone");
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(loc.status().message(), HasSubstr("persistentvolume pv-gone"));
}

TEST_F(ResolveVolumeTest, HostPathPersistentVolumeUnderHostRoot) {
  const std::string claim_uid = PutClaim("data-claim", "pvc-lp");
  PutPv("pvc-lp", {{"hostPath", {{"path", "/var/local-path-provisioner/pvc-lp_app_data"}}}});
  const fs::path data = host_dir_ / "var/local-path-provisioner/pvc-lp_app_data";
  fs::create_directories(data);
  WriteStringToFile(data / "marker", "host-path");
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(MarkerOf(*loc), "host-path");
  EXPECT_EQ(loc->path, data.string());
  EXPECT_EQ(loc->pvc_uid, claim_uid);
  EXPECT_THAT(loc->kind, HasSubstr("host path pv pvc-lp"));
}

TEST_F(ResolveVolumeTest, HostPathPersistentVolumeWithoutHostRootIsFailedPrecondition) {
  roots_.host = nullptr;
  PutClaim("data-claim", "pvc-lp");
  PutPv("pvc-lp", {{"hostPath", {{"path", "/var/local-path-provisioner/x"}}}});
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(loc.status().message(), HasSubstr("--host-root"));
  EXPECT_THAT(loc.status().message(), HasSubstr("/var/local-path-provisioner/x"));
}

TEST_F(ResolveVolumeTest, HostPathPersistentVolumeOnAnotherNodeIsNotFound) {
  PutClaim("data-claim", "pvc-lp");
  PutPv("pvc-lp", {{"hostPath", {{"path", "/var/local-path-provisioner/elsewhere"}}}});
  Result<VolumeLocation> loc = Resolve(PodWithClaim("data-claim"), "data");
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(loc.status().message(), HasSubstr("app/web"));
}

TEST_F(ResolveVolumeTest, InlineHostPathVolume) {
  fs::create_directories(host_dir_ / "srv/data");
  WriteStringToFile(host_dir_ / "srv/data/marker", "inline-host");
  kube::Pod pod = MakePod({{{"name", "h"}, {"hostPath", {{"path", "/srv/data"}}}}});
  Result<VolumeLocation> loc = Resolve(pod, "h");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(MarkerOf(*loc), "inline-host");
  roots_.host = nullptr;
  Result<VolumeLocation> refused = Resolve(pod, "h");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(ResolveVolumeTest, NoPodsRootIsFailedPrecondition) {
  roots_.pods = nullptr;
  Result<VolumeLocation> loc =
      Resolve(MakePod({{{"name", "scratch"}, {"emptyDir", Json::object()}}}), "scratch");
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(loc.status().message(), HasSubstr("--host-pods"));
}

}  // namespace
}  // namespace fsb::agent
