#include "repo/pack_saver.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "repo/chunker.h"

namespace fsb::repo {
namespace {

// Spooled packs (PackSaver::AddSpooled): blobs below kSpoolDirectBytes are gathered and written
// kSpoolGatherBytes at a time; packs are read back for their hash in runs of kSpoolReadBytes.
constexpr size_t kSpoolDirectBytes = 256u << 10;
constexpr size_t kSpoolGatherBytes = 1u << 20;
constexpr uint64_t kSpoolReadBytes = 4u << 20;

// A pack buffer's capacity: the target, plus the blob that crosses it (at most a maximal data chunk,
// stored: zstd's worst case for 8 MiB is 8 MiB + 32 KiB, plus the seal; a larger tree blob is
// reserved for when it is the first), plus room for the sealed header (41 bytes an entry).
// §7.3: a pack is finished when its blob data reaches the target size, or its header would pass
// 16 MiB with one more entry.
bool PackFull(uint64_t data_size, uint64_t header_size, uint64_t target) {
  return data_size >= target || header_size + kCompressedEntrySize > kMaxHeaderSize - kCryptoOverhead;
}

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
  {
    // Under the lock the upload threads wait under: requested outside it, the stop (and its
    // notify) could fall between a thread's check and its wait, and the join below hung.
    std::lock_guard lock(mu_);
    for (auto& t : threads_) t.request_stop();
  }
  cv_.notify_all();
  threads_.clear();
}

void PackSaver::SetError(const Status& s) {
  if (error_.ok()) error_ = s;
  cv_.notify_all();
}

Status PackSaver::Add(BlobType type, const Id& id, Bytes stored, uint32_t uncompressed_length,
                      uint64_t plain_size) {
  std::unique_lock build_lock(build_mu_);
  if (spooling_ == Spooling::kUnknown) {
    // The first pack file asks the backend whether it takes spool files at all.
    bool offered = false;
    if (options_.spool) {
      FSB_ASSIGN_OR_RETURN(offered, OpenSpooledLocked(type));
    }
    spooling_ = offered ? Spooling::kYes : Spooling::kNo;
  }
  if (spooling_ == Spooling::kYes) {
    return AddSpooled(type, id, stored, uncompressed_length, plain_size, build_lock);
  }
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
  const bool full = PackFull(b.data_size(), b.header_size(), repo_.options().pack_size);
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
  cv_.wait(lock, [&] {
    return !error_.ok() || queue_.size() + static_cast<size_t>(in_flight_ + sealing_) < max_alive;
  });
  return error_;
}

Status PackSaver::CheckHeader(const Id& id, uint64_t size, ByteView tail,
                              const std::vector<PackedBlob>& blobs) const {
  uint64_t need = 0;
  Result<std::vector<PackedBlob>> header =
      ParsePackHeader(repo_.key(), id, size, tail, repo_.version(), &need);
  if (!header.ok()) return header.status().WithContext("verify before upload");
  if (*header != blobs) {
    return Status::Internal(fmt::format("verify before upload: pack {} header mismatch", id.Short()));
  }
  return Status::Ok();
}

Status PackSaver::UploadOne(PendingPack& p) {
  Id id = Id::Hash(p.data);
  if (options_.verify_before_upload) {
    // Re-read what we are about to store: header, then every blob (restic ≥ 0.16.4 does the same).
    FSB_RETURN_IF_ERROR(CheckHeader(id, p.data.size(), p.data, p.blobs));
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
  return Stored(id, p.data.size(), std::move(p.blobs));
}

Status PackSaver::Stored(const Id& id, uint64_t size, std::vector<PackedBlob> blobs) {
  // Only now, with the pack durable, may anything refer to its blobs.
  if (options_.update_repository_index) repo_.AddToIndex(id, blobs);
  std::unique_lock lock(mu_);
  stats_.packs++;
  stats_.stored_bytes += size;
  pending_index_blobs_ += blobs.size();
  pending_index_.packs.push_back(IndexFile::Pack{id, std::move(blobs)});
  return FlushIndexLocked(lock, false);
}

Status PackSaver::AddSpooled(BlobType type, const Id& id, ByteView stored,
                             uint32_t uncompressed_length, uint64_t plain_size,
                             std::unique_lock<std::mutex>& build_lock) {
  if (!spooled_[static_cast<int>(type)]) {
    FSB_ASSIGN_OR_RETURN(const bool offered, OpenSpooledLocked(type));
    if (!offered) return Status::Internal("the backend stopped offering pack files");
  }
  std::shared_ptr<SpooledPack> pack = spooled_[static_cast<int>(type)];
  PackedBlob blob;
  blob.type = type;
  blob.id = id;
  blob.offset = static_cast<uint32_t>(pack->data_size);
  blob.length = static_cast<uint32_t>(stored.size());
  blob.uncompressed_length = uncompressed_length;
  pack->blobs.push_back(blob);
  pack->data_size += stored.size();
  pack->header_size += PackHeaderEntrySize(uncompressed_length);
  const bool full = PackFull(pack->data_size, pack->header_size, repo_.options().pack_size);
  // What this caller writes once the build lock is released: the gathered small blobs (when
  // they reach kSpoolGatherBytes, when a big blob comes after them, or when the pack is full),
  // and a big blob itself, from the caller's buffer. Each write is one pwrite: per-blob writes of
  // a small-file backup made the writers queue on the file's inode lock.
  Bytes gathered;
  uint64_t gathered_offset = 0;
  const bool direct = stored.size() >= kSpoolDirectBytes;
  if (!direct) {
    if (pack->staged.empty()) {
      pack->staged.reserve(kSpoolGatherBytes + kSpoolDirectBytes);
      pack->staged_offset = blob.offset;
    }
    Append(pack->staged, stored);
  }
  if (!pack->staged.empty() && (direct || full || pack->staged.size() >= kSpoolGatherBytes)) {
    gathered = std::move(pack->staged);
    gathered_offset = pack->staged_offset;
    pack->staged = Bytes();
  }
  const bool writes = direct || !gathered.empty();
  if (writes) {
    std::lock_guard pl(pack->mu);
    pack->writers++;
  }
  Status status;
  {
    std::unique_lock lock(mu_);
    stats_.blobs[static_cast<int>(type)]++;
    stats_.plain_bytes += plain_size;
    status = error_;
  }
  if (full && status.ok()) status = SealSpooledLocked(type);
  build_lock.unlock();
  if (!writes) return status;
  // The copies into the file run outside the build lock: the other workers keep adding meanwhile.
  Status write;
  if (status.ok() && !gathered.empty()) write = pack->file->WriteAt(gathered_offset, gathered);
  if (status.ok() && write.ok() && direct) write = pack->file->WriteAt(blob.offset, stored);
  WriterDone(pack, write);
  if (!write.ok()) return write.WithContext("write pack");
  return status;
}

Result<bool> PackSaver::OpenSpooledLocked(BlobType type) {
  Result<std::unique_ptr<SpoolFile>> file = repo_.backend().CreateSpool(FileType::kPack);
  if (!file.ok()) return file.status().WithContext("create pack file");
  if (!*file) return false;
  auto pack = std::make_shared<SpooledPack>();
  pack->file = std::move(*file);
  spooled_[static_cast<int>(type)] = std::move(pack);
  return true;
}

Status PackSaver::SealSpooledLocked(BlobType type) {
  std::shared_ptr<SpooledPack> pack = std::move(spooled_[static_cast<int>(type)]);
  if (!pack) return Status::Ok();
  {
    // Wait for room with build_mu_ held, as for packs in memory: at most max_alive packs between
    // sealed and uploaded, and no other caller starts a new pack meanwhile.
    std::unique_lock lock(mu_);
    FSB_RETURN_IF_ERROR(WaitForRoomLocked(lock));
    sealing_++;
  }
  // Small blobs still gathered go to the file now (rare: Add writes them when the pack fills).
  Status write;
  if (!pack->staged.empty()) {
    write = pack->file->WriteAt(pack->staged_offset, pack->staged);
    pack->staged = Bytes();
  }
  {
    std::lock_guard pl(pack->mu);
    pack->sealed = true;
    pack->writers++;
  }
  WriterDone(pack, write);
  return Status::Ok();
}

void PackSaver::WriterDone(const std::shared_ptr<SpooledPack>& pack, const Status& write) {
  std::lock_guard pl(pack->mu);
  if (!write.ok() && pack->error.ok()) pack->error = write;
  if (--pack->writers > 0 || !pack->sealed) return;
  std::lock_guard lock(mu_);
  sealing_--;
  queue_.push_back(PendingPack{.data = {}, .spooled = pack, .blobs = {}});
  cv_.notify_all();
}

Status PackSaver::UploadSpooled(PendingPack& p) {
  SpooledPack& pack = *p.spooled;
  {
    std::lock_guard pl(pack.mu);
    if (!pack.error.ok()) return pack.error.WithContext("write pack");
  }
  Bytes tail;
  AppendPackHeader(repo_.key(), pack.blobs, tail);
  FSB_RETURN_IF_ERROR(pack.file->WriteAt(pack.data_size, tail).WithContext("write pack"));
  // The pack's name is the SHA-256 of what the file holds: read back in runs of whole blobs (at
  // most kSpoolReadBytes, or one bigger blob, in memory), each blob's MAC checked on the way
  // (verify before upload, as for packs in memory: a change of the stored bytes since their
  // encoding was proven cannot go unnoticed).
  thread_local Bytes buf;
  Sha256 hash;
  for (size_t first = 0; first < pack.blobs.size();) {
    // A run of whole blobs, up to kSpoolReadBytes (or one bigger blob), in one read.
    const uint64_t start = pack.blobs[first].offset;
    size_t end = first + 1;
    while (end < pack.blobs.size() &&
           pack.blobs[end].offset + uint64_t(pack.blobs[end].length) - start <= kSpoolReadBytes) {
      end++;
    }
    const uint64_t len = pack.blobs[end - 1].offset + uint64_t(pack.blobs[end - 1].length) - start;
    if (buf.size() < len) buf.resize(len);
    MutableByteView run(buf.data(), len);
    FSB_RETURN_IF_ERROR(pack.file->ReadAt(start, run).WithContext("read back pack"));
    for (size_t i = first; options_.verify_before_upload && i < end; i++) {
      const PackedBlob& b = pack.blobs[i];
      Status mac = VerifyMac(repo_.key(), ByteView(run).subspan(b.offset - start, b.length));
      if (!mac.ok()) {
        return mac.WithContext(fmt::format("verify before upload: {} blob {}",
                                           BlobTypeName(b.type), b.id.Short()));
      }
    }
    hash.Update(run);
    first = end;
  }
  Bytes back(tail.size());
  FSB_RETURN_IF_ERROR(pack.file->ReadAt(pack.data_size, back).WithContext("read back pack"));
  hash.Update(back);
  const Id id = hash.Finish();
  const uint64_t size = pack.data_size + tail.size();
  if (options_.verify_before_upload) FSB_RETURN_IF_ERROR(CheckHeader(id, size, back, pack.blobs));
  FSB_RETURN_IF_ERROR(repo_.PassWriteBarrier());
  Status s = pack.file->Publish(Handle{FileType::kPack, id.Hex()});
  if (!s.ok()) return s.WithContext(fmt::format("save pack {}", id.Short()));
  return Stored(id, size, pack.blobs);
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
    Status s = p.spooled ? UploadSpooled(p) : UploadOne(p);
    p.spooled.reset();  // closes (and, unpublished, discards) the spool file
    // Before it stops counting against the budget.
    if (p.data.capacity() > 0) pack_buffers_.Give(std::move(p.data));
    std::lock_guard lock(mu_);
    in_flight_--;
    if (!s.ok()) SetError(s);
    cv_.notify_all();
  }
}

Status PackSaver::Finish() {
  for (int t = 0; t < 2; t++) {
    std::lock_guard build_lock(build_mu_);
    if (spooled_[t] && !spooled_[t]->blobs.empty()) {
      FSB_RETURN_IF_ERROR(SealSpooledLocked(static_cast<BlobType>(t)));
    }
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
