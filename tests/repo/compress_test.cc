#include "repo/compress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zstd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "repo/crypto.h"
#include "repo/id.h"
#include "repo/key.h"
#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

namespace fs = std::filesystem;
using ::fsb::testing::ReadFileToString;
using ::fsb::testing::SeededRandomBytes;
using ::fsb::testing::TestDataPath;
using ::testing::HasSubstr;

// Text-like data that zstd shrinks by roughly half: words drawn from a small vocabulary mixed
// with random bytes.
Bytes SemiCompressible(uint64_t seed, size_t n) {
  const Bytes noise = SeededRandomBytes(seed, n);
  static constexpr const char* kWords[] = {"restic ", "backup ", "snapshot ", "pack ",  "blob ",
                                           "tree ",   "index ",  "zstd ",     "chunk ", "key "};
  Bytes out;
  out.reserve(n);
  size_t i = 0;
  while (out.size() < n) {
    const uint8_t r = noise[i++ % n];
    if (r < 160) {
      const std::string_view w = kWords[r % 10];
      out.insert(out.end(), w.begin(), w.end());
    } else {
      out.push_back(noise[(i * 7) % n]);
    }
  }
  out.resize(n);
  return out;
}

// A frame without the content size in its header, as restic's encoder sometimes writes (§5).
Bytes FrameWithoutContentSize(ByteView plain) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  EXPECT_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0)));
  Bytes out(ZSTD_compressBound(plain.size()));
  const size_t n = ZSTD_compress2(c, out.data(), out.size(), plain.data(), plain.size());
  EXPECT_FALSE(ZSTD_isError(n));
  ZSTD_freeCCtx(c);
  out.resize(ZSTD_isError(n) ? 0 : n);
  return out;
}

Bytes Concat(ByteView a, ByteView b) {
  Bytes out(a.begin(), a.end());
  Append(out, b);
  return out;
}

void ExpectCorruption(const Result<Bytes>& r, std::string_view what) {
  ASSERT_FALSE(r.ok()) << what;
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << what << ": " << r.status().ToString();
}

TEST(CompressTest, RoundTripsAtEveryModeAndSize) {
  for (CompressionMode mode : {CompressionMode::kAuto, CompressionMode::kMax}) {
    for (size_t n : {1u, 13u, 1000u, 70000u, 1u << 20}) {
      if (mode == CompressionMode::kMax && n > 70000) continue;  // level 19 is slow
      for (const Bytes& plain : {SemiCompressible(n, n), SeededRandomBytes(n, n)}) {
        const Bytes frame = ZstdCompress(plain, mode);
        // Content size recorded, no checksum (§6): Frame_Header_Descriptor bit 2.
        ASSERT_GE(frame.size(), 5u);
        EXPECT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), n);
        EXPECT_EQ(frame[4] & 0x04, 0) << "checksum flag set";
        Result<Bytes> exact = ZstdDecompressExact(frame, n);
        ASSERT_TRUE(exact.ok()) << exact.status().ToString();
        EXPECT_EQ(*exact, plain);
        Result<Bytes> stream = ZstdDecompressStream(frame);
        ASSERT_TRUE(stream.ok()) << stream.status().ToString();
        EXPECT_EQ(*stream, plain);
      }
    }
  }
}

TEST(CompressTest, EmptyInputRoundTrips) {
  const Bytes frame = ZstdCompress(Bytes(), CompressionMode::kAuto);
  Result<Bytes> exact = ZstdDecompressExact(frame, 0);
  ASSERT_TRUE(exact.ok()) << exact.status().ToString();
  EXPECT_TRUE(exact->empty());
  Result<Bytes> stream = ZstdDecompressStream(frame);
  ASSERT_TRUE(stream.ok()) << stream.status().ToString();
  EXPECT_TRUE(stream->empty());
}

TEST(CompressTest, MaxCompressesAtLeastAsWellAsAuto) {
  const Bytes plain = SemiCompressible(1, 256 << 10);
  const size_t auto_size = ZstdCompress(plain, CompressionMode::kAuto).size();
  const size_t max_size = ZstdCompress(plain, CompressionMode::kMax).size();
  EXPECT_LT(auto_size, plain.size() * 3 / 4);
  EXPECT_LE(max_size, auto_size);
}

TEST(CompressTest, DecompressExactWithWrongSizeIsCorruption) {
  const Bytes plain = SemiCompressible(2, 5000);
  for (const Bytes& frame :
       {ZstdCompress(plain, CompressionMode::kAuto), FrameWithoutContentSize(plain)}) {
    ExpectCorruption(ZstdDecompressExact(frame, plain.size() - 1), "one short");
    ExpectCorruption(ZstdDecompressExact(frame, plain.size() + 1), "one long");
    ExpectCorruption(ZstdDecompressExact(frame, 0), "zero");
    Result<Bytes> ok = ZstdDecompressExact(frame, plain.size());
    ASSERT_TRUE(ok.ok()) << ok.status().ToString();
    EXPECT_EQ(*ok, plain);
  }
}

