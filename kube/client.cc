#include "kube/client.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "base/http.h"
#include "base/log.h"
#include "base/secret.h"
#include "kube/internal/api_error.h"
#include "kube/internal/util.h"
#include "kube/internal/watch_decoder.h"

namespace fsb::kube {
namespace {

using SteadyClock = std::chrono::steady_clock;

// A uniformly random duration in [d/2, d]: retries of many clients spread out.
std::chrono::milliseconds Jitter(std::chrono::milliseconds d) {
  thread_local std::minstd_rand rng(std::random_device{}());
  if (d.count() <= 1) return d;
  std::uniform_int_distribution<int64_t> dist(d.count() / 2, d.count());
  return std::chrono::milliseconds(dist(rng));
}

// The bearer token: fixed, or from a file that is re-read when it changes (a projected
// service-account token is rewritten about hourly, through a symlink swap). The file is looked at
// (one stat) at most every `recheck`, and at once after a 401. Safe for concurrent use.
class TokenSource {
 public:
  TokenSource(Secret<std::string> token, std::string file, std::chrono::seconds recheck)
      : file_(std::move(file)), recheck_(recheck), token_(std::move(token)) {}

  // Reads the file the first time; the Status names the file.
  Status Init() {
    if (file_.empty()) return Status::Ok();
    std::lock_guard lock(mu_);
    return ReadLocked();
  }

  bool has_file() const { return !file_.empty(); }

  Secret<std::string> Current() {
    std::lock_guard lock(mu_);
    if (!file_.empty() && SteadyClock::now() >= next_check_) {
      if (Changed()) ReloadLocked();
      next_check_ = SteadyClock::now() + recheck_;
    }
    return token_;
  }

  // After a 401: re-reads the file now. True when the token is now different from `used`.
  bool Refresh(const Secret<std::string>& used) {
    if (file_.empty()) return false;
    std::lock_guard lock(mu_);
    ReloadLocked();
    next_check_ = SteadyClock::now() + recheck_;
    return token_.Reveal() != used.Reveal();
  }

 private:
  struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    int64_t mtime_ns = 0;
    off_t size = 0;
    bool operator==(const FileId&) const = default;
  };

  static bool StatFile(const std::string& path, FileId* id) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return false;
    *id = FileId{st.st_dev, st.st_ino,
                 int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec, st.st_size};
    return true;
  }

  bool Changed() {
    FileId id;
    return StatFile(file_, &id) && !(id == id_);
  }

  Status ReadLocked() {
    FileId id;
    const bool have_id = StatFile(file_, &id);
    Result<std::string> text = internal::ReadSmallFile(file_, "token file", 1 << 20);
    if (!text.ok()) return text.status();
    std::string token = internal::TrimSpace(std::move(*text));
    if (token.empty()) return Status::InvalidArgument(fmt::format("token file {}: empty", file_));
    token_ = Secret<std::string>(std::move(token));
    if (have_id) id_ = id;
    return Status::Ok();
  }

  // A failed re-read keeps the old token: it may still be valid, and the next request's 401 says
  // when it is not.
  void ReloadLocked() {
    Status s = ReadLocked();
    if (!s.ok()) {
      GetLogger("kube")->warn("token file re-read failed path={} err=\"{}\"", file_, s.ToString());
    }
  }

  const std::string file_;
  const std::chrono::seconds recheck_;
  std::mutex mu_;
  Secret<std::string> token_;           // guarded by mu_
  FileId id_;                           // guarded by mu_
  SteadyClock::time_point next_check_;  // guarded by mu_
};

// "pods velero/x", "nodes n1", "pods velero" (a list), "pods" (all namespaces).
std::string What(const Resource& r, std::string_view ns, std::string_view name) {
  std::string out = r.QualifiedName();
  if (r.namespaced && !ns.empty()) {
    out += " ";
    out += ns;
    if (!name.empty()) {
      out += "/";
      out += name;
    }
  } else if (!name.empty()) {
    out += " ";
    out += name;
  }
  return out;
}

std::string MetaString(const Object& obj, const char* key) {
  if (!obj.is_object()) return {};
  auto meta = obj.find("metadata");
  if (meta == obj.end() || !meta->is_object()) return {};
  auto it = meta->find(key);
  if (it == meta->end() || !it->is_string()) return {};
  return it->get<std::string>();
}

