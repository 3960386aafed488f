// tests/kube/kube_test_util.h: helpers shared by the kube client and informer tests: a started
// KubeApiServer, objects, and waiting on a condition with a deadline.
#pragma once

#include <curl/curl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "kube/client.h"
#include "tests/support/kube_api_server.h"

namespace fsb::kube::testing {

using namespace std::chrono_literals;

// Every wait in these tests is on a condition; this is only how long before a test gives up.
inline constexpr std::chrono::milliseconds kDeadline = 20s;

inline void InitCurlOnce() {
  static const bool initialized = [] {
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  }();
  ASSERT_TRUE(initialized);
}

inline Object Pvb(const std::string& name, const std::string& ns = "velero",
                  Object labels = Object::object()) {
  return {{"apiVersion", "velero.io/v1"},
          {"kind", "PodVolumeBackup"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", std::move(labels)}}},
          {"spec", {{"node", "n1"}, {"volume", "data"}}}};
}

inline std::string Name(const Object& obj) {
  return obj.at("metadata").at("name").get<std::string>();
}
inline std::string Rv(const Object& obj) {
  return obj.at("metadata").at("resourceVersion").get<std::string>();
}

// Polls `cond` (cheap, thread-safe) until it holds or kDeadline passes.
inline bool Eventually(const std::function<bool()>& cond,
                       std::chrono::milliseconds deadline = kDeadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

inline std::unique_ptr<fsb::testing::KubeApiServer> StartServer(
    const fsb::testing::KubeApiServerOptions& options = {}) {
  std::string why;
  auto server = fsb::testing::KubeApiServer::Start(options, &why);
  EXPECT_NE(server, nullptr) << why;
  return server;
}

inline std::unique_ptr<Client> MakeClient(KubeConfig config, ClientOptions options = {}) {
  Result<std::unique_ptr<Client>> c = Client::Create(std::move(config), std::move(options));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

}  // namespace fsb::kube::testing
