#include "base/sysinfo.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

namespace fsb {

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

std::string UserName() {
  std::vector<char> buf(16384);
  passwd pw;
  passwd* out = nullptr;
  if (getpwuid_r(getuid(), &pw, buf.data(), buf.size(), &out) == 0 && out && out->pw_name) {
    return out->pw_name;
  }
  const char* u = std::getenv("USER");
  return u ? u : "";
}

}  // namespace fsb
