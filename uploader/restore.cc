#include "uploader/restore.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "base/fd.h"
#include "base/log.h"
#include "uploader/fs_meta.h"
#include "uploader/pattern.h"

namespace fsb::uploader {
namespace {

using repo::BlobType;
using repo::Id;
using repo::Node;
using repo::NodeType;

// A name from a tree must be one path component: anything else could escape the target.
bool SafeName(const std::string& n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos &&
         n.find('\0') == std::string::npos;
}

// Opens `rel` below `root` without following any symlink and without leaving `root`.
int OpenBeneath(int root, const std::string& rel, uint64_t flags, uint64_t mode = 0) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = syscall(SYS_openat2, root, rel.empty() ? "." : rel.c_str(), &how, sizeof how);
  if (fd >= 0 || errno != ENOSYS) return static_cast<int>(fd);
  // Kernels before 5.6: every component we open was created by this restore from checked names,
  // and O_NOFOLLOW guards the last one.
  return openat(root, rel.empty() ? "." : rel.c_str(), static_cast<int>(flags) | O_CLOEXEC | O_NOFOLLOW,
                static_cast<mode_t>(mode));
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

uint64_t PlainSize(const repo::PackedBlob& b) {
  return b.uncompressed_length ? b.uncompressed_length : b.length - repo::kCryptoOverhead;
}

// The process umask from /proc/self/status (Linux ≥ 4.7); reading it with umask(2) would change
// it for a moment for every thread of the process. nullopt when not known.
std::optional<mode_t> CurrentUmask() {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (!f) return std::nullopt;
  std::optional<mode_t> mask;
  char line[256];
  while (std::fgets(line, sizeof line, f)) {
    unsigned int v = 0;
    if (std::sscanf(line, "Umask: %o", &v) == 1) {
      mask = static_cast<mode_t>(v & 0777);
      break;
    }
  }
  std::fclose(f);
  return mask;
}

// Creates the regular file `name` in `dfd` for writing with `access` (O_WRONLY or O_RDWR),
// never through a symlink. Sets *fresh when this call made a new inode (then its owner is the
// creator's, and its mode `mode` less the umask). Returns the fd, or -1 with errno set.
int CreateFile(int dfd, const std::string& name, int access, mode_t mode, bool* fresh) {
  // O_EXCL first: a fresh target is the common case, and O_EXCL also never follows a symlink.
  *fresh = true;
  int fd = openat(dfd, name.c_str(), access | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd >= 0 || errno != EEXIST) return fd;
  *fresh = false;
  // O_NONBLOCK: a fifo planted at the name must not hang the restore in open (it changes nothing
  // for a regular file); and only a regular file may be truncated and written: a device node in
  // the way would take our bytes.
  fd = openat(dfd, name.c_str(), access | O_CREAT | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0) {
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      if (ftruncate(fd, 0) == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0) return fd;
      const int err = errno;
      close(fd);
      errno = err;
      return -1;
    }
    close(fd);
    fd = -1;
    errno = ELOOP;  // not a regular file: replaced below like a symlink
  } else if (errno == ENXIO) {
    errno = ELOOP;  // a fifo without a reader (O_NONBLOCK|O_WRONLY): replaced below
  }
  if (fd < 0 && (errno == ELOOP || errno == EISDIR)) {
    // Something else is in the way (a symlink, a dir, a fifo, a device): replace it, never follow it.
    if (unlinkat(dfd, name.c_str(), 0) != 0) unlinkat(dfd, name.c_str(), AT_REMOVEDIR);
    fd = openat(dfd, name.c_str(), access | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    *fresh = fd >= 0;
  }
  return fd;
}

struct FileJob {
  std::string rel_dir;  // relative to the target
  uint32_t dir = 0;     // the directory's index: key of the workers' directory caches
  // The pack worker creates the file (its content lies in one pack and it is no hard link);
  // otherwise the walker created it, at its full size.
  bool create = false;
  // A file created fresh in this directory is owned by our euid/egid (see Restore::EnsureDir).
  bool owner_known = false;
  Node node;
  // Pieces not yet written (or failed): the worker that takes this to 0 finishes the file.
  std::atomic<uint32_t> remaining{0};
  std::atomic<bool> failed{false};
  // Set while a worker writes to the file. The kernel serialises buffered writes to one inode
  // (ext4 holds its i_rwsem for the whole copy, and the waiter spins: ~5-7 % of the CPU of a
  // big-file restore); a worker that finds the flag set goes on decoding and writes later.
  std::atomic_flag writing;

