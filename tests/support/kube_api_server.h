// tests/support/kube_api_server.h: an in-process Kubernetes API server for tests, good enough for
// the real kubectl 1.32 and for fsb's own kube::Client (shared/notes/real-parts.md §2 lists what
// kubectl sends and needs). It serves generic JSON objects of any registered resource from memory:
//
//   GET /version, discovery (/api, /apis: aggregated v2 when the client asks for it, else legacy;
//   /api/v1 and /apis/<group>/<version> resource lists), /openapi/v3 and one document per
//   group-version (so kubectl create/apply validate on the server), /openapi/v2 → 404;
//   create (POST, generateName), get, list (label and field selectors, limit/continue),
//   update (PUT, optimistic concurrency), patch (merge, strategic-as-merge, JSON patch) on the
//   object and on /status, delete (finalizers honoured), dryRun=All, and watch (chunked JSON
//   events from a bounded history, bookmarks, timeoutSeconds, 410 Expired).
//
// Listens on 127.0.0.1 with a free port, plain http or https (a certificate made per server with
// the openssl command), with an optional bearer token. Errors are metav1.Status objects with the
// real server's wording. Tests can also change objects directly (as a controller would: same
// resourceVersion counter, same watch events), inject faults, hold responses, end watches and
// read a log of every request.
//
// Not modelled: admission, defaulting, schemas (only metadata is validated), server-side apply,
// field managers, garbage collection (ownerReferences), deletecollection, protobuf, table output
// (kubectl prints lists itself), a real status subresource (status patches change the same
// object, like CRDs without `subresources.status`), authorization (any valid token may do all).
// Simplified: a strategic merge patch is applied as a JSON merge patch (lists are replaced, `$`
// directives dropped); list pages after the first show objects as they are now, not a snapshot
// (all pages carry the first page's resourceVersion); a watch from a future resourceVersion is
// not refused. A watch whose client went away keeps its server thread until its next write, its
// timeoutSeconds, DropWatches or the destructor.
//
// Start() ignores SIGPIPE for the whole process (httplib and OpenSSL write without MSG_NOSIGNAL).
//
// Thread-safety: every public method is safe for concurrent use, including while requests are
// served. The destructor ends every open watch and joins the server's threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "kube/resource.h"

namespace fsb::testing {

using KubeObject = nlohmann::json;

// One kind of object the server serves, as discovery describes it.
struct KubeResourceType {
  std::string group;  // "" for the core group
  std::string version = "v1";
  std::string plural;    // "podvolumebackups"
  std::string singular;  // "podvolumebackup"
  std::string kind;      // "PodVolumeBackup"
  bool namespaced = true;
  std::vector<std::string> short_names;

