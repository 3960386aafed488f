#include "repo/lock.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/sysinfo.h"

namespace fsb::repo {
namespace {

using json = nlohmann::json;

int64_t NowSec() { return static_cast<int64_t>(time(nullptr)); }

std::string Describe(const LockInfo& l, int64_t now) {
  return fmt::format("PID {} on host {} by {} (age {}s{})", l.pid, l.hostname, l.username,
                     now - l.time.sec, l.exclusive ? ", exclusive" : "");
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
  if (auto h = j.find("hostname"); h != j.end() && h->is_string()) l.hostname = h->get<std::string>();
  if (auto u = j.find("username"); u != j.end() && u->is_string()) l.username = u->get<std::string>();
  if (auto p = j.find("pid"); p != j.end() && p->is_number_integer()) l.pid = p->get<int64_t>();
  if (auto u = j.find("uid"); u != j.end() && u->is_number_unsigned()) l.uid = u->get<uint32_t>();
  if (auto g = j.find("gid"); g != j.end() && g->is_number_unsigned()) l.gid = g->get<uint32_t>();
  return l;
}

bool IsStale(const LockInfo& l, int64_t now_sec, const std::string& this_host) {
  if (now_sec - l.time.sec > std::chrono::duration_cast<std::chrono::seconds>(kLockStaleAge).count()) {
    return true;
  }
  if (l.hostname == this_host && l.pid > 0) {
    if (kill(static_cast<pid_t>(l.pid), 0) != 0 && errno == ESRCH) return true;
  }
  return false;
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

RepoLock::RepoLock(Repository& repo, LockInfo info, Id id)
    : repo_(repo), info_(std::move(info)), id_(id) {
  refresher_ = std::jthread([this](std::stop_token st) { RefreshLoop(st); });
}

const Id& RepoLock::id() const { return id_; }

Result<std::unique_ptr<RepoLock>> RepoLock::Acquire(Repository& repo, bool exclusive,
                                                    std::chrono::seconds retry_for) {
  const std::string host = Hostname();
  const auto deadline = std::chrono::steady_clock::now() + retry_for;
  auto log = GetLogger("repo");
  for (int attempt = 0;; attempt++) {
    auto conflict = [&](const std::optional<Id>& own) -> Result<std::optional<std::string>> {
      FSB_ASSIGN_OR_RETURN(auto locks, ListLocks(repo));
      int64_t now = NowSec();
      for (const auto& [id, l] : locks) {
        if (own && id == *own) continue;
        if (!exclusive && !l.exclusive) continue;
        if (IsStale(l, now, host)) {
          log->warn("ignoring stale lock lock={} holder=\"{}\"", id.Short(), Describe(l, now));
          continue;
        }
        return std::optional<std::string>(fmt::format("repository is already locked{} by {}",
                                                      l.exclusive ? " exclusively" : "", Describe(l, now)));
      }
      return std::optional<std::string>();
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
      // restic waits 200 ms and looks again, to catch a racing locker.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      Result<std::optional<std::string>> after = conflict(id);
      if (after.ok() && !*after) {
        return std::unique_ptr<RepoLock>(new RepoLock(repo, std::move(info), id));
      }
      repo.backend().Remove(Handle{FileType::kLock, id.Hex()}).IgnoreError();  // best effort
      if (!after.ok()) return after.status();
      before = *after;
    }
    if (std::chrono::steady_clock::now() >= deadline) return Status::FailedPrecondition(*before);
    auto delay = std::chrono::milliseconds(std::min(10000, 500 << std::min(attempt, 4)));
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        delay, deadline - std::chrono::steady_clock::now()));
  }
}

void RepoLock::RefreshLoop(std::stop_token st) {
  for (;;) {
    {
      std::unique_lock l(mu_);
      if (cv_.wait_for(l, st, kLockRefreshInterval, [] { return false; })) return;
      if (st.stop_requested()) return;
    }
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    info_.time = LocalTimestamp(ts.tv_sec, static_cast<uint32_t>(ts.tv_nsec));
    std::string j = EncodeLock(info_);
    Result<Id> id = repo_.SaveUnpacked(FileType::kLock, AsBytes(j));
    if (!id.ok()) {
      GetLogger("repo")->warn("lock refresh failed err=\"{}\"", id.status().ToString());
      continue;
    }
    Id old;
    {
      std::lock_guard l(mu_);
      old = id_;
      id_ = *id;
    }
    repo_.backend().Remove(Handle{FileType::kLock, old.Hex()}).IgnoreError();  // superseded
  }
}

RepoLock::~RepoLock() {
  refresher_.request_stop();
  cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
  Status s = repo_.backend().Remove(Handle{FileType::kLock, id_.Hex()});
  if (!s.ok()) GetLogger("repo")->warn("could not remove lock lock={} err=\"{}\"", id_.Short(), s.ToString());
}

Result<int> RemoveLocks(Repository& repo, bool remove_all) {
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
    if (!remove_all && !IsStale(l, now, host)) continue;
    FSB_RETURN_IF_ERROR(repo.backend().Remove(Handle{FileType::kLock, id.Hex()}));
    removed++;
  }
  return removed;
}

}  // namespace fsb::repo
