#include "repo/pack.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "repo/key.h"
#include "tests/support/mem_backend.h"
#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

using ::testing::HasSubstr;

class PackTest : public ::testing::Test {
 protected:
  PackTest() : key_(CryptoKey::Random()) {}

  Bytes WriteTestPack(const std::vector<std::pair<BlobType, std::string>>& blobs, uint32_t version,
                      CompressionMode mode, std::vector<PackedBlob>* out) {
    PackBuilder b;
    for (const auto& [type, text] : blobs) {
      uint32_t ulen = 0;
      Bytes stored = EncodeBlob(key_, type, AsBytes(text), version, mode, &ulen);
      b.Add(type, Id::Hash(AsBytes(text)), stored, ulen);
    }
    return b.Finish(key_, out);
  }

  CryptoKey key_;
};

TEST_F(PackTest, HeaderRoundTripsAndBlobsDecode) {
  std::vector<PackedBlob> written;
  Bytes pack = WriteTestPack({{BlobType::kData, "alpha"}, {BlobType::kData, std::string(5000, 'b')}}, 2,
                             CompressionMode::kAuto, &written);
  Id id = Id::Hash(pack);
  uint64_t need = 0;
  Result<std::vector<PackedBlob>> parsed = ParsePackHeader(key_, id, pack.size(), pack, 2, &need);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(need, 0u);
  EXPECT_EQ(*parsed, written);
  EXPECT_EQ(written[1].uncompressed_length, 5000u);
  // §7.1: size = Σ length + (Σ entry + 32) + 4.
  EXPECT_EQ(pack.size(), written[0].length + written[1].length + 2 * kCompressedEntrySize + 32 + 4);
  Result<Bytes> b = DecodeBlob(key_, written[1], ByteView(pack).subspan(written[1].offset, written[1].length));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(AsString(*b), std::string(5000, 'b'));
}

TEST_F(PackTest, CheckedEncodingIsTheSameFormatAndDecodes) {
  const std::string text(70000, 'x');
  const Bytes noise = testing::SeededRandomBytes(3, 70000);
  for (uint32_t version : {1u, 2u}) {
    for (CompressionMode mode : {CompressionMode::kAuto, CompressionMode::kOff, CompressionMode::kMax}) {
      for (ByteView plain : {AsBytes(text), ByteView(noise)}) {
        uint32_t ulen = 1;
        Result<Bytes> stored = EncodeBlobChecked(key_, BlobType::kData, plain, version, mode, &ulen);
        ASSERT_TRUE(stored.ok()) << stored.status().ToString();
        // With auto, random bytes are stored plain (AutoStoresRandomDataPlain).
        const bool plain_by_auto = mode == CompressionMode::kAuto && plain.data() == noise.data();
        EXPECT_EQ(ulen != 0, version == 2 && mode != CompressionMode::kOff && !plain_by_auto);
        PackedBlob b;
        b.type = BlobType::kData;
        b.id = Id::Hash(plain);
        b.length = static_cast<uint32_t>(stored->size());
        b.uncompressed_length = ulen;
        Result<Bytes> back = DecodeBlob(key_, b, *stored);
        ASSERT_TRUE(back.ok()) << back.status().ToString();
        EXPECT_TRUE(std::equal(back->begin(), back->end(), plain.begin(), plain.end()));
        EXPECT_TRUE(VerifyMac(key_, *stored).ok());
        Bytes flipped = *stored;
        flipped[flipped.size() / 2] ^= 1;
        EXPECT_EQ(VerifyMac(key_, flipped).code(), StatusCode::kCorruption);
      }
    }
  }
}

