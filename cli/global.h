// cli/global.h: options shared by every subcommand, and the helpers that turn them into an open
// repository. One thread (the CLI's main thread).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/secret.h"
#include "base/status.h"
#include "repo/lock.h"
#include "repo/backend/open.h"
#include "repo/repository.h"

namespace fsb::cli {

// restic's exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFatal = 1;
inline constexpr int kExitPartial = 3;  // snapshot written, some files unreadable

struct GlobalOptions {
  std::string repo;           // -r/--repo, FSB_REPOSITORY, RESTIC_REPOSITORY
  std::string password_file;  // --password-file, FSB_PASSWORD_FILE, RESTIC_PASSWORD_FILE
  bool json = false;
  bool quiet = false;
  int verbose = 0;
  std::string compression = "auto";  // off|auto|max
  uint64_t pack_size_mib = 16;
  bool no_lock = false;
  std::string retry_lock = "0s";
  std::string cacert;                // --cacert: CA certificates for https backends
  bool insecure_tls = false;         // --insecure-tls
  std::vector<std::string> options;  // -o key=value (restic's extended options: s3.region)
};

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

// Each subcommand registers itself (cmd_*.cc).
void AddInitCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddBackupCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddRestoreCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddSnapshotsCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddLsCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddCatCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddCheckCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddUnlockCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddForgetCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddPruneCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddVersionCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddAgentCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);
void AddCoordinatorCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out);

// The repository location from the flag or the environment. kInvalidArgument when none is set.
Result<std::string> ResolveRepository(const GlobalOptions& g);
// The password from --password-file / FSB_PASSWORD_FILE / FSB_PASSWORD / RESTIC_*; a password
// file's surrounding white space is trimmed (restic does the same).
Result<Secret<std::string>> ResolvePassword(const GlobalOptions& g);
Result<repo::RepositoryOptions> RepositoryOptionsFrom(const GlobalOptions& g);
// --cacert, --insecure-tls and -o; kInvalidArgument for an unknown or malformed -o.
Result<repo::BackendOptions> BackendOptionsFrom(const GlobalOptions& g);
// Opens the repository named by the options.
Result<std::unique_ptr<repo::Repository>> OpenRepository(const GlobalOptions& g);
// Takes the repository lock unless --no-lock (only for read-only commands).
Result<std::unique_ptr<repo::RepoLock>> LockRepository(const GlobalOptions& g, repo::Repository& r,
                                                       bool exclusive, bool allow_no_lock);

// An open repository and the lock held on it; the lock is released (member order) before the
// repository closes.
struct LockedRepository {
  std::unique_ptr<repo::Repository> repo;
  std::unique_ptr<repo::RepoLock> lock;  // null with --no-lock
};
// OpenRepository + LockRepository.
Result<LockedRepository> OpenLockedRepository(const GlobalOptions& g, bool exclusive, bool allow_no_lock);

// Prints "fsb: <message>" on stderr (or a JSON error object with --json) and returns kExitFatal.
int Fail(const GlobalOptions& g, const Status& s);
// Parses "90s", "5m", "2h", "1h30m".
Result<std::chrono::seconds> ParseDuration(std::string_view s);
// "1.234 GiB" style.
std::string FormatBytes(uint64_t n);

}  // namespace fsb::cli
