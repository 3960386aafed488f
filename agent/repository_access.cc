#include "agent/repository_access.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <thread>

#include "base/fd.h"
#include "base/log.h"
#include "kube/objects.h"
#include "kube/velero.h"
#include "repo/backend/s3/s3_config.h"

namespace fsb::agent {
namespace {

constexpr std::string_view kPasswordSecret = "velero-repo-credentials";
constexpr std::string_view kPasswordKey = "repository-password";
constexpr std::string_view kClaimAnnotation = "fsb.velero.io/init-claim";
constexpr std::string_view kLabelVolumeNamespace = "velero.io/volume-namespace";
constexpr std::string_view kLabelStorageLocation = "velero.io/storage-location";
constexpr std::string_view kLabelRepositoryType = "velero.io/repository-type";

std::string Trim(std::string s) {
  while (!s.empty() &&
         (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) {
    s.pop_back();
  }
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return s.substr(i);
}

// Label values are at most 63 characters; names here are DNS labels, so this rarely cuts.
std::string LabelValue(std::string_view v) { return std::string(v.substr(0, 63)); }

// "claim holder|unix seconds"
std::string ClaimValue(const std::string& holder) {
  return fmt::format(
      "{}|{}", holder,
      std::chrono::duration_cast<std::chrono::seconds>(kube::Clock::now().time_since_epoch())
          .count());
}

bool ClaimFresh(const std::string& value, std::chrono::seconds timeout) {
  const size_t bar = value.rfind('|');
  if (bar == std::string::npos) return false;
  const long long at = std::atoll(value.c_str() + bar + 1);
  const long long now =
      std::chrono::duration_cast<std::chrono::seconds>(kube::Clock::now().time_since_epoch())
          .count();
  return now - at < timeout.count();
}

}  // namespace

RepositoryAccess::RepositoryAccess(kube::Client& client, RepositoryAccessOptions options)
    : client_(client), options_(std::move(options)) {}

Result<std::string> RepositoryAccess::WriteScratchFile(const std::string& name,
                                                       const std::string& content) {
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(options_.scratch_dir) / "fsb-credentials";
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::FromErrno(ec.value(), "create", dir.string());
  ::chmod(dir.c_str(), 0700);
  const std::string path = (dir / name).string();
  // A temp name of its own: jobs of one location resolve it at the same time, and a shared temp
  // file would be truncated under one writer and renamed away under another.
  static std::atomic<uint64_t> counter = 0;
  const std::string tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), counter++);
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return Status::FromErrno(errno, "create", tmp);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return Status::FromErrno(err, "write", tmp);
    }
    off += static_cast<size_t>(n);
  }
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno(err, "rename", path);
  }
  return path;
}

