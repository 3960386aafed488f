// tests/support/mem_backend.h: an in-memory Backend for unit tests. Same contract as the real
// backends (the conformance suite runs against it), nothing on disk. Safe for concurrent use.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "repo/backend/backend.h"

namespace fsb::testing {

class MemBackend : public repo::Backend {
 public:
  // `properties` is what Properties() reports: pass {.local = false} to make code under test
  // behave as it would against S3.
  explicit MemBackend(repo::BackendProperties properties = {}) : properties_(properties) {}

  std::string Location() const override { return "mem:"; }
  // Copies `data`; replaces an existing file. kInvalidArgument for a name that is not 64
  // lowercase hex (or "config" for kConfig), as LocalBackend.
  Status Save(const repo::Handle& h, ByteView data) override;
  // `length` 0 reads to the end. kNotFound if absent, kCorruption if shorter than asked.
  Result<Bytes> Load(const repo::Handle& h, uint64_t offset, uint64_t length) override;
  Result<uint64_t> Size(const repo::Handle& h) override;
  // Calls `fn` on the calling thread, on a snapshot taken at the start, without holding the lock:
  // `fn` may call back into this backend.
  Status List(repo::FileType type, const std::function<Status(const repo::FileInfo&)>& fn) override;
  Status Remove(const repo::Handle& h) override;
  // kAlreadyExists once a config is saved; otherwise nothing to do.
  Status Create() override;
  repo::BackendProperties Properties() const override { return properties_; }

  // Test helpers. The number of files stored, and whether `h` is one of them.
  size_t file_count() const;
  bool Contains(const repo::Handle& h) const;

 private:
  using Key = std::pair<repo::FileType, std::string>;

  const repo::BackendProperties properties_;
  mutable std::mutex mu_;
  std::map<Key, Bytes> files_;  // guarded by mu_
};

}  // namespace fsb::testing
