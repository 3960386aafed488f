// access/repo_target.h: from a BackupStorageLocation and a volume namespace to what opening
// its restic repository needs: the location (an explicit identifier, else Velero's rules from the
// BSL, velero-fs-backup.md §4.3), TLS settings and object-store credentials from the BSL (its
// credential secret, written to a 0600 file, else the mounted credentials file, else the
// process environment), and the repository password (secret velero-repo-credentials, §4.4).
// Shared by the node agent and the coordinator (its own module, over kube/ and repo/, because
// neither may include the other), so both resolve a repository the same way.
// Safe for concurrent use (scratch files are written whole and renamed into place).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/secret.h"
#include "base/status.h"
#include "kube/client.h"
#include "kube/velero.h"
#include "repo/backend/open.h"
#include "repo/repository.h"

namespace fsb::access {

struct RepoTargetOptions {
  std::string ns = "velero";  // the Velero namespace: BSLs and secrets
  // Where per-BSL credential and CA files are written (0600, in a 0700 directory).
  std::string scratch_dir = "/scratch";
  // The mounted cloud-credentials file for BSLs without spec.credential (Velero's
  // AWS_SHARED_CREDENTIALS_FILE=/credentials/cloud); empty: the process environment only.
  std::string credentials_file;
  // Velero's default repository password when velero-repo-credentials does not exist (§4.4).
  std::string default_password = "static-passw0rd";
};

struct RepoTarget {
  std::string identifier;  // "s3:http://minio:9000/velero/restic/app" or a local path
  repo::BackendOptions backend;
  Secret<std::string> password;
  std::string bsl;
  std::string volume_namespace;
  bool read_only = false;  // the BSL's accessMode is ReadOnly
};

class RepoTargetResolver {
 public:
  // `client` must outlive the resolver.
  RepoTargetResolver(kube::Client& client, RepoTargetOptions options);

  // `explicit_identifier` (BackupRepository spec.resticIdentifier, PVB spec.repoIdentifier) wins
  // when non-empty. Errors name the BSL or secret (kNotFound when missing, kInvalidArgument when
  // malformed, e.g. azure/gcp repositories, which fsb does not open), never a secret's value.
  // How to reach `bsl`'s object store: TLS (caCert written to a 0600 scratch file,
  // insecureSkipTLSVerify), region, and credentials (the BSL's credential secret written to a
  // scratch file, else the mounted credentials file, else the process environment; AWS_PROFILE from
  // config.profile). Used for repositories and for the coordinator's records alike.
  Result<repo::BackendOptions> BackendOptionsFor(const kube::velero::BackupStorageLocation& bsl);

  Result<RepoTarget> Resolve(std::string_view bsl_name, std::string_view volume_ns,
                             std::string_view explicit_identifier);

 private:
  Result<std::string> WriteScratchFile(const std::string& name, const std::string& content);

  kube::Client& client_;
  const RepoTargetOptions options_;
};

// Opens the repository of `target` (without loading the index). kNotFound when there is none.
Result<std::unique_ptr<repo::Repository>> OpenRepoTarget(
    const RepoTarget& target, const repo::RepositoryOptions& options = {});

}  // namespace fsb::access
