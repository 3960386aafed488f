#include "kube/resource.h"

#include <gtest/gtest.h>

#include "kube/internal/util.h"

namespace fsb::kube {
namespace {

TEST(ResourceTest, CorePathsWithNamespaceNameAndSubresource) {
  EXPECT_EQ(kPods.GroupVersionPath(), "/api/v1");
  EXPECT_EQ(kPods.Path("ns"), "/api/v1/namespaces/ns/pods");
  EXPECT_EQ(kPods.Path(""), "/api/v1/pods");
  EXPECT_EQ(kPods.Path("ns", "name"), "/api/v1/namespaces/ns/pods/name");
  EXPECT_EQ(kPods.Path("ns", "name", "status"), "/api/v1/namespaces/ns/pods/name/status");
}

TEST(ResourceTest, GroupResourcePaths) {
  EXPECT_EQ(kPodVolumeBackups.GroupVersionPath(), "/apis/velero.io/v1");
  EXPECT_EQ(kPodVolumeBackups.Path("velero", "pvb-1", "status"),
            "/apis/velero.io/v1/namespaces/velero/podvolumebackups/pvb-1/status");
  EXPECT_EQ(kDaemonSets.Path("kube-system"), "/apis/apps/v1/namespaces/kube-system/daemonsets");
}

TEST(ResourceTest, ClusterScopedIgnoresNamespace) {
  EXPECT_EQ(kNodes.Path("ignored", "node-a"), "/api/v1/nodes/node-a");
  EXPECT_EQ(kCSIDrivers.Path("", "ebs.csi.aws.com"),
            "/apis/storage.k8s.io/v1/csidrivers/ebs.csi.aws.com");
  EXPECT_EQ(kNamespaces.Path("", "velero"), "/api/v1/namespaces/velero");
}

TEST(ResourceTest, NamesArePercentEncoded) {
  EXPECT_EQ(kSecrets.Path("a b", "x/y?z#%"), "/api/v1/namespaces/a%20b/secrets/x%2Fy%3Fz%23%25");
  EXPECT_EQ(internal::PercentEncode("app in (a,b),x!=y"), "app%20in%20%28a%2Cb%29%2Cx%21%3Dy");
  EXPECT_EQ(internal::PercentEncode("A-z_0.9~"), "A-z_0.9~");
}

TEST(ResourceTest, QualifiedNameAndApiVersion) {
  EXPECT_EQ(kPods.QualifiedName(), "pods");
  EXPECT_EQ(kPods.ApiVersion(), "v1");
  EXPECT_EQ(kPodVolumeBackups.QualifiedName(), "podvolumebackups.velero.io");
  EXPECT_EQ(kPodVolumeBackups.ApiVersion(), "velero.io/v1");
}

}  // namespace
}  // namespace fsb::kube
