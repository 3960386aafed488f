#include "agent/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>

namespace fsb::agent {
namespace {

using ::testing::HasSubstr;

struct Served {
  int status = 0;
  std::string body, content_type;
};

Served Fetch(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5);
  c.set_read_timeout(5);
  httplib::Result r = c.Get(path.c_str());
  Served s;
  if (!r) {
    ADD_FAILURE() << "GET " << path << ": " << httplib::to_string(r.error());
    return s;
  }
  s.status = r->status;
  s.body = r->body;
  s.content_type = r->get_header_value("Content-Type");
  return s;
}

std::unique_ptr<HttpServer> StartOrFail(std::function<std::string()> metrics,
                                        std::function<bool()> ready) {
  Result<std::unique_ptr<HttpServer>> s =
      HttpServer::Start("127.0.0.1:0", std::move(metrics), std::move(ready));
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

TEST(HttpServerTest, PortZeroPicksAFreePort) {
  auto s = StartOrFail([] { return ""; }, [] { return true; });
  ASSERT_NE(s, nullptr);
  EXPECT_GT(s->port(), 0);
  EXPECT_LE(s->port(), 65535);
}

TEST(HttpServerTest, MetricsServesTheRenderedText) {
  std::atomic<int> calls = 0;
  auto s = StartOrFail(
      [&] {
        calls++;
        return std::string("# TYPE x counter\nx 1\n");
      },
      [] { return true; });
  ASSERT_NE(s, nullptr);
  Served r = Fetch(s->port(), "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "# TYPE x counter\nx 1\n");
  EXPECT_THAT(r.content_type, HasSubstr("text/plain"));
  EXPECT_THAT(r.content_type, HasSubstr("version=0.0.4"));
  Fetch(s->port(), "/metrics");
  EXPECT_EQ(calls.load(), 2);  // rendered per request, not cached
}

TEST(HttpServerTest, HealthzIsAlwaysOk) {
  auto s = StartOrFail([] { return ""; }, [] { return false; });
  ASSERT_NE(s, nullptr);
  Served r = Fetch(s->port(), "/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
}

TEST(HttpServerTest, ReadyzFollowsTheCallback) {
  std::atomic<bool> ready = false;
  auto s = StartOrFail([] { return ""; }, [&] { return ready.load(); });
  ASSERT_NE(s, nullptr);
  Served before = Fetch(s->port(), "/readyz");
  EXPECT_EQ(before.status, 503);
  EXPECT_THAT(before.body, HasSubstr("not ready"));
  ready = true;
  Served after = Fetch(s->port(), "/readyz");
  EXPECT_EQ(after.status, 200);
  EXPECT_EQ(after.body, "ok\n");
}

TEST(HttpServerTest, UnknownPathIs404) {
  auto s = StartOrFail([] { return ""; }, [] { return true; });
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Fetch(s->port(), "/nope").status, 404);
}

TEST(HttpServerTest, BadAddressesAreInvalidArgument) {
  for (const char* bad :
       {"8085", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:65536", ":-1", "127.0.0.1:80 "}) {
    Result<std::unique_ptr<HttpServer>> s = HttpServer::Start(
        bad, [] { return ""; }, [] { return true; });
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.status().message(), HasSubstr(bad));
  }
}

TEST(HttpServerTest, PortInUseIsUnavailableNamingTheAddress) {
  auto first = StartOrFail([] { return ""; }, [] { return true; });
  ASSERT_NE(first, nullptr);
  const std::string address = "127.0.0.1:" + std::to_string(first->port());
  Result<std::unique_ptr<HttpServer>> second = HttpServer::Start(
      address, [] { return ""; }, [] { return true; });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(address));
}

TEST(HttpServerTest, BracketedIpv6Host) {
  Result<std::unique_ptr<HttpServer>> s = HttpServer::Start(
      "[::1]:0", [] { return ""; }, [] { return true; });
  if (!s.ok()) GTEST_SKIP() << "no IPv6 loopback: " << s.status().ToString();
  EXPECT_GT((*s)->port(), 0);
}

// The destructor must stop the server even when it runs before the listening thread has
// started (httplib's stop() does nothing until listen is running).
TEST(HttpServerTest, DestroyRightAfterStartReturns) {
  for (int i = 0; i < 200; i++) {
    auto s = StartOrFail([] { return ""; }, [] { return true; });
    ASSERT_NE(s, nullptr);
  }
}

TEST(HttpServerTest, StopsServingWhenDestroyed) {
  auto s = StartOrFail([] { return ""; }, [] { return true; });
  ASSERT_NE(s, nullptr);
  const int port = s->port();
  EXPECT_EQ(Fetch(port, "/healthz").status, 200);
  s.reset();
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(1);
  EXPECT_FALSE(c.Get("/healthz"));
}

}  // namespace
}  // namespace fsb::agent
