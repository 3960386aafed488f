#include "repo/node.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "repo/id.h"
#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

namespace fs = std::filesystem;

std::string NodeJson(const Node& node) {
  std::string out;
  AppendNodeJson(node, out);
  return out;
}

std::string JsonString(std::string_view s) {
  std::string out;
  AppendGoJsonString(s, out);
  return out;
}

Id TestId(uint8_t fill) {
  Id id;
  id.bytes.fill(fill);
  return id;
}

// A file node as restic 0.14 writes one, with Berlin summer times.
// Names for synthetic trees: mostly plain, some that need quoting.
std::string SyntheticName(int i) {
  std::string name = "file-" + std::to_string(1000000 + i) + ".dat";
  if (i % 7 == 0) name += "-caf\u00e9";
  if (i % 11 == 0) name += "\t<&>";
  if (i % 13 == 0) name += "\xff";
  return name;
}

Node FileNode(std::string name) {
  Node n;
  n.name = std::move(name);
  n.type = NodeType::kFile;
  n.mode = 0644;
  n.mtime = {1686832496, 123456789, 7200};
  n.atime = n.mtime;
  n.ctime = {1795394999, 421119625, 3600};
  n.user = "root";
  n.group = "root";
  n.inode = 1105926;
  n.device_id = 65024;
  n.size = 15;
  n.links = 1;
  n.content = {TestId(0xab)};
  return n;
}

Bytes B(std::string_view s) { return ToBytes(s); }

