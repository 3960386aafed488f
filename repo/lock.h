// repo/lock.h: restic's repository locks (restic-repo-format.md §11), file format and semantics:
// shared locks for backup/restore/check, exclusive for prune/forget; refreshed every 5 minutes
// (a new lock file is written, then the old one removed, as restic does); a lock older than 30
// minutes, or from this host with a dead PID, or from a holder the caller knows is gone, is stale.
// Unlike restic 0.14, fsb does not let a stale lock block it (the most common Velero/restic
// outage, velero#5925): it logs and ignores it. RepoLock: one owner thread; its refresher is its
// own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "repo/id.h"
#include "repo/node.h"
#include "repo/repository.h"

namespace fsb::repo {

struct LockInfo {
  Timestamp time;
  bool exclusive = false;
  std::string hostname;
  std::string username;
  int64_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

std::string EncodeLock(const LockInfo& l);
Result<LockInfo> DecodeLock(ByteView json);

inline constexpr std::chrono::minutes kLockStaleAge{30};
inline constexpr std::chrono::minutes kLockRefreshInterval{5};

struct LockOptions {
  // --retry-lock: how long to keep trying while a fresh conflicting lock exists (0: fail at once).
  std::chrono::milliseconds retry_for{0};
  // restic refreshes every 5 minutes, well within the 30 minutes after which others may call the
  // lock stale. Tests shorten it.
  std::chrono::milliseconds refresh_interval = kLockRefreshInterval;
  // A lock whose time is older than this is stale (restic: 30 minutes).
  std::chrono::milliseconds stale_age = kLockStaleAge;
  // Holders known to be gone, whose locks are stale at once whatever their age. In Kubernetes a
  // lock's hostname is the pod name, and a lock from a pod that no longer exists can never be
  // released by its owner. Called on the acquiring (or unlocking) thread; may be empty.
  std::function<bool(const LockInfo&)> is_stale_holder;
  // Shared locks only: return as soon as the lock file is written, and take restic's second look
  // (200 ms later, for a racing exclusive locker; at once where the backend's listing is
  // consistent, see BackendProperties) on the refresher thread while the caller reads
  // the index and walks its source. The caller must not write to the repository before
  // WaitConfirmed() is OK; Acquire installs that as the repository's write barrier, so every
  // pack, index and snapshot write waits for it. Exclusive lockers (prune, forget) always confirm
  // before Acquire returns: they delete. Ignored with a retry_for: a conflict found by the
  // background look cannot be waited out (what the caller read meanwhile may be pruned away), so a
  // caller that wants to wait for the lock gets the look before Acquire returns, with retries.
  bool confirm_in_background = false;
};

// Stale: older than `stale_age`, or from this host and its PID is gone, or `is_stale_holder` says
// so.
bool IsStale(const LockInfo& l, int64_t now_sec, const std::string& this_host,
             const LockOptions& options = {});

class RepoLock {
 public:
  // Takes a lock: fails with kFailedPrecondition "repository is already locked [exclusively] by
  // PID p on host h by user u (age Ns)" naming the newest conflicting holder when a fresh
  // conflicting lock exists: for a shared lock an exclusive one, for an exclusive lock any. Stale
  // locks are ignored (logged). Retries with backoff until `retry_for` has passed, then fails
  // with the holder of that moment. Blocks (≥ 200 ms: restic's wait before the second look,
  // unless the backend's listing is consistent).
  // Starts the refresher thread. `repo` must outlive the lock.
  static Result<std::unique_ptr<RepoLock>> Acquire(Repository& repo, bool exclusive,
                                                   const LockOptions& options = {});
  static Result<std::unique_ptr<RepoLock>> Acquire(Repository& repo, bool exclusive,
                                                   std::chrono::seconds retry_for) {
    LockOptions o;
    o.retry_for = retry_for;
    return Acquire(repo, exclusive, o);
  }
  // Stops refreshing and removes the lock file.
  ~RepoLock();
  RepoLock(const RepoLock&) = delete;
  RepoLock& operator=(const RepoLock&) = delete;
  // Blocks until the second look for a racing exclusive locker is done (at once unless
  // LockOptions::confirm_in_background): OK, or kFailedPrecondition naming the holder (the lock
  // file is then removed). Safe to call from any thread, any number of times.
  Status WaitConfirmed() const;
  // The current lock file (it changes with every refresh).
  Id id() const;
  bool exclusive() const { return exclusive_; }
  // OK while the lock is safely held. kFailedPrecondition once the refresher has not managed to
  // rewrite the lock file for stale_age - 1.5 × refresh_interval (22.5 minutes at the defaults,
  // as restic ≥ 0.16): other clients may soon treat it as stale, so a long operation must stop
  // before it deletes anything. Safe to call from any thread.
  Status Valid() const;
  // Rewrites the lock file now (what the refresher does on its timer): a new file with the
  // current time first, then the old one removed. Safe to call from any thread.
  Status Refresh();

 private:
  RepoLock(Repository& repo, LockInfo info, Id id, const LockOptions& options, bool confirmed);
  void RefreshLoop(std::stop_token st);
  // The deferred second look (confirm_in_background), run first by the refresher thread.
  Status Confirm(std::stop_token st);

  Repository& repo_;
  const LockOptions options_;
  const bool exclusive_;
  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  LockInfo info_;                                     // guarded by mu_ (time changes)
  Id id_;                                             // guarded by mu_
  std::chrono::steady_clock::time_point last_write_;  // guarded by mu_
  mutable std::condition_variable confirm_cv_;
  bool confirmed_ = false;                            // guarded by mu_
  Status confirm_status_;                             // guarded by mu_
  const bool confirmed_at_start_;  // false: confirmed in the background, a write barrier is ours
  std::mutex refresh_mu_;                             // one refresh at a time
  std::jthread refresher_;
};

// Removes stale locks (all locks with remove_all, also unreadable ones). Staleness as IsStale
// with `options` (its is_stale_holder lets the cluster layer remove locks of gone pods). Returns
// the number removed.
Result<int> RemoveLocks(Repository& repo, bool remove_all, const LockOptions& options = {});

// Lists every readable lock with its ID.
Result<std::vector<std::pair<Id, LockInfo>>> ListLocks(Repository& repo);

std::string Hostname();

}  // namespace fsb::repo
