// coordinator/storage.h: from a BackupStorageLocation to the object store holding its records
// (`backups/<backup>/...`). Where the records of a BSL live:
//   - provider velero.io/fs (or "fs"): the local directory config.fspath (absolute), joined with
//     objectStorage.prefix, as Velero's filesystem backend does;
//   - any BSL with config.s3Url, or provider aws: "s3:<s3Url>/<bucket>/<prefix>" (or the regional
//     AWS endpoint from config.region), the same bucket and prefix the restic repositories of
//     the BSL live under (`<prefix>/restic/<ns>`), as Velero's layout;
//   - anything else (azure, gcp, a local config.resticRepoPrefix without config.fspath):
//     kInvalidArgument saying what to set.
// Credentials as the agent resolves them: the BSL's spec.credential secret (written to a 0600
// file in the scratch directory), else the mounted credentials file, else the environment.
// Safe for concurrent use.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "access/repo_target.h"
#include "base/status.h"
#include "kube/client.h"
#include "kube/velero.h"
#include "repo/backend/object_store.h"

namespace fsb::coordinator {

struct StorageOptions {
  std::string ns = "velero";  // where BSLs and their secrets live
  // Per-BSL credential and CA files (0600) are written here.
  std::string scratch_dir = "/tmp/fsb-coordinator";
  // The mounted cloud-credentials file used when a BSL has no spec.credential; empty: the
  // process environment.
  std::string credentials_file;
};

// The record store location of `bsl` (see the file comment); kInvalidArgument naming the BSL.
Result<std::string> RecordsLocation(const kube::velero::BackupStorageLocation& bsl);

class StorageLocations {
 public:
  // `client` must outlive this object.
  StorageLocations(kube::Client& client, StorageOptions options);

  // The BSL named `name` (kNotFound with the API server's message when absent).
  Result<kube::velero::BackupStorageLocation> Get(std::string_view name);
  // The record store of `bsl`. Errors name the BSL or the secret, never a secret's value.
  Result<std::unique_ptr<repo::ObjectStore>> OpenStore(
      const kube::velero::BackupStorageLocation& bsl);

 private:
  kube::Client& client_;
  const StorageOptions options_;
  access::RepoTargetResolver backend_options_;  // BSL → TLS and credentials, as for repositories
};

}  // namespace fsb::coordinator
