#include "uploader/pattern.h"

#include <gtest/gtest.h>

namespace fsb::uploader {
namespace {

TEST(PatternTest, RelativePatternMatchesAnyComponent) {
  EXPECT_TRUE(MatchPattern("*.log", "/var/app/x.log"));
  EXPECT_TRUE(MatchPattern("cache", "/home/u/cache"));
  EXPECT_TRUE(MatchPattern("cache", "/home/u/cache/deep/file"));  // below a match
  EXPECT_FALSE(MatchPattern("cache", "/home/u/cached"));
  EXPECT_TRUE(MatchPattern("u/cache", "/home/u/cache"));
}

TEST(PatternTest, AbsolutePatternIsAnchored) {
  EXPECT_TRUE(MatchPattern("/home/*/cache", "/home/u/cache"));
  EXPECT_FALSE(MatchPattern("/u/cache", "/home/u/cache"));
  EXPECT_TRUE(MatchPattern("/", "/anything"));
}

TEST(PatternTest, DoubleStarSpansComponents) {
  EXPECT_TRUE(MatchPattern("/data/**/*.tmp", "/data/a/b/c/x.tmp"));
  EXPECT_TRUE(MatchPattern("/data/**/*.tmp", "/data/x.tmp"));
  EXPECT_FALSE(MatchPattern("/data/**/*.tmp", "/other/x.tmp"));
}

TEST(PatternTest, ChildMayMatch) {
  EXPECT_TRUE(PatternMayMatchBelow("/etc/ssh/*.conf", "/etc"));
  EXPECT_TRUE(PatternMayMatchBelow("/etc/ssh/*.conf", "/etc/ssh"));
  EXPECT_FALSE(PatternMayMatchBelow("/etc/ssh/*.conf", "/var"));
  EXPECT_TRUE(PatternMayMatchBelow("*.conf", "/var"));
  EXPECT_TRUE(PatternMayMatchBelow("/a/**/z", "/a/b/c"));
}

}  // namespace
}  // namespace fsb::uploader
