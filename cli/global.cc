#include "cli/global.h"

#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "repo/lock.h"

namespace fsb::cli {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

Result<std::string> ResolveRepository(const GlobalOptions& g) {
  if (!g.repo.empty()) return g.repo;
  for (const char* name : {"FSB_REPOSITORY", "RESTIC_REPOSITORY"}) {
    std::string v = Env(name);
    if (!v.empty()) return v;
  }
  return Status::InvalidArgument("no repository given: use -r/--repo or set FSB_REPOSITORY");
}

Result<Secret<std::string>> ResolvePassword(const GlobalOptions& g) {
  std::string file = g.password_file;
  if (file.empty()) file = Env("FSB_PASSWORD_FILE");
  if (file.empty() && Env("FSB_PASSWORD").empty()) file = Env("RESTIC_PASSWORD_FILE");
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return Status::FromErrno(errno, "read password file", file);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string p = ss.str();
    const char* ws = " \t\r\n\v\f";
    size_t b = p.find_first_not_of(ws);
    if (b == std::string::npos) return Status::InvalidArgument("password file " + file + " is empty");
    p = p.substr(b, p.find_last_not_of(ws) - b + 1);
    return Secret<std::string>(std::move(p));
  }
  for (const char* name : {"FSB_PASSWORD", "RESTIC_PASSWORD"}) {
    const char* v = std::getenv(name);
    if (v && *v) return Secret<std::string>(std::string(v));
  }
  return Status::InvalidArgument(
      "no password given: use --password-file or set FSB_PASSWORD_FILE or FSB_PASSWORD");
}

Result<repo::RepositoryOptions> RepositoryOptionsFrom(const GlobalOptions& g) {
  repo::RepositoryOptions o;
  if (g.compression == "off") {
    o.compression = repo::CompressionMode::kOff;
  } else if (g.compression == "auto") {
    o.compression = repo::CompressionMode::kAuto;
  } else if (g.compression == "max") {
    o.compression = repo::CompressionMode::kMax;
  } else {
    return Status::InvalidArgument("invalid --compression \"" + g.compression + "\": want off, auto or max");
  }
  if (g.pack_size_mib < 4 || g.pack_size_mib > 128) {
    return Status::InvalidArgument("--pack-size must be between 4 and 128 MiB");
  }
  o.pack_size = g.pack_size_mib << 20;
  // Benchmarks and tests only: packs smaller than restic's 4 MiB minimum, so that a repository of
  // 10 000 packs needs no 40 GB of data (bench/run.py's prune entry). Both tools read such packs.
  if (const char* v = std::getenv("FSB_TEST_PACK_SIZE_BYTES"); v != nullptr && *v) {
    uint64_t bytes = 0;
    auto [end, ec] = std::from_chars(v, v + std::strlen(v), bytes);
    if (ec != std::errc() || *end != '\0' || bytes < 4096) {
      return Status::InvalidArgument(
          "FSB_TEST_PACK_SIZE_BYTES must be a byte count of at least 4096");
    }
    o.pack_size = bytes;
  }
  return o;
}

Result<repo::BackendOptions> BackendOptionsFrom(const GlobalOptions& g) {
  repo::BackendOptions o;
  o.ca_file = g.cacert;
  o.insecure_tls = g.insecure_tls;
  for (const std::string& kv : g.options) {
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq);
    if (key == "s3.region" && eq != std::string::npos) {
      o.s3_region = kv.substr(eq + 1);
    } else {
      return Status::InvalidArgument("invalid option -o \"" + kv +
                                     "\": known options: s3.region=REGION");
    }
  }
  return o;
}

