#include "uploader/restore.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
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

struct FileJob {
  std::string rel_dir;  // relative to the target
  Node node;
  std::atomic<uint32_t> remaining{0};
  std::atomic<bool> failed{false};
};

struct Piece {
  uint32_t job;
  uint64_t file_offset;
  repo::PackedBlob blob;
};

class Restore {
 public:
  Restore(repo::Repository& repo, const RestoreOptions& opts, Progress* progress)
      : repo_(repo), opts_(opts), progress_(progress ? progress : &own_), log_(GetLogger("uploader")) {
    meta_.restore_owner = opts.restore_owner && geteuid() == 0;
  }

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
    Fd fd;
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
  Status EnsureDir(Dir& d);
  Status WalkTree(const Id& tree, Dir& dir, const std::string& snap_path, bool included);
  Status RestoreEntry(Dir& dir, const Node& n);
  bool Included(const std::string& snap_path) const;
  bool MayIncludeBelow(const std::string& snap_path) const;
  Status FlushBatch();
  void WritePack(const Id& pack, std::vector<Piece>& pieces);
  void VerifyFile(FileJob& job);
  Status ApplyFileMetadata();

  repo::Repository& repo_;
  const RestoreOptions& opts_;
  Progress own_;
  Progress* progress_;
  std::shared_ptr<spdlog::logger> log_;
  RestoreMetaOptions meta_;
  Fd root_fd_;

  std::vector<std::unique_ptr<FileJob>> batch_;
  uint64_t batch_bytes_ = 0;
  std::vector<std::pair<std::string, Node>> dirs_meta_;  // created dirs, in creation order
  std::map<std::pair<uint64_t, uint64_t>, std::string> hardlinks_;  // (dev, inode) → rel path

  std::mutex mu_;
  RestoreSummary summary_;  // errors guarded by mu_
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
  if (mkdirat(d.parent->fd.get(), d.name.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "mkdir", d.rel);
  }
  d.fd.Reset(OpenBeneath(root_fd_.get(), d.rel, O_RDONLY | O_DIRECTORY));
  if (!d.fd.valid()) return Status::FromErrno(errno, "open directory", d.rel);
  d.created = true;
  summary_.dirs++;
  dirs_meta_.emplace_back(d.rel, *d.node);
  dirs_meta_.back().second.subtree.reset();
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
    int fd = openat(dfd, n.name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && (errno == ELOOP || errno == EISDIR)) {
      // Something else is in the way (a symlink or an empty dir): replace it, never follow it.
      if (unlinkat(dfd, n.name.c_str(), 0) != 0) unlinkat(dfd, n.name.c_str(), AT_REMOVEDIR);
      fd = openat(dfd, n.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd < 0) return Status::FromErrno(errno, "create", rel);
    Fd f(fd);
    if (n.size > 0 && ftruncate(fd, static_cast<off_t>(n.size)) != 0) {
      return Status::FromErrno(errno, "truncate", rel);
    }
    auto job = std::make_unique<FileJob>();
    job->rel_dir = dir.rel;
    job->node = n;
    batch_bytes_ += n.size;
    batch_.push_back(std::move(job));
    summary_.files++;
    summary_.bytes += n.size;
    progress_->total_files.fetch_add(1, std::memory_order_relaxed);
    progress_->total_bytes.fetch_add(n.size, std::memory_order_relaxed);
    if (batch_.size() >= opts_.batch_files || batch_bytes_ >= opts_.batch_bytes) return FlushBatch();
    return Status::Ok();
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
        if (s.code() == StatusCode::kResourceExhausted) return s;
        RecordError(s.WithContext(child_path).message());
      }
      continue;
    }
    if (!inc) continue;
    Status s = RestoreEntry(dir, n);
    if (!s.ok()) {
      if (s.code() == StatusCode::kResourceExhausted) return s;  // disk full: stop
      RecordError(s.message());
    }
  }
  return Status::Ok();
}

