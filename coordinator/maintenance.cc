#include "coordinator/maintenance.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "base/log.h"
#include "base/go_duration.h"
#include "kube/objects.h"
#include "kube/velero.h"

namespace fsb::coordinator {
namespace {

constexpr std::string_view kMaintenanceSucceeded = "Succeeded";
constexpr std::string_view kMaintenanceFailed = "Failed";

const kube::Object& Sub(const kube::Object& obj, const char* key) {
  static const kube::Object kEmpty = kube::Object::object();
  auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? *it : kEmpty;
}

std::string Str(const kube::Object& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<TimePoint> OptTime(const std::optional<std::string>& s) {
  if (!s || s->empty()) return std::nullopt;
  Result<TimePoint> t = kube::ParseTime(*s);
  if (!t.ok()) return std::nullopt;
  return *t;
}

kube::Object InvolvedObject(const kube::Object& obj, const kube::ObjectMeta& meta) {
  return {{"apiVersion", Str(obj, "apiVersion").empty() ? "velero.io/v1" : Str(obj, "apiVersion")},
          {"kind", Str(obj, "kind")},
          {"name", meta.name},
          {"namespace", meta.ns},
          {"uid", meta.uid},
          {"resourceVersion", meta.resource_version}};
}

std::string SecondsText(TimePoint t) { return kube::FormatTime(t); }

}  // namespace

MaintenanceController::MaintenanceController(kube::Client& client, MaintenanceOptions options,
                                             const Clock& clock)
    : client_(client), options_(std::move(options)), clock_(clock), resolver_(client, [this] {
        access::RepoTargetOptions o = options_.repo_target;
        o.ns = options_.ns;
        return o;
      }()) {}

MaintenanceController::~MaintenanceController() { Stop(); }

Status MaintenanceController::Start() {
  if (started_) return Status::Ok();
  kube::InformerOptions ro;
  ro.ns = options_.ns;
  ro.resync = options_.resync;
  auto wake = [this](kube::EventType, const kube::Object&) { Wake(); };
  repositories_ = std::make_unique<kube::Informer>(client_, kube::kBackupRepositories, ro, wake);
  repositories_->Start();
  if (options_.gc) {
    kube::InformerOptions bo = ro;
    bo.list.label_selector = options_.backup_label_selector;
    backups_ = std::make_unique<kube::Informer>(client_, kube::kBackups, bo, wake);
    backups_->Start();
  }
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options_.sync_timeout);
  const bool synced =
      repositories_->WaitForSync(timeout) && (!backups_ || backups_->WaitForSync(timeout));
  if (!synced) {
    Status why = repositories_->last_error();
    if (why.ok() && backups_) why = backups_->last_error();
    Stop();
    return Status::Unavailable(fmt::format(
        "maintenance controller: no list of backup repositories and backups within {}s: {}",
        options_.sync_timeout.count(), why.ToString()));
  }
  started_ = true;
  thread_ = std::jthread([this](std::stop_token st) { Run(st); });
  return Status::Ok();
}

void MaintenanceController::Stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
  if (repositories_) repositories_->Stop();
  if (backups_) backups_->Stop();
  started_ = false;
}

void MaintenanceController::Wake() {
  std::lock_guard lock(mu_);
  wake_.request_stop();
}

void MaintenanceController::Run(std::stop_token stop) {
  auto log = GetLogger("coordinator");
  log->info("maintenance controller started ns={} gc={}", options_.ns, options_.gc);
  while (!stop.stop_requested()) {
    std::stop_token woken;
    {
      std::lock_guard lock(mu_);
      wake_ = std::stop_source();
      woken = wake_.get_token();
    }
    std::optional<TimePoint> next;
    auto consider = [&next](std::optional<TimePoint> t) {
      if (t && (!next || *t < *next)) next = t;
    };
    for (const kube::Object& obj : repositories_->List()) {
      if (stop.stop_requested()) break;
      consider(ReconcileRepository(obj, clock_.Now(), stop));
    }
    if (backups_) {
      for (const kube::Object& obj : backups_->List()) {
        if (stop.stop_requested()) break;
        consider(ReconcileBackup(obj, clock_.Now(), stop));
      }
    }
    std::stop_source either;
    std::stop_callback on_stop(stop, [&either] { either.request_stop(); });
    std::stop_callback on_wake(woken, [&either] { either.request_stop(); });
    clock_.SleepUntil(next.value_or(TimePoint::max()), either.get_token());
  }
  log->info("maintenance controller stopped ns={}", options_.ns);
}

