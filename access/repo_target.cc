#include "access/repo_target.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "base/fd.h"
#include "kube/objects.h"
#include "kube/velero.h"
#include "repo/backend/s3/s3_config.h"

namespace fsb::access {
namespace {

constexpr std::string_view kPasswordSecret = "velero-repo-credentials";
constexpr std::string_view kPasswordKey = "repository-password";

std::string Trim(std::string s) {
  auto space = [](char c) { return c == '\n' || c == '\r' || c == ' ' || c == '\t'; };
  while (!s.empty() && space(s.back())) s.pop_back();
  size_t i = 0;
  while (i < s.size() && space(s[i])) i++;
  return s.substr(i);
}

}  // namespace

RepoTargetResolver::RepoTargetResolver(kube::Client& client, RepoTargetOptions options)
    : client_(client), options_(std::move(options)) {}

Result<std::string> RepoTargetResolver::WriteScratchFile(const std::string& name,
                                                         const std::string& content) {
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(options_.scratch_dir) / "fsb-credentials";
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::FromErrno(ec.value(), "create", dir.string());
  if (::chmod(dir.c_str(), 0700) != 0) return Status::FromErrno(errno, "chmod", dir.string());
  const std::string path = (dir / name).string();
  // A per-thread temporary name: two resolutions of the same BSL may run at once.
  const std::string tmp = fmt::format("{}.tmp{}", path, ::gettid());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return Status::FromErrno(errno, "create", tmp);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "write", tmp);
    off += static_cast<size_t>(n);
  }
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Status::FromErrno(errno, "rename", path);
  return path;
}

Result<repo::BackendOptions> RepoTargetResolver::BackendOptionsFor(
    const kube::velero::BackupStorageLocation& bsl) {
  repo::BackendOptions bo;
  auto cfg = [&](const char* key) -> std::string {
    auto it = bsl.config.find(key);
    return it == bsl.config.end() ? std::string() : it->second;
  };
  bo.insecure_tls = cfg("insecureSkipTLSVerify") == "true";
  bo.s3_region = cfg("region");
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
  const std::string profile = cfg("profile");
  bo.env = [credentials_file, profile](const std::string& name) -> std::optional<std::string> {
    if (!credentials_file.empty()) {
      // Only the file: a stray AWS_ACCESS_KEY_ID in the pod must not win over the BSL's secret.
      if (name == "AWS_SHARED_CREDENTIALS_FILE") return credentials_file;
      if (name == "AWS_ACCESS_KEY_ID" || name == "AWS_SECRET_ACCESS_KEY" ||
          name == "AWS_SESSION_TOKEN") {
        return std::nullopt;
      }
    }
    if (name == "AWS_PROFILE" && !profile.empty()) return profile;
    return repo::ProcessEnv(name);
  };
  return bo;
}

Result<RepoTarget> RepoTargetResolver::Resolve(std::string_view bsl_name,
                                               std::string_view volume_ns,
                                               std::string_view explicit_identifier) {
  if (bsl_name.empty()) return Status::InvalidArgument("no backupStorageLocation given");
  if (volume_ns.empty() && explicit_identifier.empty()) {
    return Status::InvalidArgument("no volume namespace given");
  }
  RepoTarget t;
  t.bsl = std::string(bsl_name);
  t.volume_namespace = std::string(volume_ns);
  Result<kube::Object> bsl_obj = client_.Get(kube::kBackupStorageLocations, options_.ns, bsl_name);
  if (!bsl_obj.ok()) {
    return bsl_obj.status().WithContext(
        fmt::format("backup storage location {}/{}", options_.ns, bsl_name));
  }
  FSB_ASSIGN_OR_RETURN(kube::velero::BackupStorageLocation bsl,
                       kube::velero::ParseBackupStorageLocation(*bsl_obj));
  t.read_only = bsl.access_mode == "ReadOnly";
  if (!explicit_identifier.empty()) {
    t.identifier = std::string(explicit_identifier);
  } else {
    FSB_ASSIGN_OR_RETURN(t.identifier, kube::velero::RepoIdentifier(bsl, volume_ns));
  }
  if (t.identifier.starts_with("azure:") || t.identifier.starts_with("gs:")) {
    return Status::InvalidArgument(fmt::format(
        "repository {}: only S3-compatible and local repositories are supported", t.identifier));
  }
  FSB_ASSIGN_OR_RETURN(t.backend, BackendOptionsFor(bsl));
  Result<kube::Object> pw = client_.Get(kube::kSecrets, options_.ns, kPasswordSecret);
  if (pw.ok()) {
    Result<Secret<std::string>> value = kube::SecretValue(*pw, kPasswordKey);
    if (!value.ok()) return value.status().WithContext("repository password");
    t.password = Secret<std::string>(Trim(value->Reveal()));
    if (t.password.Reveal().empty()) {
      return Status::InvalidArgument(
          fmt::format("secret {}/{}: key {} is empty", options_.ns, kPasswordSecret, kPasswordKey));
    }
  } else if (pw.status().code() == StatusCode::kNotFound) {
    t.password = Secret<std::string>(options_.default_password);
  } else {
    return pw.status().WithContext("repository password");
  }
  return t;
}

Result<std::unique_ptr<repo::Repository>> OpenRepoTarget(const RepoTarget& target,
                                                         const repo::RepositoryOptions& options) {
  FSB_ASSIGN_OR_RETURN(auto backend, repo::OpenBackend(target.identifier, false, target.backend));
  Result<std::unique_ptr<repo::Repository>> r =
      repo::Repository::Open(std::move(backend), target.password, options);
  if (!r.ok()) return r.status().WithContext(fmt::format("open repository {}", target.identifier));
  return r;
}

}  // namespace fsb::access
