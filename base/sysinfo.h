// base/sysinfo.h: facts about this process and host recorded in repository objects.
#pragma once

#include <string>

namespace fsb {

inline constexpr const char* kFsbVersion = "0.1.0";

// gethostname(), or "" when it fails.
std::string HostName();
// The user name of the real uid (getpwuid_r), falling back to $USER, then "".
std::string UserName();

}  // namespace fsb