std::vector<fs::path> FixtureFiles(const std::string& kind) {
  std::vector<fs::path> files;
  for (const char* repo : {"repo-v1", "repo-v2"}) {
    const fs::path dir =
        fsb::testing::TestDataPath(std::string("restic/decoded/") + repo + "/" + kind);
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Restores TZ when it goes out of scope.
class ScopedTz {
 public:
  explicit ScopedTz(const char* tz) {
    if (const char* old = std::getenv("TZ")) old_ = old;
    setenv("TZ", tz, 1);
    tzset();
  }
  ~ScopedTz() {
    if (old_) {
      setenv("TZ", old_->c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

 private:
  std::optional<std::string> old_;
};

// ---------------------------------------------------------------------------------------------
// NodeTest

TEST(NodeTest, TypeNamesAreResticsStrings) {
  EXPECT_EQ(NodeTypeName(NodeType::kFile), "file");
  EXPECT_EQ(NodeTypeName(NodeType::kDir), "dir");
  EXPECT_EQ(NodeTypeName(NodeType::kSymlink), "symlink");
  EXPECT_EQ(NodeTypeName(NodeType::kDev), "dev");
  EXPECT_EQ(NodeTypeName(NodeType::kCharDev), "chardev");
  EXPECT_EQ(NodeTypeName(NodeType::kFifo), "fifo");
  EXPECT_EQ(NodeTypeName(NodeType::kSocket), "socket");
}

TEST(NodeTest, GoModeMatchesSpecVectorsBothWays) {
  // restic-repo-format.md §9.5, "values seen in the vectors".
  const std::vector<std::pair<uint32_t, uint32_t>> cases = {
      {S_IFREG | 0644, 420},          {S_IFREG | 0444, 292},
      {S_IFREG | 06755, 12583405},    {S_IFREG | 0000, 0},
      {S_IFDIR | 0755, 2147484141u},  {S_IFDIR | 0700, 2147484096u},
      {S_IFDIR | 01777, 2148532735u}, {S_IFLNK | 0777, 134218239},
      {S_IFBLK | 0644, 67109284},     {S_IFCHR | 0644, 69206436},
      {S_IFIFO | 0644, 33554852},     {S_IFSOCK | 0755, kGoModeSocket | 0755},
  };
  for (const auto& [st_mode, go_mode] : cases) {
    EXPECT_EQ(GoModeFromStat(st_mode), go_mode) << std::oct << st_mode;
    EXPECT_EQ(StatModeFromGo(go_mode), st_mode) << go_mode;
  }
}

TEST(NodeTest, ZeroModeIsOmitted) {
  Node n = FileNode("no-perms");
  n.mode = 0;
  EXPECT_THAT(NodeJson(n), Not(HasSubstr("\"mode\"")));
  n.mode = 0444;
  EXPECT_THAT(NodeJson(n), HasSubstr("\"type\":\"file\",\"mode\":292,\"mtime\""));
}

TEST(NodeTest, FileNodeHasResticFieldOrder) {
  EXPECT_EQ(NodeJson(FileNode("hello.txt")),
            "{\"name\":\"hello.txt\",\"type\":\"file\",\"mode\":420,"
            "\"mtime\":\"2023-06-15T14:34:56.123456789+02:00\","
            "\"atime\":\"2023-06-15T14:34:56.123456789+02:00\","
            "\"ctime\":\"2026-11-23T01:49:59.421119625+01:00\",\"uid\":0,\"gid\":0,"
            "\"user\":\"root\",\"group\":\"root\",\"inode\":1105926,\"device_id\":65024,"
            "\"size\":15,\"links\":1,\"content\":[\"" +
                TestId(0xab).Hex() + "\"]}");
}

TEST(NodeTest, ZeroFieldsAreOmittedButUidGidAndTimesAreNot) {
  Node n;
  n.name = "x";
  n.type = NodeType::kFifo;
  EXPECT_EQ(NodeJson(n),
            "{\"name\":\"x\",\"type\":\"fifo\",\"mtime\":\"1970-01-01T00:00:00Z\","
            "\"atime\":\"1970-01-01T00:00:00Z\",\"ctime\":\"1970-01-01T00:00:00Z\","
            "\"uid\":0,\"gid\":0,\"content\":null}");
}

TEST(NodeTest, EveryFieldInOrder) {
  Node n;
  n.name = "all";
  n.type = NodeType::kDir;
  n.mode = kGoModeDir | 0755;
  n.uid = 1000;
  n.gid = 100;
  n.user = "u";
  n.group = "g";
  n.inode = 1;
  n.device_id = 2;
  n.size = 3;
  n.links = 4;
  n.linktarget = "t";
  n.xattrs = {{"user.a", B("hi")}, {"user.empty", {}}};
  n.device = 5;
  n.subtree = TestId(0x01);
  n.error = "oops";
  EXPECT_EQ(NodeJson(n),
            "{\"name\":\"all\",\"type\":\"dir\",\"mode\":2147484141,"
            "\"mtime\":\"1970-01-01T00:00:00Z\",\"atime\":\"1970-01-01T00:00:00Z\","
            "\"ctime\":\"1970-01-01T00:00:00Z\",\"uid\":1000,\"gid\":100,\"user\":\"u\","
            "\"group\":\"g\",\"inode\":1,\"device_id\":2,\"size\":3,\"links\":4,"
            "\"linktarget\":\"t\",\"extended_attributes\":[{\"name\":\"user.a\",\"value\":"
            "\"aGk=\"},{\"name\":\"user.empty\",\"value\":\"\"}],\"device\":5,"
            "\"content\":null,\"subtree\":\"" +
                TestId(0x01).Hex() + "\",\"error\":\"oops\"}");
  Result<std::vector<Node>> back = DecodeTree(EncodeTree({n}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 1u);
  Node expected = n;
  expected.content_null = true;
  EXPECT_EQ((*back)[0], expected);
}

TEST(NodeTest, EmptyFileContentIsEmptyArrayAndOtherTypesNull) {
  Node file = FileNode("empty");
  file.size = 0;
  file.content.clear();
  EXPECT_THAT(NodeJson(file), HasSubstr("\"links\":1,\"content\":[]}"));
  for (NodeType t : {NodeType::kDir, NodeType::kSymlink, NodeType::kDev, NodeType::kCharDev,
                     NodeType::kFifo, NodeType::kSocket}) {
    Node n = FileNode("n");
    n.type = t;
    n.content = {TestId(1)};  // never written for a non-file
    EXPECT_THAT(NodeJson(n), HasSubstr("\"content\":null")) << NodeTypeName(t);
  }
}

TEST(NodeTest, NullContentOfFileIsReportedAndWrittenAsEmptyArray) {
  const std::string json =
      "{\"nodes\":[{\"name\":\"f\",\"type\":\"file\",\"mtime\":\"2023-06-15T14:34:56Z\","
      "\"content\":null},{\"name\":\"g\",\"type\":\"file\",\"content\":[]},"
      "{\"name\":\"h\",\"type\":\"file\"}]}\n";
  Result<std::vector<Node>> nodes = DecodeTree(B(json));
  ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
  ASSERT_EQ(nodes->size(), 3u);
  EXPECT_TRUE((*nodes)[0].content_null);
  EXPECT_TRUE((*nodes)[0].content.empty());
  EXPECT_FALSE((*nodes)[1].content_null);
  EXPECT_TRUE((*nodes)[2].content_null);  // absent decodes like null (Go: nil slice)
  EXPECT_THAT(NodeJson((*nodes)[0]), HasSubstr("\"content\":[]"));
}

TEST(NodeTest, NonUtf8LinkTargetRoundTripsThroughLinkTargetRaw) {
  Node n = FileNode("link");
  n.type = NodeType::kSymlink;
  n.mode = kGoModeSymlink | 0777;
  n.content.clear();
  n.size = 0;
  n.linktarget = std::string("caf\xe9/\xff", 6);
  const std::string json = NodeJson(n);
  EXPECT_THAT(json, HasSubstr("\"linktarget\":\"caf\\ufffd/\\ufffd\","
                              "\"linktarget_raw\":\"Y2Fm6S//\",\"content\":null"));
  Result<std::vector<Node>> back = DecodeTree(EncodeTree({n}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ((*back)[0].linktarget, n.linktarget);
}

TEST(NodeTest, Utf8LinkTargetHasNoRawField) {
  Node n = FileNode("link");
  n.type = NodeType::kSymlink;
  n.linktarget = "café/<x>";
  const std::string json = NodeJson(n);
  EXPECT_THAT(json, HasSubstr("\"linktarget\":\"café/\\u003cx\\u003e\""));
  EXPECT_THAT(json, Not(HasSubstr("linktarget_raw")));
}

TEST(NodeTest, LinkTargetRawOverridesLinkTargetWhateverTheOrder) {
  for (const char* json :
       {"{\"nodes\":[{\"name\":\"l\",\"type\":\"symlink\",\"linktarget\":\"lossy\","
        "\"linktarget_raw\":\"/w==\"}]}",
        "{\"nodes\":[{\"name\":\"l\",\"type\":\"symlink\",\"linktarget_raw\":\"/w==\","
        "\"linktarget\":\"lossy\"}]}"}) {
    Result<std::vector<Node>> nodes = DecodeTree(B(json));
    ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
    EXPECT_EQ((*nodes)[0].linktarget, "\xff");
  }
}

TEST(NodeTest, XattrsRoundTripWithBinaryValues) {
  Node n = FileNode("x");
  n.xattrs = {{"user.fsb.text", B("hello")}, {"user.fsb.binary", {0x00, 0x01, 0xfe, 0xff}}};
  EXPECT_THAT(NodeJson(n), HasSubstr("\"extended_attributes\":[{\"name\":\"user.fsb.text\","
                                     "\"value\":\"aGVsbG8=\"},{\"name\":\"user.fsb.binary\","
                                     "\"value\":\"AAH+/w==\"}],\"content\""));
  Result<std::vector<Node>> back = DecodeTree(EncodeTree({n}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ((*back)[0], n);
}

TEST(NodeTest, UnknownFieldsOfAnyTypeAreIgnored) {
  const std::string json =
      "{\"extra\":{\"a\":[1,2,{\"b\":null}]},\"nodes\":[{\"name\":\"f\",\"future\":[true,false,"
      "null,-1.5e+3,\"s\\u00e9\\n\"],\"type\":\"file\",\"generic_attributes\":{\"x\":\"y\"},"
      "\"size\":7,\"obj\":{},\"arr\":[],\"num\":0,\"content\":[]}],\"z\":\"\"}";
  Result<std::vector<Node>> nodes = DecodeTree(B(json));
  ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].name, "f");
  EXPECT_EQ((*nodes)[0].size, 7u);
}

TEST(NodeTest, KeysMatchCaseInsensitivelyAsInGo) {
  Result<std::vector<Node>> nodes =
      DecodeTree(B("{\"Nodes\":[{\"NAME\":\"f\",\"Type\":\"dir\",\"Mode\":493}]}"));
  ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].type, NodeType::kDir);
  EXPECT_EQ((*nodes)[0].mode, 493u);
}

TEST(NodeTest, NullFieldsLeaveZeroValues) {
  Result<std::vector<Node>> nodes =
      DecodeTree(B("{\"nodes\":[{\"name\":\"f\",\"type\":\"dir\",\"mode\":null,\"mtime\":null,"
                   "\"user\":null,\"size\":null,\"subtree\":null,\"extended_attributes\":null}]}"));
  ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
  EXPECT_EQ((*nodes)[0].mode, 0u);
  EXPECT_EQ((*nodes)[0].mtime, Timestamp{});
  EXPECT_FALSE((*nodes)[0].subtree.has_value());
}

TEST(NodeTest, IrregularTypeIsCorruption) {
  Result<std::vector<Node>> nodes =
      DecodeTree(B("{\"nodes\":[{\"name\":\"f\",\"type\":\"irregular\",\"content\":null}]}\n"));
  ASSERT_FALSE(nodes.ok());
  EXPECT_EQ(nodes.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(nodes.status().message(), HasSubstr("irregular"));
  EXPECT_THAT(nodes.status().message(), HasSubstr("node 0"));
}

TEST(NodeTest, MissingTypeOrNameIsCorruption) {
  for (const char* json : {"{\"nodes\":[{\"name\":\"f\"}]}", "{\"nodes\":[{\"type\":\"file\"}]}",
                           "{\"nodes\":[{\"name\":\"\",\"type\":\"file\"}]}",
                           "{\"nodes\":[{\"name\":\"f\",\"type\":\"\"}]}"}) {
    Result<std::vector<Node>> nodes = DecodeTree(B(json));
    ASSERT_FALSE(nodes.ok()) << json;
    EXPECT_EQ(nodes.status().code(), StatusCode::kCorruption) << json;
  }
}

TEST(NodeTest, BadFieldValuesAreCorruptionNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\"mode\":-1", "mode"},
      {"\"mode\":1.0", "mode"},
      {"\"mode\":1e3", "mode"},
      {"\"mode\":4294967296", "mode"},
      {"\"mode\":\"420\"", "mode"},
      {"\"uid\":01", "uid"},
      {"\"size\":18446744073709551616", "size"},
      {"\"inode\":true", "inode"},
      {"\"mtime\":\"2023-06-15 14:34:56Z\"", "mtime"},
      {"\"ctime\":\"2023-06-15T14:34:56\"", "ctime"},
      {"\"atime\":12", "atime"},
      {"\"content\":[\"abc\"]", "content"},
      {"\"content\":[null]", "content"},
      {"\"content\":[\"" + std::string(63, 'a') + "g\"]", "content"},
      {"\"content\":{}", "content"},
      {"\"subtree\":\"xyz\"", "subtree"},
      {"\"user\":5", "user"},
      {"\"extended_attributes\":[{\"name\":\"a\",\"value\":\"!!!!\"}]", "extended_attributes"},
      {"\"extended_attributes\":[null]", "extended_attributes"},
      {"\"linktarget_raw\":\"abc\"", "linktarget_raw"},
      {"\"name\":\"a\\\\q\"", "name"},
  };
  for (const auto& [field_json, field] : cases) {
    const std::string json = "{\"nodes\":[{\"name\":\"f\",\"type\":\"file\"," + field_json + "}]}";
    Result<std::vector<Node>> nodes = DecodeTree(B(json));
    ASSERT_FALSE(nodes.ok()) << json;
    EXPECT_EQ(nodes.status().code(), StatusCode::kCorruption) << json;
    EXPECT_THAT(nodes.status().message(), HasSubstr(field)) << json;
  }
}

TEST(NodeTest, UppercaseHexIdsAreAccepted) {
  const std::string hex(64, 'A');
  Result<std::vector<Node>> nodes =
      DecodeTree(B("{\"nodes\":[{\"name\":\"d\",\"type\":\"dir\",\"subtree\":\"" + hex + "\"}]}"));
  ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
  EXPECT_EQ((*nodes)[0].subtree, TestId(0xaa));
}

// ---------------------------------------------------------------------------------------------
// TreeTest

TEST(TreeTest, EmptyTreeHasResticsId) {
  const Bytes tree = EncodeTree({});
  EXPECT_EQ(AsString(tree), "{\"nodes\":[]}\n");
  EXPECT_EQ(Id::Hash(tree).Hex(),
            "ac08ce34ba4f8123618661bef2425f7028ffb9ac740578a3ee88684d2523fee8");
  Result<std::vector<Node>> nodes = DecodeTree(tree);
  ASSERT_TRUE(nodes.ok());
  EXPECT_TRUE(nodes->empty());
}

TEST(TreeTest, EveryReferenceTreeReencodesByteForByte) {
  const std::vector<fs::path> files = FixtureFiles("trees");
  ASSERT_GE(files.size(), 18u);
  for (const fs::path& file : files) {
    SCOPED_TRACE(file.string());
    const std::string json = fsb::testing::ReadFileToString(file);
    Result<std::vector<Node>> nodes = DecodeTree(AsBytes(json));
    ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
    const Bytes again = EncodeTree(*nodes);
    EXPECT_EQ(AsString(again), json);
    EXPECT_EQ(Id::Hash(again).Hex(), file.stem().string());
    for (size_t i = 1; i < nodes->size(); ++i) {
      EXPECT_LT((*nodes)[i - 1].name, (*nodes)[i].name);  // restic sorts by raw name bytes
    }
  }
}

TEST(TreeTest, ReferenceTreeNamesDecodeToRawBytes) {
  const std::string json = fsb::testing::ReadFileToString(fsb::testing::TestDataPath(
      "restic/decoded/repo-v2/trees/"
      "e007e5a37199e49cf6318b44a0f201ad405d1ec5e3b4f4e90980b84872a0cc53.json"));
  Result<std::vector<Node>> nodes = DecodeTree(AsBytes(json));
  ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
  std::vector<std::string> names;
  for (const Node& n : *nodes) names.push_back(n.name);
  EXPECT_EQ(names, (std::vector<std::string>{"Zebra", "apple", "café-日本.txt", "html<&>",
                                             "latin1-\xe9.txt", "quote\"and\\backslash",
                                             "soft\u00adhyphen", "tab\tin-name"}));
}

TEST(TreeTest, ReferenceTreeFieldsDecode) {
  const std::string json = fsb::testing::ReadFileToString(fsb::testing::TestDataPath(
      "restic/decoded/repo-v2/trees/"
      "badadf1b05e1b51ada66cefdc29dc69e2f81cf694befdc5da8cb1690417d7478.json"));
  Result<std::vector<Node>> nodes = DecodeTree(AsBytes(json));
  ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
  ASSERT_EQ(nodes->size(), 13u);
  const Node& big = (*nodes)[0];
  EXPECT_EQ(big.name, "big.bin");
  EXPECT_EQ(big.size, 3145728u);
  EXPECT_EQ(big.content.size(), 3u);
  EXPECT_EQ(big.content[0].Hex(),
            "8aa75d67934ca84534ecabced29216ec8accb3515e97054aead96181ecd1e6d1");
  EXPECT_EQ(big.mtime, (Timestamp{1686832498, 123456791, 7200}));
  EXPECT_EQ(big.ctime, (Timestamp{1795394999, 421119625, 3600}));
  const Node& dir = (*nodes)[1];
  EXPECT_EQ(dir.type, NodeType::kDir);
  EXPECT_EQ(dir.subtree->Hex(), "567e10819b29d5787a98769c4faedca8f4484b1a3ddad2c28a3f7f912494f719");
  const Node& link = (*nodes)[6];
  EXPECT_EQ(link.type, NodeType::kSymlink);
  EXPECT_EQ(link.linktarget, "/nonexistent/absolute/target");
  EXPECT_EQ(StatModeFromGo(link.mode), uint32_t{S_IFLNK | 0777});
}

TEST(TreeTest, MissingNewlineAndWhitespaceAreAccepted) {
  for (const char* json :
       {"{\"nodes\":[]}", " {\"nodes\" : [ ] } \n\t\r\n", "{\"nodes\":null}", "{}",
        "{ \"nodes\" : [ { \"name\" : \"a\" , \"type\" : \"fifo\" } ] }"}) {
    Result<std::vector<Node>> nodes = DecodeTree(B(json));
    EXPECT_TRUE(nodes.ok()) << json << ": " << nodes.status().ToString();
  }
}

TEST(TreeTest, MalformedJsonIsCorruption) {
  const std::vector<std::string> cases = {
      "",
      "\n",
      "[]",
      "null",
      "{\"nodes\":[]}}",
      "{\"nodes\":[]}\nx",
      "{\"nodes\":[],}",
      "{\"nodes\":[,]}",
      "{\"nodes\":[{},]}",
      "{\"nodes\":{}}",
      "{\"nodes\":[null]}",
      "{\"nodes\":[1]}",
      "{\"nodes\" []}",
      "{nodes:[]}",
      "{'nodes':[]}",
      "{\"nodes\":[]",
      "{\"x\":tru,\"nodes\":[]}",
      "{\"x\":01,\"nodes\":[]}",
      "{\"x\":1.,\"nodes\":[]}",
      "{\"x\":-,\"nodes\":[]}",
      "{\"x\":\"a\\x\",\"nodes\":[]}",
      "{\"x\":\"a\\u12\",\"nodes\":[]}",
      "{\"x\":\"tab\there\",\"nodes\":[]}",
      "{\"x\":\"nl\nhere\",\"nodes\":[]}",
      "{\"nodes\":[{\"name\":\"a\",\"type\":\"file\"}{\"name\":\"b\",\"type\":\"file\"}]}",
  };
  for (const std::string& json : cases) {
    Result<std::vector<Node>> nodes = DecodeTree(B(json));
    ASSERT_FALSE(nodes.ok()) << json;
    EXPECT_EQ(nodes.status().code(), StatusCode::kCorruption) << json;
    EXPECT_THAT(nodes.status().message(), HasSubstr("decode tree")) << json;
  }
}

TEST(TreeTest, DeepNestingInUnknownFieldIsCorruptionNotCrash) {
  const std::string json =
      "{\"x\":" + std::string(100000, '[') + std::string(100000, ']') + ",\"nodes\":[]}";
  Result<std::vector<Node>> nodes = DecodeTree(B(json));
  ASSERT_FALSE(nodes.ok());
  EXPECT_EQ(nodes.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(nodes.status().message(), HasSubstr("nested"));
}

TEST(TreeTest, EveryTruncationIsCorruption) {
  for (const fs::path& file : FixtureFiles("trees")) {
    const std::string json = fsb::testing::ReadFileToString(file);
    ASSERT_EQ(json.back(), '\n');
    for (size_t len = 0; len + 1 < json.size(); ++len) {
      Result<std::vector<Node>> nodes = DecodeTree(AsBytes(std::string_view(json).substr(0, len)));
      ASSERT_FALSE(nodes.ok()) << file << " truncated to " << len;
      ASSERT_EQ(nodes.status().code(), StatusCode::kCorruption);
    }
  }
}

TEST(TreeTest, ChangedBytesAreCorruptionOrDecodeWithoutCrashing) {
  // Every byte of a varied tree replaced by a handful of troublemakers: the decoder must either
  // fail cleanly or succeed with a result that re-encodes (it never reads out of bounds: run
  // under FSB_SANITIZE=address to see that).
  const std::string json = fsb::testing::ReadFileToString(fsb::testing::TestDataPath(
      "restic/decoded/repo-v2/trees/"
      "e007e5a37199e49cf6318b44a0f201ad405d1ec5e3b4f4e90980b84872a0cc53.json"));
  int failures = 0;
  for (size_t i = 0; i < json.size(); ++i) {
    for (char c : {'"', '\\', '{', '}', '[', ']', ',', ':', '0', 'u', '\0', '\xff', '\xc3'}) {
      if (json[i] == c) continue;
      std::string bad = json;
      bad[i] = c;
      Result<std::vector<Node>> nodes = DecodeTree(AsBytes(bad));
      if (!nodes.ok()) {
        ASSERT_EQ(nodes.status().code(), StatusCode::kCorruption);
        ++failures;
      } else {
        EncodeTree(*nodes);
      }
    }
  }
  EXPECT_GT(failures, 0);
}

TEST(TreeTest, LargeTreeRoundTrips) {
  std::vector<Node> nodes;
  constexpr int kNodes = 20000;
  for (int i = 0; i < kNodes; ++i) {
    Node n = FileNode(SyntheticName(i));
    n.inode = 1000000 + static_cast<uint64_t>(i);
    n.size = static_cast<uint64_t>(i) * 4096;
    n.content = {TestId(static_cast<uint8_t>(i)), TestId(static_cast<uint8_t>(i + 1))};
    nodes.push_back(std::move(n));
  }
  const Bytes tree = EncodeTree(nodes);
  Result<std::vector<Node>> back = DecodeTree(tree);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, nodes);
}

// ---------------------------------------------------------------------------------------------
// SnapshotTest

TEST(SnapshotTest, EveryReferenceSnapshotReencodesByteForByte) {
  const std::vector<fs::path> files = FixtureFiles("snapshots");
  ASSERT_GE(files.size(), 5u);
  for (const fs::path& file : files) {
    SCOPED_TRACE(file.string());
    const std::string json = fsb::testing::ReadFileToString(file);
    Result<Snapshot> s = DecodeSnapshot(AsBytes(json));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ(EncodeSnapshot(*s), json);
  }
}

TEST(SnapshotTest, ReferenceSnapshotFieldsDecode) {
  const std::string json = fsb::testing::ReadFileToString(fsb::testing::TestDataPath(
      "restic/decoded/repo-v2/snapshots/"
      "3c9011e92704c4174e3ceaf3e8e5f890962dd859aa6e292ff9d017dccede633a.json"));
  Result<Snapshot> s = DecodeSnapshot(AsBytes(json));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->time, (Timestamp{1795395019, 296299662, 3600}));
  ASSERT_TRUE(s->parent.has_value());
  EXPECT_EQ(s->parent->Hex(), "982f3458405079c411730f665f2f5e6124820410f3cfcdd83b81d04ac414adf0");
  EXPECT_EQ(s->tree.Hex(), "badadf1b05e1b51ada66cefdc29dc69e2f81cf694befdc5da8cb1690417d7478");
  EXPECT_EQ(s->paths, (std::vector<std::string>{"/host_pods/00000000-0000-4000-8000-000000000001/"
                                                "volumes/kubernetes.io~empty-dir/testdata"}));
  EXPECT_EQ(s->hostname, "fsb-testhost");
  EXPECT_EQ(s->username, "root");
  EXPECT_EQ(s->uid, 0u);
  EXPECT_EQ(s->tags, (std::vector<std::string>{"testdata", "second"}));
  EXPECT_FALSE(s->original.has_value());
}

TEST(SnapshotTest, EveryFieldInResticOrder) {
  Snapshot s;
  s.time = {1795395019, 296299662, -18000};
  s.parent = TestId(0x11);
  s.tree = TestId(0x22);
  s.paths = {"/a", "/b<c>"};
  s.hostname = "h";
  s.username = "u";
  s.uid = 1000;
  s.gid = 1001;
  s.excludes = {"*.tmp"};
  s.tags = {"t1", "t2"};
  s.original = TestId(0x33);
  s.program_version = "fsb 0.1.0";
  s.summary_json = "{\"files_new\":1,\"backup_start\":\"2026-11-23T01:50:19Z\"}";
  const std::string json = EncodeSnapshot(s);
  EXPECT_EQ(json, "{\"time\":\"2026-11-22T19:50:19.296299662-05:00\",\"parent\":\"" +
                      TestId(0x11).Hex() + "\",\"tree\":\"" + TestId(0x22).Hex() +
                      "\",\"paths\":[\"/a\",\"/b\\u003cc\\u003e\"],\"hostname\":\"h\","
                      "\"username\":\"u\",\"uid\":1000,\"gid\":1001,\"excludes\":[\"*.tmp\"],"
                      "\"tags\":[\"t1\",\"t2\"],\"original\":\"" +
                      TestId(0x33).Hex() +
                      "\",\"program_version\":\"fsb 0.1.0\",\"summary\":{\"files_new\":1,"
                      "\"backup_start\":\"2026-11-23T01:50:19Z\"}}");
  Result<Snapshot> back = DecodeSnapshot(AsBytes(json));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);
}

TEST(SnapshotTest, EmptyFieldsAreOmittedAsRestic) {
  Snapshot s;
  s.time = {0, 0, 0};
  s.tree = TestId(0x22);
  s.paths = {"/data"};
  EXPECT_EQ(EncodeSnapshot(s), "{\"time\":\"1970-01-01T00:00:00Z\",\"tree\":\"" +
                                   TestId(0x22).Hex() + "\",\"paths\":[\"/data\"]}");
}

TEST(SnapshotTest, SummaryIsKeptVerbatimAndCompacted) {
  const std::string json =
      "{\"time\":\"2026-11-23T01:50:19+01:00\",\"tree\":\"" + TestId(1).Hex() +
      "\",\"paths\":[\"/x\"],\"summary\": { \"z\" : 1, \"a\" : \"s p\\\"a ce\", \"n\":[1, 2] } }";
  Result<Snapshot> s = DecodeSnapshot(AsBytes(json));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->summary_json, "{\"z\":1,\"a\":\"s p\\\"a ce\",\"n\":[1,2]}");
}

TEST(SnapshotTest, UnknownFieldsAndNullsAreAccepted) {
  const std::string json =
      "{\"time\":\"2026-11-23T01:50:19+01:00\",\"future\":{\"x\":[1]},"
      "\"tree\":\"" +
      TestId(1).Hex() + "\",\"paths\":null,\"parent\":null,\"tags\":null,\"summary\":null}";
  Result<Snapshot> s = DecodeSnapshot(AsBytes(json));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(s->paths.empty());
  EXPECT_FALSE(s->parent.has_value());
  EXPECT_TRUE(s->summary_json.empty());
}

TEST(SnapshotTest, MalformedSnapshotsAreCorruption) {
  const std::string tree = "\"tree\":\"" + TestId(1).Hex() + "\"";
  const std::string time = "\"time\":\"2026-11-23T01:50:19+01:00\"";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", ""},
      {"{" + time + "}", "tree"},
      {"{" + tree + "}", "time"},
      {"{" + time + ",\"tree\":null}", "tree"},
      {"{" + time + ",\"tree\":\"abc\"}", "tree"},
      {"{\"time\":\"yesterday\"," + tree + "}", "time"},
      {"{" + time + "," + tree + ",\"uid\":-1}", "uid"},
      {"{" + time + "," + tree + ",\"paths\":\"/x\"}", "paths"},
      {"{" + time + "," + tree + ",\"summary\":[1]}", "summary"},
      {"{" + time + "," + tree + ",\"parent\":\"zz\"}", "parent"},
      {"{" + time + "," + tree + "} x", "after"},
  };
  for (const auto& [json, what] : cases) {
    Result<Snapshot> s = DecodeSnapshot(AsBytes(json));
    ASSERT_FALSE(s.ok()) << json;
    EXPECT_EQ(s.status().code(), StatusCode::kCorruption) << json;
    EXPECT_THAT(s.status().message(), HasSubstr(what)) << json;
  }
}

TEST(SnapshotTest, EveryTruncationIsCorruption) {
  for (const fs::path& file : FixtureFiles("snapshots")) {
    const std::string json = fsb::testing::ReadFileToString(file);
    for (size_t len = 0; len < json.size(); ++len) {
      Result<Snapshot> s = DecodeSnapshot(AsBytes(std::string_view(json).substr(0, len)));
      ASSERT_FALSE(s.ok()) << file << " truncated to " << len;
      ASSERT_EQ(s.status().code(), StatusCode::kCorruption);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GoJsonTest

TEST(GoJsonTest, SpecNameTableEncodesExactly) {
  // restic-repo-format.md §9.3 rule 3: raw name → JSON value in the tree.
  const std::vector<std::pair<std::string, std::string>> table = {
      {"café-日本.txt", "\"café-日本.txt\""},
      {"html<&>", "\"html\\u003c\\u0026\\u003e\""},
      {"quote\"and\\backslash", "\"quote\\\\\\\"and\\\\\\\\backslash\""},
      {"tab\tin-name", "\"tab\\\\tin-name\""},
      {"soft\u00adhyphen", "\"soft\\\\u00adhyphen\""},
      {"latin1-\xe9.txt", "\"latin1-\\\\xe9.txt\""},
  };
  for (const auto& [raw, json] : table) {
    EXPECT_EQ(JsonString(GoQuoteName(raw)), json) << raw;
    Node n = FileNode(raw);
    EXPECT_THAT(NodeJson(n), ::testing::StartsWith("{\"name\":" + json + ",\"type\"")) << raw;
    Result<std::string> back = GoUnquoteName(GoQuoteName(raw));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, raw);
  }
}

TEST(GoJsonTest, QuoteNameFollowsStrconvQuote) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"plain name.txt", "plain name.txt"},
      {std::string("\a\b\f\n\r\t\v", 7), "\\a\\b\\f\\n\\r\\t\\v"},
      {std::string("\x00\x01\x1f\x7f", 4), "\\x00\\x01\\x1f\\x7f"},
      {"it's", "it's"},
      {"\xc3\x28", "\\xc3("},                        // invalid continuation
      {"\xc0\x80", "\\xc0\\x80"},                    // overlong NUL
      {"\xed\xa0\x80", "\\xed\\xa0\\x80"},           // UTF-8 encoded surrogate
      {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"},  // above U+10FFFF
      {"\xe6\x97", "\\xe6\\x97"},                    // truncated sequence
      {"\u00a0", "\\u00a0"},                         // no-break space: Zs, not printable
      {"\u00e9\u00ff", "\u00e9\u00ff"},
      {"\u2028\u2029", "\\u2028\\u2029"},
      {"\ufeff", "\\ufeff"},  // Cf
      {"\ue000", "\\ue000"},  // private use
      {"\u0378", "\\u0378"},  // unassigned
      {"\ufffd", "\ufffd"},   // the replacement character itself is printable
      {"\U0001F600", "\U0001F600"},
      {"\U000E0001", "\\U000e0001"},  // language tag: Cf
      {"\U0010FFFF", "\\U0010ffff"},
      {"\u9ffc", "\u9ffc"},           // last CJK ideograph of Unicode 13
      {"\u9ffd", "\\u9ffd"},          // Unicode 14: Go 1.19 escapes it
      {"\u0870", "\\u0870"},          // Unicode 14 Arabic
      {"\U0001FAD6", "\U0001FAD6"},   // Unicode 13 emoji
      {"\U0001FAD7", "\\U0001fad7"},  // Unicode 14 emoji
  };
  for (const auto& [raw, quoted] : cases) {
    EXPECT_EQ(GoQuoteName(raw), quoted);
    Result<std::string> back = GoUnquoteName(quoted);
    ASSERT_TRUE(back.ok()) << quoted << ": " << back.status().ToString();
    EXPECT_EQ(*back, raw);
  }
}

TEST(GoJsonTest, UnquoteInvertsQuoteForRandomBytes) {
  const uint64_t seed = 20240615;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // Bias toward bytes that matter: ASCII specials, UTF-8 lead and continuation bytes.
  const std::string interesting = std::string("\"\\\n\t\x7f\x00<>&'", 10) +
                                  "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80\xed\xa0\x80\xff";
  for (int i = 0; i < 20000; ++i) {
    std::string raw(rng() % 24, '\0');
    for (char& c : raw) {
      const uint64_t r = rng();
      c = (r & 1) ? interesting[(r >> 1) % interesting.size()] : static_cast<char>(r >> 8);
    }
    const std::string quoted = GoQuoteName(raw);
    Result<std::string> back = GoUnquoteName(quoted);
    ASSERT_TRUE(back.ok()) << quoted;
    ASSERT_EQ(*back, raw) << quoted;
    // The fused quote-and-escape of AppendNodeJson equals quoting then JSON-escaping.
    Node n = FileNode(raw);
    ASSERT_THAT(NodeJson(n),
                ::testing::StartsWith("{\"name\":" + JsonString(quoted) + ",\"type\""));
    // And the whole node survives a tree round trip.
    if (raw.empty()) continue;
    Result<std::vector<Node>> nodes = DecodeTree(EncodeTree({n}));
    ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
    ASSERT_EQ((*nodes)[0].name, raw);
  }
}

TEST(GoJsonTest, UnquoteAcceptsEveryFormStrconvAccepts) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"caf\u00e9", "caf\u00e9"},
      {"\\x41\\101\\u00e9\\U0001F600", "AA\u00e9\U0001F600"},
      {"\\xE9", "\xe9"},
      {"\\\\\\\"\\'", "\\\"'"},
      {"\\a\\b\\f\\n\\r\\t\\v", "\a\b\f\n\r\t\v"},
      {"\\000", std::string("\0", 1)},
      {"\\377", "\xff"},
      {"\t raw tab", "\t raw tab"},
      {"bad\xff", "bad\ufffd"},  // raw invalid UTF-8 becomes U+FFFD, as in Go
  };
  for (const auto& [quoted, raw] : cases) {
    Result<std::string> got = GoUnquoteName(quoted);
    ASSERT_TRUE(got.ok()) << quoted << ": " << got.status().ToString();
    EXPECT_EQ(*got, raw) << quoted;
  }
}

