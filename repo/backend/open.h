// repo/backend/open.h: a Backend from a repository string, as restic and Velero name them.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "repo/backend/backend.h"

namespace fsb::repo {

// Settings from the command line that only some backends use (restic's flags of the same names).
struct BackendOptions {
  std::string ca_file;        // --cacert: PEM CA certificates to trust for https
  bool insecure_tls = false;  // --insecure-tls: skip TLS verification (testing only)
  std::string s3_region;      // -o s3.region=...: overrides the environment and the endpoint
  // Where S3 credentials and region variables (AWS_ACCESS_KEY_ID, AWS_SHARED_CREDENTIALS_FILE,
  // AWS_PROFILE, ...) are looked up; null = the process environment. The agent passes a lookup
  // per BackupStorageLocation, so repositories of different locations use their own credentials.
  std::function<std::optional<std::string>(const std::string& name)> env;
};

// "s3:..." opens the S3 backend (repo/backend/s3/s3_config.h lists the forms; credentials and
// region come from the environment). A local path or "local:PATH" opens the local backend
// (create=true makes the directory first, for init). Any other "scheme:" is kInvalidArgument
// naming the scheme.
Result<std::unique_ptr<Backend>> OpenBackend(std::string_view repo, bool create,
                                             const BackendOptions& options = {});

}  // namespace fsb::repo
