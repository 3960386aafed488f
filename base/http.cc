#include "base/http.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>

namespace fsb {
namespace {

// What the curl callbacks of one request work on; lives on Do's stack for the transfer.
struct Transfer {
  ByteView body;  // request body
  size_t body_pos = 0;
  HttpResponse* response = nullptr;

  // DoStream only (on_data is null for Do).
  const std::function<Status(std::string_view)>* on_data = nullptr;
  int status = 0;         // of the latest status line, to know whether to stream the body
  Status stream_error{};  // on_data's first non-OK Status
  std::stop_token stop{};
  std::chrono::steady_clock::duration idle_timeout{0};
  std::chrono::steady_clock::time_point last_data{};
  bool stopped = false;  // aborted for `stop`
  bool idle = false;     // aborted for idle_timeout
};

// A non-2xx body of a stream is kept for the error message, up to this size.
constexpr size_t kMaxStreamErrorBody = 1 << 20;

size_t ReadBody(char* buf, size_t size, size_t nitems, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t n = std::min(size * nitems, t->body.size() - t->body_pos);
  if (n > 0) std::memcpy(buf, t->body.data() + t->body_pos, n);
  t->body_pos += n;
  return n;
}

// curl rewinds the body when it resends a request on a new connection (e.g. the reused one had
// been closed by the server).
int SeekBody(void* userp, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(userp);
  if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > t->body.size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  t->body_pos = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

size_t WriteBody(char* data, size_t size, size_t nmemb, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t n = size * nmemb;
  if (t->on_data != nullptr) {
    t->last_data = std::chrono::steady_clock::now();
    if (t->status >= 200 && t->status < 300) {
      Status s = (*t->on_data)(std::string_view(data, n));
      if (!s.ok()) {
        t->stream_error = std::move(s);
        return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
      }
      return n;
    }
    if (t->response->body.size() + n > kMaxStreamErrorBody) return n;  // dropped past the cap
  }
  t->response->body.insert(t->response->body.end(), reinterpret_cast<uint8_t*>(data),
                           reinterpret_cast<uint8_t*>(data) + n);
  return n;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

size_t WriteHeader(char* data, size_t size, size_t nitems, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t n = size * nitems;
  std::string_view line(data, n);
  if (t->on_data != nullptr) t->last_data = std::chrono::steady_clock::now();
  if (line.rfind("HTTP/", 0) == 0) {
    // A new status line (after a 100 Continue or a redirect): only the last response counts.
    t->response->headers.clear();
    const size_t sp = line.find(' ');
    t->status =
        sp == std::string_view::npos ? 0 : std::atoi(std::string(line.substr(sp + 1, 3)).c_str());
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return n;  // the blank line ending the head
  std::string name(Trim(line.substr(0, colon)));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string value(Trim(line.substr(colon + 1)));
  if (name == "content-length") {
    // One allocation for the body instead of log2(size) regrowths (a 16 MiB pack would otherwise
    // be copied ~twice over). Capped: the header is the server's word, not a promise.
    const uint64_t len = std::strtoull(value.c_str(), nullptr, 10);
    t->response->body.reserve(static_cast<size_t>(std::min<uint64_t>(len, uint64_t{256} << 20)));
  }
  t->response->headers.emplace_back(std::move(name), std::move(value));
  return n;
}

// DoStream's check, about once a second even while nothing arrives: the stop token and the idle
// timeout.
int StreamProgress(void* userp, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(userp);
  if (t->stop.stop_requested()) {
    t->stopped = true;
    return 1;
  }
  if (t->idle_timeout.count() > 0 &&
      std::chrono::steady_clock::now() - t->last_data > t->idle_timeout) {
    t->idle = true;
    return 1;
  }
  return 0;
}

void SetBlob(CURL* h, CURLoption opt, const std::string& data) {
  curl_blob blob{
      .data = const_cast<char*>(data.data()), .len = data.size(), .flags = CURL_BLOB_COPY};
  curl_easy_setopt(h, opt, &blob);
}

// The request-independent options: TLS trust and client certificates.
void SetTlsOptions(CURL* h, const HttpOptions& o) {
  if (!o.ca_data.empty()) {
    SetBlob(h, CURLOPT_CAINFO_BLOB, o.ca_data);
  } else if (!o.ca_file.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, o.ca_file.c_str());
  }
  if (o.insecure_tls) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!o.client_cert_data.empty()) {
    SetBlob(h, CURLOPT_SSLCERT_BLOB, o.client_cert_data);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (!o.client_cert_file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, o.client_cert_file.c_str());
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (!o.client_key_data.Reveal().empty()) {
    SetBlob(h, CURLOPT_SSLKEY_BLOB, o.client_key_data.Reveal());
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (!o.client_key_file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLKEY, o.client_key_file.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  }
}

}  // namespace

const std::string* HttpResponse::Header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return &v;
  }
  return nullptr;
}

StatusCode CurlErrorCode(CURLcode rc) {
  switch (rc) {
    case CURLE_OK:
      return StatusCode::kOk;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return StatusCode::kInvalidArgument;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CRL_BADFILE:
      return StatusCode::kFailedPrecondition;
    case CURLE_OUT_OF_MEMORY:
      return StatusCode::kResourceExhausted;
    case CURLE_ABORTED_BY_CALLBACK:
      return StatusCode::kCancelled;
    default:
      // Resets, refused connections, timeouts, stalls (CURLE_OPERATION_TIMEDOUT), truncated
      // bodies (CURLE_PARTIAL_FILE), empty replies, TLS handshakes cut short, DNS failures: all
      // worth another attempt, and the callers bound their retries.
      return StatusCode::kUnavailable;
  }
}

CurlEasyPtr HttpClient::Acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      CurlEasyPtr h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  return CurlEasyPtr(curl_easy_init());
}

void HttpClient::Release(CurlEasyPtr h) {
  std::lock_guard lock(mu_);
  if (idle_.size() < options_.max_idle_handles) idle_.push_back(std::move(h));
}

namespace {

// Sets the options of `req` on the reset handle `h`; `t`, `headers` and `errbuf`
// (CURL_ERROR_SIZE) must outlive the transfer.
Status Prepare(CURL* h, const HttpOptions& options, const HttpRequest& req, Transfer& t,
               CurlSlistPtr& headers, char* errbuf) {
  auto add_header = [&](const std::string& line) {
    curl_slist* l = curl_slist_append(headers.get(), line.c_str());
    if (l == nullptr) return false;
    (void)headers.release();  // `l` is the same list, now one longer
    headers.reset(l);
    return true;
  };
  bool headers_ok = add_header("Expect:") && add_header("Accept:");
  for (const auto& [k, v] : req.headers) {
    // "Name;" is curl's way to send a header with an empty value.
    headers_ok = headers_ok && add_header(v.empty() ? k + ";" : k + ": " + v);
  }
  if (!headers_ok) return Status::ResourceExhausted("curl_slist_append failed");

  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_USERAGENT, options.user_agent.c_str());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  // Bigger transfer buffers than curl's 16 KiB / 64 KiB defaults: fewer callbacks per pack.
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L << 10);
  curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 256L << 10);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options.request_timeout.count()));
  if (options.low_speed_bytes > 0 && options.low_speed_time.count() > 0) {
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(options.low_speed_bytes));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options.low_speed_time.count()));
  }
  SetTlsOptions(h, options);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);

  if (req.method == "GET") {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else if (req.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else {
    if (req.method == "PUT" || !req.body.empty()) {
      // PUT semantics (a body of known length from the read callback), renamed for POST.
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
      curl_easy_setopt(h, CURLOPT_READFUNCTION, ReadBody);
      curl_easy_setopt(h, CURLOPT_READDATA, &t);
      curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, SeekBody);
      curl_easy_setopt(h, CURLOPT_SEEKDATA, &t);
    }
    if (req.method != "PUT") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  return Status::Ok();
}

}  // namespace

