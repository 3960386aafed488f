// repo/backend/s3/s3_backend.h: a repository in an S3 bucket (AWS, MinIO, Ceph RGW, s3rver), with
// restic's object names (restic-repo-format.md §1.2): `<prefix>/config`, `<prefix>/keys/<id>`,
// `<prefix>/data/<id[0:2]>/<id>`, `<prefix>/index/<id>`, `<prefix>/snapshots/<id>`,
// `<prefix>/locks/<id>`, no directory markers. Requests are signed with SigV4 (the real payload
// SHA-256, never aws-chunked) and sent through a pool of curl handles, so concurrent calls reuse
// connections. Transient failures (5xx, 429/SlowDown, resets, timeouts, stalled transfers) are
// retried with exponential backoff and jitter for a bounded total time; other 4xx fail at once
// with the server's error code and message. Safe for concurrent use.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/http.h"
#include "repo/backend/backend.h"
#include "repo/backend/s3/s3_config.h"

namespace spdlog {
class logger;
}

namespace fsb::repo {

class S3Backend : public Backend {
 public:
  // Checks the configuration (credentials present); does no network I/O, so a wrong endpoint or
  // bucket shows on the first operation. kInvalidArgument on an unusable config.
  static Result<std::unique_ptr<S3Backend>> Open(const S3Config& config);
  ~S3Backend() override;

  // "s3:https://host/bucket/prefix"; never a secret.
  std::string Location() const override { return config_.Location(); }

  // One PUT with Content-MD5, Content-Type application/octet-stream and x-amz-content-sha256 of
  // `data`. S3 replaces objects atomically. kInvalidArgument for a bad name.
  Status Save(const Handle& h, ByteView data) override;
  // GET, ranged unless reading the whole object. kNotFound if absent; kCorruption if the object
  // ends before offset + length (416 or a short body).
  Result<Bytes> Load(const Handle& h, uint64_t offset, uint64_t length) override;
  // HEAD → Content-Length. kNotFound if absent.
  Result<uint64_t> Size(const Handle& h) override;
  // ListObjectsV2 under the type's prefix (data/ recursively, the others one level), following
  // continuation tokens; names that are not 64 lowercase hex are skipped. `fn` runs on the
  // calling thread between pages, so it may call the backend (even Remove).
  Status List(FileType type, const std::function<Status(const FileInfo&)>& fn) override;
  // HEAD (S3 answers 204 to a DELETE of a missing key), then DELETE. kNotFound if absent.
  Status Remove(const Handle& h) override;
  // Creates the bucket if it does not exist (as restic does; with a LocationConstraint outside
  // us-east-1), then kAlreadyExists if `<prefix>/config` exists. A bucket we may not HEAD (403) is
  // assumed to exist.
  Status Create() override;
  BackendProperties Properties() const override {
    return {.max_connections = config_.max_connections, .local = false};
  }

  // The object key of `h` ("prefix/data/ab/ab...").
  std::string Key(const Handle& h) const;

  // Arbitrary objects under the configured prefix (`key` relative to it, no leading '/'), for
  // files that are not repository files: the coordinator's records in a backup storage location
  // (repo/backend/object_store.h). Same signing, retries and error mapping as the repository
  // calls. GetObject: kNotFound if absent. ListObjects: the relative keys under `key_prefix`
  // (recursively), in the server's order; `fn` runs on the calling thread.
  Status PutObject(std::string_view key, ByteView data);
  Result<Bytes> GetObject(std::string_view key);
  Status ListObjects(std::string_view key_prefix,
                     const std::function<Status(const std::string& key)>& fn);

 private:
  explicit S3Backend(const S3Config& config);

  struct Call;  // one logical operation: its name for messages and its request parts
  // Signs and sends `call`, retrying transient failures as S3RetryOptions says. Returns the
  // final response whatever its status (the caller maps 4xx), or kUnavailable after the retry
  // budget, or the transport error that is not worth a retry.
  Result<HttpResponse> Execute(const Call& call);
  // The error Status for a non-2xx response to `call`.
  Status ErrorFor(const Call& call, const HttpResponse& resp) const;
  // ListObjectsV2 of the full key `prefix` (one level deep with `delimited`), page after page
  // (continuation tokens followed, a truncated page without a new one refused): `each` gets every
  // <Contents> element of the XML.
  Status ListPages(const std::string& prefix, bool delimited,
                   const std::function<Status(std::string_view contents)>& each);
  // Path and host for `key` ("" = the bucket itself).
  std::string Path(std::string_view key) const;
  std::string Host() const;

  const S3Config config_;
  HttpClient http_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace fsb::repo
