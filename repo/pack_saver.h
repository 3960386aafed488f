// repo/pack_saver.h: turns encoded blobs into packs and uploads them, several at once, then
// indexes them and writes index files — in restic's order: pack, then index, then (the caller's)
// snapshot (restic-repo-format.md §7.3, §8.3, §13). Safe for concurrent use: any number of
// workers call Add; uploads run on the saver's own threads.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/buffer_pool.h"
#include "base/bytes.h"
#include "base/status.h"
#include "repo/index.h"
#include "repo/pack.h"
#include "repo/repository.h"

namespace fsb::repo {

struct PackSaverOptions {
  // Concurrent pack uploads; 0 takes the backend's max_connections.
  int upload_threads = 0;
  // Finished packs that may wait while every uploader is busy; when none may, Add blocks until an
  // uploader is free. Memory budget: (upload threads + max_queued_packs) finished packs, plus one
  // open pack per blob type, each pack_size + one stored blob (≤ 8 MiB + 32 KiB for data) + its
  // header: (2 + 0 + 2) × ~17 MiB ≈ 68 MiB (worst case 96 MiB) at the defaults on a local backend,
  // where the open tree pack of a large-file backup stays small. Uploaded data packs' buffers are
  // kept for reuse (as many as can be in use at once), so that the budget is paid once. The blocked caller holds the build
  // lock, so no other caller can finish (and hold) another pack meanwhile. No queue slot by
  // default: on 2 CPUs a busy uploader uses the CPU the producers would need (not measured apart
  // from the other changes; the large-file backup's CPU time stayed the same).
  int max_queued_packs = 0;
  // restic writes an index file once it holds this many blobs (v2: 150 000, §8.3).
  size_t index_max_blobs = 150000;
  // Before upload, re-parse each pack's header and check every blob's MAC (cheap insurance, as
  // restic ≥ 0.16.4). The blobs' contents are proven where they are encoded: writers use
  // EncodeBlobChecked, and blobs copied from existing packs were checked when read.
  bool verify_before_upload = true;
  // Add each stored pack's blobs to the repository's in-memory index (writers that dedup against
  // it need that). prune turns it off: it keeps its own record of every blob, and 64–128 bytes a
  // repacked blob would double its memory.
  bool update_repository_index = true;
  // Write packs straight into the backend's spool files where it offers them (the local backend:
  // unnamed O_TMPFILE files in data/), instead of building each in memory: the blobs go to the
  // file as they come, so a pack costs no memory while it is built, written and synced. Off:
  // always build in memory and Save.
  bool spool = true;
};

struct PackSaverStats {
  uint64_t packs = 0;
  uint64_t blobs[2] = {0, 0};          // data, tree
  uint64_t stored_bytes = 0;           // pack bytes written
  uint64_t plain_bytes = 0;            // blob plaintext bytes added
  uint64_t index_files = 0;
};

class PackSaver {
 public:
  PackSaver(Repository& repo, PackSaverOptions options = {});
  // Stops the uploaders. Call Finish first for a clean end; without it, queued packs are dropped
  // (an interrupted backup: only unreferenced data is left behind).
  ~PackSaver();
  PackSaver(const PackSaver&) = delete;
  PackSaver& operator=(const PackSaver&) = delete;

  // Adds an encoded blob (see EncodeBlob). Blocks while the upload queue is full (backpressure).
  // Returns the first upload error if one happened.
  Status Add(BlobType type, const Id& id, Bytes stored, uint32_t uncompressed_length,
             uint64_t plain_size);
  // Flushes the open packs, waits for every upload, writes the remaining index entries.
  // After Finish returns OK every added blob is stored and indexed.
  Status Finish();
  PackSaverStats stats() const;

 private:
  // A pack written into a spool file: callers of Add write their blobs themselves, outside the
  // build lock, at offsets handed out under it; whoever ends the last write of a sealed pack
  // queues it for upload.
  struct SpooledPack {
    std::unique_ptr<SpoolFile> file;
    std::vector<PackedBlob> blobs;  // guarded by build_mu_ until sealed, then read-only
    uint64_t data_size = 0;         // guarded by build_mu_ until sealed
    uint64_t header_size = 0;       // guarded by build_mu_
    // Small blobs are gathered here (one write for many); it holds the file's bytes from
    // staged_offset on. Guarded by build_mu_.
    Bytes staged;
    uint64_t staged_offset = 0;
    std::mutex mu;
    int writers = 0;      // guarded by mu: WriteAt calls not yet returned
    bool sealed = false;  // guarded by mu: no more blobs come
    Status error;         // guarded by mu: the first failed write
  };
  struct PendingPack {
    Bytes data;                           // a pack built in memory, or
    std::shared_ptr<SpooledPack> spooled; // one written into a spool file
    std::vector<PackedBlob> blobs;
  };
  Status AddSpooled(BlobType type, const Id& id, ByteView stored, uint32_t uncompressed_length,
                    uint64_t plain_size, std::unique_lock<std::mutex>& build_lock);
  // Opens a spool file for the next pack of `type` (build_mu_ held): false when the backend offers
  // none.
  Result<bool> OpenSpooledLocked(BlobType type);
  // Ends the open spooled pack of `type` (build_mu_ held); it is queued once its writes are done.
  Status SealSpooledLocked(BlobType type);
  // Drops one writer of `pack`; the last writer of a sealed pack queues it.
  void WriterDone(const std::shared_ptr<SpooledPack>& pack, const Status& write);
  Status UploadSpooled(PendingPack& p);
  // Verify before upload: the header at the end of `tail` (a pack of `size` bytes named `id`)
  // parses and lists exactly `blobs`.
  Status CheckHeader(const Id& id, uint64_t size, ByteView tail,
                     const std::vector<PackedBlob>& blobs) const;
  // A pack is durable: index its blobs and count it.
  Status Stored(const Id& id, uint64_t size, std::vector<PackedBlob> blobs);
  static int UploadThreads(Repository& repo, const PackSaverOptions& options);
  void UploadLoop(std::stop_token stop);
  Status UploadOne(PendingPack& p);
  Status FlushIndexLocked(std::unique_lock<std::mutex>& lock, bool force);
  // Blocks until a finished pack may be queued (within the memory budget) or an upload failed;
  // returns the first upload error. `lock` holds mu_.
  Status WaitForRoomLocked(std::unique_lock<std::mutex>& lock);
  void SetError(const Status& s);

  Repository& repo_;
  PackSaverOptions options_;

  std::mutex build_mu_;
  PackBuilder builders_[2];  // guarded by build_mu_; data, tree
  // Whether the backend offers spool files: unknown until the first Add asks it.
  enum class Spooling { kUnknown, kYes, kNo };
  Spooling spooling_ = Spooling::kUnknown;       // guarded by build_mu_
  std::shared_ptr<SpooledPack> spooled_[2];      // guarded by build_mu_; the open ones
  BufferPool pack_buffers_;  // uploaded packs' buffers, reused for data packs

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PendingPack> queue_;  // guarded by mu_
  int in_flight_ = 0;              // guarded by mu_
  int sealing_ = 0;                // guarded by mu_: sealed spooled packs still being written
  Status error_;                   // guarded by mu_
  IndexFile pending_index_;        // guarded by mu_
  size_t pending_index_blobs_ = 0; // guarded by mu_
  PackSaverStats stats_;           // guarded by mu_
  std::mutex index_write_mu_;      // one index file written at a time
  std::vector<std::jthread> threads_;
};

}  // namespace fsb::repo