TEST(GoJsonTest, UnquoteRejectsMalformedEscapes) {
  for (const char* quoted : {"trailing\\", "\\q", "\\x4", "\\x4g", "\\u12", "\\ud800",
                             "\\U00110000", "\\400", "\\08", "raw\"quote", "raw\nnewline"}) {
    Result<std::string> got = GoUnquoteName(quoted);
    ASSERT_FALSE(got.ok()) << quoted;
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument) << quoted;
  }
}

TEST(GoJsonTest, JsonStringFollowsEncodingJson) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"plain", "\"plain\""},
      {"\"\\", "\"\\\"\\\\\""},
      {"\n\r\t", "\"\\n\\r\\t\""},
      {std::string("\x00\x01\b\f\x1f", 5), "\"\\u0000\\u0001\\u0008\\u000c\\u001f\""},
      {"<>&", "\"\\u003c\\u003e\\u0026\""},
      {"\x7f/'", "\"\x7f/'\""},
      {"\u2028\u2029", "\"\\u2028\\u2029\""},
      {"\xff\xc3", "\"\\ufffd\\ufffd\""},
      {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},
      {"é日\U0001F600", "\"é日\U0001F600\""},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(JsonString(in), out);
}

TEST(GoJsonTest, JsonEscapesAndSurrogatesDecodeAsGo) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\\u00e9\\/\\b\\f\\n\\r\\t\\\"\\\\", "\u00e9/\b\f\n\r\t\"\\"},
      {"\\ud83d\\ude00", "\U0001F600"},  // surrogate pair
      {"\\ud83dx", "\ufffdx"},           // lone high surrogate
      {"\\ude00", "\ufffd"},             // lone low surrogate
      {"\\ud83d\\u0041", "\ufffdA"},     // high surrogate then a non-surrogate escape
      {"a\xffz", "a\ufffdz"},            // invalid UTF-8 in JSON text
  };
  for (const auto& [escaped, decoded] : cases) {
    const std::string json =
        "{\"nodes\":[{\"name\":\"n\",\"type\":\"file\",\"user\":\"" + escaped + "\"}]}";
    Result<std::vector<Node>> nodes = DecodeTree(B(json));
    ASSERT_TRUE(nodes.ok()) << escaped << ": " << nodes.status().ToString();
    EXPECT_EQ((*nodes)[0].user, decoded) << escaped;
  }
}