TEST_F(PackTest, CheckedEncodingRefusesOutputThatIsNotWhatWasHashed) {
  const std::string text(70000, 'x');
  std::string seen;
  uint32_t ulen = 0;
  // The check sees the decoded bytes; saying "not what was hashed" (a flipped bit) stores nothing.
  Result<Bytes> refused = EncodeBlobChecked(key_, BlobType::kData, AsBytes(text), 2,
                                            CompressionMode::kAuto, &ulen, [&](ByteView decoded) {
                                              seen = std::string(AsString(decoded));
                                              return false;
                                            });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInternal);
  EXPECT_THAT(refused.status().message(), HasSubstr("not stored"));
  EXPECT_EQ(seen, text);
  Result<Bytes> accepted = EncodeBlobChecked(key_, BlobType::kData, AsBytes(text), 2,
                                             CompressionMode::kAuto, &ulen,
                                             [&](ByteView decoded) { return AsString(decoded) == text; });
  EXPECT_TRUE(accepted.ok());
}

TEST_F(PackTest, Version1NeverCompressesAndV2OffStoresDataPlain) {
  std::vector<PackedBlob> v1, off;
  WriteTestPack({{BlobType::kTree, "{\"nodes\":[]}\n"}}, 1, CompressionMode::kAuto, &v1);
  EXPECT_EQ(v1[0].uncompressed_length, 0u);
  WriteTestPack({{BlobType::kData, "plain data"}, {BlobType::kTree, "{\"nodes\":[]}\n"}}, 2,
                CompressionMode::kOff, &off);
  EXPECT_EQ(off[0].uncompressed_length, 0u);          // data: off means off
  EXPECT_EQ(off[1].uncompressed_length, 13u);         // trees: always compressed in v2
}