// Items of a list answer carry no kind or apiVersion; fill them in, as client-go does.
void SetTypeMeta(const Resource& r, Object& obj) {
  if (!obj.is_object()) return;
  if (!obj.contains("kind")) obj["kind"] = std::string(r.kind);
  if (!obj.contains("apiVersion")) obj["apiVersion"] = r.ApiVersion();
}

// One query string from key/value pairs, percent-encoded; empty values are left out.
std::string Query(std::initializer_list<std::pair<std::string_view, std::string>> params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (v.empty()) continue;
    q += q.empty() ? "?" : "&";
    q += internal::PercentEncode(k);
    q += "=";
    q += internal::PercentEncode(v);
  }
  return q;
}

class HttpKubeClient final : public Client {
 public:
  HttpKubeClient(KubeConfig config, ClientOptions options, std::unique_ptr<HttpClient> http)
      : server_(std::move(config.server)),
        options_(std::move(options)),
        http_(std::move(http)),
        token_(std::move(config.token), std::move(config.token_file),
               options_.token_recheck_interval),
        log_(GetLogger("kube")) {
    while (!server_.empty() && server_.back() == '/') server_.pop_back();
  }

  Status Init() { return token_.Init(); }

  Result<Object> Get(const Resource& r, std::string_view ns, std::string_view name) override {
    const std::string what = What(r, ns, name);
    FSB_RETURN_IF_ERROR(CheckTarget(r, ns, name, "get", what));
    FSB_ASSIGN_OR_RETURN(HttpResponse resp,
                         Send("GET", r.Path(ns, name), {}, {}, /*idempotent=*/true, "get", what));
    if (resp.status != 200) return internal::StatusFromHttp("get", what, resp.status, Body(resp));
    FSB_ASSIGN_OR_RETURN(Object obj, ParseObject(resp, "get", what));
    SetTypeMeta(r, obj);
    return obj;
  }

  Result<ObjectList> List(const Resource& r, std::string_view ns,
                          const ListOptions& opts) override {
    bool continue_expired = false;
    Result<ObjectList> list = ListOnce(r, ns, opts, &continue_expired);
    if (continue_expired) {
      // The continue token expired between pages (etcd compacted): start over, once.
      log_->info("list restarted after expired continue token resource={}", r.QualifiedName());
      list = ListOnce(r, ns, opts, &continue_expired);
    }
    return list;
  }

  Result<Object> Create(const Resource& r, std::string_view ns, const Object& obj) override {
    const std::string name = MetaString(obj, "name");
    const std::string generate_name = MetaString(obj, "generateName");
    std::string use_ns = NamespaceFor(r, ns, obj);
    const std::string what = What(r, use_ns, name.empty() ? generate_name + "*" : name);
    if (name.empty() && generate_name.empty()) {
      return Status::InvalidArgument(
          fmt::format("create {}: metadata.name or metadata.generateName must be set", what));
    }
    if (r.namespaced && use_ns.empty()) {
      return Status::InvalidArgument(fmt::format("create {}: no namespace", what));
    }
    FSB_ASSIGN_OR_RETURN(HttpResponse resp, Send("POST", r.Path(use_ns), obj.dump(),
                                                 "application/json", false, "create", what));
    if (resp.status != 200 && resp.status != 201 && resp.status != 202) {
      return internal::StatusFromHttp("create", what, resp.status, Body(resp));
    }
    FSB_ASSIGN_OR_RETURN(Object out, ParseObject(resp, "create", what));
    SetTypeMeta(r, out);
    return out;
  }

  Result<Object> Update(const Resource& r, std::string_view ns, const Object& obj) override {
    const std::string name = MetaString(obj, "name");
    const std::string use_ns = NamespaceFor(r, ns, obj);
    const std::string what = What(r, use_ns, name);
    FSB_RETURN_IF_ERROR(CheckTarget(r, use_ns, name, "update", what));
    FSB_ASSIGN_OR_RETURN(HttpResponse resp, Send("PUT", r.Path(use_ns, name), obj.dump(),
                                                 "application/json", false, "update", what));
    if (resp.status != 200 && resp.status != 201) {
      return internal::StatusFromHttp("update", what, resp.status, Body(resp));
    }
    FSB_ASSIGN_OR_RETURN(Object out, ParseObject(resp, "update", what));
    SetTypeMeta(r, out);
    return out;
  }