repo::LockOptions MaintenanceController::LockOptionsForCluster() {
  // The pod names are read once, on the first question, which RemoveLocks and Acquire only ask
  // after listing the locks: a pod that wrote a lock existed before the pod list was read.
  // Shared by the copies of the LockOptions (RepoLock keeps one), all within one call here.
  struct Pods {
    std::once_flag once;
    bool ok = false;
    std::set<std::string> names;
  };
  auto pods = std::make_shared<Pods>();
  repo::LockOptions o;
  o.is_stale_holder = [this, pods](const repo::LockInfo& l) {
    const bool ours =
        std::any_of(options_.holder_pod_prefixes.begin(), options_.holder_pod_prefixes.end(),
                    [&](const std::string& p) { return !p.empty() && l.hostname.starts_with(p); });
    if (!ours) return false;
    const int64_t now_sec = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
    if (now_sec - l.time.sec < options_.holder_grace.count()) return false;
    std::call_once(pods->once, [&] {
      Result<kube::ObjectList> list = client_.List(kube::kPods, options_.ns);
      if (!list.ok()) {
        GetLogger("coordinator")
            ->warn("cannot list pods to judge repository locks ns={} err=\"{}\"", options_.ns,
                   list.status().ToString());
        return;
      }
      for (const kube::Object& p : list->items) {
        Result<kube::ObjectMeta> meta = kube::ParseMeta(p);
        if (meta.ok()) pods->names.insert(meta->name);
      }
      pods->ok = true;
    });
    const bool gone = pods->ok && !pods->names.contains(l.hostname);
    if (gone) {
      GetLogger("coordinator")
          ->info("repository lock of a pod that no longer exists pod={} pid={}", l.hostname, l.pid);
    }
    return gone;
  };
  return o;
}

Result<std::string> MaintenanceController::Maintain(const access::RepoTarget& target,
                                                    std::stop_token stop) {
  FSB_ASSIGN_OR_RETURN(auto repository, access::OpenRepoTarget(target));
  const repo::LockOptions lock_options = LockOptionsForCluster();
  Result<int> removed = repo::RemoveLocks(*repository, false, lock_options);
  if (!removed.ok()) return removed.status().WithContext("remove stale locks");
  FSB_ASSIGN_OR_RETURN(std::unique_ptr<repo::RepoLock> lock,
                       repo::RepoLock::Acquire(*repository, true, lock_options));
  repo::PruneOptions prune = options_.prune;
  repo::RepoLock* held = lock.get();
  prune.before_phase = [held, stop](repo::PrunePhase) -> Status {
    if (stop.stop_requested()) return Status::Cancelled("maintenance stopped");
    return held->Valid();
  };
  repo::PruneStats stats;
  Result<repo::PruneResult> pruned = repo::Prune(*repository, std::move(prune), &stats);
  if (!pruned.ok()) return pruned.status().WithContext("prune");
  std::string message = fmt::format(
      "removed {} stale lock(s); prune: {} snapshot(s), {} pack(s) deleted, {} blob(s) repacked "
      "into {} pack(s), {} bytes freed",
      *removed, stats.snapshots, pruned->packs_removed + pruned->unreferenced_removed,
      pruned->blobs_repacked, pruned->packs_written, stats.prune_bytes());
  if (!pruned->remove_errors.empty()) {
    message += fmt::format("; {} deletion(s) failed (the next prune retries)",
                           pruned->remove_errors.size());
  }
  return message;
}

