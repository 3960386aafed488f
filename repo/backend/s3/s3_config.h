// repo/backend/s3/s3_config.h: where an S3 repository is and how to reach it: the repository name
// as restic and Velero write it (restic-repo-format.md §1.2, velero-fs-backup.md §4.3), the
// credentials and region from the environment (the same variables and shared credentials file as
// the AWS SDKs, and Velero's `cloud-credentials` secret), and the TLS and retry settings. Pure
// data and parsing; safe for concurrent use.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/http.h"
#include "base/status.h"
#include "repo/backend/s3/sigv4.h"

namespace fsb::repo {

struct S3RetryOptions {
  // Exponential backoff with full jitter: attempt n waits a random time in
  // [0, min(max_delay, initial_delay * 2^n)], as the AWS SDKs do, so that many agents that fail
  // together do not retry together.
  std::chrono::milliseconds initial_delay{500};
  std::chrono::milliseconds max_delay{30'000};
  // No new attempt starts later than this after the first one; then the operation fails with
  // kUnavailable naming the object. 5 minutes rides out an object store restart or a throttling
  // burst, and is still short against a Velero backup timeout (4 h by default).
  std::chrono::milliseconds max_total{5 * 60'000};
};

struct S3Config {
  // From the repository name.
  std::string endpoint;   // "host[:port]" ("[v6]:port" for IPv6), as in the name
  bool use_https = true;  // false only for "s3:http://..."
  std::string bucket;
  std::string prefix;  // path.Clean'ed, no leading or trailing '/'; "" = bucket root
  // Path-style URLs (http://host/bucket/key) for custom endpoints (MinIO, Ceph, s3rver), and
  // virtual-hosted ones (https://bucket.host/key) for AWS, unless the bucket name is not a DNS
  // label (dots break the TLS wildcard certificate).
  bool path_style = true;
  // SigV4 signing region. Resolution order: the -o s3.region option, the region in an AWS
  // endpoint name (s3.eu-west-1.amazonaws.com, s3-eu-west-1.amazonaws.com), AWS_DEFAULT_REGION,
  // AWS_REGION, then us-east-1 (what s3rver, MinIO and Ceph accept).
  std::string region = "us-east-1";

  s3::Credentials credentials;

  // Reported as Properties().max_connections: restic's default for S3 (§1.2). Object stores
  // scale with concurrency; more helps on high-latency links.
  int max_connections = 5;
  // TLS (ca_file, insecure_tls), timeouts and the stall limit.
  HttpOptions http;
  S3RetryOptions retry;

  // "s3:http(s)://endpoint/bucket[/prefix]", for messages. No secrets.
  std::string Location() const;
};

// What the command line adds to the repository name (restic's flags of the same names).
struct S3Options {
  std::string region;         // -o s3.region=...
  std::string ca_file;        // --cacert FILE
  bool insecure_tls = false;  // --insecure-tls
};

// Looks up an environment variable; std::nullopt when unset. Tests pass a map instead.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
std::optional<std::string> ProcessEnv(const std::string& name);

// Parses "s3:https://HOST[:PORT]/BUCKET[/PREFIX]", "s3:http://...", "s3:HOST/BUCKET[/PREFIX]"
// (https), "s3://HOST/BUCKET[/PREFIX]" (https) into endpoint, bucket, prefix, path_style and the
// region of a regional AWS endpoint. kInvalidArgument saying what is wrong (no bucket, a bad port,
// an unsupported scheme, a query string, ...). Reads no environment.
Result<S3Config> ParseS3Location(std::string_view repo);

// AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), else profile AWS_PROFILE
// (default "default") of the shared credentials file AWS_SHARED_CREDENTIALS_FILE (default
// $HOME/.aws/credentials). kInvalidArgument when only one of the key variables is set, when the
// profile is missing or incomplete, or when no credentials are found at all;
// kNotFound when AWS_SHARED_CREDENTIALS_FILE names a missing file, kPermissionDenied when the
// file cannot be read. Messages never contain a secret.
Result<s3::Credentials> LoadS3Credentials(const EnvLookup& env);

// ParseS3Location, then region and credentials from `options` and the environment.
Result<S3Config> ResolveS3Config(std::string_view repo, const S3Options& options,
                                 const EnvLookup& env = ProcessEnv);

}  // namespace fsb::repo
