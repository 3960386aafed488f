#include "repo/prune.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "base/log.h"
#include "repo/index.h"
#include "repo/node.h"

namespace fsb::repo {
namespace {

// One index entry, 48 bytes (the used-blob set is a flag in here, not a second table).
constexpr uint32_t kTreeFlag = 1u << 31;  // blob type is tree
constexpr uint32_t kUsedFlag =
    1u << 30;  // walk: first entry of a reachable blob; later: the copy kept
constexpr uint32_t kCopyFlag = 1u << 29;  // this copy is copied into a new pack
constexpr uint32_t kPackMask = kCopyFlag - 1;

struct Entry {
  Id id;
  uint32_t flags_pack = 0;  // pack number | flags
  uint32_t offset = 0;
  uint32_t length = 0;
  uint32_t uncompressed_length = 0;

  uint32_t pack() const { return flags_pack & kPackMask; }
  bool tree() const { return (flags_pack & kTreeFlag) != 0; }
  BlobType type() const { return tree() ? BlobType::kTree : BlobType::kData; }
  bool used() const { return (flags_pack & kUsedFlag) != 0; }
  bool copy() const { return (flags_pack & kCopyFlag) != 0; }
  PackedBlob blob() const { return PackedBlob{type(), id, offset, length, uncompressed_length}; }
};
static_assert(sizeof(Entry) == 48);

// restic's pack.headerSize: header length field 4 + the header's crypto overhead 32.
constexpr uint64_t kPackHeaderOverhead = 4 + kCryptoOverhead;
static_assert(kPackHeaderOverhead == 36);

uint64_t EntrySize(const Entry& e) {
  return e.uncompressed_length ? kCompressedEntrySize : kPlainEntrySize;
}

// Blob types of a pack as restic tracks them (restic.NumBlobTypes = unset, InvalidBlob = mixed).
enum : uint8_t { kPackData = 0, kPackTree = 1, kPackUnset = 2, kPackMixed = 3 };

enum class Action : uint8_t {
  kUndecided,
  kKeep,
  kRepack,
  kRemove,   // no used blob left
  kMissing,  // indexed, absent from the backend, unneeded: dropped from the index
};

struct PackInfo {
  uint64_t used_size = 0;  // starts at the header size, as restic counts it
  uint64_t unused_size = 0;
  uint64_t file_size = 0;  // from the listing
  uint32_t used_blobs = 0;
  uint32_t unused_blobs = 0;
  uint8_t tpe = kPackUnset;
  bool uncompressed = false;  // holds a blob stored without compression
  bool listed = false;        // present on the backend
  bool must_compress = false;
  Action action = Action::kUndecided;
};

uint64_t Key64(const Id& id) {
  uint64_t k = 0;
  for (int i = 0; i < 8; i++) k = (k << 8) | id.bytes[static_cast<size_t>(i)];
  return k;
}

bool EntryLess(const Entry& a, const Entry& b) {
  if (int c = std::memcmp(a.id.bytes.data(), b.id.bytes.data(), 32); c != 0) return c < 0;
  if (a.tree() != b.tree()) return !a.tree();
  if (a.pack() != b.pack()) return a.pack() < b.pack();
  return a.offset < b.offset;
}

bool SameBlob(const Entry& a, const Entry& b) { return a.id == b.id && a.tree() == b.tree(); }

// Runs fn(i) for i in [0, n) on `threads` threads; the first error wins and stops the others.
Status ParallelFor(size_t n, int threads, const std::function<Status(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  Status first;  // guarded by mu
  auto worker = [&] {
    for (size_t i = next.fetch_add(1); i < n && !failed.load(); i = next.fetch_add(1)) {
      Status s = fn(i);
      if (!s.ok()) {
        std::lock_guard l(mu);
        if (first.ok()) first = s;
        failed = true;
        return;
      }
    }
  };
  {
    std::vector<std::jthread> pool;
    const int t = std::max(1, std::min<int>(threads, static_cast<int>(std::max<size_t>(n, 1))));
    for (int i = 1; i < t; i++) pool.emplace_back(worker);
    worker();
  }
  return first;
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view s) {
  if (s.empty()) return Status::InvalidArgument("expected size, got empty string");
  uint64_t unit = 1;
  std::string_view num = s.substr(0, s.size() - 1);
  switch (s.back()) {
    case 'b':
    case 'B':
      break;
    case 'k':
    case 'K':
      unit = 1ull << 10;
      break;
    case 'm':
    case 'M':
      unit = 1ull << 20;
      break;
    case 'g':
    case 'G':
      unit = 1ull << 30;
      break;
    case 't':
    case 'T':
      unit = 1ull << 40;
      break;
    default:
      num = s;
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
  if (num.empty() || ec != std::errc() || p != num.data() + num.size()) {
    return Status::InvalidArgument(fmt::format("invalid size \"{}\"", s));
  }
  if (v > UINT64_MAX / unit)
    return Status::InvalidArgument(fmt::format("size \"{}\" is too large", s));
  return v * unit;
}

uint64_t MaxUnused::Limit(uint64_t used_bytes) const {
  switch (kind) {
    case Kind::kUnlimited:
      return UINT64_MAX;
    case Kind::kBytes:
      return bytes;
    case Kind::kPercent:
      break;
  }
  // restic: uint64(p / (100 - p) * float64(used)).
  return static_cast<uint64_t>(percent / (100 - percent) * static_cast<double>(used_bytes));
}

Result<MaxUnused> ParseMaxUnused(std::string_view in) {
  std::string_view s = in;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (s.empty())
    return Status::InvalidArgument(fmt::format("invalid value for --max-unused: \"{}\"", in));
  MaxUnused m;
  if (s == "unlimited") {
    m.kind = MaxUnused::Kind::kUnlimited;
    return m;
  }
  if (s.back() == '%') {
    std::string num(s.substr(0, s.size() - 1));
    char* end = nullptr;
    errno = 0;
    double p = std::strtod(num.c_str(), &end);
    if (num.empty() || end != num.c_str() + num.size() || errno != 0 || !std::isfinite(p)) {
      return Status::InvalidArgument(
          fmt::format("invalid percentage \"{}\" passed for --max-unused", in));
    }
    if (p < 0) return Status::InvalidArgument("percentage for --max-unused must be positive");
    if (p >= 100) return Status::InvalidArgument("percentage for --max-unused must be below 100%");
    m.kind = MaxUnused::Kind::kPercent;
    m.percent = p;
    return m;
  }
  Result<uint64_t> size = ParseSize(s);
  if (!size.ok()) {
    return Status::InvalidArgument(fmt::format(
        "invalid number of bytes \"{}\" for --max-unused: {}", in, size.status().message()));
  }
  m.kind = MaxUnused::Kind::kBytes;
  m.bytes = *size;
  return m;
}

std::string_view PrunePhaseName(PrunePhase p) {
  switch (p) {
    case PrunePhase::kRemoveUnreferenced:
      return "remove unreferenced packs";
    case PrunePhase::kRepack:
      return "repack";
    case PrunePhase::kWriteIndex:
      return "write index";
    case PrunePhase::kRemoveIndex:
      return "remove old index files";
    case PrunePhase::kRemovePacks:
      return "remove packs";
  }
  return "unknown";
}

struct Pruner::State {
  State(Repository& r, PruneOptions o) : repo(r), options(std::move(o)), log(GetLogger("repo")) {}

  Repository& repo;
  PruneOptions options;
  std::shared_ptr<spdlog::logger> log;

  std::vector<Entry> entries;     // sorted by (id, type, pack, offset); identical entries folded
  std::vector<uint32_t> buckets;  // entries whose ID's top `bucket_bits` bits are b: [b], [b+1])
  int bucket_bits = 0;
  std::vector<Id> packs;  // pack number → ID
  std::unordered_map<Id, uint32_t, IdHash> pack_numbers;
  std::vector<PackInfo> infos;  // by pack number
  std::vector<Id> index_files;  // the index files loaded: all superseded by the new ones
  std::vector<std::pair<Id, uint64_t>> unreferenced;  // listed packs in no index, with sizes
  uint64_t copy_blobs = 0;
  // Index entries listed more than once (a pack in several index files): the index is rewritten
  // even when no pack goes, so that a prune after a crash leaves one clean index (restic 0.14
  // leaves such duplicates until something else changes).
  uint64_t folded_entries = 0;
  bool executed = false;

  void Say(std::string_view m) {
    if (options.progress) {
      options.progress->done = 0;
      options.progress->total = 0;
    }
    if (options.message) options.message(m);
    log->debug("prune step=\"{}\"", m);
  }
  void SetTotal(uint64_t n) {
    if (options.progress) options.progress->total = n;
  }
  void Tick() {
    if (options.progress) options.progress->done.fetch_add(1, std::memory_order_relaxed);
  }

  // The first entry of blob (type, id), or SIZE_MAX.
  size_t Find(BlobType type, const Id& id) const {
    if (entries.empty()) return SIZE_MAX;
    const uint64_t b = bucket_bits == 0 ? 0 : Key64(id) >> (64 - bucket_bits);
    const bool tree = type == BlobType::kTree;
    for (size_t i = buckets[b], end = buckets[b + 1]; i < end; i++) {
      const Entry& e = entries[i];
      int c = std::memcmp(e.id.bytes.data(), id.bytes.data(), 32);
      if (c > 0) break;
      // The walkers set flag bits of other entries meanwhile: read the word atomically.
      const uint32_t flags =
          std::atomic_ref<uint32_t>(const_cast<uint32_t&>(e.flags_pack)).load(std::memory_order_relaxed);
      if (c == 0 && ((flags & kTreeFlag) != 0) == tree) return i;
    }
    return SIZE_MAX;
  }
  // One past the last entry of the blob whose first entry is `i`.
  size_t GroupEnd(size_t i) const {
    size_t j = i + 1;
    while (j < entries.size() && SameBlob(entries[j], entries[i])) j++;
    return j;
  }

  Status LoadIndex(PruneStats& st);
  Status ListPacks();
  Status Walk(PruneStats& st);
  Status Classify(PruneStats& st);
  Status Decide(PruneStats& st);

  // Execute's steps.
  Status DeleteFiles(FileType type, const std::vector<Id>& ids, bool stop_on_error,
                     std::vector<std::string>* errors, uint64_t* removed);
  void BuildByPack();
  Status Repack(PruneResult& r);
  Result<std::pair<Bytes, uint32_t>> LoadOtherCopy(size_t entry, Bytes* plain);
  Status WriteIndex(PruneResult& r);

  std::vector<uint32_t> pack_start;  // by_pack[pack_start[p] .. pack_start[p + 1]) is pack p
  std::vector<uint32_t> by_pack;     // entry numbers grouped by pack, by offset
};

Status Pruner::State::LoadIndex(PruneStats& st) {
  FSB_RETURN_IF_ERROR(repo.backend()
                          .List(FileType::kIndex,
                                [&](const FileInfo& fi) {
                                  Result<Id> id = Id::FromHex(fi.name);
                                  if (id.ok()) index_files.push_back(*id);
                                  return Status::Ok();
                                })
                          .WithContext("list index files"));
  std::sort(index_files.begin(), index_files.end());
  SetTotal(index_files.size());
  // Each file's entries in a vector of its own, joined at the end: the peak is one copy of the
  // entries plus one file's, not the 3x of a growing vector.
  std::vector<std::vector<Entry>> parts(index_files.size());
  std::mutex mu;
  FSB_RETURN_IF_ERROR(
      ParallelFor(index_files.size(), options.index_load_threads, [&](size_t i) -> Status {
        FSB_ASSIGN_OR_RETURN(Bytes plain, repo.LoadUnpacked(FileType::kIndex, index_files[i]));
        Result<IndexFile> f = DecodeIndexFile(plain, repo.version());
        if (!f.ok()) return f.status().WithContext("index " + index_files[i].Short());
        size_t n = 0;
        for (const auto& p : f->packs) n += p.blobs.size();
        std::vector<Entry>& out = parts[i];
        out.reserve(n);
        std::lock_guard l(mu);  // pack numbers are shared
        for (const auto& p : f->packs) {
          auto [it, inserted] = pack_numbers.try_emplace(p.id, static_cast<uint32_t>(packs.size()));
          if (inserted) {
            FSB_CHECK(packs.size() < kPackMask);
            packs.push_back(p.id);
          }
          for (const PackedBlob& b : p.blobs) {
            Entry e;
            e.id = b.id;
            e.flags_pack = it->second | (b.type == BlobType::kTree ? kTreeFlag : 0);
            e.offset = b.offset;
            e.length = b.length;
            e.uncompressed_length = b.uncompressed_length;
            out.push_back(e);
          }
        }
        Tick();
        return Status::Ok();
      }));
  size_t total = 0;
  for (const auto& p : parts) total += p.size();
  FSB_CHECK(total < UINT32_MAX);
  entries.reserve(total);
  for (auto& p : parts) {
    entries.insert(entries.end(), p.begin(), p.end());
    std::vector<Entry>().swap(p);
  }
  std::sort(entries.begin(), entries.end(), EntryLess);
  // The same pack in several index files (a crashed prune, concurrent writers) lists the same
  // blobs twice: identical entries are one, as restic merges them.
  const size_t loaded = entries.size();
  entries.erase(std::unique(entries.begin(), entries.end(),
                            [](const Entry& a, const Entry& b) {
                              return SameBlob(a, b) && a.pack() == b.pack() &&
                                     a.offset == b.offset && a.length == b.length &&
                                     a.uncompressed_length == b.uncompressed_length;
                            }),
                entries.end());
  st.index_entries = entries.size();
  folded_entries = loaded - entries.size();
  // Bucket directory on the top bits of the ID: about 4 entries a bucket, 1 byte a blob.
  bucket_bits = 0;
  while (bucket_bits < 32 && (uint64_t{4} << (bucket_bits + 1)) <= entries.size()) bucket_bits++;
  buckets.assign((size_t{1} << bucket_bits) + 1, 0);
  for (const Entry& e : entries) {
    const uint64_t b = bucket_bits == 0 ? 0 : Key64(e.id) >> (64 - bucket_bits);
    buckets[b + 1]++;
  }
  for (size_t b = 1; b < buckets.size(); b++) buckets[b] += buckets[b - 1];
  infos.assign(packs.size(), PackInfo{});
  return Status::Ok();
}

Status Pruner::State::ListPacks() {
  return repo.backend()
      .List(FileType::kPack,
            [&](const FileInfo& fi) {
              Result<Id> id = Id::FromHex(fi.name);
              if (!id.ok()) return Status::Ok();
              auto it = pack_numbers.find(*id);
              if (it == pack_numbers.end()) {
                unreferenced.emplace_back(*id, fi.size);
              } else {
                infos[it->second].listed = true;
                infos[it->second].file_size = fi.size;
              }
              return Status::Ok();
            })
      .WithContext("list packs");
}

Status Pruner::State::Walk(PruneStats& st) {
  // The repository's own index gets the tree blobs only (LoadTree and its tree pack cache need
  // them), preferring a copy in a pack that exists.
  for (size_t i = 0; i < entries.size();) {
    const size_t end = GroupEnd(i);
    if (entries[i].tree()) {
      size_t pick = i;
      for (size_t j = i; j < end; j++) {
        if (infos[entries[j].pack()].listed) {
          pick = j;
          break;
        }
      }
      repo.AddToIndex(packs[entries[pick].pack()], {entries[pick].blob()});
    }
    i = end;
  }

  Say("loading all snapshots...");
  FSB_ASSIGN_OR_RETURN(std::vector<Id> snapshot_ids, repo.ListSnapshotIds());
  std::erase_if(snapshot_ids, [&](const Id& id) {
    return std::find(options.ignore_snapshots.begin(), options.ignore_snapshots.end(), id) !=
           options.ignore_snapshots.end();
  });
  std::vector<Id> roots(snapshot_ids.size());
  const int threads = options.walk_threads > 0
                          ? options.walk_threads
                          : static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  FSB_RETURN_IF_ERROR(ParallelFor(snapshot_ids.size(), threads, [&](size_t i) -> Status {
    Result<Snapshot> s = repo.LoadSnapshot(snapshot_ids[i]);
    if (!s.ok()) return s.status().WithContext("failed loading snapshot");
    roots[i] = s->tree;
    return Status::Ok();
  }));
  st.snapshots = snapshot_ids.size();
  Say(fmt::format("finding data that is still in use for {} snapshots", snapshot_ids.size()));

  std::mutex mu;
  std::condition_variable cv;
  std::vector<Id> todo;  // guarded by mu: trees marked but not yet read
  int busy = 0;          // guarded by mu
  Status error;          // guarded by mu: the first tree that could not be read
  std::vector<std::pair<BlobType, Id>> missing;  // guarded by mu
  uint64_t missing_count = 0;                    // guarded by mu
  // Marks blob (type, id) as used; true when it was not marked before.
  auto mark = [&](BlobType type, const Id& id) -> bool {
    const size_t i = Find(type, id);
    if (i == SIZE_MAX) {
      std::lock_guard l(mu);
      const std::pair<BlobType, Id> m(type, id);
      if (missing.size() < 20 && std::find(missing.begin(), missing.end(), m) == missing.end()) {
        missing.push_back(m);
      }
      missing_count++;
      return false;
    }
    std::atomic_ref<uint32_t> flags(entries[i].flags_pack);
    return (flags.fetch_or(kUsedFlag, std::memory_order_relaxed) & kUsedFlag) == 0;
  };
  for (const Id& root : roots) {
    if (mark(BlobType::kTree, root)) todo.push_back(root);
  }
  auto worker = [&] {
    std::vector<Id> found;
    std::unique_lock l(mu);
    for (;;) {
      cv.wait(l, [&] { return !todo.empty() || busy == 0 || !error.ok(); });
      if (!error.ok() || todo.empty()) {
        cv.notify_all();
        return;
      }
      const Id tree = todo.back();
      todo.pop_back();
      busy++;
      l.unlock();
      found.clear();
      Result<std::vector<Node>> nodes = repo.LoadTree(tree);
      if (nodes.ok()) {
        for (const Node& n : *nodes) {
          if (n.type == NodeType::kFile) {
            for (const Id& c : n.content) mark(BlobType::kData, c);
          } else if (n.type == NodeType::kDir && n.subtree) {
            if (mark(BlobType::kTree, *n.subtree)) found.push_back(*n.subtree);
          }
        }
      }
      Tick();
      l.lock();
      busy--;
      if (!nodes.ok() && error.ok()) {
        error = nodes.status().WithContext("unable to load a tree from the repository");
      }
      todo.insert(todo.end(), found.begin(), found.end());
      cv.notify_all();
    }
  };
  {
    std::vector<std::jthread> pool;
    for (int t = 1; t < threads; t++) pool.emplace_back(worker);
    worker();
  }
  FSB_RETURN_IF_ERROR(error);
  if (missing_count > 0) {
    std::string list;
    for (size_t i = 0; i < missing.size(); i++) {
      list += fmt::format("{}{} {}", i ? ", " : "", BlobTypeName(missing[i].first),
                          missing[i].second.Hex());
    }
    if (missing_count > missing.size()) list += ", ...";
    return Status::FailedPrecondition(fmt::format(
        "{} references from snapshots to blobs that are not in the index: {}; integrity check "
        "failed: data seems to be missing, will not prune to prevent (additional) data loss",
        missing_count, list));
  }
  return Status::Ok();
}

Status Pruner::State::Classify(PruneStats& st) {
  // restic's packInfoFromIndex, with the used set as a flag on the first entry of each blob.
  std::vector<size_t> duplicates;  // first entries of used blobs with several copies
  for (PackInfo& info : infos) info.used_size = kPackHeaderOverhead;
  for (size_t i = 0; i < entries.size();) {
    const size_t end = GroupEnd(i);
    const bool used = entries[i].used();
    for (size_t j = i; j < end; j++) {
      const Entry& e = entries[j];
      PackInfo& info = infos[e.pack()];
      info.used_size += EntrySize(e);
      const uint8_t t = e.tree() ? kPackTree : kPackData;
      if (info.tpe == kPackUnset) {
        info.tpe = t;
      } else if (info.tpe != t) {
        info.tpe = kPackMixed;
      }
      if (e.uncompressed_length == 0) info.uncompressed = true;
      if (used && j == i) {
        st.blobs.used++;
        st.size.used += e.length;
      } else if (used) {
        st.blobs.duplicate++;
        st.size.duplicate += e.length;
      } else {
        st.blobs.unused++;
        st.size.unused += e.length;
      }
    }
    if (used && end - i > 1) {
      duplicates.push_back(i);
    } else {
      for (size_t j = i; j < end; j++) {
        const Entry& e = entries[j];
        PackInfo& info = infos[e.pack()];
        if (used) {
          info.used_size += e.length;
          info.used_blobs++;
        } else {
          info.unused_size += e.length;
          info.unused_blobs++;
        }
      }
    }
    i = end;
  }
  // Several copies of a used blob: keep one, in a pack that holds other used blobs if there is
  // one (the others are then unused), as restic does.
  for (size_t first : duplicates) {
    const size_t end = GroupEnd(first);
    int count = static_cast<int>(std::min<size_t>(end - first, 255));
    entries[first].flags_pack &= ~kUsedFlag;
    for (size_t j = first; j < end; j++) {
      Entry& e = entries[j];
      PackInfo& info = infos[e.pack()];
      if (count != 0 && (info.used_blobs > 0 || count == 1)) {
        info.used_size += e.length;
        info.used_blobs++;
        e.flags_pack |= kUsedFlag;
        count = 0;
      } else {
        info.unused_size += e.length;
        info.unused_blobs++;
        if (count != 0) count--;
      }
    }
  }
  return Status::Ok();
}

Status Pruner::State::Decide(PruneStats& st) {
  // restic's decidePackAction.
  const uint64_t pack_size = repo.options().pack_size;
  const uint64_t target = options.repack_small ? pack_size / 5 * 4 : pack_size / 25;
  std::vector<uint32_t> candidates, small_candidates;
  std::vector<std::string> problems;
  std::vector<Id> missing_needed;
  for (uint32_t p = 0; p < infos.size(); p++) {
    PackInfo& info = infos[p];
    if (!info.listed) {
      if (info.used_blobs == 0) {
        info.action = Action::kMissing;
        st.blobs.remove += info.unused_blobs;
        st.size.remove += info.unused_size;
        st.missing_packs++;
      } else {
        missing_needed.push_back(packs[p]);
      }
      continue;
    }
    if (info.unused_size + info.used_size != info.file_size && info.used_blobs != 0) {
      problems.push_back(fmt::format("pack {}: calculated size {} does not match real size {}",
                                     packs[p].Hex(), info.unused_size + info.used_size,
                                     info.file_size));
      continue;
    }
    if (info.used_blobs == 0) {
      st.packs.unused++;
    } else if (info.unused_blobs == 0) {
      st.packs.used++;
    } else {
      st.packs.partly_used++;
    }
    info.must_compress = repo.version() >= 2 &&
                         (info.tpe == kPackTree || options.repack_uncompressed) &&
                         info.uncompressed;
    if (info.used_blobs == 0) {
      info.action = Action::kRemove;
      st.blobs.remove += info.unused_blobs;
      st.size.remove += info.unused_size;
    } else if (options.repack_cacheable_only && info.tpe == kPackData) {
      info.action = Action::kKeep;
      st.packs.keep++;
    } else if (info.unused_blobs == 0 && info.tpe != kPackMixed && !info.must_compress) {
      if (info.file_size >= target) {
        info.action = Action::kKeep;
        st.packs.keep++;
      } else {
        small_candidates.push_back(p);
      }
    } else {
      candidates.push_back(p);
    }
  }
  if (!missing_needed.empty()) {
    std::sort(missing_needed.begin(), missing_needed.end());
    std::string list;
    for (const Id& id : missing_needed) list += (list.empty() ? "" : ", ") + id.Hex();
    problems.insert(
        problems.begin(),
        fmt::format("the index references {} needed pack files which are missing from the "
                    "repository: {}",
                    missing_needed.size(), list));
  }
  if (!problems.empty()) {
    std::string all;
    for (const std::string& p : problems) all += (all.empty() ? "" : "; ") + p;
    return Status::FailedPrecondition(all + " (will not prune; fsb check names every problem)");
  }
  if (small_candidates.size() < 10) {
    // Too few small packs to be worth it; also stops endless repacking of one small pack.
    for (uint32_t p : small_candidates) infos[p].action = Action::kKeep;
    st.packs.keep += small_candidates.size();
  } else {
    candidates.insert(candidates.end(), small_candidates.begin(), small_candidates.end());
  }
  // Trees and small packs first, then by unused/total, highest first (restic's order; ties by ID
  // so that runs are reproducible).
  auto total = [&](uint32_t p) { return infos[p].unused_size + infos[p].used_size; };
  std::sort(candidates.begin(), candidates.end(), [&](uint32_t a, uint32_t b) {
    const PackInfo& pi = infos[a];
    const PackInfo& pj = infos[b];
    const bool di = pi.tpe == kPackData, dj = pj.tpe == kPackData;
    if (di != dj) return !di;
    const bool si = total(a) < target, sj = total(b) < target;
    if (si != sj) return si;
    // Pack sizes are below 4 GiB (§6), so the products fit, as in restic.
    const uint64_t x = pi.unused_size * pj.used_size;
    const uint64_t y = pj.unused_size * pi.used_size;
    if (x != y) return x > y;
    return packs[a] < packs[b];
  });
  const uint64_t max_unused_after = options.max_unused.Limit(st.size.used);
  for (uint32_t p : candidates) {
    PackInfo& info = infos[p];
    // Unsigned arithmetic as restic's (duplicates in removed packs can wrap it).
    const bool reached_unused_after =
        st.size.unused - st.size.remove - st.size.repackrm < max_unused_after;
    const bool reached_repack_size = st.size.repack + total(p) >= options.max_repack_bytes;
    const bool large_enough = total(p) >= target;
    if (reached_repack_size ||
        (info.tpe == kPackData && !info.must_compress && reached_unused_after && large_enough)) {
      info.action = Action::kKeep;
      st.packs.keep++;
      continue;
    }
    info.action = Action::kRepack;
    st.blobs.repack += info.unused_blobs + info.used_blobs;
    st.size.repack += info.unused_size + info.used_size;
    st.blobs.repackrm += info.unused_blobs;
    st.size.repackrm += info.unused_size;
  }
  st.packs.unref = unreferenced.size();
  for (const auto& [id, size] : unreferenced) st.unref_bytes += size;
  for (const PackInfo& info : infos) {
    if (info.action == Action::kRepack) st.packs.repack++;
    if (info.action == Action::kRemove) st.packs.remove++;
  }
  // The blobs to copy: the kept copy of each used blob, when it sits in a repacked pack and no
  // copy is in a kept pack. (restic also counts a copy in a missing pack as kept; fsb does not.)
  if (st.packs.repack > 0) {
    for (size_t i = 0; i < entries.size();) {
      const size_t end = GroupEnd(i);
      size_t chosen = SIZE_MAX;
      bool in_kept = false;
      for (size_t j = i; j < end; j++) {
        if (entries[j].used()) chosen = j;
        if (infos[entries[j].pack()].action == Action::kKeep) in_kept = true;
      }
      if (chosen != SIZE_MAX && !in_kept) {
        FSB_CHECK(infos[entries[chosen].pack()].action == Action::kRepack);
        entries[chosen].flags_pack |= kCopyFlag;
        copy_blobs++;
      }
      i = end;
    }
  }
  return Status::Ok();
}

Pruner::Pruner(std::unique_ptr<State> state) : s_(std::move(state)) {}
Pruner::~Pruner() = default;

Result<std::unique_ptr<Pruner>> Pruner::Plan(Repository& repo, PruneOptions options) {
  if (options.repack_uncompressed && repo.version() < 2) {
    return Status::InvalidArgument("compression requires at least repository format version 2");
  }
  if (options.repack_uncompressed && repo.options().compression == CompressionMode::kOff) {
    return Status::InvalidArgument(
        "disabled compression and --repack-uncompressed are mutually exclusive");
  }
  auto state = std::make_unique<State>(repo, std::move(options));
  std::unique_ptr<Pruner> p(new Pruner(std::move(state)));
  State& s = *p->s_;
  s.Say("loading indexes...");
  FSB_RETURN_IF_ERROR(s.LoadIndex(p->stats_));
  FSB_RETURN_IF_ERROR(s.ListPacks());
  FSB_RETURN_IF_ERROR(s.Walk(p->stats_));
  s.Say("searching used packs...");
  FSB_RETURN_IF_ERROR(s.Classify(p->stats_));
  s.Say("collecting packs for deletion and repacking");
  FSB_RETURN_IF_ERROR(s.Decide(p->stats_));
  s.log->debug("prune plan index_entries={} packs={} memory_bytes={}", p->stats_.index_entries,
               s.packs.size(), p->MemoryBytes());
  return p;
}

uint64_t Pruner::MemoryBytes() const {
  const State& s = *s_;
  return s.entries.capacity() * sizeof(Entry) + s.buckets.capacity() * sizeof(uint32_t) +
         s.packs.capacity() * sizeof(Id) + s.infos.capacity() * sizeof(PackInfo) +
         s.pack_numbers.size() * (sizeof(Id) + sizeof(uint32_t) + 2 * sizeof(void*)) +
         s.pack_numbers.bucket_count() * sizeof(void*) + s.by_pack.capacity() * sizeof(uint32_t) +
         s.pack_start.capacity() * sizeof(uint32_t) + s.index_files.capacity() * sizeof(Id);
}

bool Pruner::HasWork() const {
  return !s_->unreferenced.empty() || stats_.packs.repack > 0 || stats_.packs.remove > 0 ||
         stats_.missing_packs > 0 || s_->folded_entries > 0;
}

namespace {
std::vector<Id> PacksWith(const std::vector<Id>& packs, const std::vector<PackInfo>& infos,
                          Action a) {
  std::vector<Id> out;
  for (size_t p = 0; p < infos.size(); p++) {
    if (infos[p].action == a) out.push_back(packs[p]);
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::vector<Id> Pruner::UnreferencedPacks() const {
  std::vector<Id> out;
  for (const auto& [id, size] : s_->unreferenced) out.push_back(id);
  std::sort(out.begin(), out.end());
  return out;
}
std::vector<Id> Pruner::RepackPacks() const {
  return PacksWith(s_->packs, s_->infos, Action::kRepack);
}
std::vector<Id> Pruner::RemovePacks() const {
  return PacksWith(s_->packs, s_->infos, Action::kRemove);
}
std::vector<Id> Pruner::MissingPacks() const {
  return PacksWith(s_->packs, s_->infos, Action::kMissing);
}

Status Pruner::State::DeleteFiles(FileType type, const std::vector<Id>& ids, bool stop_on_error,
                                  std::vector<std::string>* errors, uint64_t* removed) {
  SetTotal(ids.size());
  std::mutex mu;
  std::atomic<uint64_t> n{0};
  Status s = ParallelFor(ids.size(), options.delete_threads, [&](size_t i) -> Status {
    Status r = repo.backend().Remove(Handle{type, ids[i].Hex()});
    Tick();
    if (r.ok() || r.code() == StatusCode::kNotFound) {  // gone already: what we wanted
      n++;
      return Status::Ok();
    }
    r = r.WithContext(fmt::format("remove {} {}", FileTypeName(type), ids[i].Short()));
    if (stop_on_error) return r;
    log->warn("prune could not remove file err=\"{}\"", r.ToString());
    std::lock_guard l(mu);
    if (errors) errors->push_back(r.message());
    return Status::Ok();
  });
  if (removed) *removed += n.load();
  return s;
}

void Pruner::State::BuildByPack() {
  pack_start.assign(packs.size() + 1, 0);
  for (const Entry& e : entries) pack_start[e.pack() + 1]++;
  for (size_t p = 1; p < pack_start.size(); p++) pack_start[p] += pack_start[p - 1];
  by_pack.resize(entries.size());
  std::vector<uint32_t> fill(pack_start.begin(), pack_start.end() - 1);
  for (uint32_t i = 0; i < entries.size(); i++) by_pack[fill[entries[i].pack()]++] = i;
  for (size_t p = 0; p < packs.size(); p++) {
    std::sort(by_pack.begin() + pack_start[p], by_pack.begin() + pack_start[p + 1],
              [&](uint32_t a, uint32_t b) { return entries[a].offset < entries[b].offset; });
  }
}

Result<std::pair<Bytes, uint32_t>> Pruner::State::LoadOtherCopy(size_t entry, Bytes* plain) {
  const Entry& want = entries[entry];
  const size_t first = Find(want.type(), want.id);
  Status last = Status::NotFound("no other copy in the index");
  for (size_t j = first; j != SIZE_MAX && j < entries.size() && SameBlob(entries[j], want); j++) {
    const Entry& e = entries[j];
    if (j == entry || !infos[e.pack()].listed) continue;
    Result<Bytes> stored =
        repo.backend().Load(Handle{FileType::kPack, packs[e.pack()].Hex()}, e.offset, e.length);
    if (!stored.ok()) {
      last = stored.status();
      continue;
    }
    Result<Bytes> p = DecodeBlob(repo.key(), e.blob(), *stored);
    if (!p.ok()) {
      last = p.status();
      continue;
    }
    *plain = std::move(*p);
    return std::make_pair(std::move(*stored), e.uncompressed_length);
  }
  return last;
}

Status Pruner::State::Repack(PruneResult& r) {
  BuildByPack();
  std::vector<uint32_t> todo;
  for (uint32_t p = 0; p < infos.size(); p++) {
    if (infos[p].action == Action::kRepack) todo.push_back(p);
  }
  std::sort(todo.begin(), todo.end(), [&](uint32_t a, uint32_t b) { return packs[a] < packs[b]; });
  SetTotal(todo.size());
  PackSaverOptions pso = options.pack_saver;
  pso.update_repository_index = false;
  PackSaver saver(repo, pso);
  const int threads = options.repack_threads > 0
                          ? options.repack_threads
                          : std::max(1, repo.backend().Properties().max_connections - 1);
  const uint32_t version = repo.version();
  const CompressionMode mode = repo.options().compression;
  std::atomic<uint64_t> copied{0};
  Status s = ParallelFor(todo.size(), threads, [&](size_t t) -> Status {
    const uint32_t p = todo[t];
    std::vector<uint32_t> keep;
    for (uint32_t k = pack_start[p]; k < pack_start[p + 1]; k++) {
      if (entries[by_pack[k]].copy()) keep.push_back(by_pack[k]);
    }
    if (keep.empty()) {  // every used blob of this pack has a copy in a kept pack
      Tick();
      return Status::Ok();
    }
    // One ranged read from the first blob to keep to the end of the last one.
    const uint64_t lo = entries[keep.front()].offset;
    const uint64_t hi = uint64_t{entries[keep.back()].offset} + entries[keep.back()].length;
    Result<Bytes> data = repo.backend().Load(Handle{FileType::kPack, packs[p].Hex()}, lo, hi - lo);
    for (uint32_t k : keep) {
      const Entry& e = entries[k];
      Result<Bytes> plain = data.ok() ? DecodeBlob(repo.key(), e.blob(),
                                                   ByteView(*data).subspan(e.offset - lo, e.length))
                                      : Result<Bytes>(data.status());
      Bytes stored;
      uint32_t ulen = e.uncompressed_length;
      if (plain.ok()) {
        stored.assign(data->begin() + (e.offset - lo), data->begin() + (e.offset - lo + e.length));
      } else {
        // Another copy may still be good (restic tries the same).
        Bytes other_plain;
        Result<std::pair<Bytes, uint32_t>> other = LoadOtherCopy(k, &other_plain);
        if (!other.ok()) {
          return plain.status().WithContext(fmt::format(
              "repack pack {}: {} blob {} (no good copy elsewhere: {})", packs[p].Short(),
              BlobTypeName(e.type()), e.id.Short(), other.status().message()));
        }
        log->warn("prune blob read from another copy pack={} blob={} err=\"{}\"", packs[p].Short(),
                  e.id.Short(), plain.status().ToString());
        stored = std::move(other->first);
        ulen = other->second;
        plain = std::move(other_plain);
      }
      // v2 stores trees compressed, and data too unless compression is off: a blob written
      // uncompressed (a v1 repository upgraded) is compressed on its way through, as restic does.
      if (version >= 2 && ulen == 0 && (e.tree() || mode != CompressionMode::kOff)) {
        Result<Bytes> encoded = EncodeBlobChecked(repo.key(), e.type(), *plain, version, mode, &ulen);
        if (!encoded.ok()) return encoded.status().WithContext("repack pack " + packs[p].Short());
        stored = std::move(*encoded);
      }
      FSB_RETURN_IF_ERROR(saver.Add(e.type(), e.id, std::move(stored), ulen, plain->size()));
      copied++;
    }
    Tick();
    return Status::Ok();
  });
  FSB_RETURN_IF_ERROR(s);
  FSB_RETURN_IF_ERROR(saver.Finish());
  const PackSaverStats ps = saver.stats();
  r.blobs_repacked = copied.load();
  r.packs_written += ps.packs;
  r.index_files_written += ps.index_files;
  if (copied.load() != copy_blobs) {
    return Status::Internal(
        fmt::format("repack copied {} blobs, {} were to be kept", copied.load(), copy_blobs));
  }
  return Status::Ok();
}

Status Pruner::State::WriteIndex(PruneResult& r) {
  if (by_pack.size() != entries.size()) BuildByPack();
  // restic: an index file is full at 50 000 blobs (v1) / 150 000 (v2), §8.3.
  const size_t max_blobs = repo.version() >= 2 ? 150000 : 50000;
  std::vector<uint32_t> keep;
  for (uint32_t p = 0; p < infos.size(); p++) {
    if (infos[p].action == Action::kKeep) keep.push_back(p);
  }
  std::sort(keep.begin(), keep.end(), [&](uint32_t a, uint32_t b) { return packs[a] < packs[b]; });
  SetTotal(keep.size());
  IndexFile f;
  f.supersedes = index_files;  // bookkeeping only: restic 0.14 loads every index file
  size_t blobs = 0;
  auto flush = [&]() -> Status {
    std::string json = EncodeIndexFile(f);
    Result<Id> id = repo.SaveUnpacked(FileType::kIndex, AsBytes(json));
    if (!id.ok()) return id.status().WithContext("save new index");
    log->debug("prune wrote index index={} packs={} blobs={}", id->Short(), f.packs.size(), blobs);
    r.index_files_written++;
    f = IndexFile();
    blobs = 0;
    return Status::Ok();
  };
  for (uint32_t p : keep) {
    IndexFile::Pack out;
    out.id = packs[p];
    // Every blob of a kept pack stays listed, used or not: a pack's blobs must all be indexed.
    for (uint32_t k = pack_start[p]; k < pack_start[p + 1]; k++)
      out.blobs.push_back(entries[by_pack[k]].blob());
    blobs += out.blobs.size();
    f.packs.push_back(std::move(out));
    Tick();
    if (blobs >= max_blobs) FSB_RETURN_IF_ERROR(flush());
  }
  if (!f.packs.empty()) FSB_RETURN_IF_ERROR(flush());
  return Status::Ok();
}

Result<PruneResult> Pruner::Execute() {
  State& s = *s_;
  FSB_CHECK(!s.executed);
  s.executed = true;
  PruneResult r;
  auto phase = [&](PrunePhase p) -> Status {
    if (!s.options.before_phase) return Status::Ok();
    return s.options.before_phase(p);
  };
  // 1. Packs in no index hold nothing anyone can reach: delete them first.
  if (!s.unreferenced.empty()) {
    FSB_RETURN_IF_ERROR(phase(PrunePhase::kRemoveUnreferenced));
    s.Say("deleting unreferenced packs");
    std::vector<Id> ids;
    for (const auto& [id, size] : s.unreferenced) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    FSB_RETURN_IF_ERROR(
        s.DeleteFiles(FileType::kPack, ids, false, &r.remove_errors, &r.unreferenced_removed));
  }
  const std::vector<Id> repack = RepackPacks();
  // 2. New packs (and the index files naming them) before anything refers to them being gone.
  if (!repack.empty()) {
    FSB_RETURN_IF_ERROR(phase(PrunePhase::kRepack));
    s.Say("repacking packs");
    FSB_RETURN_IF_ERROR(s.Repack(r));
  }
  std::vector<Id> remove = RemovePacks();
  remove.insert(remove.end(), repack.begin(), repack.end());
  std::sort(remove.begin(), remove.end());
  if (!remove.empty() || stats_.missing_packs > 0 || s.folded_entries > 0) {
    // 3. The kept packs in new index files; the old ones go only once those are stored.
    FSB_RETURN_IF_ERROR(phase(PrunePhase::kWriteIndex));
    s.Say("rebuilding index");
    FSB_RETURN_IF_ERROR(s.WriteIndex(r));
    FSB_RETURN_IF_ERROR(phase(PrunePhase::kRemoveIndex));
    s.Say("deleting obsolete index files");
    FSB_RETURN_IF_ERROR(
        s.DeleteFiles(FileType::kIndex, s.index_files, true, nullptr, &r.index_files_removed)
            .WithContext("delete obsolete index files"));
  }
  // 4. Nothing refers to these packs any more.
  if (!remove.empty()) {
    FSB_RETURN_IF_ERROR(phase(PrunePhase::kRemovePacks));
    s.Say(fmt::format("removing {} old packs", remove.size()));
    FSB_RETURN_IF_ERROR(
        s.DeleteFiles(FileType::kPack, remove, false, &r.remove_errors, &r.packs_removed));
  }
  s.Say("done");
  s.log->debug(
      "prune finished packs_written={} packs_removed={} index_files_written={} "
      "index_files_removed={}",
      r.packs_written, r.packs_removed + r.unreferenced_removed, r.index_files_written,
      r.index_files_removed);
  return r;
}

Result<PruneResult> Prune(Repository& repo, PruneOptions options, PruneStats* stats) {
  FSB_ASSIGN_OR_RETURN(std::unique_ptr<Pruner> p, Pruner::Plan(repo, std::move(options)));
  if (stats) *stats = p->stats();
  return p->Execute();
}

}  // namespace fsb::repo
