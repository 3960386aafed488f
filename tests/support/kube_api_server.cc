#include "tests/support/kube_api_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <csignal>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "tests/support/s3_server.h"  // MakeTestCertificates
#include "tests/support/test_util.h"

namespace fsb::testing {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Small helpers.

std::string NowRfc3339() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    const size_t j = path.find('/', i);
    const size_t end = j == std::string_view::npos ? path.size() : j;
    if (end > i) out.emplace_back(path.substr(i, end - i));
    i = end + 1;
  }
  return out;
}

// Go's strconv.ParseBool; anything else counts as false (the Python client sends "True").
bool ParseBool(std::string_view s) {
  return s == "1" || s == "t" || s == "T" || s == "true" || s == "TRUE" || s == "True";
}

std::string MediaType(std::string_view content_type) {
  std::string_view s = content_type.substr(0, content_type.find(';'));
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return std::string(s);
}

const json* Field(const json& obj, std::initializer_list<const char*> path) {
  const json* cur = &obj;
  for (const char* key : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(key);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

std::string StringField(const json& obj, std::initializer_list<const char*> path) {
  const json* f = Field(obj, path);
  return f != nullptr && f->is_string() ? f->get<std::string>() : std::string();
}

std::string ReasonForCode(int code) {
  switch (code) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 409:
      return "Conflict";
    case 410:
      return "Expired";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 429:
      return "TooManyRequests";
    case 500:
      return "InternalError";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return "Unknown";
  }
}

json StatusJson(int code, const std::string& reason, const std::string& message,
                json details = nullptr) {
  json s = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
            {"status", "Failure"}, {"message", message}, {"reason", reason},
            {"code", code}};
  if (!details.is_null()) s["details"] = std::move(details);
  return s;
}

StatusCode CodeForHttp(int code) {
  switch (code) {
    case 400:
    case 422:
      return StatusCode::kInvalidArgument;
    case 401:
    case 403:
      return StatusCode::kPermissionDenied;
    case 404:
      return StatusCode::kNotFound;
    case 409:
      return StatusCode::kAlreadyExists;
    default:
      return StatusCode::kInternal;
  }
}

// ---------------------------------------------------------------------------------------------
// Label selectors (k8s.io/apimachinery/pkg/labels): `k`, `!k`, `k=v`, `k==v`, `k!=v`,
// `k in (a,b)`, `k notin (a,b)`, `k>n`, `k<n`, comma-separated, all must hold.

struct LabelRequirement {
  enum class Op { kExists, kNotExists, kEq, kNotEq, kIn, kNotIn, kGt, kLt };
  std::string key;
  Op op = Op::kExists;
  std::vector<std::string> values;
};

std::optional<std::vector<LabelRequirement>> ParseLabelSelector(std::string_view s) {
  std::vector<LabelRequirement> reqs;
  size_t i = 0;
  const auto skip_ws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  };
  const auto read_token = [&](std::string_view stop) {
    const size_t start = i;
    while (i < s.size() && stop.find(s[i]) == std::string_view::npos) ++i;
    return std::string(s.substr(start, i - start));
  };
  constexpr std::string_view kKeyStop = " \t=!(),<>";
  constexpr std::string_view kValueStop = " \t,()=!<>";
  skip_ws();
  if (i == s.size()) return reqs;
  while (true) {
    skip_ws();
    LabelRequirement r;
    if (i < s.size() && s[i] == '!') {
      ++i;
      skip_ws();
      r.key = read_token(kKeyStop);
      r.op = LabelRequirement::Op::kNotExists;
    } else {
      r.key = read_token(kKeyStop);
      skip_ws();
      if (i == s.size() || s[i] == ',') {
        r.op = LabelRequirement::Op::kExists;
      } else if (s.substr(i, 2) == "==" || s.substr(i, 2) == "!=" || s[i] == '=' || s[i] == '<' ||
                 s[i] == '>') {
        if (s.substr(i, 2) == "==") {
          r.op = LabelRequirement::Op::kEq;
          i += 2;
        } else if (s.substr(i, 2) == "!=") {
          r.op = LabelRequirement::Op::kNotEq;
          i += 2;
        } else {
          r.op = s[i] == '='   ? LabelRequirement::Op::kEq
                 : s[i] == '<' ? LabelRequirement::Op::kLt
                               : LabelRequirement::Op::kGt;
          ++i;
        }
        skip_ws();
        r.values.push_back(read_token(kValueStop));
        if ((r.op == LabelRequirement::Op::kLt || r.op == LabelRequirement::Op::kGt) &&
            r.values[0].empty()) {
          return std::nullopt;
        }
      } else {
        const std::string word = read_token(" \t(");
        if (word == "in") {
          r.op = LabelRequirement::Op::kIn;
        } else if (word == "notin") {
          r.op = LabelRequirement::Op::kNotIn;
        } else {
          return std::nullopt;
        }
        skip_ws();
        if (i == s.size() || s[i] != '(') return std::nullopt;
        ++i;
        while (true) {
          skip_ws();
          r.values.push_back(read_token(kValueStop));
          skip_ws();
          if (i == s.size()) return std::nullopt;
          if (s[i] == ')') {
            ++i;
            break;
          }
          if (s[i] != ',') return std::nullopt;
          ++i;
        }
      }
    }
    if (r.key.empty()) return std::nullopt;
    reqs.push_back(std::move(r));
    skip_ws();
    if (i == s.size()) break;
    if (s[i] != ',') return std::nullopt;
    ++i;
  }
  return reqs;
}

