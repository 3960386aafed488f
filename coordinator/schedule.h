// coordinator/schedule.h: Velero's Schedule controller (velero.io/v1 Schedule, as Velero's
// pkg/controller/schedule_controller.go): validates each Schedule's cron expression (phase
// Enabled, or FailedValidation with status.validationErrors), and when it is due creates a Backup
// from spec.template named "<schedule>-<YYYYMMDDhhmmss>" (UTC), labelled
// velero.io/schedule-name, then records status.lastBackup.
//
// Timing: no polling. One thread sleeps (on the Clock) until the earliest due Schedule, and an
// informer event on a Schedule or on a Backup of a Schedule wakes it early. A Schedule is due at
// cron.NextAfter(base), where base is status.lastBackup (else metadata.creationTimestamp), or
// status.lastSkipped when later, as Velero. Missed runs are not caught up one by one: when one or
// more were missed (the coordinator was down), one Backup is made at once for the latest of them.
//
// No duplicate Backups: the Backup is named after the activation time it stands for (not after
// "now", as Velero does), so a coordinator that restarts between creating the Backup and
// recording status.lastBackup makes the same name again, the API server answers AlreadyExists,
// and that counts as done. status.lastBackup holds that activation time.
//
// Differences from Velero, on purpose: a Schedule in FailedValidation is validated again on each
// change (Velero ignores it forever, so fixing the cron expression had no effect); an expression
// that never fires ("0 0 30 2 *") makes no Backups (Velero fired on every resync); the Backup's
// annotations are the Schedule's without kubectl's last-applied-configuration.
//
// Thread-safety: Start and Stop from one owner thread; the work runs on the controller's own
// thread and informer threads.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include "base/status.h"
#include "coordinator/clock.h"
#include "kube/client.h"
#include "kube/informer.h"

namespace fsb::coordinator {

inline constexpr std::string_view kLabelScheduleName = "velero.io/schedule-name";
inline constexpr std::string_view kSchedulePhaseNew = "New";
inline constexpr std::string_view kSchedulePhaseEnabled = "Enabled";
inline constexpr std::string_view kSchedulePhaseFailedValidation = "FailedValidation";

struct ScheduleOptions {
  // The Velero namespace: Schedules are read, and their Backups made, here.
  std::string ns = "velero";
  // Put on every Backup this controller makes, so that fsb's Backup controller claims it (and a
  // Velero server, if one runs, can be told apart). Wire the coordinator core's claim marker.
  std::map<std::string, std::string> backup_labels = {{"fsb.velero.io/coordinator", "true"}};
  // Velero's --schedule-skip-immediately: a Schedule without spec.skipImmediately that becomes
  // due at once (new or unpaused) skips that run.
  bool skip_immediately = false;
  // Velero ≥ 1.12: no new Backup while one of the same Schedule is still New or InProgress
  // (overlapping file-system backups of the same volumes only slow each other down); the run
  // happens when that Backup ends, if still due.
  bool skip_while_backup_running = true;
  // After a failed API call (create, patch), look at the Schedule again this much later (Clock
  // time).
  std::chrono::seconds retry_after{30};
  // How long Start waits for the first list of Schedules and Backups.
  std::chrono::seconds sync_timeout{30};
  // Passed to the informers; 0 = none. Only a safety net: every change arrives by watch.
  std::chrono::seconds resync{300};
};

class ScheduleController {
 public:
  // `client` and `clock` must outlive the controller. Does not start: call Start.
  ScheduleController(kube::Client& client, ScheduleOptions options, const Clock& clock);
  ~ScheduleController();  // Stop()
  ScheduleController(const ScheduleController&) = delete;
  ScheduleController& operator=(const ScheduleController&) = delete;

  // Starts the Schedule and Backup informers, waits for their first list (sync_timeout), then
  // starts the controller thread. kUnavailable naming the list error when the informers do not
  // sync in time (nothing keeps running then). A second call does nothing.
  Status Start();
  // Stops the thread and the informers and joins them; a request in flight finishes first
  // (bounded by the client's request timeout). Idempotent.
  void Stop();

 private:
  void Run(std::stop_token stop);
  // One Schedule at `now`: validate, patch status, create a due Backup. Returns when it needs
  // looking at again (nullopt: only on a change).
  std::optional<TimePoint> Reconcile(const kube::Object& obj, TimePoint now);
  bool HasRunningBackup(const std::string& schedule) const;
  void Wake();

  kube::Client& client_;
  const ScheduleOptions options_;
  const Clock& clock_;
  std::unique_ptr<kube::Informer> schedules_;
  std::unique_ptr<kube::Informer> backups_;
  std::mutex mu_;
  std::stop_source wake_;  // guarded by mu_: replaced before each pass; an event requests stop
  // Controller thread only: the activation each Schedule last ran for, in case the informer's
  // copy does not show our own status.lastBackup patch yet.
  std::map<std::string, TimePoint> fired_;
  bool started_ = false;
  std::jthread thread_;
};

}  // namespace fsb::coordinator
