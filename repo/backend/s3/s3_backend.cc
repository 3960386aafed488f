#include "repo/backend/s3/s3_backend.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "base/log.h"
#include "repo/backend/s3/sigv4.h"

namespace fsb::repo {
namespace {

using Clock = std::chrono::steady_clock;

bool IsId(std::string_view name) {
  if (name.size() != 64) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Status CheckHandle(const Handle& h) {
  const bool ok = h.type == FileType::kConfig ? h.name == "config" : IsId(h.name);
  if (!ok) {
    return Status::InvalidArgument(
        fmt::format("invalid {} file name \"{}\"", FileTypeName(h.type), h.name));
  }
  return Status::Ok();
}

// The directory of each type in restic's default layout (§1.2), with its trailing '/'.
std::string_view TypeDir(FileType t) {
  switch (t) {
    case FileType::kConfig:
      return "";
    case FileType::kKey:
      return "keys/";
    case FileType::kPack:
      return "data/";
    case FileType::kIndex:
      return "index/";
    case FileType::kSnapshot:
      return "snapshots/";
    case FileType::kLock:
      return "locks/";
  }
  return "";
}

std::string XmlUnescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    const size_t semi = s.find(';', i);
    if (semi == std::string_view::npos) {
      out.push_back(s[i]);
      continue;
    }
    const std::string_view ent = s.substr(i + 1, semi - i - 1);
    uint32_t cp = 0;
    bool known = true;
    if (ent == "amp")
      cp = '&';
    else if (ent == "lt")
      cp = '<';
    else if (ent == "gt")
      cp = '>';
    else if (ent == "quot")
      cp = '"';
    else if (ent == "apos")
      cp = '\'';
    else if (ent.size() > 1 && ent[0] == '#') {
      const bool hex = ent[1] == 'x' || ent[1] == 'X';
      const std::string_view digits = ent.substr(hex ? 2 : 1);
      auto [p, ec] =
          std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      known = ec == std::errc() && p == digits.data() + digits.size() && cp <= 0x10FFFF;
    } else {
      known = false;
    }
    if (!known) {
      out.push_back(s[i]);
      continue;
    }
    // UTF-8 encode the code point.
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    i = semi;
  }
  return out;
}

// The raw contents of each <tag>...</tag> in `xml`, in order (S3's documents do not nest an element
// in itself, and the elements read here carry no attributes).
std::vector<std::string_view> Elements(std::string_view xml, std::string_view tag) {
  const std::string open = fmt::format("<{}>", tag);
  const std::string close = fmt::format("</{}>", tag);
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (true) {
    const size_t b = xml.find(open, pos);
    if (b == std::string_view::npos) break;
    const size_t e = xml.find(close, b + open.size());
    if (e == std::string_view::npos) break;
    out.push_back(xml.substr(b + open.size(), e - b - open.size()));
    pos = e + close.size();
  }
  return out;
}

std::string Element(std::string_view xml, std::string_view tag) {
  std::vector<std::string_view> all = Elements(xml, tag);
  return all.empty() ? std::string() : XmlUnescape(all.front());
}

struct S3Error {
  std::string code;     // "NoSuchKey", ... ; "" when the body has none (HEAD)
  std::string message;  // the server's text
  std::string region;   // <Region>, on wrong-region errors
};

S3Error ParseError(const HttpResponse& resp) {
  const std::string_view xml = AsString(resp.body);
  S3Error e;
  if (xml.find("<Error>") == std::string_view::npos) return e;
  e.code = Element(xml, "Code");
  e.message = Element(xml, "Message");
  e.region = Element(xml, "Region");
  if (e.message.size() > 300) e.message = e.message.substr(0, 300) + "...";
  return e;
}

// Transient answers: server errors (but not 501 NotImplemented, which will not change),
// throttling, and S3's "your upload was too slow" 400 RequestTimeout.
bool Retryable(const HttpResponse& resp) {
  if (resp.status >= 500) return resp.status != 501;
  if (resp.status == 429 || resp.status == 408) return true;
  if (resp.status == 400) {
    const std::string code = ParseError(resp).code;
    return code == "RequestTimeout" || code == "SlowDown";
  }
  return false;
}

Bytes Md5(ByteView data) {
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  // MD5 is missing under a FIPS-only OpenSSL; Content-MD5 is optional, so go without it.
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_md5(), nullptr) != 1) return {};
  out.resize(len);
  return out;
}

