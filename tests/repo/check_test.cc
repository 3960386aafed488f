#include "repo/check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "repo/backend/local/local_backend.h"
#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

using ::testing::HasSubstr;

class CheckTest : public ::testing::Test {
 protected:
  std::unique_ptr<Repository> OpenFixture(const std::string& v) {
    testing::CopyTree(testing::TestDataPath("restic/" + v), dir_.path() / v);
    std::string pw = testing::ReadFileToString(testing::TestDataPath("restic/password.txt"));
    pw.erase(pw.find_last_not_of("\n") + 1);
    auto r = Repository::Open(std::move(*LocalBackend::Open((dir_.path() / v).string())), Secret<std::string>(pw));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(*r);
  }
  std::filesystem::path PackPath(const std::string& v, const std::string& prefix) {
    for (auto& e : std::filesystem::recursive_directory_iterator(dir_.path() / v / "data")) {
      if (e.is_regular_file() && e.path().filename().string().rfind(prefix, 0) == 0) return e.path();
    }
    return {};
  }
  testing::TempDir dir_;
};

TEST_F(CheckTest, ResticFixturesAreClean) {
  for (const std::string v : {"repo-v1", "repo-v2"}) {
    auto r = OpenFixture(v);
    CheckOptions o;
    o.read_data = true;
    auto res = RunCheck(*r, o);
    ASSERT_TRUE(res.ok());
    EXPECT_TRUE(res->errors.empty()) << res->errors[0];
    EXPECT_GT(res->blobs_read, 5u);
    EXPECT_EQ(res->snapshots, v == "repo-v1" ? 1u : 4u);
  }
}

TEST_F(CheckTest, FlippedPackByteIsFoundByReadDataAndNamed) {
  auto r = OpenFixture("repo-v2");
  // The big data pack 7bcad92c: flip a byte inside its first blob.
  std::filesystem::path p = PackPath("repo-v2", "7bcad92c");
  ASSERT_FALSE(p.empty());
  std::string data = testing::ReadFileToString(p);
  data[100] ^= 0x40;
  testing::WriteStringToFile(p, data);
  auto structural = RunCheck(*r, CheckOptions{});
  ASSERT_TRUE(structural.ok());
  EXPECT_TRUE(structural->errors.empty());  // sizes and references are still right
  CheckOptions o;
  o.read_data = true;
  auto full = RunCheck(*r, o);
  ASSERT_TRUE(full.ok());
  ASSERT_FALSE(full->errors.empty());
  std::string all;
  for (auto& e : full->errors) all += e + "\n";
  EXPECT_THAT(all, HasSubstr("7bcad92c"));                 // the pack, by name
  EXPECT_THAT(all, HasSubstr("does not match its name"));  // its hash
  EXPECT_THAT(all, HasSubstr("e0e86aed"));                 // and the blob whose MAC fails
}

TEST_F(CheckTest, MissingPackAndTruncatedPackAreErrors) {
  auto r = OpenFixture("repo-v2");
  std::filesystem::remove(PackPath("repo-v2", "1c668d1e"));
  std::filesystem::path p = PackPath("repo-v2", "20728f83");
  std::string data = testing::ReadFileToString(p);
  testing::WriteStringToFile(p, data.substr(0, data.size() - 1));
  auto res = RunCheck(*r, CheckOptions{});
  ASSERT_TRUE(res.ok());
  std::string all;
  for (auto& e : res->errors) all += e + "\n";
  EXPECT_THAT(all, HasSubstr("pack 1c668d1e: in the index but missing"));
  EXPECT_THAT(all, HasSubstr("pack 20728f83: unexpected file size"));
  // Every tree of the snapshots that needed the missing pack's tree is reported too, not just one.
  EXPECT_GE(res->errors.size(), 2u);
}

TEST_F(CheckTest, CorruptIndexFileIsReportedAndOthersStillChecked) {
  auto r = OpenFixture("repo-v2");
  std::filesystem::path idx;
  for (auto& e : std::filesystem::directory_iterator(dir_.path() / "repo-v2" / "index")) idx = e.path();
  std::string data = testing::ReadFileToString(idx);
  testing::WriteStringToFile(idx, data.substr(0, data.size() / 2));
  auto res = RunCheck(*r, CheckOptions{});
  ASSERT_TRUE(res.ok());
  std::string all;
  for (auto& e : res->errors) all += e + "\n";
  EXPECT_THAT(all, HasSubstr(idx.filename().string().substr(0, 8)));
}

TEST_F(CheckTest, ReadDataSubsetsSelectPacksAsRestic) {
  auto r = OpenFixture("repo-v2");
  CheckOptions all;
  all.read_data = true;
  const uint64_t packs = RunCheck(*r, all)->packs_read;
  ASSERT_GE(packs, 4u);
  // n/t: the buckets of the first ID byte modulo t cover every pack exactly once.
  uint64_t sum = 0;
  for (uint32_t n = 1; n <= 3; n++) {
    CheckOptions o = all;
    o.subset_n = n;
    o.subset_m = 3;
    auto res = RunCheck(*r, o);
    ASSERT_TRUE(res.ok());
    EXPECT_TRUE(res->errors.empty());
    sum += res->packs_read;
  }
  EXPECT_EQ(sum, packs);
  // x%: floor(packs × x / 100), at least one.
  CheckOptions half = all;
  half.subset_percent = 50;
  half.seed = 1;
  EXPECT_EQ(RunCheck(*r, half)->packs_read, packs / 2);
  CheckOptions tiny = all;
  tiny.subset_percent = 0.001;
  EXPECT_EQ(RunCheck(*r, tiny)->packs_read, 1u);
  // SIZE: the same as a percentage of all pack bytes.
  CheckOptions bytes = all;
  bytes.subset_bytes = 1;
  EXPECT_EQ(RunCheck(*r, bytes)->packs_read, 1u);
  bytes.subset_bytes = uint64_t{1} << 40;
  EXPECT_EQ(RunCheck(*r, bytes)->packs_read, packs);
}

}  // namespace
}  // namespace fsb::repo
