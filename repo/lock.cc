#include "repo/lock.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <random>

#include "base/log.h"
#include "base/sysinfo.h"

namespace fsb::repo {
namespace {

using json = nlohmann::json;

int64_t NowSec() { return static_cast<int64_t>(time(nullptr)); }

// "1h2m3s" for a lock's age, as Go prints a duration rounded to seconds.
std::string Age(int64_t secs) {
  if (secs < 0) return fmt::format("-{}", Age(-secs));
  std::string out;
  if (secs >= 3600) out += fmt::format("{}h", secs / 3600);
  if (secs >= 60) out += fmt::format("{}m", secs / 60 % 60);
  return out + fmt::format("{}s", secs % 60);
}

// The holder as a person needs it to find the process: "PID 4242 on host h by user u (age 1m5s)".
std::string Describe(const LockInfo& l, int64_t now) {
  return fmt::format("PID {} on host {}{} (age {}{})", l.pid, l.hostname,
                     l.username.empty() ? "" : " by user " + l.username, Age(now - l.time.sec),
                     l.exclusive ? ", exclusive" : "");
}

}  // namespace

std::string Hostname() { return HostName(); }

std::string EncodeLock(const LockInfo& l) {
  std::string out = "{\"time\":";
  AppendGoJsonString(FormatTimestamp(l.time), out);
  out += l.exclusive ? ",\"exclusive\":true" : ",\"exclusive\":false";
  out += ",\"hostname\":";
  AppendGoJsonString(l.hostname, out);
  out += ",\"username\":";
  AppendGoJsonString(l.username, out);
  out += fmt::format(",\"pid\":{}", l.pid);
  if (l.uid) out += fmt::format(",\"uid\":{}", l.uid);
  if (l.gid) out += fmt::format(",\"gid\":{}", l.gid);
  out += '}';
  return out;
}

Result<LockInfo> DecodeLock(ByteView data) {
  json j = json::parse(data.begin(), data.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption("lock: malformed JSON");
  LockInfo l;
  auto t = j.find("time");
  if (t == j.end() || !t->is_string()) return Status::Corruption("lock: missing time");
  FSB_ASSIGN_OR_RETURN(l.time, ParseTimestamp(t->get_ref<const std::string&>()));
  if (auto e = j.find("exclusive"); e != j.end() && e->is_boolean()) l.exclusive = e->get<bool>();
  if (auto h = j.find("hostname"); h != j.end() && h->is_string())
    l.hostname = h->get<std::string>();
  if (auto u = j.find("username"); u != j.end() && u->is_string())
    l.username = u->get<std::string>();
  if (auto p = j.find("pid"); p != j.end() && p->is_number_integer()) l.pid = p->get<int64_t>();
  if (auto u = j.find("uid"); u != j.end() && u->is_number_unsigned()) l.uid = u->get<uint32_t>();
  if (auto g = j.find("gid"); g != j.end() && g->is_number_unsigned()) l.gid = g->get<uint32_t>();
  return l;
}

bool IsStale(const LockInfo& l, int64_t now_sec, const std::string& this_host,
             const LockOptions& options) {
  if (now_sec - l.time.sec >
      std::chrono::duration_cast<std::chrono::seconds>(options.stale_age).count()) {
    return true;
  }
  if (l.hostname == this_host && l.pid > 0) {
    if (kill(static_cast<pid_t>(l.pid), 0) != 0 && errno == ESRCH) return true;
  }
  return options.is_stale_holder && options.is_stale_holder(l);
}

Result<std::vector<std::pair<Id, LockInfo>>> ListLocks(Repository& repo) {
  std::vector<Id> ids;
  FSB_RETURN_IF_ERROR(repo.backend().List(FileType::kLock, [&](const FileInfo& fi) {
    Result<Id> id = Id::FromHex(fi.name);
    if (id.ok()) ids.push_back(*id);
    return Status::Ok();
  }));
  std::vector<std::pair<Id, LockInfo>> out;
  for (const Id& id : ids) {
    Result<Bytes> data = repo.LoadUnpacked(FileType::kLock, id);
    if (!data.ok()) {
      // Removed meanwhile (a refresh or an unlock), or unreadable: not a lock we can honour.
      if (data.status().code() != StatusCode::kNotFound) {
        GetLogger("repo")->warn("ignoring unreadable lock lock={} err=\"{}\"", id.Short(),
                                data.status().ToString());
      }
      continue;
    }
    Result<LockInfo> l = DecodeLock(*data);
    if (!l.ok()) continue;
    out.emplace_back(id, *l);
  }
  return out;
}

namespace {

// restic waits this long after writing its lock and looks again, to catch a racing locker whose
// lock file is written but not yet listed.
constexpr std::chrono::milliseconds kSecondLookDelay{200};

// The wait before the second look. Where every completed write is in every later listing (one
// kernel's file system), none is needed: of two lockers that both passed their first look, the one
// whose second look comes later sees the other's lock, since that lock was written before the
// other's second look, which came first. The look itself is always taken.
std::chrono::milliseconds SecondLookDelay(Repository& repo) {
  return repo.backend().Properties().consistent_listing ? std::chrono::milliseconds(0)
                                                        : kSecondLookDelay;
}

// The newest fresh lock that conflicts with taking one (shared: exclusive ones; exclusive: any),
// described; nullopt when there is none. `own` is skipped; stale locks are logged if `log_stale`.
Result<std::optional<std::string>> FindConflict(Repository& repo, bool exclusive,
                                                const std::optional<Id>& own,
                                                const std::string& host, const LockOptions& options,
                                                bool log_stale) {
  FSB_ASSIGN_OR_RETURN(auto locks, ListLocks(repo));
  int64_t now = NowSec();
  const LockInfo* newest = nullptr;
  for (const auto& [id, l] : locks) {
    if (own && id == *own) continue;
    if (!exclusive && !l.exclusive) continue;
    if (IsStale(l, now, host, options)) {
      if (log_stale) {
        GetLogger("repo")->warn("ignoring stale lock lock={} holder=\"{}\"", id.Short(),
                                Describe(l, now));
      }
      continue;
    }
    if (newest == nullptr || l.time.sec > newest->time.sec) newest = &l;
  }
  if (newest == nullptr) return std::optional<std::string>();
  return std::optional<std::string>(fmt::format("repository is already locked{} by {}",
                                                newest->exclusive ? " exclusively" : "",
                                                Describe(*newest, now)));
}

}  // namespace

RepoLock::RepoLock(Repository& repo, LockInfo info, Id id, const LockOptions& options,
                   bool confirmed)
    : repo_(repo),
      options_(options),
      exclusive_(info.exclusive),
      info_(std::move(info)),
      id_(id),
      last_write_(std::chrono::steady_clock::now()),
      confirmed_(confirmed),
      confirmed_at_start_(confirmed) {
  refresher_ = std::jthread([this](std::stop_token st) { RefreshLoop(st); });
}

Status RepoLock::WaitConfirmed() const {
  std::unique_lock l(mu_);
  confirm_cv_.wait(l, [&] { return confirmed_; });
  return confirm_status_;
}

Status RepoLock::Confirm(std::stop_token st) {
  {
    std::unique_lock l(mu_);
    if (cv_.wait_for(l, st, SecondLookDelay(repo_), [] { return false; }) || st.stop_requested()) {
      return Status::Cancelled("lock released before it was confirmed");
    }
  }
  Result<std::optional<std::string>> after =
      FindConflict(repo_, exclusive_, id(), Hostname(), options_, false);
  if (after.ok() && !*after) return Status::Ok();
  return after.ok() ? Status::FailedPrecondition(**after) : after.status();
}

Id RepoLock::id() const {
  std::lock_guard l(mu_);
  return id_;
}

Result<std::unique_ptr<RepoLock>> RepoLock::Acquire(Repository& repo, bool exclusive,
                                                    const LockOptions& options) {
  const std::string host = Hostname();
  const auto deadline = std::chrono::steady_clock::now() + options.retry_for;
  auto log = GetLogger("repo");
  for (int attempt = 0;; attempt++) {
    auto conflict = [&](const std::optional<Id>& own) {
      return FindConflict(repo, exclusive, own, host, options, attempt == 0);
    };
    FSB_ASSIGN_OR_RETURN(std::optional<std::string> before, conflict(std::nullopt));
    if (!before) {
      LockInfo info;
      timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      info.time = LocalTimestamp(ts.tv_sec, static_cast<uint32_t>(ts.tv_nsec));
      info.exclusive = exclusive;
      info.hostname = host;
      info.username = UserName();
      info.pid = getpid();
      info.uid = getuid();
      info.gid = getgid();
      std::string j = EncodeLock(info);
      FSB_ASSIGN_OR_RETURN(Id id, repo.SaveUnpacked(FileType::kLock, AsBytes(j)));
      if (!exclusive && options.confirm_in_background && options.retry_for.count() == 0) {
        std::unique_ptr<RepoLock> lock(new RepoLock(repo, std::move(info), id, options, false));
        RepoLock* raw = lock.get();
        repo.SetWriteBarrier([raw] { return raw->WaitConfirmed(); });
        return lock;
      }
      std::this_thread::sleep_for(SecondLookDelay(repo));
      Result<std::optional<std::string>> after = conflict(id);
      if (after.ok() && !*after) {
        return std::unique_ptr<RepoLock>(new RepoLock(repo, std::move(info), id, options, true));
      }
      repo.backend().Remove(Handle{FileType::kLock, id.Hex()}).IgnoreError();  // best effort
      if (!after.ok()) return after.status();
      before = *after;
    }
    if (std::chrono::steady_clock::now() >= deadline) return Status::FailedPrecondition(*before);
    if (attempt == 0) log->info("waiting for lock reason=\"{}\"", *before);
    // 250 ms doubling up to 5 s, ±50 % jitter: two lockers that saw each other's fresh lock and
    // both backed off must not retry in lockstep forever.
    thread_local std::mt19937 rng(std::random_device{}());
    const int base = std::min(5000, 250 << std::min(attempt, 5));
    auto delay =
        std::chrono::milliseconds(std::uniform_int_distribution<int>(base / 2, base * 3 / 2)(rng));
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        delay, deadline - std::chrono::steady_clock::now()));
  }
}