std::chrono::milliseconds Backoff(const S3RetryOptions& opts, int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const int shift = std::min(attempt - 1, 20);
  const int64_t cap =
      std::min<int64_t>(opts.max_delay.count(), opts.initial_delay.count() * (int64_t{1} << shift));
  std::uniform_int_distribution<int64_t> dist(0, std::max<int64_t>(cap, 0));
  return std::chrono::milliseconds(dist(rng));
}

}  // namespace

struct S3Backend::Call {
  Call(std::string op_, std::string what_, std::string method_, std::string key_)
      : op(std::move(op_)),
        what(std::move(what_)),
        method(std::move(method_)),
        key(std::move(key_)) {}
  std::string op;    // "save", "load", ...: the first word of messages
  std::string what;  // the object key or "bucket NAME"
  std::string method;
  std::string key;  // object key; "" addresses the bucket
  s3::QueryList query;
  s3::HeaderList headers;  // besides Host, X-Amz-Date, x-amz-content-sha256, Authorization
  ByteView body;
};

S3Backend::S3Backend(const S3Config& config)
    : config_(config), http_(config.http), log_(GetLogger("s3")) {}

S3Backend::~S3Backend() = default;

Result<std::unique_ptr<S3Backend>> S3Backend::Open(const S3Config& config) {
  if (config.endpoint.empty() || config.bucket.empty()) {
    return Status::InvalidArgument("s3: endpoint and bucket are required");
  }
  if (config.credentials.access_key_id.empty() ||
      config.credentials.secret_access_key.Reveal().empty()) {
    return Status::InvalidArgument(fmt::format("{}: no S3 credentials", config.Location()));
  }
  if (config.region.empty()) {
    return Status::InvalidArgument(fmt::format("{}: no S3 region", config.Location()));
  }
  return std::unique_ptr<S3Backend>(new S3Backend(config));
}

std::string S3Backend::Key(const Handle& h) const {
  std::string rel = h.type == FileType::kConfig ? std::string("config") : h.Path();
  return config_.prefix.empty() ? rel : config_.prefix + "/" + rel;
}

std::string S3Backend::Host() const {
  return config_.path_style ? config_.endpoint : config_.bucket + "." + config_.endpoint;
}

std::string S3Backend::Path(std::string_view key) const {
  // No trailing '/' for the bucket itself: "/bucket?list-type=2", not "/bucket/?...".
  std::string path = config_.path_style ? "/" + s3::UriEncode(config_.bucket, true) : "";
  if (!key.empty() || path.empty()) path += "/" + s3::UriEncode(key, false);
  return path;
}

Result<HttpResponse> S3Backend::Execute(const Call& call) {
  const std::string payload_sha256 = s3::Sha256Hex(call.body);
  const Clock::time_point start = Clock::now();
  for (int attempt = 1;; attempt++) {
    s3::SignableRequest sreq{.method = call.method,
                             .path = Path(call.key),
                             .query = call.query,
                             .headers = call.headers,
                             .payload_sha256 = payload_sha256};
    sreq.headers.emplace_back("Host", Host());
    // Signed anew for each attempt: x-amz-date must be within 15 minutes of the server's clock.
    s3::Sign(sreq, config_.credentials,
             {.region = config_.region, .service = "s3", .time = std::chrono::system_clock::now()});
    HttpRequest hreq;
    hreq.method = call.method;
    hreq.url = fmt::format("{}://{}{}", config_.use_https ? "https" : "http", Host(), sreq.path);
    if (!sreq.query.empty()) hreq.url += "?" + s3::CanonicalQueryString(sreq.query);
    hreq.headers = std::move(sreq.headers);
    hreq.body = call.body;

    const Clock::time_point sent = Clock::now();
    Result<HttpResponse> r = http_.Do(hreq);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent);
    std::string why;
    if (!r.ok()) {
      log_->debug("s3 request method={} key={} attempt={} ms={} err=\"{}\"", call.method, call.what,
                  attempt, ms.count(), r.status().message());
      if (r.status().code() != StatusCode::kUnavailable) {
        return r.status().WithContext(fmt::format("{} {}", call.op, call.what));
      }
      why = r.status().message();
    } else {
      log_->debug("s3 request method={} key={} attempt={} ms={} status={} bytes={}", call.method,
                  call.what, attempt, ms.count(), r->status, r->body.size());
      if (!Retryable(*r)) return r;
      const S3Error e = ParseError(*r);
      why = fmt::format("HTTP {}{}{}", r->status, e.code.empty() ? "" : " ", e.code);
    }
    const std::chrono::milliseconds delay = Backoff(config_.retry, attempt);
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    if (elapsed + delay > config_.retry.max_total) {
      return Status::Unavailable(fmt::format("{} {}: giving up after {} attempts in {:.1f}s: {}",
                                             call.op, call.what, attempt, elapsed.count() / 1000.0,
                                             why));
    }
    log_->warn("s3 retry op={} key={} attempt={} delay_ms={} err=\"{}\"", call.op, call.what,
               attempt, delay.count(), why);
    std::this_thread::sleep_for(delay);
  }
}

