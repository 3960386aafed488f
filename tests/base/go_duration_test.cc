#include "base/go_duration.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>

namespace fsb {
namespace {

TEST(GoDurationTest, ParsesAsGo) {
  using std::chrono::nanoseconds;
  auto ns = [](std::string_view s) {
    Result<nanoseconds> d = ParseGoDuration(s);
    EXPECT_TRUE(d.ok()) << s << ": " << d.status().ToString();
    return d.ok() ? d->count() : -1;
  };
  EXPECT_EQ(ns("168h0m0s"), 168LL * 3600 * 1'000'000'000);
  EXPECT_EQ(ns("1h30m"), 5400LL * 1'000'000'000);
  EXPECT_EQ(ns("1.5h"), 5400LL * 1'000'000'000);
  EXPECT_EQ(ns("300ms"), 300'000'000);
  EXPECT_EQ(ns("2us"), 2'000);
  EXPECT_EQ(ns("2\xC2\xB5s"), 2'000);
  EXPECT_EQ(ns("7ns"), 7);
  EXPECT_EQ(ns("0"), 0);
  EXPECT_EQ(ns("-90s"), -90LL * 1'000'000'000);
  EXPECT_EQ(ns("+.5s"), 500'000'000);
  EXPECT_EQ(ns("2562047h"), 2562047LL * 3600 * 1'000'000'000);
}

TEST(GoDurationTest, RejectsAsGo) {
  auto err = [](std::string_view s) {
    Result<std::chrono::nanoseconds> d = ParseGoDuration(s);
    EXPECT_FALSE(d.ok()) << s;
    return d.ok() ? std::string() : d.status().message();
  };
  EXPECT_EQ(err(""), "time: invalid duration \"\"");
  EXPECT_EQ(err("1"), "time: missing unit in duration \"1\"");
  EXPECT_EQ(err("1d"), "time: unknown unit \"d\" in duration \"1d\"");
  EXPECT_EQ(err("h"), "time: invalid duration \"h\"");
  EXPECT_EQ(err("."), "time: invalid duration \".\"");
  EXPECT_EQ(err("3000000h"), "time: invalid duration \"3000000h\"");
}

}  // namespace
}  // namespace fsb
