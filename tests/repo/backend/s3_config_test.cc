// repo/backend/s3/s3_config: repository names as restic and Velero write them, credentials and
// region from the environment and the shared credentials file.
#include "repo/backend/s3/s3_config.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

using ::fsb::testing::TempDir;
using ::fsb::testing::WriteStringToFile;
using ::testing::HasSubstr;
using ::testing::Not;

EnvLookup MapEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

struct NameCase {
  std::string name;
  std::string endpoint;
  bool https;
  std::string bucket;
  std::string prefix;
  bool path_style;
  std::string region;  // from the endpoint; "" if none
};

TEST(S3ConfigTest, ParsesRepositoryNames) {
  const NameCase cases[] = {
      {"s3:https://minio.example:9000/velero/restic/app-ns", "minio.example:9000", true, "velero",
       "restic/app-ns", true, ""},
      {"s3:http://minio:9000/velero/restic/app-ns", "minio:9000", false, "velero", "restic/app-ns",
       true, ""},
      {"s3:http://127.0.0.1:4568/bucket", "127.0.0.1:4568", false, "bucket", "", true, ""},
      {"s3:http://127.0.0.1:4568/bucket/", "127.0.0.1:4568", false, "bucket", "", true, ""},
      {"s3:host.example/bucket/a//b/./c/", "host.example", true, "bucket", "a/b/c", true, ""},
      {"s3://host.example/bucket/p", "host.example", true, "bucket", "p", true, ""},
      {"s3:s3.amazonaws.com/my-bucket/restic/repo", "s3.amazonaws.com", true, "my-bucket",
       "restic/repo", false, ""},
      {"s3:s3.eu-west-1.amazonaws.com/my-bucket", "s3.eu-west-1.amazonaws.com", true, "my-bucket",
       "", false, "eu-west-1"},
      // Velero's legacy form (velero-fs-backup.md §4.3).
      {"s3:s3-eu-west-1.amazonaws.com/bucket/prefix/restic/repo-1", "s3-eu-west-1.amazonaws.com",
       true, "bucket", "prefix/restic/repo-1", false, "eu-west-1"},
      {"s3:https://s3.dualstack.us-west-2.amazonaws.com/b-1/x",
       "s3.dualstack.us-west-2.amazonaws.com", true, "b-1", "x", false, "us-west-2"},
      {"s3:s3.cn-north-1.amazonaws.com.cn/bucket", "s3.cn-north-1.amazonaws.com.cn", true, "bucket",
       "", false, "cn-north-1"},
      // Dots in the bucket name do not fit a wildcard certificate: path-style even on AWS.
      {"s3:s3.amazonaws.com/my.dotted.bucket", "s3.amazonaws.com", true, "my.dotted.bucket", "",
       true, ""},
      {"s3:http://[::1]:9000/bucket/p", "[::1]:9000", false, "bucket", "p", true, ""},
  };
  for (const NameCase& c : cases) {
    Result<S3Config> cfg = ParseS3Location(c.name);
    ASSERT_TRUE(cfg.ok()) << c.name << ": " << cfg.status().ToString();
    EXPECT_EQ(cfg->endpoint, c.endpoint) << c.name;
    EXPECT_EQ(cfg->use_https, c.https) << c.name;
    EXPECT_EQ(cfg->bucket, c.bucket) << c.name;
    EXPECT_EQ(cfg->prefix, c.prefix) << c.name;
    EXPECT_EQ(cfg->path_style, c.path_style) << c.name;
    EXPECT_EQ(cfg->region, c.region) << c.name;
  }
}

TEST(S3ConfigTest, LocationNamesSchemeEndpointBucketPrefix) {
  Result<S3Config> cfg = ParseS3Location("s3:minio:9000/velero/restic/ns");
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->Location(), "s3:https://minio:9000/velero/restic/ns");
}

TEST(S3ConfigTest, MalformedNamesSayWhatIsWrong) {
  const std::pair<std::string, std::string> cases[] = {
      {"s3:", "no endpoint host"},
      {"s3:https://", "no endpoint host"},
      {"s3:host.example", "no bucket"},
      {"s3:http://host.example:9000", "no bucket"},
      {"s3:http://host.example:9000/", "no bucket"},
      {"s3:host.example//prefix", "no bucket name"},
      {"s3:http://host:port/bucket", "invalid port \"port\""},
      {"s3:http://host:99999/bucket", "invalid port \"99999\""},
      {"s3:http://host:/bucket", "empty port"},
      {"s3:ftp://host/bucket", "unsupported scheme \"ftp\""},
      {"s3:http://host/bucket?versionId=1", "query strings"},
      {"s3:http://user:pw@host/bucket", "credentials in the repository name"},
      {"s3:http://host/buck*et", "invalid character '*' in bucket name"},
      {"s3:http://host/bucket/../../etc", "climbs above the bucket"},
      {"s3:http://ho st/bucket", "invalid character ' ' in endpoint host"},
      {"s3:http://[::1/bucket", "unterminated IPv6"},
  };
  for (const auto& [name, want] : cases) {
    Result<S3Config> cfg = ParseS3Location(name);
    ASSERT_FALSE(cfg.ok()) << name;
    EXPECT_EQ(cfg.status().code(), StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(cfg.status().message(), HasSubstr(want)) << name;
    EXPECT_THAT(cfg.status().message(), HasSubstr(name)) << name;
  }
}

TEST(S3ConfigTest, CredentialsFromEnvironment) {
  Result<s3::Credentials> c = LoadS3Credentials(MapEnv({{"AWS_ACCESS_KEY_ID", "AKID"},
                                                        {"AWS_SECRET_ACCESS_KEY", "SECRET"},
                                                        {"AWS_SESSION_TOKEN", "TOKEN"}}));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key_id, "AKID");
  EXPECT_EQ(c->secret_access_key.Reveal(), "SECRET");
  EXPECT_EQ(c->session_token.Reveal(), "TOKEN");
  EXPECT_EQ(fmt::format("{}", c->secret_access_key), "***");
}