  // Sets `writing`, waiting while another worker holds it; WritePiece clears it.
  void WaitToWrite() {
    while (writing.test_and_set(std::memory_order_acquire)) writing.wait(true);
  }
};

struct Piece {
  uint32_t job;
  uint64_t file_offset;
  repo::PackedBlob blob;
};

// The files planned together, and which pieces of them each pack holds. The walker fills one
// batch while the workers write up to kMaxQueuedBatches handed over before.
struct Batch {
  std::vector<std::unique_ptr<FileJob>> jobs;
  uint64_t bytes = 0;
  std::unordered_map<Id, std::vector<Piece>, repo::IdHash> by_pack;  // while filling
  std::vector<std::pair<Id, std::vector<Piece>>> packs;              // once handed over
  size_t next_pack = 0;   // guarded by Restore::pool_mu_ once handed over
  size_t done_packs = 0;  // guarded by Restore::pool_mu_
};

// Batches handed to the workers and not yet written. Two let the workers start on the next
// batch while the last packs of one are still being written (one worker alone at the end of
// each batch cost up to 0.6 s of a 5 s restore), and bound memory to three batches.
constexpr size_t kMaxQueuedBatches = 2;

// Bytes of a pack read and written by one task; see FlushBatch.
constexpr uint64_t kPartBytes = 4 << 20;

// A pack worker's last few directories (by index), opened beneath the target. Files of one
// directory sit together in packs (the backup walks a directory at a time), so a few slots hit
// nearly always and each file costs no path walk of its own. One thread.
class DirCache {
 public:
  // An O_PATH fd of directory `index` (`rel` below `root`), or -1 with errno set.
  int Get(int root, uint32_t index, const std::string& rel) {
    for (auto& [i, fd] : slots_) {
      if (i == index && fd.valid()) return fd.get();
    }
    Fd fd(OpenBeneath(root, rel, O_PATH | O_DIRECTORY));
    if (!fd.valid()) return -1;
    auto& slot = slots_[next_++ % slots_.size()];
    slot = {index, std::move(fd)};
    return slot.second.get();
  }

 private:
  std::array<std::pair<uint32_t, Fd>, 8> slots_;
  size_t next_ = 0;
};

// A file a worker has open, until it finishes it or its pack is done.
struct OpenFile {
  Fd fd;
  bool fresh = false;  // created by this open (its owner is known, and its mode CreateMode's)
  uint64_t end = 0;    // end of the last byte written through fd
};

struct Worker {
  DirCache dirs;
  std::unordered_map<uint32_t, OpenFile> files;  // by job index; invalid fd: open failed
  // The part of a pack being written, and a compressed blob's plaintext, reused: no allocation,
  // zero-fill and page faults per part or blob (those were ~6 % and ~3 % of a restore of big
  // files). Blobs are decrypted where they lie in the part.
  ScratchBuffer pack_buf;
  ScratchBuffer plain_buf;
};

class Restore {
 public:
  Restore(repo::Repository& repo, const RestoreOptions& opts, Progress* progress)
      : repo_(repo), opts_(opts), progress_(progress ? progress : &own_), log_(GetLogger("uploader")) {
    meta_.restore_owner = opts.restore_owner && geteuid() == 0;
    umask_ = CurrentUmask();
  }
  ~Restore() { StopWorkers(); }

  Result<RestoreSummary> Run(const Id& root);

 private:
  // A directory of the target, created on first need (so --include creates only what leads to
  // included entries).
  struct Dir {
    Dir* parent = nullptr;
    std::string rel;  // relative to target; "" is the target itself
    std::string name;
    const Node* node = nullptr;  // null for the target itself
    bool created = false;
    bool owner_known = false;  // see FileJob::owner_known
    uint32_t index = 0;
    Fd fd;  // O_PATH
  };
  struct DirMeta {
    std::string rel;
    Node node;
    std::optional<FileOwner> owner;
  };

