// repo/repository.h: an open restic repository: config, master key, index, and typed access to
// snapshots, trees and blobs. Safe for concurrent use (the index sits behind a shared mutex; the
// backend is thread-safe).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/bytes.h"
#include "base/secret.h"
#include "base/status.h"
#include "repo/backend/backend.h"
#include "repo/compress.h"
#include "repo/crypto.h"
#include "repo/id.h"
#include "repo/index.h"
#include "repo/node.h"
#include "repo/pack.h"

namespace fsb::repo {

// restic-repo-format.md §4.
struct Config {
  uint32_t version = 2;
  std::string id;                   // 64 hex
  uint64_t chunker_polynomial = 0;  // irreducible, degree 53
};
std::string EncodeConfig(const Config& c);
// kCorruption on malformed JSON; kFailedPrecondition "unsupported repository version N" for a
// version other than 1 or 2; kCorruption "invalid chunker polynomial" for a reducible one.
Result<Config> DecodeConfig(ByteView json);

struct RepositoryOptions {
  // Data blob compression in v2 repositories (trees are always compressed). restic's default.
  CompressionMode compression = CompressionMode::kAuto;
  // Target pack size; restic's default 16 MiB (§7.3). Bigger packs mean fewer objects on S3.
  uint64_t pack_size = 16u << 20;
  // Threads that load index files at open; index files are independent.
  int index_load_threads = 4;
  // Whole tree packs kept in memory: a walk over trees (restore, ls, a parent snapshot) then costs
  // one request per tree pack instead of one per directory, which matters on S3 (restic keeps
  // tree packs in its on-disk cache for the same reason).
  uint64_t tree_pack_cache_bytes = 64u << 20;
};

struct InitOptions {
  uint32_t version = 2;
  // scrypt parameters of the new key (restic: N=32768, r=8; p calibrated, ≥1).
  uint64_t scrypt_n = 32768;
  uint32_t scrypt_r = 8;
  uint32_t scrypt_p = 1;
  // 0: draw a random irreducible polynomial as restic does.
  uint64_t chunker_polynomial = 0;
};

class Repository {
 public:
  // Opens the repository: reads config with the first key (of up to 20, as restic) that the
  // password opens. kPermissionDenied "wrong password or no key found"; kNotFound when there is no
  // config; errors from the config as DecodeConfig. Does not load the index (LoadIndex does).
  static Result<std::unique_ptr<Repository>> Open(std::unique_ptr<Backend> backend,
                                                  const Secret<std::string>& password,
                                                  const RepositoryOptions& options = {});
  // Creates a new repository: layout, one key file, config (restic's order). kAlreadyExists if a
  // config exists.
  static Result<std::unique_ptr<Repository>> Init(std::unique_ptr<Backend> backend,
                                                  const Secret<std::string>& password,
                                                  const InitOptions& init,
                                                  const RepositoryOptions& options = {});

  Backend& backend() { return *backend_; }
  const CryptoKey& key() const { return key_; }
  const Config& config() const { return config_; }
  uint32_t version() const { return config_.version; }
  const RepositoryOptions& options() const { return options_; }

  // Unpacked files (index, snapshot, lock): verifies SHA-256 = name, MAC, decompression.
  Result<Bytes> LoadUnpacked(FileType type, const Id& id);
  // Encrypts (and compresses in v2) `json`, saves it under its hash, returns the ID. Every type
  // but locks passes the write barrier first.
  Result<Id> SaveUnpacked(FileType type, ByteView json);

  // A check that every write of packs, indexes and snapshots passes before it starts (lock files
  // do not): a shared lock confirmed in the background installs one (RepoLock), so nothing is
  // written before restic's second look for a racing exclusive locker. Null removes it.
  void SetWriteBarrier(std::function<Status()> barrier);
  // OK when there is no barrier or it passed; the barrier's error otherwise (nothing may be
  // written). Blocks while the barrier does. Writers other than SaveUnpacked (PackSaver) call it.
  Status PassWriteBarrier();

  // Loads every index file into the in-memory index (in parallel). Call once, after listing
  // snapshots when both are needed (§13: snapshots first).
  Status LoadIndex();
  // Index lookups; safe concurrently with AddToIndex.
  std::optional<BlobLocation> FindBlob(BlobType type, const Id& id) const;
  bool HasBlob(BlobType type, const Id& id) const;
  size_t IndexSize() const;
  // Visits every index entry under the shared lock; fn must not call back into the index.
  void ForEachBlob(const std::function<void(const BlobLocation&)>& fn) const;
  // Records blobs of a pack that is durably stored.
  void AddToIndex(const Id& pack, const std::vector<PackedBlob>& blobs);
  // Index files loaded by LoadIndex, with the packs each names (for check).
  std::vector<Id> LoadedIndexFiles() const;

  // Dedup for writers: true when the caller should store (type, id) — it is neither indexed nor
  // reserved by another writer. The reservation lasts until the blob is indexed, or until
  // `writer` releases its reservations. `writer`: from NewWriter(), one per backup.
  bool ReserveBlob(BlobType type, const Id& id, uint64_t writer = 0);
  uint64_t NewWriter() { return next_writer_.fetch_add(1) + 1; }
  // Drops what `writer` reserved and did not get indexed: a backup that failed stored only part of
  // what it reserved, and a later backup through this Repository must store those blobs itself
  // rather than take them for stored (its snapshot would name blobs that do not exist).
  void ReleaseReservations(uint64_t writer);

  // Loads and verifies one blob via the index. kNotFound naming the blob if not indexed.
  Result<Bytes> LoadBlob(BlobType type, const Id& id);
  Result<std::vector<Node>> LoadTree(const Id& id);

  // Snapshots.
  Result<std::vector<Id>> ListSnapshotIds();
  Result<Snapshot> LoadSnapshot(const Id& id);
  Result<Id> SaveSnapshot(const Snapshot& s);
  // "latest", a full ID or a unique prefix (≥ 1 hex digit). kNotFound / kInvalidArgument
  // ("ambiguous") with the reference in the message.
  Result<Id> FindSnapshot(std::string_view ref);

 private:
  Repository(std::unique_ptr<Backend> backend, CryptoKey key, Config config,
             RepositoryOptions options);

  std::unique_ptr<Backend> backend_;
  CryptoKey key_;
  Config config_;
  RepositoryOptions options_;

  // Returns the whole pack `id`, from the tree pack cache or loaded (and cached).
  Result<std::shared_ptr<const Bytes>> LoadTreePack(const Id& id);

  std::mutex barrier_mu_;
  std::function<Status()> write_barrier_;  // guarded by barrier_mu_
  std::atomic<bool> barrier_passed_{true};  // no barrier, or it returned OK once

  std::mutex tree_cache_mu_;
  std::list<std::pair<Id, std::shared_ptr<const Bytes>>> tree_cache_;  // guarded; most recent first
  uint64_t tree_cache_bytes_ = 0;                                     // guarded by tree_cache_mu_

  mutable std::shared_mutex index_mu_;
  Index index_;                                           // guarded by index_mu_
  std::unordered_map<Id, uint64_t, IdHash> reserved_[2];  // ID → writer; guarded by index_mu_
  std::atomic<uint64_t> next_writer_{0};
  std::vector<Id> index_files_;                           // guarded by index_mu_
};

}  // namespace fsb::repo
