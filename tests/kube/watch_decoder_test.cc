// Tests of kube/internal/: the watch stream decoder and the API error mapping.
#include "kube/internal/watch_decoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kube/client.h"
#include "kube/internal/api_error.h"

namespace fsb::kube::internal {
namespace {

using ::testing::HasSubstr;

class WatchDecoderTest : public ::testing::Test {
 protected:
  Status Feed(std::string_view chunk) { return decoder_.Feed(chunk, handler_); }

  std::vector<RawWatchEvent> events_;
  WatchDecoder::Handler handler_ = [this](RawWatchEvent&& ev) {
    events_.push_back(std::move(ev));
    return Status::Ok();
  };
  WatchDecoder decoder_;
};

constexpr std::string_view kTwoEvents =
    R"({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"5"}}})"
    "\n"
    R"({"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9"}}})"
    "\n";

TEST_F(WatchDecoderTest, EventsSplitAtEveryByteAreReassembled) {
  for (char c : kTwoEvents) ASSERT_TRUE(Feed(std::string_view(&c, 1)).ok());
  ASSERT_TRUE(decoder_.Finish(handler_).ok());
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_EQ(events_[0].type, "ADDED");
  EXPECT_EQ(events_[0].object["metadata"]["name"], "a");
  EXPECT_EQ(events_[1].type, "BOOKMARK");
  EXPECT_EQ(events_[1].object["metadata"]["resourceVersion"], "9");
}

TEST_F(WatchDecoderTest, ManyEventsInOneChunkAndBlankLines) {
  ASSERT_TRUE(Feed(std::string("\r\n") + std::string(kTwoEvents) + "\n\n").ok());
  EXPECT_EQ(events_.size(), 2u);
}

TEST_F(WatchDecoderTest, LastEventWithoutNewlineIsDeliveredByFinish) {
  ASSERT_TRUE(Feed(R"({"type":"DELETED","object":{}})").ok());
  EXPECT_TRUE(events_.empty());
  ASSERT_TRUE(decoder_.Finish(handler_).ok());
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].type, "DELETED");
}

TEST_F(WatchDecoderTest, MalformedEventIsCorruption) {
  for (const char* bad : {"{not json}\n", "[1,2]\n",
                          R"({"object":{}})"
                          "\n",
                          R"({"type":"ADDED","object":"x"})"
                          "\n"}) {
    WatchDecoder d;
    Status s = d.Feed(bad, handler_);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << bad;
  }
}

TEST_F(WatchDecoderTest, HandlerErrorStopsDecoding) {
  int calls = 0;
  Status s = decoder_.Feed(kTwoEvents, [&](RawWatchEvent&&) {
    ++calls;
    return Status::Cancelled("enough");
  });
  EXPECT_EQ(s.code(), StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);
}

TEST(ApiErrorTest, StatusBodyGivesCodeAndServerMessage) {
  const std::string body =
      R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","code":404})";
  Status s = StatusFromHttp("get", "pods velero/x", 404, body);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), R"(get pods velero/x: pods "x" not found (HTTP 404 NotFound))");
}

TEST(ApiErrorTest, CodesMapAsDocumented) {
  struct Case {
    int http;
    const char* reason;
    StatusCode code;
  } cases[] = {
      {400, "BadRequest", StatusCode::kInvalidArgument},
      {422, "Invalid", StatusCode::kInvalidArgument},
      {401, "Unauthorized", StatusCode::kPermissionDenied},
      {403, "Forbidden", StatusCode::kPermissionDenied},
      {404, "NotFound", StatusCode::kNotFound},
      {409, "AlreadyExists", StatusCode::kAlreadyExists},
      {409, "Conflict", StatusCode::kFailedPrecondition},
      {410, "Expired", StatusCode::kFailedPrecondition},
      {429, "TooManyRequests", StatusCode::kUnavailable},
      {500, "InternalError", StatusCode::kUnavailable},
      {503, "ServiceUnavailable", StatusCode::kUnavailable},
  };
  for (const Case& c : cases) {
    const std::string body = fmt::format(
        R"({{"kind":"Status","message":"m","reason":"{}","code":{}}})", c.reason, c.http);
    Status s = StatusFromHttp("update", "pods a/b", c.http, body);
    EXPECT_EQ(s.code(), c.code) << c.http << " " << c.reason;
    EXPECT_EQ(IsConflict(s), c.http == 409 && std::string_view(c.reason) == "Conflict");
    EXPECT_EQ(IsGone(s), c.http == 410);
  }
}

TEST(ApiErrorTest, ConflictAndGoneSurviveAddedContext) {
  Status conflict = StatusFromHttp("update", "pods a/b", 409, "");
  EXPECT_TRUE(IsConflict(conflict.WithContext("pvb a/b: set phase")));
  EXPECT_FALSE(IsGone(conflict));
  Status gone = StatusFromHttp("list", "pods", 410, "");
  EXPECT_TRUE(IsGone(gone.WithContext("informer")));
  // The same words from elsewhere (a TLS failure is also kFailedPrecondition) are not a mark.
  EXPECT_FALSE(IsConflict(Status::FailedPrecondition("conflict")));
  EXPECT_FALSE(IsGone(Status::Unavailable("(HTTP 410 Gone)")));
}

TEST(ApiErrorTest, NonStatusBodyIsQuotedPrintableAndShort) {
  const std::string html = "<html>\n<body>502 Bad Gateway</body>\x01" + std::string(500, 'x');
  Status s = StatusFromHttp("get", "pods a/b", 502, html);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("<html> <body>502 Bad Gateway</body>"));
  EXPECT_LT(s.message().size(), 300u);
  EXPECT_THAT(s.message(), HasSubstr("(HTTP 502)"));
}

TEST(ApiErrorTest, WatchErrorEventStatus) {
  const nlohmann::json status = nlohmann::json::parse(
      R"json({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410,"message":"too old resource version: 101 (150)"})json");
  Status s = StatusFromApiStatus("watch", "pods velero", status);
  EXPECT_TRUE(IsGone(s));
  EXPECT_THAT(s.message(), HasSubstr("too old resource version: 101 (150)"));
  Status other = StatusFromApiStatus("watch", "pods velero", nlohmann::json::object());
  EXPECT_EQ(other.code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace fsb::kube::internal
