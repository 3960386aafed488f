// base/dir.h: reading a directory's entries through its fd. Pure function of the directory.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace fsb {

struct DirEntry {
  std::string name;
  uint8_t type = 0;  // d_type: DT_DIR, DT_REG, ... or DT_UNKNOWN
};

// Every entry of the directory open as `dir_fd` except "." and "..", in readdir order. The fd is
// borrowed (a duplicate is read), so the caller keeps using it. `path` names the directory in
// errors: "opendir <path>: ..." / "readdir <path>: ...".
Result<std::vector<DirEntry>> ReadDirectory(int dir_fd, std::string_view path);

}  // namespace fsb