Status RepoLock::Refresh() {
  std::lock_guard one(refresh_mu_);
  LockInfo info;
  {
    std::lock_guard l(mu_);
    info = info_;
  }
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  info.time = LocalTimestamp(ts.tv_sec, static_cast<uint32_t>(ts.tv_nsec));
  std::string j = EncodeLock(info);
  Result<Id> id = repo_.SaveUnpacked(FileType::kLock, AsBytes(j));
  if (!id.ok()) return id.status().WithContext("refresh lock");
  Id old;
  {
    std::lock_guard l(mu_);
    old = id_;
    id_ = *id;
    info_ = info;
    last_write_ = std::chrono::steady_clock::now();
  }
  // The new file is in place first, so the repository is never without our lock.
  Status s = repo_.backend().Remove(Handle{FileType::kLock, old.Hex()});
  if (!s.ok() && s.code() != StatusCode::kNotFound) {
    return s.WithContext("refresh lock: remove superseded lock " + old.Short());
  }
  return Status::Ok();
}

Status RepoLock::Valid() const {
  const auto limit = options_.stale_age - options_.refresh_interval * 3 / 2;
  std::lock_guard l(mu_);
  const auto since = std::chrono::steady_clock::now() - last_write_;
  if (since > limit) {
    return Status::FailedPrecondition(
        fmt::format("lock {} was last refreshed {}s ago: others may treat it as stale soon",
                    id_.Short(), std::chrono::duration_cast<std::chrono::seconds>(since).count()));
  }
  return Status::Ok();
}