TEST(GoJsonTest, TimestampFractionIsTrimmed) {
  EXPECT_EQ(FormatTimestamp({1686832497, 123456790, 7200}), "2023-06-15T14:34:57.12345679+02:00");
  EXPECT_EQ(FormatTimestamp({1686832497, 0, 7200}), "2023-06-15T14:34:57+02:00");
  EXPECT_EQ(FormatTimestamp({1686832497, 100000000, 7200}), "2023-06-15T14:34:57.1+02:00");
  EXPECT_EQ(FormatTimestamp({1686832497, 1, 7200}), "2023-06-15T14:34:57.000000001+02:00");
}

TEST(GoJsonTest, TimestampZoneIsZOrSignedOffset) {
  EXPECT_EQ(FormatTimestamp({1686832497, 5, 0}), "2023-06-15T12:34:57.000000005Z");
  EXPECT_EQ(FormatTimestamp({1686832497, 0, -18000}), "2023-06-15T07:34:57-05:00");
  EXPECT_EQ(FormatTimestamp({1686832497, 0, -12600}), "2023-06-15T09:04:57-03:30");
  EXPECT_EQ(FormatTimestamp({1686832497, 0, 20700}), "2023-06-15T18:19:57+05:45");
  EXPECT_EQ(FormatTimestamp({0, 0, 0}), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatTimestamp({-1, 999999999, 0}), "1969-12-31T23:59:59.999999999Z");
  EXPECT_EQ(FormatTimestamp({-62135596800, 0, 0}), "0001-01-01T00:00:00Z");  // Go's zero time
}

