// coordinator/maintenance.h: the cluster's repository upkeep, as Velero's BackupRepository and
// garbage-collection controllers do it for restic repositories (velero-fs-backup.md §4.2, §8.4):
//
// Repository maintenance. Each BackupRepository of type restic (or "", the legacy default) in
// phase Ready is maintained every spec.maintenanceFrequency (a Go duration; 168h when unset, as
// Velero for restic), counted from status.lastMaintenanceTime (none: due now): the repository is
// opened (spec.resticIdentifier, credentials and password from the BSL as the agent does),
// stale locks are removed — also, at once, those left by a pod of fsb's that no longer exists
// (a lock's hostname is its pod's name) — then prune runs under an exclusive lock. The outcome
// goes to status.recentMaintenance (Succeeded/Failed with start and completion times and a
// message, the last 3 kept) and, on success, status.lastMaintenanceTime; a failure also makes a
// Warning Event on the BackupRepository and is tried again after failure_retry. A repository that
// is locked by a running backup is tried again after busy_retry, without recording a failure.
//
// Backup GC. A Backup (of those selected by backup_label_selector: the ones fsb's coordinator
// made and handled) whose status.expiration has passed is deleted as Velero's GC and deletion
// controllers do: each of its PodVolumeBackups (label velero.io/backup-uid) with a snapshot ID has
// that snapshot forgotten in its repository (the snapshot file removed under an exclusive lock,
// as `restic forget <id>`; the data goes at the next maintenance's prune), then a Normal Event on
// the Backup records what was removed, then the PVBs and the Backup are deleted. A Backup whose
// BSL is missing or read-only is kept (Velero's rule), and so is one still New or InProgress. Any
// failure keeps the Backup and tries again after gc_retry.
//
// Timing: no polling; one thread sleeps on the Clock until the earliest due repository or
// expiring Backup, and informer events wake it. Work runs on that one thread, one item at a time
// (a long prune delays GC; both are rare). Thread-safety: Start and Stop from one owner thread.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "coordinator/clock.h"
#include "access/repo_target.h"
#include "kube/client.h"
#include "kube/informer.h"
#include "kube/objects.h"
#include "repo/lock.h"
#include "repo/prune.h"

namespace fsb::coordinator {

struct MaintenanceOptions {
  // The Velero namespace: BackupRepositories, Backups, PVBs, BSLs, secrets and fsb's pods.
  std::string ns = "velero";
  // How repositories are located and opened (its ns is set from `ns`).
  access::RepoTargetOptions repo_target;
  // Velero's default maintenance frequency for restic repositories (7 days).
  std::chrono::seconds default_frequency{168 * 3600};
  // A failed maintenance is tried again after this, not at every wake-up.
  std::chrono::seconds failure_retry{3600};
  // A repository locked by someone else (a backup running) is tried again after this.
  std::chrono::seconds busy_retry{900};
  // status.recentMaintenance entries kept (Velero's defaultMaintenanceHistoryLimit).
  size_t history_limit = 3;
  // A lock whose hostname starts with one of these names a pod of fsb's (the node-agent
  // DaemonSet, the coordinator Deployment); when no pod of that name exists in `ns` the lock can
  // never be released by its owner and is removed at once. Locks of other hosts (restic run by a
  // person) only go stale after 30 minutes.
  std::vector<std::string> holder_pod_prefixes = {"node-agent-", "fsb-coordinator-"};
  // Locks younger than this (wall-clock time, as lock files carry) are never judged by their
  // pod: the pod list is read after the locks, but a margin costs nothing.
  std::chrono::seconds holder_grace{120};
  // Prune settings (restic's defaults: --max-unused 5%). before_phase is set by the controller.
  repo::PruneOptions prune;
  // Backup GC on or off, and which Backups it considers: those fsb's coordinator handled, so
  // that a Velero server in the same cluster keeps collecting its own.
  bool gc = true;
  std::string backup_label_selector = "fsb.velero.io/coordinator=true";
  // Further narrows the Backups GC deletes (e.g. only those fsb handled, by annotation, when the
  // coordinator claims every Backup and the selector is ""). Empty: all selected. Runs on the
  // controller thread.
  std::function<bool(const kube::ObjectMeta&)> backup_filter;
  // A Backup that could not be collected (repository unreachable, BSL missing) waits this long.
  std::chrono::seconds gc_retry{3600};
  // Start waits this long for the first lists.
  std::chrono::seconds sync_timeout{30};
  // Informer resync (a safety net; changes arrive by watch). 0 = none.
  std::chrono::seconds resync{300};
  // Events' source.component.
  std::string event_component = "fsb-coordinator";
};

class MaintenanceController {
 public:
  // `client` and `clock` must outlive the controller. Does not start: call Start.
  MaintenanceController(kube::Client& client, MaintenanceOptions options, const Clock& clock);
  ~MaintenanceController();  // Stop()
  MaintenanceController(const MaintenanceController&) = delete;
  MaintenanceController& operator=(const MaintenanceController&) = delete;

  // Starts the BackupRepository and Backup informers, waits for their first lists
  // (sync_timeout; kUnavailable naming the list error, and nothing keeps running), then starts
  // the controller thread. A second call does nothing.
  Status Start();
  // Stops and joins. A prune in progress stops at its next phase (the repository stays
  // consistent, prune.h); a request in flight finishes first. Idempotent.
  void Stop();

 private:
  void Run(std::stop_token stop);
  std::optional<TimePoint> ReconcileRepository(const kube::Object& obj, TimePoint now,
                                               std::stop_token stop);
  std::optional<TimePoint> ReconcileBackup(const kube::Object& obj, TimePoint now,
                                           std::stop_token stop);
  // Removes stale locks and prunes. kFailedPrecondition from the lock when it is busy.
  Result<std::string> Maintain(const access::RepoTarget& target, std::stop_token stop);
  // Forgets `snapshot_ids` in one repository; returns how many were still there.
  Result<int> Forget(const access::RepoTarget& target, const std::vector<std::string>& snapshot_ids);
  repo::LockOptions LockOptionsForCluster();
  void RecordEvent(const kube::Object& involved, std::string_view type, std::string_view reason,
                   const std::string& message);
  void Wake();

  kube::Client& client_;
  const MaintenanceOptions options_;
  const Clock& clock_;
  access::RepoTargetResolver resolver_;
  std::unique_ptr<kube::Informer> repositories_;
  std::unique_ptr<kube::Informer> backups_;
  std::mutex mu_;
  std::stop_source wake_;  // guarded by mu_
  // Controller thread only: not before this time (busy repositories, failed GC), by object key.
  std::map<std::string, TimePoint> not_before_;
  bool started_ = false;
  std::jthread thread_;
};

}  // namespace fsb::coordinator