bool MatchLabels(const std::vector<LabelRequirement>& reqs, const json& obj) {
  const json* labels = Field(obj, {"metadata", "labels"});
  for (const LabelRequirement& r : reqs) {
    const json* v = labels != nullptr && labels->is_object() && labels->contains(r.key)
                        ? &(*labels)[r.key]
                        : nullptr;
    const bool has = v != nullptr && v->is_string();
    const std::string value = has ? v->get<std::string>() : std::string();
    const auto in_values = [&] {
      return std::find(r.values.begin(), r.values.end(), value) != r.values.end();
    };
    bool ok = false;
    switch (r.op) {
      case LabelRequirement::Op::kExists:
        ok = has;
        break;
      case LabelRequirement::Op::kNotExists:
        ok = !has;
        break;
      case LabelRequirement::Op::kEq:
      case LabelRequirement::Op::kIn:
        ok = has && in_values();
        break;
      case LabelRequirement::Op::kNotEq:
      case LabelRequirement::Op::kNotIn:
        ok = !has || !in_values();
        break;
      case LabelRequirement::Op::kGt:
      case LabelRequirement::Op::kLt: {
        char* end = nullptr;
        const long long lhs = std::strtoll(value.c_str(), &end, 10);
        if (!has || value.empty() || *end != '\0') break;
        const long long rhs = std::strtoll(r.values[0].c_str(), &end, 10);
        if (*end != '\0') break;
        ok = r.op == LabelRequirement::Op::kGt ? lhs > rhs : lhs < rhs;
        break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

// Field selectors: `path=v`, `path==v`, `path!=v`, comma-separated; a path is any dotted path
// into the object ("metadata.name", "spec.nodeName"); a missing field reads as "". Values may
// escape `\`, `,` and `=` with a backslash.
struct FieldRequirement {
  std::vector<std::string> path;
  bool equal = true;
  std::string value;
};

std::optional<std::vector<FieldRequirement>> ParseFieldSelector(std::string_view s) {
  std::vector<FieldRequirement> reqs;
  std::vector<std::string> terms;
  std::string cur;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      cur += s[i];
      cur += s[++i];
    } else if (s[i] == ',') {
      terms.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += s[i];
    }
  }
  terms.push_back(std::move(cur));
  for (std::string& term : terms) {
    while (!term.empty() && term.front() == ' ') term.erase(term.begin());
    while (!term.empty() && term.back() == ' ') term.pop_back();
    if (term.empty()) {
      if (terms.size() == 1) return reqs;
      return std::nullopt;
    }
    FieldRequirement r;
    size_t op = std::string::npos;
    size_t op_len = 0;
    for (size_t i = 0; i < term.size(); ++i) {
      if (term[i] == '\\') {
        ++i;
      } else if (term.compare(i, 2, "!=") == 0) {
        op = i, op_len = 2, r.equal = false;
        break;
      } else if (term.compare(i, 2, "==") == 0) {
        op = i, op_len = 2;
        break;
      } else if (term[i] == '=') {
        op = i, op_len = 1;
        break;
      }
    }
    if (op == std::string::npos || op == 0) return std::nullopt;
    std::string key = term.substr(0, op);
    while (!key.empty() && key.back() == ' ') key.pop_back();
    for (size_t i = 0; i <= key.size();) {
      const size_t dot = std::min(key.find('.', i), key.size());
      if (dot == i) return std::nullopt;
      r.path.push_back(key.substr(i, dot - i));
      i = dot + 1;
    }
    const std::string raw = term.substr(op + op_len);
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\\' && i + 1 < raw.size()) ++i;
      r.value += raw[i];
    }
    reqs.push_back(std::move(r));
  }
  return reqs;
}

bool MatchFields(const std::vector<FieldRequirement>& reqs, const json& obj) {
  for (const FieldRequirement& r : reqs) {
    const json* cur = &obj;
    for (const std::string& key : r.path) {
      if (cur == nullptr || !cur->is_object()) {
        cur = nullptr;
        break;
      }
      auto it = cur->find(key);
      cur = it == cur->end() ? nullptr : &*it;
    }
    std::string value;
    if (cur != nullptr && cur->is_string()) {
      value = cur->get<std::string>();
    } else if (cur != nullptr && (cur->is_number() || cur->is_boolean())) {
      value = cur->dump();
    }
    if ((value == r.value) != r.equal) return false;
  }
  return true;
}

struct Selectors {
  std::vector<LabelRequirement> labels;
  std::vector<FieldRequirement> fields;
  bool Matches(const json& obj) const {
    return !obj.is_null() && MatchLabels(labels, obj) && MatchFields(fields, obj);
  }
};

// Strategic-merge-patch directives ($patch, $setElementOrder/..., $retainKeys, ...) mean nothing
// to a JSON merge patch; drop them so they are not stored as fields.
void StripPatchDirectives(json& patch) {
  if (patch.is_object()) {
    for (auto it = patch.begin(); it != patch.end();) {
      if (!it.key().empty() && it.key()[0] == '$') {
        it = patch.erase(it);
      } else {
        StripPatchDirectives(*it);
        ++it;
      }
    }
  } else if (patch.is_array()) {
    for (json& e : patch) StripPatchDirectives(e);
  }
}

// True when anything but metadata and status differs: what makes a real server bump generation.
bool SpecChanged(const json& a, const json& b) {
  json x = a;
  json y = b;
  x.erase("metadata");
  x.erase("status");
  y.erase("metadata");
  y.erase("status");
  return x != y;
}

std::string HexEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::optional<std::string> HexDecode(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < s.size(); i += 2) {
    int v = 0;
    for (size_t k = 0; k < 2; ++k) {
      const char c = s[i + k];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    out += static_cast<char>(v);
  }
  return out;
}

bool RuleMatches(const std::string& method, const std::string& substr, const std::string& m,
                 const std::string& path) {
  return (method.empty() || method == m) &&
         (substr.empty() || path.find(substr) != std::string::npos);
}

// A reply to a request: the HTTP code and the JSON body (an object or a metav1.Status).
struct Reply {
  int code = 200;
  json body;
  bool ok() const { return code < 300; }
};

Reply Error(int code, const std::string& message, json details = nullptr) {
  return {code, StatusJson(code, ReasonForCode(code), message, std::move(details))};
}

}  // namespace

std::string KubeResourceType::ApiVersion() const {
  return group.empty() ? version : group + "/" + version;
}

std::string KubeResourceType::QualifiedName() const {
  return group.empty() ? plural : plural + "." + group;
}

std::vector<KubeResourceType> DefaultKubeResourceTypes() {
  const auto t = [](std::string group, std::string plural, std::string singular, std::string kind,
                    bool namespaced, std::vector<std::string> short_names = {}) {
    KubeResourceType r;
    r.group = std::move(group);
    r.version = "v1";
    r.plural = std::move(plural);
    r.singular = std::move(singular);
    r.kind = std::move(kind);
    r.namespaced = namespaced;
    r.short_names = std::move(short_names);
    return r;
  };
  const std::string rbac = "rbac.authorization.k8s.io";
  return {
      t("", "pods", "pod", "Pod", true, {"po"}),
      t("", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true,
        {"pvc"}),
      t("", "persistentvolumes", "persistentvolume", "PersistentVolume", false, {"pv"}),
      t("", "secrets", "secret", "Secret", true),
      t("", "configmaps", "configmap", "ConfigMap", true, {"cm"}),
      t("", "namespaces", "namespace", "Namespace", false, {"ns"}),
      t("", "nodes", "node", "Node", false, {"no"}),
      t("", "events", "event", "Event", true, {"ev"}),
      t("", "serviceaccounts", "serviceaccount", "ServiceAccount", true, {"sa"}),
      t("apps", "daemonsets", "daemonset", "DaemonSet", true, {"ds"}),
      t("apps", "deployments", "deployment", "Deployment", true, {"deploy"}),
      t("storage.k8s.io", "csidrivers", "csidriver", "CSIDriver", false),
      t(rbac, "clusterroles", "clusterrole", "ClusterRole", false),
      t(rbac, "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", false),
      t(rbac, "roles", "role", "Role", true),
      t(rbac, "rolebindings", "rolebinding", "RoleBinding", true),
      t("apiextensions.k8s.io", "customresourcedefinitions", "customresourcedefinition",
        "CustomResourceDefinition", false, {"crd", "crds"}),
      t("velero.io", "podvolumebackups", "podvolumebackup", "PodVolumeBackup", true),
      t("velero.io", "podvolumerestores", "podvolumerestore", "PodVolumeRestore", true),
      t("velero.io", "backuprepositories", "backuprepository", "BackupRepository", true),
      t("velero.io", "backupstoragelocations", "backupstoragelocation", "BackupStorageLocation",
        true, {"bsl"}),
      t("velero.io", "backups", "backup", "Backup", true),
      t("velero.io", "restores", "restore", "Restore", true),
      t("velero.io", "schedules", "schedule", "Schedule", true),
      t("velero.io", "deletebackuprequests", "deletebackuprequest", "DeleteBackupRequest", true),
  };
}

// ---------------------------------------------------------------------------------------------

struct KubeApiServer::Impl {
  // One registered type and its objects.
  struct TypeState {
    KubeResourceType type;
    // (namespace, name) → object; namespace "" for cluster-scoped types.
    std::map<std::pair<std::string, std::string>, json> objects;
  };

  struct Event {
    int64_t rv = 0;
    const TypeState* type = nullptr;
    std::string ns;
    std::string kind;  // ADDED, MODIFIED, DELETED
    json object;
    json old;  // the previous state, for MODIFIED (selectors: an object leaving a selection)
  };

  struct FaultRule {
    std::string method;
    std::string path_substring;
    int remaining = 0;
    int code = 0;
    std::string message;
  };

  struct HoldRule {
    std::string method;
    std::string path_substring;
    int remaining = 0;  // < 0: forever
    std::chrono::milliseconds delay{0};
    HoldPoint point = HoldPoint::kBeforeHandling;
  };

  // One watch request being served.
  struct Watch {
    const TypeState* type = nullptr;
    std::string ns;  // "" = all
    Selectors selectors;
    bool bookmarks = false;
    bool initial_events_end = false;  // sendInitialEvents=true: mark the end with a bookmark
    Clock::time_point deadline = Clock::time_point::max();
    int64_t cursor = 0;                // every event up to here is handled
    std::vector<std::string> pending;  // initial events, written first
    uint64_t drop_generation = 0;
  };

  KubeApiServerOptions options;
  std::unique_ptr<httplib::Server> http;
  std::thread listener;
  uint16_t port = 0;
  std::unique_ptr<TempDir> tls_dir;

  mutable std::mutex mu;
  mutable std::condition_variable cv;  // any change: objects, watches, drops, stop
  // Guarded by mu:
  std::vector<std::unique_ptr<TypeState>> types;  // registration order
  int64_t rv = 0;
  std::deque<Event> history;
  int64_t history_floor = 0;  // events up to this rv may be gone from history
  int64_t compacted_rv = 0;   // CompactHistory: watches from here or older are refused
  size_t open_watches = 0;
  uint64_t drop_generation = 0;
  WatchEnd drop_how = WatchEnd::kClean;
  bool stopping = false;
  std::string token;
  bool expired_as_http_410 = false;
  std::vector<KubeRequestRecord> requests;
  std::vector<FaultRule> faults;
  std::vector<HoldRule> holds;
  uint64_t hold_release = 0;  // ClearHolds: requests held now go on
  std::mt19937_64 rng{std::random_device{}()};

