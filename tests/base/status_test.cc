#include "base/status.h"

#include <cerrno>

#include <gtest/gtest.h>

#include "base/bytes.h"

namespace fsb {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  FSB_ASSIGN_OR_RETURN(int h, Half(x));
  FSB_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, ErrnoMapsToCodes) {
  EXPECT_EQ(Status::FromErrno(ENOENT, "open", "x").code(), StatusCode::kNotFound);
  EXPECT_EQ(Status::FromErrno(EACCES, "open", "x").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Status::FromErrno(ENOSPC, "write", "x").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(Status::FromErrno(ENOENT, "open", "/a/b").message(),
            "open /a/b: No such file or directory");
}

TEST(StatusTest, ContextIsPrepended) {
  Status s = Status::Corruption("bad mac").WithContext("load pack 1234abcd");
  EXPECT_EQ(s.message(), "load pack 1234abcd: bad mac");
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

TEST(StatusTest, AssignOrReturnPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_FALSE(Quarter(6).ok());
  EXPECT_EQ(Quarter(6).status().message(), "odd");
}

TEST(BytesTest, HexRoundTrip) {
  Bytes b = {0x00, 0x7f, 0xff, 0x10};
  EXPECT_EQ(HexEncode(b), "007fff10");
  EXPECT_EQ(*HexDecode("007FFF10"), b);
  EXPECT_FALSE(HexDecode("abc").ok());
  EXPECT_FALSE(HexDecode("zz").ok());
}

TEST(BytesTest, Base64MatchesRfc4648Vectors) {
  const char* plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char* enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) {
    EXPECT_EQ(Base64Encode(AsBytes(plain[i])), enc[i]);
    EXPECT_EQ(AsString(*Base64Decode(enc[i])), plain[i]);
  }
  EXPECT_FALSE(Base64Decode("Zg=").ok());
  EXPECT_FALSE(Base64Decode("Z===").ok());
  EXPECT_FALSE(Base64Decode("Zm9v!A==").ok());
  EXPECT_FALSE(Base64Decode("Zg==Zg==").ok());
}

}  // namespace
}  // namespace fsb