  Result<Object> MergePatch(const Resource& r, std::string_view ns, std::string_view name,
                            const Object& patch, std::string_view subresource) override {
    std::string what = What(r, ns, name);
    if (!subresource.empty()) what += fmt::format(" ({})", subresource);
    FSB_RETURN_IF_ERROR(CheckTarget(r, ns, name, "patch", what));
    FSB_ASSIGN_OR_RETURN(HttpResponse resp,
                         Send("PATCH", r.Path(ns, name, subresource), patch.dump(),
                              "application/merge-patch+json", false, "patch", what));
    if (resp.status != 200 && resp.status != 201) {
      return internal::StatusFromHttp("patch", what, resp.status, Body(resp));
    }
    FSB_ASSIGN_OR_RETURN(Object out, ParseObject(resp, "patch", what));
    SetTypeMeta(r, out);
    return out;
  }

  Status Delete(const Resource& r, std::string_view ns, std::string_view name) override {
    const std::string what = What(r, ns, name);
    FSB_RETURN_IF_ERROR(CheckTarget(r, ns, name, "delete", what));
    // kubectl's body: dependents are collected by the garbage collector afterwards.
    static const std::string kBody = R"({"propagationPolicy":"Background"})";
    FSB_ASSIGN_OR_RETURN(HttpResponse resp, Send("DELETE", r.Path(ns, name), kBody,
                                                 "application/json", false, "delete", what));
    if (resp.status != 200 && resp.status != 202) {
      return internal::StatusFromHttp("delete", what, resp.status, Body(resp));
    }
    return Status::Ok();
  }

  Status Watch(const Resource& r, std::string_view ns, const ListOptions& opts,
               const std::string& resource_version,
               const std::function<Status(const WatchEvent&)>& on_event,
               std::stop_token stop) override {
    const std::string what = What(r, ns, {});
    const std::string path =
        r.Path(ns) + Query({{"watch", "true"},
                            {"allowWatchBookmarks", "true"},
                            {"resourceVersion", resource_version},
                            {"timeoutSeconds", std::to_string(options_.watch_timeout.count())},
                            {"labelSelector", opts.label_selector},
                            {"fieldSelector", opts.field_selector}});
    HttpClient::StreamOptions stream;
    stream.idle_timeout = options_.watch_idle_timeout;
    // Backstop only: the server ends the stream after timeoutSeconds.
    stream.timeout = options_.watch_timeout + options_.watch_idle_timeout;

    bool refreshed = false;
    for (;;) {
      if (stop.stop_requested()) return Status::Cancelled(fmt::format("watch {}: stopped", what));
      internal::WatchDecoder decoder;
      const internal::WatchDecoder::Handler handle = [&](internal::RawWatchEvent&& raw) {
        return HandleEvent(r, what, std::move(raw), on_event);
      };
      const Secret<std::string> token = token_.Current();
      HttpRequest req{
          .method = "GET", .url = server_ + path, .headers = Headers(token, {}), .body = {}};
      log_->debug("kube watch start path={} rv={}", path, resource_version);
      Status stream_status;  // the decoder's or the handler's first non-OK Status
      Result<HttpResponse> resp = http_->DoStream(
          req,
          [&](std::string_view chunk) {
            stream_status = decoder.Feed(chunk, handle);
            return stream_status;
          },
          stop, stream);
      if (!stream_status.ok()) return stream_status;
      if (!resp.ok()) {
        if (resp.status().code() == StatusCode::kCancelled && stop.stop_requested()) {
          return Status::Cancelled(fmt::format("watch {}: stopped", what));
        }
        return resp.status().WithContext("watch " + what);
      }
      if (resp->status == 401 && !refreshed && token_.Refresh(token)) {
        refreshed = true;
        continue;
      }
      if (resp->status < 200 || resp->status >= 300) {
        return internal::StatusFromHttp("watch", what, resp->status, Body(*resp));
      }
      log_->debug("kube watch ended path={}", path);
      return decoder.Finish(handle);
    }
  }

 private:
  static std::string_view Body(const HttpResponse& resp) { return AsString(resp.body); }

  // Namespaced resources need a namespace for one object; `ns` wins over the object's own.
  static std::string NamespaceFor(const Resource& r, std::string_view ns, const Object& obj) {
    if (!r.namespaced) return {};
    if (!ns.empty()) return std::string(ns);
    return MetaString(obj, "namespace");
  }

