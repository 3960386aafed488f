// tests/support/fault_proxy.h: a small HTTP/1.1 fault-injecting TCP proxy on 127.0.0.1 for the S3
// tests. Each client connection gets its own upstream connection; requests are read one at a
// time (head plus Content-Length body; pipelining and chunked requests are not supported, and
// HttpClient sends neither), and each request either passes or gets one fault:
//
//   k503          answered by the proxy with 503 SlowDown (S3's throttling reply); not forwarded
//   kReset        the client connection is reset (RST) before the request is forwarded
//   kResetMidway  forwarded; the response is cut after its first bytes and the connection reset
//   kStall        forwarded; the response never arrives (the connection stays open, silent)
//
// Responses are relayed unparsed. Safe for concurrent use: faults can be changed while requests
// run. The destructor closes every connection and joins every thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace fsb::testing {

class FaultProxy {
 public:
  enum class Fault { kNone, k503, kReset, kResetMidway, kStall };

  // Listens on 127.0.0.1 with a free port and forwards to 127.0.0.1:upstream_port. Faults are
  // drawn from a generator seeded with `seed` (print it on failure).
  FaultProxy(uint16_t upstream_port, uint64_t seed);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  uint16_t port() const { return port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

  // From now on, each request gets a fault with probability `rate`, the kind drawn uniformly
  // from `kinds`. rate 0 turns random faults off.
  void SetRandomFaults(double rate, std::vector<Fault> kinds);
  // The next `n` requests get `fault` (before any random fault).
  void FailNext(int n, Fault fault);

  int Count(Fault f) const;  // requests that got `f` (kNone: passed)
  int requests() const;
  // Heads of every request seen ("GET /b?list-type=2 HTTP/1.1\r\nHost: ...\r\n"), in order.
  std::vector<std::string> RequestHeads() const;

 private:
  struct Conn;
  void AcceptLoop(std::stop_token stop);
  void Serve(Conn* c);
  Fault Decide(const std::string& head);

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  const uint16_t upstream_port_;

  mutable std::mutex mu_;
  std::mt19937_64 rng_;                       // guarded by mu_
  double rate_ = 0;                           // guarded by mu_
  std::vector<Fault> kinds_;                  // guarded by mu_
  int fail_next_ = 0;                         // guarded by mu_
  Fault fail_next_kind_ = Fault::kNone;       // guarded by mu_
  std::map<Fault, int> counts_;               // guarded by mu_
  std::vector<std::string> heads_;            // guarded by mu_
  std::vector<std::unique_ptr<Conn>> conns_;  // guarded by mu_
  bool stopping_ = false;                     // guarded by mu_

  std::jthread acceptor_;
};

}  // namespace fsb::testing