  // ---- Types.

  TypeState* FindTypeLocked(std::string_view group, std::string_view version,
                            std::string_view plural) const {
    for (const auto& t : types) {
      if (t->type.group == group && t->type.version == version && t->type.plural == plural) {
        return t.get();
      }
    }
    return nullptr;
  }

  TypeState* ResolveLocked(std::string_view name) const {
    for (const auto& t : types) {
      if (t->type.plural == name || t->type.QualifiedName() == name) return t.get();
    }
    for (const auto& t : types) {
      const KubeResourceType& r = t->type;
      if (r.singular == name || r.kind == name ||
          std::find(r.short_names.begin(), r.short_names.end(), name) != r.short_names.end()) {
        return t.get();
      }
    }
    return nullptr;
  }

  void RegisterLocked(const KubeResourceType& type) {
    for (auto& t : types) {
      if (t->type.group == type.group && t->type.version == type.version &&
          t->type.plural == type.plural) {
        t->type = type;
        return;
      }
    }
    auto t = std::make_unique<TypeState>();
    t->type = type;
    types.push_back(std::move(t));
  }

  // ---- Object operations; all under mu.

  std::string NextName(const std::string& prefix) {
    static constexpr std::string_view kAlphabet = "bcdfghjklmnpqrstvwxz2456789";
    std::string s = prefix;
    for (int i = 0; i < 5; ++i) s += kAlphabet[rng() % kAlphabet.size()];
    return s;
  }

  std::string NewUid() {
    char buf[40];
    const uint64_t a = rng();
    const uint64_t b = rng();
    std::snprintf(buf, sizeof(buf), "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                  static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xfff),
                  static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                  static_cast<unsigned long long>(b & 0xffffffffffffULL));
    return buf;
  }

  static json Details(const TypeState& t, const std::string& name) {
    json d = {{"name", name}, {"group", t.type.group}, {"kind", t.type.plural}};
    return d;
  }
  static Reply NotFound(const TypeState& t, const std::string& name) {
    return Error(404, t.type.QualifiedName() + " \"" + name + "\" not found", Details(t, name));
  }
  static Reply ConflictModified(const TypeState& t, const std::string& name) {
    return Error(409,
                 "Operation cannot be fulfilled on " + t.type.QualifiedName() + " \"" + name +
                     "\": the object has been modified; please apply your changes to the latest "
                     "version and try again",
                 Details(t, name));
  }
  static Reply Invalid(const TypeState& t, const std::string& name, const std::string& what) {
    const std::string kind = t.type.group.empty() ? t.type.kind : t.type.kind + "." + t.type.group;
    return Error(422, kind + " \"" + name + "\" is invalid: " + what,
                 {{"name", name}, {"group", t.type.group}, {"kind", t.type.kind}});
  }

  // Checks the shape of `obj` and fills apiVersion, kind and metadata.namespace (from `ns`).
  static std::optional<Reply> Normalize(const TypeState& t, const std::string& ns, json& obj) {
    if (!obj.is_object()) return Error(400, "the body of the request must be a JSON object");
    const std::string api_version = t.type.ApiVersion();
    if (obj.contains("apiVersion") && obj["apiVersion"] != api_version) {
      return Error(400, "the API version in the data (" + obj["apiVersion"].dump() +
                            ") does not match the expected API version (" + api_version + ")");
    }
    if (obj.contains("kind") && obj["kind"] != t.type.kind) {
      return Error(400, "the kind in the data (" + obj["kind"].dump() +
                            ") does not match the expected kind (" + t.type.kind + ")");
    }
    obj["apiVersion"] = api_version;
    obj["kind"] = t.type.kind;
    if (!obj.contains("metadata") || obj["metadata"].is_null()) obj["metadata"] = json::object();
    json& md = obj["metadata"];
    if (!md.is_object()) return Error(400, "metadata must be an object");
    for (const char* key : {"name", "generateName", "namespace", "resourceVersion", "uid"}) {
      if (md.contains(key) && !md[key].is_string()) {
        return Error(400, std::string("metadata.") + key + " must be a string");
      }
    }
    for (const char* key : {"labels", "annotations"}) {
      if (!md.contains(key)) continue;
      if (md[key].is_null()) {
        md.erase(key);
        continue;
      }
      if (!md[key].is_object())
        return Error(400, std::string("metadata.") + key + " must be a map");
      for (const auto& [k, v] : md[key].items()) {
        if (!v.is_string()) {
          return Error(400, std::string("metadata.") + key + "." + k + " must be a string");
        }
      }
    }
    if (t.type.namespaced) {
      const std::string body_ns = StringField(obj, {"metadata", "namespace"});
      if (!body_ns.empty() && body_ns != ns) {
        return Error(400,
                     "the namespace of the provided object does not match the namespace sent on "
                     "the request");
      }
      md["namespace"] = ns;
    } else {
      md.erase("namespace");
    }
    return std::nullopt;
  }

  void EmitLocked(const TypeState& t, const std::string& ns, std::string kind, const json& obj,
                  json old = nullptr) {
    Event e;
    e.rv = rv;
    e.type = &t;
    e.ns = ns;
    e.kind = std::move(kind);
    e.object = obj;
    e.old = std::move(old);
    history.push_back(std::move(e));
    while (history.size() > std::max<size_t>(options.history_size, 1)) {
      history_floor = history.front().rv;
      history.pop_front();
    }
    cv.notify_all();
  }

  Reply CreateLocked(TypeState& t, const std::string& ns, json obj, bool dry_run) {
    if (auto bad = Normalize(t, ns, obj)) return *bad;
    json& md = obj["metadata"];
    std::string name = StringField(obj, {"metadata", "name"});
    const std::string generate = StringField(obj, {"metadata", "generateName"});
    if (name.empty() && generate.empty()) {
      return Invalid(t, "", "metadata.name: Required value: name or generateName is required");
    }
    if (name.empty()) {
      // A real server retries a few names before giving up; so do we.
      for (int i = 0; i < 8 && (name.empty() || t.objects.count({ns, name}) > 0); ++i) {
        name = NextName(generate);
      }
      md["name"] = name;
    }
    if (name.find('/') != std::string::npos || name == "." || name == "..") {
      return Invalid(t, name, "metadata.name: Invalid value: \"" + name + "\"");
    }
    if (t.objects.count({ns, name}) > 0) {
      return {409, StatusJson(409, "AlreadyExists",
                              t.type.QualifiedName() + " \"" + name + "\" already exists",
                              Details(t, name))};
    }
    md["uid"] = NewUid();
    md["creationTimestamp"] = NowRfc3339();
    md["generation"] = 1;
    md.erase("deletionTimestamp");
    md.erase("deletionGracePeriodSeconds");
    if (dry_run) {
      md.erase("resourceVersion");
      return {201, obj};
    }
    md["resourceVersion"] = std::to_string(++rv);
    t.objects[{ns, name}] = obj;
    EmitLocked(t, ns, "ADDED", obj);
    return {201, obj};
  }

  // Stores `obj` over `old` (both normalized, same name): keeps the server-owned fields, bumps
  // generation on a spec change, and removes the object when it is being deleted and has no
  // finalizers left. A no-op answers the stored object unchanged.
  Reply ReplaceLocked(TypeState& t, const std::string& ns, const std::string& name, json obj,
                      bool dry_run) {
    json& cur = t.objects.at({ns, name});
    json& md = obj["metadata"];
    const json& old_md = cur["metadata"];
    for (const char* key :
         {"uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"}) {
      if (old_md.contains(key)) {
        md[key] = old_md[key];
      } else {
        md.erase(key);
      }
    }
    md.erase("generateName");
    if (old_md.contains("generateName")) md["generateName"] = old_md["generateName"];
    const int64_t generation = old_md.value("generation", int64_t{1});
    md["generation"] = SpecChanged(cur, obj) ? generation + 1 : generation;
    md["resourceVersion"] = old_md.value("resourceVersion", "");
    if (md.contains("finalizers") && md["finalizers"].is_array() && md["finalizers"].empty()) {
      md.erase("finalizers");
    }
    if (obj == cur) return {200, cur};
    const bool remove = md.contains("deletionTimestamp") &&
                        (!md.contains("finalizers") || md["finalizers"].empty());
    if (dry_run) return {200, obj};
    md["resourceVersion"] = std::to_string(++rv);
    json old = std::move(cur);
    if (remove) {
      t.objects.erase({ns, name});
      EmitLocked(t, ns, "DELETED", obj);
    } else {
      cur = obj;
      EmitLocked(t, ns, "MODIFIED", obj, std::move(old));
    }
    return {200, obj};
  }

