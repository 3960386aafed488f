#include "tests/support/s3_server.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace fsb::testing {
namespace fs = std::filesystem;
namespace {

// Tests use libcurl (HttpClient) but have no main of their own: initialise it once, before main
// and so before any thread, as cli/cli.cc's Main does for the binary.
const bool kCurlInitialized = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();

// node launcher: LAUNCHER MODULE_DIR PORT DATA_DIR BUCKET [KEY CERT]. Both s3rver 3.7.1 and the
// @20minutes fork export the same S3rver class; run() resolves to the bound address.
constexpr char kLauncher[] = R"JS(
const [moduleDir, port, dir, bucket, key, cert] = process.argv.slice(2);
const S3rver = require(moduleDir);
const fs = require('fs');
fs.mkdirSync(dir, { recursive: true });
const opts = { address: '127.0.0.1', port: Number(port), directory: dir, silent: true,
               vhostBuckets: false,
               configureBuckets: bucket ? [{ name: bucket, configs: [] }] : [] };
if (key) { opts.key = fs.readFileSync(key); opts.cert = fs.readFileSync(cert); }
new S3rver(opts).run().then(
  (a) => console.log(`listening ${a.address}:${a.port}`),
  (e) => { console.error(`start failed: ${e && e.stack || e}`); process.exit(1); });
)JS";

std::atomic<int> g_bucket_counter{0};

}  // namespace

fs::path NpmPrefix() {
  if (const char* p = std::getenv("FSB_NPM_PREFIX"); p != nullptr && *p != '\0') return p;
  return fs::path(FSB_SOURCE_DIR) / ".cache" / "npm";
}

std::string S3Server::url() const { return (tls_ ? "https://" : "http://") + endpoint(); }

std::string S3Server::Log() const { return ReadFileToString(dir_.path() / "server.log"); }

std::unique_ptr<S3Server> S3Server::Start(const S3ServerOptions& options, std::string* why) {
  (void)kCurlInitialized;
  const std::string node = FindProgram("node");
  if (node.empty()) {
    *why = "node is not on PATH";
    return nullptr;
  }
  const fs::path module = NpmPrefix() / "node_modules" /
                          (options.kind == S3ServerKind::kS3rver ? "s3rver" : "@20minutes/s3rver");
  if (!fs::exists(module / "package.json")) {
    *why = module.string() + " is not installed (run scripts/setup)";
    return nullptr;
  }
  std::unique_ptr<S3Server> server(new S3Server());
  server->tls_ = !options.tls_key.empty();
  const fs::path launcher = server->dir_.path() / "launch.js";
  WriteStringToFile(launcher, kLauncher);
  const fs::path log = server->dir_.path() / "server.log";
  std::vector<std::string> argv = {node,
                                   "--openssl-legacy-provider",
                                   launcher.string(),
                                   module.string(),
                                   "0",
                                   (server->dir_.path() / "data").string(),
                                   options.bucket};
  if (server->tls_) {
    argv.push_back(options.tls_key.string());
    argv.push_back(options.tls_cert.string());
  }
  const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    *why = "cannot create " + log.string();
    return nullptr;
  }
  // Built before fork: the child of a threaded process may only call async-signal-safe functions.
  std::vector<char*> av;
  for (auto& a : argv) av.push_back(a.data());
  av.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // The server must not outlive a crashed or killed test.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    const int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    execv(av[0], av.data());
    _exit(127);
  }
  close(log_fd);
  if (pid < 0) {
    *why = "fork failed";
    return nullptr;
  }
  server->pid_ = pid;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string out = ReadFileToString(log);
    const size_t at = out.find("listening 127.0.0.1:");
    if (at != std::string::npos && out.find('\n', at) != std::string::npos) {
      server->port_ = static_cast<uint16_t>(std::atoi(out.c_str() + at + 20));
      if (server->port_ != 0) return server;
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      server->pid_ = -1;
      *why = "server exited at start: " + out;
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  *why = "server did not report its port within 30 s: " + ReadFileToString(log);
  return nullptr;
}

S3Server::~S3Server() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

S3Server* SharedS3Server(std::string* why) {
  static std::mutex mu;
  static std::unique_ptr<S3Server> server;
  static std::string error;
  static bool tried = false;
  std::lock_guard lock(mu);
  if (!tried) {
    tried = true;
    server = S3Server::Start({}, &error);
  }
  if (!server) *why = error;
  return server.get();
}

bool MakeTestCertificates(const fs::path& dir, std::string* why) {
  if (FindProgram("openssl").empty()) {
    *why = "openssl is not on PATH";
    return false;
  }
  WriteStringToFile(dir / "server.ext",
                    "basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  const std::string d = dir.string();
  const std::vector<std::vector<std::string>> steps = {
      {"openssl",
       "req",
       "-x509",
       "-newkey",
       "ec",
       "-pkeyopt",
       "ec_paramgen_curve:prime256v1",
       "-nodes",
       "-keyout",
       d + "/ca.key",
       "-out",
       d + "/ca.pem",
       "-days",
       "2",
       "-subj",
       "/CN=fsb test CA",
       "-addext",
       "basicConstraints=critical,CA:TRUE",
       "-addext",
       "keyUsage=critical,keyCertSign,cRLSign"},
      {"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", d + "/server.key", "-out", d + "/server.csr", "-subj", "/CN=127.0.0.1"},
      {"openssl", "x509", "-req", "-in", d + "/server.csr", "-CA", d + "/ca.pem", "-CAkey",
       d + "/ca.key", "-CAcreateserial", "-out", d + "/server.crt", "-days", "2", "-extfile",
       d + "/server.ext"},
  };
  for (const auto& argv : steps) {
    RunResult r = RunCommand(argv);
    if (r.exit_code != 0) {
      *why = argv[1] + " failed: " + r.err;
      return false;
    }
  }
  return true;
}

repo::S3Config TestS3Config(const S3Server& server, const std::string& bucket,
                            const std::string& prefix) {
  repo::S3Config c;
  c.endpoint = server.endpoint();
  c.use_https = server.url().starts_with("https");
  c.bucket = bucket;
  c.prefix = prefix;
  c.path_style = true;
  c.region = "us-east-1";
  c.credentials.access_key_id = "S3RVER";
  c.credentials.secret_access_key = Secret<std::string>("S3RVER");
  c.http.low_speed_bytes = 1;
  c.http.low_speed_time = std::chrono::seconds(2);
  c.http.connect_timeout = std::chrono::milliseconds(2000);
  c.retry.initial_delay = std::chrono::milliseconds(10);
  c.retry.max_delay = std::chrono::milliseconds(200);
  c.retry.max_total = std::chrono::milliseconds(60'000);
  return c;
}

std::string UniqueBucketName() {
  return "fsb-test-" + std::to_string(getpid()) + "-" + std::to_string(g_bucket_counter++);
}

}  // namespace fsb::testing
