#include "repo/index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

Id TestId(uint64_t n) {
  std::string s = "blob-" + std::to_string(n);
  return Id::Hash(AsBytes(s));
}

TEST(IndexTest, FindsWhatWasAddedAcrossGrowth) {
  Index idx;
  const int n = 200000;  // forces several resizes from the initial 1024 slots
  for (int i = 0; i < n; i++) {
    PackedBlob b{i % 7 == 0 ? BlobType::kTree : BlobType::kData, TestId(i), uint32_t(i), 100 + uint32_t(i % 50), 0};
    ASSERT_TRUE(idx.Add(TestId(i / 1000 + 1000000), b));
  }
  EXPECT_EQ(idx.size(), size_t(n));
  EXPECT_EQ(idx.pack_count(), size_t(n / 1000));
  for (int i = 0; i < n; i += 997) {
    BlobType t = i % 7 == 0 ? BlobType::kTree : BlobType::kData;
    auto loc = idx.Find(t, TestId(i));
    ASSERT_TRUE(loc.has_value()) << i;
    EXPECT_EQ(loc->pack, TestId(i / 1000 + 1000000));
    EXPECT_EQ(loc->blob.offset, uint32_t(i));
    EXPECT_EQ(loc->blob.length, 100 + uint32_t(i % 50));
    // The same ID as the other type is a different blob.
    EXPECT_FALSE(idx.Has(t == BlobType::kTree ? BlobType::kData : BlobType::kTree, TestId(i)));
  }
  EXPECT_FALSE(idx.Has(BlobType::kData, TestId(n + 1)));
  // 48-byte slots at a load factor between 0.375 and 0.75: at most 128 bytes a blob plus packs.
  EXPECT_LE(idx.MemoryBytes() / n, 130u);
}

TEST(IndexTest, DuplicateAddKeepsFirstLocation) {
  Index idx;
  PackedBlob b{BlobType::kData, TestId(1), 0, 40, 0};
  EXPECT_TRUE(idx.Add(TestId(100), b));
  b.offset = 99;
  EXPECT_FALSE(idx.Add(TestId(200), b));
  EXPECT_EQ(idx.Find(BlobType::kData, TestId(1))->pack, TestId(100));
  EXPECT_EQ(idx.size(), 1u);
}

TEST(IndexTest, IndexFileRoundTrips) {
  IndexFile f;
  f.supersedes = {TestId(9)};
  f.packs.push_back({TestId(10), {{BlobType::kData, TestId(1), 0, 100, 300}, {BlobType::kData, TestId(2), 100, 50, 0}}});
  f.packs.push_back({TestId(11), {{BlobType::kTree, TestId(3), 0, 77, 200}}});
  std::string j = EncodeIndexFile(f);
  EXPECT_EQ(j.back(), '\n');
  EXPECT_EQ(j.rfind("{\"supersedes\":[\"", 0), 0u);
  // Key order as restic writes it; uncompressed_length only for compressed blobs.
  EXPECT_NE(j.find("\"type\":\"data\",\"offset\":100,\"length\":50}"), std::string::npos);
  Result<IndexFile> back = DecodeIndexFile(AsBytes(j), 2);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->supersedes, f.supersedes);
  ASSERT_EQ(back->packs.size(), 2u);
  EXPECT_EQ(back->packs[0].blobs, f.packs[0].blobs);
  EXPECT_EQ(back->packs[1].blobs, f.packs[1].blobs);
}

TEST(IndexTest, DecodesResticIndexFiles) {
  for (const auto& e : std::filesystem::directory_iterator(testing::TestDataPath("restic/decoded/repo-v2/index"))) {
    std::string j = testing::ReadFileToString(e.path());
    Result<IndexFile> f = DecodeIndexFile(AsBytes(j), 2);
    ASSERT_TRUE(f.ok()) << e.path() << ": " << f.status().ToString();
    EXPECT_FALSE(f->packs.empty());
  }
}

TEST(IndexTest, CompressedEntryInVersion1IsRefused) {
  std::string j = "{\"packs\":[{\"id\":\"" + TestId(1).Hex() + "\",\"blobs\":[{\"id\":\"" + TestId(2).Hex() +
                  "\",\"type\":\"data\",\"offset\":0,\"length\":40,\"uncompressed_length\":9}]}]}\n";
  EXPECT_TRUE(DecodeIndexFile(AsBytes(j), 2).ok());
  Result<IndexFile> v1 = DecodeIndexFile(AsBytes(j), 1);
  EXPECT_EQ(v1.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(v1.status().message(), ::testing::HasSubstr("version 1"));
}

TEST(IndexTest, MalformedIndexIsCorruption) {
  const std::string id = TestId(1).Hex();
  for (std::string bad : {std::string("{\"packs\":[{\"id\":\"xyz\",\"blobs\":[]}]}"),
                          std::string("{\"packs\":[{\"id\":\"") + id + "\"}]}",
                          std::string("{\"packs\":[{\"id\":\"") + id + "\",\"blobs\":[{\"id\":\"" + id +
                              "\",\"type\":\"weird\",\"offset\":0,\"length\":40}]}]}",
                          std::string("{\"packs\":[{\"id\":\"") + id + "\",\"blobs\":[{\"id\":\"" + id +
                              "\",\"type\":\"data\",\"offset\":-1,\"length\":40}]}]}",
                          std::string("{\"packs\":"), std::string("42"), std::string("")}) {
    Result<IndexFile> f = DecodeIndexFile(AsBytes(bad), 2);
    EXPECT_EQ(f.status().code(), StatusCode::kCorruption) << bad;
  }
}

TEST(IndexTest, LegacyFormatIsRead) {
  std::string j = "[{\"id\":\"" + TestId(1).Hex() + "\",\"blobs\":[{\"id\":\"" + TestId(2).Hex() +
                  "\",\"type\":\"tree\",\"offset\":0,\"length\":40}]}]";
  Result<IndexFile> f = DecodeIndexFile(AsBytes(j), 1);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->packs[0].blobs[0].type, BlobType::kTree);
}

}  // namespace
}  // namespace fsb::repo