  // "velero.io/v1" or "v1".
  std::string ApiVersion() const;
  // "podvolumebackups.velero.io" or "pods": how error messages name it.
  std::string QualifiedName() const;
};

// The default set: core v1 pods, persistentvolumeclaims, persistentvolumes, secrets, configmaps,
// namespaces, nodes, events, serviceaccounts; apps/v1 daemonsets, deployments; storage.k8s.io/v1
// csidrivers; rbac.authorization.k8s.io/v1 clusterroles, clusterrolebindings, roles,
// rolebindings; apiextensions.k8s.io/v1 customresourcedefinitions; velero.io/v1
// podvolumebackups, podvolumerestores, backuprepositories, backupstoragelocations, backups,
// restores, schedules, deletebackuprequests.
std::vector<KubeResourceType> DefaultKubeResourceTypes();

struct KubeApiServerOptions {
  // Register DefaultKubeResourceTypes() at start; more can be added with Register().
  bool register_defaults = true;
  // Non-empty: every request must carry "Authorization: Bearer <token>", else 401 Unauthorized.
  // kubectl sends a token only over https, so test it with tls.
  std::string bearer_token;
  // Serve https with a certificate for 127.0.0.1 and localhost signed by a CA made for this
  // server (ca_file()); needs the openssl command.
  bool tls = false;
  // How often a watch with allowWatchBookmarks=true gets a BOOKMARK. Real servers: about 1 min;
  // 1 s lets a test see one without waiting long.
  std::chrono::milliseconds bookmark_interval{1000};
  // Change events kept for watches that resume from a resourceVersion; a watch from an older one
  // gets 410 Expired. Real servers keep a few minutes' worth (etcd compaction every 5 min).
  size_t history_size = 10'000;
  // How a watch from a too-old resourceVersion is refused: HTTP 410 (Gone) when true, else
  // HTTP 200 and one in-stream ERROR event with a 410 Expired Status, then the end of the stream
  // (real servers do either, depending on where the version is found too old).
  bool expired_as_http_410 = false;
  // Aggregated discovery (apidiscovery.k8s.io/v2) for clients that ask for it; when false, /api
  // and /apis always answer the legacy APIVersions / APIGroupList.
  bool aggregated_discovery = true;
  // Server worker threads. Each open watch and each kept-alive idle connection holds one, so this
  // bounds concurrent watches plus connections; requests beyond it queue.
  int threads = 32;
  // An idle kept-alive connection is closed after this long (the destructor closes them at once).
  std::chrono::seconds keep_alive_timeout{2};
  // A GET of a namespace that has no Namespace object answers an Active one (not listed, no
  // watch events), as if every namespace existed: kubectl looks its namespace up after a 404 and
  // would otherwise report `namespaces "velero" not found` instead of the missing object.
  bool implicit_namespaces = true;
  // The first resourceVersion handed out is start_resource_version + 1.
  int64_t start_resource_version = 100;
};

// One request as the server saw it, in arrival order.
struct KubeRequestRecord {
  std::string method;        // "GET", "PATCH", ...
  std::string path;          // "/apis/velero.io/v1/namespaces/velero/podvolumebackups/pvb-1"
  std::string query;         // raw, undecoded, without '?': "limit=500&labelSelector=a%3Db"
  std::string content_type;  // of the request body
  std::string accept;
  std::string user_agent;
  std::string body;
  int status = 0;  // the HTTP status answered (200 for a watch once it streams)
};

// How DropWatches ends the open watch streams.
enum class WatchEnd {
  kClean,  // the terminating chunk: a normal end, as on timeoutSeconds (kubectl exits 0)
  kAbort,  // the connection closes mid-stream, without the terminating chunk
};

// Where HoldNext delays a request.
enum class HoldPoint {
  kBeforeHandling,  // nothing is done until the delay is over
  kAfterHandling,   // the request takes effect at once; its answer waits
};

class KubeApiServer {
 public:
  // Starts listening; the server answers as soon as this returns. nullptr with *why (may be
  // null) when it cannot: no free port, or with tls, no openssl command or a failed certificate.
  static std::unique_ptr<KubeApiServer> Start(const KubeApiServerOptions& options = {},
                                              std::string* why = nullptr);
  ~KubeApiServer();
  KubeApiServer(const KubeApiServer&) = delete;
  KubeApiServer& operator=(const KubeApiServer&) = delete;

  uint16_t port() const;
  // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT".
  std::string url() const;
  // The PEM file of the CA that signed the server's certificate; empty without tls.
  std::string ca_file() const;

  // Writes a kubeconfig (context "fake", cluster "fake", user "tester") pointing at this server,
  // with `ns` as the context's namespace (omitted when empty), `token` as the user's token
  // (omitted when empty) and, with tls, certificate-authority: ca_file().
  void WriteKubeconfig(const std::filesystem::path& path, std::string_view ns = "velero",
                       std::string_view token = "") const;

  // Adds or replaces a resource type (matched by group and plural).
  void Register(const KubeResourceType& type);
  // Changes the required bearer token; empty turns the check off. Takes effect for the next
  // request.
  void SetBearerToken(std::string token);
  // Switches how a too-old watch is refused (see KubeApiServerOptions::expired_as_http_410).
  void SetExpiredAsHttp410(bool http_410);

  // ---- Objects, directly (no HTTP). `resource` names a registered type as kubectl would: plural
  // ("podvolumebackups"), plural.group ("podvolumebackups.velero.io"), singular, kind or short
  // name; the overloads take fsb's own kube::Resource. Each change takes the next
  // resourceVersion and emits the watch event an HTTP change would.

