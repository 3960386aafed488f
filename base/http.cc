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
};

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
  if (line.rfind("HTTP/", 0) == 0) {
    // A new status line (after a 100 Continue or a redirect): only the last response counts.
    t->response->headers.clear();
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

Result<HttpResponse> HttpClient::Do(const HttpRequest& req) {
  CurlEasyPtr handle = Acquire();
  if (!handle) return Status::ResourceExhausted("curl_easy_init failed");
  CURL* h = handle.get();
  // Clears the options of the previous request but keeps the connection and TLS session caches.
  curl_easy_reset(h);

  HttpResponse response;
  Transfer t{.body = req.body, .body_pos = 0, .response = &response};
  char errbuf[CURL_ERROR_SIZE] = {0};

  CurlSlistPtr headers;
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
  curl_easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  // Bigger transfer buffers than curl's 16 KiB / 64 KiB defaults: fewer callbacks per pack.
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L << 10);
  curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 256L << 10);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.request_timeout.count()));
  if (options_.low_speed_bytes > 0 && options_.low_speed_time.count() > 0) {
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(options_.low_speed_bytes));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.low_speed_time.count()));
  }
  if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (options_.insecure_tls) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
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

  const CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
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

}  // namespace fsb
