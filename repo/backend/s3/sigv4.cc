#include "repo/backend/s3/sigv4.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>

namespace fsb::repo::s3 {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

Bytes Hmac(ByteView key, std::string_view data) {
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  // HMAC() only fails on an unknown digest or out of memory; SHA-256 is always there.
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
  out.resize(len);
  return out;
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Trims the value and collapses runs of white space to one space (the spec: "Trimall").
std::string TrimAll(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

struct CanonicalHeaders {
  std::string text;          // "name:value\n" for each, sorted by name
  std::string signed_names;  // "host;x-amz-date"
};

CanonicalHeaders Canonicalize(const HeaderList& headers) {
  std::map<std::string, std::string> merged;  // sorted by lowercase name
  for (const auto& [name, value] : headers) {
    std::string& v = merged[ToLower(name)];
    if (!v.empty()) v += ',';  // repeated headers: values joined in order
    v += TrimAll(value);
  }
  CanonicalHeaders out;
  for (const auto& [name, value] : merged) {
    out.text += name + ":" + value + "\n";
    if (!out.signed_names.empty()) out.signed_names += ';';
    out.signed_names += name;
  }
  return out;
}

std::string DateStamp(std::string_view amz_date) { return std::string(amz_date.substr(0, 8)); }

std::string Scope(std::string_view date, const SigningParams& p) {
  return fmt::format("{}/{}/{}/aws4_request", date, p.region, p.service);
}

std::string CanonicalRequest(const SignableRequest& req, const SigningParams& p,
                             const CanonicalHeaders& headers) {
  std::string uri = p.normalize_path ? NormalizePath(req.path) : req.path;
  if (uri.empty()) uri = "/";
  return fmt::format("{}\n{}\n{}\n{}\n{}\n{}", req.method, uri, CanonicalQueryString(req.query),
                     headers.text, headers.signed_names, req.payload_sha256);
}

// Fills string_to_sign and signature from canonical_request.
void Finish(SigningResult& r, std::string_view amz_date, const Credentials& creds,
            const SigningParams& p) {
  const std::string date = DateStamp(amz_date);
  r.string_to_sign = fmt::format("{}\n{}\n{}\n{}", kAlgorithm, amz_date, Scope(date, p),
                                 Sha256Hex(AsBytes(r.canonical_request)));
  Bytes key = Hmac(AsBytes("AWS4" + creds.secret_access_key.Reveal()), date);
  key = Hmac(key, p.region);
  key = Hmac(key, p.service);
  key = Hmac(key, "aws4_request");
  r.signature = HexEncode(Hmac(key, r.string_to_sign));
}

}  // namespace

std::string UriEncode(std::string_view s, bool encode_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || (c == '/' && !encode_slash)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string UriDecode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string CanonicalQueryString(const QueryList& query) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(query.size());
  for (const auto& [k, v] : query) enc.emplace_back(UriEncode(k, true), UriEncode(v, true));
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (const auto& [k, v] : enc) {
    if (!out.empty()) out += '&';
    out += k + "=" + v;
  }
  return out;
}

std::string NormalizePath(std::string_view path) {
  std::vector<std::string_view> segs;
  size_t pos = 0;
  std::string_view last;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    last = path.substr(pos, slash - pos);
    if (last == "..") {
      if (!segs.empty()) segs.pop_back();
    } else if (!last.empty() && last != ".") {
      segs.push_back(last);
    }
    pos = slash + 1;
  }
  std::string out;
  for (std::string_view s : segs) {
    out += '/';
    out += s;
  }
  // "a/", "a/." and "a/.." all name a directory: keep the trailing slash.
  const bool dir = last.empty() || last == "." || last == "..";
  if (out.empty() || dir) out += '/';
  return out;
}

std::string AmzDate(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string Sha256Hex(ByteView data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return HexEncode(ByteView(md, len));
}

SigningResult Sign(SignableRequest& req, const Credentials& creds, const SigningParams& params) {
  const std::string amz_date = AmzDate(params.time);
  req.headers.emplace_back("X-Amz-Date", amz_date);
  if (params.content_sha256_header)
    req.headers.emplace_back("x-amz-content-sha256", req.payload_sha256);
  const std::string& token = creds.session_token.Reveal();
  if (!token.empty() && params.sign_session_token) {
    req.headers.emplace_back("X-Amz-Security-Token", token);
  }
  const CanonicalHeaders headers = Canonicalize(req.headers);
  SigningResult r;
  r.canonical_request = CanonicalRequest(req, params, headers);
  Finish(r, amz_date, creds, params);
  req.headers.emplace_back(
      "Authorization",
      fmt::format("{} Credential={}/{}, SignedHeaders={}, Signature={}", kAlgorithm,
                  creds.access_key_id, Scope(DateStamp(amz_date), params), headers.signed_names,
                  r.signature));
  if (!token.empty() && !params.sign_session_token) {
    req.headers.emplace_back("X-Amz-Security-Token", token);
  }
  return r;
}

SigningResult Presign(SignableRequest& req, const Credentials& creds, const SigningParams& params,
                      std::chrono::seconds expires) {
  const std::string amz_date = AmzDate(params.time);
  const CanonicalHeaders headers = Canonicalize(req.headers);
  req.query.emplace_back("X-Amz-Algorithm", std::string(kAlgorithm));
  req.query.emplace_back("X-Amz-Credential",
                         creds.access_key_id + "/" + Scope(DateStamp(amz_date), params));
  req.query.emplace_back("X-Amz-Date", amz_date);
  req.query.emplace_back("X-Amz-Expires", std::to_string(expires.count()));
  req.query.emplace_back("X-Amz-SignedHeaders", headers.signed_names);
  const std::string& token = creds.session_token.Reveal();
  if (!token.empty() && params.sign_session_token) {
    req.query.emplace_back("X-Amz-Security-Token", token);
  }
  SigningResult r;
  r.canonical_request = CanonicalRequest(req, params, headers);
  Finish(r, amz_date, creds, params);
  if (!token.empty() && !params.sign_session_token) {
    req.query.emplace_back("X-Amz-Security-Token", token);
  }
  req.query.emplace_back("X-Amz-Signature", r.signature);
  return r;
}

}  // namespace fsb::repo::s3
