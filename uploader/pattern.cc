#include "uploader/pattern.h"

#include <fnmatch.h>

#include <string>
#include <vector>

namespace fsb::uploader {
namespace {

std::vector<std::string> SplitPath(std::string_view p) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    if (j > i) out.emplace_back(p.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// Matches pattern components pat[pi..] against path components path[xi..]. When the pattern is
// used up, the rest of the path lies below a match: true. When the path is used up first, the
// result is `prefix_ok` (true asks "could a longer path match?").
bool Match(const std::vector<std::string>& pat, size_t pi, const std::vector<std::string>& path,
           size_t xi, bool prefix_ok) {
  while (pi < pat.size()) {
    if (pat[pi] == "**") {
      if (prefix_ok && xi >= path.size()) return true;
      for (size_t k = xi; k <= path.size(); k++) {
        if (Match(pat, pi + 1, path, k, prefix_ok)) return true;
      }
      return false;
    }
    if (xi >= path.size()) return prefix_ok;
    if (fnmatch(pat[pi].c_str(), path[xi].c_str(), 0) != 0) return false;
    pi++;
    xi++;
  }
  return true;
}

}  // namespace

bool MatchPattern(std::string_view pattern, std::string_view path) {
  if (pattern.empty()) return false;
  std::vector<std::string> pat = SplitPath(pattern);
  std::vector<std::string> comps = SplitPath(path);
  if (pat.empty()) return true;  // "/" matches everything
  if (pattern.front() == '/') return Match(pat, 0, comps, 0, false);
  for (size_t start = 0; start < comps.size(); start++) {
    if (Match(pat, 0, comps, start, false)) return true;
  }
  return false;
}

bool PatternMayMatchBelow(std::string_view pattern, std::string_view dir) {
  if (pattern.empty()) return false;
  if (pattern.front() != '/') return true;  // may match at any depth
  return Match(SplitPath(pattern), 0, SplitPath(dir), 0, true);
}

}  // namespace fsb::uploader