  // PUT: `obj` must carry the stored resourceVersion.
  Reply UpdateLocked(TypeState& t, const std::string& ns, const std::string& name, json obj,
                     bool dry_run) {
    if (auto bad = Normalize(t, ns, obj)) return *bad;
    const std::string body_name = StringField(obj, {"metadata", "name"});
    if (body_name != name) {
      return Error(400, "the name of the object (" + body_name +
                            ") does not match the name on the URL (" + name + ")");
    }
    auto it = t.objects.find({ns, name});
    if (it == t.objects.end()) return NotFound(t, name);
    const std::string body_rv = StringField(obj, {"metadata", "resourceVersion"});
    if (body_rv.empty()) {
      return Invalid(t, name,
                     "metadata.resourceVersion: Invalid value: 0x0: must be specified for an "
                     "update");
    }
    if (body_rv != StringField(it->second, {"metadata", "resourceVersion"})) {
      return ConflictModified(t, name);
    }
    return ReplaceLocked(t, ns, name, std::move(obj), dry_run);
  }

  Reply PatchLocked(TypeState& t, const std::string& ns, const std::string& name,
                    const std::string& content_type, const std::string& body, bool dry_run) {
    auto it = t.objects.find({ns, name});
    if (it == t.objects.end()) return NotFound(t, name);
    const json& cur = it->second;
    const std::string media = MediaType(content_type);
    json patch = json::parse(body, nullptr, false);
    json obj = cur;
    if (media == "application/merge-patch+json" ||
        media == "application/strategic-merge-patch+json") {
      if (patch.is_discarded() || !patch.is_object()) {
        return Error(400, "error decoding patch: the patch must be a JSON object");
      }
      if (media == "application/strategic-merge-patch+json") StripPatchDirectives(patch);
      obj.merge_patch(patch);
    } else if (media == "application/json-patch+json") {
      if (patch.is_discarded() || !patch.is_array()) {
        return Error(400, "error decoding patch: the JSON patch must be an array");
      }
      try {
        obj = cur.patch(patch);
      } catch (const json::exception& e) {
        return Invalid(t, name, std::string("the JSON patch could not be applied: ") + e.what());
      }
    } else {
      return Error(415,
                   "the body of the request was in an unknown format - accepted media types "
                   "include: application/json-patch+json, application/merge-patch+json, "
                   "application/strategic-merge-patch+json");
    }
    if (!obj.is_object()) return Invalid(t, name, "the patched object is not a JSON object");
    if (auto bad = Normalize(t, ns, obj)) return *bad;
    if (StringField(obj, {"metadata", "name"}) != name) {
      return Invalid(t, name, "metadata.name: Invalid value: field is immutable");
    }
    // A patch that sets metadata.resourceVersion is a precondition, as on a real server.
    const std::string want_rv = StringField(obj, {"metadata", "resourceVersion"});
    if (!want_rv.empty() && want_rv != StringField(cur, {"metadata", "resourceVersion"})) {
      return ConflictModified(t, name);
    }
    return ReplaceLocked(t, ns, name, std::move(obj), dry_run);
  }

  Reply DeleteLocked(TypeState& t, const std::string& ns, const std::string& name,
                     const json& options_body, bool dry_run) {
    auto it = t.objects.find({ns, name});
    if (it == t.objects.end()) return NotFound(t, name);
    json obj = it->second;
    json& md = obj["metadata"];
    if (const json* pre = Field(options_body, {"preconditions"}); pre != nullptr) {
      const std::string uid = StringField(*pre, {"uid"});
      const std::string prv = StringField(*pre, {"resourceVersion"});
      const std::string cur_uid = md.value("uid", "");
      const std::string cur_rv = md.value("resourceVersion", "");
      if (!uid.empty() && uid != cur_uid) {
        return Error(
            409,
            "Precondition failed: UID in precondition: " + uid + ", UID in object meta: " + cur_uid,
            Details(t, name));
      }
      if (!prv.empty() && prv != cur_rv) {
        return Error(409,
                     "Precondition failed: ResourceVersion in precondition: " + prv +
                         ", ResourceVersion in object meta: " + cur_rv,
                     Details(t, name));
      }
    }
    const bool has_finalizers =
        md.contains("finalizers") && md["finalizers"].is_array() && !md["finalizers"].empty();
    if (has_finalizers) {
      if (md.contains("deletionTimestamp") || dry_run) return {200, obj};
      md["deletionTimestamp"] = NowRfc3339();
      md["deletionGracePeriodSeconds"] = 0;
      md["resourceVersion"] = std::to_string(++rv);
      json old = std::move(it->second);
      it->second = obj;
      EmitLocked(t, ns, "MODIFIED", obj, std::move(old));
      return {200, obj};
    }
    if (dry_run) return {200, obj};
    md["resourceVersion"] = std::to_string(++rv);
    t.objects.erase(it);
    EmitLocked(t, ns, "DELETED", obj);
    return {200, obj};
  }

  // Put(): create or force-replace.
  Reply PutLocked(TypeState& t, json obj) {
    if (!obj.is_object()) return Error(400, "the object must be a JSON object");
    const std::string ns = t.type.namespaced ? StringField(obj, {"metadata", "namespace"}) : "";
    if (t.type.namespaced && ns.empty()) {
      return Error(400, "metadata.namespace is required for " + t.type.QualifiedName());
    }
    if (auto bad = Normalize(t, ns, obj)) return *bad;
    const std::string name = StringField(obj, {"metadata", "name"});
    auto it = t.objects.find({ns, name});
    if (name.empty() || it == t.objects.end()) return CreateLocked(t, ns, std::move(obj), false);
    return ReplaceLocked(t, ns, name, std::move(obj), false);
  }

  std::vector<json> ListLocked(const TypeState& t, const std::string& ns,
                               const Selectors& sel) const {
    std::vector<json> out;
    for (const auto& [key, obj] : t.objects) {
      if (!ns.empty() && key.first != ns) continue;
      if (sel.Matches(obj)) out.push_back(obj);
    }
    return out;  // std::map order: namespace, then name
  }

  // ---- Watches.

  // Appends the watch's events after w.cursor to `out` and moves the cursor to now. False when
  // some of them are gone from the history (the watch fell too far behind).
  bool CollectLocked(Watch& w, std::vector<std::string>& out) const {
    if (w.cursor < history_floor) return false;
    auto it = std::upper_bound(history.begin(), history.end(), w.cursor,
                               [](int64_t v, const Event& e) { return v < e.rv; });
    for (; it != history.end(); ++it) {
      const Event& e = *it;
      if (e.type != w.type || (!w.ns.empty() && e.ns != w.ns)) continue;
      std::string kind = e.kind;
      if (kind == "MODIFIED") {
        const bool was = w.selectors.Matches(e.old);
        const bool is = w.selectors.Matches(e.object);
        if (!was && !is) continue;
        kind = was && is ? "MODIFIED" : is ? "ADDED" : "DELETED";
      } else if (!w.selectors.Matches(e.object)) {
        continue;
      }
      out.push_back(json{{"type", kind}, {"object", e.object}}.dump() + "\n");
    }
    w.cursor = rv;
    return true;
  }

  std::string Bookmark(const Watch& w, bool initial_events_end) const {
    json md = {{"resourceVersion", std::to_string(w.cursor)}};
    if (initial_events_end) md["annotations"] = {{"k8s.io/initial-events-end", "true"}};
    return json{{"type", "BOOKMARK"},
                {"object",
                 {{"kind", w.type->type.kind},
                  {"apiVersion", w.type->type.ApiVersion()},
                  {"metadata", md}}}}
               .dump() +
           "\n";
  }

  static std::string ExpiredEvent(const std::string& message) {
    return json{{"type", "ERROR"}, {"object", StatusJson(410, "Expired", message)}}.dump() + "\n";
  }

