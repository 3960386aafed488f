// coordinator/coordinator.h: `fsb coordinator`, one Deployment per cluster: turns Velero Backups
// and Restores (velero.io/v1) into PodVolumeBackups and PodVolumeRestores for fsb's node agents
// and records the outcome (coordinator/backup_controller.h, coordinator/restore_controller.h).
// Everything is driven by watches: informers on Backups, Restores, PVBs and PVRs put the name of
// the Backup or Restore concerned on a work queue (deduplicated: a name is queued at most once,
// and never reconciled by two workers at once); workers reconcile; a failed step is retried
// after a backoff; the informers' resync re-examines timeouts and pods scheduled since.
// Which objects it acts on, beside a Velero server: see coordinator/common.h and docs/design.md.
// Thread-safety: Run blocks on the calling thread; Ready is safe from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <stop_token>
#include <string>

#include "base/status.h"
#include "coordinator/backup_controller.h"
#include "coordinator/restore_controller.h"
#include "coordinator/storage.h"
#include "kube/client.h"

namespace fsb::coordinator {

struct CoordinatorOptions {
  std::string ns = "velero";  // Velero's namespace
  // Act on every Backup and Restore, not only those labelled fsb.velero.io/coordinator=true.
  bool claim_all = false;
  bool default_volumes_to_fs_backup = false;
  std::chrono::milliseconds fs_backup_timeout{std::chrono::hours(4)};
  std::chrono::milliseconds default_ttl{std::chrono::hours(720)};
  std::string default_bsl = "default";
  RestoreHelperOptions restore_helper;
  StorageOptions storage;
  // Workers reconciling different objects at once. Each step is a handful of API calls and at
  // most a few small uploads; 2 keeps a slow object store from holding up everything else.
  int workers = 2;
  // Informer resync: re-examines every Backup and Restore this often (timeouts, pods scheduled
  // onto a node without an agent).
  std::chrono::seconds resync{30};
  // The Schedule controller (coordinator/schedule.h) and repository maintenance with backup GC
  // (coordinator/maintenance.h) run in the same process unless turned off.
  bool schedules = true;
  bool maintenance = true;
  // A failed reconcile step is retried after this, doubling per consecutive failure of the same
  // object up to retry_max.
  std::chrono::milliseconds retry_min{500};
  std::chrono::milliseconds retry_max{60'000};
};

class Coordinator {
 public:
  // `client` must outlive the coordinator.
  static Result<std::unique_ptr<Coordinator>> Create(kube::Client& client,
                                                     CoordinatorOptions options);
  virtual ~Coordinator() = default;

  // Starts the informers and workers and serves until `stop`; a reconcile step in flight
  // finishes first (every step is idempotent, so stopping between steps is safe). Non-OK only
  // when it cannot start (the informers do not sync within the start-up timeout).
  virtual Status Run(std::stop_token stop) = 0;
  virtual bool Ready() const = 0;
};

}  // namespace fsb::coordinator
