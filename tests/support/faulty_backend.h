// tests/support/faulty_backend.h: a Backend decorator for tests that injects failures (the Nth call
// of an operation fails with a given Status), corrupts loaded data (flips a byte of one file) and
// counts calls per operation and per file (to assert, say, that a restore loads each pack once).
// Safe for concurrent use; the lock is not held while the wrapped backend runs.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "repo/backend/backend.h"

namespace fsb::testing {

enum class BackendOp { kSave, kLoad, kSize, kList, kRemove, kCreate };
inline constexpr int kBackendOpCount = 6;
std::string_view BackendOpName(BackendOp op);  // "save", "load", ...

class FaultyBackend : public repo::Backend {
 public:
  struct Fault {
    BackendOp op = BackendOp::kLoad;
    Status status;  // what the failing calls return; must not be OK
    // The nth matching call counted from when the fault is added fails (1 = the next one) ...
    int nth = 1;
    // ... and so do the matching calls right after it, `times` in all; -1 = every one from nth on.
    int times = 1;
    // When set, only calls on this file match (never List or Create).
    std::optional<repo::Handle> handle = std::nullopt;
    // false: the call fails without reaching the wrapped backend. true: it reaches it (a Save is
    // stored, a Remove removes) and then fails anyway, like a reply lost on the network.
    bool after_call = false;
  };

  // `inner` is borrowed and must outlive this object.
  explicit FaultyBackend(repo::Backend& inner) : inner_(inner) {}

  void AddFault(Fault fault);
  // The nth call of `op` from now (1 = the next) fails with `status`.
  void FailNth(BackendOp op, int n, Status status);
  // Every call of `op` from now fails with `status`, until ClearFaults.
  void FailAlways(BackendOp op, Status status);
  void ClearFaults();
  // Simulates the process dying at the nth call from now, counted over every operation: that
  // call and every later one fail with `status`. With after_call the nth call still reaches the
  // wrapped backend (a Save is stored, a Remove removes) before it fails, like a crash right after
  // the request went out. ClearFaults ends the crash.
  void CrashAt(int n, Status status, bool after_call = false);
  // Calls of every operation since construction or ResetCounts.
  int TotalCalls() const;

  // Each Load of `h` whose range covers file offset `offset` returns the byte there XORed with
  // `mask` (the stored file is untouched). Several flips may be set.
  void FlipByte(const repo::Handle& h, uint64_t offset, uint8_t mask = 0x01);
  void ClearFlips();

  // Calls made to this backend (including the ones made to fail), since construction or
  // ResetCounts.
  int Calls(BackendOp op) const;
  int Calls(BackendOp op, const repo::Handle& h) const;
  // Calls of `op` per file, keyed by Handle::Path() ("data/ab/<id>"); List and Create have none.
  std::map<std::string, int> CallsByPath(BackendOp op) const;
  void ResetCounts();

  std::string Location() const override { return inner_.Location(); }
  Status Save(const repo::Handle& h, ByteView data) override;
  Result<Bytes> Load(const repo::Handle& h, uint64_t offset, uint64_t length) override;
  Result<uint64_t> Size(const repo::Handle& h) override;
  Status List(repo::FileType type, const std::function<Status(const repo::FileInfo&)>& fn) override;
  Status Remove(const repo::Handle& h) override;
  Status Create() override;
  repo::BackendProperties Properties() const override { return inner_.Properties(); }
  // Forwards the wrapped backend's spool files (unless offer_spool is off); a spool file's
  // Publish is a Save of its handle here: counted, and failed or crashed like one.
  Result<std::unique_ptr<repo::SpoolFile>> CreateSpool(repo::FileType type) override;
  bool offer_spool = true;

 private:
  class FaultySpool;
  struct ActiveFault {
    Fault fault;
    int seen = 0;  // matching calls since it was added
  };
  struct Flip {
    repo::Handle handle;
    uint64_t offset = 0;
    uint8_t mask = 0;
  };
  struct Decision {
    std::optional<Status> fail_before;
    std::optional<Status> fail_after;
  };

  // Counts the call and decides whether it fails. `h` is null for List and Create.
  Decision OnCall(BackendOp op, const repo::Handle* h);

  repo::Backend& inner_;
  mutable std::mutex mu_;
  std::vector<ActiveFault> faults_;                                     // guarded by mu_
  int crash_at_ = 0;    // guarded by mu_: 0 = no crash; else the call (of crash_seen_) that dies
  int crash_seen_ = 0;  // guarded by mu_: calls since CrashAt
  bool crash_after_ = false;                                            // guarded by mu_
  Status crash_status_;                                                 // guarded by mu_
  int total_calls_ = 0;                                                 // guarded by mu_
  std::vector<Flip> flips_;                                             // guarded by mu_
  std::array<int, kBackendOpCount> calls_{};                            // guarded by mu_
  std::array<std::map<std::string, int>, kBackendOpCount> path_calls_;  // guarded by mu_
};

}  // namespace fsb::testing