Result<HttpResponse> HttpClient::Do(const HttpRequest& req) { return Do(req, nullptr); }

Result<HttpResponse> HttpClient::Do(const HttpRequest& req, CURLcode* transport_error) {
  if (transport_error != nullptr) *transport_error = CURLE_OK;
  CurlEasyPtr handle = Acquire();
  if (!handle) return Status::ResourceExhausted("curl_easy_init failed");
  CURL* h = handle.get();
  // Clears the options of the previous request but keeps the connection and TLS session caches.
  curl_easy_reset(h);

  HttpResponse response;
  Transfer t;
  t.body = req.body;
  t.response = &response;
  char errbuf[CURL_ERROR_SIZE] = {0};
  CurlSlistPtr headers;
  FSB_RETURN_IF_ERROR(Prepare(h, options_, req, t, headers, errbuf));

  const CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    if (transport_error != nullptr) *transport_error = rc;
    const std::string detail = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(rc);
    // A handle whose transfer failed may hold a broken connection; curl discards those itself,
    // so the handle is still good for reuse.
    Release(std::move(handle));
    return Status(CurlErrorCode(rc), fmt::format("{} {}: {}", req.method, req.url, detail));
  }
  long code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  response.status = static_cast<int>(code);
  Release(std::move(handle));
  return response;
}

Result<HttpResponse> HttpClient::DoStream(
    const HttpRequest& req, const std::function<Status(std::string_view chunk)>& on_data,
    std::stop_token stop, const StreamOptions& stream) {
  CurlEasyPtr handle = Acquire();
  if (!handle) return Status::ResourceExhausted("curl_easy_init failed");
  CURL* h = handle.get();
  curl_easy_reset(h);

  HttpResponse response;
  Transfer t;
  t.body = req.body;
  t.response = &response;
  t.on_data = &on_data;
  t.stop = std::move(stop);
  t.idle_timeout = stream.idle_timeout;
  t.last_data = std::chrono::steady_clock::now();
  char errbuf[CURL_ERROR_SIZE] = {0};
  CurlSlistPtr headers;
  FSB_RETURN_IF_ERROR(Prepare(h, options_, req, t, headers, errbuf));
  // A stream lasts as long as the server keeps it open: no overall or low-speed limit, but the
  // idle timeout and the stop token, both checked by the progress callback.
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(stream.timeout.count()));
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 0L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 0L);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, StreamProgress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
  // Small pieces as they come: a watch event should not wait for a buffer to fill.
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 64L << 10);

  const CURLcode rc = curl_easy_perform(h);
  long code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  Release(std::move(handle));
  if (!t.stream_error.ok()) return t.stream_error;
  if (t.stopped) return Status::Cancelled(fmt::format("{} {}: cancelled", req.method, req.url));
  if (t.idle) {
    return Status::Unavailable(
        fmt::format("{} {}: no data for {} ms", req.method, req.url, stream.idle_timeout.count()));
  }
  if (rc != CURLE_OK) {
    const std::string detail = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(rc);
    return Status(CurlErrorCode(rc), fmt::format("{} {}: {}", req.method, req.url, detail));
  }
  response.status = static_cast<int>(code);
  return response;
}

}  // namespace fsb
