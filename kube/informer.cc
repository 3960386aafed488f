#include "kube/informer.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "base/log.h"

namespace fsb::kube {
namespace {

using SteadyClock = std::chrono::steady_clock;

// A watch that ends normally sooner than this without a single event counts as a failure for the
// backoff, so that a server closing every watch at once is not hammered.
constexpr std::chrono::seconds kShortWatch{1};

std::chrono::milliseconds Jitter(std::chrono::milliseconds d) {
  thread_local std::minstd_rand rng(std::random_device{}());
  if (d.count() < 4) return d;
  std::uniform_int_distribution<int64_t> dist(d.count() * 3 / 4, d.count() * 5 / 4);
  return std::chrono::milliseconds(dist(rng));
}

// Sleeps for `d` or until stop is requested; false when stopped.
bool SleepFor(std::stop_token stop, std::chrono::milliseconds d) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  cv.wait_for(lock, stop, d, [] { return false; });
  return !stop.stop_requested();
}

std::string MetaString(const Object& obj, const char* key) {
  if (!obj.is_object()) return {};
  auto meta = obj.find("metadata");
  if (meta == obj.end() || !meta->is_object()) return {};
  auto it = meta->find(key);
  if (it == meta->end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::string_view TypeName(EventType t) {
  switch (t) {
    case EventType::kAdded:
      return "added";
    case EventType::kModified:
      return "modified";
    case EventType::kDeleted:
      return "deleted";
    case EventType::kBookmark:
      return "bookmark";
  }
  return "?";
}

}  // namespace

Informer::Informer(Client& client, const Resource& resource, InformerOptions options,
                   Handler handler)
    : client_(client),
      resource_(resource),
      options_(std::move(options)),
      handler_(std::move(handler)) {}

Informer::~Informer() { Stop(); }

void Informer::Start() {
  if (thread_.joinable()) return;
  thread_ = std::jthread([this](std::stop_token stop) { Run(stop); });
  if (options_.resync.count() > 0) {
    resync_thread_ = std::jthread([this](std::stop_token stop) { ResyncLoop(stop); });
  }
}

void Informer::Stop() {
  thread_.request_stop();
  resync_thread_.request_stop();
  if (thread_.joinable()) thread_.join();
  if (resync_thread_.joinable()) resync_thread_.join();
}

bool Informer::WaitForSync(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return synced_cv_.wait_for(lock, timeout, [this] { return synced_; });
}

bool Informer::synced() const {
  std::lock_guard lock(mu_);
  return synced_;
}

std::optional<Object> Informer::Get(std::string_view ns, std::string_view name) const {
  const std::string key = resource_.namespaced ? fmt::format("{}/{}", ns, name) : std::string(name);
  std::lock_guard lock(mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  return it->second;
}

std::vector<Object> Informer::List() const {
  std::lock_guard lock(mu_);
  std::vector<Object> out;
  out.reserve(cache_.size());
  for (const auto& [key, obj] : cache_) out.push_back(obj);
  return out;
}

Status Informer::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

std::string Informer::Key(const Object& obj) const {
  const std::string name = MetaString(obj, "name");
  if (!resource_.namespaced) return name;
  return MetaString(obj, "namespace") + "/" + name;
}

void Informer::SetError(const Status& s) {
  auto log = GetLogger("kube");
  if (s.ok()) {
    if (consecutive_failures_ > 0) {
      log->info("informer recovered resource={} failures={}", resource_.QualifiedName(),
                consecutive_failures_);
    }
    consecutive_failures_ = 0;
  } else {
    // The first failure of a run is a warning; the rest of the run only debug (the backoff
    // bounds them, and last_error() has the latest).
    if (consecutive_failures_ == 0) {
      log->warn("informer list/watch failed resource={} err=\"{}\"", resource_.QualifiedName(),
                s.ToString());
    } else {
      log->debug("informer list/watch failed resource={} attempt={} err=\"{}\"",
                 resource_.QualifiedName(), consecutive_failures_ + 1, s.ToString());
    }
    ++consecutive_failures_;
  }
  std::lock_guard lock(mu_);
  last_error_ = s;
}

void Informer::Deliver(EventType type, const std::string& key, const Object& obj) {
  {
    std::lock_guard lock(mu_);
    if (type == EventType::kDeleted) {
      cache_.erase(key);
    } else {
      cache_.insert_or_assign(key, obj);
    }
  }
  handler_(type, obj);
}

Status Informer::ListAndReplace(std::string* rv) {
  FSB_ASSIGN_OR_RETURN(ObjectList list, client_.List(resource_, options_.ns, options_.list));
  std::lock_guard deliver(deliver_mu_);
  std::map<std::string, const Object*, std::less<>> fresh;
  for (const Object& obj : list.items) fresh.emplace(Key(obj), &obj);

  // What the cache holds now; only this thread changes it, under deliver_mu_.
  std::map<std::string, Object, std::less<>> old;
  {
    std::lock_guard lock(mu_);
    old = cache_;
  }
  for (const auto& [key, obj] : fresh) {
    auto it = old.find(key);
    if (it == old.end()) {
      Deliver(EventType::kAdded, key, *obj);
    } else if (MetaString(it->second, "resourceVersion") != MetaString(*obj, "resourceVersion") ||
               it->second != *obj) {
      Deliver(EventType::kModified, key, *obj);
    }
  }
  for (const auto& [key, obj] : old) {
    if (fresh.find(key) == fresh.end()) Deliver(EventType::kDeleted, key, obj);
  }
  *rv = list.resource_version;
  SetError(Status::Ok());  // before synced_: whoever sees synced sees a healthy informer
  {
    std::lock_guard lock(mu_);
    synced_ = true;
  }
  synced_cv_.notify_all();
  return Status::Ok();
}

Status Informer::Apply(const WatchEvent& ev, std::string* rv) {
  const std::string obj_rv = MetaString(ev.object, "resourceVersion");
  if (!obj_rv.empty()) *rv = obj_rv;
  if (ev.type == EventType::kBookmark) return Status::Ok();
  const std::string key = Key(ev.object);
  std::lock_guard deliver(deliver_mu_);
  EventType type = ev.type;
  if (type != EventType::kDeleted) {
    // What the handler hears follows the cache: an ADDED for a known object (after a re-watch
    // from an older version) is a modification, a MODIFIED for an unknown one an addition.
    std::lock_guard lock(mu_);
    type = cache_.count(key) != 0 ? EventType::kModified : EventType::kAdded;
  }
  GetLogger("kube")->trace("informer event resource={} type={} key={} rv={}",
                           resource_.QualifiedName(), TypeName(type), key, obj_rv);
  Deliver(type, key, ev.object);
  return Status::Ok();
}

void Informer::Run(std::stop_token stop) {
  std::string rv;
  bool need_list = true;
  std::chrono::milliseconds backoff = options_.backoff_min;
  // Waits the current backoff and doubles it; false when stopped meanwhile.
  auto back_off = [&] {
    const bool go_on = SleepFor(stop, Jitter(backoff));
    backoff = std::min(backoff * 2, options_.backoff_max);
    return go_on;
  };
  while (!stop.stop_requested()) {
    if (need_list) {
      Status s = ListAndReplace(&rv);
      if (!s.ok()) {
        SetError(s);
        if (!back_off()) break;
        continue;
      }
      need_list = false;
      backoff = options_.backoff_min;
    }

    bool progressed = false;
    const auto started = SteadyClock::now();
    Status s = client_.Watch(
        resource_, options_.ns, options_.list, rv,
        [&](const WatchEvent& ev) {
          if (!progressed) {
            progressed = true;
            backoff = options_.backoff_min;
            SetError(Status::Ok());
          }
          return Apply(ev, &rv);
        },
        stop);
    if (stop.stop_requested()) break;
    if (s.ok()) {
      // The server's timeoutSeconds: watch again from the last version seen.
      if (!progressed && SteadyClock::now() - started < kShortWatch) {
        if (!back_off()) break;
      } else {
        SetError(Status::Ok());
      }
      continue;
    }
    if (IsGone(s)) {
      // The version is older than the server keeps: list again and report the differences.
      GetLogger("kube")->info("informer re-list resource={} rv={} err=\"{}\"",
                              resource_.QualifiedName(), rv, s.message());
      need_list = true;
      if (!progressed && !back_off()) break;
      continue;
    }
    SetError(s);
    if (!back_off()) break;
  }
}

void Informer::ResyncLoop(std::stop_token stop) {
  const auto period = std::chrono::duration_cast<std::chrono::milliseconds>(options_.resync);
  while (SleepFor(stop, period)) {
    std::lock_guard deliver(deliver_mu_);
    std::vector<Object> objects;
    {
      std::lock_guard lock(mu_);
      if (!synced_) continue;
      objects.reserve(cache_.size());
      for (const auto& [key, obj] : cache_) objects.push_back(obj);
    }
    for (const Object& obj : objects) {
      if (stop.stop_requested()) return;
      handler_(EventType::kModified, obj);
    }
  }
}

}  // namespace fsb::kube
