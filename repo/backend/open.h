// repo/backend/open.h: a Backend from a repository string, as restic and Velero name them.
#pragma once

#include <memory>
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
};

// "s3:..." opens the S3 backend (repo/backend/s3/s3_config.h lists the forms; credentials and
// region come from the environment). A local path or "local:PATH" opens the local backend
// (create=true makes the directory first, for init). Any other "scheme:" is kInvalidArgument
// naming the scheme.
Result<std::unique_ptr<Backend>> OpenBackend(std::string_view repo, bool create,
                                             const BackendOptions& options = {});

}  // namespace fsb::repo
