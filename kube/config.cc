#include "kube/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <set>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "kube/internal/util.h"

namespace fsb::kube {
namespace {

// One entry of a kubeconfig's clusters, users or contexts list: its name, the scalar fields of its
// cluster/user/context map, and the names of the fields that are not scalars (exec, auth-provider,
// extensions).
struct NamedEntry {
  std::string name;
  std::map<std::string, std::string, std::less<>> fields;
  std::set<std::string, std::less<>> nested;

  const std::string* Field(std::string_view key) const {
    auto it = fields.find(key);
    return it == fields.end() ? nullptr : &it->second;
  }
  std::string Get(std::string_view key) const {
    const std::string* v = Field(key);
    return v == nullptr ? std::string() : *v;
  }
};

// The parts of a kubeconfig fsb reads, as plain strings: what ParseKubeconfig makes of the YAML.
struct RawKubeconfig {
  std::vector<NamedEntry> clusters;
  std::vector<NamedEntry> users;
  std::vector<NamedEntry> contexts;
  std::string current_context;
};

// Reads one of the named lists ("clusters", each `{name: x, cluster: {...}}`). Called inside
// ParseKubeconfig's try block.
Status ParseNamedList(const YAML::Node& root, const char* list_key, const char* item_key,
                      std::vector<NamedEntry>* out) {
  const YAML::Node list = root[list_key];
  if (!list || list.IsNull()) return Status::Ok();
  if (!list.IsSequence()) return Status::InvalidArgument(fmt::format("{}: not a list", list_key));
  size_t i = 0;
  for (const YAML::Node& item : list) {
    const std::string where = fmt::format("{}[{}]", list_key, i++);
    if (!item.IsMap()) return Status::InvalidArgument(where + ": not a map");
    const YAML::Node name = item["name"];
    if (!name || !name.IsScalar() || name.Scalar().empty()) {
      return Status::InvalidArgument(where + ": no name");
    }
    NamedEntry entry;
    entry.name = name.Scalar();
    const YAML::Node body = item[item_key];
    if (body && !body.IsNull()) {
      if (!body.IsMap()) {
        return Status::InvalidArgument(
            fmt::format("{} \"{}\": {} is not a map", where, entry.name, item_key));
      }
      for (auto it = body.begin(); it != body.end(); ++it) {
        if (!it->first.IsScalar()) continue;
        if (it->second.IsScalar()) {
          entry.fields[it->first.Scalar()] = it->second.Scalar();
        } else if (!it->second.IsNull()) {
          entry.nested.insert(it->first.Scalar());
        }
      }
    }
    out->push_back(std::move(entry));
  }
  return Status::Ok();
}

// The one place that calls yaml-cpp, which reports errors by throwing.
Result<RawKubeconfig> ParseKubeconfig(const std::string& text) {
  try {
    const YAML::Node root = YAML::Load(text);
    RawKubeconfig raw;
    if (!root || root.IsNull()) return raw;  // an empty file: no entries
    if (!root.IsMap()) return Status::InvalidArgument("not a map");
    FSB_RETURN_IF_ERROR(ParseNamedList(root, "clusters", "cluster", &raw.clusters));
    FSB_RETURN_IF_ERROR(ParseNamedList(root, "users", "user", &raw.users));
    FSB_RETURN_IF_ERROR(ParseNamedList(root, "contexts", "context", &raw.contexts));
    const YAML::Node current = root["current-context"];
    if (current && current.IsScalar()) raw.current_context = current.Scalar();
    return raw;
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(fmt::format("malformed YAML: {}", e.what()));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(fmt::format("malformed: {}", e.what()));
  }
}

const NamedEntry* FindEntry(const std::vector<NamedEntry>& list, std::string_view name) {
  for (const NamedEntry& e : list) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

// YAML 1.1 booleans, as sigs.k8s.io/yaml reads them.
Result<bool> ParseBool(std::string_view v) {
  for (std::string_view t : {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"}) {
    if (v == t) return true;
  }
  for (std::string_view f :
       {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", ""}) {
    if (v == f) return false;
  }
  return Status::InvalidArgument(fmt::format("\"{}\" is not a boolean", v));
}

// kubeconfig's *-data fields: base64 (whitespace, as from a folded YAML scalar, is ignored).
Result<std::string> DecodeData(std::string_view text) {
  std::string compact;
  for (const char c : text) {
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') compact.push_back(c);
  }
  FSB_ASSIGN_OR_RETURN(Bytes bytes, Base64Decode(compact));
  return std::string(AsString(bytes));
}

// kubectl resolves relative file names against the directory of the kubeconfig that named them.
std::string ResolvePath(const std::filesystem::path& dir, const std::string& p) {
  if (p.empty() || p.front() == '/') return p;
  return (dir / p).lexically_normal().string();
}

Result<KubeConfig> ResolveKubeconfig(const RawKubeconfig& raw, const std::filesystem::path& dir,
                                     const std::string& context_flag) {
  const std::string context_name = context_flag.empty() ? raw.current_context : context_flag;
  if (context_name.empty()) {
    return Status::InvalidArgument("no current-context is set and no context was given");
  }
  const NamedEntry* context = FindEntry(raw.contexts, context_name);
  if (context == nullptr) {
    return Status::InvalidArgument(fmt::format("context \"{}\" not found", context_name));
  }
  const std::string cluster_name = context->Get("cluster");
  if (cluster_name.empty()) {
    return Status::InvalidArgument(fmt::format("context \"{}\": no cluster", context_name));
  }
  const NamedEntry* cluster = FindEntry(raw.clusters, cluster_name);
  if (cluster == nullptr) {
    return Status::InvalidArgument(
        fmt::format("context \"{}\": cluster \"{}\" not found", context_name, cluster_name));
  }

  KubeConfig config;
  config.default_namespace = context->Get("namespace");

  // The cluster.
  const std::string where_cluster = fmt::format("cluster \"{}\"", cluster_name);
  config.server = cluster->Get("server");
  if (config.server.empty()) return Status::InvalidArgument(where_cluster + ": no server");
  if (const std::string* data = cluster->Field("certificate-authority-data")) {
    Result<std::string> pem = DecodeData(*data);
    if (!pem.ok()) {
      return pem.status().WithContext(where_cluster + ": certificate-authority-data");
    }
    config.ca_data = std::move(*pem);
  }
  if (config.ca_data.empty()) {
    config.ca_file = ResolvePath(dir, cluster->Get("certificate-authority"));
  }
  if (const std::string* v = cluster->Field("insecure-skip-tls-verify")) {
    Result<bool> b = ParseBool(*v);
    if (!b.ok()) return b.status().WithContext(where_cluster + ": insecure-skip-tls-verify");
    config.insecure_skip_tls_verify = *b;
  }

  // The user: none at all is anonymous access (e.g. a local test server).
  const std::string user_name = context->Get("user");
  if (user_name.empty()) return config;
  const NamedEntry* user = FindEntry(raw.users, user_name);
  if (user == nullptr) {
    return Status::InvalidArgument(
        fmt::format("context \"{}\": user \"{}\" not found", context_name, user_name));
  }
  const std::string where_user = fmt::format("user \"{}\"", user_name);
  config.token = Secret<std::string>(user->Get("token"));
  config.token_file = ResolvePath(dir, user->Get("tokenFile"));
  if (const std::string* data = user->Field("client-certificate-data")) {
    Result<std::string> pem = DecodeData(*data);
    if (!pem.ok()) return pem.status().WithContext(where_user + ": client-certificate-data");
    config.client_cert_data = std::move(*pem);
  }
  if (const std::string* data = user->Field("client-key-data")) {
    // No context from the decoder: it never quotes its input, but a key is not worth the risk.
    Result<std::string> pem = DecodeData(*data);
    if (!pem.ok()) {
      return Status::InvalidArgument(where_user + ": client-key-data: malformed base64");
    }
    config.client_key_data = Secret<std::string>(std::move(*pem));
  }
  if (config.client_cert_data.empty()) {
    config.client_cert_file = ResolvePath(dir, user->Get("client-certificate"));
  }
  if (config.client_key_data.Reveal().empty()) {
    config.client_key_file = ResolvePath(dir, user->Get("client-key"));
  }
  const bool has_cert = !config.client_cert_data.empty() || !config.client_cert_file.empty();
  const bool has_key = !config.client_key_data.Reveal().empty() || !config.client_key_file.empty();
  if (has_cert != has_key) {
    return Status::InvalidArgument(where_user + (has_cert ? ": client certificate without a key"
                                                          : ": client key without a certificate"));
  }
  const bool has_token = !config.token.Reveal().empty() || !config.token_file.empty();
  if (!has_token && !has_cert) {
    for (const char* plugin : {"exec", "auth-provider"}) {
      if (user->nested.count(plugin) != 0) {
        return Status::InvalidArgument(
            fmt::format("{}: {} credential plugins are not supported; use a token or a client "
                        "certificate",
                        where_user, plugin));
      }
    }
  }
  if (!config.token_file.empty()) {
    // Read now so that a wrong path fails at start, naming the file; the Client re-reads it.
    Result<std::string> token = internal::ReadSmallFile(config.token_file, "token file", 1 << 20);
    if (!token.ok()) return token.status().WithContext(where_user);
    config.token = Secret<std::string>(internal::TrimSpace(std::move(*token)));
  }
  return config;
}

const char* GetEnv(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && v[0] != '\0') ? v : nullptr;
}

}  // namespace

Result<KubeConfig> LoadInClusterConfig(const InClusterPaths& paths) {
  const char* host = GetEnv("KUBERNETES_SERVICE_HOST");
  const char* port = GetEnv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr) {
    return Status::FailedPrecondition(
        "not running in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set");
  }
  KubeConfig config;
  const std::string_view h(host);
  // An IPv6 address ("fd00::1") goes in brackets in a URL.
  if (h.find(':') != std::string_view::npos && h.front() != '[') {
    config.server = fmt::format("https://[{}]:{}", h, port);
  } else {
    config.server = fmt::format("https://{}:{}", h, port);
  }
  FSB_ASSIGN_OR_RETURN(std::string token,
                       internal::ReadSmallFile(paths.token_file, "service account token", 1 << 20));
  config.token = Secret<std::string>(internal::TrimSpace(std::move(token)));
  config.token_file = paths.token_file;
  // Read once so that a missing CA fails here, naming the file; curl reads it per connection.
  FSB_ASSIGN_OR_RETURN(std::string ca,
                       internal::ReadSmallFile(paths.ca_file, "service account CA"));
  (void)ca;
  config.ca_file = paths.ca_file;
  Result<std::string> ns = internal::ReadSmallFile(paths.namespace_file, "namespace file", 4096);
  if (ns.ok()) {
    config.default_namespace = internal::TrimSpace(std::move(*ns));
  } else if (ns.status().code() != StatusCode::kNotFound) {
    return ns.status();  // a missing file leaves the namespace empty, as client-go
  }
  return config;
}

Result<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context) {
  Result<std::string> text = internal::ReadSmallFile(path, "kubeconfig");
  if (!text.ok()) return text.status();
  Result<RawKubeconfig> raw = ParseKubeconfig(*text);
  if (!raw.ok()) return raw.status().WithContext("kubeconfig " + path);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  Result<KubeConfig> config = ResolveKubeconfig(*raw, dir, context);
  if (!config.ok()) return config.status().WithContext("kubeconfig " + path);
  return config;
}

Result<KubeConfig> LoadDefaultConfig(const std::string& kubeconfig_flag) {
  if (!kubeconfig_flag.empty()) return LoadKubeconfig(kubeconfig_flag);
  if (const char* env = GetEnv("KUBECONFIG")) {
    const std::string_view list(env);
    size_t start = 0;
    while (start <= list.size()) {
      size_t end = list.find(':', start);
      if (end == std::string_view::npos) end = list.size();
      const std::string file(list.substr(start, end - start));
      std::error_code ec;
      if (!file.empty() && std::filesystem::is_regular_file(file, ec)) return LoadKubeconfig(file);
      start = end + 1;
    }
    return Status::NotFound(fmt::format("KUBECONFIG={}: none of the files exists", env));
  }
  if (GetEnv("KUBERNETES_SERVICE_HOST") != nullptr) return LoadInClusterConfig();
  const char* home = GetEnv("HOME");
  if (home == nullptr) {
    return Status::NotFound("no kubeconfig: no --kubeconfig, KUBECONFIG, in-cluster or HOME");
  }
  return LoadKubeconfig(std::string(home) + "/.kube/config");
}

}  // namespace fsb::kube
