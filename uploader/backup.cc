#include "uploader/backup.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#endif

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "base/dir.h"
#include "base/fd.h"
#include "base/log.h"
#include "base/sysinfo.h"
#include "repo/chunker.h"
#include "repo/pack_saver.h"
#include "uploader/fs_meta.h"
#include "uploader/pattern.h"

namespace fsb::uploader {
namespace {

using repo::BlobType;
using repo::Id;
using repo::Node;
using repo::NodeType;

// A directory whose tree is being built. Children write their own slot of `nodes`; the thread
// that drops `pending` to zero owns the state and finishes the tree.
struct DirState {
  DirState* parent = nullptr;
  size_t index_in_parent = 0;
  std::vector<Node> nodes;   // reserved up front: never reallocated while children run
  std::vector<char> drop;    // 1: the child failed and is left out of the tree
  std::atomic<int64_t> pending{1};  // children in flight + 1 for the walker's own listing
  std::optional<Id> parent_subtree;  // the same directory's tree in the parent snapshot
  // That tree's nodes, kept from the walk to completion: when the new nodes equal them, the
  // parent's tree is the new tree, and encoding and hashing it again is skipped.
  std::optional<std::vector<Node>> parent_nodes;
  std::string path;          // for messages
};

struct FileJob {
  Fd fd;
  DirState* dir = nullptr;
  size_t index = 0;
  std::string path;
  uint64_t size = 0;
  bool sparse = false;  // fewer blocks than bytes: look for holes instead of reading them
};

// The chunk IDs of one file, in order. A file of more than one chunk has its chunks hashed (and,
// when new, compressed and encrypted) on the encode pool: the thread reading it only reads and
// finds the boundaries, which restic's chunker can only do in sequence, so one big file keeps both
// cores busy, also when its chunks are all known (a changed multi-GB file: only SHA-256 to do).
class FileChunks {
 public:
  // Appends a slot; with a known ID (a zero chunk, or a file hashed by its reader) it is filled.
  size_t Append(const Id& id = Id()) {
    std::lock_guard l(mu_);
    ids_.push_back(id);
    return ids_.size() - 1;
  }
  void Set(size_t index, const Id& id) {
    std::lock_guard l(mu_);
    ids_[index] = id;
  }
  void Handed() {
    std::lock_guard l(mu_);
    pending_++;
  }
  // A chunk handed to the pool is done (or dropped): the last one wakes the reader. Notified under
  // the lock: the reader may destroy this object as soon as it sees pending_ == 0.
  void Done() {
    std::lock_guard l(mu_);
    if (--pending_ == 0) done_.notify_all();
  }
  // Blocks until every chunk handed to the pool is done; then the IDs are final.
  std::vector<Id> Wait() {
    std::unique_lock l(mu_);
    done_.wait(l, [&] { return pending_ == 0; });
    return std::move(ids_);
  }