  // Serves one watch stream on the calling (server worker) thread until it ends. Returns false
  // to make httplib close the connection without the terminating chunk.
  bool StreamWatch(Watch& w, httplib::DataSink& sink) {
    const auto write = [&](const std::vector<std::string>& lines) {
      for (const std::string& line : lines) {
        if (!sink.write(line.data(), line.size())) return false;
      }
      return true;
    };
    if (!write(w.pending)) return false;
    std::vector<std::string> batch;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (w.initial_events_end && w.bookmarks) batch.push_back(Bookmark(w, true));
      ++open_watches;
      cv.notify_all();
    }
    struct Uncount {
      Impl* impl;
      ~Uncount() {
        std::lock_guard<std::mutex> lock(impl->mu);
        --impl->open_watches;
        impl->cv.notify_all();
      }
    } uncount{this};
    if (!write(batch)) return false;
    Clock::time_point next_bookmark = Clock::now() + options.bookmark_interval;
    while (true) {
      batch.clear();
      bool end = false;
      bool abort = false;
      {
        std::unique_lock<std::mutex> lock(mu);
        while (true) {
          if (!CollectLocked(w, batch)) {
            batch.push_back(ExpiredEvent("too old resource version: " + std::to_string(w.cursor) +
                                         " (" + std::to_string(history_floor) + ")"));
            end = true;
            break;
          }
          const bool dropped = drop_generation != w.drop_generation;
          if (dropped && drop_how == WatchEnd::kAbort) {
            abort = true;
            break;
          }
          if (dropped || stopping) {
            end = true;
            break;
          }
          if (!batch.empty()) break;
          const Clock::time_point now = Clock::now();
          if (now >= w.deadline) {
            end = true;
            break;
          }
          if (w.bookmarks && now >= next_bookmark) {
            batch.push_back(Bookmark(w, false));
            next_bookmark = now + options.bookmark_interval;
            break;
          }
          Clock::time_point wake = std::min(w.deadline, now + std::chrono::seconds(1));
          if (w.bookmarks) wake = std::min(wake, next_bookmark);
          cv.wait_until(lock, wake);
        }
      }
      if (abort) return false;
      if (!write(batch)) return false;
      if (end) {
        sink.done();
        return true;
      }
    }
  }

  // ---- HTTP.

  static void Send(httplib::Response& res, const Reply& r) {
    res.status = r.code;
    res.set_content(r.body.dump(), "application/json");
  }

  static std::string Param(const httplib::Request& req, const char* key) {
    return req.has_param(key) ? req.get_param_value(key) : std::string();
  }

  void Handle(const httplib::Request& req, httplib::Response& res) {
    // httplib compresses application/json for clients that accept gzip (Go does), buffering a
    // watch stream inside zlib until it ends; API servers send small answers uncompressed.
    const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");
    const std::string method = req.method;
    const std::string path = req.path;
    size_t record = 0;
    std::optional<Reply> early;
    std::chrono::milliseconds hold{0};
    HoldPoint hold_point = HoldPoint::kBeforeHandling;
    {
      std::lock_guard<std::mutex> lock(mu);
      KubeRequestRecord r;
      r.method = method;
      r.path = path;
      const size_t q = req.target.find('?');
      if (q != std::string::npos) r.query = req.target.substr(q + 1);
      r.content_type = req.get_header_value("Content-Type");
      r.accept = req.get_header_value("Accept");
      r.user_agent = req.get_header_value("User-Agent");
      r.body = req.body;
      record = requests.size();
      requests.push_back(std::move(r));
      for (auto it = holds.begin(); it != holds.end(); ++it) {
        if (!RuleMatches(it->method, it->path_substring, method, path)) continue;
        hold = it->delay;
        hold_point = it->point;
        if (it->remaining > 0 && --it->remaining == 0) holds.erase(it);
        break;
      }
      if (!token.empty() && req.get_header_value("Authorization") != "Bearer " + token) {
        early = Error(401, "Unauthorized");
      }
      for (auto it = faults.begin(); !early && it != faults.end(); ++it) {
        if (!RuleMatches(it->method, it->path_substring, method, path)) continue;
        early =
            Error(it->code, it->message.empty() ? "injected fault: HTTP " + std::to_string(it->code)
                                                : it->message);
        if (--it->remaining <= 0) faults.erase(it);
        break;
      }
    }
    const auto wait_hold = [&](HoldPoint point) {
      if (hold.count() <= 0 || hold_point != point) return;
      std::unique_lock<std::mutex> lock(mu);
      const uint64_t release = hold_release;
      cv.wait_for(lock, hold, [&] { return stopping || hold_release != release; });
    };
    wait_hold(HoldPoint::kBeforeHandling);
    if (early) {
      Send(res, *early);
    } else {
      Route(req, res);
    }
    wait_hold(HoldPoint::kAfterHandling);
    std::lock_guard<std::mutex> lock(mu);
    if (record < requests.size()) requests[record].status = res.status;
  }

  void Route(const httplib::Request& req, httplib::Response& res) {
    const std::vector<std::string> seg = SplitPath(req.path);
    const std::string accept = req.get_header_value("Accept");
    if (req.method == "GET" && req.path == "/version") {
      Send(res, {200,
                 {{"major", "1"},
                  {"minor", "32"},
                  {"gitVersion", "v1.32.0"},
                  {"gitCommit", "0000000000000000000000000000000000000000"},
                  {"gitTreeState", "clean"},
                  {"buildDate", "2024-12-11T00:00:00Z"},
                  {"goVersion", "go1.23.4"},
                  {"compiler", "gc"},
                  {"platform", "linux/amd64"}}});
      return;
    }
    if (req.method == "GET" &&
        (req.path == "/healthz" || req.path == "/readyz" || req.path == "/livez")) {
      res.status = 200;
      res.set_content("ok", "text/plain");
      return;
    }
    if (seg.empty())
      return Send(res, Error(404, "the server could not find the requested resource"));
    if (seg[0] == "openapi") return ServeOpenApi(req, seg, res);
    if (seg[0] == "api") {
      if (seg.size() == 1) return ServeDiscovery(true, accept, res);
      if (seg.size() == 2) return ServeResourceList("", seg[1], res);
      return ServeResource(req, "", seg[1], {seg.begin() + 2, seg.end()}, res);
    }
    if (seg[0] == "apis") {
      if (seg.size() == 1) return ServeDiscovery(false, accept, res);
      if (seg.size() == 2) return ServeGroup(seg[1], res);
      if (seg.size() == 3) return ServeResourceList(seg[1], seg[2], res);
      return ServeResource(req, seg[1], seg[2], {seg.begin() + 3, seg.end()}, res);
    }
    Send(res, Error(404, "the server could not find the requested resource"));
  }

  // (group, version) pairs in registration order.
  std::vector<std::pair<std::string, std::string>> GroupVersionsLocked() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& t : types) {
      std::pair<std::string, std::string> gv{t->type.group, t->type.version};
      if (std::find(out.begin(), out.end(), gv) == out.end()) out.push_back(gv);
    }
    return out;
  }

  static json Verbs(bool) {
    return {"create", "delete", "get", "list", "patch", "update", "watch"};
  }

  void ServeDiscovery(bool core, const std::string& accept, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    const auto gvs = GroupVersionsLocked();
    const bool aggregated = options.aggregated_discovery &&
                            accept.find("as=APIGroupDiscoveryList") != std::string::npos &&
                            accept.find("g=apidiscovery.k8s.io;v=v2;") != std::string::npos;
    if (aggregated) {
      json items = json::array();
      std::vector<std::string> groups;
      for (const auto& [g, v] : gvs) {
        if (core != g.empty()) continue;
        if (std::find(groups.begin(), groups.end(), g) == groups.end()) groups.push_back(g);
      }
      for (const std::string& g : groups) {
        json versions = json::array();
        for (const auto& [gg, v] : gvs) {
          if (gg != g) continue;
          json resources = json::array();
          for (const auto& t : types) {
            if (t->type.group != g || t->type.version != v) continue;
            const json kind = {{"group", g}, {"version", v}, {"kind", t->type.kind}};
            json r = {{"resource", t->type.plural},
                      {"singularResource", t->type.singular},
                      {"scope", t->type.namespaced ? "Namespaced" : "Cluster"},
                      {"responseKind", kind},
                      {"verbs", Verbs(t->type.namespaced)},
                      {"subresources",
                       {{{"subresource", "status"},
                         {"responseKind", kind},
                         {"verbs", {"get", "patch", "update"}}}}}};
            if (!t->type.short_names.empty()) r["shortNames"] = t->type.short_names;
            resources.push_back(std::move(r));
          }
          versions.push_back({{"version", v}, {"resources", resources}, {"freshness", "Current"}});
        }
        items.push_back({{"metadata", {{"name", g}}}, {"versions", versions}});
      }
      res.status = 200;
      res.set_content(json{{"kind", "APIGroupDiscoveryList"},
                           {"apiVersion", "apidiscovery.k8s.io/v2"},
                           {"metadata", json::object()},
                           {"items", items}}
                          .dump(),
                      "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
      return;
    }
    if (core) {
      Send(res, {200,
                 {{"kind", "APIVersions"},
                  {"versions", {"v1"}},
                  {"serverAddressByClientCIDRs",
                   {{{"clientCIDR", "0.0.0.0/0"},
                     {"serverAddress", "127.0.0.1:" + std::to_string(port)}}}}}});
      return;
    }
    json groups = json::array();
    std::vector<std::string> seen;
    for (const auto& [g, v] : gvs) {
      if (g.empty() || std::find(seen.begin(), seen.end(), g) != seen.end()) continue;
      seen.push_back(g);
      groups.push_back(GroupJsonLocked(g));
    }
    Send(res, {200, {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}}});
  }

  json GroupJsonLocked(const std::string& group) const {
    json versions = json::array();
    for (const auto& [g, v] : GroupVersionsLocked()) {
      if (g == group) versions.push_back({{"groupVersion", g + "/" + v}, {"version", v}});
    }
    return {{"kind", "APIGroup"},
            {"apiVersion", "v1"},
            {"name", group},
            {"versions", versions},
            {"preferredVersion", versions.empty() ? json::object() : versions[0]}};
  }

  void ServeGroup(const std::string& group, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    json g = GroupJsonLocked(group);
    if (g["versions"].empty()) {
      return Send(res, Error(404, "the server could not find the requested resource"));
    }
    Send(res, {200, g});
  }

  void ServeResourceList(const std::string& group, const std::string& version,
                         httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    json resources = json::array();
    for (const auto& t : types) {
      if (t->type.group != group || t->type.version != version) continue;
      json r = {{"name", t->type.plural},
                {"singularName", t->type.singular},
                {"namespaced", t->type.namespaced},
                {"kind", t->type.kind},
                {"verbs", Verbs(t->type.namespaced)}};
      if (!t->type.short_names.empty()) r["shortNames"] = t->type.short_names;
      resources.push_back(std::move(r));
      resources.push_back({{"name", t->type.plural + "/status"},
                           {"singularName", ""},
                           {"namespaced", t->type.namespaced},
                           {"kind", t->type.kind},
                           {"verbs", {"get", "patch", "update"}}});
    }
    if (resources.empty()) {
      return Send(res, Error(404, "the server could not find the requested resource"));
    }
    Send(res, {200,
               {{"kind", "APIResourceList"},
                {"apiVersion", "v1"},
                {"groupVersion", group.empty() ? version : group + "/" + version},
                {"resources", resources}}});
  }

  // The OpenAPI v3 document of one group-version: just enough for kubectl to see that the server
  // validates fields (a PATCH operation per kind declaring fieldValidation), so it sends
  // fieldValidation=Strict instead of validating against schemas itself (real-parts.md §2).
  json OpenApiDocLocked(const std::string& group, const std::string& version) const {
    json paths = json::object();
    for (const auto& t : types) {
      if (t->type.group != group || t->type.version != version) continue;
      const std::string base = group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
      const std::string path = base + (t->type.namespaced ? "/namespaces/{namespace}/" : "/") +
                               t->type.plural + "/{name}";
      paths[path] = {
          {"patch",
           {{"x-kubernetes-group-version-kind",
             {{"group", group}, {"version", version}, {"kind", t->type.kind}}},
            {"parameters",
             {{{"name", "fieldValidation"}, {"in", "query"}, {"schema", {{"type", "string"}}}},
              {{"name", "dryRun"}, {"in", "query"}, {"schema", {{"type", "string"}}}}}}}}};
    }
    return {{"openapi", "3.0.0"},
            {"info", {{"title", "fsb test API server"}, {"version", version}}},
            {"paths", paths}};
  }

  void ServeOpenApi(const httplib::Request& req, const std::vector<std::string>& seg,
                    httplib::Response& res) {
    if (req.method != "GET" || seg.size() < 2 || seg[1] != "v3") {
      return Send(res, Error(404, "the server could not find the requested resource"));
    }
    std::lock_guard<std::mutex> lock(mu);
    if (seg.size() == 2) {
      json paths = json::object();
      for (const auto& [g, v] : GroupVersionsLocked()) {
        const std::string key = g.empty() ? "api/" + v : "apis/" + g + "/" + v;
        const std::string doc = OpenApiDocLocked(g, v).dump();
        char hash[24];
        std::snprintf(hash, sizeof(hash), "%016llX",
                      static_cast<unsigned long long>(std::hash<std::string>{}(doc)));
        paths[key] = {{"serverRelativeURL", "/openapi/v3/" + key + "?hash=" + hash}};
      }
      return Send(res, {200, {{"paths", paths}}});
    }
    std::string group;
    std::string version;
    if (seg[2] == "api" && seg.size() == 4) {
      version = seg[3];
    } else if (seg[2] == "apis" && seg.size() == 5) {
      group = seg[3];
      version = seg[4];
    } else {
      return Send(res, Error(404, "the server could not find the requested resource"));
    }
    json doc = OpenApiDocLocked(group, version);
    if (doc["paths"].empty()) {
      return Send(res, Error(404, "the server could not find the requested resource"));
    }
    Send(res, {200, doc});
  }

  void ServeResource(const httplib::Request& req, const std::string& group,
                     const std::string& version, std::vector<std::string> rest,
                     httplib::Response& res) {
    const Reply not_found = Error(404, "the server could not find the requested resource");
    std::unique_lock<std::mutex> lock(mu);
    std::string ns;
    if (rest.size() >= 3 && rest[0] == "namespaces") {
      if (const TypeState* t = FindTypeLocked(group, version, rest[2]);
          t != nullptr && t->type.namespaced) {
        ns = rest[1];
        rest.erase(rest.begin(), rest.begin() + 2);
      }
    }
    if (rest.empty() || rest.size() > 3) return Send(res, not_found);
    TypeState* t = FindTypeLocked(group, version, rest[0]);
    if (t == nullptr) return Send(res, not_found);
    const std::string name = rest.size() > 1 ? rest[1] : "";
    const std::string sub = rest.size() > 2 ? rest[2] : "";
    if (!sub.empty() && sub != "status") return Send(res, not_found);
    if (t->type.namespaced && ns.empty() && !name.empty()) return Send(res, not_found);
    const bool dry_run = Param(req, "dryRun") == "All";
    const std::string& m = req.method;
    const Reply not_allowed = Error(405,
                                    "the server does not allow this method on the requested "
                                    "resource");

    if (name.empty()) {
      if (m == "GET") {
        Selectors sel;
        if (auto bad = ParseSelectorsInto(req, sel)) return Send(res, *bad);
        if (ParseBool(Param(req, "watch"))) return StartWatch(req, *t, ns, std::move(sel), res);
        return Send(res, ListReplyLocked(req, *t, ns, sel));
      }
      if (m == "POST") {
        if (t->type.namespaced && ns.empty()) return Send(res, not_allowed);
        json obj = json::parse(req.body, nullptr, false);
        if (obj.is_discarded()) {
          return Send(res, Error(400, "the body of the request is not valid JSON"));
        }
        return Send(res, CreateLocked(*t, ns, std::move(obj), dry_run));
      }
      return Send(res, not_allowed);
    }
    if (m == "GET") {
      if (ParseBool(Param(req, "watch"))) {
        // The old form of a watch of one object: /…/pods/NAME?watch=true.
        Selectors sel;
        if (auto bad = ParseSelectorsInto(req, sel)) return Send(res, *bad);
        sel.fields.push_back({{"metadata", "name"}, true, name});
        return StartWatch(req, *t, ns, std::move(sel), res);
      }
      auto it = t->objects.find({ns, name});
      if (it != t->objects.end()) return Send(res, {200, it->second});
      if (options.implicit_namespaces && t->type.group.empty() && t->type.plural == "namespaces") {
        return Send(res, {200,
                          {{"apiVersion", "v1"},
                           {"kind", "Namespace"},
                           {"metadata", {{"name", name}}},
                           {"spec", {{"finalizers", {"kubernetes"}}}},
                           {"status", {{"phase", "Active"}}}}});
      }
      return Send(res, NotFound(*t, name));
    }
    if (m == "PUT") {
      json obj = json::parse(req.body, nullptr, false);
      if (obj.is_discarded()) {
        return Send(res, Error(400, "the body of the request is not valid JSON"));
      }
      return Send(res, UpdateLocked(*t, ns, name, std::move(obj), dry_run));
    }
    if (m == "PATCH") {
      return Send(
          res, PatchLocked(*t, ns, name, req.get_header_value("Content-Type"), req.body, dry_run));
    }
    if (m == "DELETE" && sub.empty()) {
      json opts = req.body.empty() ? json::object() : json::parse(req.body, nullptr, false);
      if (opts.is_discarded()) {
        return Send(res, Error(400, "the body of the request is not valid JSON"));
      }
      return Send(res, DeleteLocked(*t, ns, name, opts, dry_run));
    }
    Send(res, not_allowed);
  }

  static std::optional<Reply> ParseSelectorsInto(const httplib::Request& req, Selectors& sel) {
    const std::string ls = Param(req, "labelSelector");
    const std::string fs = Param(req, "fieldSelector");
    auto labels = ParseLabelSelector(ls);
    if (!labels)
      return Error(400, "unable to parse requirement: invalid label selector \"" + ls + "\"");
    auto fields = ParseFieldSelector(fs);
    if (!fields) return Error(400, "invalid field selector \"" + fs + "\"");
    sel.labels = std::move(*labels);
    sel.fields = std::move(*fields);
    return std::nullopt;
  }

  // A list page. The continue token carries the list's resourceVersion and the last key served;
  // later pages show objects as they are now (a real server serves a snapshot).
  Reply ListReplyLocked(const httplib::Request& req, const TypeState& t, const std::string& ns,
                        const Selectors& sel) const {
    std::vector<json> items = ListLocked(t, ns, sel);
    int64_t list_rv = rv;
    const std::string cont = Param(req, "continue");
    size_t start = 0;
    if (!cont.empty()) {
      auto decoded = HexDecode(cont);
      json token = decoded ? json::parse(*decoded, nullptr, false) : json();
      if (!token.is_object() || !token.contains("rv") || !token["rv"].is_number_integer() ||
          !token.contains("ns") || !token.contains("name")) {
        return Error(400, "continue key is not valid");
      }
      list_rv = token["rv"].get<int64_t>();
      const std::pair<std::string, std::string> after{token["ns"].get<std::string>(),
                                                      token["name"].get<std::string>()};
      while (start < items.size()) {
        const std::pair<std::string, std::string> key{
            StringField(items[start], {"metadata", "namespace"}),
            StringField(items[start], {"metadata", "name"})};
        if (key > after) break;
        ++start;
      }
    }
    int64_t limit = 0;
    if (const std::string l = Param(req, "limit"); !l.empty()) {
      limit = std::strtoll(l.c_str(), nullptr, 10);
    }
    size_t end = items.size();
    if (limit > 0 && start + static_cast<size_t>(limit) < items.size()) {
      end = start + static_cast<size_t>(limit);
    }
    json page = json::array();
    for (size_t i = start; i < end; ++i) page.push_back(std::move(items[i]));
    json md = {{"resourceVersion", std::to_string(list_rv)}};
    if (end < items.size()) {
      const json& last = page.back();
      md["continue"] = HexEncode(json{{"rv", list_rv},
                                      {"ns", StringField(last, {"metadata", "namespace"})},
                                      {"name", StringField(last, {"metadata", "name"})}}
                                     .dump());
      md["remainingItemCount"] = items.size() - end;
    }
    return {200,
            {{"kind", t.type.kind + "List"},
             {"apiVersion", t.type.ApiVersion()},
             {"metadata", md},
             {"items", page}}};
  }

  // Called with mu held (through ServeResource's lock): sets up the stream; the events are written
  // by StreamWatch once httplib has sent the headers.
  void StartWatch(const httplib::Request& req, TypeState& t, const std::string& ns, Selectors sel,
                  httplib::Response& res) {
    auto w = std::make_shared<Watch>();  // shared with httplib's content provider
    w->type = &t;
    w->ns = ns;
    w->selectors = std::move(sel);
    w->bookmarks = ParseBool(Param(req, "allowWatchBookmarks"));
    w->initial_events_end = ParseBool(Param(req, "sendInitialEvents"));
    w->drop_generation = drop_generation;
    if (const std::string ts = Param(req, "timeoutSeconds"); !ts.empty()) {
      const long long s = std::strtoll(ts.c_str(), nullptr, 10);
      if (s > 0) w->deadline = Clock::now() + std::chrono::seconds(s);
    }
    const std::string rv_param = Param(req, "resourceVersion");
    if (rv_param.empty() || rv_param == "0" || w->initial_events_end) {
      for (const json& obj : ListLocked(t, ns, w->selectors)) {
        w->pending.push_back(json{{"type", "ADDED"}, {"object", obj}}.dump() + "\n");
      }
      w->cursor = rv;
    } else {
      char* end = nullptr;
      const long long from = std::strtoll(rv_param.c_str(), &end, 10);
      if (*end != '\0' || from < 0) {
        return Send(res, Error(400, "invalid resource version \"" + rv_param + "\""));
      }
      const int64_t oldest = std::max(history_floor, compacted_rv);
      if (from < oldest) {
        const std::string message =
            "too old resource version: " + rv_param + " (" + std::to_string(oldest) + ")";
        if (expired_as_http_410) return Send(res, Error(410, message));
        w->pending.push_back(ExpiredEvent(message));
        res.status = 200;
        res.set_chunked_content_provider("application/json", [w](size_t, httplib::DataSink& sink) {
          for (const std::string& line : w->pending) sink.write(line.data(), line.size());
          sink.done();
          return true;
        });
        return;
      }
      w->cursor = from;
    }
    res.status = 200;
    res.set_chunked_content_provider(
        "application/json",
        [this, w](size_t, httplib::DataSink& sink) { return StreamWatch(*w, sink); });
  }

  // ---- Direct API helpers.

  Status ToStatus(const Reply& r) const {
    return Status(CodeForHttp(r.code), r.body.value("message", "HTTP " + std::to_string(r.code)));
  }
};

