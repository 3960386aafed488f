#include "tests/support/mem_backend.h"

#include <fmt/format.h>

#include <string_view>
#include <vector>

namespace fsb::testing {
namespace {

using repo::FileInfo;
using repo::FileType;
using repo::Handle;

bool IsIdName(std::string_view name) {
  if (name.size() != 64) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// The same rule as LocalBackend, so a test that passes against MemBackend passes against disk.
Status CheckHandle(const Handle& h) {
  if (h.type == FileType::kConfig ? h.name == "config" : IsIdName(h.name)) return Status::Ok();
  return Status::InvalidArgument(
      fmt::format("invalid {} file name \"{}\": want 64 lowercase hex digits",
                  repo::FileTypeName(h.type), h.name));
}

}  // namespace

Status MemBackend::Save(const Handle& h, ByteView data) {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  Bytes copy(data.begin(), data.end());  // copied outside the lock
  std::lock_guard lock(mu_);
  files_[{h.type, h.name}] = std::move(copy);
  return Status::Ok();
}

Result<Bytes> MemBackend::Load(const Handle& h, uint64_t offset, uint64_t length) {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  std::lock_guard lock(mu_);
  auto it = files_.find({h.type, h.name});
  if (it == files_.end()) return Status::NotFound(fmt::format("mem {}: not found", h.Path()));
  const Bytes& data = it->second;
  if (offset > data.size() || (length > 0 && length > data.size() - offset)) {
    return Status::Corruption(fmt::format("load mem {}: short read: range {}+{} beyond size {}",
                                          h.Path(), offset, length, data.size()));
  }
  const uint64_t n = length == 0 ? data.size() - offset : length;
  return Bytes(data.begin() + static_cast<ptrdiff_t>(offset),
               data.begin() + static_cast<ptrdiff_t>(offset + n));
}

Result<uint64_t> MemBackend::Size(const Handle& h) {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  std::lock_guard lock(mu_);
  auto it = files_.find({h.type, h.name});
  if (it == files_.end()) return Status::NotFound(fmt::format("mem {}: not found", h.Path()));
  return static_cast<uint64_t>(it->second.size());
}

Status MemBackend::List(FileType type, const std::function<Status(const FileInfo&)>& fn) {
  std::vector<FileInfo> infos;
  {
    std::lock_guard lock(mu_);
    for (auto it = files_.lower_bound({type, ""}); it != files_.end() && it->first.first == type;
         ++it) {
      if (IsIdName(it->first.second)) infos.push_back({it->first.second, it->second.size()});
    }
  }
  for (const FileInfo& info : infos) FSB_RETURN_IF_ERROR(fn(info));
  return Status::Ok();
}

Status MemBackend::Remove(const Handle& h) {
  FSB_RETURN_IF_ERROR(CheckHandle(h));
  std::lock_guard lock(mu_);
  if (files_.erase({h.type, h.name}) == 0) {
    return Status::NotFound(fmt::format("remove mem {}: not found", h.Path()));
  }
  return Status::Ok();
}

Status MemBackend::Create() {
  std::lock_guard lock(mu_);
  if (files_.contains({FileType::kConfig, "config"})) {
    return Status::AlreadyExists("repository mem: already exists: it has a config file");
  }
  return Status::Ok();
}

size_t MemBackend::file_count() const {
  std::lock_guard lock(mu_);
  return files_.size();
}

bool MemBackend::Contains(const Handle& h) const {
  std::lock_guard lock(mu_);
  return files_.contains({h.type, h.name});
}

}  // namespace fsb::testing