TEST(S3ConfigTest, HalfTheKeyPairIsAnError) {
  Result<s3::Credentials> c = LoadS3Credentials(MapEnv({{"AWS_ACCESS_KEY_ID", "AKID"}}));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("AWS_SECRET_ACCESS_KEY is not"));
  c = LoadS3Credentials(MapEnv({{"AWS_SECRET_ACCESS_KEY", "hush-hush"}}));
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), Not(HasSubstr("hush-hush")));
}

// The format of Velero's `cloud-credentials` secret, mounted as a file.
TEST(S3ConfigTest, CredentialsFromSharedFileAndProfile) {
  TempDir dir;
  const std::string file = dir.str() + "/cloud";
  WriteStringToFile(
      file,
      "# velero\n[default]\naws_access_key_id=minio\naws_secret_access_key=minio123\n\n"
      "[profile backup]\n AWS_ACCESS_KEY_ID = other \n aws_secret_access_key = "
      "s3cr3t\naws_session_token=tok\n");
  Result<s3::Credentials> c = LoadS3Credentials(MapEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}}));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key_id, "minio");
  EXPECT_EQ(c->secret_access_key.Reveal(), "minio123");
  EXPECT_TRUE(c->session_token.Reveal().empty());

  c = LoadS3Credentials(MapEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "backup"}}));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key_id, "other");
  EXPECT_EQ(c->secret_access_key.Reveal(), "s3cr3t");
  EXPECT_EQ(c->session_token.Reveal(), "tok");

  c = LoadS3Credentials(MapEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "nope"}}));
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("profile \"nope\" not found"));
  EXPECT_THAT(c.status().message(), Not(HasSubstr("minio123")));

  // The environment wins over the file.
  c = LoadS3Credentials(MapEnv({{"AWS_SHARED_CREDENTIALS_FILE", file},
                                {"AWS_ACCESS_KEY_ID", "env"},
                                {"AWS_SECRET_ACCESS_KEY", "envsecret"}}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->access_key_id, "env");
}

TEST(S3ConfigTest, DefaultCredentialsFileUnderHome) {
  TempDir home;
  std::filesystem::create_directories(home.path() / ".aws");
  WriteStringToFile(home.path() / ".aws" / "credentials",
                    "[default]\naws_access_key_id=h\naws_secret_access_key=hs\n");
  Result<s3::Credentials> c = LoadS3Credentials(MapEnv({{"HOME", home.str()}}));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key_id, "h");
}

TEST(S3ConfigTest, MissingCredentials) {
  TempDir home;  // no .aws/credentials
  Result<s3::Credentials> c = LoadS3Credentials(MapEnv({{"HOME", home.str()}}));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("no S3 credentials"));
  // A named file that is missing is named in the error.
  c = LoadS3Credentials(MapEnv({{"AWS_SHARED_CREDENTIALS_FILE", home.str() + "/missing"}}));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr(home.str() + "/missing"));
}

TEST(S3ConfigTest, RegionResolutionOrder) {
  const std::map<std::string, std::string> keys = {{"AWS_ACCESS_KEY_ID", "a"},
                                                   {"AWS_SECRET_ACCESS_KEY", "b"}};
  auto with = [&](std::map<std::string, std::string> extra) {
    extra.insert(keys.begin(), keys.end());
    return MapEnv(extra);
  };
  auto region = [](const Result<S3Config>& r) {
    return r.ok() ? r->region : r.status().ToString();
  };
  EXPECT_EQ(region(ResolveS3Config("s3:http://h:1/b", {}, with({}))), "us-east-1");
  EXPECT_EQ(region(ResolveS3Config("s3:http://h:1/b", {}, with({{"AWS_REGION", "r2"}}))), "r2");
  EXPECT_EQ(region(ResolveS3Config("s3:http://h:1/b", {},
                                   with({{"AWS_REGION", "r2"}, {"AWS_DEFAULT_REGION", "r1"}}))),
            "r1");
  EXPECT_EQ(region(ResolveS3Config("s3:s3.eu-west-3.amazonaws.com/b", {},
                                   with({{"AWS_DEFAULT_REGION", "r1"}}))),
            "eu-west-3");
  EXPECT_EQ(region(ResolveS3Config("s3:s3.eu-west-3.amazonaws.com/b",
                                   {.region = "opt", .ca_file = "", .insecure_tls = false},
                                   with({{"AWS_DEFAULT_REGION", "r1"}}))),
            "opt");
}

TEST(S3ConfigTest, ResolveCarriesTlsOptions) {
  Result<S3Config> cfg =
      ResolveS3Config("s3:https://h/b", {.region = "", .ca_file = "/ca.pem", .insecure_tls = true},
                      MapEnv({{"AWS_ACCESS_KEY_ID", "a"}, {"AWS_SECRET_ACCESS_KEY", "b"}}));
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->http.ca_file, "/ca.pem");
  EXPECT_TRUE(cfg->http.insecure_tls);
  EXPECT_EQ(cfg->max_connections, 5);
}

}  // namespace
}  // namespace fsb::repo