// ---------------------------------------------------------------------------------------------

namespace {

// httplib's worker keeps an idle kept-alive connection until keep_alive_timeout, whatever
// stop() says, so a client that outlives the server would make the destructor wait for it.
// Shutting down (not closing: httplib still owns the fds) every socket of this process whose
// local end is 127.0.0.1:port, i.e. the connections the server accepted, ends those waits at once.
void ShutdownAcceptedSockets(uint16_t port) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    const std::string name = entry.path().filename().string();
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc()) continue;
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
        addr.sin_family != AF_INET || ntohs(addr.sin_port) != port ||
        addr.sin_addr.s_addr != htonl(INADDR_LOOPBACK)) {
      continue;
    }
    shutdown(fd, SHUT_RDWR);
  }
}

}  // namespace

KubeApiServer::KubeApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<KubeApiServer> KubeApiServer::Start(const KubeApiServerOptions& options,
                                                    std::string* why) {
  std::string ignored;
  if (why == nullptr) why = &ignored;
  // A client that goes away mid-watch makes the next write hit a closed socket; httplib sends
  // without MSG_NOSIGNAL (and OpenSSL writes plainly), so SIGPIPE would end the test process.
  std::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->rv = options.start_resource_version;
  impl->history_floor = 0;
  impl->token = options.bearer_token;
  impl->expired_as_http_410 = options.expired_as_http_410;
  if (options.register_defaults) {
    for (const KubeResourceType& t : DefaultKubeResourceTypes()) impl->RegisterLocked(t);
  }
  if (options.tls) {
    impl->tls_dir = std::make_unique<TempDir>();
    if (!MakeTestCertificates(impl->tls_dir->path(), why)) return nullptr;
    const std::string crt = (impl->tls_dir->path() / "server.crt").string();
    const std::string key = (impl->tls_dir->path() / "server.key").string();
    impl->http = std::make_unique<httplib::SSLServer>(crt.c_str(), key.c_str());
  } else {
    impl->http = std::make_unique<httplib::Server>();
  }
  if (!impl->http->is_valid()) {
    *why = "httplib server is not valid (TLS certificate or key not loaded)";
    return nullptr;
  }
  const int threads = std::max(options.threads, 4);
  impl->http->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  impl->http->set_keep_alive_timeout(std::max<time_t>(options.keep_alive_timeout.count(), 1));
  impl->http->set_keep_alive_max_count(1000);
  Impl* p = impl.get();
  const auto handler = [p](const httplib::Request& req, httplib::Response& res) {
    p->Handle(req, res);
  };
  impl->http->Get(".*", handler);
  impl->http->Post(".*", handler);
  impl->http->Put(".*", handler);
  impl->http->Patch(".*", handler);
  impl->http->Delete(".*", handler);
  impl->http->set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        Impl::Send(res, Error(500, "test API server: " + what));
      });
  const int port = impl->http->bind_to_any_port("127.0.0.1");
  if (port <= 0) {
    *why = "cannot bind 127.0.0.1";
    return nullptr;
  }
  impl->port = static_cast<uint16_t>(port);
  impl->listener = std::thread([p] { p->http->listen_after_bind(); });
  // httplib's stop() does nothing before the accept loop has started.
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  while (!impl->http->is_running() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!impl->http->is_running()) {
    impl->http->stop();
    impl->listener.join();
    *why = "the accept loop did not start";
    return nullptr;
  }
  return std::unique_ptr<KubeApiServer>(new KubeApiServer(std::move(impl)));
}

