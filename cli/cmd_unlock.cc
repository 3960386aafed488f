// `fsb unlock [--remove-all]`: remove stale locks (all locks with --remove-all).
#include <fmt/format.h>

#include <iostream>

#include "cli/global.h"
#include "repo/lock.h"

namespace fsb::cli {

void AddUnlockCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  auto remove_all = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand("unlock", "Remove stale locks");
  sub->add_flag("--remove-all", *remove_all, "remove all locks, even fresh ones");
  out.push_back({sub, [&g, remove_all]() -> int {
                   auto r = OpenRepository(g);
                   if (!r.ok()) return Fail(g, r.status());
                   Result<int> n = repo::RemoveLocks(**r, *remove_all);
                   if (!n.ok()) return Fail(g, n.status().WithContext("unlock"));
                   if (!g.quiet) std::cout << fmt::format("successfully removed {} locks\n", *n);
                   return kExitOk;
                 }});
}

}  // namespace fsb::cli
