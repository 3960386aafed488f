#include "kube/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <optional>
#include <string>

#include "base/bytes.h"
#include "tests/support/test_util.h"

namespace fsb::kube {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// Sets (or, with nullopt, unsets) an environment variable for one test and restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Two clusters, two users, two contexts; current-context "dev".
constexpr char kTwoContexts[] = R"(apiVersion: v1
kind: Config
clusters:
- name: dev-cluster
  cluster:
    server: https://dev.example:6443
    certificate-authority: certs/dev-ca.crt
- name: prod-cluster
  cluster:
    server: https://prod.example:443/
    insecure-skip-tls-verify: true
users:
- name: dev-user
  user:
    token: dev-token
- name: prod-user
  user:
    client-certificate: /etc/prod/client.crt
    client-key: /etc/prod/client.key
contexts:
- name: dev
  context:
    cluster: dev-cluster
    user: dev-user
    namespace: velero
- name: prod
  context:
    cluster: prod-cluster
    user: prod-user
current-context: dev
)";

class KubeconfigTest : public ::testing::Test {
 protected:
  std::string Write(std::string_view text, const std::string& name = "config") {
    const fs::path p = dir_.path() / name;
    fs::create_directories(p.parent_path());
    testing::WriteStringToFile(p, text);
    return p.string();
  }

  testing::TempDir dir_;
};

TEST_F(KubeconfigTest, CurrentContextSelectsClusterUserAndNamespace) {
  const std::string path = Write(kTwoContexts);
  Result<KubeConfig> c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://dev.example:6443");
  EXPECT_EQ(c->token.Reveal(), "dev-token");
  EXPECT_EQ(c->default_namespace, "velero");
  EXPECT_FALSE(c->insecure_skip_tls_verify);
  EXPECT_TRUE(c->client_cert_file.empty());
}

TEST_F(KubeconfigTest, RelativeFileIsRelativeToKubeconfigDirectory) {
  const std::string path = Write(kTwoContexts, "sub/dir/config");
  Result<KubeConfig> c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ca_file, (dir_.path() / "sub/dir/certs/dev-ca.crt").string());
  EXPECT_TRUE(c->ca_data.empty());
}

TEST_F(KubeconfigTest, ExplicitContextWinsOverCurrentContext) {
  Result<KubeConfig> c = LoadKubeconfig(Write(kTwoContexts), "prod");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://prod.example:443/");
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->client_cert_file, "/etc/prod/client.crt");  // absolute: kept
  EXPECT_EQ(c->client_key_file, "/etc/prod/client.key");
  EXPECT_TRUE(c->token.Reveal().empty());
  EXPECT_TRUE(c->default_namespace.empty());
}

TEST_F(KubeconfigTest, DataFieldsAreBase64Decoded) {
  const std::string ca = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
  const std::string cert = "-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n";
  const std::string key = "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n";
  const std::string text = fmt::format(R"(
clusters:
- name: c
  cluster:
    server: https://10.0.0.1
    certificate-authority-data: {}
    certificate-authority: ignored-when-data-is-set.crt
users:
- name: u
  user:
    client-certificate-data: {}
    client-key-data: {}
contexts:
- name: x
  context: {{cluster: c, user: u}}
current-context: x
)",
                                       Base64Encode(AsBytes(ca)), Base64Encode(AsBytes(cert)),
                                       Base64Encode(AsBytes(key)));
  Result<KubeConfig> c = LoadKubeconfig(Write(text));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ca_data, ca);
  EXPECT_TRUE(c->ca_file.empty());
  EXPECT_EQ(c->client_cert_data, cert);
  EXPECT_EQ(c->client_key_data.Reveal(), key);
  EXPECT_TRUE(c->client_cert_file.empty());
  EXPECT_TRUE(c->client_key_file.empty());
}

