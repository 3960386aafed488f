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

constexpr std::string_view kClaimAnnotation = "fsb.velero.io/init-claim";
constexpr std::string_view kLabelVolumeNamespace = "velero.io/volume-namespace";
constexpr std::string_view kLabelStorageLocation = "velero.io/storage-location";
constexpr std::string_view kLabelRepositoryType = "velero.io/repository-type";

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

access::RepoTargetOptions ResolverOptions(const RepositoryAccessOptions& o) {
  access::RepoTargetOptions r;
  r.ns = o.ns;
  r.scratch_dir = o.scratch_dir;
  r.credentials_file = o.credentials_file;
  r.default_password = o.default_password;
  return r;
}

}  // namespace

RepositoryAccess::RepositoryAccess(kube::Client& client, RepositoryAccessOptions options)
    : client_(client), options_(std::move(options)), resolver_(client, ResolverOptions(options_)) {}

Result<RepositoryTarget> RepositoryAccess::Resolve(std::string_view bsl_name,
                                                   std::string_view volume_ns,
                                                   std::string_view explicit_identifier) {
  if (volume_ns.empty()) return Status::InvalidArgument("no volume namespace given");
  return resolver_.Resolve(bsl_name, volume_ns, explicit_identifier);
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
