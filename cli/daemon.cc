#include "cli/daemon.h"

#include <signal.h>

#include <cstdlib>
#include <thread>

#include "base/log.h"
#include "kube/config.h"

namespace fsb::cli {

std::string EnvOr(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::move(fallback);
}

void AddDaemonFlags(CLI::App* sub, DaemonFlags& flags, const std::string& resync_help) {
  sub->add_option("--kubeconfig", flags.kubeconfig,
                  "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)");
  sub->add_option("--resync", flags.resync, resync_help)->capture_default_str();
  sub->add_option("--log-format", flags.log_format, "text or json")->capture_default_str();
  sub->add_option("--log-level", flags.log_level, "debug, info, warn, error")->capture_default_str();
}

int RunDaemon(const GlobalOptions& g, const DaemonFlags& flags, const std::string& logger,
              const DaemonBody& body) {
  SetupLogging(spdlog::level::from_str(flags.log_level), flags.log_format == "json");
  std::shared_ptr<spdlog::logger> log = GetLogger(logger);

  // Signals are taken by one thread with sigtimedwait; every other thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  Result<kube::KubeConfig> kc = kube::LoadDefaultConfig(flags.kubeconfig);
  if (!kc.ok()) return Fail(g, kc.status().WithContext("kubernetes config"));
  Result<std::unique_ptr<kube::Client>> client = kube::Client::Create(std::move(*kc));
  if (!client.ok()) return Fail(g, client.status().WithContext("kubernetes client"));

  std::stop_source stop;
  std::jthread signals([&stop, &set, log](std::stop_token st) {
    while (!st.stop_requested()) {
      timespec ts{0, 200'000'000};
      const int sig = sigtimedwait(&set, nullptr, &ts);
      if (sig == SIGTERM || sig == SIGINT) {
        log->info("signal received, stopping sig={}", sig);
        stop.request_stop();
        return;
      }
    }
  });
  Status s = body(**client, stop.get_token(), log);
  signals.request_stop();
  if (!s.ok()) return Fail(g, s);
  return kExitOk;
}

}  // namespace fsb::cli