std::optional<TimePoint> MaintenanceController::ReconcileRepository(const kube::Object& obj,
                                                                    TimePoint now,
                                                                    std::stop_token stop) {
  auto log = GetLogger("coordinator");
  Result<kube::velero::BackupRepository> parsed = kube::velero::ParseBackupRepository(obj);
  if (!parsed.ok()) {
    log->warn("malformed backup repository err=\"{}\"", parsed.status().ToString());
    return std::nullopt;
  }
  const kube::velero::BackupRepository& br = *parsed;
  if (br.meta.deletion_timestamp) return std::nullopt;
  if (br.repository_type != "restic" && !br.repository_type.empty()) return std::nullopt;  // kopia
  if (br.phase != "Ready") return std::nullopt;  // the agent initialises; we only maintain
  const std::string key = "repo/" + br.meta.Key();

  std::chrono::nanoseconds frequency = options_.default_frequency;
  if (!br.maintenance_frequency.empty()) {
    Result<std::chrono::nanoseconds> f = ParseGoDuration(br.maintenance_frequency);
    if (f.ok() && f->count() > 0) {
      frequency = *f;
    } else {
      log->warn("bad maintenance frequency, using the default repo={} frequency=\"{}\"",
                br.meta.Key(), br.maintenance_frequency);
    }
  }
  const std::optional<TimePoint> last = OptTime(br.last_maintenance_time);
  TimePoint due = last ? *last + std::chrono::duration_cast<TimePoint::duration>(frequency) : now;
  // A failure is retried after failure_retry (status.recentMaintenance survives a restart).
  const kube::Object& status = Sub(obj, "status");
  kube::Object history = kube::Object::array();
  if (auto it = status.find("recentMaintenance"); it != status.end() && it->is_array()) {
    history = *it;
  }
  if (!history.empty() && history.back().is_object() &&
      Str(history.back(), "result") == kMaintenanceFailed) {
    if (auto failed_at = OptTime(Str(history.back(), "completeTimestamp"))) {
      due = std::max(due, *failed_at + options_.failure_retry);
    }
  }
  if (auto nb = not_before_.find(key); nb != not_before_.end()) due = std::max(due, nb->second);
  if (due > now) return due;

  const TimePoint start = clock_.Now();
  log->info("repository maintenance starting repo={} bsl={} ns={}", br.meta.Key(),
            br.backup_storage_location, br.volume_namespace);
  Result<access::RepoTarget> target =
      resolver_.Resolve(br.backup_storage_location, br.volume_namespace, br.restic_identifier);
  Result<std::string> outcome = target.ok() ? Result<std::string>(Status::Internal("unset"))
                                            : Result<std::string>(target.status());
  if (target.ok()) {
    if (target->read_only) {
      log->info("repository maintenance skipped: read-only storage location repo={} bsl={}",
                br.meta.Key(), br.backup_storage_location);
      not_before_[key] = now + std::chrono::duration_cast<TimePoint::duration>(frequency);
      return not_before_[key];
    }
    outcome = Maintain(*target, stop);
  }
  if (!outcome.ok() && outcome.status().code() == StatusCode::kFailedPrecondition &&
      outcome.status().message().find("locked") != std::string::npos) {
    log->info("repository busy, maintenance postponed repo={} err=\"{}\"", br.meta.Key(),
              outcome.status().message());
    not_before_[key] = now + options_.busy_retry;
    return not_before_[key];
  }
  if (!outcome.ok() && outcome.status().code() == StatusCode::kCancelled) return std::nullopt;
  not_before_.erase(key);
  const TimePoint complete = clock_.Now();
  kube::Object entry = {{"result", outcome.ok() ? kMaintenanceSucceeded : kMaintenanceFailed},
                        {"startTimestamp", SecondsText(start)},
                        {"completeTimestamp", SecondsText(complete)},
                        {"message", outcome.ok() ? *outcome : outcome.status().ToString()}};
  history.push_back(entry);
  while (history.size() > options_.history_limit) history.erase(history.begin());
  kube::Object patch = {{"status", {{"recentMaintenance", history}}}};
  if (outcome.ok()) {
    patch["status"]["lastMaintenanceTime"] = SecondsText(complete);
    log->info("repository maintenance succeeded repo={} {}", br.meta.Key(), *outcome);
  } else {
    log->error("repository maintenance failed repo={} err=\"{}\"", br.meta.Key(),
               outcome.status().ToString());
    RecordEvent(InvolvedObject(obj, br.meta), "Warning", "MaintenanceFailed",
                "repository maintenance failed: " + outcome.status().ToString());
  }
  Result<kube::Object> r =
      client_.MergePatch(kube::kBackupRepositories, br.meta.ns, br.meta.name, patch);
  if (!r.ok()) {
    log->warn("backup repository status patch failed repo={} err=\"{}\"", br.meta.Key(),
              r.status().ToString());
    // Do not run again at once: the repository was just maintained.
    not_before_[key] = now + options_.failure_retry;
    return not_before_[key];
  }
  return outcome.ok() ? complete + std::chrono::duration_cast<TimePoint::duration>(frequency)
                      : complete + options_.failure_retry;
}