Result<std::unique_ptr<repo::Repository>> OpenRepository(const GlobalOptions& g) {
  FSB_ASSIGN_OR_RETURN(std::string where, ResolveRepository(g));
  FSB_ASSIGN_OR_RETURN(repo::RepositoryOptions opts, RepositoryOptionsFrom(g));
  FSB_ASSIGN_OR_RETURN(Secret<std::string> password, ResolvePassword(g));
  FSB_ASSIGN_OR_RETURN(repo::BackendOptions bo, BackendOptionsFrom(g));
  FSB_ASSIGN_OR_RETURN(std::unique_ptr<repo::Backend> be, repo::OpenBackend(where, false, bo));
  return repo::Repository::Open(std::move(be), password, opts);
}

Result<std::unique_ptr<repo::RepoLock>> LockRepository(const GlobalOptions& g, repo::Repository& r,
                                                       bool exclusive, bool allow_no_lock) {
  if (g.no_lock && allow_no_lock) return std::unique_ptr<repo::RepoLock>();
  FSB_ASSIGN_OR_RETURN(std::chrono::seconds retry, ParseDuration(g.retry_lock));
  repo::LockOptions lo;
  lo.retry_for = retry;
  // A shared lock's second look runs while the command reads the index and its source; the
  // repository's write barrier holds back every write until it passed. (Not with --retry-lock:
  // RepoLock then looks twice before returning, so that a racing prune can be waited out.)
  lo.confirm_in_background = true;
  FSB_ASSIGN_OR_RETURN(std::unique_ptr<repo::RepoLock> lock,
                       repo::RepoLock::Acquire(r, exclusive, lo));
  // Test hook (the lock interop tests): with FSB_TEST_LOCK_HOLD_FILE=PATH the command creates PATH
  // once it holds its lock and goes on only after PATH is removed (at most 5 minutes), so another
  // program can be run against the locked repository.
  if (const char* hold = std::getenv("FSB_TEST_LOCK_HOLD_FILE"); hold != nullptr && *hold) {
    std::ofstream(hold) << getpid() << "\n";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    while (access(hold, F_OK) == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return lock;
}

Result<LockedRepository> OpenLockedRepository(const GlobalOptions& g, bool exclusive, bool allow_no_lock) {
  LockedRepository out;
  FSB_ASSIGN_OR_RETURN(out.repo, OpenRepository(g));
  FSB_ASSIGN_OR_RETURN(out.lock, LockRepository(g, *out.repo, exclusive, allow_no_lock));
  return out;
}

int Fail(const GlobalOptions& g, const Status& s) {
  if (g.json) {
    std::string msg;
    repo::AppendGoJsonString(s.message(), msg);
    std::cerr << "{\"message_type\":\"error\",\"error\":{\"message\":" << msg << "}}" << std::endl;
  } else {
    std::cerr << "fsb: " << s.message() << std::endl;
  }
  return kExitFatal;
}

Result<std::chrono::seconds> ParseDuration(std::string_view s) {
  if (s.empty()) return Status::InvalidArgument("empty duration");
  uint64_t total = 0, cur = 0;
  bool digits = false;
  for (char c : s) {
    if (c >= '0' && c <= '9') {
      cur = cur * 10 + uint64_t(c - '0');
      digits = true;
      continue;
    }
    if (!digits) return Status::InvalidArgument(fmt::format("invalid duration \"{}\"", s));
    uint64_t mul = c == 's' ? 1 : c == 'm' ? 60 : c == 'h' ? 3600 : c == 'd' ? 86400 : 0;
    if (mul == 0) return Status::InvalidArgument(fmt::format("invalid duration \"{}\"", s));
    total += cur * mul;
    cur = 0;
    digits = false;
  }
  if (digits) {
    if (total == 0 && cur == 0) return std::chrono::seconds(0);
    return Status::InvalidArgument(fmt::format("invalid duration \"{}\": missing unit (s, m, h)", s));
  }
  return std::chrono::seconds(total);
}

std::string FormatBytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  if (u == 0) return fmt::format("{} B", n);
  return fmt::format("{:.3f} {}", v, units[u]);
}

}  // namespace fsb::cli