KubeApiServer::~KubeApiServer() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_all();
  }
  // Start() returned only once the accept loop ran, so stop() is seen; listen_after_bind then
  // joins every worker.
  impl_->http->stop();
  ShutdownAcceptedSockets(impl_->port);
  impl_->listener.join();
}

uint16_t KubeApiServer::port() const { return impl_->port; }

std::string KubeApiServer::url() const {
  return std::string(impl_->options.tls ? "https" : "http") +
         "://127.0.0.1:" + std::to_string(impl_->port);
}

std::string KubeApiServer::ca_file() const {
  return impl_->tls_dir ? (impl_->tls_dir->path() / "ca.pem").string() : std::string();
}

void KubeApiServer::WriteKubeconfig(const std::filesystem::path& path, std::string_view ns,
                                    std::string_view token) const {
  // JSON strings are valid YAML double-quoted scalars.
  const auto q = [](std::string_view s) { return json(std::string(s)).dump(); };
  std::string y =
      "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: " + q(url()) +
      "\n";
  if (impl_->options.tls) y += "    certificate-authority: " + q(ca_file()) + "\n";
  y += "users:\n- name: tester\n  user:";
  y += token.empty() ? std::string(" {}\n") : "\n    token: " + q(token) + "\n";
  y += "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n";
  if (!ns.empty()) y += "    namespace: " + q(ns) + "\n";
  y += "current-context: fake\n";
  WriteStringToFile(path, y);
}

