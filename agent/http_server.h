// agent/http_server.h: the agent's small HTTP endpoint (cpp-httplib): GET /metrics (Prometheus
// text), /healthz (the process serves requests) and /readyz (informers synced: the agent sees
// its PVBs and PVRs). Handlers run on the server's own threads; the callbacks must be thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/status.h"

namespace fsb::agent {

class HttpServer {
 public:
  // Listens on `address` ("[host]:port"; ":8085" = all interfaces, port 0 = any free port) and
  // serves until destroyed. kUnavailable naming the address when it cannot bind.
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& address,
                                                   std::function<std::string()> metrics,
                                                   std::function<bool()> ready);
  virtual ~HttpServer() = default;
  virtual int port() const = 0;
};

}  // namespace fsb::agent
