// kube/client.h: a thin Kubernetes API client over libcurl: get, list (all pages), watch,
// create, update (PUT with optimistic concurrency), JSON merge patch and delete of any resource,
// as nlohmann::json objects. Typed views of the objects fsb needs are in kube/objects.h.
// Safe for concurrent use: every call borrows its own connection from a pool. Every call has a
// timeout; Watch blocks until the stream ends, the handler stops it or the stop token fires.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "kube/config.h"
#include "kube/resource.h"

namespace fsb::kube {

using Object = nlohmann::json;

struct ClientOptions {
  // One ordinary request (get, list page, create, patch...). An API server answers in
  // milliseconds; 30 s rides out a busy etcd without hanging a controller.
  std::chrono::milliseconds request_timeout{30'000};
  // Server-side timeout asked for one watch request (timeoutSeconds); the client then re-watches.
  // Real API servers cap it at 30–60 min; 5 min keeps reconnects cheap and a lost stream short.
  std::chrono::seconds watch_timeout{300};
  // A watch that delivers nothing (not even a bookmark) for this long is treated as dropped.
  std::chrono::seconds watch_idle_timeout{330};
  // How often a token file (KubeConfig::token_file) is checked for a new token (one stat). A 401
  // also re-reads it at once, so a rotated token is picked up even between checks.
  std::chrono::seconds token_recheck_interval{5};
  std::string user_agent = "fsb";
};

struct ListOptions {
  std::string label_selector;  // "velero.io/pvc-uid=abc,app!=x"
  std::string field_selector;  // "spec.nodeName=node-a"
  // Page size (limit/continue); all pages are fetched. 500 as kubectl.
  int64_t page_size = 500;
};

struct ObjectList {
  std::vector<Object> items;
  std::string resource_version;  // of the list: where a watch starts
};

enum class EventType { kAdded, kModified, kDeleted, kBookmark };

struct WatchEvent {
  EventType type;
  Object object;  // for kBookmark only metadata.resourceVersion is meaningful
};

// Errors: HTTP answers become Statuses carrying the API server's Status message ("pods \"x\" not
// found"): 404 → kNotFound; 409 AlreadyExists → kAlreadyExists; 409 Conflict → kFailedPrecondition
// (IsConflict is true); 410 Gone → kFailedPrecondition (IsGone is true); 400/422 → kInvalidArgument;
// 401/403 → kPermissionDenied; 429, 5xx and transport failures → kUnavailable; other 4xx →
// kInvalidArgument; a 2xx body that is not a JSON object → kCorruption. Messages name the verb
// and resource, never the token: "<verb> <resource> <ns>/<name>: <server message> (HTTP <code>
// <reason>)", e.g. `get podvolumebackups.velero.io velero/x: podvolumebackups.velero.io "x" not
// found (HTTP 404 NotFound)`; a transport failure instead ends with curl's "GET <url>: <error>".
// IsConflict and IsGone look, on a kFailedPrecondition status, for the marks "(HTTP 409
// Conflict)" and "(HTTP 410 Gone)", which only this module writes (the 410 mark also for the
// server's reason "Expired"); they survive WithContext.
bool IsConflict(const Status& s);
bool IsGone(const Status& s);

// Requests: "Authorization: Bearer <token>" when there is a token (a 401 re-reads the token file
// and tries once more if it changed). GET and list pages are tried up to 3 times on transport
// failures, 429 and 5xx (100 ms, then 400 ms, jittered); POST, PUT, PATCH and DELETE only when
// the connection was refused (nothing was sent). Namespaced resources need a namespace for one
// object: `ns`, or for Create/Update the object's metadata.namespace; else kInvalidArgument.
class Client {
 public:
  // An HTTP client for config.server (http:// or https://, else kInvalidArgument). Reads the
  // token file now when there is one (its errors name it). Sends nothing.
  static Result<std::unique_ptr<Client>> Create(KubeConfig config, ClientOptions options = {});
  virtual ~Client() = default;

  // `ns` is ignored for cluster-scoped resources.
  virtual Result<Object> Get(const Resource& r, std::string_view ns, std::string_view name) = 0;
  // Every page, concatenated; ns "" = all namespaces.
  virtual Result<ObjectList> List(const Resource& r, std::string_view ns,
                                  const ListOptions& opts = {}) = 0;
  // POST; metadata.name or metadata.generateName must be set. Returns the stored object.
  virtual Result<Object> Create(const Resource& r, std::string_view ns, const Object& obj) = 0;
  // PUT of the whole object; metadata.resourceVersion must be the one read (else IsConflict).
  virtual Result<Object> Update(const Resource& r, std::string_view ns, const Object& obj) = 0;
  // PATCH with application/merge-patch+json (RFC 7386), on the object or a subresource.
  virtual Result<Object> MergePatch(const Resource& r, std::string_view ns, std::string_view name,
                                    const Object& patch, std::string_view subresource = {}) = 0;
  // DELETE (background propagation). kNotFound when already gone.
  virtual Status Delete(const Resource& r, std::string_view ns, std::string_view name) = 0;

  // One watch request starting after `resource_version` (with allowWatchBookmarks). Calls
  // `on_event` on the calling thread for each event, in order. Returns OK when the server ends
  // the stream (normal timeout), the handler's first non-OK Status, kCancelled when `stop` is
  // requested (checked at least once a second), an IsGone status when the version is too old
  // (HTTP 410 or an in-stream ERROR event with code 410: re-list), kUnavailable when the stream
  // breaks or stays idle past watch_idle_timeout.
  virtual Status Watch(const Resource& r, std::string_view ns, const ListOptions& opts,
                       const std::string& resource_version,
                       const std::function<Status(const WatchEvent&)>& on_event,
                       std::stop_token stop) = 0;
};

// Read-modify-write with optimistic concurrency: GET, `mutate` (which may return non-OK to give
// up; its Status is returned), PUT; on a conflict, re-read and try again, up to `attempts` times
// with a short jittered pause. Returns the stored object.
Result<Object> UpdateWithRetry(Client& client, const Resource& r, std::string_view ns,
                               std::string_view name,
                               const std::function<Status(Object&)>& mutate, int attempts = 10);

}  // namespace fsb::kube
