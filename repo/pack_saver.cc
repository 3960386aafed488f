#include "repo/pack_saver.h"

#include <fmt/format.h>

#include <algorithm>

#include "repo/chunker.h"

namespace fsb::repo {
namespace {

// A pack buffer's capacity: the target, plus the blob that crosses it (at most a maximal data chunk,
// stored: zstd's worst case for 8 MiB is 8 MiB + 32 KiB, plus the seal; a larger tree blob is
// reserved for when it is the first), plus room for the sealed header (41 bytes an entry).
size_t PackBufferBytes(uint64_t pack_size, size_t first_blob_bytes) {
  constexpr size_t kMaxDataBlobStored = kChunkerMaxBytes + (kChunkerMaxBytes >> 8) + kCryptoOverhead;
  return static_cast<size_t>(pack_size) + std::max(first_blob_bytes, kMaxDataBlobStored) + (64u << 10);
}

}  // namespace

int PackSaver::UploadThreads(Repository& repo, const PackSaverOptions& options) {
  return std::max(1, options.upload_threads > 0 ? options.upload_threads
                                                : repo.backend().Properties().max_connections);
}

PackSaver::PackSaver(Repository& repo, PackSaverOptions options)
    : repo_(repo),
      options_(options),
      // Every finished data pack that may exist at once (see max_queued_packs) plus the open one.
      pack_buffers_(static_cast<size_t>(UploadThreads(repo, options) +
                                        std::max(0, options.max_queued_packs) + 1)) {
  const int n = UploadThreads(repo, options);
  for (int i = 0; i < n; i++) {
    threads_.emplace_back([this](std::stop_token st) { UploadLoop(st); });
  }
}

PackSaver::~PackSaver() {
  for (auto& t : threads_) t.request_stop();
  cv_.notify_all();
  threads_.clear();
}

void PackSaver::SetError(const Status& s) {
  if (error_.ok()) error_ = s;
  cv_.notify_all();
}

Status PackSaver::Add(BlobType type, const Id& id, Bytes stored, uint32_t uncompressed_length,
                      uint64_t plain_size) {
  std::lock_guard build_lock(build_mu_);
  PackBuilder& b = builders_[static_cast<int>(type)];
  // Target + one maximal blob + header: the pack never reallocates (a pack is finished once its
  // data reaches the target, so the blob that crosses it can be any blob that comes).
  if (b.count() == 0) {
    const size_t cap = PackBufferBytes(repo_.options().pack_size, stored.size());
    // Data packs reuse the pages of uploaded ones. The tree pack of a large-file backup stays open
    // and small for the whole run: it gets a reservation, which costs only the pages it fills.
    if (type == BlobType::kData) {
      b.UseBuffer(pack_buffers_.Take(cap));
    } else {
      b.Reserve(cap);
    }
  }
  b.Add(type, id, stored, uncompressed_length);
  // §7.3: finish when blob data reaches the target, or the header would pass 16 MiB.
  const bool full = b.data_size() >= repo_.options().pack_size ||
                    b.header_size() + kCompressedEntrySize > kMaxHeaderSize - kCryptoOverhead;
  std::unique_lock lock(mu_);
  stats_.blobs[static_cast<int>(type)]++;
  stats_.plain_bytes += plain_size;
  if (!full) return error_;
  // Wait for room with build_mu_ held, so that finished packs never pile up in the hands of
  // blocked callers: one full pack waits here, and no other caller can start a new one.
  FSB_RETURN_IF_ERROR(WaitForRoomLocked(lock));
  PendingPack ready;
  ready.data = b.Finish(repo_.key(), &ready.blobs);
  queue_.push_back(std::move(ready));
  cv_.notify_all();
  return Status::Ok();
}

Status PackSaver::WaitForRoomLocked(std::unique_lock<std::mutex>& lock) {
  const size_t max_alive = threads_.size() + static_cast<size_t>(std::max(0, options_.max_queued_packs));
  cv_.wait(lock, [&] { return !error_.ok() || queue_.size() + in_flight_ < max_alive; });
  return error_;
}

Status PackSaver::UploadOne(PendingPack& p) {
  Id id = Id::Hash(p.data);
  if (options_.verify_before_upload) {
    // Re-read what we are about to store: header, then every blob (restic ≥ 0.16.4 does the same).
    uint64_t need = 0;
    Result<std::vector<PackedBlob>> header =
        ParsePackHeader(repo_.key(), id, p.data.size(), p.data, repo_.version(), &need);
    if (!header.ok()) return header.status().WithContext("verify before upload");
    if (*header != p.blobs) {
      return Status::Internal(fmt::format("verify before upload: pack {} header mismatch", id.Short()));
    }
    // Every blob's content was proven when it was encoded (EncodeBlobChecked); its MAC proves
    // the stored bytes are still the ones that were proven.
    for (const PackedBlob& b : p.blobs) {
      Status mac = VerifyMac(repo_.key(), ByteView(p.data).subspan(b.offset, b.length));
      if (!mac.ok()) {
        return mac.WithContext(fmt::format("verify before upload: pack {} {} blob {}", id.Short(),
                                           BlobTypeName(b.type), b.id.Short()));
      }
    }
  }
  FSB_RETURN_IF_ERROR(repo_.PassWriteBarrier());
  Status s = repo_.backend().Save(Handle{FileType::kPack, id.Hex()}, p.data);
  if (!s.ok()) return s.WithContext(fmt::format("save pack {}", id.Short()));
  // Only now, with the pack durable, may anything refer to its blobs.
  if (options_.update_repository_index) repo_.AddToIndex(id, p.blobs);
  std::unique_lock lock(mu_);
  stats_.packs++;
  stats_.stored_bytes += p.data.size();
  pending_index_blobs_ += p.blobs.size();
  pending_index_.packs.push_back(IndexFile::Pack{id, std::move(p.blobs)});
  return FlushIndexLocked(lock, false);
}

Status PackSaver::FlushIndexLocked(std::unique_lock<std::mutex>& lock, bool force) {
  if (pending_index_.packs.empty()) return Status::Ok();
  if (!force && pending_index_blobs_ < options_.index_max_blobs) return Status::Ok();
  IndexFile f = std::move(pending_index_);
  pending_index_ = IndexFile();
  pending_index_blobs_ = 0;
  lock.unlock();
  Status s;
  {
    std::lock_guard wl(index_write_mu_);
    std::string json = EncodeIndexFile(f);
    Result<Id> id = repo_.SaveUnpacked(FileType::kIndex, AsBytes(json));
    s = id.status();
  }
  lock.lock();
  if (s.ok()) stats_.index_files++;
  return s;
}

void PackSaver::UploadLoop(std::stop_token stop) {
  for (;;) {
    PendingPack p;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop.stop_requested() || !queue_.empty(); });
      if (queue_.empty()) return;  // stop requested and nothing left
      if (!error_.ok()) {
        queue_.clear();
        cv_.notify_all();
        continue;
      }
      p = std::move(queue_.front());
      queue_.pop_front();
      in_flight_++;
      cv_.notify_all();
    }
    Status s = UploadOne(p);
    pack_buffers_.Give(std::move(p.data));  // before it stops counting against the budget
    std::lock_guard lock(mu_);
    in_flight_--;
    if (!s.ok()) SetError(s);
    cv_.notify_all();
  }
}

Status PackSaver::Finish() {
  for (int t = 0; t < 2; t++) {
    std::lock_guard build_lock(build_mu_);
    if (builders_[t].count() == 0) continue;
    std::unique_lock lock(mu_);
    FSB_RETURN_IF_ERROR(WaitForRoomLocked(lock));
    PendingPack ready;
    ready.data = builders_[t].Finish(repo_.key(), &ready.blobs);
    queue_.push_back(std::move(ready));
    cv_.notify_all();
  }
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !error_.ok() || (queue_.empty() && in_flight_ == 0); });
  if (!error_.ok()) return error_;
  return FlushIndexLocked(lock, true);
}

PackSaverStats PackSaver::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace fsb::repo
