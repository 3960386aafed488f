// base/http.h: a small blocking HTTP/1.1 client on libcurl: RAII curl handles, one request/response
// struct, and HttpClient, which keeps a pool of easy handles so that consecutive requests reuse
// their connections (and TLS sessions). HttpClient is safe for concurrent use: each call borrows
// its own easy handle from the pool for the duration of the call. curl_global_init must have run
// (once, in main, before any thread) before the first request.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/secret.h"
#include "base/status.h"

namespace fsb {

struct CurlEasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
using CurlEasyPtr = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlSlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlSlistPtr = std::unique_ptr<curl_slist, CurlSlistDeleter>;

// Header names and values in the order they are sent or were received.
using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, PUT, POST, DELETE
  std::string url;             // scheme://host[:port]/path?query, already percent-encoded
  // Sent as given, after curl's own (Content-Length; a given Host replaces curl's). curl's
  // "Expect: 100-continue" is never sent, and neither is Accept-Encoding.
  HttpHeaders headers;
  // The body for PUT/POST, borrowed for the call (a rewind on a retried connection resends it).
  ByteView body;
};

struct HttpResponse {
  int status = 0;       // the final status (a 100 Continue is skipped)
  HttpHeaders headers;  // names lowercased, values trimmed, in the order received
  Bytes body;           // empty for HEAD
  // The first value of the header `lower_name`, or nullptr.
  const std::string* Header(std::string_view lower_name) const;
};

struct HttpOptions {
  // PEM file of CA certificates to trust instead of the system's (restic's --cacert).
  std::string ca_file;
  // PEM CA certificates as data (kubeconfig's certificate-authority-data); wins over ca_file.
  std::string ca_data;
  // TLS client certificate and its private key, each a PEM file or PEM data (data wins). Both or
  // neither (Kubernetes client-certificate authentication).
  std::string client_cert_file;
  std::string client_key_file;
  std::string client_cert_data;
  Secret<std::string> client_key_data;
  // Skip TLS certificate and host name verification (restic's --insecure-tls). Testing only.
  bool insecure_tls = false;
  // Connection set-up, TCP and TLS. A healthy object store answers in milliseconds; 10 s rides out
  // a SYN retransmit (1 s, 3 s) without hanging on a black-holed address.
  std::chrono::milliseconds connect_timeout{10'000};
  // Backstop for one whole request. Transfers that make progress are not otherwise limited, so
  // this is sized for a 128 MiB pack at ~250 KiB/s.
  std::chrono::milliseconds request_timeout{10 * 60'000};
  // A transfer slower than low_speed_bytes per second for low_speed_time is aborted as stalled
  // (kUnavailable), also while waiting for the response. Zero disables the check.
  uint64_t low_speed_bytes = 1024;
  std::chrono::seconds low_speed_time{30};
  // Idle easy handles kept for reuse (each keeps its open connections). More concurrent callers
  // than this still work; the surplus handles are closed after use.
  size_t max_idle_handles = 16;
  std::string user_agent = "fsb";
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options) : options_(std::move(options)) {}
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `req` and reads the whole response; blocks (bounded by the timeouts in HttpOptions).
  // Every HTTP status, including 4xx and 5xx, is a response. A Status is returned only when no
  // complete response arrived: kUnavailable for transient transport failures (connection refused
  // or reset, timeouts, stalled transfers, a truncated body, DNS), kFailedPrecondition for TLS
  // verification and CA file problems, kInvalidArgument for a malformed URL, kResourceExhausted
  // when curl runs out of memory. Messages name the method and URL, never header values.
  Result<HttpResponse> Do(const HttpRequest& req);
  // The same, and when the request fails without a response, `*transport_error` is curl's code
  // (CURLE_OK otherwise): CURLE_COULDNT_CONNECT means nothing was sent, so even a non-idempotent
  // request may be sent again.
  Result<HttpResponse> Do(const HttpRequest& req, CURLcode* transport_error);

  struct StreamOptions {
    // No byte of the response (head or body) for this long aborts the transfer as kUnavailable.
    // Zero: no limit. Checked about once a second.
    std::chrono::milliseconds idle_timeout{0};
    // Backstop for the whole stream; zero: none (the idle timeout and `stop` end it).
    std::chrono::milliseconds timeout{0};
  };
  // A long-lived response (a Kubernetes watch): sends `req` and hands each piece of a 2xx
  // response's body to `on_data` as it arrives, on the calling thread; pieces split the body
  // anywhere (not at line ends). A non-2xx body is not streamed: it is returned in the response,
  // as from Do (capped at 1 MiB). Returns the response (status and headers; body empty for 2xx)
  // when the server ends the body; `on_data`'s first non-OK Status, as it is; kCancelled within
  // about a second of `stop` being requested; kUnavailable after idle_timeout without data, and
  // otherwise the errors of Do. The connect timeout of HttpOptions applies, its request timeout
  // and low-speed limit do not.
  Result<HttpResponse> DoStream(const HttpRequest& req,
                                const std::function<Status(std::string_view chunk)>& on_data,
                                std::stop_token stop, const StreamOptions& stream);

  const HttpOptions& options() const { return options_; }

 private:
  CurlEasyPtr Acquire();
  void Release(CurlEasyPtr h);

  const HttpOptions options_;
  std::mutex mu_;
  std::vector<CurlEasyPtr> idle_;  // guarded by mu_
};

// The status code for a curl error, as documented for HttpClient::Do.
StatusCode CurlErrorCode(CURLcode rc);

}  // namespace fsb
