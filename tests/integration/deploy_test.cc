// deploy/ (the CRDs, namespace, RBAC and the node-agent DaemonSet) against the real kubectl and the
// kube test API server (tests/support/kube_api_server.h):
//   - kubectl accepts every manifest, with client and server dry runs, and a server dry run stores
//     nothing; a real apply installs the CRDs (`kubectl get crd` lists them) and the one-line
//     install creates the namespace before the objects in it;
//   - the DaemonSet, as kubectl reads it, has what Velero's server checks (name node-agent, pod
//     label role=node-agent), what the agent needs (HostToContainer on /host_pods, Velero's
//     environment, mounts behind every path its flags and environment name, a writable scratch
//     dir under a read-only root), and its command line is accepted by the fsb built here;
//   - the RBAC binds the DaemonSet's service account to rules without wildcards or deletes.
// The test server validates metadata only, not schemas (its header says so), so a misspelt field
// would pass kubectl here and fail on a real cluster (kubectl sends fieldValidation=Strict): the
// DaemonSet test therefore checks the keys it reads against the Kubernetes v1 field names.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/integration_util.h"
#include "tests/support/kube_api_server.h"
#include "tests/support/test_util.h"

namespace fsb::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

const std::filesystem::path kDeployDir = std::filesystem::path(FSB_SOURCE_DIR) / "deploy";
const std::filesystem::path kCrdDir = kDeployDir / "crds";
const std::filesystem::path kDaemonSetFile = kDeployDir / "20-daemonset.yaml";
const std::filesystem::path kRbacFile = kDeployDir / "10-rbac.yaml";

const std::vector<std::string> kCrdNames = {"backuprepositories.velero.io",
                                            "backups.velero.io",
                                            "backupstoragelocations.velero.io",
                                            "podvolumebackups.velero.io",
                                            "podvolumerestores.velero.io",
                                            "restores.velero.io",
                                            "schedules.velero.io"};

// "kind/name" of every object kubectl reports for deploy/, as `kubectl apply` names them.
const std::vector<std::string> kDeployObjects = {
    "namespace/velero",
    "serviceaccount/fsb-node-agent",
    "clusterrole.rbac.authorization.k8s.io/fsb-node-agent",
    "clusterrolebinding.rbac.authorization.k8s.io/fsb-node-agent",
    "role.rbac.authorization.k8s.io/fsb-node-agent",
    "rolebinding.rbac.authorization.k8s.io/fsb-node-agent",
    "daemonset.apps/node-agent",
};

// The element of array `a` whose "name" is `name`, or null.
json ByName(const json& a, const std::string& name) {
  if (!a.is_array()) return nullptr;
  for (const json& e : a) {
    if (e.is_object() && e.value("name", "") == name) return e;
  }
  return nullptr;
}

std::set<std::string> StringSet(const json& a) {
  std::set<std::string> out;
  if (!a.is_array()) return out;
  for (const json& e : a) {
    if (e.is_string()) out.insert(e.get<std::string>());
  }
  return out;
}

// Splits the concatenated JSON documents kubectl prints for several objects.
std::vector<json> SplitJsonStream(const std::string& s) {
  std::vector<json> out;
  int depth = 0;
  bool in_string = false;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{') {
      if (depth++ == 0) start = i;
    } else if (c == '}' && --depth == 0) {
      out.push_back(json::parse(s.substr(start, i - start + 1), nullptr, false));
    }
  }
  return out;
}

// Fails for each key of `obj` that is not a field of the Kubernetes type it stands for.
void ExpectKnownKeys(const json& obj, const std::set<std::string>& known,
                     const std::string& where) {
  ASSERT_TRUE(obj.is_object()) << where << " is not an object: " << obj.dump();
  for (const auto& [key, value] : obj.items()) {
    EXPECT_TRUE(known.count(key)) << where << ": unknown field \"" << key << "\"";
  }
}

// Field names of the core/v1 and apps/v1 types the DaemonSet uses (Kubernetes 1.32 API reference).
const std::set<std::string> kDaemonSetSpecFields = {"minReadySeconds", "revisionHistoryLimit",
                                                    "selector", "template", "updateStrategy"};
