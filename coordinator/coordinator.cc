#include "coordinator/coordinator.h"

#include <fmt/format.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "base/log.h"
#include "coordinator/clock.h"
#include "coordinator/common.h"
#include "coordinator/maintenance.h"
#include "coordinator/schedule.h"
#include "kube/informer.h"
#include "kube/velero.h"

namespace fsb::coordinator {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Keys ("b/<name>", "r/<name>") to reconcile. A key is queued once however often it is added;
// a key added while a worker has it is queued again when that worker is done; AddAfter delays a
// key (retries). Safe for concurrent use.
class WorkQueue {
 public:
  void Add(const std::string& key) {
    std::lock_guard lock(mu_);
    AddLocked(key);
  }
  void AddAfter(const std::string& key, std::chrono::milliseconds delay) {
    std::lock_guard lock(mu_);
    delayed_.emplace(SteadyClock::now() + delay, key);
    cv_.notify_all();
  }
  // Blocks for the next key; false when stopped.
  bool Get(std::stop_token stop, std::string* key) {
    std::unique_lock lock(mu_);
    while (true) {
      if (stop.stop_requested()) return false;
      const auto now = SteadyClock::now();
      while (!delayed_.empty() && delayed_.begin()->first <= now) {
        AddLocked(delayed_.begin()->second);
        delayed_.erase(delayed_.begin());
      }
      if (!queue_.empty()) {
        *key = queue_.front();
        queue_.pop_front();
        queued_.erase(*key);
        active_.insert(*key);
        return true;
      }
      const auto wake = delayed_.empty()
                            ? now + std::chrono::seconds(1)
                            : std::min(delayed_.begin()->first, now + std::chrono::seconds(1));
      cv_.wait_until(lock, stop, wake, [] { return false; });
    }
  }
  void Done(const std::string& key) {
    std::lock_guard lock(mu_);
    active_.erase(key);
    if (dirty_.erase(key)) AddLocked(key);
  }

 private:
  void AddLocked(const std::string& key) {
    if (active_.count(key)) {
      dirty_.insert(key);
      return;
    }
    if (queued_.insert(key).second) {
      queue_.push_back(key);
      cv_.notify_one();
    }
  }

  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<std::string> queue_;                                // guarded by mu_
  std::set<std::string> queued_, active_, dirty_;                // guarded by mu_
  std::multimap<SteadyClock::time_point, std::string> delayed_;  // guarded by mu_
};

std::string OwnerName(const kube::Object& obj, std::string_view kind, std::string_view name_label) {
  Result<kube::ObjectMeta> m = kube::ParseMeta(obj);
  if (!m.ok()) return "";
  if (const kube::OwnerReference* c = m->Controller(); c && c->kind == kind) return c->name;
  auto it = m->labels.find(std::string(name_label));
  return it == m->labels.end() ? "" : it->second;
}

class CoordinatorImpl : public Coordinator {
 public:
  CoordinatorImpl(kube::Client& client, CoordinatorOptions options)
      : client_(client),
        options_(std::move(options)),
        storage_(client, options_.storage),
        backups_(client, storage_, BackupOptions()),
        restores_(client, storage_, RestoreOptions()) {}

