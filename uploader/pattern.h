// uploader/pattern.h: restic-style path patterns for --exclude and --include: components are
// matched with fnmatch (*, ?, [...]), "**" matches any number of components, a pattern starting
// with "/" is anchored at the root and any other pattern may match from any component. A match of
// a directory covers everything below it. Pure functions.
#pragma once

#include <string_view>

namespace fsb::uploader {

// True when `path` (absolute: "/a/b") matches `pattern` or lies below a match.
bool MatchPattern(std::string_view pattern, std::string_view path);
// True when something below directory `dir` could match `pattern` (restic's childMayMatch).
bool PatternMayMatchBelow(std::string_view pattern, std::string_view dir);

inline bool MatchExclude(std::string_view pattern, std::string_view path) {
  return MatchPattern(pattern, path);
}

}  // namespace fsb::uploader