Status S3Backend::ErrorFor(const Call& call, const HttpResponse& resp) const {
  const S3Error e = ParseError(resp);
  std::string text = fmt::format("{} {}: HTTP {}", call.op, call.what, resp.status);
  if (!e.code.empty()) text += " " + e.code;
  if (!e.message.empty()) text += ": " + e.message;
  std::string region = e.region;
  if (const std::string* h = resp.Header("x-amz-bucket-region"); h != nullptr && region.empty()) {
    region = *h;
  }
  if (!region.empty() && region != config_.region) {
    text += fmt::format(" (the bucket is in region {}: use -o s3.region={})", region, region);
  }
  switch (resp.status) {
    case 404:
      return Status::NotFound(text + (e.code.empty() ? ": not found" : ""));
    case 401:
    case 403:
      return Status::PermissionDenied(text + (e.code.empty() ? ": access denied" : ""));
    case 301:
    case 307:
    case 400:
    case 405:
    case 411:
    case 413:
    case 414:
      return Status::InvalidArgument(text);
    default:
      break;
  }
  if (resp.status >= 500 || resp.status == 429) return Status::Unavailable(text);
  return Status::FailedPrecondition(text);
}

Status S3Backend::Save(const Handle& h, ByteView data) {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  Call c("save", Key(h), "PUT", Key(h));
  c.body = data;
  c.headers.emplace_back("Content-Type", "application/octet-stream");
  if (Bytes md5 = Md5(data); !md5.empty()) c.headers.emplace_back("Content-MD5", Base64Encode(md5));
  FSB_ASSIGN_OR_RETURN(HttpResponse resp, Execute(c));
  if (resp.status / 100 != 2) return ErrorFor(c, resp);
  return Status::Ok();
}