  static Status CheckTarget(const Resource& r, std::string_view ns, std::string_view name,
                            std::string_view verb, const std::string& what) {
    if (name.empty()) return Status::InvalidArgument(fmt::format("{} {}: no name", verb, what));
    if (r.namespaced && ns.empty()) {
      return Status::InvalidArgument(fmt::format("{} {}: no namespace", verb, what));
    }
    return Status::Ok();
  }

  static Result<Object> ParseObject(const HttpResponse& resp, std::string_view verb,
                                    const std::string& what) {
    Object obj = Object::parse(Body(resp), nullptr, /*allow_exceptions=*/false);
    if (obj.is_discarded() || !obj.is_object()) {
      return Status::Corruption(
          fmt::format("{} {}: malformed JSON in the HTTP {} answer", verb, what, resp.status));
    }
    return obj;
  }

  HttpHeaders Headers(const Secret<std::string>& token, std::string_view content_type) const {
    HttpHeaders h;
    h.emplace_back("Accept", "application/json");
    if (!content_type.empty()) h.emplace_back("Content-Type", std::string(content_type));
    if (!token.Reveal().empty()) h.emplace_back("Authorization", "Bearer " + token.Reveal());
    return h;
  }

  // One request with the client's retries: GETs again after transport failures, 429 and 5xx
  // (3 attempts in all); any request again when the connection was refused (nothing was sent);
  // any request once more after a 401 when the token file holds a new token. Returns every HTTP
  // answer; a Status only when none came.
  Result<HttpResponse> Send(const std::string& method, const std::string& path_query,
                            std::string_view body, std::string_view content_type, bool idempotent,
                            std::string_view verb, const std::string& what) {
    constexpr int kAttempts = 3;
    bool refreshed = false;
    for (int attempt = 1;; ++attempt) {
      const Secret<std::string> token = token_.Current();
      HttpRequest req{.method = method,
                      .url = server_ + path_query,
                      .headers = Headers(token, content_type),
                      .body = AsBytes(body)};
      CURLcode curl_rc = CURLE_OK;
      Result<HttpResponse> resp = http_->Do(req, &curl_rc);
      std::string retry_reason;
      if (!resp.ok()) {
        const bool retriable = resp.status().code() == StatusCode::kUnavailable &&
                               (idempotent || curl_rc == CURLE_COULDNT_CONNECT);
        if (!retriable || attempt >= kAttempts) {
          return resp.status().WithContext(fmt::format("{} {}", verb, what));
        }
        retry_reason = resp.status().message();
      } else {
        log_->debug("kube request method={} path={} status={}", method, path_query, resp->status);
        if (resp->status == 401 && !refreshed && token_.Refresh(token)) {
          refreshed = true;
          --attempt;  // the token changed under us: not a failure of the server
          continue;
        }
        const bool overloaded = resp->status == 429 || (resp->status >= 500 && resp->status < 600);
        if (!idempotent || !overloaded || attempt >= kAttempts) return resp;
        retry_reason = fmt::format("HTTP {}", resp->status);
      }
      const auto delay = Jitter(std::chrono::milliseconds(100 << (2 * (attempt - 1))));
      log_->debug("kube request retry method={} path={} attempt={} delay_ms={} err=\"{}\"", method,
                  path_query, attempt, delay.count(), retry_reason);
      std::this_thread::sleep_for(delay);
    }
  }

