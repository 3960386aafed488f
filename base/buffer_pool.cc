#include "base/buffer_pool.h"

#include <utility>

namespace fsb {

Bytes BufferPool::Take(size_t capacity) {
  Bytes b;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < kept_.size(); i++) {
      if (kept_[i].capacity() >= capacity) {
        b = std::move(kept_[i]);
        kept_[i] = std::move(kept_.back());
        kept_.pop_back();
        break;
      }
    }
  }
  b.clear();
  b.reserve(capacity);
  return b;
}

void BufferPool::Give(Bytes&& buffer) {
  Bytes b = std::move(buffer);
  if (b.capacity() == 0) return;
  b.clear();
  std::lock_guard lock(mu_);
  if (kept_.size() < max_kept_) kept_.push_back(std::move(b));
  // Otherwise b is freed on return, after the lock is released (a munmap can take a while).
}

size_t BufferPool::kept() const {
  std::lock_guard lock(mu_);
  return kept_.size();
}

}  // namespace fsb
