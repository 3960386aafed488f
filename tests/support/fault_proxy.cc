#include "tests/support/fault_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace fsb::testing {
namespace {

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads once; 0 on EOF or error.
ssize_t ReadSome(int fd, char* buf, size_t n) {
  while (true) {
    const ssize_t r = read(fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? 0 : r;
  }
}

size_t ContentLength(const std::string& head) {
  std::string lower = head;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const size_t at = lower.find("\r\ncontent-length:");
  if (at == std::string::npos) return 0;
  return std::strtoull(lower.c_str() + at + 17, nullptr, 10);
}

void ResetAndClose(int fd) {
  linger l{.l_onoff = 1, .l_linger = 0};  // close() then sends RST instead of FIN
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

}  // namespace

struct FaultProxy::Conn {
  int client = -1;
  std::atomic<int> upstream{-1};
  std::atomic<Fault> mode{Fault::kNone};  // what the pump does to the current response
  std::atomic<bool> reset{false};         // the pump asks for an RST
  std::mutex write_mu;                    // serialises writes to `client`
  std::jthread thread;
};

FaultProxy::FaultProxy(uint16_t upstream_port, uint64_t seed)
    : upstream_port_(upstream_port), rng_(seed) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, 64) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error(std::string("fault proxy: listen: ") + std::strerror(errno));
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::jthread([this](std::stop_token stop) { AcceptLoop(stop); });
}

FaultProxy::~FaultProxy() {
  acceptor_.request_stop();
  acceptor_.join();
  std::vector<Conn*> conns;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& c : conns_) {
      if (c->client >= 0) shutdown(c->client, SHUT_RDWR);
      if (int u = c->upstream.load(); u >= 0) shutdown(u, SHUT_RDWR);
      conns.push_back(c.get());
    }
  }
  for (Conn* c : conns) {
    if (c->thread.joinable()) c->thread.join();
  }
  close(listen_fd_);
}

void FaultProxy::SetRandomFaults(double rate, std::vector<Fault> kinds) {
  std::lock_guard lock(mu_);
  rate_ = kinds.empty() ? 0 : rate;
  kinds_ = std::move(kinds);
}

void FaultProxy::FailNext(int n, Fault fault) {
  std::lock_guard lock(mu_);
  fail_next_ = n;
  fail_next_kind_ = fault;
}

int FaultProxy::Count(Fault f) const {
  std::lock_guard lock(mu_);
  auto it = counts_.find(f);
  return it == counts_.end() ? 0 : it->second;
}

int FaultProxy::requests() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(heads_.size());
}

std::vector<std::string> FaultProxy::RequestHeads() const {
  std::lock_guard lock(mu_);
  return heads_;
}

FaultProxy::Fault FaultProxy::Decide(const std::string& head) {
  std::lock_guard lock(mu_);
  heads_.push_back(head);
  Fault f = Fault::kNone;
  if (fail_next_ > 0) {
    fail_next_--;
    f = fail_next_kind_;
  } else if (rate_ > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < rate_) {
    f = kinds_[std::uniform_int_distribution<size_t>(0, kinds_.size() - 1)(rng_)];
  }
  counts_[f]++;
  return f;
}

void FaultProxy::AcceptLoop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    pollfd p{.fd = listen_fd_, .events = POLLIN, .revents = 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lock(mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    auto c = std::make_unique<Conn>();
    c->client = fd;
    Conn* raw = c.get();
    conns_.push_back(std::move(c));
    raw->thread = std::jthread([this, raw] { Serve(raw); });
  }
}

void FaultProxy::Serve(Conn* c) {
  std::jthread pump;
  // Relays upstream -> client, applying the current response fault.
  auto pump_loop = [c] {
    char buf[65536];
    size_t midway_sent = 0;
    while (true) {
      const ssize_t n = ReadSome(c->upstream.load(), buf, sizeof buf);
      if (n <= 0) break;  // upstream closed: close the client side too
      const Fault mode = c->mode.load();
      if (mode == Fault::kStall) continue;  // swallowed: the client waits for nothing
      std::string_view data(buf, static_cast<size_t>(n));
      if (mode == Fault::kResetMidway) {
        data =
            data.substr(0, std::min<size_t>(data.size(), 64 - std::min<size_t>(64, midway_sent)));
        midway_sent += data.size();
      }
      {
        std::lock_guard lock(c->write_mu);
        if (!SendAll(c->client, data)) break;
      }
      if (mode == Fault::kResetMidway && midway_sent >= 64) {
        c->reset = true;
        break;
      }
      if (mode != Fault::kResetMidway) midway_sent = 0;
    }
    shutdown(c->client, SHUT_RD);  // wakes Serve's read, which then closes the connection
  };

  std::string buf;
  char tmp[65536];
  bool rst = false;
  while (true) {
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      const ssize_t n = ReadSome(c->client, tmp, sizeof tmp);
      if (n <= 0) goto done;
      buf.append(tmp, static_cast<size_t>(n));
    }
    {
      const std::string head = buf.substr(0, end + 4);
      const size_t body_len = ContentLength(head);
      while (buf.size() < head.size() + body_len) {
        const ssize_t n = ReadSome(c->client, tmp, sizeof tmp);
        if (n <= 0) goto done;
        buf.append(tmp, static_cast<size_t>(n));
      }
      const std::string request = buf.substr(0, head.size() + body_len);
      buf.erase(0, request.size());
      if (c->reset.load()) {
        rst = true;
        goto done;
      }
      const Fault f = Decide(head);
      if (f == Fault::k503) {
        static constexpr char kBody[] =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>"
            "<Message>Please reduce your request rate.</Message></Error>";
        std::string resp =
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
            "Content-Length: " +
            std::to_string(sizeof kBody - 1) + "\r\n\r\n";
        if (!head.starts_with("HEAD ")) resp += kBody;
        std::lock_guard lock(c->write_mu);
        if (!SendAll(c->client, resp)) goto done;
        continue;
      }
      if (f == Fault::kReset) {
        rst = true;
        goto done;
      }
      if (c->upstream.load() < 0) {
        const int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(upstream_port_);
        if (u < 0 || connect(u, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
          if (u >= 0) close(u);
          rst = true;
          goto done;
        }
        {
          std::lock_guard lock(mu_);
          c->upstream = u;
          if (stopping_) goto done;
        }
        pump = std::jthread(pump_loop);
      }
      c->mode = f;
      if (!SendAll(c->upstream.load(), request)) goto done;
    }
  }
done:
  if (int u = c->upstream.load(); u >= 0) shutdown(u, SHUT_RDWR);
  if (pump.joinable()) pump.join();
  std::lock_guard lock(mu_);
  if (rst || c->reset.load()) {
    ResetAndClose(c->client);
  } else {
    close(c->client);
  }
  c->client = -1;
  if (int u = c->upstream.exchange(-1); u >= 0) close(u);
}

}  // namespace fsb::testing
