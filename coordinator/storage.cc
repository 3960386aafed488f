#include "coordinator/storage.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "base/fd.h"
#include "kube/objects.h"
#include "repo/backend/s3/s3_config.h"

namespace fsb::coordinator {
namespace {

std::string Cfg(const kube::velero::BackupStorageLocation& bsl, const char* key) {
  auto it = bsl.config.find(key);
  return it == bsl.config.end() ? std::string() : it->second;
}

std::string TrimSlashes(std::string s) {
  while (!s.empty() && s.front() == '/') s.erase(s.begin());
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

Result<std::string> RecordsLocation(const kube::velero::BackupStorageLocation& bsl) {
  const std::string what = "backup storage location " + bsl.meta.Key();
  std::string provider = bsl.provider;
  if (provider.find('/') == std::string::npos) provider = "velero.io/" + provider;
  const std::string prefix = TrimSlashes(bsl.prefix);
  if (provider == "velero.io/fs") {
    const std::string root = Cfg(bsl, "fspath");
    if (root.empty() || root.front() != '/') {
      return Status::InvalidArgument(
          what +
          ": provider velero.io/fs needs config.fspath, an absolute directory, for its "
          "backup records");
    }
    return prefix.empty() ? root : (std::filesystem::path(root) / prefix).string();
  }
  const std::string s3_url = Cfg(bsl, "s3Url");
  if (provider == "velero.io/aws" || !s3_url.empty()) {
    if (bsl.bucket.empty()) {
      return Status::InvalidArgument(what + ": spec.objectStorage.bucket is required");
    }
    std::string endpoint;
    if (!s3_url.empty()) {
      endpoint = s3_url;
      while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
    } else {
      const std::string region = Cfg(bsl, "region");
      if (region.empty()) {
        return Status::InvalidArgument(what + ": config.region (or config.s3Url) is required");
      }
      endpoint = fmt::format("s3-{}.amazonaws.com", region);
    }
    return prefix.empty() ? fmt::format("s3:{}/{}", endpoint, bsl.bucket)
                          : fmt::format("s3:{}/{}/{}", endpoint, bsl.bucket, prefix);
  }
  return Status::InvalidArgument(
      fmt::format("{}: provider {} cannot hold fsb's backup records: use an S3-compatible store "
                  "(config.s3Url) or velero.io/fs with config.fspath",
                  what, bsl.provider));
}

namespace {

access::RepoTargetOptions ResolverOptions(const StorageOptions& o) {
  access::RepoTargetOptions r;
  r.ns = o.ns;
  r.scratch_dir = o.scratch_dir;
  r.credentials_file = o.credentials_file;
  return r;
}

}  // namespace

StorageLocations::StorageLocations(kube::Client& client, StorageOptions options)
    : client_(client),
      options_(std::move(options)),
      backend_options_(client, ResolverOptions(options_)) {}

Result<kube::velero::BackupStorageLocation> StorageLocations::Get(std::string_view name) {
  Result<kube::Object> obj = client_.Get(kube::kBackupStorageLocations, options_.ns, name);
  if (!obj.ok()) return obj.status();
  return kube::velero::ParseBackupStorageLocation(*obj);
}

Result<std::unique_ptr<repo::ObjectStore>> StorageLocations::OpenStore(
    const kube::velero::BackupStorageLocation& bsl) {
  FSB_ASSIGN_OR_RETURN(std::string location, RecordsLocation(bsl));
  FSB_ASSIGN_OR_RETURN(repo::BackendOptions bo, backend_options_.BackendOptionsFor(bsl));
  Result<std::unique_ptr<repo::ObjectStore>> store = repo::OpenObjectStore(location, bo);
  if (!store.ok()) {
    return store.status().WithContext("backup storage location " + bsl.meta.name);
  }
  return store;
}

}  // namespace fsb::coordinator
