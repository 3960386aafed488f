#include "tests/support/faulty_backend.h"

#include <utility>

namespace fsb::testing {

using repo::FileInfo;
using repo::FileType;
using repo::Handle;

std::string_view BackendOpName(BackendOp op) {
  switch (op) {
    case BackendOp::kSave:
      return "save";
    case BackendOp::kLoad:
      return "load";
    case BackendOp::kSize:
      return "size";
    case BackendOp::kList:
      return "list";
    case BackendOp::kRemove:
      return "remove";
    case BackendOp::kCreate:
      return "create";
  }
  return "unknown";
}

void FaultyBackend::AddFault(Fault fault) {
  // A fault that cannot fire is a mistake in the test, not a condition to handle.
  FSB_CHECK(!fault.status.ok());
  FSB_CHECK(fault.nth >= 1);
  FSB_CHECK(fault.times == -1 || fault.times >= 1);
  std::lock_guard lock(mu_);
  faults_.push_back({std::move(fault), 0});
}

void FaultyBackend::FailNth(BackendOp op, int n, Status status) {
  AddFault({.op = op, .status = std::move(status), .nth = n, .times = 1});
}

void FaultyBackend::FailAlways(BackendOp op, Status status) {
  AddFault({.op = op, .status = std::move(status), .nth = 1, .times = -1});
}

void FaultyBackend::ClearFaults() {
  std::lock_guard lock(mu_);
  faults_.clear();
  crash_at_ = 0;
}

void FaultyBackend::CrashAt(int n, Status status, bool after_call) {
  FSB_CHECK(n >= 1 && !status.ok());
  std::lock_guard lock(mu_);
  crash_at_ = n;
  crash_seen_ = 0;
  crash_after_ = after_call;
  crash_status_ = std::move(status);
}

int FaultyBackend::TotalCalls() const {
  std::lock_guard lock(mu_);
  return total_calls_;
}

void FaultyBackend::FlipByte(const Handle& h, uint64_t offset, uint8_t mask) {
  std::lock_guard lock(mu_);
  flips_.push_back({h, offset, mask});
}

void FaultyBackend::ClearFlips() {
  std::lock_guard lock(mu_);
  flips_.clear();
}

int FaultyBackend::Calls(BackendOp op) const {
  std::lock_guard lock(mu_);
  return calls_[static_cast<size_t>(op)];
}

int FaultyBackend::Calls(BackendOp op, const Handle& h) const {
  std::lock_guard lock(mu_);
  const auto& m = path_calls_[static_cast<size_t>(op)];
  auto it = m.find(h.Path());
  return it == m.end() ? 0 : it->second;
}

std::map<std::string, int> FaultyBackend::CallsByPath(BackendOp op) const {
  std::lock_guard lock(mu_);
  return path_calls_[static_cast<size_t>(op)];
}

void FaultyBackend::ResetCounts() {
  std::lock_guard lock(mu_);
  calls_.fill(0);
  total_calls_ = 0;
  for (auto& m : path_calls_) m.clear();
}

FaultyBackend::Decision FaultyBackend::OnCall(BackendOp op, const Handle* h) {
  std::lock_guard lock(mu_);
  const size_t i = static_cast<size_t>(op);
  calls_[i]++;
  total_calls_++;
  if (h != nullptr) path_calls_[i][h->Path()]++;
  Decision d;
  if (crash_at_ > 0 && ++crash_seen_ >= crash_at_) {
    (crash_after_ && crash_seen_ == crash_at_ ? d.fail_after : d.fail_before) = crash_status_;
    return d;
  }
  for (ActiveFault& f : faults_) {
    if (f.fault.op != op) continue;
    if (f.fault.handle.has_value() && (h == nullptr || !(*f.fault.handle == *h))) continue;
    // Every matching fault counts the call, even when an earlier one already fails it.
    f.seen++;
    const bool fires =
        f.seen >= f.fault.nth && (f.fault.times == -1 || f.seen < f.fault.nth + f.fault.times);
    if (!fires || d.fail_before || d.fail_after) continue;
    (f.fault.after_call ? d.fail_after : d.fail_before) = f.fault.status;
  }
  return d;
}

Status FaultyBackend::Save(const Handle& h, ByteView data) {
  Decision d = OnCall(BackendOp::kSave, &h);
  if (d.fail_before) return *d.fail_before;
  Status s = inner_.Save(h, data);
  if (s.ok() && d.fail_after) return *d.fail_after;
  return s;
}

class FaultyBackend::FaultySpool : public repo::SpoolFile {
 public:
  FaultySpool(FaultyBackend& owner, std::unique_ptr<repo::SpoolFile> inner)
      : owner_(owner), inner_(std::move(inner)) {}
  Status WriteAt(uint64_t offset, ByteView data) override { return inner_->WriteAt(offset, data); }
  Status ReadAt(uint64_t offset, MutableByteView out) override { return inner_->ReadAt(offset, out); }
  Status Publish(const Handle& h) override {
    Decision d = owner_.OnCall(BackendOp::kSave, &h);
    if (d.fail_before) return *d.fail_before;
    Status s = inner_->Publish(h);
    if (s.ok() && d.fail_after) return *d.fail_after;
    return s;
  }

 private:
  FaultyBackend& owner_;
  std::unique_ptr<repo::SpoolFile> inner_;
};

Result<std::unique_ptr<repo::SpoolFile>> FaultyBackend::CreateSpool(repo::FileType type) {
  if (!offer_spool) return std::unique_ptr<repo::SpoolFile>();
  FSB_ASSIGN_OR_RETURN(std::unique_ptr<repo::SpoolFile> inner, inner_.CreateSpool(type));
  if (!inner) return inner;
  return std::unique_ptr<repo::SpoolFile>(new FaultySpool(*this, std::move(inner)));
}

Result<Bytes> FaultyBackend::Load(const Handle& h, uint64_t offset, uint64_t length) {
  Decision d = OnCall(BackendOp::kLoad, &h);
  if (d.fail_before) return *d.fail_before;
  Result<Bytes> r = inner_.Load(h, offset, length);
  if (!r.ok()) return r;
  if (d.fail_after) return *d.fail_after;
  std::lock_guard lock(mu_);
  for (const Flip& f : flips_) {
    if (f.handle == h && f.offset >= offset && f.offset - offset < r->size()) {
      (*r)[f.offset - offset] ^= f.mask;
    }
  }
  return r;
}

Result<uint64_t> FaultyBackend::Size(const Handle& h) {
  Decision d = OnCall(BackendOp::kSize, &h);
  if (d.fail_before) return *d.fail_before;
  Result<uint64_t> r = inner_.Size(h);
  if (r.ok() && d.fail_after) return *d.fail_after;
  return r;
}

Status FaultyBackend::List(FileType type, const std::function<Status(const FileInfo&)>& fn) {
  Decision d = OnCall(BackendOp::kList, nullptr);
  if (d.fail_before) return *d.fail_before;
  Status s = inner_.List(type, fn);
  if (s.ok() && d.fail_after) return *d.fail_after;
  return s;
}

Status FaultyBackend::Remove(const Handle& h) {
  Decision d = OnCall(BackendOp::kRemove, &h);
  if (d.fail_before) return *d.fail_before;
  Status s = inner_.Remove(h);
  if (s.ok() && d.fail_after) return *d.fail_after;
  return s;
}

Status FaultyBackend::Create() {
  Decision d = OnCall(BackendOp::kCreate, nullptr);
  if (d.fail_before) return *d.fail_before;
  Status s = inner_.Create();
  if (s.ok() && d.fail_after) return *d.fail_after;
  return s;
}

}  // namespace fsb::testing
