// repo/index.h: where each blob lives (restic-repo-format.md §8). The in-memory Index is a compact
// open-addressing table: 48-byte slots at a load factor of 0.375–0.75, so 64–128 bytes a blob
// with no per-entry allocation. Index files are encoded and decoded here too.
// Index: concurrent readers are safe; writers (Add) need external exclusion — MasterIndex wraps it
// with a shared mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "repo/id.h"
#include "repo/pack.h"

namespace fsb::repo {

struct BlobLocation {
  Id pack;
  PackedBlob blob;
};

// Open addressing with linear probing keyed by (type, id); the pack ID is interned as a uint32.
class Index {
 public:
  Index();
  // Adds a blob unless (type, id) is already present. Returns true when added.
  bool Add(const Id& pack, const PackedBlob& blob);
  std::optional<BlobLocation> Find(BlobType type, const Id& id) const;
  bool Has(BlobType type, const Id& id) const;
  size_t size() const { return count_; }
  size_t pack_count() const { return packs_.size(); }
  const std::vector<Id>& packs() const { return packs_; }
  // Calls fn for every blob, grouped by nothing in particular.
  void ForEach(const std::function<void(const BlobLocation&)>& fn) const;
  uint64_t MemoryBytes() const;

 private:
  struct Slot {
    Id id;
    uint32_t pack_plus_one = 0;  // 0 = empty slot; top bit = tree
    uint32_t offset = 0;
    uint32_t length = 0;
    uint32_t uncompressed_length = 0;
  };
  static_assert(sizeof(Slot) == 48);
  uint32_t InternPack(const Id& pack);
  size_t Probe(BlobType type, const Id& id) const;
  void Grow();

  std::vector<Slot> slots_;
  size_t count_ = 0;
  std::vector<Id> packs_;
  std::unordered_map<Id, uint32_t, IdHash> pack_lookup_;  // packs are few next to blobs
};

// The content of one index file.
struct IndexFile {
  std::vector<Id> supersedes;
  struct Pack {
    Id id;
    std::vector<PackedBlob> blobs;
  };
  std::vector<Pack> packs;
};

// restic's index JSON (compact, trailing newline, key order supersedes/packs, id/blobs,
// id/type/offset/length/uncompressed_length).
std::string EncodeIndexFile(const IndexFile& f);
// kCorruption on malformed JSON or fields; accepts the legacy format (a bare packs array) and
// ignores unknown fields. In v1 an uncompressed_length is an error ("index uses feature not
// supported by repository version 1").
Result<IndexFile> DecodeIndexFile(ByteView json, uint32_t repo_version);

}  // namespace fsb::repo
