#include "agent/agent.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "agent/marker.h"
#include "agent/repository_access.h"
#include "agent/volume.h"
#include "base/dir.h"
#include "base/log.h"
#include "hostpath/hostpath.h"
#include "kube/informer.h"
#include "kube/objects.h"
#include "kube/velero.h"
#include "repo/lock.h"
#include "uploader/backup.h"
#include "uploader/progress.h"
#include "uploader/restore.h"

namespace fsb::agent {
namespace {

namespace velero = kube::velero;
using std::chrono::steady_clock;

constexpr std::string_view kResumeAnnotation = "fsb.velero.io/resumed";
constexpr std::string_view kRestoreWait = "restore-wait";

enum class Kind { kBackup, kRestore };

std::string Now() { return kube::FormatTime(kube::Clock::now()); }

bool OurUploader(const std::string& t) { return t.empty() || t == "restic"; }

// "pvb/<name>" or "pvr/<name>"
std::string Key(Kind k, std::string_view name) {
  return fmt::format("{}/{}", k == Kind::kBackup ? "pvb" : "pvr", name);
}

// Why a job stopped early.
enum class StopReason { kNone, kCancel, kShutdown };

struct Job {
  Kind kind;
  std::string name;
  std::stop_source stop;
  std::atomic<StopReason> reason{StopReason::kNone};
  std::jthread thread;
};

// A final (or hand-back) status, written with a merge patch so spec.cancel and labels written by
// others are never clobbered.
struct FinalStatus {
  std::string phase;
  std::string message;
  std::optional<std::string> snapshot_id;
  std::optional<std::string> path;
  std::optional<velero::Progress> progress;
  bool completion = true;  // set completionTimestamp
};

FinalStatus Final(std::string_view phase, std::string message) {
  FinalStatus f;
  f.phase = std::string(phase);
  f.message = std::move(message);
  return f;
}
FinalStatus Failed(std::string message) { return Final(velero::kPhaseFailed, std::move(message)); }

RepositoryAccessOptions RepoOptions(const AgentOptions& a) {
  RepositoryAccessOptions o;
  o.ns = a.ns;
  o.scratch_dir = a.scratch_dir;
  o.credentials_file = a.credentials_file;
  o.holder = a.node_name;
  return o;
}

class AgentImpl final : public Agent {
 public:
  AgentImpl(kube::Client& client, AgentOptions options)
      : client_(client),
        options_(std::move(options)),
        metrics_(options_.node_name),
        repos_(client, RepoOptions(options_)),
        log_(GetLogger("agent")) {}

  Status Init() {
    if (options_.node_name.empty())
      return Status::InvalidArgument("no node name (--node-name or NODE_NAME)");
    if (options_.max_concurrent < 1)
      return Status::InvalidArgument("--max-concurrent must be at least 1");
    Result<hostpath::Root> pods = hostpath::OpenRoot(options_.host_pods);
    if (pods.ok()) {
      pods_root_ = std::move(*pods);
      roots_.pods = &*pods_root_;
    } else {
      // As Velero: without the pods directory the agent runs, and says why every volume fails.
      log_->warn("host pods directory unavailable: pod volume backups will fail path={} err=\"{}\"",
                 options_.host_pods, pods.status().ToString());
    }
    if (!options_.host_root.empty()) {
      FSB_ASSIGN_OR_RETURN(hostpath::Root host, hostpath::OpenRoot(options_.host_root));
      host_root_ = std::move(host);
      roots_.host = &*host_root_;
      roots_.host_root_on_host = options_.host_root_on_host;
    }
    return Status::Ok();
  }

  Status Run(std::stop_token stop) override;
  bool Ready() const override {
    return started_.load() && pvbs_ && pvbs_->synced() && pvrs_->synced() && pods_->synced();
  }
  const Metrics& metrics() const override { return metrics_; }

 private:
  // ---- queue
  void Enqueue(const std::string& key) {
    std::lock_guard l(mu_);
    if (queued_.insert(key).second) queue_.push_back(key);
    cv_.notify_all();
  }
  void EnqueueAfter(const std::string& key, std::chrono::milliseconds delay) {
    std::lock_guard l(mu_);
    delayed_.emplace(steady_clock::now() + delay, key);
    cv_.notify_all();
  }
  void OnPodEvent(const kube::Object& obj);
  void Reconcile(const std::string& key);
  void ReconcileBackup(const std::string& name);
  void ReconcileRestore(const std::string& name);
  bool StartJob(Kind kind, const std::string& name);
  void FinishJob(const std::string& key);

  // Velero's start-up check (§5.3): every running pod of this node should have a directory under
  // --host-pods. Velero refuses to start otherwise; fsb warns once, naming what is missing, and
  // each affected volume fails with its own message.
  void CheckPodsDirectory();

  // ---- status writes
  Status PatchStatus(const kube::Resource& r, const std::string& name, kube::Object status);
  Status WriteFinal(const kube::Resource& r, const std::string& name, const FinalStatus& f);
  // InProgress with a fresh read: false (and nothing written) when someone else moved it or it is
  // being canceled.
  Result<bool> Claim(const kube::Resource& r, const std::string& name);
  // An InProgress object that no job of this agent runs: resume it (phase New) or give up.
  void Recover(Kind kind, const std::string& name);

