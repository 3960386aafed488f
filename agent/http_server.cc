#include "agent/http_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <thread>

namespace fsb::agent {
namespace {

class HttpServerImpl final : public HttpServer {
 public:
  HttpServerImpl(std::function<std::string()> metrics, std::function<bool()> ready)
      : metrics_(std::move(metrics)), ready_(std::move(ready)) {
    server_.new_task_queue = [] { return new httplib::ThreadPool(2); };
    // httplib's default also sets SO_REUSEPORT, which lets a second agent on the node bind the
    // same port without an error and take half of the scrapes and probes. SO_REUSEADDR only.
    server_.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_(), "text/plain; version=0.0.4; charset=utf-8");
    });
    server_.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok\n", "text/plain");
    });
    server_.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
      const bool ok = ready_();
      res.status = ok ? 200 : 503;
      res.set_content(ok ? "ok\n" : "not ready: informers not synced\n", "text/plain");
    });
  }
  ~HttpServerImpl() override {
    // httplib's stop() does nothing until listen_after_bind() is running, so a stop() that comes
    // first would leave the thread listening forever: ask again until the thread has returned.
    while (thread_.joinable() && !listen_returned_.load()) {
      server_.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (thread_.joinable()) thread_.join();
  }

  Status Listen(const std::string& address) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos)
      return Status::InvalidArgument("address \"" + address + "\": want host:port");
    std::string host = address.substr(0, colon);
    if (host.empty()) host = "0.0.0.0";
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    int port = -1;
    const std::string p = address.substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc() || end != p.data() + p.size() || port < 0 || port > 65535) {
      return Status::InvalidArgument("address \"" + address + "\": bad port");
    }
    port_ =
        port == 0 ? server_.bind_to_any_port(host) : (server_.bind_to_port(host, port) ? port : -1);
    if (port_ < 0) return Status::Unavailable(fmt::format("listen on {}: cannot bind", address));
    thread_ = std::thread([this] {
      server_.listen_after_bind();
      listen_returned_ = true;
    });
    return Status::Ok();
  }
  int port() const override { return port_; }

 private:
  httplib::Server server_;
  std::function<std::string()> metrics_;
  std::function<bool()> ready_;
  int port_ = -1;
  std::atomic<bool> listen_returned_ = false;
  std::thread thread_;  // joined by the destructor after stop()
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& address,
                                                      std::function<std::string()> metrics,
                                                      std::function<bool()> ready) {
  auto s = std::make_unique<HttpServerImpl>(std::move(metrics), std::move(ready));
  FSB_RETURN_IF_ERROR(s->Listen(address));
  return std::unique_ptr<HttpServer>(std::move(s));
}

}  // namespace fsb::agent
