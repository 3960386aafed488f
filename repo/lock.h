// repo/lock.h: restic's repository locks (restic-repo-format.md §11), file format and semantics:
// shared locks for backup/restore, exclusive for check/prune; refreshed every 5 minutes; a lock
// older than 30 minutes, or from this host with a dead PID, is stale. Unlike restic 0.14, fsb does
// not let a stale lock block it (the most common Velero/restic outage, velero#5925): it logs and
// ignores it. RepoLock: one owner thread; its refresher is its own thread.
#pragma once

#include <chrono>
#include <condition_variable>
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

// Stale: older than 30 minutes, or from this host and its PID is gone.
bool IsStale(const LockInfo& l, int64_t now_sec, const std::string& this_host);

class RepoLock {
 public:
  // Takes a lock: fails with kFailedPrecondition "repository is already locked [exclusively] by
  // PID p on host h (age ...)" when a fresh conflicting lock exists. Retries until `retry_for`
  // has passed. Starts the refresher.
  static Result<std::unique_ptr<RepoLock>> Acquire(Repository& repo, bool exclusive,
                                                   std::chrono::seconds retry_for = std::chrono::seconds(0));
  // Stops refreshing and removes the lock file.
  ~RepoLock();
  RepoLock(const RepoLock&) = delete;
  RepoLock& operator=(const RepoLock&) = delete;
  const Id& id() const;

 private:
  RepoLock(Repository& repo, LockInfo info, Id id);
  void RefreshLoop(std::stop_token st);

  Repository& repo_;
  LockInfo info_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  Id id_;  // guarded by mu_
  std::jthread refresher_;
};

// Removes stale locks (all locks with remove_all). Returns the number removed.
Result<int> RemoveLocks(Repository& repo, bool remove_all);

// Lists every readable lock with its ID.
Result<std::vector<std::pair<Id, LockInfo>>> ListLocks(Repository& repo);

std::string Hostname();

}  // namespace fsb::repo