  // All pages; `*continue_expired` tells whether a page after the first was 410 Gone.
  Result<ObjectList> ListOnce(const Resource& r, std::string_view ns, const ListOptions& opts,
                              bool* continue_expired) {
    *continue_expired = false;
    const std::string what = What(r, ns, {});
    ObjectList out;
    std::string cont;
    for (int page = 0;; ++page) {
      const std::string path =
          r.Path(ns) + Query({{"labelSelector", opts.label_selector},
                              {"fieldSelector", opts.field_selector},
                              {"limit", opts.page_size > 0 ? std::to_string(opts.page_size) : ""},
                              {"continue", cont}});
      FSB_ASSIGN_OR_RETURN(HttpResponse resp, Send("GET", path, {}, {}, true, "list", what));
      if (resp.status != 200) {
        Status s = internal::StatusFromHttp("list", what, resp.status, Body(resp));
        *continue_expired = page > 0 && IsGone(s);
        return s;
      }
      FSB_ASSIGN_OR_RETURN(Object body, ParseObject(resp, "list", what));
      auto items = body.find("items");
      if (items != body.end() && !items->is_null()) {
        if (!items->is_array()) {
          return Status::Corruption(fmt::format("list {}: items is not a list", what));
        }
        for (Object& item : *items) {
          if (!item.is_object()) {
            return Status::Corruption(fmt::format("list {}: an item is not an object", what));
          }
          SetTypeMeta(r, item);
          out.items.push_back(std::move(item));
        }
      }
      out.resource_version = MetaString(body, "resourceVersion");
      cont = MetaString(body, "continue");
      if (cont.empty()) return out;
    }
  }

  Status HandleEvent(const Resource& r, const std::string& what, internal::RawWatchEvent&& raw,
                     const std::function<Status(const WatchEvent&)>& on_event) {
    WatchEvent ev;
    if (raw.type == "ADDED") {
      ev.type = EventType::kAdded;
    } else if (raw.type == "MODIFIED") {
      ev.type = EventType::kModified;
    } else if (raw.type == "DELETED") {
      ev.type = EventType::kDeleted;
    } else if (raw.type == "BOOKMARK") {
      ev.type = EventType::kBookmark;
    } else if (raw.type == "ERROR") {
      // Usually 410 Expired ("too old resource version"): IsGone, the caller re-lists.
      return internal::StatusFromApiStatus("watch", what, raw.object);
    } else {
      log_->debug("kube watch event of unknown type ignored type={}", raw.type);
      return Status::Ok();
    }
    ev.object = std::move(raw.object);
    if (ev.type != EventType::kBookmark) SetTypeMeta(r, ev.object);
    return on_event(ev);
  }

  std::string server_;  // without a trailing '/'
  const ClientOptions options_;
  const std::unique_ptr<HttpClient> http_;
  TokenSource token_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

bool IsConflict(const Status& s) {
  return s.code() == StatusCode::kFailedPrecondition &&
         s.message().find(internal::kConflictMark) != std::string::npos;
}

bool IsGone(const Status& s) {
  return s.code() == StatusCode::kFailedPrecondition &&
         s.message().find(internal::kGoneMark) != std::string::npos;
}

Result<std::unique_ptr<Client>> Client::Create(KubeConfig config, ClientOptions options) {
  if (config.server.rfind("https://", 0) != 0 && config.server.rfind("http://", 0) != 0) {
    return Status::InvalidArgument(
        fmt::format("kube client: server \"{}\" is not an http(s):// URL", config.server));
  }
  HttpOptions http;
  http.ca_file = config.ca_file;
  http.ca_data = config.ca_data;
  http.insecure_tls = config.insecure_skip_tls_verify;
  http.client_cert_file = config.client_cert_file;
  http.client_key_file = config.client_key_file;
  http.client_cert_data = config.client_cert_data;
  http.client_key_data = config.client_key_data;
  http.request_timeout = options.request_timeout;
  http.user_agent = options.user_agent;
  auto client = std::make_unique<HttpKubeClient>(std::move(config), std::move(options),
                                                 std::make_unique<HttpClient>(std::move(http)));
  FSB_RETURN_IF_ERROR(client->Init().WithContext("kube client"));
  return std::unique_ptr<Client>(std::move(client));
}

Result<Object> UpdateWithRetry(Client& client, const Resource& r, std::string_view ns,
                               std::string_view name, const std::function<Status(Object&)>& mutate,
                               int attempts) {
  for (int attempt = 1;; ++attempt) {
    FSB_ASSIGN_OR_RETURN(Object obj, client.Get(r, ns, name));
    FSB_RETURN_IF_ERROR(mutate(obj));
    Result<Object> updated = client.Update(r, ns, obj);
    if (updated.ok() || !IsConflict(updated.status()) || attempt >= attempts) return updated;
    GetLogger("kube")->debug("update conflict, retrying resource={} ns={} name={} attempt={}",
                             r.QualifiedName(), ns, name, attempt);
    std::this_thread::sleep_for(Jitter(std::chrono::milliseconds(10 * attempt)));
  }
}

}  // namespace fsb::kube
