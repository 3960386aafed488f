#include "cli/cli.h"

#include <curl/curl.h>

#include <cstdio>
#include <exception>
#include <iostream>

#include "base/log.h"
#include "base/malloc_tuning.h"
#include "cli/global.h"

namespace fsb::cli {

int Main(int argc, char** argv) {
  try {
    TuneMalloc();                            // before any thread: see base/malloc_tuning.cc
    curl_global_init(CURL_GLOBAL_DEFAULT);  // once, before any thread
    CLI::App app{"fsb: fast restic-compatible file-system backup (the Kubernetes node agent's engine)", "fsb"};
    app.require_subcommand(1);
    // Global flags may come after the subcommand too, as restic (and Velero's calls) have them.
    app.fallthrough();
    app.set_help_all_flag("--help-all", "Show help for every subcommand");
    GlobalOptions g;
    app.add_option("-r,--repo", g.repo,
                   "repository (a path, local:PATH or s3:...); env FSB_REPOSITORY, RESTIC_REPOSITORY");
    app.add_option("--password-file", g.password_file,
                   "file holding the repository password; env FSB_PASSWORD_FILE, RESTIC_PASSWORD_FILE "
                   "(or FSB_PASSWORD / RESTIC_PASSWORD)");
    app.add_flag("--json", g.json, "machine-readable output (restic's message shapes)");
    app.add_flag("-q,--quiet", g.quiet, "print nothing but errors");
    app.add_flag("-v,--verbose", g.verbose, "more output (repeat for more)");
    app.add_option("--compression", g.compression, "data compression in v2 repositories: off, auto, max");
    app.add_option("--pack-size", g.pack_size_mib, "target pack size in MiB (4-128)");
    app.add_flag("--no-lock", g.no_lock, "do not lock the repository (read-only commands only)");
    app.add_option("--retry-lock", g.retry_lock, "wait this long for a conflicting lock (e.g. 5m)");
    app.add_option("--cacert", g.cacert, "file of PEM CA certificates to trust for https backends");
    app.add_flag("--insecure-tls", g.insecure_tls,
                 "skip TLS certificate verification (testing only)");
    app.add_option("-o,--option", g.options, "backend option key=value (s3.region=REGION)");
    std::vector<Command> commands;
    AddInitCommand(app, g, commands);
    AddBackupCommand(app, g, commands);
    AddRestoreCommand(app, g, commands);
    AddSnapshotsCommand(app, g, commands);
    AddLsCommand(app, g, commands);
    AddCatCommand(app, g, commands);
    AddCheckCommand(app, g, commands);
    AddUnlockCommand(app, g, commands);
    AddForgetCommand(app, g, commands);
    AddPruneCommand(app, g, commands);
    AddVersionCommand(app, g, commands);
    AddAgentCommand(app, g, commands);
    AddCoordinatorCommand(app, g, commands);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e) == 0 ? 0 : kExitFatal;
    }
    auto level = g.verbose >= 2 ? spdlog::level::debug
                 : g.verbose == 1 ? spdlog::level::info
                 : g.quiet        ? spdlog::level::err
                                  : spdlog::level::warn;
    SetupLogging(level);
    for (const Command& c : commands) {
      if (c.app->parsed()) return c.run();
    }
    return kExitFatal;
  } catch (const std::bad_alloc&) {
    throw;  // out of memory ends the process
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fsb: internal error: %s\n", e.what());
    return kExitFatal;
  }
}

}  // namespace fsb::cli