// With auto compression, data blobs of random bytes (compressed or encrypted files), small or a
// big chunk, are stored plain and decode; text, a random blob's worth of text after a random start,
// a big random chunk with a stretch of text, random trees and kMax are still compressed.
TEST_F(PackTest, AutoStoresRandomDataPlain) {
  const Bytes random = testing::SeededRandomBytes(5, 6000);
  std::string text;
  for (int i = 0; text.size() < 6000; i++) text += "line " + std::to_string(i) + " of a log file\n";
  const Bytes mixed = ToBytes(std::string(AsString(ByteView(random).first(300))) + text);
  // A 1 MiB chunk of random bytes is stored plain too, unless a compressible stretch longer than
  // the sample stride hides anywhere in it (here: 20 KiB of text, not at a start/middle/end sample).
  const Bytes big = testing::SeededRandomBytes(6, 1 << 20);
  Bytes big_with_text = big;
  std::string long_text;
  for (int i = 0; long_text.size() < 20 << 10; i++) long_text += "row " + std::to_string(i) + "\n";
  std::copy(long_text.begin(), long_text.begin() + (20 << 10), big_with_text.begin() + 300'000);
  EXPECT_TRUE(LooksIncompressible(big));
  EXPECT_FALSE(LooksIncompressible(big_with_text));
  EXPECT_TRUE(LooksIncompressible(random));
  EXPECT_FALSE(LooksIncompressible(AsBytes(text)));
  EXPECT_FALSE(LooksIncompressible(mixed));
  EXPECT_FALSE(LooksIncompressible(ByteView(random).first(511)));  // too short to tell

  struct Case {
    BlobType type;
    ByteView plain;
    CompressionMode mode;
    bool compressed;
  };
  for (const Case& c : {Case{BlobType::kData, random, CompressionMode::kAuto, false},
                        Case{BlobType::kData, AsBytes(text), CompressionMode::kAuto, true},
                        Case{BlobType::kData, mixed, CompressionMode::kAuto, true},
                        Case{BlobType::kData, big, CompressionMode::kAuto, false},
                        Case{BlobType::kData, big_with_text, CompressionMode::kAuto, true},
                        Case{BlobType::kData, random, CompressionMode::kMax, true},
                        Case{BlobType::kTree, random, CompressionMode::kAuto, true}}) {
    uint32_t ulen = 0;
    Bytes stored = EncodeBlob(key_, c.type, c.plain, 2, c.mode, &ulen);
    EXPECT_EQ(ulen != 0, c.compressed) << c.plain.size() << " bytes, type " << BlobTypeName(c.type);
    PackedBlob b{c.type, Id::Hash(c.plain), 0, static_cast<uint32_t>(stored.size()), ulen};
    Result<Bytes> back = DecodeBlob(key_, b, stored);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_TRUE(std::equal(back->begin(), back->end(), c.plain.begin(), c.plain.end()));
  }
}

TEST_F(PackTest, FlippedHeaderByteIsCorruption) {
  std::vector<PackedBlob> written;
  Bytes pack = WriteTestPack({{BlobType::kData, "alpha"}, {BlobType::kData, "beta"}}, 2,
                             CompressionMode::kAuto, &written);
  Id id = Id::Hash(pack);
  pack[pack.size() - 10] ^= 0x01;
  uint64_t need = 0;
  Result<std::vector<PackedBlob>> h = ParsePackHeader(key_, id, pack.size(), pack, 2, &need);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(h.status().message(), HasSubstr(id.Short()));
}

TEST_F(PackTest, BadHeaderLengthAndTruncationAreCorruption) {
  std::vector<PackedBlob> written;
  Bytes pack = WriteTestPack({{BlobType::kData, "alpha"}}, 2, CompressionMode::kAuto, &written);
  Id id = Id::Hash(pack);
  uint64_t need = 0;
  Bytes bad = pack;
  EncodeLE32(bad.data() + bad.size() - 4, 0xffffff);
  EXPECT_EQ(ParsePackHeader(key_, id, bad.size(), bad, 2, &need).status().code(), StatusCode::kCorruption);
  Bytes cut(pack.begin() + 3, pack.end());  // 3 bytes lost at the front: blob exceeds the pack
  Result<std::vector<PackedBlob>> r = ParsePackHeader(key_, id, cut.size(), cut, 2, &need);
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_EQ(ParsePackHeader(key_, id, 10, ByteView(pack).last(10), 2, &need).status().code(),
            StatusCode::kCorruption);
}

TEST_F(PackTest, CompressedEntryInVersion1IsCorruption) {
  std::vector<PackedBlob> written;
  Bytes pack = WriteTestPack({{BlobType::kData, "alpha"}}, 2, CompressionMode::kAuto, &written);
  uint64_t need = 0;
  Result<std::vector<PackedBlob>> r = ParsePackHeader(key_, Id::Hash(pack), pack.size(), pack, 1, &need);
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
}

TEST_F(PackTest, DecodeBlobRejectsWrongId) {
  std::vector<PackedBlob> written;
  Bytes pack = WriteTestPack({{BlobType::kData, "alpha"}}, 2, CompressionMode::kAuto, &written);
  PackedBlob wrong = written[0];
  wrong.id = Id::Hash(AsBytes("other"));
  Result<Bytes> r = DecodeBlob(key_, wrong, ByteView(pack).subspan(0, wrong.length));
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(r.status().message(), HasSubstr(wrong.id.Short()));
}

TEST_F(PackTest, DecodeBlobInPlaceGivesWhatDecodeBlobGivesAndFailsAsItDoes) {
  const std::string text(70000, 't');
  const Bytes noise = testing::SeededRandomBytes(21, 70000);
  std::vector<PackedBlob> written;
  Bytes pack = WriteTestPack({{BlobType::kData, text},
                              {BlobType::kData, std::string(AsString(noise))},
                              {BlobType::kData, "x"}},
                             2, CompressionMode::kAuto, &written);
  ASSERT_NE(written[0].uncompressed_length, 0u);  // one compressed, one plain
  ASSERT_EQ(written[1].uncompressed_length, 0u);
  ScratchBuffer scratch;
  for (const PackedBlob& b : written) {
    Bytes stored(pack.begin() + b.offset, pack.begin() + b.offset + b.length);
    Result<Bytes> want = DecodeBlob(key_, b, stored);
    ASSERT_TRUE(want.ok());
    Result<ByteView> got = DecodeBlobInPlace(key_, b, stored, scratch);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(Bytes(got->begin(), got->end()), *want);
  }
  // A wrong ID, a flipped byte, a wrong uncompressed length: DecodeBlob's errors.
  PackedBlob wrong = written[1];
  wrong.id = Id::Hash(AsBytes("other"));
  Bytes stored(pack.begin() + wrong.offset, pack.begin() + wrong.offset + wrong.length);
  Result<ByteView> r = DecodeBlobInPlace(key_, wrong, stored, scratch);
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(r.status().message(), HasSubstr("content does not match its id"));
  Bytes flipped(pack.begin() + written[0].offset,
                pack.begin() + written[0].offset + written[0].length);
  flipped[40] ^= 4;
  const Bytes before = flipped;
  r = DecodeBlobInPlace(key_, written[0], flipped, scratch);
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(r.status().message(), HasSubstr(written[0].id.Short()));
  EXPECT_EQ(flipped, before);  // a bad MAC changes nothing
  PackedBlob too_long = written[0];
  too_long.uncompressed_length = uint32_t(1) << 31;  // a corrupt index: refused, not allocated
  stored.assign(pack.begin() + too_long.offset, pack.begin() + too_long.offset + too_long.length);
  r = DecodeBlobInPlace(key_, too_long, stored, scratch);
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(r.status().message(), HasSubstr("zstd"));
}

TEST_F(PackTest, ReadsLongHeaderWithSecondRequest) {
  testing::MemBackend mem;
  std::vector<std::pair<BlobType, std::string>> blobs;
  for (int i = 0; i < 100; i++) blobs.emplace_back(BlobType::kData, "blob number " + std::to_string(i));
  std::vector<PackedBlob> written;
  Bytes pack = WriteTestPack(blobs, 2, CompressionMode::kAuto, &written);
  Id id = Id::Hash(pack);
  ASSERT_TRUE(mem.Save(Handle{FileType::kPack, id.Hex()}, pack).ok());
  Result<std::vector<PackedBlob>> r = ReadPackHeader(mem, key_, id, pack.size(), 2);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, written);
}

