// kube/config.h: where the API server is and how to authenticate to it, from the pod's service
// account (in-cluster) or a kubeconfig file. Loading reads files once; the bearer token of an
// in-cluster config is re-read by the Client when the file changes (token rotation).
#pragma once

#include <string>

#include "base/secret.h"
#include "base/status.h"

namespace fsb::kube {

struct KubeConfig {
  std::string server;  // "https://10.0.0.1:443", "http://127.0.0.1:8080"
  // CA bundle to trust for the server: a PEM file, or PEM data (kubeconfig's
  // certificate-authority-data, base64-decoded). Neither: the system's CAs.
  std::string ca_file;
  std::string ca_data;
  bool insecure_skip_tls_verify = false;
  // Bearer token: a fixed value, or a file re-read when its mtime changes (projected
  // service-account tokens rotate about hourly). A file wins when both are set.
  Secret<std::string> token;
  std::string token_file;
  // Client certificate authentication: PEM files or PEM data.
  std::string client_cert_file;
  std::string client_key_file;
  std::string client_cert_data;
  Secret<std::string> client_key_data;
  // The namespace of the context (kubeconfig) or of the pod (in-cluster); may be empty.
  std::string default_namespace;
};

// Paths of the in-cluster service-account files; overridable for tests.
struct InClusterPaths {
  std::string token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::string ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  std::string namespace_file = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
};

// From KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT and the service-account files.
// kFailedPrecondition when not running in a pod (no such environment), kNotFound/kPermissionDenied
// naming the file that cannot be read.
Result<KubeConfig> LoadInClusterConfig(const InClusterPaths& paths = {});

// From a kubeconfig file (YAML or JSON): the given context, or current-context when empty; its
// cluster (server, certificate-authority[-data], insecure-skip-tls-verify) and user (token,
// tokenFile, client-certificate[-data], client-key[-data]). Relative file names are relative to
// the kubeconfig's directory. kInvalidArgument naming the missing or malformed entry.
Result<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context = "");

// kubectl's order: `kubeconfig_flag` if set; else $KUBECONFIG (the first existing file of the
// colon-separated list); else in-cluster when KUBERNETES_SERVICE_HOST is set; else ~/.kube/config.
Result<KubeConfig> LoadDefaultConfig(const std::string& kubeconfig_flag);

}  // namespace fsb::kube
