// `fsb version`.
#include <fmt/format.h>

#include <iostream>

#include "base/sysinfo.h"
#include "cli/global.h"


namespace fsb::cli {

void AddVersionCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  CLI::App* sub = app.add_subcommand("version", "Print version information");
  out.push_back({sub, [&g]() -> int {
                   if (g.json) {
                     std::cout << fmt::format(
                         "{{\"message_type\":\"version\",\"version\":\"{}\",\"repository_versions\":[1,2]}}\n",
                         kFsbVersion);
                   } else {
                     std::cout << fmt::format("fsb {} (restic repository format 1 and 2)\n", kFsbVersion);
                   }
                   return kExitOk;
                 }});
}

}  // namespace fsb::cli