TEST(GoJsonTest, TimestampYearIsClampedAsRestic) {
  EXPECT_EQ(FormatTimestamp({253402300800, 0, 0}), "9999-01-01T00:00:00Z");  // year 10000
  EXPECT_EQ(FormatTimestamp({-62198755200, 0, 0}), "0000-01-01T00:00:00Z");  // year -1
  EXPECT_EQ(FormatTimestamp({INT64_MAX, 0, 0}).substr(0, 4), "9999");
  EXPECT_EQ(FormatTimestamp({INT64_MIN, 0, 3600}).substr(0, 4), "0000");
}

TEST(GoJsonTest, ParseTimestampAcceptsOneToNineFractionDigits) {
  std::string text = "2023-06-15T14:34:57.";
  uint32_t expected = 0;
  for (int digits = 1; digits <= 9; ++digits) {
    text += static_cast<char>('0' + digits);
    expected = expected * 10 + static_cast<uint32_t>(digits);
    uint32_t nsec = expected;
    for (int i = digits; i < 9; ++i) nsec *= 10;
    Result<Timestamp> t = ParseTimestamp(text + "+02:00");
    ASSERT_TRUE(t.ok()) << text << ": " << t.status().ToString();
    EXPECT_EQ(*t, (Timestamp{1686832497, nsec, 7200})) << text;
    EXPECT_EQ(FormatTimestamp(*t), text + "+02:00");
  }
}