  void RecordError(std::string msg) {
    std::lock_guard l(mu_);
    if (summary_.errors.size() < 10) log_->warn("restore error err=\"{}\"", msg);
    summary_.errors.push_back(std::move(msg));
    progress_->errors.fetch_add(1, std::memory_order_relaxed);
  }
  // Owner, mode, times or xattrs that could not be applied (NFS root_squash, a file system
  // without xattrs): the content is there; reported apart so callers can tell the two apart.
  void RecordMetadataError(std::string msg) {
    std::lock_guard l(mu_);
    if (summary_.metadata_errors.size() < 10) log_->warn("restore metadata error err=\"{}\"", msg);
    summary_.metadata_errors.push_back(std::move(msg));
    progress_->errors.fetch_add(1, std::memory_order_relaxed);
  }
  // A regular file the restore writes (the walker's thread).
  void CountFile(const Node& n) {
    summary_.files++;
    summary_.bytes += n.size;
    progress_->total_files.fetch_add(1, std::memory_order_relaxed);
    progress_->total_bytes.fetch_add(n.size, std::memory_order_relaxed);
  }
  // The first error of a file is reported (`s` names the file); the rest of it is skipped.
  void FailFile(FileJob& job, const Status& s) {
    if (!job.failed.exchange(true)) RecordError(s.message());
  }
  // The mode a new file is created with, when only the creating fd writes it: its final one when
  // the umask leaves that intact and no later step changes it (no setuid/setgid/sticky bit, which
  // a chown would clear; no xattrs, since an ACL written as one rewrites the group bits), so that
  // ApplyMetadataToFd can skip the fchmod (one system call of five a small file). Otherwise 0600
  // until the metadata is applied.
  bool CreatesFinalMode(const Node& n) const {
    const mode_t final_mode = repo::StatModeFromGo(n.mode) & 07777;
    return umask_ && (final_mode & 07000) == 0 && (final_mode & *umask_) == 0 && n.xattrs.empty();
  }
  mode_t CreateMode(const Node& n) const {
    return CreatesFinalMode(n) ? repo::StatModeFromGo(n.mode) & 0777 : 0600;
  }
  bool ModeIsSet(const Node& n, bool fresh) const { return fresh && CreatesFinalMode(n); }
  std::optional<FileOwner> OwnerIfKnown(bool fresh, bool owner_known) const {
    if (fresh && owner_known) return FileOwner{euid_, egid_};
    return std::nullopt;
  }
  Status EnsureDir(Dir& d);
  Status WalkTree(const Id& tree, Dir& dir, const std::string& snap_path, bool included);
  Status RestoreEntry(Dir& dir, const Node& n);
  Status RestoreFile(Dir& dir, const Node& n);
  bool Included(const std::string& snap_path) const;
  bool MayIncludeBelow(const std::string& snap_path) const;
  Status FlushBatch();
  void WorkerLoop();
  void StopWorkers();
  void WritePack(Worker& w, Batch& b, const Id& pack, std::vector<Piece>& pieces);
  OpenFile* OpenJob(Worker& w, FileJob& job, uint32_t index);
  void PieceDone(Worker& w, Batch& b, uint32_t index);
  void WritePiece(Worker& w, Batch& b, const Piece& p, ByteView plain);
  void VerifyFile(FileJob& job, int fd);
  void ApplyDirMetadata();

  repo::Repository& repo_;
  const RestoreOptions& opts_;
  Progress own_;
  Progress* progress_;
  std::shared_ptr<spdlog::logger> log_;
  RestoreMetaOptions meta_;
  std::optional<mode_t> umask_;  // the process umask, when /proc tells it
  const uint32_t euid_ = geteuid();
  const uint32_t egid_ = getegid();
  Fd root_fd_;
  uint32_t next_dir_index_ = 1;  // 0 is the target itself
  uint64_t batches_ = 0;         // handed to the workers so far

  std::unique_ptr<Batch> filling_ = std::make_unique<Batch>();  // the walker's
  std::vector<DirMeta> dirs_meta_;                              // created dirs, in creation order
  std::map<std::pair<uint64_t, uint64_t>, std::string> hardlinks_;  // (dev, inode) → rel path
  std::vector<std::pair<Id, Piece>> plan_;                          // RestoreFile's scratch

  std::mutex mu_;
  RestoreSummary summary_;  // errors, packs_read and verified_files guarded by mu_ (workers)