  // Creates the object or replaces the stored one (whatever its resourceVersion: a forced
  // write). apiVersion and kind are filled in; metadata.namespace is required for namespaced
  // types; uid, creationTimestamp and generation are kept from the stored object. Returns the
  // stored object. kNotFound for an unknown resource, kInvalidArgument for a bad object.
  Result<KubeObject> Put(std::string_view resource, KubeObject obj);
  Result<KubeObject> Put(const kube::Resource& r, KubeObject obj);
  // kNotFound when absent. `ns` is ignored for cluster-scoped types.
  Result<KubeObject> Get(std::string_view resource, std::string_view ns,
                         std::string_view name) const;
  Result<KubeObject> Get(const kube::Resource& r, std::string_view ns, std::string_view name) const;
  // Objects of the type in `ns` ("" = all), filtered by selectors in the API's syntax, sorted by
  // namespace and name. Empty for an unknown resource or a malformed selector.
  std::vector<KubeObject> List(std::string_view resource, std::string_view ns = "",
                               std::string_view label_selector = "",
                               std::string_view field_selector = "") const;
  std::vector<KubeObject> List(const kube::Resource& r, std::string_view ns = "",
                               std::string_view label_selector = "",
                               std::string_view field_selector = "") const;
  // As an HTTP DELETE: with finalizers, only sets deletionTimestamp (the object goes once an
  // update empties them); else removes it. kNotFound when absent.
  Status Delete(std::string_view resource, std::string_view ns, std::string_view name);
  Status Delete(const kube::Resource& r, std::string_view ns, std::string_view name);

  // Blocks until `pred` holds for the object (nullptr while it does not exist), checked now and
  // after each change, or until `timeout`. Returns the object (a null json when `pred` accepted
  // absence); kUnavailable after the timeout, naming the object and its last state. `pred` runs
  // on the calling thread, with the server's lock held: keep it short and do not call back in.
  Result<KubeObject> WaitFor(std::string_view resource, std::string_view ns, std::string_view name,
                             const std::function<bool(const KubeObject*)>& pred,
                             std::chrono::milliseconds timeout);
  Result<KubeObject> WaitFor(const kube::Resource& r, std::string_view ns, std::string_view name,
                             const std::function<bool(const KubeObject*)>& pred,
                             std::chrono::milliseconds timeout);

  // The last resourceVersion handed out.
  int64_t resource_version() const;

  // ---- Watches.
  size_t open_watches() const;
  // Blocks until at least `n` watch streams are open (and past their initial events), or until
  // `timeout`; false then. Lets a test change objects only once a client is watching.
  bool WaitForWatches(size_t n, std::chrono::milliseconds timeout) const;
  // Ends every open watch stream now (new ones can still start).
  void DropWatches(WatchEnd how = WatchEnd::kClean);
  // Forgets the history up to now, as an etcd compaction: a watch from a resourceVersion older
  // than resource_version() gets 410 Expired ("" and "0" still work, and so does the current
  // one, which a fresh list returns). Open watches go on.
  void CompactHistory();

  // ---- Requests and faults. A rule matches a request when `method` is empty or equal and
  // `path_substring` is empty or found in the path (query excluded).

  std::vector<KubeRequestRecord> Requests() const;
  // Requests matching method and path substring.
  size_t CountRequests(std::string_view method, std::string_view path_substring) const;
  void ClearRequests();
  // The next `n` matching requests get HTTP `code` with a metav1.Status body (reason from the
  // code: 409 Conflict, 500 InternalError, 503 ServiceUnavailable, 429 TooManyRequests, ...;
  // `message` or a default) and change nothing.
  void FailNext(std::string_view method, std::string_view path_substring, int n, int code,
                std::string message = "");
  // The next `n` matching requests (n < 0: all, until ClearHolds) wait `delay` (the destructor
  // cuts the wait short): before they are served, or with kAfterHandling after the change is made
  // and before the answer is sent (a client that times out then does not know it succeeded).
  void HoldNext(std::string_view method, std::string_view path_substring, int n,
                std::chrono::milliseconds delay, HoldPoint point = HoldPoint::kBeforeHandling);
  // Forgets every hold rule and releases the requests being held now.
  void ClearHolds();

 private:
  struct Impl;
  explicit KubeApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fsb::testing