TEST(CompressTest, DecompressExactRefusesImpossibleSizeWithoutAllocating) {
  const Bytes frame = FrameWithoutContentSize(AsBytes("tiny"));
  Result<Bytes> r = ZstdDecompressExact(frame, uint64_t(1) << 40);
  ExpectCorruption(r, "1 TiB from a tiny frame");
  EXPECT_THAT(r.status().message(), HasSubstr("cannot hold"));
}

TEST(CompressTest, GarbageFrameIsCorruption) {
  const Bytes garbage = SeededRandomBytes(3, 1000);
  ExpectCorruption(ZstdDecompressExact(garbage, 1000), "exact");
  ExpectCorruption(ZstdDecompressStream(garbage), "stream");
  ExpectCorruption(ZstdDecompressExact(Bytes(), 10), "empty exact");
  ExpectCorruption(ZstdDecompressStream(Bytes()), "empty stream");
}

TEST(CompressTest, TruncatedOrFlippedFrameIsCorruption) {
  const Bytes frame = ZstdCompress(SemiCompressible(4, 100000), CompressionMode::kAuto);
  for (size_t cut : {size_t(3), frame.size() / 2, frame.size() - 1}) {
    const ByteView head = ByteView(frame).first(cut);
    ExpectCorruption(ZstdDecompressExact(head, 100000), "truncated exact");
    ExpectCorruption(ZstdDecompressStream(head), "truncated stream");
  }
  Bytes bad = frame;
  bad[0] ^= 0xff;  // magic number
  ExpectCorruption(ZstdDecompressExact(bad, 100000), "bad magic exact");
  ExpectCorruption(ZstdDecompressStream(bad), "bad magic stream");
}

TEST(CompressTest, StreamHandlesFramesWithoutContentSize) {
  for (size_t n : {1u, 13u, 65536u, 65537u, 3u << 20}) {
    const Bytes plain = SemiCompressible(n, n);
    const Bytes frame = FrameWithoutContentSize(plain);
    ASSERT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), ZSTD_CONTENTSIZE_UNKNOWN);
    Result<Bytes> out = ZstdDecompressStream(frame);
    ASSERT_TRUE(out.ok()) << n << ": " << out.status().ToString();
    EXPECT_EQ(*out, plain);
  }
}

TEST(CompressTest, StreamEnforcesMaxSize) {
  const Bytes plain = SemiCompressible(5, 200000);
  for (const Bytes& frame :
       {ZstdCompress(plain, CompressionMode::kAuto), FrameWithoutContentSize(plain)}) {
    Result<Bytes> exact_limit = ZstdDecompressStream(frame, plain.size());
    ASSERT_TRUE(exact_limit.ok()) << exact_limit.status().ToString();
    EXPECT_EQ(*exact_limit, plain);
    Result<Bytes> over = ZstdDecompressStream(frame, plain.size() - 1);
    ExpectCorruption(over, "one over the limit");
    EXPECT_THAT(over.status().message(), HasSubstr("exceeds"));
  }
}

TEST(CompressTest, StreamDecodesConcatenatedFrames) {
  const Bytes a = SemiCompressible(6, 70000);
  const Bytes b = SemiCompressible(7, 30000);
  Result<Bytes> out = ZstdDecompressStream(
      Concat(ZstdCompress(a, CompressionMode::kAuto), FrameWithoutContentSize(b)));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, Concat(a, b));
}

TEST(CompressDeathTest, CompressingWithModeOffIsABug) {
  EXPECT_DEATH(ZstdCompress(AsBytes("x"), CompressionMode::kOff), "kOff");
}

// ---------------------------------------------------------------------------------------------
// Unpacked files (§5).

TEST(CompressTest, EncodeUnpackedV2IsVersionByteAndZstd) {
  const std::string json = "{\"packs\":[]}\n";
  const Bytes enc = EncodeUnpacked(AsBytes(json), 2);
  ASSERT_GT(enc.size(), 1u);
  EXPECT_EQ(enc[0], 0x02);
  Result<Bytes> frame = ZstdDecompressExact(ByteView(enc).subspan(1), json.size());
  ASSERT_TRUE(frame.ok()) << frame.status().ToString();
  Result<Bytes> dec = DecodeUnpacked(enc, 2);
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  EXPECT_EQ(AsString(*dec), json);
}

TEST(CompressTest, EncodeUnpackedV1IsTheJsonItself) {
  const std::string json = "{\"a\":1}";
  EXPECT_EQ(AsString(EncodeUnpacked(AsBytes(json), 1)), json);
  Result<Bytes> dec = DecodeUnpacked(AsBytes(json), 1);
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(AsString(*dec), json);
}