TEST_F(KubeconfigTest, TokenFileIsReadAndKept) {
  Write("s3cret-token\n", "tokens/t");
  const std::string path = Write(R"(
clusters: [{name: c, cluster: {server: "http://127.0.0.1:8080"}}]
users: [{name: u, user: {tokenFile: tokens/t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
)");
  Result<KubeConfig> c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->token_file, (dir_.path() / "tokens/t").string());
  EXPECT_EQ(c->token.Reveal(), "s3cret-token");
}

TEST_F(KubeconfigTest, MissingTokenFileNamesIt) {
  const std::string path = Write(R"(
clusters: [{name: c, cluster: {server: "http://127.0.0.1:8080"}}]
users: [{name: u, user: {tokenFile: /nonexistent/token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
)");
  Result<KubeConfig> c = LoadKubeconfig(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/token"));
  EXPECT_THAT(c.status().message(), HasSubstr("user \"u\""));
}

TEST_F(KubeconfigTest, JsonKubeconfigIsRead) {
  const std::string path = Write(R"({"apiVersion":"v1","kind":"Config",
    "clusters":[{"name":"c","cluster":{"server":"http://127.0.0.1:1"}}],
    "users":[{"name":"u","user":{"token":"t"}}],
    "contexts":[{"name":"x","context":{"cluster":"c","user":"u","namespace":"ns1"}}],
    "current-context":"x"})");
  Result<KubeConfig> c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "http://127.0.0.1:1");
  EXPECT_EQ(c->token.Reveal(), "t");
  EXPECT_EQ(c->default_namespace, "ns1");
}

TEST_F(KubeconfigTest, ContextWithoutUserIsAnonymous) {
  // shared/notes/real-parts.md §2's minimal kubeconfig has `user: {}`; no user at all works too.
  const std::string path = Write(R"(
clusters: [{name: fake, cluster: {server: "http://127.0.0.1:18080"}}]
users: [{name: tester, user: {}}]
contexts: [{name: fake, context: {cluster: fake, user: tester, namespace: velero}},
           {name: nouser, context: {cluster: fake}}]
current-context: fake
)");
  for (const char* context : {"fake", "nouser"}) {
    Result<KubeConfig> c = LoadKubeconfig(path, context);
    ASSERT_TRUE(c.ok()) << context << ": " << c.status().ToString();
    EXPECT_EQ(c->server, "http://127.0.0.1:18080");
    EXPECT_TRUE(c->token.Reveal().empty());
  }
}

TEST_F(KubeconfigTest, MissingContextIsInvalidArgumentNamingIt) {
  const std::string path = Write(kTwoContexts);
  Result<KubeConfig> c = LoadKubeconfig(path, "foo");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(), "kubeconfig " + path + ": context \"foo\" not found");
}

TEST_F(KubeconfigTest, MissingClusterUserOrServerIsInvalidArgument) {
  const std::string path = Write(R"(
clusters:
- {name: noserver, cluster: {insecure-skip-tls-verify: true}}
- {name: ok, cluster: {server: "https://a"}}
users: [{name: u, user: {token: t}}]
contexts:
- {name: no-cluster, context: {cluster: gone, user: u}}
- {name: no-user, context: {cluster: ok, user: ghost}}
- {name: no-server, context: {cluster: noserver, user: u}}
- {name: empty, context: {user: u}}
)");
  struct Case {
    const char* context;
    const char* message;
  } cases[] = {
      {"no-cluster", "context \"no-cluster\": cluster \"gone\" not found"},
      {"no-user", "context \"no-user\": user \"ghost\" not found"},
      {"no-server", "cluster \"noserver\": no server"},
      {"empty", "context \"empty\": no cluster"},
      {"", "no current-context is set and no context was given"},
  };
  for (const Case& c : cases) {
    Result<KubeConfig> r = LoadKubeconfig(path, c.context);
    ASSERT_FALSE(r.ok()) << c.context;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.context;
    EXPECT_EQ(r.status().message(), "kubeconfig " + path + ": " + c.message);
  }
}

TEST_F(KubeconfigTest, MalformedYamlIsInvalidArgument) {
  const char* bad[] = {
      "clusters: [unclosed",
      "just a string",
      "clusters: {name: c}",
      "clusters:\n- cluster: {server: x}\n",  // no name
      "clusters:\n- name: c\n  cluster: [1, 2]\n",
      "key: \"unterminated\n",
  };
  for (const char* text : bad) {
    const std::string path = Write(text);
    Result<KubeConfig> c = LoadKubeconfig(path);
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(c.status().message(), HasSubstr("kubeconfig " + path)) << text;
  }
}

TEST_F(KubeconfigTest, BadFieldValuesAreInvalidArgument) {
  struct Case {
    const char* cluster;
    const char* user;
    const char* message;
  } cases[] = {
      {"{server: https://a, insecure-skip-tls-verify: maybe}", "{token: t}",
       "insecure-skip-tls-verify"},
      {"{server: https://a, certificate-authority-data: '!!notbase64'}", "{token: t}",
       "certificate-authority-data"},
      {"{server: https://a}", "{client-key-data: '%%%'}", "client-key-data"},
      {"{server: https://a}", "{client-certificate: c.crt}", "client certificate without a key"},
      {"{server: https://a}", "{exec: {command: aws}}", "exec credential plugins"},
  };
  for (const Case& c : cases) {
    const std::string path =
        Write(fmt::format("clusters: [{{name: c, cluster: {}}}]\n"
                          "users: [{{name: u, user: {}}}]\n"
                          "contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\n"
                          "current-context: x\n",
                          c.cluster, c.user));
    Result<KubeConfig> r = LoadKubeconfig(path);
    ASSERT_FALSE(r.ok()) << c.message;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
    EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("%%%")));  // key data never quoted
  }
}

TEST_F(KubeconfigTest, MissingFileIsNotFound) {
  Result<KubeConfig> c = LoadKubeconfig((dir_.path() / "nope").string());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("nope"));
}