void KubeApiServer::Register(const KubeResourceType& type) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->RegisterLocked(type);
}

void KubeApiServer::SetBearerToken(std::string token) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->token = std::move(token);
}

void KubeApiServer::SetExpiredAsHttp410(bool http_410) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->expired_as_http_410 = http_410;
}

namespace {
std::string NameOf(const kube::Resource& r) {
  return r.group.empty() ? std::string(r.plural)
                         : std::string(r.plural) + "." + std::string(r.group);
}
}  // namespace

Result<KubeObject> KubeApiServer::Put(std::string_view resource, KubeObject obj) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::TypeState* t = impl_->ResolveLocked(resource);
  if (t == nullptr) return Status::NotFound("unknown resource " + std::string(resource));
  Reply r = impl_->PutLocked(*t, std::move(obj));
  if (!r.ok()) return impl_->ToStatus(r);
  return r.body;
}

Result<KubeObject> KubeApiServer::Put(const kube::Resource& r, KubeObject obj) {
  return Put(NameOf(r), std::move(obj));
}

Result<KubeObject> KubeApiServer::Get(std::string_view resource, std::string_view ns,
                                      std::string_view name) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const Impl::TypeState* t = impl_->ResolveLocked(resource);
  if (t == nullptr) return Status::NotFound("unknown resource " + std::string(resource));
  auto it = t->objects.find({t->type.namespaced ? std::string(ns) : "", std::string(name)});
  if (it == t->objects.end()) return impl_->ToStatus(Impl::NotFound(*t, std::string(name)));
  return it->second;
}

Result<KubeObject> KubeApiServer::Get(const kube::Resource& r, std::string_view ns,
                                      std::string_view name) const {
  return Get(NameOf(r), ns, name);
}

std::vector<KubeObject> KubeApiServer::List(std::string_view resource, std::string_view ns,
                                            std::string_view label_selector,
                                            std::string_view field_selector) const {
  auto labels = ParseLabelSelector(label_selector);
  auto fields = ParseFieldSelector(field_selector);
  if (!labels || !fields) return {};
  std::lock_guard<std::mutex> lock(impl_->mu);
  const Impl::TypeState* t = impl_->ResolveLocked(resource);
  if (t == nullptr) return {};
  return impl_->ListLocked(*t, t->type.namespaced ? std::string(ns) : "",
                           Selectors{std::move(*labels), std::move(*fields)});
}

std::vector<KubeObject> KubeApiServer::List(const kube::Resource& r, std::string_view ns,
                                            std::string_view label_selector,
                                            std::string_view field_selector) const {
  return List(NameOf(r), ns, label_selector, field_selector);
}

Status KubeApiServer::Delete(std::string_view resource, std::string_view ns,
                             std::string_view name) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::TypeState* t = impl_->ResolveLocked(resource);
  if (t == nullptr) return Status::NotFound("unknown resource " + std::string(resource));
  Reply r = impl_->DeleteLocked(*t, t->type.namespaced ? std::string(ns) : "", std::string(name),
                                json::object(), false);
  return r.ok() ? Status::Ok() : impl_->ToStatus(r);
}

Status KubeApiServer::Delete(const kube::Resource& r, std::string_view ns, std::string_view name) {
  return Delete(NameOf(r), ns, name);
}

Result<KubeObject> KubeApiServer::WaitFor(std::string_view resource, std::string_view ns,
                                          std::string_view name,
                                          const std::function<bool(const KubeObject*)>& pred,
                                          std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  std::unique_lock<std::mutex> lock(impl_->mu);
  const Impl::TypeState* t = impl_->ResolveLocked(resource);
  if (t == nullptr) return Status::NotFound("unknown resource " + std::string(resource));
  const std::pair<std::string, std::string> key{t->type.namespaced ? std::string(ns) : "",
                                                std::string(name)};
  while (true) {
    auto it = t->objects.find(key);
    const KubeObject* obj = it == t->objects.end() ? nullptr : &it->second;
    if (pred(obj)) return obj == nullptr ? KubeObject() : *obj;
    if (Clock::now() >= deadline || impl_->stopping) {
      return Status::Unavailable("timed out after " + std::to_string(timeout.count()) +
                                 " ms waiting for " + t->type.QualifiedName() + " " + key.first +
                                 "/" + key.second +
                                 "; last state: " + (obj == nullptr ? "absent" : obj->dump()));
    }
    impl_->cv.wait_until(lock, deadline);
  }
}

Result<KubeObject> KubeApiServer::WaitFor(const kube::Resource& r, std::string_view ns,
                                          std::string_view name,
                                          const std::function<bool(const KubeObject*)>& pred,
                                          std::chrono::milliseconds timeout) {
  return WaitFor(NameOf(r), ns, name, pred, timeout);
}

int64_t KubeApiServer::resource_version() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->rv;
}

size_t KubeApiServer::open_watches() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->open_watches;
}

bool KubeApiServer::WaitForWatches(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->open_watches >= n; });
}

void KubeApiServer::DropWatches(WatchEnd how) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ++impl_->drop_generation;
  impl_->drop_how = how;
  impl_->cv.notify_all();
}

void KubeApiServer::CompactHistory() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->compacted_rv = impl_->rv;
}

std::vector<KubeRequestRecord> KubeApiServer::Requests() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->requests;
}

size_t KubeApiServer::CountRequests(std::string_view method,
                                    std::string_view path_substring) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const std::string m(method);
  const std::string p(path_substring);
  return static_cast<size_t>(std::count_if(
      impl_->requests.begin(), impl_->requests.end(),
      [&](const KubeRequestRecord& r) { return RuleMatches(m, p, r.method, r.path); }));
}

void KubeApiServer::ClearRequests() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->requests.clear();
}

void KubeApiServer::FailNext(std::string_view method, std::string_view path_substring, int n,
                             int code, std::string message) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->faults.push_back(
      {std::string(method), std::string(path_substring), n, code, std::move(message)});
}

void KubeApiServer::HoldNext(std::string_view method, std::string_view path_substring, int n,
                             std::chrono::milliseconds delay, HoldPoint point) {
  if (n == 0) return;
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->holds.push_back({std::string(method), std::string(path_substring), n, delay, point});
}

void KubeApiServer::ClearHolds() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->holds.clear();
  ++impl_->hold_release;
  impl_->cv.notify_all();
}

}  // namespace fsb::testing
