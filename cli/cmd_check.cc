// `fsb check [--read-data | --read-data-subset n/m]`.
#include <fmt/format.h>

#include <iostream>

#include "cli/global.h"
#include "repo/check.h"

namespace fsb::cli {

void AddCheckCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  struct Opts {
    bool read_data = false;
    std::string subset;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("check", "Check the repository for errors");
  sub->add_flag("--read-data", o->read_data, "read and verify every pack");
  sub->add_option("--read-data-subset", o->subset, "read subset n/m of the packs");
  out.push_back({sub, [&g, o]() -> int {
    // restic 0.14's check takes an exclusive lock; a shared one is enough to keep prune away
    // while letting backups continue.
    Result<LockedRepository> opened = OpenLockedRepository(g, false, false);
    if (!opened.ok()) return Fail(g, opened.status());
    repo::Repository& repo = *opened->repo;
    repo::CheckOptions co;
    co.read_data = o->read_data;
    if (!o->subset.empty()) {
      unsigned n = 0, m = 0;
      if (sscanf(o->subset.c_str(), "%u/%u", &n, &m) != 2 || m == 0 || n == 0 || n > m) {
        return Fail(g, Status::InvalidArgument("--read-data-subset: want n/m with 1 <= n <= m"));
      }
      co.read_data = true;
      co.subset_n = n;
      co.subset_m = m;
    }
    auto res = repo::RunCheck(repo, co, [&](const std::string& phase) {
      if (!g.quiet && !g.json) std::cout << phase << "\n";
    });
    if (!res.ok()) return Fail(g, res.status());
    if (g.verbose > 0) {
      for (const auto& h : res->hints) std::cout << "hint: " << h << "\n";
    }
    for (const auto& e : res->errors) std::cerr << "error: " << e << "\n";
    if (g.json) {
      std::cout << fmt::format(
          "{{\"message_type\":\"summary\",\"num_errors\":{},\"snapshots\":{},\"trees\":{},\"packs\":{},"
          "\"packs_read\":{},\"blobs_read\":{}}}\n",
          res->errors.size(), res->snapshots, res->trees, res->packs, res->packs_read, res->blobs_read);
    }
    if (!res->ok()) {
      std::cerr << fmt::format("Fatal: repository contains errors ({})\n", res->errors.size());
      return kExitFatal;
    }
    if (!g.quiet && !g.json) std::cout << "no errors were found\n";
    return kExitOk;
  }});
}

}  // namespace fsb::cli
