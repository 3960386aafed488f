// tests/support/s3_server.h: real S3 servers for the tests, started on 127.0.0.1 with a free port
// in their own temp dir and stopped (SIGTERM, then SIGKILL) by the destructor; a dying test
// process takes its server with it (PR_SET_PDEATHSIG). The npm packages come from the project's
// setup script (scripts/setup installs them into .cache/npm). One thread at a time per object.
//
//   s3rver 3.7.1              (kS3rver)    checks only the access key id, not signatures
//   @20minutes/s3rver 4.0.4   (kVerifying) verifies SigV4: a wrong secret gets 403
//                                          SignatureDoesNotMatch
//
// Both are started through a small node launcher (the fork ships no CLI) with
// --openssl-legacy-provider, without which every truncated ListObjectsV2 fails on Node 20
// (shared/notes/real-parts.md §1). Credentials: access key S3RVER, secret S3RVER.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "repo/backend/s3/s3_config.h"
#include "tests/support/test_util.h"

namespace fsb::testing {

enum class S3ServerKind { kS3rver, kVerifying };

struct S3ServerOptions {
  S3ServerKind kind = S3ServerKind::kS3rver;
  std::string bucket;  // created at start when not empty
  // PEM files: serve https (restic only works with s3rver over TLS).
  std::filesystem::path tls_key;
  std::filesystem::path tls_cert;
};

class S3Server {
 public:
  // Starts the server and waits (up to 30 s) until it listens. nullptr with *why set when it
  // cannot run here: no node, packages not installed (run scripts/setup), or it did not start.
  static std::unique_ptr<S3Server> Start(const S3ServerOptions& options, std::string* why);
  ~S3Server();
  S3Server(const S3Server&) = delete;
  S3Server& operator=(const S3Server&) = delete;

  uint16_t port() const { return port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  // "http://127.0.0.1:PORT" or https.
  std::string url() const;
  // The server's output so far, for failure messages.
  std::string Log() const;

 private:
  S3Server() = default;

  TempDir dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  bool tls_ = false;
};

// One plain-http s3rver 3.7.1 shared by every test in the process (started on first use, stopped
// at exit); tests keep apart by using their own buckets. nullptr with *why when it cannot start.
S3Server* SharedS3Server(std::string* why);

// The npm prefix holding the servers: $FSB_NPM_PREFIX, else <source>/.cache/npm.
std::filesystem::path NpmPrefix();

// Writes ca.pem (a self-signed CA), server.key and server.crt (for 127.0.0.1 and localhost,
// signed by the CA) into `dir` with the openssl command. false with *why on failure.
bool MakeTestCertificates(const std::filesystem::path& dir, std::string* why);

// A config for `bucket`/`prefix` on `server` with its credentials, and retry and stall limits
// short enough for tests (10 ms first backoff, 2 s stall limit, 60 s budget).
repo::S3Config TestS3Config(const S3Server& server, const std::string& bucket,
                            const std::string& prefix = "");

// A fresh bucket name, unique in this process ("fsb-test-<pid>-<n>").
std::string UniqueBucketName();

}  // namespace fsb::testing

// In a test body: skip when S3 servers cannot run here, fail instead under FSB_REQUIRE_INTEROP=1.
#define FSB_S3_SKIP_OR_FAIL(why)                                 \
  do {                                                           \
    if (::fsb::testing::InteropRequired()) {                     \
      FAIL() << "S3 server required but unavailable: " << (why); \
    }                                                            \
    GTEST_SKIP() << "no S3 server: " << (why);                   \
  } while (0)