Result<int> MaintenanceController::Forget(const access::RepoTarget& target,
                                          const std::vector<std::string>& snapshot_ids) {
  Result<std::unique_ptr<repo::Repository>> repository = access::OpenRepoTarget(target);
  if (!repository.ok()) {
    // No repository: nothing of this backup is stored there any more.
    if (repository.status().code() == StatusCode::kNotFound) return 0;
    return repository.status();
  }
  // restic forget takes an exclusive lock.
  FSB_ASSIGN_OR_RETURN(std::unique_ptr<repo::RepoLock> lock,
                       repo::RepoLock::Acquire(**repository, true, LockOptionsForCluster()));
  int forgotten = 0;
  for (const std::string& ref : snapshot_ids) {
    Result<repo::Id> id = (*repository)->FindSnapshot(ref);
    if (!id.ok()) {
      if (id.status().code() == StatusCode::kNotFound) continue;  // forgotten before
      return id.status().WithContext("snapshot " + ref);
    }
    FSB_RETURN_IF_ERROR(lock->Valid());
    Status s = (*repository)->backend().Remove(repo::Handle{repo::FileType::kSnapshot, id->Hex()});
    if (!s.ok() && s.code() != StatusCode::kNotFound) {
      return s.WithContext("remove snapshot " + id->Short());
    }
    forgotten++;
  }
  return forgotten;
}