// Every pack header of restic's own repositories parses to exactly what decoded/*/packs.txt lists.
TEST(PackFixtureTest, ResticPackHeadersMatchDecodedListing) {
  for (const std::string v : {"repo-v1", "repo-v2"}) {
    Result<CryptoKey> key = DecodeMasterKeyJson(
        AsBytes(testing::ReadFileToString(testing::TestDataPath("restic/decoded/" + v + "/masterkey.json"))));
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    // pack ID -> "type offset length uncompressed_length id" lines, in header order.
    std::map<std::string, std::vector<std::string>> want;
    std::ifstream in(testing::TestDataPath("restic/decoded/" + v + "/packs.txt"));
    std::string line, current;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string first;
      ls >> first;
      if (first == "pack") {
        ls >> current;
      } else if (first.rfind("type=", 0) == 0) {
        std::string desc, off, len, ulen, id;
        ls >> desc >> off >> len >> ulen >> id;
        want[current].push_back(first.substr(5) + " " + off.substr(7) + " " + len.substr(7) + " " +
                                ulen.substr(20) + " " + id.substr(3));
      }
    }
    ASSERT_FALSE(want.empty());
    int checked = 0;
    for (auto& e : std::filesystem::recursive_directory_iterator(testing::TestDataPath("restic/" + v + "/data"))) {
      if (!e.is_regular_file()) continue;
      std::string name = e.path().filename().string();
      Bytes data = ToBytes(testing::ReadFileToString(e.path()));
      uint64_t need = 0;
      Result<std::vector<PackedBlob>> h =
          ParsePackHeader(*key, *Id::FromHex(name), data.size(), data, v == "repo-v1" ? 1 : 2, &need);
      ASSERT_TRUE(h.ok()) << name << ": " << h.status().ToString();
      std::vector<std::string> got;
      for (const PackedBlob& b : *h) {
        int type = static_cast<int>(b.type) + (b.uncompressed_length ? 2 : 0);
        got.push_back(std::to_string(type) + " " + std::to_string(b.offset) + " " + std::to_string(b.length) + " " +
                      std::to_string(b.uncompressed_length) + " " + b.id.Hex());
      }
      EXPECT_EQ(got, want[name]) << v << " pack " << name;
      checked++;
    }
    EXPECT_EQ(checked, static_cast<int>(want.size()));
  }
}

}  // namespace
}  // namespace fsb::repo
