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

StorageLocations::StorageLocations(kube::Client& client, StorageOptions options)
    : client_(client), options_(std::move(options)) {}

Result<kube::velero::BackupStorageLocation> StorageLocations::Get(std::string_view name) {
  Result<kube::Object> obj = client_.Get(kube::kBackupStorageLocations, options_.ns, name);
  if (!obj.ok()) return obj.status();
  return kube::velero::ParseBackupStorageLocation(*obj);
}

Result<std::string> StorageLocations::WriteScratchFile(const std::string& name,
                                                       const std::string& content) {
  std::lock_guard lock(file_mu_);
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(options_.scratch_dir) / "fsb-credentials";
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::FromErrno(ec.value(), "create", dir.string());
  ::chmod(dir.c_str(), 0700);
  const std::string path = (dir / name).string();
  const std::string tmp = path + ".tmp";
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return Status::FromErrno(errno, "create", tmp);
  size_t off = 0;
  while (off < content.size()) {
    const ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "write", tmp);
    off += static_cast<size_t>(n);
  }
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Status::FromErrno(errno, "rename", path);
  return path;
}

Result<std::unique_ptr<repo::ObjectStore>> StorageLocations::OpenStore(
    const kube::velero::BackupStorageLocation& bsl) {
  FSB_ASSIGN_OR_RETURN(std::string location, RecordsLocation(bsl));
  repo::BackendOptions bo;
  bo.insecure_tls = Cfg(bsl, "insecureSkipTLSVerify") == "true";
  bo.s3_region = Cfg(bsl, "region");
  if (!bsl.ca_cert.empty()) {
    FSB_ASSIGN_OR_RETURN(bo.ca_file, WriteScratchFile("ca-" + bsl.meta.name + ".pem", bsl.ca_cert));
  }
  std::string credentials_file;
  if (!bsl.credential_secret.empty()) {
    const std::string what =
        fmt::format("credentials of backup storage location {}", bsl.meta.name);
    Result<kube::Object> secret = client_.Get(kube::kSecrets, options_.ns, bsl.credential_secret);
    if (!secret.ok()) return secret.status().WithContext(what);
    Result<Secret<std::string>> value =
        kube::SecretValue(*secret, bsl.credential_key.empty() ? "cloud" : bsl.credential_key);
    if (!value.ok()) return value.status().WithContext(what);
    FSB_ASSIGN_OR_RETURN(credentials_file,
                         WriteScratchFile("cloud-" + bsl.meta.name, value->Reveal()));
  } else if (!options_.credentials_file.empty()) {
    credentials_file = options_.credentials_file;
  }
  const std::string profile = Cfg(bsl, "profile");
  bo.env = [credentials_file, profile](const std::string& name) -> std::optional<std::string> {
    if (!credentials_file.empty()) {
      if (name == "AWS_SHARED_CREDENTIALS_FILE") return credentials_file;
      if (name == "AWS_ACCESS_KEY_ID" || name == "AWS_SECRET_ACCESS_KEY" ||
          name == "AWS_SESSION_TOKEN") {
        return std::nullopt;
      }
    }
    if (name == "AWS_PROFILE" && !profile.empty()) return profile;
    return repo::ProcessEnv(name);
  };
  Result<std::unique_ptr<repo::ObjectStore>> store = repo::OpenObjectStore(location, bo);
  if (!store.ok()) {
    return store.status().WithContext("backup storage location " + bsl.meta.name);
  }
  return store;
}

}  // namespace fsb::coordinator