TEST_F(KubeconfigTest, DefaultConfigPrefersFlagThenKubeconfigListThenHome) {
  const std::string a = Write(kTwoContexts, "a");
  const std::string b = Write(R"(
clusters: [{name: c, cluster: {server: "http://b"}}]
contexts: [{name: x, context: {cluster: c}}]
current-context: x
)",
                              "b");
  Write(R"(
clusters: [{name: c, cluster: {server: "http://home"}}]
contexts: [{name: x, context: {cluster: c}}]
current-context: x
)",
        "home/.kube/config");
  ScopedEnv no_service("KUBERNETES_SERVICE_HOST", std::nullopt);
  ScopedEnv home("HOME", (dir_.path() / "home").string());
  {
    ScopedEnv kubeconfig("KUBECONFIG", (dir_.path() / "missing").string() + ":" + b + ":" + a);
    Result<KubeConfig> c = LoadDefaultConfig(a);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->server, "https://dev.example:6443");  // the flag
    c = LoadDefaultConfig("");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->server, "http://b");  // the first existing file of the list
  }
  {
    ScopedEnv kubeconfig("KUBECONFIG", (dir_.path() / "missing").string());
    Result<KubeConfig> c = LoadDefaultConfig("");
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
    EXPECT_THAT(c.status().message(), HasSubstr("KUBECONFIG"));
  }
  {
    ScopedEnv kubeconfig("KUBECONFIG", std::nullopt);
    Result<KubeConfig> c = LoadDefaultConfig("");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->server, "http://home");
  }
}

class InClusterConfigTest : public ::testing::Test {
 protected:
  InClusterConfigTest() {
    paths_.token_file = (dir_.path() / "token").string();
    paths_.ca_file = (dir_.path() / "ca.crt").string();
    paths_.namespace_file = (dir_.path() / "namespace").string();
    testing::WriteStringToFile(paths_.token_file, "sa-token\n");
    testing::WriteStringToFile(paths_.ca_file, "-----BEGIN CERTIFICATE-----\n");
    testing::WriteStringToFile(paths_.namespace_file, "velero");
  }

  testing::TempDir dir_;
  InClusterPaths paths_;
};

TEST_F(InClusterConfigTest, ReadsEnvironmentAndServiceAccountFiles) {
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  Result<KubeConfig> c = LoadInClusterConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->token.Reveal(), "sa-token");
  EXPECT_EQ(c->token_file, paths_.token_file);
  EXPECT_EQ(c->ca_file, paths_.ca_file);
  EXPECT_EQ(c->default_namespace, "velero");
}

TEST_F(InClusterConfigTest, Ipv6HostGoesInBrackets) {
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "fd00:10:96::1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "6443");
  Result<KubeConfig> c = LoadInClusterConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://[fd00:10:96::1]:6443");
}

TEST_F(InClusterConfigTest, OutsideAPodIsFailedPrecondition) {
  ScopedEnv host("KUBERNETES_SERVICE_HOST", std::nullopt);
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  Result<KubeConfig> c = LoadInClusterConfig(paths_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(InClusterConfigTest, MissingTokenOrCaNamesTheFile) {
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  for (const std::string* file : {&paths_.token_file, &paths_.ca_file}) {
    InClusterPaths paths = paths_;
    const std::string missing = (dir_.path() / "missing").string();
    (file == &paths_.token_file ? paths.token_file : paths.ca_file) = missing;
    Result<KubeConfig> c = LoadInClusterConfig(paths);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
    EXPECT_THAT(c.status().message(), HasSubstr(missing));
  }
}

TEST_F(InClusterConfigTest, MissingNamespaceFileLeavesNamespaceEmpty) {
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  fs::remove(paths_.namespace_file);
  Result<KubeConfig> c = LoadInClusterConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->default_namespace.empty());
}

TEST_F(InClusterConfigTest, DefaultConfigUsesInClusterWithoutKubeconfig) {
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  ScopedEnv kubeconfig("KUBECONFIG", std::nullopt);
  // The real service-account paths do not exist here: the error names the token file, which
  // shows that the in-cluster branch was taken.
  Result<KubeConfig> c = LoadDefaultConfig("");
  if (c.ok()) GTEST_SKIP() << "running inside a pod";
  EXPECT_THAT(c.status().message(), HasSubstr("/var/run/secrets/kubernetes.io/serviceaccount"));
}

}  // namespace
}  // namespace fsb::kube