TEST(CompressTest, DecodeUnpackedV2AcceptsRawJson) {
  for (std::string json : {"{\"a\":1}", "[1,2]"}) {
    Result<Bytes> dec = DecodeUnpacked(AsBytes(json), 2);
    ASSERT_TRUE(dec.ok()) << json << ": " << dec.status().ToString();
    EXPECT_EQ(AsString(*dec), json);
  }
  Result<Bytes> empty = DecodeUnpacked(Bytes(), 2);
  ASSERT_TRUE(empty.ok());  // passed through; JSON parsing rejects it later
  EXPECT_TRUE(empty->empty());
}

TEST(CompressTest, DecodeUnpackedV2RefusesOtherFirstBytes) {
  for (uint8_t first : {uint8_t(0x00), uint8_t(0x01), uint8_t(0x03), uint8_t(' '), uint8_t('"'),
                        uint8_t(0x28), uint8_t(0xff)}) {
    Bytes plain = ToBytes("x{\"a\":1}");
    plain[0] = first;
    Result<Bytes> dec = DecodeUnpacked(plain, 2);
    ExpectCorruption(dec, "first byte");
    EXPECT_THAT(dec.status().message(), HasSubstr("not supported encoding format"));
  }
}

TEST(CompressTest, DecodeUnpackedV2WithBadZstdIsCorruption) {
  Bytes plain = {0x02};
  Append(plain, SeededRandomBytes(8, 100));
  ExpectCorruption(DecodeUnpacked(plain, 2), "garbage after 0x02");
}

TEST(CompressTest, DecodeUnpackedV1NeverDecompresses) {
  const Bytes enc = EncodeUnpacked(AsBytes("{}"), 2);
  Result<Bytes> dec = DecodeUnpacked(enc, 1);
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(*dec, enc);
}

// ---------------------------------------------------------------------------------------------
// Every index and snapshot file restic wrote: SHA-256 = name, opens, decodes to decoded/ exactly.

class CompressRealRepoTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CompressRealRepoTest, UnpackedFilesDecodeToTheirJson) {
  const std::string repo = GetParam();
  const uint32_t version = repo == "repo-v2" ? 2 : 1;
  Result<CryptoKey> master = DecodeMasterKeyJson(
      AsBytes(ReadFileToString(TestDataPath("restic/decoded/" + repo + "/masterkey.json"))));
  ASSERT_TRUE(master.ok()) << master.status().ToString();
  for (const char* dir : {"index", "snapshots"}) {
    size_t count = 0;
    for (const auto& e : fs::directory_iterator(TestDataPath("restic/" + repo + "/" + dir))) {
      ++count;
      const std::string name = e.path().filename().string();
      SCOPED_TRACE(repo + "/" + dir + "/" + name);
      const std::string stored = ReadFileToString(e.path());
      EXPECT_EQ(Id::Hash(AsBytes(stored)).Hex(), name);
      Sha256 h;
      h.Update(AsBytes(stored));
      EXPECT_EQ(h.Finish().Hex(), name);

      Result<Bytes> plain = Open(*master, AsBytes(stored));
      ASSERT_TRUE(plain.ok()) << plain.status().ToString();
      if (version == 2) {
        ASSERT_FALSE(plain->empty());
        EXPECT_EQ((*plain)[0], 0x02);  // restic 0.14 always compresses unpacked files in v2
      }
      Result<Bytes> json = DecodeUnpacked(*plain, version);
      ASSERT_TRUE(json.ok()) << json.status().ToString();
      const std::string expected = ReadFileToString(
          TestDataPath("restic/decoded/" + repo + "/" + dir + "/" + name + ".json"));
      EXPECT_EQ(AsString(*json), expected);

      // Our own encoding of the same JSON decodes back to it.
      Result<Bytes> again = DecodeUnpacked(EncodeUnpacked(*json, version), version);
      ASSERT_TRUE(again.ok());
      EXPECT_EQ(*again, *json);
    }
    size_t decoded = 0;
    for (const auto& e :
         fs::directory_iterator(TestDataPath("restic/decoded/" + repo + "/" + dir))) {
      decoded += e.path().extension() == ".json";
    }
    EXPECT_EQ(count, decoded) << dir;
    EXPECT_GT(count, 0u) << dir;
  }
}

INSTANTIATE_TEST_SUITE_P(CompressRepos, CompressRealRepoTest,
                         ::testing::Values("repo-v2", "repo-v1"), [](const auto& info) {
                           return info.param == "repo-v2" ? std::string("V2") : std::string("V1");
                         });

}  // namespace
}  // namespace fsb::repo