std::optional<TimePoint> MaintenanceController::ReconcileBackup(const kube::Object& obj,
                                                                TimePoint now,
                                                                std::stop_token stop) {
  auto log = GetLogger("coordinator");
  Result<kube::ObjectMeta> meta = kube::ParseMeta(obj);
  if (!meta.ok()) return std::nullopt;
  if (meta->deletion_timestamp) return std::nullopt;
  if (options_.backup_filter && !options_.backup_filter(*meta)) return std::nullopt;
  const kube::Object& status = Sub(obj, "status");
  const std::optional<TimePoint> expiration = OptTime(Str(status, "expiration"));
  if (!expiration) return std::nullopt;
  if (*expiration > now) return expiration;
  const std::string key = "backup/" + meta->Key();
  if (auto nb = not_before_.find(key); nb != not_before_.end() && nb->second > now) {
    return nb->second;
  }
  auto retry = [&](const std::string& why) {
    log->warn("expired backup kept for now backup={} err=\"{}\"", meta->Key(), why);
    not_before_[key] = now + options_.gc_retry;
    return std::optional<TimePoint>(not_before_[key]);
  };
  const std::string phase = Str(status, "phase");
  if (phase.empty() || phase == "New" || phase == "InProgress") {
    return retry("backup is still in progress");
  }
  // Velero's GC: a missing or read-only storage location keeps the backup.
  const std::string location = Str(Sub(obj, "spec"), "storageLocation");
  if (!location.empty()) {
    Result<kube::Object> bsl_obj =
        client_.Get(kube::kBackupStorageLocations, options_.ns, location);
    if (!bsl_obj.ok()) return retry("backup storage location: " + bsl_obj.status().ToString());
    Result<kube::velero::BackupStorageLocation> bsl =
        kube::velero::ParseBackupStorageLocation(*bsl_obj);
    if (!bsl.ok()) return retry(bsl.status().ToString());
    if (bsl->access_mode == "ReadOnly") {
      return retry("backup storage location " + location + " is read-only");
    }
  }
  // Its PVBs, grouped by repository.
  kube::ListOptions by_uid;
  by_uid.label_selector = fmt::format("{}={}", kube::velero::kLabelBackupUid, meta->uid);
  Result<kube::ObjectList> pvbs = client_.List(kube::kPodVolumeBackups, options_.ns, by_uid);
  if (!pvbs.ok()) return retry("list pod volume backups: " + pvbs.status().ToString());
  using RepoKey = std::tuple<std::string, std::string, std::string>;  // bsl, namespace, identifier
  std::map<RepoKey, std::vector<std::string>> snapshots;
  std::vector<std::string> pvb_names;
  for (const kube::Object& o : pvbs->items) {
    Result<kube::velero::PodVolumeBackup> pvb = kube::velero::ParsePodVolumeBackup(o);
    if (!pvb.ok()) return retry(pvb.status().ToString());
    pvb_names.push_back(pvb->meta.name);
    if (pvb->snapshot_id.empty()) continue;
    snapshots[{pvb->backup_storage_location, pvb->pod.ns, pvb->repo_identifier}].push_back(
        pvb->snapshot_id);
  }
  std::vector<std::string> forgotten_text;
  int forgotten = 0;
  for (const auto& [rk, ids] : snapshots) {
    if (stop.stop_requested()) return std::nullopt;
    const auto& [bsl, volume_ns, identifier] = rk;
    Result<access::RepoTarget> target = resolver_.Resolve(bsl, volume_ns, identifier);
    if (!target.ok()) return retry(target.status().ToString());
    Result<int> n = Forget(*target, ids);
    if (!n.ok())
      return retry(fmt::format("forget in {}: {}", target->identifier, n.status().ToString()));
    forgotten += *n;
    forgotten_text.push_back(fmt::format("{} ({})", target->identifier, fmt::join(ids, ", ")));
  }
  const std::string message = fmt::format(
      "backup expired at {}: forgot {} snapshot(s){}{}; deleting {} PodVolumeBackup(s) and the "
      "backup",
      kube::FormatTime(*expiration), forgotten, forgotten_text.empty() ? "" : " in ",
      fmt::join(forgotten_text, "; "), pvb_names.size());
  log->info("garbage-collecting expired backup backup={} {}", meta->Key(), message);
  RecordEvent(InvolvedObject(obj, *meta), "Normal", "BackupExpired", message);
  for (const std::string& name : pvb_names) {
    Status s = client_.Delete(kube::kPodVolumeBackups, options_.ns, name);
    if (!s.ok() && s.code() != StatusCode::kNotFound) {
      return retry(fmt::format("delete pod volume backup {}: {}", name, s.ToString()));
    }
  }
  Status s = client_.Delete(kube::kBackups, meta->ns, meta->name);
  if (!s.ok() && s.code() != StatusCode::kNotFound) return retry("delete: " + s.ToString());
  not_before_.erase(key);
  return std::nullopt;
}

void MaintenanceController::RecordEvent(const kube::Object& involved, std::string_view type,
                                        std::string_view reason, const std::string& message) {
  const std::string now = kube::FormatTime(clock_.Now());
  const std::string name = involved.value("name", std::string("fsb"));
  const std::string ns = involved.value("namespace", options_.ns);
  kube::Object event = {{"apiVersion", "v1"},
                        {"kind", "Event"},
                        {"metadata", {{"generateName", name + "."}, {"namespace", ns}}},
                        {"involvedObject", involved},
                        {"type", type},
                        {"reason", reason},
                        {"message", message.substr(0, 1024)},
                        {"count", 1},
                        {"firstTimestamp", now},
                        {"lastTimestamp", now},
                        {"source", {{"component", options_.event_component}}},
                        {"reportingComponent", options_.event_component}};
  Result<kube::Object> r = client_.Create(kube::kEvents, ns, event);
  if (!r.ok()) {
    GetLogger("coordinator")
        ->warn("event not recorded object={}/{} reason={} err=\"{}\"", ns, name, reason,
               r.status().ToString());
  }
}

}  // namespace fsb::coordinator
