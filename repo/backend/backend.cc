#include "repo/backend/backend.h"

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

}  // namespace fsb::repo