  // ---- jobs (job threads)
  FinalStatus RunBackup(Job& job);
  FinalStatus RunRestore(Job& job);
  FinalStatus Stopped(Job& job, std::string_view what, const std::string& detail);
  std::optional<repo::Id> ParentFor(const velero::PodVolumeBackup& pvb,
                                    repo::Repository& repository);
  // A shared repository lock, waiting (cancellably) up to lock_wait for an exclusive holder such
  // as a prune. Locks of this agent's DaemonSet pods that no longer exist are stale at once.
  Result<std::unique_ptr<repo::RepoLock>> LockShared(repo::Repository& repository, Job& job);
  // Patches status.progress every progress_interval until `done` is set; runs on its own thread.
  void ReportProgress(const kube::Resource& r, const std::string& name, const uploader::Progress& p,
                      std::stop_token st);

  kube::Client& client_;
  const AgentOptions options_;
  Metrics metrics_;
  RepositoryAccess repos_;
  std::shared_ptr<spdlog::logger> log_;
  std::optional<hostpath::Root> pods_root_, host_root_;
  VolumeRoots roots_;
  std::unique_ptr<kube::Informer> pvbs_, pvrs_, pods_;
  std::atomic<bool> started_{false};

  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<std::string> queue_;                                 // guarded by mu_
  std::set<std::string> queued_;                                  // guarded by mu_
  std::multimap<steady_clock::time_point, std::string> delayed_;  // guarded by mu_
  std::set<std::string> waiting_for_slot_;                        // guarded by mu_
  std::map<std::string, std::unique_ptr<Job>> jobs_;              // guarded by mu_
  std::vector<std::unique_ptr<Job>> finished_jobs_;               // guarded by mu_: joined by Run
  bool shutting_down_ = false;                                    // guarded by mu_
};

// ---------------------------------------------------------------------------------------------
// Status writes

Status AgentImpl::PatchStatus(const kube::Resource& r, const std::string& name,
                              kube::Object status) {
  kube::Object patch = {{"status", std::move(status)}};
  Status last;
  for (int attempt = 0; attempt < 5; attempt++) {
    Result<kube::Object> res = client_.MergePatch(r, options_.ns, name, patch);
    if (res.ok() || res.status().code() == StatusCode::kNotFound) return res.status();
    last = res.status();
    if (last.code() != StatusCode::kUnavailable) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
  }
  return last;
}

Status AgentImpl::WriteFinal(const kube::Resource& r, const std::string& name,
                             const FinalStatus& f) {
  kube::Object s = {{"phase", f.phase}, {"message", f.message}};
  if (f.completion) s["completionTimestamp"] = Now();
  if (f.snapshot_id) s["snapshotID"] = *f.snapshot_id;
  if (f.path) s["path"] = *f.path;
  if (f.progress) {
    kube::Object p = kube::Object::object();
    if (f.progress->total_bytes) p["totalBytes"] = f.progress->total_bytes;
    if (f.progress->bytes_done) p["bytesDone"] = f.progress->bytes_done;
    s["progress"] = p;
  }
  Status st = PatchStatus(r, name, std::move(s));
  if (st.ok()) {
    log_->info("{} phase changed {}={}/{} to={}{}", r.kind,
               r.kind == "PodVolumeBackup" ? "pvb" : "pvr", options_.ns, name, f.phase,
               f.message.empty() ? "" : fmt::format(" message=\"{}\"", f.message));
  } else {
    log_->error("could not write final status {}/{} phase={} err=\"{}\"", options_.ns, name,
                f.phase, st.ToString());
  }
  return st;
}

Result<bool> AgentImpl::Claim(const kube::Resource& r, const std::string& name) {
  bool claimed = false;
  Result<kube::Object> res =
      kube::UpdateWithRetry(client_, r, options_.ns, name, [&](kube::Object& o) {
        const kube::Object* status = o.contains("status") ? &o["status"] : nullptr;
        std::string phase;
        if (status && status->is_object() && status->contains("phase") &&
            (*status)["phase"].is_string()) {
          phase = (*status)["phase"].get<std::string>();
        }
        bool cancel =
            o.contains("spec") && o["spec"].is_object() && o["spec"].value("cancel", false);
        if (!(phase.empty() || phase == velero::kPhaseNew) || cancel) {
          claimed = false;
          return Status::Cancelled("not claimable");
        }
        if (!o["status"].is_object()) o["status"] = kube::Object::object();
        o["status"]["phase"] = velero::kPhaseInProgress;
        o["status"]["startTimestamp"] = Now();
        o["status"]["message"] = "";
        if (r.plural == kube::kPodVolumeRestores.plural) o["status"]["node"] = options_.node_name;
        claimed = true;
        return Status::Ok();
      });
  if (!res.ok()) {
    if (res.status().code() == StatusCode::kCancelled) return false;
    return res.status();
  }
  return claimed;
}

void AgentImpl::Recover(Kind kind, const std::string& name) {
  const kube::Resource& r =
      kind == Kind::kBackup ? kube::kPodVolumeBackups : kube::kPodVolumeRestores;
  std::string outcome;
  Result<kube::Object> res =
      kube::UpdateWithRetry(client_, r, options_.ns, name, [&](kube::Object& o) {
        if (!o["status"].is_object() ||
            o["status"].value("phase", "") != velero::kPhaseInProgress) {
          return Status::Cancelled("no longer InProgress");
        }
        auto& annotations = o["metadata"]["annotations"];
        int resumed = 0;
        if (annotations.is_object() && annotations.contains(std::string(kResumeAnnotation)) &&
            annotations[std::string(kResumeAnnotation)].is_string()) {
          resumed =
              std::atoi(annotations[std::string(kResumeAnnotation)].get<std::string>().c_str());
        }
        const bool cancel = o["spec"].is_object() && o["spec"].value("cancel", false);
        if (cancel) {
          o["status"]["phase"] = velero::kPhaseCanceled;
          o["status"]["message"] = "canceled while its agent was down";
          o["status"]["completionTimestamp"] = Now();
          outcome = "canceled";
        } else if (resumed >= options_.max_resumes) {
          o["status"]["phase"] = velero::kPhaseFailed;
          o["status"]["message"] = fmt::format(
              "the node agent on {} restarted {} times while this was InProgress (was it "
              "OOM-killed? see the "
              "agent's memory limit and logs); giving up",
              options_.node_name, resumed + 1);
          o["status"]["completionTimestamp"] = Now();
          outcome = "failed";
        } else {
          if (!annotations.is_object()) annotations = kube::Object::object();
          annotations[std::string(kResumeAnnotation)] = std::to_string(resumed + 1);
          o["status"]["phase"] = velero::kPhaseNew;
          o["status"]["message"] = fmt::format(
              "found InProgress after the node agent on {} restarted; started again (attempt {})",
              options_.node_name, resumed + 2);
          outcome = "resumed";
        }
        return Status::Ok();
      });
  if (res.ok()) {
    log_->warn("recovered object left InProgress by a previous agent {}={}/{} outcome={}",
               kind == Kind::kBackup ? "pvb" : "pvr", options_.ns, name, outcome);
  } else if (res.status().code() != StatusCode::kCancelled) {
    log_->error("could not recover InProgress object {}/{} err=\"{}\"", options_.ns, name,
                res.status().ToString());
    EnqueueAfter(Key(kind, name), std::chrono::seconds(5));
  }
}

// ---------------------------------------------------------------------------------------------
// Dispatch (the Run thread)

void AgentImpl::OnPodEvent(const kube::Object& obj) {
  // A pod of this node changed: a PVR waiting for it (by pod UID label, or by name) may be ready.
  Result<kube::ObjectMeta> meta = kube::ParseMeta(obj);
  if (!meta.ok() || !pvrs_) return;
  for (const kube::Object& o : pvrs_->List()) {
    Result<velero::PodVolumeRestore> pvr = velero::ParsePodVolumeRestore(o);
    if (!pvr.ok()) continue;
    auto label = pvr->meta.labels.find(std::string(velero::kLabelPodUid));
    const bool by_uid = label != pvr->meta.labels.end() && label->second == meta->uid;
    const bool by_name = pvr->pod.ns == meta->ns && pvr->pod.name == meta->name;
    if (by_uid || by_name) Enqueue(Key(Kind::kRestore, pvr->meta.name));
  }
}

void AgentImpl::Reconcile(const std::string& key) {
  if (key.starts_with("pvb/")) return ReconcileBackup(key.substr(4));
  if (key.starts_with("pvr/")) return ReconcileRestore(key.substr(4));
}

void AgentImpl::ReconcileBackup(const std::string& name) {
  const std::string key = Key(Kind::kBackup, name);
  std::optional<kube::Object> obj = pvbs_->Get(options_.ns, name);
  Job* running = nullptr;
  {
    std::lock_guard l(mu_);
    auto it = jobs_.find(key);
    if (it != jobs_.end()) running = it->second.get();
  }
  if (!obj) {
    if (running) {  // deleted while running: stop; nothing left to write to
      running->reason = StopReason::kCancel;
      running->stop.request_stop();
    }
    return;
  }
  Result<velero::PodVolumeBackup> pvb = velero::ParsePodVolumeBackup(*obj);
  if (!pvb.ok()) {
    // Ours only if spec.node says so; then fail it with the reason instead of ignoring it.
    const kube::Object* spec = obj->contains("spec") ? &(*obj)["spec"] : nullptr;
    const bool ours = spec && spec->is_object() && spec->value("node", "") == options_.node_name;
    const std::string phase =
        (*obj)["status"].is_object() ? (*obj)["status"].value("phase", "") : "";
    if (ours && !velero::IsFinalPhase(phase)) {
      WriteFinal(kube::kPodVolumeBackups, name,
                 Failed("malformed podvolumebackup: " + pvb.status().message()))
          .IgnoreError();  // logged by WriteFinal
    }
    return;
  }
  if (pvb->node != options_.node_name || !OurUploader(pvb->uploader_type)) return;
  if (running) {
    if (pvb->cancel || pvb->meta.deletion_timestamp) {
      log_->info("cancel requested pvb={}/{}", options_.ns, name);
      running->reason = StopReason::kCancel;
      running->stop.request_stop();
    }
    return;
  }
  if (velero::IsFinalPhase(pvb->phase)) return;
  if (pvb->phase == velero::kPhaseInProgress || pvb->phase == velero::kPhaseCanceling) {
    Recover(Kind::kBackup, name);  // no job of ours runs it: a previous agent's
    return;
  }
  if (pvb->cancel) {
    WriteFinal(kube::kPodVolumeBackups, name,
               Final(velero::kPhaseCanceled, "canceled before it started"))
        .IgnoreError();  // logged by WriteFinal
    return;
  }
  StartJob(Kind::kBackup, name);
}

void AgentImpl::ReconcileRestore(const std::string& name) {
  const std::string key = Key(Kind::kRestore, name);
  std::optional<kube::Object> obj = pvrs_->Get(options_.ns, name);
  Job* running = nullptr;
  {
    std::lock_guard l(mu_);
    auto it = jobs_.find(key);
    if (it != jobs_.end()) running = it->second.get();
  }
  if (!obj) {
    if (running) {
      running->reason = StopReason::kCancel;
      running->stop.request_stop();
    }
    return;
  }
  Result<velero::PodVolumeRestore> pvr = velero::ParsePodVolumeRestore(*obj);
  if (!pvr.ok() || !OurUploader(pvr->uploader_type)) return;
  if (running) {
    if (pvr->cancel || pvr->meta.deletion_timestamp) {
      running->reason = StopReason::kCancel;
      running->stop.request_stop();
    }
    return;
  }
  if (velero::IsFinalPhase(pvr->phase)) return;
  // A PVR belongs to the agent whose node runs its pod (§6.3): look in this node's pod cache.
  std::optional<kube::Object> pod_obj = pods_->Get(pvr->pod.ns, pvr->pod.name);
  if (!pod_obj) return;  // another node's, or not scheduled yet: the pod's event brings it back
  Result<kube::Pod> pod = kube::ParsePod(*pod_obj);
  if (!pod.ok() || pod->node_name != options_.node_name) return;
  if (!pvr->pod.uid.empty() && pod->meta.uid != pvr->pod.uid) return;  // an older pod of that name
  if (pvr->phase == velero::kPhaseInProgress || pvr->phase == velero::kPhaseCanceling) {
    Recover(Kind::kRestore, name);
    return;
  }
  if (pvr->cancel) {
    WriteFinal(kube::kPodVolumeRestores, name,
               Final(velero::kPhaseCanceled, "canceled before it started"))
        .IgnoreError();  // logged by WriteFinal
    return;
  }
  // Velero's helper must be running (so the volume is mounted and the app waits); a pod without
  // it is restored as soon as it is scheduled here.
  bool has_wait = false, wait_running = false;
  for (const auto& c : pod->init_containers) has_wait |= c.name == kRestoreWait;
  for (const auto& s : pod->init_container_statuses)
    wait_running |= s.name == kRestoreWait && s.running;
  if (has_wait && !wait_running) return;  // the pod's status change brings it back
  if (has_wait && pod->init_containers.front().name != kRestoreWait) {
    log_->warn(
        "restore-wait is not the first init container: earlier ones may see an empty volume "
        "pvr={}/{}",
        options_.ns, name);
  }
  StartJob(Kind::kRestore, name);
}

bool AgentImpl::StartJob(Kind kind, const std::string& name) {
  const std::string key = Key(kind, name);
  std::lock_guard l(mu_);
  if (shutting_down_ || jobs_.count(key)) return false;
  if (static_cast<int>(jobs_.size()) >= options_.max_concurrent) {
    waiting_for_slot_.insert(key);
    return false;
  }
  waiting_for_slot_.erase(key);
  auto job = std::make_unique<Job>();
  job->kind = kind;
  job->name = name;
  Job* j = job.get();
  jobs_[key] = std::move(job);
  j->thread = std::jthread([this, j, key] {
    const kube::Resource& r =
        j->kind == Kind::kBackup ? kube::kPodVolumeBackups : kube::kPodVolumeRestores;
    Result<bool> claimed = Claim(r, j->name);
    if (!claimed.ok()) {
      log_->warn("could not claim {}/{} err=\"{}\"", options_.ns, j->name,
                 claimed.status().ToString());
      EnqueueAfter(key, std::chrono::seconds(5));
    } else if (*claimed) {
      const Operation op = j->kind == Kind::kBackup ? Operation::kBackup : Operation::kRestore;
      metrics_.Started(op);
      const auto start = steady_clock::now();
      FinalStatus f = j->kind == Kind::kBackup ? RunBackup(*j) : RunRestore(*j);
      const double secs = std::chrono::duration<double>(steady_clock::now() - start).count();
      WriteFinal(r, j->name, f)
          .IgnoreError();  // logged there; a failed write is recovered on restart
      const Outcome outcome = f.phase == velero::kPhaseCompleted  ? Outcome::kCompleted
                              : f.phase == velero::kPhaseCanceled ? Outcome::kCanceled
                                                                  : Outcome::kFailed;
      if (f.phase != velero::kPhaseNew) {
        metrics_.Finished(op, outcome, f.progress ? uint64_t(f.progress->bytes_done) : 0, secs);
      }
    }
    FinishJob(key);
  });
  return true;
}

void AgentImpl::FinishJob(const std::string& key) {
  std::lock_guard l(mu_);
  auto it = jobs_.find(key);
  if (it == jobs_.end()) return;
  // This thread cannot join itself: Run joins it (it is about to return).
  finished_jobs_.push_back(std::move(it->second));
  jobs_.erase(it);
  for (const std::string& k : waiting_for_slot_) {
    if (queued_.insert(k).second) queue_.push_back(k);
  }
  waiting_for_slot_.clear();
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Jobs

FinalStatus AgentImpl::Stopped(Job& job, std::string_view what, const std::string& detail) {
  if (job.reason.load() == StopReason::kShutdown) {
    // Handed back: the next agent on this node starts it again.
    FinalStatus f = Final(
        velero::kPhaseNew,
        fmt::format("the node agent on {} stopped during the {}; it starts again with the agent",
                    options_.node_name, what));
    f.completion = false;
    return f;
  }
  return Final(velero::kPhaseCanceled,
               detail.empty() ? std::string("canceled") : "canceled: " + detail);
}

void AgentImpl::ReportProgress(const kube::Resource& r, const std::string& name,
                               const uploader::Progress& p, std::stop_token st) {
  std::mutex m;
  std::condition_variable_any cv;
  int64_t last_done = -1, last_total = -1;
  while (true) {
    {
      std::unique_lock l(m);
      if (cv.wait_for(l, st, options_.progress_interval, [] { return false; }), st.stop_requested())
        return;
    }
    const int64_t done = static_cast<int64_t>(p.bytes_done.load());
    const int64_t total = std::max(done, static_cast<int64_t>(p.total_bytes.load()));
    if (done == last_done && total == last_total) continue;
    kube::Object prog = kube::Object::object();
    if (total) prog["totalBytes"] = total;
    if (done) prog["bytesDone"] = done;
    Status s = PatchStatus(r, name, {{"progress", prog}});
    if (!s.ok()) {
      log_->warn("progress patch failed {}/{} err=\"{}\"", options_.ns, name, s.ToString());
      continue;
    }
    last_done = done;
    last_total = total;
  }
}

Result<std::unique_ptr<repo::RepoLock>> AgentImpl::LockShared(repo::Repository& repository,
                                                              Job& job) {
  repo::LockOptions lo;
  // In Kubernetes a lock's hostname is the pod name. A lock left by a pod of this DaemonSet
  // ("node-agent-x7k2p": same name up to the generated suffix) that no longer exists can never be
  // released by its owner (velero#5925): stale now, not in 30 minutes.
  const std::string me = repo::Hostname();
  const size_t dash = me.rfind('-');
  const std::string prefix = dash == std::string::npos ? std::string() : me.substr(0, dash + 1);
  lo.is_stale_holder = [this, prefix](const repo::LockInfo& l) {
    if (prefix.empty() || !l.hostname.starts_with(prefix)) return false;
    Result<kube::Object> pod = client_.Get(kube::kPods, options_.ns, l.hostname);
    return !pod.ok() && pod.status().code() == StatusCode::kNotFound;
  };
  const auto deadline = steady_clock::now() + options_.lock_wait;
  while (true) {
    Result<std::unique_ptr<repo::RepoLock>> lock =
        repo::RepoLock::Acquire(repository, /*exclusive=*/false, lo);
    if (lock.ok() || lock.status().code() != StatusCode::kFailedPrecondition ||
        steady_clock::now() > deadline) {
      return lock;
    }
    log_->info("repository locked, waiting {}={}/{} err=\"{}\"",
               job.kind == Kind::kBackup ? "pvb" : "pvr", options_.ns, job.name,
               lock.status().message());
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock l(m);
    cv.wait_for(l, job.stop.get_token(), std::chrono::seconds(2), [] { return false; });
    if (job.stop.stop_requested())
      return Status::Cancelled("canceled while waiting for the repository lock");
  }
}

std::optional<repo::Id> AgentImpl::ParentFor(const velero::PodVolumeBackup& pvb,
                                             repo::Repository& repository) {
  // Velero's rule (§5.4): the latest Completed PVB of the same PVC, uploader type and BSL, so a pod
  // that moved to another node or was recreated keeps its chain.
  auto pvc = pvb.meta.labels.find(std::string(velero::kLabelPvcUid));
  if (pvc == pvb.meta.labels.end() || pvc->second.empty()) return std::nullopt;
  std::optional<velero::PodVolumeBackup> best;
  for (const kube::Object& o : pvbs_->List()) {
    Result<velero::PodVolumeBackup> c = velero::ParsePodVolumeBackup(o);
    if (!c.ok() || c->meta.name == pvb.meta.name) continue;
    auto l = c->meta.labels.find(std::string(velero::kLabelPvcUid));
    if (l == c->meta.labels.end() || l->second != pvc->second) continue;
    if (c->phase != velero::kPhaseCompleted || c->snapshot_id.empty()) continue;
    if (!OurUploader(c->uploader_type) || c->backup_storage_location != pvb.backup_storage_location)
      continue;
    if (!best || c->start_timestamp.value_or("") > best->start_timestamp.value_or(""))
      best = std::move(*c);
  }
  if (!best) return std::nullopt;
  Result<repo::Id> id = repository.FindSnapshot(best->snapshot_id);
  if (!id.ok()) {
    log_->warn("parent snapshot not usable, reading every file pvb={}/{} parent={} err=\"{}\"",
               options_.ns, pvb.meta.name, best->snapshot_id, id.status().ToString());
    return std::nullopt;
  }
  return *id;
}

FinalStatus AgentImpl::RunBackup(Job& job) {
  const std::string failed(velero::kPhaseFailed);
  Result<kube::Object> obj = client_.Get(kube::kPodVolumeBackups, options_.ns, job.name);
  if (!obj.ok()) return Failed(obj.status().message());
  Result<velero::PodVolumeBackup> pvb = velero::ParsePodVolumeBackup(*obj);
  if (!pvb.ok()) return Failed(pvb.status().message());
  log_->info("backup started pvb={}/{} ns={} pod={} volume={}", options_.ns, job.name, pvb->pod.ns,
             pvb->pod.name, pvb->volume);

  // The pod, on this node, the same one the PVB names.
  Result<kube::Object> pod_obj = client_.Get(kube::kPods, pvb->pod.ns, pvb->pod.name);
  if (!pod_obj.ok()) {
    return Failed(pod_obj.status()
                      .WithContext(fmt::format("get pod {}/{}", pvb->pod.ns, pvb->pod.name))
                      .message());
  }
  Result<kube::Pod> pod = kube::ParsePod(*pod_obj);
  if (!pod.ok()) return Failed(pod.status().message());
  if (!pvb->pod.uid.empty() && pod->meta.uid != pvb->pod.uid) {
    return Failed(fmt::format("pod {}/{} was recreated (uid {}, the backup names {})", pod->meta.ns,
                              pod->meta.name, pod->meta.uid, pvb->pod.uid));
  }
  if (pod->node_name != options_.node_name) {
    return Failed(fmt::format("pod {}/{} runs on node \"{}\", not on this agent's node {}",
                              pod->meta.ns, pod->meta.name, pod->node_name, options_.node_name));
  }
  Result<VolumeLocation> loc = ResolveVolume(client_, roots_, *pod, pvb->volume);
  if (!loc.ok()) {
    return Failed("error exposing host path for pod volume: " + loc.status().message());
  }
  // An empty volume completes without a snapshot, as Velero (restic's "snapshot is empty").
  Result<std::vector<DirEntry>> entries = ReadDirectory(loc->volume.dir.get(), loc->path);
  if (!entries.ok()) return Failed(entries.status().message());
  if (entries->empty()) {
    FinalStatus f = Final(velero::kPhaseCompleted, "volume was empty so no snapshot was taken");
    f.snapshot_id = std::string();
    f.path = loc->path;
    f.progress = velero::Progress{};
    return f;
  }

  Result<RepositoryTarget> target =
      repos_.Resolve(pvb->backup_storage_location, pvb->pod.ns, pvb->repo_identifier);
  if (!target.ok()) return Failed(target.status().message());
  if (target->read_only) {
    return Failed(
        fmt::format("backup storage location {} is read-only", pvb->backup_storage_location));
  }
  Result<std::unique_ptr<repo::Repository>> repository =
      repos_.Open(*target, true, job.stop.get_token());
  if (!repository.ok()) {
    if (job.stop.stop_requested()) return Stopped(job, "backup", "");
    return Failed(repository.status().message());
  }
  Result<std::unique_ptr<repo::RepoLock>> lock = LockShared(**repository, job);
  if (!lock.ok()) {
    if (job.stop.stop_requested()) return Stopped(job, "backup", "");
    return Failed(lock.status().WithContext("lock repository").message());
  }

  uploader::BackupOptions bo;
  bo.source_dir_fd = loc->volume.dir.get();
  bo.source_path = loc->path;
  bo.hostname =
      "velero";  // constant, as Velero: a recreated agent pod keeps restic's parent search
  for (const auto& [k, v] : pvb->tags) bo.tags.push_back(k + "=" + v);
  bo.parent = ParentFor(*pvb, **repository);
  const int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bo.file_workers = std::max(2, cpus / options_.max_concurrent);
  bo.encode_workers = std::max(1, cpus / options_.max_concurrent);
  bo.stop = job.stop.get_token();
  uploader::Progress progress;
  Result<uploader::BackupSummary> sum = [&] {
    std::jthread reporter([&](std::stop_token st) {
      ReportProgress(kube::kPodVolumeBackups, job.name, progress, st);
    });
    return uploader::RunBackup(**repository, bo, &progress);
  }();
  if (!sum.ok()) {
    if (sum.status().code() == StatusCode::kCancelled && job.stop.stop_requested()) {
      return Stopped(job, "backup", "");
    }
    return Failed("data path backup failed: " + sum.status().message());
  }
  const int64_t bytes = static_cast<int64_t>(sum->total_bytes_processed);
  FinalStatus f = Final(velero::kPhaseCompleted, "");
  f.snapshot_id = sum->snapshot_id.Short();
  f.path = loc->path;
  f.progress = velero::Progress{bytes, bytes};
  log_->info("backup finished pvb={}/{} snapshot={} files={} bytes={} added={} parent={}",
             options_.ns, job.name, sum->snapshot_id.Short(), sum->total_files_processed, bytes,
             sum->data_added, sum->parent ? sum->parent->Short() : "none");
  if (!sum->errors.empty()) {
    // The snapshot holds everything else; the PVB fails so nobody mistakes it for complete.
    f.phase = failed;
    f.message = fmt::format(
        "data path backup failed: {} entries could not be read (first: {}); snapshot {} has "
        "everything else",
        sum->errors.size(), sum->errors.front(), sum->snapshot_id.Short());
  }
  return f;
}

FinalStatus AgentImpl::RunRestore(Job& job) {
  const std::string failed(velero::kPhaseFailed);
  Result<kube::Object> obj = client_.Get(kube::kPodVolumeRestores, options_.ns, job.name);
  if (!obj.ok()) return Failed(obj.status().message());
  Result<velero::PodVolumeRestore> pvr = velero::ParsePodVolumeRestore(*obj);
  if (!pvr.ok()) return Failed(pvr.status().message());
  log_->info("restore started pvr={}/{} ns={} pod={} volume={} snapshot={}", options_.ns, job.name,
             pvr->pod.ns, pvr->pod.name, pvr->volume, pvr->snapshot_id);
  if (pvr->snapshot_id.empty()) return Failed("spec.snapshotID is empty");
  const kube::OwnerReference* owner = pvr->meta.Controller();
  std::string restore_uid = owner ? owner->uid : std::string();
  if (restore_uid.empty()) {
    auto l = pvr->meta.labels.find(std::string(velero::kLabelRestoreUid));
    if (l != pvr->meta.labels.end()) restore_uid = l->second;
  }
  if (restore_uid.empty()) {
    return Failed(
        "no controlling owner reference (or velero.io/restore-uid label) names the Restore");
  }

  // The pod's volume directory may appear a little after the pod starts (CSI mounts).
  Result<VolumeLocation> loc = Status::NotFound("not looked up");
  const auto deadline = steady_clock::now() + options_.volume_wait;
  while (true) {
    Result<kube::Object> pod_obj = client_.Get(kube::kPods, pvr->pod.ns, pvr->pod.name);
    if (!pod_obj.ok()) {
      return Failed(pod_obj.status()
                        .WithContext(fmt::format("get pod {}/{}", pvr->pod.ns, pvr->pod.name))
                        .message());
    }
    Result<kube::Pod> pod = kube::ParsePod(*pod_obj);
    if (!pod.ok()) return Failed(pod.status().message());
    loc = ResolveVolume(client_, roots_, *pod, pvr->volume);
    if (loc.ok() || loc.status().code() != StatusCode::kNotFound || steady_clock::now() > deadline)
      break;
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock l(m);
    cv.wait_for(l, job.stop.get_token(), std::chrono::seconds(1), [] { return false; });
    if (job.stop.stop_requested()) return Stopped(job, "restore", "");
  }
  if (!loc.ok()) {
    return Failed("error exposing host path for pod volume: " + loc.status().message());
  }

  const std::string source_ns = pvr->source_namespace.empty() ? pvr->pod.ns : pvr->source_namespace;
  Result<RepositoryTarget> target =
      repos_.Resolve(pvr->backup_storage_location, source_ns, pvr->repo_identifier);
  if (!target.ok()) return Failed(target.status().message());
  Result<std::unique_ptr<repo::Repository>> repository =
      repos_.Open(*target, false, job.stop.get_token());
  if (!repository.ok()) return Failed(repository.status().message());
  Result<std::unique_ptr<repo::RepoLock>> lock = LockShared(**repository, job);
  if (!lock.ok()) {
    if (job.stop.stop_requested()) return Stopped(job, "restore", "");
    return Failed(lock.status().WithContext("lock repository").message());
  }
  Result<repo::Id> snap_id = (*repository)->FindSnapshot(pvr->snapshot_id);
  if (!snap_id.ok()) {
    return Failed(snap_id.status().WithContext("snapshot " + pvr->snapshot_id).message());
  }
  Result<repo::Snapshot> snap = (*repository)->LoadSnapshot(*snap_id);
  if (!snap.ok()) return Failed(snap.status().message());

  uploader::RestoreOptions ro;
  ro.target_dir_fd = loc->volume.dir.get();
  ro.target = loc->path;
  ro.restore_owner = options_.restore_owner;
  ro.stop = job.stop.get_token();
  uploader::Progress progress;
  Result<uploader::RestoreSummary> sum = [&] {
    std::jthread reporter([&](std::stop_token st) {
      ReportProgress(kube::kPodVolumeRestores, job.name, progress, st);
    });
    return uploader::RunRestore(**repository, snap->tree, ro, &progress);
  }();
  if (!sum.ok()) {
    if (sum.status().code() == StatusCode::kCancelled && job.stop.stop_requested()) {
      return Stopped(job, "restore", "");
    }
    return Failed("data path restore failed: " + sum.status().message());
  }
  const int64_t bytes = static_cast<int64_t>(std::max(sum->bytes, progress.total_bytes.load()));
  if (!sum->errors.empty()) {
    // No marker: the pod must not start on a partial volume. The message says what is missing.
    FinalStatus f =
        Failed(fmt::format("data path restore failed: {} entries could not be restored (first: {})",
                           sum->errors.size(), sum->errors.front()));
    f.progress = velero::Progress{bytes, static_cast<int64_t>(progress.bytes_done.load())};
    return f;
  }
  Status marker = WriteRestoreMarker(loc->volume.dir.get(), restore_uid);
  if (!marker.ok()) return Failed(marker.message());
  FinalStatus f = Final(velero::kPhaseCompleted, "");
  f.progress = velero::Progress{bytes, bytes};
  if (!sum->metadata_errors.empty()) {
    // Content is complete; ownership or modes are not (NFS root_squash, velero#10040): say so.
    f.message = fmt::format("restored, but {} ownership/permission/time changes failed (first: {})",
                            sum->metadata_errors.size(), sum->metadata_errors.front());
  }
  log_->info("restore finished pvr={}/{} snapshot={} files={} bytes={} warnings={}", options_.ns,
             job.name, snap_id->Short(), sum->files, bytes, sum->metadata_errors.size());
  return f;
}

// ---------------------------------------------------------------------------------------------
// Run

void AgentImpl::CheckPodsDirectory() {
  if (!pods_root_) return;
  std::vector<std::string> uids;
  for (const kube::Object& o : pods_->List()) {
    Result<kube::Pod> pod = kube::ParsePod(o);
    if (pod.ok() && pod->phase == "Running") uids.push_back(pod->KubeletUid());
  }
  Result<std::vector<std::string>> missing = hostpath::MissingPodDirs(*pods_root_, uids);
  if (!missing.ok()) {
    log_->warn("cannot check the host pods directory path={} err=\"{}\"", options_.host_pods,
               missing.status().ToString());
  } else if (!missing->empty()) {
    log_->warn(
        "running pods of this node have no directory under the host pods directory: is --host-pods "
        "the kubelet "
        "pods directory (see --kubelet-root-dir in Velero's docs)? path={} missing={} of={} "
        "first={}",
        options_.host_pods, missing->size(), uids.size(), missing->front());
  }
}

Status AgentImpl::Run(std::stop_token stop) {
  kube::InformerOptions pvb_opts;
  pvb_opts.ns = options_.ns;
  pvb_opts.resync = options_.resync;
  pvbs_ = std::make_unique<kube::Informer>(client_, kube::kPodVolumeBackups, pvb_opts,
                                           [this](kube::EventType, const kube::Object& o) {
                                             Result<kube::ObjectMeta> m = kube::ParseMeta(o);
                                             if (m.ok()) Enqueue(Key(Kind::kBackup, m->name));
                                           });
  pvrs_ = std::make_unique<kube::Informer>(client_, kube::kPodVolumeRestores, pvb_opts,
                                           [this](kube::EventType, const kube::Object& o) {
                                             Result<kube::ObjectMeta> m = kube::ParseMeta(o);
                                             if (m.ok()) Enqueue(Key(Kind::kRestore, m->name));
                                           });
  kube::InformerOptions pod_opts;
  pod_opts.list.field_selector = "spec.nodeName=" + options_.node_name;
  pod_opts.resync = options_.resync;
  pods_ = std::make_unique<kube::Informer>(
      client_, kube::kPods, pod_opts,
      [this](kube::EventType, const kube::Object& o) { OnPodEvent(o); });
  // Pods first: a PVR is only matched against a synced pod cache.
  pods_->Start();
  pvbs_->Start();
  pvrs_->Start();
  log_->info("agent starting node={} ns={} host_pods={} max_concurrent={}", options_.node_name,
             options_.ns, options_.host_pods, options_.max_concurrent);
  while (!(pods_->synced() && pvbs_->synced() && pvrs_->synced())) {
    if (stop.stop_requested()) return Status::Ok();
    pods_->WaitForSync(std::chrono::milliseconds(200));
    pvbs_->WaitForSync(std::chrono::milliseconds(200));
    pvrs_->WaitForSync(std::chrono::milliseconds(200));
    if (!pods_->synced() || !pvbs_->synced()) {
      Status e = pvbs_->last_error();
      if (!e.ok()) log_->warn("waiting for the API server err=\"{}\"", e.ToString());
    }
  }
  started_ = true;
  log_->info("agent ready node={}", options_.node_name);
  CheckPodsDirectory();

  while (true) {
    std::string key;
    std::vector<std::unique_ptr<Job>> done;
    {
      std::unique_lock l(mu_);
      cv_.wait(l, stop, [&] {
        if (!queue_.empty() || !finished_jobs_.empty()) return true;
        return !delayed_.empty() && delayed_.begin()->first <= steady_clock::now();
      });
      if (!finished_jobs_.empty()) done.swap(finished_jobs_);
      while (!delayed_.empty() && delayed_.begin()->first <= steady_clock::now()) {
        const std::string k = delayed_.begin()->second;
        delayed_.erase(delayed_.begin());
        if (queued_.insert(k).second) queue_.push_back(k);
      }
      if (stop.stop_requested()) break;
      if (!queue_.empty()) {
        key = queue_.front();
        queue_.pop_front();
        queued_.erase(key);
      } else if (done.empty() && !delayed_.empty()) {
        // Sleep until the next delayed key is due (or something else happens).
        cv_.wait_until(l, stop, delayed_.begin()->first,
                       [&] { return !queue_.empty() || !finished_jobs_.empty(); });
      }
    }
    done.clear();  // joins finished job threads (they have returned or are about to)
    if (!key.empty()) Reconcile(key);
  }

  // Shutdown: stop the jobs, let each write its hand-back status, join them.
  log_->info("agent stopping node={}", options_.node_name);
  std::vector<std::unique_ptr<Job>> all;
  {
    std::lock_guard l(mu_);
    shutting_down_ = true;
    for (auto& [k, j] : jobs_) {
      j->reason = StopReason::kShutdown;
      j->stop.request_stop();
    }
  }
  while (true) {
    {
      std::lock_guard l(mu_);
      for (auto& j : finished_jobs_) all.push_back(std::move(j));
      finished_jobs_.clear();
      if (jobs_.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  all.clear();
  pods_->Stop();
  pvbs_->Stop();
  pvrs_->Stop();
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Agent>> Agent::Create(kube::Client& client, AgentOptions options) {
  auto a = std::make_unique<AgentImpl>(client, std::move(options));
  FSB_RETURN_IF_ERROR(a->Init());
  return std::unique_ptr<Agent>(std::move(a));
}

}  // namespace fsb::agent