void Restore::WritePack(const Id& pack, std::vector<Piece>& pieces) {
  std::sort(pieces.begin(), pieces.end(),
            [](const Piece& a, const Piece& b) { return a.blob.offset < b.blob.offset; });
  const uint64_t start = pieces.front().blob.offset;
  uint64_t end = 0;
  for (const Piece& p : pieces) end = std::max<uint64_t>(end, uint64_t(p.blob.offset) + p.blob.length);
  auto fail_all = [&](const Status& s) {
    for (const Piece& p : pieces) {
      FileJob& job = *batch_[p.job];
      if (!job.failed.exchange(true)) {
        RecordError(s.WithContext(Join(job.rel_dir, job.node.name)).message());
      }
    }
  };
  Result<Bytes> data = repo_.backend().Load(repo::Handle{repo::FileType::kPack, pack.Hex()}, start,
                                            end - start);
  if (!data.ok()) {
    fail_all(data.status().WithContext("load pack " + pack.Short()));
    return;
  }
  {
    std::lock_guard l(mu_);
    summary_.packs_read++;
  }
  std::unordered_map<uint32_t, Fd> open_files;
  const Bytes* plain_ptr = nullptr;
  Bytes plain;
  Id last_blob;
  bool have_last = false;
  for (const Piece& p : pieces) {
    FileJob& job = *batch_[p.job];
    if (!have_last || last_blob != p.blob.id) {
      Result<Bytes> dec = repo::DecodeBlob(
          repo_.key(), p.blob, ByteView(*data).subspan(p.blob.offset - start, p.blob.length));
      have_last = dec.ok();
      if (!dec.ok()) {
        if (!job.failed.exchange(true)) {
          RecordError(dec.status().WithContext("pack " + pack.Short()).WithContext(
              Join(job.rel_dir, job.node.name)).message());
        }
        continue;
      }
      plain = std::move(*dec);
      last_blob = p.blob.id;
      plain_ptr = &plain;
    }
    if (!job.failed.load() && !IsAllZero(*plain_ptr)) {  // zeros stay holes: the file is ftruncated
      auto it = open_files.find(p.job);
      if (it == open_files.end()) {
        const std::string rel = Join(job.rel_dir, job.node.name);
        Fd fd(OpenBeneath(root_fd_.get(), rel, O_WRONLY));
        if (!fd.valid()) {
          if (!job.failed.exchange(true)) RecordError(Status::FromErrno(errno, "open", rel).message());
          continue;
        }
        it = open_files.emplace(p.job, std::move(fd)).first;
      }
      const uint8_t* src = plain_ptr->data();
      size_t left = plain_ptr->size();
      off_t off = static_cast<off_t>(p.file_offset);
      while (left > 0) {
        ssize_t w = pwrite(it->second.get(), src, left, off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          if (!job.failed.exchange(true)) {
            RecordError(Status::FromErrno(errno, "write", Join(job.rel_dir, job.node.name)).message());
          }
          break;
        }
        src += w;
        left -= static_cast<size_t>(w);
        off += w;
      }
    }
    progress_->bytes_done.fetch_add(plain_ptr->size(), std::memory_order_relaxed);
    if (job.remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      progress_->files_done.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void Restore::VerifyFile(FileJob& job) {
  const std::string rel = Join(job.rel_dir, job.node.name);
  Fd fd(OpenBeneath(root_fd_.get(), rel, O_RDONLY));
  if (!fd.valid()) {
    RecordError(Status::FromErrno(errno, "verify: open", rel).message());
    return;
  }
  uint64_t off = 0;
  Bytes buf;
  for (const Id& id : job.node.content) {
    std::optional<repo::BlobLocation> loc = repo_.FindBlob(BlobType::kData, id);
    if (!loc) return;  // already reported
    uint64_t n = PlainSize(loc->blob);
    buf.resize(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = pread(fd.get(), buf.data() + got, n - got, static_cast<off_t>(off + got));
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
  if (fstat(fd.get(), &st) == 0 && uint64_t(st.st_size) != job.node.size) {
    RecordError(fmt::format("verify: {} has size {}, want {}", rel, st.st_size, job.node.size));
    return;
  }
  std::lock_guard l(mu_);
  summary_.verified_files++;
}

Status Restore::ApplyFileMetadata() {
  std::string cur_dir;
  Fd dfd;
  for (auto& job : batch_) {
    if (!dfd.valid() || job->rel_dir != cur_dir) {
      dfd.Reset(OpenBeneath(root_fd_.get(), job->rel_dir, O_RDONLY | O_DIRECTORY));
      cur_dir = job->rel_dir;
      if (!dfd.valid()) {
        RecordError(Status::FromErrno(errno, "open directory", job->rel_dir).message());
        continue;
      }
    }
    Status s = ApplyMetadata(dfd.get(), job->node, meta_);
    if (!s.ok()) RecordMetadataError(s.WithContext(Join(job->rel_dir, job->node.name)).message());
  }
  return Status::Ok();
}

Status Restore::FlushBatch() {
  if (batch_.empty()) return Status::Ok();
  // Plan: which pieces of which files each pack holds.
  std::unordered_map<Id, std::vector<Piece>, repo::IdHash> by_pack;
  for (uint32_t j = 0; j < batch_.size(); j++) {
    FileJob& job = *batch_[j];
    uint64_t off = 0;
    uint32_t count = 0;
    for (const Id& id : job.node.content) {
      std::optional<repo::BlobLocation> loc = repo_.FindBlob(BlobType::kData, id);
      if (!loc) {
        job.failed = true;
        RecordError(fmt::format("{}: data blob {} not found in index",
                                Join(job.rel_dir, job.node.name), id.Short()));
        break;
      }
      by_pack[loc->pack].push_back(Piece{j, off, loc->blob});
      off += PlainSize(loc->blob);
      count++;
    }
    job.remaining = count;
    if (count == 0) progress_->files_done.fetch_add(1, std::memory_order_relaxed);
  }
  std::vector<std::pair<Id, std::vector<Piece>>> packs(by_pack.begin(), by_pack.end());
  by_pack.clear();
  // Biggest packs first keeps the workers evenly busy at the end.
  std::sort(packs.begin(), packs.end(), [](auto& a, auto& b) { return a.second.size() > b.second.size(); });
  int workers = opts_.workers > 0 ? opts_.workers
                                  : std::max(2, repo_.backend().Properties().max_connections);
  std::atomic<size_t> next{0};
  {
    std::vector<std::jthread> threads;
    for (int w = 0; w < workers; w++) {
      threads.emplace_back([&] {
        for (size_t i = next.fetch_add(1); i < packs.size(); i = next.fetch_add(1)) {
          if (opts_.stop.stop_requested()) break;
          WritePack(packs[i].first, packs[i].second);
          packs[i].second = {};
        }
      });
    }
  }
  if (opts_.stop.stop_requested()) return Status::Cancelled("restore canceled");
  if (opts_.verify) {
    std::atomic<size_t> vnext{0};
    std::vector<std::jthread> threads;
    for (int w = 0; w < workers; w++) {
      threads.emplace_back([&] {
        for (size_t i = vnext.fetch_add(1); i < batch_.size(); i = vnext.fetch_add(1)) {
          if (!batch_[i]->failed) VerifyFile(*batch_[i]);
        }
      });
    }
  }
  FSB_RETURN_IF_ERROR(ApplyFileMetadata());
  batch_.clear();
  batch_bytes_ = 0;
  return Status::Ok();
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
  if (!s.ok()) return s;
  // Directories last, deepest first, so their times are not disturbed by their children.
  for (auto it = dirs_meta_.rbegin(); it != dirs_meta_.rend(); ++it) {
    std::filesystem::path rel(it->first);
    std::string parent = rel.parent_path().string();
    Fd pfd(OpenBeneath(root_fd_.get(), parent, O_RDONLY | O_DIRECTORY));
    if (!pfd.valid()) {
      RecordError(Status::FromErrno(errno, "open directory", parent).message());
      continue;
    }
    Status m = ApplyMetadata(pfd.get(), it->second, meta_);
    if (!m.ok()) RecordMetadataError(m.WithContext(it->first).message());
  }
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