Result<Bytes> S3Backend::Load(const Handle& h, uint64_t offset, uint64_t length) {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  const std::string key = Key(h);
  if (length > 0 && offset > std::numeric_limits<uint64_t>::max() - length) {
    return Status::Corruption(
        fmt::format("load {}: range {}+{} beyond any object", key, offset, length));
  }
  Call c("load", key, "GET", key);
  const bool ranged = offset > 0 || length > 0;
  if (ranged) {
    c.headers.emplace_back("Range", length > 0
                                        ? fmt::format("bytes={}-{}", offset, offset + length - 1)
                                        : fmt::format("bytes={}-", offset));
  }
  FSB_ASSIGN_OR_RETURN(HttpResponse resp, Execute(c));
  // Repository objects are never empty (restic-repo-format.md §1), yet s3rver has been seen to
  // answer a whole-object GET right after the PUT with an empty 200: ask again before believing it.
  for (int attempt = 1; !ranged && resp.status == 200 && resp.body.empty() && attempt < 4; attempt++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50 * attempt));
    FSB_ASSIGN_OR_RETURN(resp, Execute(c));
  }
  const std::string range = fmt::format("range {}+{}", offset, length);
  if (resp.status == 416) {
    // The range starts at or past the end. Reading zero bytes from exactly the end is fine.
    if (length == 0) {
      FSB_ASSIGN_OR_RETURN(uint64_t size, Size(h));
      if (offset == size) return Bytes();
      return Status::Corruption(
          fmt::format("load {}: {}: object is only {} bytes", key, range, size));
    }
    return Status::Corruption(fmt::format("load {}: {}: beyond the end of the object", key, range));
  }
  if (resp.status == 200 && ranged) {
    // The server ignored the Range header and sent the whole object: cut the range out.
    Bytes& all = resp.body;
    if (offset > all.size() || (length > 0 && length > all.size() - offset)) {
      return Status::Corruption(
          fmt::format("load {}: {}: object is only {} bytes", key, range, all.size()));
    }
    const uint64_t end = length > 0 ? offset + length : all.size();
    return Bytes(all.begin() + static_cast<ptrdiff_t>(offset),
                 all.begin() + static_cast<ptrdiff_t>(end));
  }
  if (resp.status != 200 && resp.status != 206) return ErrorFor(c, resp);
  if (resp.status == 206) {
    // "Content-Range: bytes START-END/TOTAL". s3rver answers "bytes=0-0" with the whole object
    // (its range parser takes the end 0 for "none"), so a longer answer that starts at the asked
    // offset is cut to the asked length rather than refused.
    const std::string* cr = resp.Header("content-range");
    uint64_t start = 0;
    if (cr == nullptr || !cr->starts_with("bytes ") ||
        std::from_chars(cr->data() + 6, cr->data() + cr->size(), start).ec != std::errc()) {
      return Status::Unavailable(
          fmt::format("load {}: {}: 206 without a valid Content-Range", key, range));
    }
    if (start != offset) {
      return Status::Unavailable(fmt::format("load {}: {}: server sent \"{}\"", key, range, *cr));
    }
    if (length > 0 && resp.body.size() > length) resp.body.resize(length);
  }
  if (length > 0 && resp.body.size() != length) {
    return Status::Corruption(
        fmt::format("load {}: {}: short read: got {} bytes", key, range, resp.body.size()));
  }
  return std::move(resp.body);
}

Result<uint64_t> S3Backend::Size(const Handle& h) {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  Call c("size", Key(h), "HEAD", Key(h));
  FSB_ASSIGN_OR_RETURN(HttpResponse resp, Execute(c));
  if (resp.status != 200) return ErrorFor(c, resp);
  const std::string* len = resp.Header("content-length");
  uint64_t size = 0;
  if (len == nullptr ||
      std::from_chars(len->data(), len->data() + len->size(), size).ec != std::errc()) {
    return Status::Unavailable(fmt::format("size {}: no Content-Length in the response", c.what));
  }
  return size;
}

Status S3Backend::ListPages(const std::string& prefix, bool delimited,
                            const std::function<Status(std::string_view contents)>& each) {
  std::string token;
  for (int page = 1;; page++) {
    Call c("list", prefix, "GET", "");
    c.query = {{"list-type", "2"}, {"prefix", prefix}};
    if (delimited) c.query.emplace_back("delimiter", "/");
    if (!token.empty()) c.query.emplace_back("continuation-token", token);
    FSB_ASSIGN_OR_RETURN(HttpResponse resp, Execute(c));
    if (resp.status != 200) return ErrorFor(c, resp);
    const std::string_view xml = AsString(resp.body);
    if (xml.find("<ListBucketResult") == std::string_view::npos) {
      return Status::Unavailable(
          fmt::format("list {}: page {}: not a ListObjectsV2 response", prefix, page));
    }
    for (std::string_view contents : Elements(xml, "Contents")) {
      FSB_RETURN_IF_ERROR(each(contents));
    }
    if (Element(xml, "IsTruncated") != "true") return Status::Ok();
    std::string next = Element(xml, "NextContinuationToken");
    if (next.empty() || next == token) {
      return Status::FailedPrecondition(fmt::format(
          "list {}: page {} is truncated but has no new continuation token", prefix, page));
    }
    token = std::move(next);
  }
}

Status S3Backend::List(FileType type, const std::function<Status(const FileInfo&)>& fn) {
  if (type == FileType::kConfig) return Status::Ok();  // "config" is never a 64-hex name
  const std::string prefix =
      (config_.prefix.empty() ? std::string() : config_.prefix + "/") + std::string(TypeDir(type));
  // restic lists data/ recursively (data/00/ ... data/ff/) and the others one level deep.
  return ListPages(prefix, type != FileType::kPack, [&](std::string_view contents) {
    const std::string key = Element(contents, "Key");
    const std::string size_text = Element(contents, "Size");
    const size_t slash = key.rfind('/');
    const std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
    if (!IsId(name)) return Status::Ok();  // temp files, directory markers, foreign objects
    uint64_t size = 0;
    if (std::from_chars(size_text.data(), size_text.data() + size_text.size(), size).ec !=
        std::errc()) {
      return Status::Unavailable(fmt::format("list {}: bad <Size> for {}", prefix, key));
    }
    return fn(FileInfo{.name = name, .size = size});
  });
}