const std::set<std::string> kPodSpecFields = {"activeDeadlineSeconds",
                                              "affinity",
                                              "automountServiceAccountToken",
                                              "containers",
                                              "dnsConfig",
                                              "dnsPolicy",
                                              "enableServiceLinks",
                                              "ephemeralContainers",
                                              "hostAliases",
                                              "hostIPC",
                                              "hostNetwork",
                                              "hostPID",
                                              "hostUsers",
                                              "hostname",
                                              "imagePullSecrets",
                                              "initContainers",
                                              "nodeName",
                                              "nodeSelector",
                                              "os",
                                              "overhead",
                                              "preemptionPolicy",
                                              "priority",
                                              "priorityClassName",
                                              "readinessGates",
                                              "resourceClaims",
                                              "resources",
                                              "restartPolicy",
                                              "runtimeClassName",
                                              "schedulerName",
                                              "schedulingGates",
                                              "securityContext",
                                              "serviceAccount",
                                              "serviceAccountName",
                                              "setHostnameAsFQDN",
                                              "shareProcessNamespace",
                                              "subdomain",
                                              "terminationGracePeriodSeconds",
                                              "tolerations",
                                              "topologySpreadConstraints",
                                              "volumes"};
const std::set<std::string> kContainerFields = {"args",
                                                "command",
                                                "env",
                                                "envFrom",
                                                "image",
                                                "imagePullPolicy",
                                                "lifecycle",
                                                "livenessProbe",
                                                "name",
                                                "ports",
                                                "readinessProbe",
                                                "resizePolicy",
                                                "resources",
                                                "restartPolicy",
                                                "securityContext",
                                                "startupProbe",
                                                "stdin",
                                                "stdinOnce",
                                                "terminationMessagePath",
                                                "terminationMessagePolicy",
                                                "tty",
                                                "volumeDevices",
                                                "volumeMounts",
                                                "workingDir"};
const std::set<std::string> kSecurityContextFields = {
    "allowPrivilegeEscalation", "appArmorProfile", "capabilities", "privileged", "procMount",
    "readOnlyRootFilesystem",   "runAsGroup",      "runAsNonRoot", "runAsUser",  "seLinuxOptions",
    "seccompProfile",           "windowsOptions"};
const std::set<std::string> kPodSecurityContextFields = {"appArmorProfile",
                                                         "fsGroup",
                                                         "fsGroupChangePolicy",
                                                         "runAsGroup",
                                                         "runAsNonRoot",
                                                         "runAsUser",
                                                         "seLinuxChangePolicy",
                                                         "seLinuxOptions",
                                                         "seccompProfile",
                                                         "supplementalGroups",
                                                         "supplementalGroupsPolicy",
                                                         "sysctls",
                                                         "windowsOptions"};
const std::set<std::string> kProbeFields = {"exec",
                                            "failureThreshold",
                                            "grpc",
                                            "httpGet",
                                            "initialDelaySeconds",
                                            "periodSeconds",
                                            "successThreshold",
                                            "tcpSocket",
                                            "terminationGracePeriodSeconds",
                                            "timeoutSeconds"};
const std::set<std::string> kVolumeMountFields = {"mountPath",  "mountPropagation",  "name",
                                                  "readOnly",   "recursiveReadOnly", "subPath",
                                                  "subPathExpr"};
const std::set<std::string> kContainerPortFields = {"containerPort", "hostIP", "hostPort", "name",
                                                    "protocol"};
const std::set<std::string> kEnvVarFields = {"name", "value", "valueFrom"};
// A volume: its name and one source, with the sources' fields.
const std::map<std::string, std::set<std::string>> kVolumeSourceFields = {
    {"hostPath", {"path", "type"}},
    {"emptyDir", {"medium", "sizeLimit"}},
    {"secret", {"defaultMode", "items", "optional", "secretName"}},
};

class DeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kubectl_ = FindProgram("kubectl");
    if (kubectl_.empty()) {
      if (InteropRequired()) FAIL() << "kubectl is not on PATH but FSB_REQUIRE_INTEROP=1";
      GTEST_SKIP() << "kubectl is not on PATH";
    }
    KubeApiServerOptions options;
    // A Namespace is applied like any object: an implicit one would make kubectl patch a
    // namespace the server does not store.
    options.implicit_namespaces = false;
    std::string why;
    server_ = KubeApiServer::Start(options, &why);
    ASSERT_NE(server_, nullptr) << why;
    server_->WriteKubeconfig(kubeconfig_, "velero");
  }

  // kubectl under `timeout`, with its own kubeconfig, HOME and discovery cache.
  RunResult Kubectl(std::vector<std::string> args) {
    std::vector<std::string> argv = {"timeout",
                                     "60",
                                     kubectl_,
                                     "--kubeconfig",
                                     kubeconfig_.string(),
                                     "--cache-dir",
                                     (dir_.path() / "cache").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {"HOME=" + dir_.str()});
  }

  // The objects of a manifest file as kubectl reads them (`create --dry-run=client -o json`,
  // which sends nothing to the server), in file order.
  std::vector<json> Read(const std::filesystem::path& file) {
    RunResult r = Kubectl({"create", "--dry-run=client", "-o", "json", "-f", file.string()});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    std::vector<json> objects = SplitJsonStream(r.out);
    for (const json& o : objects)
      EXPECT_FALSE(o.is_discarded()) << "kubectl printed bad JSON: " << r.out;
    return objects;
  }

  // The one object of a manifest file; an empty object (failing the test) otherwise.
  json ReadOne(const std::filesystem::path& file) {
    std::vector<json> objects = Read(file);
    EXPECT_EQ(objects.size(), 1u) << file;
    return objects.size() == 1 ? objects[0] : json::object();
  }

  // Every object stored by the server, as "resource/name", for "nothing was stored" checks.
  std::vector<std::string> StoredObjects() const {
    std::vector<std::string> out;
    for (const KubeResourceType& t : DefaultKubeResourceTypes()) {
      for (const json& o : server_->List(t.QualifiedName())) {
        out.push_back(t.QualifiedName() + "/" + o["metadata"].value("name", "?"));
      }
    }
    return out;
  }

  TempDir dir_;
  std::filesystem::path kubeconfig_ = dir_.path() / "kubeconfig";
  std::string kubectl_;
  std::unique_ptr<KubeApiServer> server_;
};