void RepoLock::RefreshLoop(std::stop_token st) {
  bool confirmed;
  {
    std::lock_guard l(mu_);
    confirmed = confirmed_;
  }
  if (!confirmed) {
    Status s = Confirm(st);
    if (!s.ok() && s.code() != StatusCode::kCancelled) {
      GetLogger("repo")->warn("lock not confirmed, giving it up err=\"{}\"", s.ToString());
      repo_.backend().Remove(Handle{FileType::kLock, id().Hex()}).IgnoreError();  // best effort
    }
    {
      std::lock_guard l(mu_);
      confirmed_ = true;
      confirm_status_ = s;
    }
    confirm_cv_.notify_all();
    if (!s.ok()) return;  // a lock we do not hold is not refreshed
  }
  for (;;) {
    {
      std::unique_lock l(mu_);
      if (cv_.wait_for(l, st, options_.refresh_interval, [] { return false; })) return;
      if (st.stop_requested()) return;
    }
    Status s = Refresh();
    if (!s.ok()) GetLogger("repo")->warn("lock refresh failed err=\"{}\"", s.ToString());
  }
}

RepoLock::~RepoLock() {
  refresher_.request_stop();
  cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
  // The write barrier Acquire installed points at this lock.
  if (!confirmed_at_start_) repo_.SetWriteBarrier(nullptr);
  const Id id = this->id();
  Status s = repo_.backend().Remove(Handle{FileType::kLock, id.Hex()});
  if (!s.ok() && s.code() != StatusCode::kNotFound)
    GetLogger("repo")->warn("could not remove lock lock={} err=\"{}\"", id.Short(), s.ToString());
}

Result<int> RemoveLocks(Repository& repo, bool remove_all, const LockOptions& options) {
  if (remove_all) {
    // Every lock file, also those that cannot be read (a crash mid-write, another tool's format).
    std::vector<std::string> names;
    FSB_RETURN_IF_ERROR(repo.backend().List(FileType::kLock, [&](const FileInfo& fi) {
      names.push_back(fi.name);
      return Status::Ok();
    }));
    for (const std::string& n : names) {
      Status s = repo.backend().Remove(Handle{FileType::kLock, n});
      if (!s.ok() && s.code() != StatusCode::kNotFound) return s;
    }
    return static_cast<int>(names.size());
  }
  FSB_ASSIGN_OR_RETURN(auto locks, ListLocks(repo));
  const std::string host = Hostname();
  int64_t now = NowSec();
  int removed = 0;
  for (const auto& [id, l] : locks) {
    if (!IsStale(l, now, host, options)) continue;
    FSB_RETURN_IF_ERROR(repo.backend().Remove(Handle{FileType::kLock, id.Hex()}));
    removed++;
  }
  return removed;
}

}  // namespace fsb::repo
