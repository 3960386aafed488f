// cli/daemon.h: the frame the long-running commands (`fsb agent`, `fsb coordinator`) share: their
// common flags, logging, SIGTERM/SIGINT taken by one thread, and a Kubernetes client from the
// default configuration.
#pragma once

#include <functional>
#include <memory>
#include <stop_token>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "base/status.h"
#include "cli/global.h"
#include "kube/client.h"

namespace fsb::cli {

// `name`'s value from the environment, or `fallback` when unset or empty.
std::string EnvOr(const char* name, std::string fallback);

struct DaemonFlags {
  std::string kubeconfig;
  std::string resync = "30s";
  std::string log_format = "text";
  std::string log_level = "info";
};

// Adds --kubeconfig, --resync (with `resync_help`), --log-format and --log-level.
void AddDaemonFlags(CLI::App* sub, DaemonFlags& flags, const std::string& resync_help);

// What a daemon does once its frame stands: runs until `stop` is requested (a signal) or it fails.
using DaemonBody = std::function<Status(kube::Client& client, std::stop_token stop,
                                        const std::shared_ptr<spdlog::logger>& log)>;

// Sets up logging (logger `logger`), blocks SIGTERM and SIGINT in every thread but one that turns
// them into a stop request, makes the Kubernetes client and runs `body`. Returns the exit code.
int RunDaemon(const GlobalOptions& g, const DaemonFlags& flags, const std::string& logger,
              const DaemonBody& body);

}  // namespace fsb::cli