 private:
  std::mutex mu_;
  std::condition_variable done_;
  std::vector<Id> ids_;
  size_t pending_ = 0;
};

// A chunk of a multi-chunk file, for the encode pool: hashed there, stored if new.
struct EncodeJob {
  FileChunks* file;
  size_t index;
  Bytes plain;
};

// A blocking queue of bounded size. A producer blocked on a full queue is woken only once the
// queue has drained to half (not after every pop): the walker then refills it in one go instead
// of trading the CPU with a worker for every file (perf: the per-file wake-ups were ~130 k context
// switches and ~8 % of an initial backup's CPU).
template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t cap) : cap_(cap), refill_at_(cap / 2) {}
  // Blocks while full; false if closed.
  bool Push(T&& v) {
    std::unique_lock l(mu_);
    if (!closed_ && q_.size() >= cap_) {
      blocked_producers_++;
      not_full_.wait(l, [&] { return closed_ || q_.size() <= refill_at_; });
      blocked_producers_--;
    }
    if (closed_) return false;
    q_.push_back(std::move(v));
    const bool wake = idle_consumers_ > 0;
    l.unlock();
    if (wake) not_empty_.notify_one();
    return true;
  }
  // Blocks while empty; nullopt once closed and drained.
  std::optional<T> Pop() {
    std::unique_lock l(mu_);
    if (!closed_ && q_.empty()) {
      idle_consumers_++;
      not_empty_.wait(l, [&] { return closed_ || !q_.empty(); });
      idle_consumers_--;
    }
    if (q_.empty()) return std::nullopt;
    T v = std::move(q_.front());
    q_.pop_front();
    const bool wake = blocked_producers_ > 0 && q_.size() <= refill_at_;
    l.unlock();
    if (wake) not_full_.notify_all();
    return v;
  }
  void Close() {
    std::lock_guard l(mu_);
    closed_ = true;
    not_empty_.notify_all();
    not_full_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<T> q_;  // guarded by mu_
  const size_t cap_;
  const size_t refill_at_;        // a blocked producer goes on at this size or below
  int blocked_producers_ = 0;     // guarded by mu_
  int idle_consumers_ = 0;        // guarded by mu_
  bool closed_ = false;           // guarded by mu_
};

// One pread, retried when a signal interrupts it.
ssize_t PreadRetry(int fd, uint8_t* dst, size_t len, uint64_t offset) {
  ssize_t n;
  do {
    n = pread(fd, dst, len, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  return n;
}

// The thread count an option asks for; 0 = one per CPU.
int ThreadsOrCpus(int option) {
  return option > 0 ? option : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Whether a file's pages were in the page cache before the backup read them.
enum class CacheState { kUnknown, kHot, kCold, kNotKnowable };
constexpr uint64_t kDropEvery = 32u << 20;
// The first read of a file, from the page cache only (preadv2 RWF_NOWAIT, Linux ≥ 4.14 for
// buffered reads on ext4/xfs/btrfs): kHot if anything was there (the answer may be short without
// meaning end of file), kCold after EAGAIN (then read normally). File systems that do not offer
// it (EOPNOTSUPP) give kNotKnowable: the file is read and its pages are left to the kernel,
// because dropping a database's hot pages costs the node more than keeping a backup's.
CacheState ProbeRead(int fd, uint8_t* dst, size_t len, uint64_t offset, ssize_t* n,
                     std::atomic<bool>& nowait_unsupported) {
  if (!nowait_unsupported.load(std::memory_order_relaxed)) {
    struct iovec iov{dst, len};
    do {
      *n = preadv2(fd, &iov, 1, static_cast<off_t>(offset), RWF_NOWAIT);
    } while (*n < 0 && errno == EINTR);
    if (*n >= 0) return CacheState::kHot;
    if (errno != EAGAIN && errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL) {
      return CacheState::kHot;  // a real read error: the caller reports it
    }
    if (errno != EAGAIN) nowait_unsupported.store(true, std::memory_order_relaxed);
  }
  const CacheState state = nowait_unsupported.load(std::memory_order_relaxed)
                               ? CacheState::kNotKnowable : CacheState::kCold;
  *n = PreadRetry(fd, dst, len, offset);
  return state;
}

// The check value of verify-before-upload (StoreBlob): XXH3-64, through the library's runtime
// dispatch to AVX2/AVX-512 on x86-64 (Debian's plain entry point is SSE2 only: 3.5 % of an
// initial backup's CPU).
uint64_t Checksum(const void* data, size_t len) {
#if defined(__x86_64__)
  return XXH3_64bits_dispatch(data, len);
#else
  return XXH3_64bits(data, len);
#endif
}

// kChunkerMinBytes of zeros: the chunk every stretch of a hole is made of.
ByteView ZeroChunk() {
  static const Bytes* zeros = new Bytes(repo::kChunkerMinBytes, 0);
  return *zeros;
}

bool SameTime(const repo::Timestamp& a, const repo::Timestamp& b) {
  return a.sec == b.sec && a.nsec == b.nsec;
}

// restic's rule (archiver.go, 0.14): unchanged when the parent node is a file with the same
// size, mtime, ctime and inode.
bool Unchanged(const Node& old, const Node& now) {
  return old.type == NodeType::kFile && old.size == now.size && SameTime(old.mtime, now.mtime) &&
         SameTime(old.ctime, now.ctime) && old.inode == now.inode;
}

const Node* FindByName(const std::vector<Node>& nodes, std::string_view name) {
  auto it = std::lower_bound(nodes.begin(), nodes.end(), name,
                             [](const Node& n, std::string_view v) { return n.name < v; });
  if (it != nodes.end() && it->name == name) return &*it;
  // Trees written by other tools may be unsorted: fall back to a scan.
  for (const Node& n : nodes)
    if (n.name == name) return &n;
  return nullptr;
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  if (dir.empty() || dir == "/") return dir + std::string(name);
  return dir + "/" + std::string(name);
}

// The virtual top of the snapshot: targets and the directories leading to them.
struct VNode {
  std::string abs_path;
  bool is_target = false;
  std::map<std::string, VNode> children;  // sorted byte-wise, as trees are
};

class Backup {
 public:
  Backup(repo::Repository& repo, const BackupOptions& opts, Progress* progress)
      : repo_(repo),
        opts_(opts),
        progress_(progress ? progress : &own_progress_),
        saver_(repo),
        queue_(static_cast<size_t>(std::max(1, opts.file_queue))),
        encode_queue_(static_cast<size_t>(std::max(1, opts.encode_queue))),
        tables_(repo::ChunkerTables::Get(repo::Polynomial(repo.config().chunker_polynomial))),
        zero_chunk_id_(Id::Hash(ZeroChunk())),
        zero_chunk_check_(Checksum(ZeroChunk().data(), ZeroChunk().size())),
        writer_(repo.NewWriter()),
        log_(GetLogger("uploader")) {}

  // Runs the backup; when it fails, the blobs it reserved and did not store are released.
  Result<BackupSummary> Run() {
    Result<BackupSummary> r = RunOnce();
    if (!r.ok()) repo_.ReleaseReservations(writer_);
    return r;
  }
  Result<BackupSummary> RunWithStop() {
    // Called on the thread that requests the stop; Fail only takes a mutex and sets flags.
    std::stop_callback on_stop(opts_.stop, [this] { Fail(Status::Cancelled("backup canceled")); });
    return Run();
  }

 private:
  Result<BackupSummary> RunOnce();
  void Fail(const Status& s) {
    std::lock_guard l(mu_);
    if (error_.ok()) error_ = s;
    failed_.store(true);
  }
  void RecordError(std::string msg) {
    progress_->errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard l(mu_);
    if (errors_.size() < 10) log_->warn("skipped unreadable entry err=\"{}\"", msg);
    errors_.push_back(std::move(msg));
  }
  void Release(DirState* d);
  void Complete(DirState* d);
  // Records `d`'s tree ID in its parent (or as the root) and frees `d`.
  void Finish(DirState* d, const Id& id);
  Status WalkDir(int dfd, DirState* d);
  // Hands the subdirectory to an idle walker (true), or leaves it to the caller (false).
  bool OfferDir(Fd& fd, DirState* d);
  // A helper walker: takes offered directories until walking is done. The calling thread joins
  // in once its own walk returned.
  void WalkHelperLoop();
  // A walk (the root's or an offered directory's) ended; the last one wakes the helpers to stop.
  void WalkDone();
  void WalkDoneLocked();  // walk_mu_ held
  void UpdateIdleHintLocked();  // walk_mu_ held
  Status AddEntry(int dfd, DirState* d, const std::string& name, const struct stat& st,
                  const std::vector<Node>* parent_nodes);
  Status BuildVirtual(const VNode& v, DirState* d, const std::vector<Node>* parent_nodes);
  void WorkerLoop();
  void EncodeLoop();
  // Encodes and stores a new blob; `check` is the xxHash of the bytes `id` was computed from,
  // against which the encoded form is proven (repo::EncodeBlobChecked). A failure ends the backup
  // (Fail) and returns kCancelled.
  Status StoreBlob(BlobType type, const Id& id, uint64_t check, ByteView plain);
  // A data chunk of a file, by its ID and check value: stored when no one has it or is storing it,
  // and counted. `check`: the xxHash taken right after the SHA-256, over the same bytes; the
  // encoder proves its output against it (a flip in the chunk's buffer, a copy of it or the
  // compressor cannot go unnoticed).
  Status StoreChunk(const Id& id, uint64_t check, ByteView chunk);
  Status ChunkFile(FileJob& job, std::vector<Id>* content, uint64_t* read_bytes);
  Result<std::vector<Node>> LoadParentTree(const std::optional<Id>& id, const std::string& path);
  std::optional<Id> ChooseParent(const std::vector<std::string>& abs_paths, const repo::Timestamp& now);

  repo::Repository& repo_;
  const BackupOptions& opts_;
  Progress own_progress_;
  Progress* progress_;
  repo::PackSaver saver_;
  BoundedQueue<FileJob> queue_;
  BoundedQueue<EncodeJob> encode_queue_;
  std::shared_ptr<const repo::ChunkerTables> tables_;
  Id zero_chunk_id_;  // SHA-256 of kChunkerMinBytes zero bytes: every chunk inside a hole
  uint64_t zero_chunk_check_;
  const uint64_t writer_;  // this backup's blob reservations (Repository::ReserveBlob)
  std::shared_ptr<spdlog::logger> log_;
  MetaOptions meta_opts_;

  std::mutex mu_;
  Status error_;                     // guarded by mu_
  std::vector<std::string> errors_;  // guarded by mu_
  std::atomic<bool> failed_{false};
  std::atomic<bool> nowait_unsupported_{false};  // the source's file system refused RWF_NOWAIT

  // Directories offered to idle walkers. `walks_` counts walks not yet finished (the root's and
  // every offered one); at zero, walking is done.
  struct OfferedDir {
    Fd fd;
    DirState* dir;
  };
  std::mutex walk_mu_;
  std::condition_variable walk_cv_;
  std::deque<OfferedDir> offered_;  // guarded by walk_mu_
  int idle_walkers_ = 0;            // guarded by walk_mu_
  int64_t walks_ = 1;               // guarded by walk_mu_
  std::atomic<int> idle_hint_{0};   // idle_walkers_ - offered_.size(), read without the lock

  std::mutex root_mu_;
  std::condition_variable root_cv_;
  std::optional<Id> root_id_;  // guarded by root_mu_
  bool root_done_ = false;     // guarded by root_mu_

  std::atomic<uint64_t> files_new_{0}, files_changed_{0}, files_unmodified_{0};
  std::atomic<uint64_t> dirs_new_{0}, dirs_changed_{0}, dirs_unmodified_{0};
  std::atomic<uint64_t> data_blobs_{0}, tree_blobs_{0}, data_added_{0};
};

void Backup::Release(DirState* d) {
  if (d->pending.fetch_sub(1, std::memory_order_acq_rel) == 1) Complete(d);
}

void Backup::Complete(DirState* d) {
  std::vector<Node> kept;
  kept.reserve(d->nodes.size());
  for (size_t i = 0; i < d->nodes.size(); i++) {
    if (!d->drop[i]) kept.push_back(std::move(d->nodes[i]));
  }
  if (d->parent_subtree && d->parent_nodes && kept == *d->parent_nodes &&
      repo_.HasBlob(BlobType::kTree, *d->parent_subtree)) {
    // An unchanged directory (the common case of an incremental backup): its tree is stored.
    dirs_unmodified_++;
    Finish(d, *d->parent_subtree);
    return;
  }
  Bytes tree = repo::EncodeTree(kept);
  Id id = Id::Hash(tree);
  const uint64_t check = Checksum(tree.data(), tree.size());
  if (!failed_.load() && repo_.ReserveBlob(BlobType::kTree, id, writer_)) {
    StoreBlob(BlobType::kTree, id, check, tree).IgnoreError();  // a failure is in the error slot
    tree_blobs_++;
  }
  if (!d->parent_subtree) {
    dirs_new_++;
  } else if (*d->parent_subtree == id) {
    dirs_unmodified_++;
  } else {
    dirs_changed_++;
  }
  Finish(d, id);
}

void Backup::Finish(DirState* d, const Id& id) {
  std::unique_ptr<DirState> owned(d);
  if (d->parent) {
    d->parent->nodes[d->index_in_parent].subtree = id;
    Release(d->parent);
  } else {
    std::lock_guard l(root_mu_);
    root_id_ = id;
    root_done_ = true;
    root_cv_.notify_all();
  }
}

Result<std::vector<Node>> Backup::LoadParentTree(const std::optional<Id>& id,
                                                 const std::string& path) {
  if (!id) return std::vector<Node>{};
  Result<std::vector<Node>> t = repo_.LoadTree(*id);
  if (!t.ok()) {
    log_->warn("parent tree unreadable, reading files again path={} err=\"{}\"", path,
               t.status().ToString());
    return t.status();  // callers go on as without a parent
  }
  return t;
}

Status Backup::AddEntry(int dfd, DirState* d, const std::string& name, const struct stat& st,
                        const std::vector<Node>* parent_nodes) {
  const std::string path = JoinPath(d->path, name);
  for (const auto& pattern : opts_.excludes) {
    if (MatchExclude(pattern, path)) return Status::Ok();
  }
  Result<std::optional<Node>> made = NodeFromStat(dfd, name, st, meta_opts_);
  if (!made.ok()) {
    RecordError(made.status().WithContext(path).message());
    return Status::Ok();
  }
  if (!made->has_value()) return Status::Ok();  // a socket: restic skips those silently
  Node node = std::move(**made);
  const Node* old = parent_nodes ? FindByName(*parent_nodes, name) : nullptr;
  const size_t idx = d->nodes.size();
  FSB_CHECK(idx < d->nodes.capacity());  // reserved: children hold indexes into it

  if (node.type == NodeType::kDir) {
    Fd sub(openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub.valid()) {
      RecordError(Status::FromErrno(errno, "open directory", path).message());
      return Status::Ok();
    }
    d->nodes.push_back(std::move(node));
    d->drop.push_back(0);
    auto* child = new DirState;
    child->parent = d;
    child->index_in_parent = idx;
    child->path = path;
    if (old && old->type == NodeType::kDir) child->parent_subtree = old->subtree;
    d->pending.fetch_add(1, std::memory_order_relaxed);
    if (OfferDir(sub, child)) return Status::Ok();  // an idle walker takes it
    return WalkDir(sub.get(), child);
  }
  if (node.type == NodeType::kFile) {
    progress_->total_files.fetch_add(1, std::memory_order_relaxed);
    progress_->total_bytes.fetch_add(node.size, std::memory_order_relaxed);
    if (old && !opts_.no_parent && Unchanged(*old, node)) {
      bool all_present = true;
      for (const Id& c : old->content) {
        if (!repo_.HasBlob(BlobType::kData, c)) {
          all_present = false;
          break;
        }
      }
      if (all_present) {
        node.content = old->content;
        d->nodes.push_back(std::move(node));
        d->drop.push_back(0);
        files_unmodified_++;
        progress_->files_done.fetch_add(1, std::memory_order_relaxed);
        progress_->bytes_done.fetch_add(d->nodes.back().size, std::memory_order_relaxed);
        return Status::Ok();
      }
    }
    (old ? files_changed_ : files_new_)++;
    Fd fd(openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid() && errno == EPERM) {
      fd.Reset(openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (!fd.valid()) {
      RecordError(Status::FromErrno(errno, "open", path).message());
      return Status::Ok();
    }
    FileJob job;
    job.fd = std::move(fd);
    job.dir = d;
    job.index = idx;
    job.path = path;
    job.size = node.size;
    job.sparse = uint64_t(st.st_blocks) * 512 < uint64_t(st.st_size);
    d->nodes.push_back(std::move(node));
    d->drop.push_back(0);
    d->pending.fetch_add(1, std::memory_order_relaxed);
    if (!queue_.Push(std::move(job))) {
      d->pending.fetch_sub(1, std::memory_order_relaxed);
      return Status::Cancelled("backup stopped");
    }
    return Status::Ok();
  }
  // Symlinks, devices, FIFOs: metadata only.
  d->nodes.push_back(std::move(node));
  d->drop.push_back(0);
  return Status::Ok();
}

Status Backup::WalkDir(int dfd, DirState* d) {
  Result<std::vector<Node>> parent_nodes = LoadParentTree(d->parent_subtree, d->path);
  std::vector<std::string> names;
  Result<std::vector<DirEntry>> entries = ReadDirectory(dfd, d->path);
  if (!entries.ok()) {
    RecordError(entries.status().message());
  } else {
    names.reserve(entries->size());
    for (DirEntry& e : *entries) names.push_back(std::move(e.name));
  }
  std::sort(names.begin(), names.end());  // byte-wise, as restic sorts nodes
  d->nodes.reserve(names.size());
  d->drop.reserve(names.size());
  Status walk_status;
  for (const std::string& name : names) {
    if (failed_.load(std::memory_order_relaxed)) {
      walk_status = Status::Cancelled("backup stopped");
      break;
    }
    struct stat st;
    if (fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      RecordError(Status::FromErrno(errno, "lstat", JoinPath(d->path, name)).message());
      continue;
    }
    walk_status = AddEntry(dfd, d, name, st, parent_nodes.ok() ? &*parent_nodes : nullptr);
    if (!walk_status.ok()) break;
  }
  if (parent_nodes.ok() && d->parent_subtree) d->parent_nodes = std::move(*parent_nodes);
  Release(d);
  return walk_status;
}

bool Backup::OfferDir(Fd& fd, DirState* d) {
  if (idle_hint_.load(std::memory_order_relaxed) <= 0) return false;
  {
    std::lock_guard l(walk_mu_);
    if (idle_walkers_ <= static_cast<int>(offered_.size())) return false;
    offered_.push_back(OfferedDir{std::move(fd), d});
    walks_++;
    UpdateIdleHintLocked();
  }
  walk_cv_.notify_one();
  return true;
}

void Backup::UpdateIdleHintLocked() {
  idle_hint_.store(idle_walkers_ - static_cast<int>(offered_.size()), std::memory_order_relaxed);
}

void Backup::WalkDoneLocked() {
  if (--walks_ == 0) walk_cv_.notify_all();
}

void Backup::WalkDone() {
  std::lock_guard l(walk_mu_);
  WalkDoneLocked();
}

void Backup::WalkHelperLoop() {
  std::unique_lock l(walk_mu_);
  for (;;) {
    idle_walkers_++;
    UpdateIdleHintLocked();
    walk_cv_.wait(l, [&] { return !offered_.empty() || walks_ == 0; });
    idle_walkers_--;
    if (offered_.empty()) {  // walks_ == 0: every directory was walked
      UpdateIdleHintLocked();
      return;
    }
    OfferedDir job = std::move(offered_.front());
    offered_.pop_front();
    UpdateIdleHintLocked();
    l.unlock();
    Status s = failed_.load() ? Status::Cancelled("backup stopped") : Status::Ok();
    if (s.ok()) {
      s = WalkDir(job.fd.get(), job.dir);
    } else {
      job.dir->nodes.clear();  // never walked: an empty tree that Fail() keeps from being saved
      Release(job.dir);
    }
    job.fd.Reset();
    if (!s.ok()) Fail(s);
    l.lock();
    WalkDoneLocked();
  }
}

Status Backup::BuildVirtual(const VNode& v, DirState* d, const std::vector<Node>* parent_nodes) {
  d->nodes.reserve(v.children.size());
  d->drop.reserve(v.children.size());
  Status status;
  for (const auto& [name, child] : v.children) {
    std::filesystem::path p(child.abs_path);
    std::string parent_dir = p.parent_path().string();
    Fd pfd(open(parent_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!pfd.valid()) {
      status = Status::FromErrno(errno, "open", parent_dir);
      break;
    }
    struct stat st;
    if (fstatat(pfd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      status = Status::FromErrno(errno, "lstat", child.abs_path);
      break;
    }
    if (child.is_target) {
      status = AddEntry(pfd.get(), d, name, st, parent_nodes);
      if (!status.ok()) break;
      continue;
    }
    // An intermediate directory: its own metadata, but only the children that lead to targets.
    Result<std::optional<Node>> made = NodeFromStat(pfd.get(), name, st, meta_opts_);
    if (!made.ok()) {
      status = made.status().WithContext(child.abs_path);
      break;
    }
    if (!made->has_value() || (*made)->type != NodeType::kDir) {
      status = Status::InvalidArgument(child.abs_path + " is not a directory");
      break;
    }
    const Node* old = parent_nodes ? FindByName(*parent_nodes, name) : nullptr;
    size_t idx = d->nodes.size();
    d->nodes.push_back(std::move(**made));
    d->drop.push_back(0);
    auto* sub = new DirState;
    sub->parent = d;
    sub->index_in_parent = idx;
    sub->path = child.abs_path;
    if (old && old->type == NodeType::kDir) sub->parent_subtree = old->subtree;
    d->pending.fetch_add(1, std::memory_order_relaxed);
    Result<std::vector<Node>> sub_parent = LoadParentTree(sub->parent_subtree, sub->path);
    status = BuildVirtual(child, sub, sub_parent.ok() ? &*sub_parent : nullptr);
    if (!status.ok()) break;
  }
  Release(d);
  return status;
}

Status Backup::ChunkFile(FileJob& job, std::vector<Id>* content, uint64_t* read_bytes) {
  const bool large = job.size > opts_.read_bytes;
  if (large) posix_fadvise(job.fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  repo::Chunker chunker(tables_);
  // One chunk plus one read per thread. Not value-initialised: pages are only touched (and count
  // in RSS) as far as the largest file so far needed, so small-file backups stay small.
  thread_local std::unique_ptr<uint8_t[]> buf_storage;
  thread_local size_t buf_capacity = 0;
  const size_t read_size = opts_.read_bytes;
  if (buf_capacity < repo::kChunkerMaxBytes + read_size) {
    buf_capacity = repo::kChunkerMaxBytes + read_size;
    buf_storage.reset(new uint8_t[buf_capacity]);
  }
  MutableByteView buf(buf_storage.get(), buf_capacity);
  CacheState cache = job.size == 0 ? CacheState::kHot : CacheState::kUnknown;
  uint64_t dropped = 0;  // cold file: bytes before this offset already dropped from the cache
  // buf[start, have) holds the current chunk's bytes; buf[start, scanned) went through the
  // chunker. Chunks are handed on from where they lie; the tail moves to the front only when the
  // next read would not fit (about once per 8 MiB, not once per chunk).
  size_t start = 0;
  size_t have = 0;
  size_t scanned = 0;
  uint64_t offset = 0;  // file offset of buf[have]
  bool eof = false;
  // Every return below waits for the chunks on the pool first: they point into `chunks`.
  FileChunks chunks;
  struct WaitForPool {
    FileChunks& chunks;
    ~WaitForPool() { chunks.Wait(); }
  } wait_for_pool{chunks};
  const bool pooled = job.size > repo::kChunkerMinBytes;
  // A chunk whose ID is known (zeros), or any chunk of a single-chunk file (many of those run side
  // by side already): stored from this thread.
  auto store = [&](const Id& id, uint64_t check, ByteView chunk) -> Status {
    chunks.Append(id);
    return StoreChunk(id, check, chunk);
  };
  auto emit = [&](size_t len) -> Status {
    ByteView chunk(buf.data() + start, len);
    // A chunk inside a hole (or of zeros) is cut at exactly the minimum size: its ID is known.
    const bool zero = len == repo::kChunkerMinBytes && IsAllZero(chunk);
    if (zero) {
      FSB_RETURN_IF_ERROR(store(zero_chunk_id_, zero_chunk_check_, chunk));
    } else if (pooled) {
      const size_t index = chunks.Append();
      chunks.Handed();
      if (!encode_queue_.Push(EncodeJob{&chunks, index, Bytes(chunk.begin(), chunk.end())})) {
        chunks.Done();
        return Status::Cancelled("backup stopped");
      }
    } else {
      FSB_RETURN_IF_ERROR(store(Id::Hash(chunk), Checksum(chunk.data(), chunk.size()), chunk));
    }
    start += len;
    if (start == have) start = have = scanned = 0;
    return Status::Ok();
  };
  while (true) {
    if (failed_.load(std::memory_order_relaxed)) return Status::Cancelled("backup stopped");
    // Feed what we have to the chunker.
    while (scanned < have) {
      bool cut = false;
      size_t n = chunker.FindCut(ByteView(buf.data() + scanned, have - scanned), &cut);
      scanned += n;
      if (cut) {
        FSB_RETURN_IF_ERROR(emit(scanned - start));  // the chunker is ready for the next chunk
      }
    }
    if (eof) break;
    if (buf.size() - have < read_size) {
      // Less than a chunk is pending (the chunker cuts at its maximum), so a read fits after this.
      std::memmove(buf.data(), buf.data() + start, have - start);
      have -= start;
      scanned -= start;
      start = 0;
    }
    if (job.sparse && offset < job.size) {
      // Holes are never read: SEEK_DATA says where the next data starts, and the bytes up to it
      // are zeros (the chunker cuts them into known all-zero chunks).
      off_t data = lseek(job.fd.get(), static_cast<off_t>(offset), SEEK_DATA);
      uint64_t hole_end = data < 0 ? (errno == ENXIO ? job.size : offset) : static_cast<uint64_t>(data);
      if (hole_end > offset && have == 0) {
        // At a chunk boundary the chunker's state is fresh, and from there every kChunkerMinBytes
        // of zeros is one chunk of exactly that size (restic's chunker cuts where the rolling
        // hash is 0, which it is over zeros, as soon as the minimum size is reached): whole
        // zero chunks of a hole are stored by their known ID, never materialised or scanned.
        const uint64_t whole = (hole_end - offset) / repo::kChunkerMinBytes;
        for (uint64_t i = 0; i < whole; i++) {
          FSB_RETURN_IF_ERROR(store(zero_chunk_id_, zero_chunk_check_, ZeroChunk()));
          offset += repo::kChunkerMinBytes;
        }
        *read_bytes = offset;
        if (offset >= job.size) eof = true;
        if (whole > 0) continue;
      }
      if (hole_end > offset) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(read_size, hole_end - offset));
        std::memset(buf.data() + have, 0, n);
        have += n;
        offset += n;
        *read_bytes = offset;
        if (offset >= job.size) eof = true;
        continue;
      }
    }
    ssize_t n;
    bool partial_ok = false;  // a short answer that does not mean end of file
    if (cache == CacheState::kUnknown) {
      // The first read asks the page cache only (RWF_NOWAIT): served → the file is in use on
      // this node and its pages stay; EAGAIN → cold, read it and drop what we pulled in.
      cache = ProbeRead(job.fd.get(), buf.data() + have, read_size, offset, &n, nowait_unsupported_);
      partial_ok = cache == CacheState::kHot;
    } else {
      n = PreadRetry(job.fd.get(), buf.data() + have, read_size, offset);
    }
    if (n < 0) return Status::FromErrno(errno, "read", job.path);
    // A regular file returns less than asked only at its end: that saves a second pread per
    // small file (half of a small-file backup's reads).
    // After a page-cache-only read, a short answer may just be where the cached part ends: the
    // size from lstat decides (a file that grew since was written through the cache, so its new
    // end would have been served as well).
    if (static_cast<size_t>(n) < read_size &&
        (!partial_ok || n == 0 || offset + static_cast<uint64_t>(n) >= job.size)) {
      eof = true;
    }
    have += static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
    *read_bytes = offset;
    if (cache == CacheState::kCold && offset - dropped >= kDropEvery) {
      // Drop as we go, so a multi-GB cold file never fills the cache before its end.
      posix_fadvise(job.fd.get(), static_cast<off_t>(dropped), static_cast<off_t>(offset - dropped),
                    POSIX_FADV_DONTNEED);
      dropped = offset;
    }
  }
  if (have > start) FSB_RETURN_IF_ERROR(emit(have - start));
  // Don't leave a backup's worth of cold data in the node's page cache, and don't evict what the
  // node's workloads were using (a hot file's pages stay).
  if (cache == CacheState::kCold) posix_fadvise(job.fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  *content = chunks.Wait();
  // A chunk the pool dropped (the backup failed meanwhile) has no ID.
  if (failed_.load()) return Status::Cancelled("backup stopped");
  return Status::Ok();
}

Status Backup::StoreBlob(BlobType type, const Id& id, uint64_t check, ByteView plain) {
  uint32_t ulen = 0;
  Result<Bytes> stored = repo::EncodeBlobChecked(
      repo_.key(), type, plain, repo_.version(), repo_.options().compression, &ulen,
      [check](ByteView decoded) { return Checksum(decoded.data(), decoded.size()) == check; });
  Status saved = stored.ok() ? saver_.Add(type, id, std::move(*stored), ulen, plain.size())
                             : stored.status();
  if (!saved.ok()) {
    // A repository failure ends the whole backup, unlike a file that cannot be read.
    Fail(saved);
    return Status::Cancelled("backup stopped");
  }
  return Status::Ok();
}

Status Backup::StoreChunk(const Id& id, uint64_t check, ByteView chunk) {
  if (repo_.ReserveBlob(BlobType::kData, id, writer_)) {
    data_blobs_++;
    data_added_ += chunk.size();
    FSB_RETURN_IF_ERROR(StoreBlob(BlobType::kData, id, check, chunk));
  }
  progress_->bytes_done.fetch_add(chunk.size(), std::memory_order_relaxed);
  return Status::Ok();
}

void Backup::EncodeLoop() {
  while (std::optional<EncodeJob> job = encode_queue_.Pop()) {
    if (!failed_.load(std::memory_order_relaxed)) {  // else drain quietly
      const ByteView chunk = job->plain;
      const Id id = Id::Hash(chunk);
      job->file->Set(job->index, id);
      // A failure is already in the error slot, and ends the backup.
      StoreChunk(id, Checksum(chunk.data(), chunk.size()), chunk).IgnoreError();
    }
    job->file->Done();
  }
}

void Backup::WorkerLoop() {
  while (std::optional<FileJob> job = queue_.Pop()) {
    std::vector<Id> content;
    uint64_t read_bytes = 0;
    Status s = failed_.load() ? Status::Cancelled("backup stopped")
                              : ChunkFile(*job, &content, &read_bytes);
    Node& node = job->dir->nodes[job->index];
    if (s.ok()) {
      node.content = std::move(content);
      node.size = read_bytes;  // what was read is what the content holds
    } else if (s.code() == StatusCode::kCancelled || failed_.load()) {
      job->dir->drop[job->index] = 1;
    } else {
      // restic's behaviour: a file that cannot be read is left out, the backup goes on (exit 3).
      job->dir->drop[job->index] = 1;
      RecordError(s.message());
    }
    progress_->files_done.fetch_add(1, std::memory_order_relaxed);
    DirState* d = job->dir;
    job.reset();  // close the fd before a possibly long tree completion
    Release(d);
  }
}

std::optional<Id> Backup::ChooseParent(const std::vector<std::string>& abs_paths,
                                       const repo::Timestamp& now) {
  // restic 0.14: the newest snapshot of the same host whose paths include every target path and
  // whose time is not after this one's.
  Result<std::vector<Id>> ids = repo_.ListSnapshotIds();
  if (!ids.ok()) return std::nullopt;
  std::optional<Id> best;
  repo::Timestamp best_time;
  for (const Id& id : *ids) {
    Result<repo::Snapshot> s = repo_.LoadSnapshot(id);
    if (!s.ok()) {
      log_->warn("skipping unreadable snapshot snapshot={} err=\"{}\"", id.Short(), s.status().ToString());
      continue;
    }
    if (s->hostname != opts_.hostname) continue;
    if (s->time.sec > now.sec || (s->time.sec == now.sec && s->time.nsec > now.nsec)) continue;
    bool covers = std::all_of(abs_paths.begin(), abs_paths.end(), [&](const std::string& p) {
      return std::find(s->paths.begin(), s->paths.end(), p) != s->paths.end();
    });
    if (!covers) continue;
    if (!best || s->time.sec > best_time.sec ||
        (s->time.sec == best_time.sec && s->time.nsec > best_time.nsec)) {
      best = id;
      best_time = s->time;
    }
  }
  return best;
}

Result<BackupSummary> Backup::RunOnce() {
  if (opts_.source_dir_fd >= 0) {
    if (!opts_.targets.empty()) return Status::InvalidArgument("both a source directory and targets given");
    if (opts_.source_path.empty() || opts_.source_path[0] != '/') {
      return Status::InvalidArgument("a source directory needs an absolute source path for the snapshot");
    }
  } else if (opts_.targets.empty()) {
    return Status::InvalidArgument("no backup target given");
  }
  meta_opts_.with_atime = opts_.with_atime;
  std::error_code ec;
  const std::filesystem::path cwd = std::filesystem::current_path(ec);
  if (ec) return Status::FromErrno(ec.value(), "getcwd");

  // Resolve targets into the virtual top of the tree (restic's rules for tree paths).
  VNode top;
  std::vector<std::string> abs_paths;
  bool root_is_target_dir = false;
  std::string root_target_abs;
  for (const std::string& t : opts_.targets) {
    if (t.empty()) return Status::InvalidArgument("empty backup target");
    std::filesystem::path given = std::filesystem::path(t).lexically_normal();
    std::filesystem::path abs = (given.is_absolute() ? given : (cwd / given)).lexically_normal();
    std::string abs_s = abs.string();
    if (abs_s.size() > 1 && abs_s.back() == '/') abs_s.pop_back();
    struct stat st;
    if (lstat(abs_s.c_str(), &st) != 0) return Status::FromErrno(errno, "backup target", t);
    abs_paths.push_back(abs_s);
    std::vector<std::string> comps;
    std::filesystem::path rel = given.is_absolute() ? given.relative_path() : given;
    bool up = false;
    for (const auto& c : rel) {
      std::string cs = c.string();
      if (cs.empty() || cs == ".") continue;
      if (cs == "..") up = true;
      comps.push_back(cs);
    }
    if (up) {  // "../x": store the absolute components instead
      comps.clear();
      for (const auto& c : abs.relative_path()) {
        if (!c.string().empty()) comps.push_back(c.string());
      }
    }
    if (comps.empty()) {
      if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(t + " is not a directory");
      if (opts_.targets.size() != 1) {
        return Status::InvalidArgument("\"" + t + "\" must be the only target when backing up its contents");
      }
      root_is_target_dir = true;
      root_target_abs = abs_s;
      continue;
    }
    VNode* v = &top;
    std::filesystem::path acc = given.is_absolute() || up ? std::filesystem::path("/") : cwd;
    for (size_t i = 0; i < comps.size(); i++) {
      acc /= comps[i];
      v = &v->children[comps[i]];
      v->abs_path = acc.lexically_normal().string();
    }
    v->is_target = true;
    v->children.clear();
  }
  if (opts_.source_dir_fd >= 0) {
    struct stat st;
    if (fstat(opts_.source_dir_fd, &st) != 0) return Status::FromErrno(errno, "fstat", opts_.source_path);
    if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(opts_.source_path + " is not a directory");
    root_is_target_dir = true;
    root_target_abs = opts_.source_path;
    abs_paths.push_back(opts_.source_path);
  }
  std::sort(abs_paths.begin(), abs_paths.end());

  repo::Timestamp now = opts_.time ? *opts_.time
                                   : [] {
                                       timespec ts;
                                       clock_gettime(CLOCK_REALTIME, &ts);
                                       return repo::LocalTimestamp(ts.tv_sec, uint32_t(ts.tv_nsec));
                                     }();
  std::optional<Id> parent;
  if (opts_.parent) {
    parent = opts_.parent;
  } else if (!opts_.no_parent) {
    parent = ChooseParent(abs_paths, now);
  }
  std::optional<Id> parent_root;
  if (parent) {
    FSB_ASSIGN_OR_RETURN(repo::Snapshot ps, repo_.LoadSnapshot(*parent));
    parent_root = ps.tree;
    log_->info("using parent snapshot snapshot={}", parent->Short());
  }

  const int workers = ThreadsOrCpus(opts_.file_workers);
  const int encoders = ThreadsOrCpus(opts_.encode_workers);
  const int walkers = ThreadsOrCpus(opts_.walk_workers);
  Status walk_status;
  std::vector<std::jthread> encode_threads;
  for (int i = 0; i < encoders; i++) encode_threads.emplace_back([this] { EncodeLoop(); });
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < workers; i++) threads.emplace_back([this] { WorkerLoop(); });
    std::vector<std::jthread> walk_threads;
    for (int i = 1; i < walkers; i++) walk_threads.emplace_back([this] { WalkHelperLoop(); });
    auto* root = new DirState;
    root->parent_subtree = parent_root;
    if (root_is_target_dir) {
      root->path = root_target_abs;
      Fd rfd(opts_.source_dir_fd >= 0
                 ? openat(opts_.source_dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                 : open(root_target_abs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!rfd.valid()) {
        walk_status = Status::FromErrno(errno, "open", root_target_abs);
        root->nodes.reserve(0);
        Release(root);
      } else {
        walk_status = WalkDir(rfd.get(), root);
      }
    } else {
      root->path = "/";
      Result<std::vector<Node>> pn = LoadParentTree(parent_root, "/");
      walk_status = BuildVirtual(top, root, pn.ok() ? &*pn : nullptr);
    }
    // This thread's walk is over: help with the directories still being walked, then stop the
    // helpers. Only then may the file queue close (walkers still add to it).
    if (!walk_status.ok()) Fail(walk_status);
    WalkDone();
    WalkHelperLoop();
    walk_threads.clear();
    queue_.Close();
  }  // file workers joined; every directory is complete now
  encode_queue_.Close();
  encode_threads.clear();  // joined: every queued blob went to the saver
  if (!walk_status.ok()) Fail(walk_status);
  {
    std::lock_guard l(mu_);
    if (!error_.ok()) return error_;
  }
  std::optional<Id> root_id;
  {
    std::lock_guard l(root_mu_);
    FSB_CHECK(root_done_);
    root_id = root_id_;
  }
  FSB_RETURN_IF_ERROR(saver_.Finish());
  {
    std::lock_guard l(mu_);
    if (!error_.ok()) return error_;
  }

  repo::Snapshot snap;
  snap.time = now;
  snap.parent = parent;
  snap.tree = *root_id;
  snap.paths = abs_paths;
  snap.hostname = opts_.hostname;
  snap.username = UserName();
  snap.uid = getuid();
  snap.gid = getgid();
  snap.excludes = opts_.excludes;
  snap.tags = opts_.tags;
  snap.program_version = opts_.program_version;
  FSB_ASSIGN_OR_RETURN(Id snap_id, repo_.SaveSnapshot(snap));

  BackupSummary sum;
  sum.snapshot_id = snap_id;
  sum.snapshot = std::move(snap);
  sum.parent = parent;
  sum.files_new = files_new_;
  sum.files_changed = files_changed_;
  sum.files_unmodified = files_unmodified_;
  sum.dirs_new = dirs_new_;
  sum.dirs_changed = dirs_changed_;
  sum.dirs_unmodified = dirs_unmodified_;
  sum.data_blobs = data_blobs_;
  sum.tree_blobs = tree_blobs_;
  sum.data_added = data_added_;
  sum.data_added_packed = saver_.stats().stored_bytes;
  sum.total_files_processed = progress_->files_done.load();
  sum.total_bytes_processed = progress_->bytes_done.load();
  {
    std::lock_guard l(mu_);
    sum.errors = errors_;
  }
  return sum;
}

}  // namespace

Result<BackupSummary> RunBackup(repo::Repository& repo, const BackupOptions& options,
                                Progress* progress) {
  Backup b(repo, options, progress);
  Result<BackupSummary> r = b.RunWithStop();
  if (progress) progress->scan_finished = true;
  return r;
}

}  // namespace fsb::uploader