Result<RepositoryTarget> RepositoryAccess::Resolve(std::string_view bsl_name,
                                                   std::string_view volume_ns,
                                                   std::string_view explicit_identifier) {
  if (bsl_name.empty()) return Status::InvalidArgument("no backupStorageLocation given");
  if (volume_ns.empty()) return Status::InvalidArgument("no volume namespace given");
  RepositoryTarget t;
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

  // TLS and region from the BSL, as Velero passes them to restic (--cacert, --insecure-tls).
  auto cfg = [&](const char* key) -> std::string {
    auto it = bsl.config.find(key);
    return it == bsl.config.end() ? std::string() : it->second;
  };
  t.backend.insecure_tls = cfg("insecureSkipTLSVerify") == "true";
  t.backend.s3_region = cfg("region");
  if (!bsl.ca_cert.empty()) {
    FSB_ASSIGN_OR_RETURN(t.backend.ca_file,
                         WriteScratchFile("ca-" + bsl.meta.name + ".pem", bsl.ca_cert));
  }

  // Credentials: the BSL's own secret, else the mounted cloud-credentials file, else the
  // process environment (AWS_ACCESS_KEY_ID, ...). AWS_PROFILE from config.profile.
  std::string credentials_file;
  if (!bsl.credential_secret.empty()) {
    Result<kube::Object> secret = client_.Get(kube::kSecrets, options_.ns, bsl.credential_secret);
    if (!secret.ok()) {
      return secret.status().WithContext(
          fmt::format("credentials of backup storage location {}", bsl.meta.name));
    }
    Result<Secret<std::string>> value =
        kube::SecretValue(*secret, bsl.credential_key.empty() ? "cloud" : bsl.credential_key);
    if (!value.ok()) {
      return value.status().WithContext(
          fmt::format("credentials of backup storage location {}", bsl.meta.name));
    }
    FSB_ASSIGN_OR_RETURN(credentials_file,
                         WriteScratchFile("cloud-" + bsl.meta.name, value->Reveal()));
  } else if (!options_.credentials_file.empty()) {
    credentials_file = options_.credentials_file;
  }
  const std::string profile = cfg("profile");
  t.backend.env = [credentials_file,
                   profile](const std::string& name) -> std::optional<std::string> {
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

  // The password: Velero's secret, or Velero's default when it does not exist (yet).
  Result<kube::Object> pw = client_.Get(kube::kSecrets, options_.ns, kPasswordSecret);
  if (pw.ok()) {
    Result<Secret<std::string>> value = kube::SecretValue(*pw, kPasswordKey);
    if (!value.ok()) return value.status().WithContext("repository password");
    // kopia trims surrounding whitespace; so do we (a trailing newline from `kubectl create
    // secret --from-file` is the usual cause of "wrong password").
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

Result<std::unique_ptr<repo::Repository>> RepositoryAccess::TryOpen(
    const RepositoryTarget& target) {
  FSB_ASSIGN_OR_RETURN(auto backend, repo::OpenBackend(target.identifier, false, target.backend));
  FSB_ASSIGN_OR_RETURN(auto repository, repo::Repository::Open(std::move(backend), target.password,
                                                               options_.repository));
  FSB_RETURN_IF_ERROR(repository->LoadIndex().WithContext("load index"));
  return repository;
}

Result<std::unique_ptr<repo::Repository>> RepositoryAccess::Open(const RepositoryTarget& target,
                                                                 bool create,
                                                                 std::stop_token stop) {
  Result<std::unique_ptr<repo::Repository>> r = TryOpen(target);
  if (r.ok() || r.status().code() != StatusCode::kNotFound || !create) {
    if (!r.ok())
      return r.status().WithContext(fmt::format("open repository {}", target.identifier));
    return r;
  }
  if (target.read_only) {
    return Status::FailedPrecondition(
        fmt::format("repository {} does not exist and backup storage location {} is read-only",
                    target.identifier, target.bsl));
  }
  return InitOnce(target, stop);
}

Result<std::unique_ptr<repo::Repository>> RepositoryAccess::InitOnce(const RepositoryTarget& target,
                                                                     std::stop_token stop) {
  std::lock_guard lock(init_mu_);
  auto log = GetLogger("agent");
  const std::string name = fmt::format("{}-{}-restic", target.volume_namespace, target.bsl);
  const std::string selector = fmt::format(
      "{}={},{}={},{}=restic", kLabelVolumeNamespace, LabelValue(target.volume_namespace),
      kLabelStorageLocation, LabelValue(target.bsl), kLabelRepositoryType);
  const auto deadline = std::chrono::steady_clock::now() + options_.init_wait;
  while (true) {
    if (stop.stop_requested()) return Status::Cancelled("repository initialisation canceled");
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Unavailable(
          fmt::format("repository {}: still not initialised after {}s (another agent holds "
                      "BackupRepository {}/{})",
                      target.identifier, options_.init_wait.count(), options_.ns, name));
    }
    // Someone may have finished since we looked.
    Result<std::unique_ptr<repo::Repository>> opened = TryOpen(target);
    if (opened.ok()) return opened;
    if (opened.status().code() != StatusCode::kNotFound) {
      return opened.status().WithContext(fmt::format("open repository {}", target.identifier));
    }

    kube::ListOptions by_labels;
    by_labels.label_selector = selector;
    FSB_ASSIGN_OR_RETURN(kube::ObjectList found,
                         client_.List(kube::kBackupRepositories, options_.ns, by_labels));
    kube::Object br;
    if (found.items.empty()) {
      br = {{"apiVersion", "velero.io/v1"},
            {"kind", "BackupRepository"},
            {"metadata",
             {{"name", name},
              {"namespace", options_.ns},
              {"labels",
               {{std::string(kLabelVolumeNamespace), LabelValue(target.volume_namespace)},
                {std::string(kLabelStorageLocation), LabelValue(target.bsl)},
                {std::string(kLabelRepositoryType), "restic"}}},
              {"annotations", {{std::string(kClaimAnnotation), ClaimValue(options_.holder)}}}}},
            {"spec",
             {{"volumeNamespace", target.volume_namespace},
              {"backupStorageLocation", target.bsl},
              {"repositoryType", "restic"},
              {"resticIdentifier", target.identifier},
              {"maintenanceFrequency", "168h0m0s"}}},
            {"status", {{"phase", "New"}}}};
      Result<kube::Object> created = client_.Create(kube::kBackupRepositories, options_.ns, br);
      if (!created.ok()) {
        if (created.status().code() == StatusCode::kAlreadyExists)
          continue;  // lost the race: look again
        return created.status().WithContext("create BackupRepository " + name);
      }
      br = std::move(*created);
    } else {
      br = found.items.front();
      FSB_ASSIGN_OR_RETURN(kube::velero::BackupRepository parsed,
                           kube::velero::ParseBackupRepository(br));
      auto claim = parsed.meta.annotations.find(std::string(kClaimAnnotation));
      const bool claimed_by_other = claim != parsed.meta.annotations.end() &&
                                    !claim->second.starts_with(options_.holder + "|") &&
                                    ClaimFresh(claim->second, options_.claim_timeout);
      if (claimed_by_other) {
        // Wait for a change to the object (the other agent marking it Ready), on a watch.
        kube::ListOptions lo;
        lo.field_selector = "metadata.name=" + parsed.meta.name;
        std::stop_source watch_stop;
        std::stop_callback forward(stop, [&] { watch_stop.request_stop(); });
        std::jthread timer([&watch_stop](std::stop_token st) {
          std::mutex m;
          std::condition_variable_any cv;
          std::unique_lock l(m);
          cv.wait_for(l, st, std::chrono::seconds(5), [] { return false; });
          watch_stop.request_stop();
        });
        Status w = client_.Watch(
            kube::kBackupRepositories, options_.ns, lo, parsed.meta.resource_version,
            [](const kube::WatchEvent& e) {
              return e.type == kube::EventType::kBookmark ? Status::Ok()
                                                          : Status::Cancelled("changed");
            },
            watch_stop.get_token());
        w.IgnoreError();  // any end of the watch means: look again
        continue;
      }
      // Claim it: a PUT with the version we read, so only one agent wins.
      br["metadata"]["annotations"][std::string(kClaimAnnotation)] = ClaimValue(options_.holder);
      Result<kube::Object> claimed = client_.Update(kube::kBackupRepositories, options_.ns, br);
      if (!claimed.ok()) {
        if (kube::IsConflict(claimed.status())) continue;
        return claimed.status().WithContext("claim BackupRepository " + parsed.meta.name);
      }
      br = std::move(*claimed);
    }

    // We hold the claim: initialise (unless it appeared meanwhile) and mark the object Ready.
    log->info("initialising repository repo={} bsl={} ns={}", target.identifier, target.bsl,
              target.volume_namespace);
    FSB_ASSIGN_OR_RETURN(auto backend, repo::OpenBackend(target.identifier, true, target.backend));
    Result<std::unique_ptr<repo::Repository>> repository = repo::Repository::Init(
        std::move(backend), target.password, repo::InitOptions{}, options_.repository);
    if (!repository.ok() && repository.status().code() != StatusCode::kAlreadyExists) {
      return repository.status().WithContext(fmt::format("init repository {}", target.identifier));
    }
    const std::string br_name = br["metadata"].value("name", name);
    Result<kube::Object> ready = kube::UpdateWithRetry(
        client_, kube::kBackupRepositories, options_.ns, br_name, [&](kube::Object& o) {
          // Another agent may have removed the last annotation (a real server then drops the
          // map): erase() on null would throw.
          if (o["metadata"]["annotations"].is_object())
            o["metadata"]["annotations"].erase(std::string(kClaimAnnotation));
          o["spec"]["resticIdentifier"] = target.identifier;
          o["status"]["phase"] = "Ready";
          o["status"]["message"] = "";
          return Status::Ok();
        });
    if (!ready.ok()) {
      log->warn("could not mark BackupRepository ready name={} err=\"{}\"", br_name,
                ready.status().ToString());
    }
    Result<std::unique_ptr<repo::Repository>> reopened = TryOpen(target);
    if (!reopened.ok())
      return reopened.status().WithContext(fmt::format("open repository {}", target.identifier));
    return reopened;
  }
}

}  // namespace fsb::agent
