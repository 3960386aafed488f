// kube/informer.h: keeps an up-to-date local copy of one resource (optionally filtered by
// namespace and selectors) with list + watch, and tells a handler about every change: the
// building block of fsb's controllers. On start it lists, then watches from the list's
// resourceVersion with bookmarks; a dropped watch is resumed from the last version seen with
// exponential backoff; 410 Gone (version too old) re-lists and reports the differences.
// Thread-safety: the handler runs on the informer's own threads (list/watch, and the periodic
// resync), one call at a time (a mutex orders the calls), and must not block (hand work to a
// queue); it may call Get/List, but not Stop. Get/List/synced are safe from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "kube/client.h"
#include "kube/resource.h"

namespace fsb::kube {

struct InformerOptions {
  std::string ns;  // "" = all namespaces
  ListOptions list;
  // Every cached object is handed to the handler again (kModified) this often, so controllers
  // re-check time-based conditions (a cancel deadline, a pod that appeared) without polling.
  // Zero disables.
  std::chrono::seconds resync{60};
  // Backoff between failed list/watch attempts: doubles from min to max, reset after a success.
  std::chrono::milliseconds backoff_min{200};
  std::chrono::milliseconds backoff_max{30'000};
};

class Informer {
 public:
  // Called on the informer thread. For kDeleted `obj` is the last known state.
  using Handler = std::function<void(EventType type, const Object& obj)>;

  // `client` must outlive the informer. Does not start: call Start.
  Informer(Client& client, const Resource& resource, InformerOptions options, Handler handler);
  ~Informer();  // stops and joins
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  // Starts the list/watch thread (and the resync thread); a second call does nothing.
  void Start();
  // Stops and joins: within about a second while watching (the watch checks its stop token); a
  // list or other request in flight finishes first (bounded by ClientOptions::request_timeout).
  // Must not be called from the handler.
  void Stop();
  // Blocks until the first list has been delivered to the handler, or the timeout.
  bool WaitForSync(std::chrono::milliseconds timeout);
  bool synced() const;

  // From the cache (a copy): key is "namespace/name" or "name" for cluster-scoped resources.
  std::optional<Object> Get(std::string_view ns, std::string_view name) const;
  std::vector<Object> List() const;
  // The last error of list/watch (OK while healthy): for readiness and logs. Set when a list or
  // watch fails; cleared by the next successful list, watch event or normally ended watch.
  Status last_error() const;

 private:
  void Run(std::stop_token stop);
  void ResyncLoop(std::stop_token stop);
  // Lists and makes the cache the list's items, telling the handler what changed (everything is
  // kAdded on the first list). Sets *rv to the list's resourceVersion.
  Status ListAndReplace(std::string* rv);
  // One watch event: cache, handler, *rv.
  Status Apply(const WatchEvent& ev, std::string* rv);
  // Sets the cache entry for `key` (or erases it) and calls the handler; deliver_mu_ held.
  void Deliver(EventType type, const std::string& key, const Object& obj);
  std::string Key(const Object& obj) const;
  void SetError(const Status& s);

  Client& client_;
  const Resource resource_;
  const InformerOptions options_;
  Handler handler_;
  mutable std::mutex mu_;
  std::condition_variable synced_cv_;
  std::map<std::string, Object, std::less<>> cache_;  // guarded by mu_
  bool synced_ = false;                               // guarded by mu_
  Status last_error_;                                 // guarded by mu_
  uint64_t consecutive_failures_ = 0;                 // list/watch thread only
  // Held while the cache changes and the handler runs: one handler call at a time, and the
  // resync never hands out a state older than what the watch delivered. Taken before mu_.
  std::mutex deliver_mu_;
  std::jthread thread_;
  std::jthread resync_thread_;
};

}  // namespace fsb::kube
