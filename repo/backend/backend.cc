#include "repo/backend/backend.h"

#include <fmt/format.h>

#include <cstring>

namespace fsb::repo {

std::string_view FileTypeName(FileType t) {
  switch (t) {
    case FileType::kConfig: return "config";
    case FileType::kKey: return "key";
    case FileType::kPack: return "data";
    case FileType::kIndex: return "index";
    case FileType::kSnapshot: return "snapshot";
    case FileType::kLock: return "lock";
  }
  return "unknown";
}

std::string Handle::Path() const {
  switch (type) {
    case FileType::kConfig: return "config";
    case FileType::kKey: return "keys/" + name;
    case FileType::kPack: return "data/" + name.substr(0, 2) + "/" + name;
    case FileType::kIndex: return "index/" + name;
    case FileType::kSnapshot: return "snapshots/" + name;
    case FileType::kLock: return "locks/" + name;
  }
  return name;
}

Status Backend::LoadInto(const Handle& h, uint64_t offset, MutableByteView out) {
  FSB_CHECK(!out.empty());
  FSB_ASSIGN_OR_RETURN(Bytes data, Load(h, offset, out.size()));
  if (data.size() != out.size()) {
    return Status::Corruption(fmt::format("load {}: short read: {} of {} bytes", h.Path(),
                                          data.size(), out.size()));
  }
  std::memcpy(out.data(), data.data(), data.size());
  return Status::Ok();
}

}  // namespace fsb::repo
