#include "repo/backend/object_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "base/fd.h"
#include "repo/backend/s3/s3_backend.h"
#include "repo/backend/s3/s3_config.h"

namespace fsb::repo {
namespace {

Status CheckKey(std::string_view key) {
  if (key.empty() || key.front() == '/' || key.back() == '/') {
    return Status::InvalidArgument(fmt::format("invalid object key \"{}\"", key));
  }
  size_t start = 0;
  while (start <= key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    const std::string_view seg = key.substr(start, end - start);
    if (seg.empty() || seg == "." || seg == "..") {
      return Status::InvalidArgument(fmt::format("invalid object key \"{}\"", key));
    }
    start = end + 1;
  }
  return Status::Ok();
}

class S3ObjectStore : public ObjectStore {
 public:
  explicit S3ObjectStore(std::unique_ptr<S3Backend> s3) : s3_(std::move(s3)) {}
  std::string Location() const override { return s3_->Location(); }
  Status Put(std::string_view key, ByteView data) override {
    FSB_RETURN_IF_ERROR(CheckKey(key));
    return s3_->PutObject(key, data);
  }
  Result<Bytes> Get(std::string_view key) override {
    FSB_RETURN_IF_ERROR(CheckKey(key));
    return s3_->GetObject(key);
  }
  Status List(std::string_view prefix,
              const std::function<Status(const std::string& key)>& fn) override {
    return s3_->ListObjects(prefix, fn);
  }

 private:
  std::unique_ptr<S3Backend> s3_;
};

// Files under a directory; writes go to a temp name, fsync, rename, fsync the directory
// (CONVENTIONS §5).
class LocalObjectStore : public ObjectStore {
 public:
  explicit LocalObjectStore(std::filesystem::path root) : root_(std::move(root)) {}
  std::string Location() const override { return root_.string(); }

  Status Put(std::string_view key, ByteView data) override {
    FSB_RETURN_IF_ERROR(CheckKey(key));
    const std::filesystem::path path = root_ / std::string(key);
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) return Status::FromErrno(ec.value(), "mkdir", path.parent_path().string());
    std::random_device rd;
    const std::string tmp = fmt::format("{}.tmp-{:08x}", path.string(), rd());
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid()) return Status::FromErrno(errno, "create", tmp);
    size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        return Status::FromErrno(err, "write", tmp);
      }
      off += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0 && errno != EINVAL && errno != ENOTSUP) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return Status::FromErrno(err, "fsync", tmp);
    }
    fd.Reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return Status::FromErrno(err, "rename", path.string());
    }
    Fd dir(::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.valid()) ::fsync(dir.get());  // best effort: some file systems refuse directories
    return Status::Ok();
  }

  Result<Bytes> Get(std::string_view key) override {
    FSB_RETURN_IF_ERROR(CheckKey(key));
    const std::string path = (root_ / std::string(key)).string();
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno(errno, "open", path);
    Bytes out;
    uint8_t buf[64 << 10];
    while (true) {
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno(errno, "read", path);
      if (n == 0) break;
      out.insert(out.end(), buf, buf + n);
    }
    return out;
  }

  Status List(std::string_view prefix,
              const std::function<Status(const std::string& key)>& fn) override {
    std::error_code ec;
    std::filesystem::recursive_directory_iterator it(root_, ec), end;
    if (ec) {
      if (ec == std::errc::no_such_file_or_directory) return Status::Ok();
      return Status::FromErrno(ec.value(), "list", root_.string());
    }
    for (; it != end; it.increment(ec)) {
      if (ec) return Status::FromErrno(ec.value(), "list", root_.string());
      if (!it->is_regular_file(ec)) continue;
      const std::string rel = it->path().lexically_relative(root_).generic_string();
      if (rel.find(".tmp-") != std::string::npos) continue;
      if (rel.starts_with(prefix)) FSB_RETURN_IF_ERROR(fn(rel));
    }
    return Status::Ok();
  }

 private:
  const std::filesystem::path root_;
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> OpenObjectStore(std::string_view location,
                                                     const BackendOptions& options) {
  if (location.starts_with("s3:")) {
    FSB_ASSIGN_OR_RETURN(S3Config config, ResolveS3Config(location,
                                                          {.region = options.s3_region,
                                                           .ca_file = options.ca_file,
                                                           .insecure_tls = options.insecure_tls},
                                                          options.env ? EnvLookup(options.env)
                                                                      : EnvLookup(ProcessEnv)));
    FSB_ASSIGN_OR_RETURN(auto s3, S3Backend::Open(config));
    return std::unique_ptr<ObjectStore>(new S3ObjectStore(std::move(s3)));
  }
  std::string path(location);
  if (path.starts_with("local:")) path = path.substr(6);
  if (path.empty() || path.front() != '/') {
    return Status::InvalidArgument(
        fmt::format("object store \"{}\": want s3:... or an absolute local directory", location));
  }
  return std::unique_ptr<ObjectStore>(new LocalObjectStore(path));
}

}  // namespace fsb::repo
