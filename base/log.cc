#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace fsb {
namespace {

std::mutex g_mu;
spdlog::level::level_enum g_level = spdlog::level::warn;  // guarded by g_mu
bool g_json = false;                                       // guarded by g_mu

void ApplyPattern(spdlog::logger& l, bool json) {
  if (json) {
    l.set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","logger":"%n","msg":"%v"})");
  } else {
    l.set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %n: %v");
  }
}

}  // namespace

std::shared_ptr<spdlog::logger> GetLogger(const std::string& name) {
  std::lock_guard lock(g_mu);
  if (auto l = spdlog::get(name)) return l;
  auto l = spdlog::stderr_color_mt(name);
  l->set_level(g_level);
  ApplyPattern(*l, g_json);
  return l;
}

void SetupLogging(spdlog::level::level_enum level, bool json) {
  std::lock_guard lock(g_mu);
  g_level = level;
  g_json = json;
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) {
    l->set_level(level);
    ApplyPattern(*l, json);
  });
}

}  // namespace fsb