Status S3Backend::Remove(const Handle& h) {
  FSB_RETURN_IF_ERROR(Size(h).status());
  Call c("remove", Key(h), "DELETE", Key(h));
  FSB_ASSIGN_OR_RETURN(HttpResponse resp, Execute(c));
  if (resp.status / 100 != 2) return ErrorFor(c, resp);
  return Status::Ok();
}

Status S3Backend::Create() {
  const std::string bucket_what = fmt::format("bucket {}", config_.bucket);
  Call head("create", bucket_what, "HEAD", "");
  FSB_ASSIGN_OR_RETURN(HttpResponse resp, Execute(head));
  if (resp.status == 404) {
    Call put("create", bucket_what, "PUT", "");
    // us-east-1 is the default location and must not be named (S3 answers
    // InvalidLocationConstraint).
    std::string body;
    if (config_.region != "us-east-1") {
      body = fmt::format(
          "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
          "<LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
          config_.region);
      put.headers.emplace_back("Content-Type", "application/xml");
    }
    put.body = AsBytes(body);
    FSB_ASSIGN_OR_RETURN(HttpResponse created, Execute(put));
    if (created.status / 100 != 2 && ParseError(created).code != "BucketAlreadyOwnedByYou") {
      return ErrorFor(put, created);
    }
    log_->info("s3 bucket created repo={}", Location());
  } else if (resp.status == 403) {
    // Credentials scoped to objects under a prefix may not HEAD the bucket; it exists, or the
    // next request says what is wrong.
    log_->debug("s3 bucket head denied, assuming it exists repo={}", Location());
  } else if (resp.status != 200) {
    return ErrorFor(head, resp);
  }
  Result<uint64_t> config = Size(Handle::Config());
  if (config.ok()) {
    return Status::AlreadyExists(
        fmt::format("repository {} already exists (it has a config)", Location()));
  }
  if (config.status().code() != StatusCode::kNotFound) return config.status();
  return Status::Ok();
}

Status S3Backend::PutObject(std::string_view key, ByteView data) {
  if (key.empty() || key.front() == '/') {
    return Status::InvalidArgument(fmt::format("invalid object key \"{}\"", key));
  }
  const std::string full =
      config_.prefix.empty() ? std::string(key) : config_.prefix + "/" + std::string(key);
  Call c("put", full, "PUT", full);
  c.body = data;
  c.headers.emplace_back("Content-Type", "application/octet-stream");
  if (Bytes md5 = Md5(data); !md5.empty()) c.headers.emplace_back("Content-MD5", Base64Encode(md5));
  FSB_ASSIGN_OR_RETURN(HttpResponse resp, Execute(c));
  if (resp.status / 100 != 2) return ErrorFor(c, resp);
  return Status::Ok();
}

Result<Bytes> S3Backend::GetObject(std::string_view key) {
  if (key.empty() || key.front() == '/') {
    return Status::InvalidArgument(fmt::format("invalid object key \"{}\"", key));
  }
  const std::string full =
      config_.prefix.empty() ? std::string(key) : config_.prefix + "/" + std::string(key);
  Call c("get", full, "GET", full);
  FSB_ASSIGN_OR_RETURN(HttpResponse resp, Execute(c));
  if (resp.status != 200) return ErrorFor(c, resp);
  return std::move(resp.body);
}

Status S3Backend::ListObjects(std::string_view key_prefix,
                              const std::function<Status(const std::string& key)>& fn) {
  const std::string base = config_.prefix.empty() ? std::string() : config_.prefix + "/";
  return ListPages(base + std::string(key_prefix), false, [&](std::string_view contents) {
    const std::string key = Element(contents, "Key");
    if (!key.starts_with(base)) return Status::Ok();
    return fn(key.substr(base.size()));
  });
}

}  // namespace fsb::repo