TEST(GoJsonTest, ParseTimestampHandlesZonesAndOldDates) {
  EXPECT_EQ(*ParseTimestamp("2023-06-15T12:34:57Z"), (Timestamp{1686832497, 0, 0}));
  EXPECT_EQ(*ParseTimestamp("2023-06-15T07:34:57-05:00"), (Timestamp{1686832497, 0, -18000}));
  EXPECT_EQ(*ParseTimestamp("2023-06-15T09:04:57-03:30"), (Timestamp{1686832497, 0, -12600}));
  EXPECT_EQ(*ParseTimestamp("2023-06-15T12:34:57+00:00"), (Timestamp{1686832497, 0, 0}));
  EXPECT_EQ(*ParseTimestamp("0001-01-01T00:00:00Z"), (Timestamp{-62135596800, 0, 0}));
  EXPECT_EQ(*ParseTimestamp("1969-12-31T23:59:59.5Z"), (Timestamp{-1, 500000000, 0}));
  EXPECT_EQ(*ParseTimestamp("2024-02-29T00:00:00Z"), (Timestamp{1709164800, 0, 0}));
}

TEST(GoJsonTest, ParseTimestampRejectsMalformed) {
  for (const char* text : {"",
                           "2023-06-15",
                           "2023-06-15T14:34:57",
                           "2023-06-15T14:34:57.Z",
                           "2023-06-15T14:34:57.1234567890Z",
                           "2023-06-15 14:34:57Z",
                           "2023-06-15t14:34:57Z",
                           "2023-06-15T14:34:57z",
                           "2023-13-15T14:34:57Z",
                           "2023-02-29T14:34:57Z",
                           "2023-06-31T14:34:57Z",
                           "2023-06-15T24:00:00Z",
                           "2023-06-15T14:60:57Z",
                           "2023-06-15T14:34:60Z",
                           "2023-06-15T14:34:57+0200",
                           "2023-06-15T14:34:57+02",
                           "2023-06-15T14:34:57+24:00",
                           "2023-06-15T14:34:57Z ",
                           "+2023-06-15T14:34:57Z",
                           "2023-06-15T14:34:57.12a+02:00"}) {
    Result<Timestamp> t = ParseTimestamp(text);
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << text;
  }
}

TEST(GoJsonTest, LocalTimestampUsesTheZoneOffsetAtThatTime) {
  ScopedTz tz("CET-1CEST,M3.5.0,M10.5.0/3");  // Europe/Berlin rules, no tzdata needed
  const Timestamp summer = LocalTimestamp(1686832496, 123456789);
  EXPECT_EQ(summer, (Timestamp{1686832496, 123456789, 7200}));
  EXPECT_EQ(FormatTimestamp(summer), "2023-06-15T14:34:56.123456789+02:00");
  const Timestamp winter = LocalTimestamp(1795394999, 421119625);
  EXPECT_EQ(FormatTimestamp(winter), "2026-11-23T01:49:59.421119625+01:00");
  ScopedTz utc("UTC0");
  EXPECT_EQ(FormatTimestamp(LocalTimestamp(1686832496, 0)), "2023-06-15T12:34:56Z");
}

}  // namespace
}  // namespace fsb::repo