  // The pack workers, started with the first batch. Declared last: joined before the rest goes.
  std::mutex pool_mu_;
  std::condition_variable work_cv_;           // a batch was queued, or closing_
  std::condition_variable done_cv_;           // a batch was written
  std::deque<std::unique_ptr<Batch>> queue_;  // oldest first; guarded by pool_mu_
  bool closing_ = false;                      // guarded by pool_mu_
  std::vector<std::jthread> workers_;
};

bool Restore::Included(const std::string& snap_path) const {
  if (opts_.includes.empty()) return true;
  for (const auto& p : opts_.includes)
    if (MatchPattern(p, snap_path)) return true;
  return false;
}

bool Restore::MayIncludeBelow(const std::string& snap_path) const {
  for (const auto& p : opts_.includes)
    if (PatternMayMatchBelow(p, snap_path)) return true;
  return false;
}

Status Restore::EnsureDir(Dir& d) {
  if (d.created) return Status::Ok();
  FSB_CHECK(d.parent != nullptr);
  FSB_RETURN_IF_ERROR(EnsureDir(*d.parent));
  bool made = true;
  if (mkdirat(d.parent->fd.get(), d.name.c_str(), 0700) != 0) {
    if (errno != EEXIST) return Status::FromErrno(errno, "mkdir", d.rel);
    made = false;
  }
  // One component below the parent's fd, which is this restore's own: no path walk again.
  d.fd.Reset(OpenBeneath(d.parent->fd.get(), d.name, O_PATH | O_DIRECTORY));
  if (!d.fd.valid()) return Status::FromErrno(errno, "open directory", d.rel);
  // A directory this restore made is owned by what creating gives us here; when that is our
  // euid/egid (not, say, nobody on NFS with root_squash, nor another group under a setgid
  // parent), so is every file created in it, and their owners need no fstat.
  if (made && meta_.restore_owner) {
    struct stat st;
    d.owner_known = fstat(d.fd.get(), &st) == 0 && st.st_uid == euid_ && st.st_gid == egid_;
  }
  d.created = true;
  d.index = next_dir_index_++;
  summary_.dirs++;
  dirs_meta_.push_back(DirMeta{d.rel, *d.node, OwnerIfKnown(true, d.owner_known)});
  dirs_meta_.back().node.subtree.reset();
  return Status::Ok();
}

Status Restore::RestoreFile(Dir& dir, const Node& n) {
  const int dfd = dir.fd.get();
  auto job = std::make_unique<FileJob>();
  job->rel_dir = dir.rel;
  job->dir = dir.index;
  job->owner_known = dir.owner_known;
  job->node = n;
  // Plan: where each piece of the content lies.
  plan_.clear();
  uint64_t off = 0;
  const uint32_t index = static_cast<uint32_t>(filling_->jobs.size());
  for (const Id& id : n.content) {
    std::optional<repo::BlobLocation> loc = repo_.FindBlob(BlobType::kData, id);
    if (!loc) {
      FailFile(*job, Status::NotFound(fmt::format("{}: data blob {} not found in index",
                                                  Join(dir.rel, n.name), id.Short())));
      break;
    }
    plan_.emplace_back(loc->pack, Piece{index, off, loc->blob});
    off += PlainSize(loc->blob);
  }
  const bool one_pack = !plan_.empty() && std::all_of(plan_.begin(), plan_.end(), [&](auto& p) {
    return p.first == plan_.front().first;
  });
  // A hard link's later names are linked at walk time, so its first name must exist by then.
  job->create = one_pack && n.links <= 1;
  if (!job->create) {
    bool fresh = false;
    // Pack workers open this file again by name to write it unless nothing is left to write:
    // only then may it have its final mode now (a 0444 file could not be opened for writing by a
    // restore that is not root).
    Fd fd(CreateFile(dfd, n.name, opts_.verify ? O_RDWR : O_WRONLY,
                     plan_.empty() ? CreateMode(n) : mode_t{0600}, &fresh));
    if (!fd.valid()) return Status::FromErrno(errno, "create", Join(dir.rel, n.name));
    if (n.size > 0 && ftruncate(fd.get(), static_cast<off_t>(n.size)) != 0) {
      return Status::FromErrno(errno, "truncate", Join(dir.rel, n.name));
    }
    if (plan_.empty()) {  // empty (or all blobs missing): nothing for a worker to do
      if (opts_.verify && !job->failed.load()) VerifyFile(*job, fd.get());
      Status m = ApplyMetadataToFd(fd.get(), n, meta_, OwnerIfKnown(fresh, dir.owner_known),
                                   ModeIsSet(n, fresh));  // created with CreateMode: plan_ is empty
      if (!m.ok()) RecordMetadataError(m.WithContext(Join(dir.rel, n.name)).message());
      CountFile(n);
      progress_->files_done.fetch_add(1, std::memory_order_relaxed);
      return Status::Ok();
    }
  }
  job->remaining.store(static_cast<uint32_t>(plan_.size()), std::memory_order_relaxed);
  for (auto& [pack, piece] : plan_) filling_->by_pack[pack].push_back(piece);
  filling_->jobs.push_back(std::move(job));
  filling_->bytes += n.size;
  CountFile(n);
  // The first batch is small, so that the workers start early.
  const size_t batch_files =
      batches_ == 0 ? std::max<size_t>(1, opts_.batch_files / 8) : opts_.batch_files;
  if (filling_->jobs.size() >= batch_files || filling_->bytes >= opts_.batch_bytes) {
    return FlushBatch();
  }
  return Status::Ok();
}

Status Restore::RestoreEntry(Dir& dir, const Node& n) {
  const std::string rel = Join(dir.rel, n.name);
  Status s = EnsureDir(dir);
  if (!s.ok()) return s;
  int dfd = dir.fd.get();
  if (n.type == NodeType::kFile) {
    if (n.links > 1) {
      auto key = std::make_pair(n.device_id, n.inode);
      auto it = hardlinks_.find(key);
      if (it != hardlinks_.end()) {
        unlinkat(dfd, n.name.c_str(), 0);
        // Resolves the first link's path one component at a time, never following a symlink.
        Status l = CreateHardLink(dfd, n.name, root_fd_.get(), it->second);
        if (!l.ok()) return l.WithContext(rel);
        summary_.files++;
        progress_->files_done.fetch_add(1, std::memory_order_relaxed);
        return Status::Ok();
      }
      hardlinks_.emplace(key, rel);
    }
    return RestoreFile(dir, n);
  }
  // symlink, fifo, devices: replace what is there, then create.
  struct stat st;
  if (fstatat(dfd, n.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
    unlinkat(dfd, n.name.c_str(), 0);
  }
  Status c = CreateSpecial(dfd, n);
  if (!c.ok()) return c.WithContext(rel);
  Status m = ApplyMetadata(dfd, n, meta_);
  if (!m.ok()) RecordMetadataError(m.WithContext(rel).message());
  summary_.others++;
  return Status::Ok();
}

Status Restore::WalkTree(const Id& tree, Dir& dir, const std::string& snap_path, bool included) {
  Result<std::vector<Node>> nodes = repo_.LoadTree(tree);
  if (!nodes.ok()) return nodes.status();
  for (const Node& n : *nodes) {
    if (opts_.stop.stop_requested()) return Status::Cancelled("restore canceled");
    if (!SafeName(n.name)) {
      RecordError(fmt::format("tree {}: unsafe entry name \"{}\" skipped", tree.Short(), n.name));
      continue;
    }
    const std::string child_path = snap_path == "/" ? "/" + n.name : snap_path + "/" + n.name;
    const bool inc = included || Included(child_path);
    if (n.type == NodeType::kDir) {
      if (!n.subtree) {
        RecordError(fmt::format("directory {} has no subtree", child_path));
        continue;
      }
      if (!inc && !MayIncludeBelow(child_path)) continue;
      Dir sub;
      sub.parent = &dir;
      sub.rel = Join(dir.rel, n.name);
      sub.name = n.name;
      sub.node = &n;
      if (inc) {
        Status s = EnsureDir(sub);
        if (!s.ok()) {
          RecordError(s.message());
          continue;
        }
      }
      Status s = WalkTree(*n.subtree, sub, child_path, inc);
      if (!s.ok()) {
        if (s.code() == StatusCode::kResourceExhausted || s.code() == StatusCode::kCancelled) {
          return s;
        }
        RecordError(s.WithContext(child_path).message());
      }
      continue;
    }
    if (!inc) continue;
    Status s = RestoreEntry(dir, n);
    if (!s.ok()) {
      // Disk full stops everything; so does a stop request seen while handing over a batch.
      if (s.code() == StatusCode::kResourceExhausted || s.code() == StatusCode::kCancelled) {
        return s;
      }
      RecordError(s.message());
    }
  }
  return Status::Ok();
}

OpenFile* Restore::OpenJob(Worker& w, FileJob& job, uint32_t index) {
  auto [it, inserted] = w.files.try_emplace(index);
  OpenFile& f = it->second;
  if (!inserted) return f.fd.valid() ? &f : nullptr;
  const int dfd = w.dirs.Get(root_fd_.get(), job.dir, job.rel_dir);
  if (dfd < 0) {
    FailFile(job, Status::FromErrno(errno, "open directory", job.rel_dir));
    return nullptr;
  }
  // Read back too when verifying, through the same fd.
  const int access = opts_.verify ? O_RDWR : O_WRONLY;
  if (job.create) {
    f.fd.Reset(CreateFile(dfd, job.node.name, access, CreateMode(job.node), &f.fresh));
  } else {
    f.fd.Reset(openat(dfd, job.node.name.c_str(), access | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!f.fd.valid()) {
    FailFile(job, Status::FromErrno(errno, job.create ? "create" : "open",
                                    Join(job.rel_dir, job.node.name)));
    return nullptr;
  }
  return &f;
}

// Called once per planned piece, written or failed. The call that finds the file's last piece
// done finishes it: all other writes happened before their own calls (acq_rel).
void Restore::PieceDone(Worker& w, Batch& b, uint32_t index) {
  FileJob& job = *b.jobs[index];
  if (job.remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // Opens (or creates) the file if no piece was written here: all zeros, or failed.
  if (OpenFile* f = OpenJob(w, job, index)) {
    const int fd = f->fd.get();
    const std::string rel = Join(job.rel_dir, job.node.name);
    // A file the walker created has its size already; one created here may end in a hole.
    if (job.create && f->end < job.node.size &&
        ftruncate(fd, static_cast<off_t>(job.node.size)) != 0) {
      FailFile(job, Status::FromErrno(errno, "truncate", rel));
    }
    if (opts_.verify && !job.failed.load()) VerifyFile(job, fd);
    // Metadata through the fd, after the content: times last.
    Status m = ApplyMetadataToFd(fd, job.node, meta_, OwnerIfKnown(f->fresh, job.owner_known),
                                 ModeIsSet(job.node, f->fresh));
    if (!m.ok()) RecordMetadataError(m.WithContext(rel).message());
  }
  w.files.erase(index);
  progress_->files_done.fetch_add(1, std::memory_order_relaxed);
}

// `pieces`: sorted by offset in `pack`, and all of each file the worker creates.
void Restore::WritePack(Worker& w, Batch& b, const Id& pack, std::vector<Piece>& pieces) {
  const uint64_t start = pieces.front().blob.offset;
  uint64_t end = 0;
  for (const Piece& p : pieces)
    end = std::max<uint64_t>(end, uint64_t(p.blob.offset) + p.blob.length);
  const MutableByteView data = w.pack_buf.Get(static_cast<size_t>(end - start));
  Status loaded =
      repo_.backend().LoadInto(repo::Handle{repo::FileType::kPack, pack.Hex()}, start, data);
  if (!loaded.ok()) {
    const Status s = loaded.WithContext("load pack " + pack.Short());
    for (const Piece& p : pieces) {
      FileJob& job = *b.jobs[p.job];
      FailFile(job, s.WithContext(Join(job.rel_dir, job.node.name)));
      PieceDone(w, b, p.job);
    }
    w.files.clear();
    return;
  }
  {
    std::lock_guard l(mu_);
    summary_.packs_read++;
  }
  ByteView plain;
  bool zero = false;
  std::vector<std::pair<const Piece*, ByteView>> deferred;  // while another worker wrote the file
  Status decoded;  // of the last blob: its pieces are neighbours (sorted by offset)
  std::optional<Id> last_blob;
  for (const Piece& p : pieces) {
    FileJob& job = *b.jobs[p.job];
    if (last_blob != p.blob.id) {
      // Decrypts (in place: each blob once) and checks the blob's SHA-256 against its ID:
      // nothing unverified is written.
      Result<ByteView> dec = repo::DecodeBlobInPlace(
          repo_.key(), p.blob, data.subspan(p.blob.offset - start, p.blob.length), w.plain_buf);
      last_blob = p.blob.id;
      decoded = dec.status();
      if (dec.ok()) {
        plain = *dec;
        zero = IsAllZero(plain);
      }
    }
    if (!decoded.ok()) {
      FailFile(job, decoded.WithContext("pack " + pack.Short())
                        .WithContext(Join(job.rel_dir, job.node.name)));
      PieceDone(w, b, p.job);
      continue;
    }
    if (zero || job.failed.load(std::memory_order_relaxed)) {  // zeros stay holes
      progress_->bytes_done.fetch_add(plain.size(), std::memory_order_relaxed);
      PieceDone(w, b, p.job);
      continue;
    }
    // A blob decrypted in place stays in the pack buffer until this pack is done, so its write
    // can wait while another worker writes the file; a decompressed one is written now.
    const bool in_place = p.blob.uncompressed_length == 0;
    if (job.writing.test_and_set(std::memory_order_acquire)) {
      if (in_place) {
        deferred.emplace_back(&p, plain);
        continue;
      }
      job.WaitToWrite();
    }
    WritePiece(w, b, p, plain);
  }
  for (auto [p, view] : deferred) {
    FileJob& job = *b.jobs[p->job];
    job.WaitToWrite();
    WritePiece(w, b, *p, view);
  }
  // Files with pieces in other packs: whoever writes their last piece finishes them.
  w.files.clear();
}

// Writes one piece while holding the file's `writing` flag, which it clears; then the piece is
// done.
void Restore::WritePiece(Worker& w, Batch& b, const Piece& p, ByteView plain) {
  FileJob& job = *b.jobs[p.job];
  if (OpenFile* f = OpenJob(w, job, p.job)) {
    const uint8_t* src = plain.data();
    size_t left = plain.size();
    off_t off = static_cast<off_t>(p.file_offset);
    while (left > 0) {
      ssize_t n = pwrite(f->fd.get(), src, left, off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        FailFile(job,
                 Status::FromErrno(n < 0 ? errno : EIO, "write", Join(job.rel_dir, job.node.name)));
        break;
      }
      src += n;
      left -= static_cast<size_t>(n);
      off += n;
    }
    f->end = std::max<uint64_t>(f->end, static_cast<uint64_t>(off));
  }
  job.writing.clear(std::memory_order_release);
  job.writing.notify_one();
  progress_->bytes_done.fetch_add(plain.size(), std::memory_order_relaxed);
  PieceDone(w, b, p.job);
}

void Restore::VerifyFile(FileJob& job, int fd) {
  const std::string rel = Join(job.rel_dir, job.node.name);
  uint64_t off = 0;
  Bytes buf;
  for (const Id& id : job.node.content) {
    std::optional<repo::BlobLocation> loc = repo_.FindBlob(BlobType::kData, id);
    if (!loc) return;  // already reported
    uint64_t n = PlainSize(loc->blob);
    buf.resize(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = pread(fd, buf.data() + got, n - got, static_cast<off_t>(off + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    if (got != n || Id::Hash(buf) != id) {
      RecordError(fmt::format("verify: {} differs from blob {} at offset {}", rel, id.Short(), off));
      return;
    }
    off += n;
  }
  struct stat st;
  if (fstat(fd, &st) == 0 && uint64_t(st.st_size) != job.node.size) {
    RecordError(fmt::format("verify: {} has size {}, want {}", rel, st.st_size, job.node.size));
    return;
  }
  std::lock_guard l(mu_);
  summary_.verified_files++;
}

// Takes packs of the oldest batch that has any left, so a worker that finishes early goes on to
// the next batch instead of waiting for the slowest pack of this one.
void Restore::WorkerLoop() {
  Worker w;
  std::unique_lock l(pool_mu_);
  for (;;) {
    auto it = std::find_if(queue_.begin(), queue_.end(),
                           [](const auto& b) { return b->next_pack < b->packs.size(); });
    if (it == queue_.end()) {
      if (closing_) return;
      work_cv_.wait(l);
      continue;
    }
    Batch& b = **it;
    const size_t p = b.next_pack++;
    l.unlock();
    // After a stop request the remaining packs are only counted, so that the queue drains.
    if (!opts_.stop.stop_requested()) WritePack(w, b, b.packs[p].first, b.packs[p].second);
    std::vector<Piece>().swap(b.packs[p].second);  // this worker's alone
    std::unique_ptr<Batch> finished;               // freed unlocked
    l.lock();
    if (++b.done_packs == b.packs.size()) {
      auto pos =
          std::find_if(queue_.begin(), queue_.end(), [&](const auto& q) { return q.get() == &b; });
      finished = std::move(*pos);
      queue_.erase(pos);
      done_cv_.notify_all();
    }
    if (finished) {
      l.unlock();
      finished.reset();
      l.lock();
    }
  }
}

// Waits for every queued batch to be written and joins the workers.
void Restore::StopWorkers() {
  {
    std::lock_guard l(pool_mu_);
    closing_ = true;
  }
  work_cv_.notify_all();
  workers_.clear();  // joins
}

// Hands the filled batch to the workers and returns while they write it, so the walk goes on
// meanwhile; blocks while kMaxQueuedBatches are still being written, which bounds memory.
Status Restore::FlushBatch() {
  if (filling_->jobs.empty()) return Status::Ok();
  std::unique_ptr<Batch> b = std::exchange(filling_, std::make_unique<Batch>());
  batches_++;
  // Each pack's pieces in pack order, cut into parts of about kPartBytes of the pack: a 16 MiB
  // pack of source code is some 80 MB to write and 5000 files to create, too coarse a unit for
  // two workers to end a batch together. A cut never splits the pieces of a file the worker
  // creates, since that file is finished by whoever holds them all.
  std::vector<uint32_t> last(b->jobs.size());  // a created file's last piece in its pack
  for (auto& [pack, pieces] : b->by_pack) {
    std::sort(pieces.begin(), pieces.end(),
              [](const Piece& x, const Piece& y) { return x.blob.offset < y.blob.offset; });
    for (size_t i = 0; i < pieces.size(); i++) last[pieces[i].job] = static_cast<uint32_t>(i);
    size_t begin = 0, reach = 0;
    for (size_t i = 0; i < pieces.size(); i++) {
      const Piece& p = pieces[i];
      reach = std::max<size_t>(reach, b->jobs[p.job]->create ? last[p.job] : i);
      const uint64_t end = uint64_t(p.blob.offset) + p.blob.length;
      if (reach == i && (end - pieces[begin].blob.offset >= kPartBytes || i + 1 == pieces.size())) {
        b->packs.emplace_back(pack,
                              std::vector<Piece>(pieces.begin() + begin, pieces.begin() + i + 1));
        begin = i + 1;
      }
    }
  }
  b->by_pack.clear();
  if (b->packs.empty()) return Status::Ok();  // not planned: every job has a piece
  // Biggest parts first keeps the workers evenly busy at the end.
  auto span = [](const std::vector<Piece>& v) {
    return uint64_t(v.back().blob.offset) + v.back().blob.length - v.front().blob.offset;
  };
  std::sort(b->packs.begin(), b->packs.end(),
            [&](auto& x, auto& y) { return span(x.second) > span(y.second); });
  if (workers_.empty()) {
    const int n = opts_.workers > 0 ? opts_.workers
                                    : std::max(2, repo_.backend().Properties().max_connections);
    for (int i = 0; i < n; i++) workers_.emplace_back([this] { WorkerLoop(); });
  }
  {
    std::unique_lock l(pool_mu_);
    done_cv_.wait(l, [&] { return queue_.size() < kMaxQueuedBatches; });
    queue_.push_back(std::move(b));
  }
  work_cv_.notify_all();
  if (opts_.stop.stop_requested()) return Status::Cancelled("restore canceled");
  return Status::Ok();
}

// Directories last, deepest first, so their times are not disturbed by their children.
void Restore::ApplyDirMetadata() {
  for (auto it = dirs_meta_.rbegin(); it != dirs_meta_.rend(); ++it) {
    // Through an fd of the directory itself, opened beneath the target without symlinks.
    Fd fd(OpenBeneath(root_fd_.get(), it->rel, O_RDONLY | O_DIRECTORY));
    if (fd.valid()) {
      Status m = ApplyMetadataToFd(fd.get(), it->node, meta_, it->owner);
      if (!m.ok()) RecordMetadataError(m.WithContext(it->rel).message());
      continue;
    }
    // Not readable (an existing directory we may not list), replaced, gone: by name from its
    // parent, which reports each case as it always did.
    std::string parent = std::filesystem::path(it->rel).parent_path().string();
    Fd pfd(OpenBeneath(root_fd_.get(), parent, O_PATH | O_DIRECTORY));
    if (!pfd.valid()) {
      RecordError(Status::FromErrno(errno, "open directory", parent).message());
      continue;
    }
    Status m = ApplyMetadata(pfd.get(), it->node, meta_);
    if (!m.ok()) RecordMetadataError(m.WithContext(it->rel).message());
  }
}

Result<RestoreSummary> Restore::Run(const Id& root) {
  if (opts_.target_dir_fd >= 0) {
    root_fd_.Reset(openat(opts_.target_dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  } else {
    std::error_code ec;
    std::filesystem::create_directories(opts_.target, ec);
    if (ec) return Status::FromErrno(ec.value(), "create target", opts_.target);
    root_fd_.Reset(open(opts_.target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  if (!root_fd_.valid()) return Status::FromErrno(errno, "open target", opts_.target);

  // Resolve the subpath to the tree whose contents go to the target.
  Id tree = root;
  std::string snap_path = "/";
  for (const auto& comp : std::filesystem::path(opts_.subpath)) {
    std::string c = comp.string();
    if (c.empty() || c == "/" || c == ".") continue;
    FSB_ASSIGN_OR_RETURN(std::vector<Node> nodes, repo_.LoadTree(tree));
    auto it = std::find_if(nodes.begin(), nodes.end(), [&](const Node& n) { return n.name == c; });
    if (it == nodes.end() || it->type != NodeType::kDir || !it->subtree) {
      return Status::NotFound(fmt::format("path {} not found in snapshot (or not a directory)", opts_.subpath));
    }
    tree = *it->subtree;
    snap_path = snap_path == "/" ? "/" + c : snap_path + "/" + c;
  }
  Dir top;
  top.created = true;
  top.fd.Reset(dup(root_fd_.get()));
  Status s = WalkTree(tree, top, snap_path, false);
  if (s.ok()) s = FlushBatch();
  StopWorkers();
  if (s.ok() && opts_.stop.stop_requested()) s = Status::Cancelled("restore canceled");
  if (!s.ok()) return s;
  ApplyDirMetadata();
  // The snapshot's root (or the subpath directory) has no node of its own to apply, as restic.
  progress_->scan_finished = true;
  std::lock_guard l(mu_);
  return summary_;
}

}  // namespace

Result<RestoreSummary> RunRestore(repo::Repository& repo, const repo::Id& root,
                                  const RestoreOptions& options, Progress* progress) {
  Restore r(repo, options, progress);
  return r.Run(root);
}

}  // namespace fsb::uploader
