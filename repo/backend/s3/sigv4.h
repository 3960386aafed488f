// repo/backend/s3/sigv4.h: AWS Signature Version 4 (HMAC-SHA256), written out by hand on OpenSSL:
// canonical request, string to sign, signing key, Authorization header (and, for completeness of
// the test suite, presigned query parameters). The signer signs the request exactly as it will be
// sent: the path is taken literally (S3 does not normalize or re-encode it) and the payload hash
// is the real SHA-256 of the body, never aws-chunked streaming. Pure functions; safe for
// concurrent use.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/secret.h"

namespace fsb::repo::s3 {

struct Credentials {
  // Sent in every Authorization header, so not secret, but still only logged where needed.
  std::string access_key_id;
  Secret<std::string> secret_access_key;
  Secret<std::string> session_token;  // empty: none (long-term keys)
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;
using QueryList = std::vector<std::pair<std::string, std::string>>;

// A request about to be sent. Sign/Presign add to it; the caller then sends `path` followed by
// "?" + CanonicalQueryString(query) (when `query` is not empty) and exactly `headers`.
struct SignableRequest {
  std::string method;  // "GET", "PUT", ...
  // The path exactly as sent, percent-encoded (UriEncode(key, /*encode_slash=*/false)).
  std::string path;
  QueryList query;     // decoded names and values, in any order
  HeaderList headers;  // every header to sign; must include Host
  // Lowercase hex SHA-256 of the body (Sha256Hex of an empty body for GET, HEAD, DELETE).
  std::string payload_sha256;
};

struct SigningParams {
  std::string region = "us-east-1";
  std::string service = "s3";
  std::chrono::system_clock::time_point time;  // the request time (X-Amz-Date)
  // Remove "." and ".." segments and empty segments from the path before signing, as every AWS
  // service but S3 does. S3 signs keys literally, so "a//b" and "a/./b" stay distinct keys.
  bool normalize_path = false;
  // Add and sign x-amz-content-sha256 (S3 requires it on every request). Header mode only.
  bool content_sha256_header = true;
  // Sign the session token. false adds it after signing, unsigned (the suite's
  // "omit_session_token"; a few services want that). S3: true.
  bool sign_session_token = true;
};

// The intermediate values, for tests and for debugging a SignatureDoesNotMatch. No secrets.
struct SigningResult {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;  // lowercase hex
};

// RFC 3986 percent-encoding as SigV4 wants it: A-Z a-z 0-9 - . _ ~ are kept, every other byte
// becomes %XX (uppercase); '/' is kept unless encode_slash.
std::string UriEncode(std::string_view s, bool encode_slash);
// Decodes %XX escapes (a malformed escape is kept as is); '+' stays '+'.
std::string UriDecode(std::string_view s);
// name=value pairs, both UriEncode'd, sorted by name then value, joined with '&'.
std::string CanonicalQueryString(const QueryList& query);
// remove_dot_segments (RFC 3986 §5.2.4) plus collapsing of empty segments; keeps a trailing '/'.
std::string NormalizePath(std::string_view path);
// "20150830T123600Z" (UTC).
std::string AmzDate(std::chrono::system_clock::time_point t);
std::string Sha256Hex(ByteView data);

// Header mode: adds X-Amz-Date, x-amz-content-sha256 (params.content_sha256_header),
// X-Amz-Security-Token (when the credentials have one) and Authorization to `req.headers`.
SigningResult Sign(SignableRequest& req, const Credentials& creds, const SigningParams& params);

// Query mode (a presigned URL valid for `expires`): adds X-Amz-Algorithm, X-Amz-Credential,
// X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders, X-Amz-Security-Token and X-Amz-Signature to
// `req.query`. fsb itself never presigns; this exists because the AWS suite checks both modes.
SigningResult Presign(SignableRequest& req, const Credentials& creds, const SigningParams& params,
                      std::chrono::seconds expires);

}  // namespace fsb::repo::s3