  Status Run(std::stop_token stop) override {
    auto log = GetLogger("coordinator");
    kube::InformerOptions io;
    io.ns = options_.ns;
    io.resync = options_.resync;
    auto name_of = [](const kube::Object& o) -> std::string {
      return o.contains("metadata") && o["metadata"].is_object() ? o["metadata"].value("name", "")
                                                                 : "";
    };
    std::vector<std::unique_ptr<kube::Informer>> informers;
    informers.push_back(std::make_unique<kube::Informer>(
        client_, kube::kBackups, io, [this, name_of](kube::EventType t, const kube::Object& o) {
          if (t != kube::EventType::kDeleted) queue_.Add("b/" + name_of(o));
        }));
    informers.push_back(std::make_unique<kube::Informer>(
        client_, kube::kRestores, io, [this, name_of](kube::EventType t, const kube::Object& o) {
          if (t != kube::EventType::kDeleted) queue_.Add("r/" + name_of(o));
        }));
    kube::InformerOptions quiet = io;
    quiet.resync = std::chrono::seconds(0);  // the Backups' and Restores' resync is enough
    informers.push_back(std::make_unique<kube::Informer>(
        client_, kube::kPodVolumeBackups, quiet, [this](kube::EventType, const kube::Object& o) {
          const std::string b = OwnerName(o, "Backup", kube::velero::kLabelBackupName);
          if (!b.empty()) queue_.Add("b/" + b);
        }));
    informers.push_back(std::make_unique<kube::Informer>(
        client_, kube::kPodVolumeRestores, quiet, [this](kube::EventType, const kube::Object& o) {
          const std::string r = OwnerName(o, "Restore", kube::velero::kLabelRestoreName);
          if (!r.empty()) queue_.Add("r/" + r);
        }));
    for (auto& i : informers) i->Start();
    for (auto& i : informers) {
      while (!i->WaitForSync(std::chrono::milliseconds(500))) {
        if (stop.stop_requested()) return Status::Ok();
      }
    }
    // ---- The Schedule controller and repository maintenance / backup GC (their own informers
    // and threads), next to the Backup and Restore controllers. Their Backups carry
    // fsb.velero.io/coordinator=true, so the Backup controller claims them. ----
    SystemClock clock;
    std::unique_ptr<ScheduleController> schedules;
    std::unique_ptr<MaintenanceController> maintenance;
    if (options_.schedules) {
      ScheduleOptions so;
      so.ns = options_.ns;
      schedules = std::make_unique<ScheduleController>(client_, so, clock);
      FSB_RETURN_IF_ERROR(schedules->Start().WithContext("schedule controller"));
    }
    if (options_.maintenance) {
      MaintenanceOptions mo;
      mo.ns = options_.ns;
      mo.repo_target.ns = options_.ns;
      mo.repo_target.scratch_dir = options_.storage.scratch_dir;
      mo.repo_target.credentials_file = options_.storage.credentials_file;
      maintenance = std::make_unique<MaintenanceController>(client_, mo, clock);
      FSB_RETURN_IF_ERROR(maintenance->Start().WithContext("maintenance controller"));
    }
    ready_ = true;
    log->info("coordinator running ns={} claim_all={} workers={}", options_.ns, options_.claim_all,
              options_.workers);
    {
      std::vector<std::jthread> workers;
      for (int i = 0; i < std::max(1, options_.workers); i++) {
        workers.emplace_back([this, stop] { Work(stop); });
      }
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock l(m);
      cv.wait(l, stop, [] { return false; });
    }  // workers joined: each finishes its step and sees the stop
    ready_ = false;
    if (maintenance) maintenance->Stop();
    if (schedules) schedules->Stop();
    for (auto& i : informers) i->Stop();
    log->info("coordinator stopped");
    return Status::Ok();
  }

  bool Ready() const override { return ready_; }

 private:
  BackupControllerOptions BackupOptions() const {
    BackupControllerOptions o;
    o.ns = options_.ns;
    o.claim_all = options_.claim_all;
    o.default_volumes_to_fs_backup = options_.default_volumes_to_fs_backup;
    o.fs_backup_timeout = options_.fs_backup_timeout;
    o.default_ttl = options_.default_ttl;
    o.default_bsl = options_.default_bsl;
    return o;
  }
  RestoreControllerOptions RestoreOptions() const {
    RestoreControllerOptions o;
    o.ns = options_.ns;
    o.claim_all = options_.claim_all;
    o.fs_backup_timeout = options_.fs_backup_timeout;
    o.helper = options_.restore_helper;
    return o;
  }

  void Work(std::stop_token stop) {
    auto log = GetLogger("coordinator");
    std::string key;
    while (queue_.Get(stop, &key)) {
      const std::string name = key.substr(2);
      Status s = name.empty()    ? Status::Ok()
                 : key[0] == 'b' ? backups_.Reconcile(name)
                                 : restores_.Reconcile(name);
      std::chrono::milliseconds delay{0};
      {
        std::lock_guard lock(failures_mu_);
        if (s.ok()) {
          failures_.erase(key);
        } else {
          const int n = ++failures_[key];
          delay = options_.retry_min * (1LL << std::min(n - 1, 16));
          delay = std::min(delay, options_.retry_max);
        }
      }
      if (!s.ok()) {
        log->warn("reconcile failed, retrying key={} delay_ms={} err=\"{}\"", key, delay.count(),
                  s.ToString());
        queue_.AddAfter(key, delay);
      }
      queue_.Done(key);
    }
  }

  kube::Client& client_;
  const CoordinatorOptions options_;
  StorageLocations storage_;
  BackupController backups_;
  RestoreController restores_;
  WorkQueue queue_;
  std::mutex failures_mu_;
  std::map<std::string, int> failures_;  // guarded by failures_mu_
  std::atomic<bool> ready_{false};
};

}  // namespace

Result<std::unique_ptr<Coordinator>> Coordinator::Create(kube::Client& client,
                                                         CoordinatorOptions options) {
  if (options.ns.empty()) return Status::InvalidArgument("coordinator: empty namespace");
  return std::unique_ptr<Coordinator>(new CoordinatorImpl(client, std::move(options)));
}

}  // namespace fsb::coordinator