TEST_F(DeployTest, ClientDryRunAcceptsEveryManifest) {
  RunResult r =
      Kubectl({"apply", "--dry-run=client", "-f", kDeployDir.string(), "-f", kCrdDir.string()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  for (const std::string& o : kDeployObjects)
    EXPECT_THAT(r.out, HasSubstr(o + " created (dry run)"));
  for (const std::string& crd : kCrdNames) {
    EXPECT_THAT(r.out, HasSubstr("customresourcedefinition.apiextensions.k8s.io/" + crd +
                                 " created (dry run)"));
  }
  // A client dry run only reads.
  for (const KubeRequestRecord& req : server_->Requests()) {
    EXPECT_EQ(req.method, "GET") << req.method << " " << req.path;
  }
  EXPECT_THAT(StoredObjects(), ::testing::IsEmpty());
}

TEST_F(DeployTest, ServerDryRunAcceptsEveryManifestAndStoresNothing) {
  const int64_t rv = server_->resource_version();
  RunResult r =
      Kubectl({"apply", "--dry-run=server", "-f", kCrdDir.string(), "-f", kDeployDir.string()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  for (const std::string& o : kDeployObjects)
    EXPECT_THAT(r.out, HasSubstr(o + " created (server dry run)"));
  for (const std::string& crd : kCrdNames) {
    EXPECT_THAT(r.out, HasSubstr("customresourcedefinition.apiextensions.k8s.io/" + crd +
                                 " created (server dry run)"));
  }
  // Every object went to the server, each write marked dryRun=All.
  size_t posts = 0;
  for (const KubeRequestRecord& req : server_->Requests()) {
    if (req.method == "GET") continue;
    EXPECT_EQ(req.method, "POST") << req.path;
    EXPECT_THAT(req.query, HasSubstr("dryRun=All")) << req.method << " " << req.path;
    EXPECT_EQ(req.status, 201) << req.path << "\n" << Describe(r);
    posts++;
  }
  EXPECT_EQ(posts, kDeployObjects.size() + kCrdNames.size());
  EXPECT_THAT(StoredObjects(), ::testing::IsEmpty());
  EXPECT_EQ(server_->resource_version(), rv);
}

TEST_F(DeployTest, ApplyInstallsEverythingAndGetCrdListsTheCrds) {
  RunResult r = Kubectl({"apply", "-f", kCrdDir.string()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  r = Kubectl({"get", "crd", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  json list = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(!list.is_discarded() && list.contains("items")) << r.out;
  std::vector<std::string> names;
  for (const json& item : list["items"]) {
    names.push_back(item["metadata"]["name"]);
    EXPECT_EQ(item["spec"]["group"], "velero.io") << names.back();
    EXPECT_EQ(item["spec"]["scope"], "Namespaced") << names.back();
  }
  EXPECT_EQ(names, kCrdNames);  // kubectl lists them sorted by name
  Result<json> pvb = server_->Get("customresourcedefinitions", "", "podvolumebackups.velero.io");
  ASSERT_TRUE(pvb.ok()) << pvb.status().ToString();
  EXPECT_EQ((*pvb)["spec"]["names"]["kind"], "PodVolumeBackup");

  // The documented one-line install on top, then again: nothing left to change.
  server_->ClearRequests();
  r = Kubectl({"apply", "-f", kCrdDir.string(), "-f", kDeployDir.string()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  for (const std::string& o : kDeployObjects) EXPECT_THAT(r.out, HasSubstr(o + " created"));
  for (const std::string& crd : kCrdNames) EXPECT_THAT(r.out, HasSubstr(crd + " unchanged"));
  // The namespace is created before anything in it (a real server refuses objects in a missing
  // namespace; this one does not check, so the order is checked here).
  std::vector<std::string> creates;
  for (const KubeRequestRecord& req : server_->Requests()) {
    if (req.method == "POST") creates.push_back(req.path);
  }
  ASSERT_FALSE(creates.empty());
  EXPECT_EQ(creates.front(), "/api/v1/namespaces") << ::testing::PrintToString(creates);
  Result<json> ds = server_->Get("daemonsets", "velero", "node-agent");
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ((*ds)["spec"]["template"]["metadata"]["labels"]["role"], "node-agent");
  EXPECT_TRUE(server_->Get("namespaces", "", "velero").ok());

  r = Kubectl({"apply", "-f", kCrdDir.string(), "-f", kDeployDir.string()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, Not(HasSubstr("created")));
  EXPECT_THAT(r.out, Not(HasSubstr("configured")));
}

TEST_F(DeployTest, DaemonSetHasWhatVeleroAndTheAgentNeed) {
  // Non-const throughout: operator[] of a missing key then yields null and the check fails,
  // where the const operator[] would be undefined behaviour.
  json ds = ReadOne(kDaemonSetFile);
  ASSERT_EQ(ds.value("kind", ""), "DaemonSet") << ds.dump(2);
  EXPECT_EQ(ds["apiVersion"], "apps/v1");
  EXPECT_EQ(ds["metadata"]["name"], "node-agent");  // Velero's server looks this name up (§6.5)
  EXPECT_EQ(ds["metadata"]["namespace"], "velero");
  json& spec = ds["spec"];
  ExpectKnownKeys(spec, kDaemonSetSpecFields, "spec");
  EXPECT_EQ(spec["selector"], json({{"matchLabels", {{"name", "node-agent"}}}}));
  EXPECT_EQ(spec["updateStrategy"]["type"], "RollingUpdate");

  json& labels = spec["template"]["metadata"]["labels"];
  EXPECT_EQ(labels["name"], "node-agent");
  EXPECT_EQ(labels["role"], "node-agent");  // a node has an agent when a Running pod has it (§9.1)
  EXPECT_EQ(labels["component"], "velero");

  json& pod = spec["template"]["spec"];
  ExpectKnownKeys(pod, kPodSpecFields, "pod spec");
  EXPECT_EQ(pod["serviceAccountName"], "fsb-node-agent");
  EXPECT_EQ(pod["terminationGracePeriodSeconds"], 60);
  EXPECT_EQ(pod["tolerations"], json::parse(R"([{"operator": "Exists"}])"));
  EXPECT_EQ(pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
               ["nodeSelectorTerms"],
            json::parse(R"([{"matchExpressions": [{"key": "kubernetes.io/os", "operator": "NotIn",
                                                   "values": ["windows"]}]}])"));
  ExpectKnownKeys(pod["securityContext"], kPodSecurityContextFields, "pod securityContext");
  EXPECT_EQ(pod["securityContext"]["runAsUser"], 0);
  EXPECT_EQ(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");

  ASSERT_EQ(pod["containers"].size(), 1u);
  json& c = pod["containers"][0];
  ExpectKnownKeys(c, kContainerFields, "container");
  EXPECT_EQ(c["name"], "node-agent");
  EXPECT_EQ(c["command"], json({"/usr/local/bin/fsb"}));
  ASSERT_TRUE(c["args"].is_array());
  const std::vector<std::string> args = c["args"].get<std::vector<std::string>>();
  ASSERT_FALSE(args.empty());
  EXPECT_EQ(args[0], "agent");
  const std::vector<std::string> json_logs = {"--log-format", "json"};
  EXPECT_NE(std::search(args.begin(), args.end(), json_logs.begin(), json_logs.end()), args.end())
      << "the agent should log JSON lines";
  // "--flag=value" → value, for the flags below.
  std::map<std::string, std::string> flags;
  for (const std::string& a : args) {
    if (const size_t eq = a.find('='); a.starts_with("--") && eq != std::string::npos) {
      flags[a.substr(0, eq)] = a.substr(eq + 1);
    }
  }

  // Environment: Velero's DaemonSet's (§9.3), which fsb agent reads.
  const json env = c["env"];
  for (const json& e : env) ExpectKnownKeys(e, kEnvVarFields, "env " + e.value("name", "?"));
  EXPECT_EQ(ByName(env, "NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
  EXPECT_EQ(ByName(env, "VELERO_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.namespace");
  EXPECT_EQ(ByName(env, "VELERO_SCRATCH_DIR")["value"], "/scratch");
  EXPECT_EQ(ByName(env, "AWS_SHARED_CREDENTIALS_FILE")["value"], "/credentials/cloud");

  // Volumes and mounts: mount path → volume.
  const json volumes = pod["volumes"];
  ASSERT_TRUE(volumes.is_array());
  for (const json& v : volumes) {
    ASSERT_TRUE(v.is_object() && v.size() == 2 && v.contains("name")) << "volume " << v.dump();
    for (const auto& [key, source] : v.items()) {
      if (key == "name") continue;
      auto known = kVolumeSourceFields.find(key);
      ASSERT_NE(known, kVolumeSourceFields.end())
          << "volume " << v["name"] << ": unknown source " << key;
      ExpectKnownKeys(source, known->second, "volume " + v["name"].get<std::string>());
    }
  }
  std::map<std::string, json> mounts;  // mountPath → the mount, with its volume as "volume"
  ASSERT_TRUE(c["volumeMounts"].is_array());
  for (const json& m : c["volumeMounts"]) {
    ExpectKnownKeys(m, kVolumeMountFields, "volumeMount " + m.value("name", "?"));
    json with_volume = m;
    with_volume["volume"] = ByName(volumes, m.value("name", ""));
    EXPECT_FALSE(with_volume["volume"].is_null()) << "mount of undeclared volume " << m.dump();
    mounts[m.value("mountPath", "")] = with_volume;
  }
  ASSERT_TRUE(mounts.count("/host_pods"));
  EXPECT_EQ(mounts["/host_pods"]["volume"]["hostPath"]["path"], "/var/lib/kubelet/pods");
  // CSI volumes mounted after the agent started must show up in it (§9.2).
  EXPECT_EQ(mounts["/host_pods"]["mountPropagation"], "HostToContainer");
  EXPECT_EQ(flags["--host-pods"], "/host_pods");
  // --host-root is a mount of the host directory --host-root-on-host names.
  if (flags.count("--host-root")) {
    ASSERT_TRUE(mounts.count(flags["--host-root"]))
        << "--host-root " << flags["--host-root"] << " is not mounted";
    EXPECT_EQ(mounts[flags["--host-root"]]["volume"]["hostPath"]["path"],
              flags["--host-root-on-host"]);
    EXPECT_NE(mounts[flags["--host-root"]].value("readOnly", false), true)
        << "restores write there";
  }
  // The root filesystem is read-only, so the scratch dir must be a (writable) volume.
  ASSERT_TRUE(mounts.count("/scratch"));
  EXPECT_TRUE(mounts["/scratch"]["volume"].contains("emptyDir"));
  EXPECT_NE(mounts["/scratch"].value("readOnly", false), true);
  // Velero's cloud-credentials secret, optional, holding the AWS_SHARED_CREDENTIALS_FILE.
  ASSERT_TRUE(mounts.count("/credentials"));
  EXPECT_EQ(mounts["/credentials"]["volume"]["secret"]["secretName"], "cloud-credentials");
  EXPECT_EQ(mounts["/credentials"]["volume"]["secret"]["optional"], true);

  // Metrics port and probes on the agent's --metrics-address.
  ASSERT_TRUE(c["ports"].is_array());
  for (const json& p : c["ports"]) ExpectKnownKeys(p, kContainerPortFields, "port");
  json metrics = ByName(c["ports"], "metrics");
  EXPECT_EQ(metrics["containerPort"], 8085);
  EXPECT_EQ(flags["--metrics-address"], ":8085");
  ExpectKnownKeys(c["livenessProbe"], kProbeFields, "livenessProbe");
  ExpectKnownKeys(c["readinessProbe"], kProbeFields, "readinessProbe");
  EXPECT_EQ(c["livenessProbe"]["httpGet"], json({{"path", "/healthz"}, {"port", "metrics"}}));
  EXPECT_EQ(c["readinessProbe"]["httpGet"], json({{"path", "/readyz"}, {"port", "metrics"}}));

  // Bounded memory; requests so it is not BestEffort (Velero's default).
  EXPECT_TRUE(c["resources"]["limits"].contains("memory"));
  EXPECT_TRUE(c["resources"]["requests"].contains("memory"));
  EXPECT_TRUE(c["resources"]["requests"].contains("cpu"));

  // Root with only the capabilities a backup and a restore need.
  json& sc = c["securityContext"];
  ExpectKnownKeys(sc, kSecurityContextFields, "container securityContext");
  EXPECT_EQ(sc["privileged"], false);
  EXPECT_EQ(sc["allowPrivilegeEscalation"], false);
  EXPECT_EQ(sc["readOnlyRootFilesystem"], true);
  EXPECT_EQ(StringSet(sc["capabilities"]["drop"]), std::set<std::string>{"ALL"});
  EXPECT_EQ(StringSet(sc["capabilities"]["add"]),
            (std::set<std::string>{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"}));
}

TEST_F(DeployTest, DaemonSetCommandLineIsAcceptedByFsb) {
  json ds = ReadOne(kDaemonSetFile);
  json& c = ds["spec"]["template"]["spec"]["containers"][0];
  ASSERT_TRUE(c["args"].is_array()) << ds.dump(2);
  // The container's command line with the fsb built here, and a kubeconfig that does not exist:
  // flags that parse get as far as loading the config, a bad flag stops the parser first.
  std::vector<std::string> argv = {FsbBinary()};
  for (const json& a : c["args"]) argv.push_back(a.get<std::string>());
  argv.push_back("--kubeconfig=" + (dir_.path() / "missing-kubeconfig").string());
  std::vector<std::string> env;
  ASSERT_TRUE(c["env"].is_array());
  for (const json& e : c["env"]) {
    if (e.contains("value"))
      env.push_back(e["name"].get<std::string>() + "=" + e["value"].get<std::string>());
  }
  env.push_back("NODE_NAME=node-a");
  env.push_back("VELERO_NAMESPACE=velero");
  RunResult r = RunCommand(argv, env);
  EXPECT_NE(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("kubernetes config")) << Describe(r);
  EXPECT_THAT(r.err, Not(HasSubstr("not expected"))) << Describe(r);
}

TEST_F(DeployTest, RbacBindsTheDaemonSetsAccountToNarrowRules) {
  json ds = ReadOne(kDaemonSetFile);
  const std::string account = ds["spec"]["template"]["spec"].value("serviceAccountName", "");
  ASSERT_EQ(account, "fsb-node-agent");
  std::map<std::string, json> by_kind;
  std::vector<std::string> kinds;
  for (const json& o : Read(kRbacFile)) {
    kinds.push_back(o.value("kind", ""));
    by_kind[kinds.back()] = o;
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                             "Role", "RoleBinding"}));
  EXPECT_EQ(by_kind["ServiceAccount"]["metadata"]["name"], account);
  EXPECT_EQ(by_kind["ServiceAccount"]["metadata"]["namespace"], "velero");
  EXPECT_EQ(by_kind["Role"]["metadata"]["namespace"], "velero");

  // (resource → verbs) of a role's rules; no wildcard anywhere, no delete.
  auto grants = [](json role) {
    std::map<std::string, std::set<std::string>> out;
    if (!role["rules"].is_array()) return out;
    for (json rule : role["rules"]) {
      for (const std::string& g : StringSet(rule["apiGroups"])) {
        for (const std::string& res : StringSet(rule["resources"])) {
          const std::string key = g.empty() ? res : res + "." + g;
          for (const std::string& v : StringSet(rule["verbs"])) out[key].insert(v);
        }
      }
      EXPECT_FALSE(StringSet(rule["verbs"]).count("*")) << rule.dump();
      EXPECT_FALSE(StringSet(rule["verbs"]).count("delete")) << rule.dump();
      EXPECT_FALSE(StringSet(rule["resources"]).count("*")) << rule.dump();
      EXPECT_FALSE(StringSet(rule["apiGroups"]).count("*")) << rule.dump();
    }
    return out;
  };
  using Verbs = std::set<std::string>;
  const auto cluster = grants(by_kind["ClusterRole"]);
  EXPECT_EQ(cluster.at("pods"), (Verbs{"get", "list", "watch"}));
  EXPECT_EQ(cluster.at("persistentvolumeclaims"), Verbs{"get"});
  EXPECT_EQ(cluster.at("persistentvolumes"), Verbs{"get"});
  EXPECT_EQ(cluster.at("nodes"), Verbs{"get"});
  EXPECT_EQ(cluster.at("csidrivers.storage.k8s.io"), (Verbs{"get", "list"}));
  EXPECT_FALSE(cluster.count("secrets")) << "secrets only in the Velero namespace";
  const auto ns = grants(by_kind["Role"]);
  EXPECT_EQ(ns.at("podvolumebackups.velero.io"),
            (Verbs{"get", "list", "watch", "update", "patch"}));
  EXPECT_EQ(ns.at("podvolumerestores.velero.io"),
            (Verbs{"get", "list", "watch", "update", "patch"}));
  EXPECT_EQ(ns.at("backuprepositories.velero.io"),
            (Verbs{"get", "list", "watch", "create", "update", "patch"}));
  EXPECT_EQ(ns.at("backupstoragelocations.velero.io"), (Verbs{"get", "list", "watch"}));
  EXPECT_EQ(ns.at("secrets"), Verbs{"get"});

  for (const char* kind : {"ClusterRoleBinding", "RoleBinding"}) {
    json b = by_kind[kind];
    EXPECT_EQ(b["roleRef"]["kind"], std::string(kind) == "RoleBinding" ? "Role" : "ClusterRole")
        << kind;
    EXPECT_EQ(b["roleRef"]["name"],
              by_kind[b["roleRef"]["kind"].get<std::string>()]["metadata"]["name"])
        << kind;
    EXPECT_EQ(b["subjects"], json::parse(R"([{"kind": "ServiceAccount", "name": "fsb-node-agent",
                                               "namespace": "velero"}])"))
        << kind;
  }
}

}  // namespace
}  // namespace fsb::testing
