#include "repo/backend/open.h"

#include <fmt/format.h>

#include "repo/backend/local/local_backend.h"
#include "repo/backend/s3/s3_backend.h"
#include "repo/backend/s3/s3_config.h"

namespace fsb::repo {

Result<std::unique_ptr<Backend>> OpenBackend(std::string_view repo, bool create,
                                             const BackendOptions& options) {
  if (repo.starts_with("s3:")) {
    FSB_ASSIGN_OR_RETURN(S3Config config,
                         ResolveS3Config(repo, {.region = options.s3_region,
                                                .ca_file = options.ca_file,
                                                .insecure_tls = options.insecure_tls},
                                         options.env ? EnvLookup(options.env) : EnvLookup(ProcessEnv)));
    FSB_ASSIGN_OR_RETURN(auto s3, S3Backend::Open(config));
    return std::unique_ptr<Backend>(std::move(s3));
  }
  std::string path(repo);
  if (path.rfind("local:", 0) == 0) path = path.substr(6);
  if (path.empty()) return Status::InvalidArgument("empty repository location");
  size_t colon = path.find(':');
  size_t slash = path.find('/');
  if (colon != std::string::npos && (slash == std::string::npos || colon < slash) && colon > 1) {
    return Status::InvalidArgument(fmt::format("repository \"{}\": backend \"{}\" is not supported", path,
                                               path.substr(0, colon)));
  }
  LocalBackend::Options opts;
  opts.create_if_missing = create;
  FSB_ASSIGN_OR_RETURN(auto local, LocalBackend::Open(path, opts));
  return std::unique_ptr<Backend>(std::move(local));
}

}  // namespace fsb::repo
