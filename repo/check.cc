#include "repo/check.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace fsb::repo {
namespace {

uint64_t ExpectedPackSize(const std::vector<PackedBlob>& blobs) {
  // §7.1: Σ length + (Σ entry size + 32) + 4.
  uint64_t size = kCryptoOverhead + 4;
  for (const PackedBlob& b : blobs) {
    size += b.length + (b.uncompressed_length ? kCompressedEntrySize : kPlainEntrySize);
  }
  return size;
}

}  // namespace

Result<CheckResult> RunCheck(Repository& repo, const CheckOptions& options,
                             const std::function<void(const std::string&)>& progress) {
  CheckResult res;
  std::mutex mu;
  auto error = [&](std::string e) {
    std::lock_guard l(mu);
    res.errors.push_back(std::move(e));
  };
  auto say = [&](const std::string& s) {
    if (progress) progress(s);
  };

  // 1. Snapshots first (§13), then every index file, each on its own so one bad file does not
  // hide the others.
  say("load snapshots");
  FSB_ASSIGN_OR_RETURN(std::vector<Id> snapshot_ids, repo.ListSnapshotIds());
  say("load indexes");
  std::vector<Id> index_ids;
  FSB_RETURN_IF_ERROR(repo.backend().List(FileType::kIndex, [&](const FileInfo& fi) {
    Result<Id> id = Id::FromHex(fi.name);
    if (id.ok()) index_ids.push_back(*id);
    return Status::Ok();
  }));
  // pack → blobs as the index files describe them (merged; duplicates folded).
  std::map<Id, std::vector<PackedBlob>> packs;
  std::unordered_map<Id, int, IdHash> pack_seen_in;
  for (const Id& iid : index_ids) {
    Result<Bytes> plain = repo.LoadUnpacked(FileType::kIndex, iid);
    if (!plain.ok()) {
      error(plain.status().message());
      continue;
    }
    Result<IndexFile> f = DecodeIndexFile(*plain, repo.version());
    if (!f.ok()) {
      error(f.status().WithContext("index " + iid.Short()).message());
      continue;
    }
    for (auto& p : f->packs) {
      if (pack_seen_in[p.id]++ > 0) {
        res.hints.push_back(fmt::format("pack {} is listed in several index files", p.id.Short()));
        continue;
      }
      std::vector<PackedBlob>& blobs = packs[p.id];
      for (const PackedBlob& b : p.blobs) {
        repo.AddToIndex(p.id, {b});
        blobs.push_back(b);
      }
    }
  }
  res.packs = packs.size();

  // 2. Packs: present, and of the size the index implies.
  say("check packs");
  std::unordered_map<Id, uint64_t, IdHash> on_disk;
  FSB_RETURN_IF_ERROR(repo.backend().List(FileType::kPack, [&](const FileInfo& fi) {
    Result<Id> id = Id::FromHex(fi.name);
    if (id.ok()) on_disk[*id] = fi.size;
    return Status::Ok();
  }));
  for (auto& [id, blobs] : packs) {
    std::sort(blobs.begin(), blobs.end(),
              [](const PackedBlob& a, const PackedBlob& b) { return a.offset < b.offset; });
    auto it = on_disk.find(id);
    if (it == on_disk.end()) {
      error(fmt::format("pack {}: in the index but missing from the repository", id.Short()));
      continue;
    }
    uint64_t want = ExpectedPackSize(blobs);
    if (it->second != want) {
      error(fmt::format("pack {}: unexpected file size: got {}, the index implies {}", id.Short(),
                        it->second, want));
    }
    uint64_t off = 0;
    for (const PackedBlob& b : blobs) {
      if (b.offset != off) {
        error(fmt::format("pack {}: blob {} at offset {}, expected {} (gap or overlap)", id.Short(),
                          b.id.Short(), b.offset, off));
        break;
      }
      off += b.length;
    }
  }
  for (const auto& [id, size] : on_disk) {
    if (!packs.count(id)) res.hints.push_back(fmt::format("pack {} not referenced in any index", id.Short()));
  }

  // 3. Snapshots and every reachable tree.
  say("check snapshots, trees and blobs");
  std::unordered_set<Id, IdHash> seen_trees;
  std::vector<std::pair<Id, std::string>> todo;  // tree, where it was referenced
  for (const Id& sid : snapshot_ids) {
    Result<Snapshot> s = repo.LoadSnapshot(sid);
    if (!s.ok()) {
      error(s.status().message());
      continue;
    }
    res.snapshots++;
    todo.emplace_back(s->tree, "snapshot " + sid.Short());
  }
  while (!todo.empty()) {
    auto [tid, from] = todo.back();
    todo.pop_back();
    if (!seen_trees.insert(tid).second) continue;
    res.trees++;
    if (!repo.HasBlob(BlobType::kTree, tid)) {
      error(fmt::format("tree {} (from {}): not found in index", tid.Short(), from));
      continue;
    }
    Result<std::vector<Node>> nodes = repo.LoadTree(tid);
    if (!nodes.ok()) {
      error(nodes.status().WithContext(fmt::format("(from {})", from)).message());
      continue;
    }
    for (const Node& n : *nodes) {
      const std::string where = fmt::format("tree {}: \"{}\"", tid.Short(), n.name);
      if (n.name.empty()) error(fmt::format("tree {}: node with empty name", tid.Short()));
      switch (n.type) {
        case NodeType::kFile:
          if (n.content_null) error(where + ": file has nil blob list");
          for (const Id& c : n.content) {
            if (!repo.HasBlob(BlobType::kData, c)) {
              error(fmt::format("{}: data blob {} not found in index", where, c.Short()));
            }
          }
          break;
        case NodeType::kDir:
          if (!n.subtree) {
            error(where + ": dir has no subtree");
          } else {
            todo.emplace_back(*n.subtree, where);
          }
          break;
        default:
          break;
      }
    }
  }

  // 4. --read-data: every byte.
  if (options.read_data) {
    std::vector<std::pair<Id, const std::vector<PackedBlob>*>> selected;
    uint64_t total_bytes = 0;
    for (const auto& [id, blobs] : packs) {
      if (options.subset_m > 0) {
        // restic's selectPacksByBucket: the first byte of the pack ID modulo m.
        if (static_cast<uint32_t>(id.bytes[0]) % options.subset_m != options.subset_n - 1) continue;
      }
      if (auto it = on_disk.find(id); it != on_disk.end()) {
        selected.emplace_back(id, &blobs);
        total_bytes += it->second;
      }
    }
    double percent = options.subset_percent;
    if (options.subset_bytes > 0 && total_bytes > 0) {
      // restic's selectRandomPacksByFileSize: the size as a share of all pack bytes.
      percent = std::min(100.0, 100.0 * double(options.subset_bytes) / double(total_bytes));
    }
    if (percent > 0 && !selected.empty()) {
      // restic's selectRandomPacksByPercentage: floor(count × x %), at least one, at random.
      size_t n = static_cast<size_t>(double(selected.size()) * (percent / 100.0));
      n = std::clamp<size_t>(n, 1, selected.size());
      std::mt19937_64 rng(options.seed != 0 ? options.seed : std::random_device{}());
      std::shuffle(selected.begin(), selected.end(), rng);
      selected.resize(n);
      std::sort(selected.begin(), selected.end());
    }
    say(fmt::format("read {} packs", selected.size()));
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> blobs_read{0}, packs_read{0};
    {
      std::vector<std::jthread> threads;
      for (int t = 0; t < std::max(1, options.threads); t++) {
        threads.emplace_back([&] {
          for (size_t i = next.fetch_add(1); i < selected.size(); i = next.fetch_add(1)) {
            const Id& id = selected[i].first;
            const std::vector<PackedBlob>& idx = *selected[i].second;
            Result<Bytes> data = repo.backend().Load(Handle{FileType::kPack, id.Hex()}, 0, 0);
            if (!data.ok()) {
              error(data.status().WithContext("pack " + id.Short()).message());
              continue;
            }
            packs_read++;
            if (Id::Hash(*data) != id) {
              error(fmt::format("pack {}: content does not match its name (Pack ID does not match)", id.Short()));
            }
            uint64_t need = 0;
            Result<std::vector<PackedBlob>> header =
                ParsePackHeader(repo.key(), id, data->size(), *data, repo.version(), &need);
            if (!header.ok()) {
              error(header.status().message());
            } else {
              for (const PackedBlob& h : *header) {
                // idx is sorted by offset (step 2): look at the entries at h's offset only.
                auto [lo, hi] = std::equal_range(
                    idx.begin(), idx.end(), h,
                    [](const PackedBlob& a, const PackedBlob& b) { return a.offset < b.offset; });
                bool found = std::any_of(lo, hi, [&](const PackedBlob& b) { return b == h; });
                if (!found) {
                  error(fmt::format("pack {}: blob {} is not contained in the index or its position is wrong",
                                    id.Short(), h.id.Short()));
                }
              }
            }
            for (const PackedBlob& b : idx) {
              if (uint64_t(b.offset) + b.length > data->size()) continue;  // size error already reported
              Result<Bytes> plain = DecodeBlob(repo.key(), b, ByteView(*data).subspan(b.offset, b.length));
              if (!plain.ok()) error(plain.status().WithContext("pack " + id.Short()).message());
              blobs_read++;
            }
          }
        });
      }
    }
    res.packs_read = packs_read;
    res.blobs_read = blobs_read;
  }
  std::sort(res.errors.begin(), res.errors.end());
  return res;
}

}  // namespace fsb::repo
