// agent/repository_access.h: from a PodVolumeBackup/Restore's BackupStorageLocation and volume
// namespace to an open restic repository: the location (spec.repoIdentifier, else Velero's rules
// from the BSL, velero-fs-backup.md §4.3), object-store credentials and CA from the BSL's
// credential secret or the agent's mounted credentials file (§4.3), and the repository password
// (secret velero-repo-credentials, §4.4). A missing repository is initialised exactly once even
// when agents on several nodes back up the first volumes of a namespace at the same time: the
// agent that creates (or claims, with optimistic concurrency) the namespace's BackupRepository
// initialises it, the others wait on a watch until it is Ready.
// Safe for concurrent use.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>

#include "access/repo_target.h"
#include "base/secret.h"
#include "base/status.h"
#include "kube/client.h"
#include "repo/backend/open.h"
#include "repo/repository.h"

namespace fsb::agent {

struct RepositoryAccessOptions {
  std::string ns = "velero";  // the Velero namespace: BSLs, secrets, BackupRepositories
  // Where per-BSL credential and CA files are written (0600); Velero's scratch directory.
  std::string scratch_dir = "/scratch";
  // The mounted cloud-credentials file used when a BSL has no spec.credential (Velero's
  // AWS_SHARED_CREDENTIALS_FILE=/credentials/cloud); empty: the process environment only.
  std::string credentials_file;
  // Velero's server creates velero-repo-credentials with this value when it is missing (§4.4);
  // the agent uses it in that case too, so repositories stay readable by Velero and restic.
  std::string default_password = "static-passw0rd";
  // Who claims a repository initialisation (the node name), for the claim annotation and logs.
  std::string holder;
  // A claim older than this is taken over (its agent died mid-init). Init is a few requests.
  std::chrono::seconds claim_timeout{120};
  // How long a waiting agent waits for another's initialisation before failing.
  std::chrono::seconds init_wait{300};
  repo::RepositoryOptions repository;
};

// The BSL → repository resolution is shared with the coordinator (access/repo_target.h).
using RepositoryTarget = access::RepoTarget;

class RepositoryAccess {
 public:
  // `client` must outlive this object.
  RepositoryAccess(kube::Client& client, RepositoryAccessOptions options);

  // Resolves everything needed to open the repository of `volume_ns` in BSL `bsl_name`;
  // `explicit_identifier` (spec.repoIdentifier) wins when non-empty. Errors name the BSL or the
  // secret (kNotFound when missing, kInvalidArgument when malformed), never a secret's value.
  Result<RepositoryTarget> Resolve(std::string_view bsl_name, std::string_view volume_ns,
                                   std::string_view explicit_identifier);

  // Opens the repository and loads its index. When it does not exist yet and `create` is true
  // (backups), initialises it once across agents (see the file comment); a restore of a missing
  // repository is kNotFound. Blocks; `stop` cuts a wait short (kCancelled).
  Result<std::unique_ptr<repo::Repository>> Open(const RepositoryTarget& target, bool create,
                                                 std::stop_token stop);

 private:
  Result<std::unique_ptr<repo::Repository>> TryOpen(const RepositoryTarget& target);
  Result<std::unique_ptr<repo::Repository>> InitOnce(const RepositoryTarget& target,
                                                     std::stop_token stop);

  kube::Client& client_;
  const RepositoryAccessOptions options_;
  access::RepoTargetResolver resolver_;
  std::mutex init_mu_;  // one initialisation at a time in this agent
};

}  // namespace fsb::agent
