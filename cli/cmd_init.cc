// `fsb init`: create a repository (restic format version 2 by default).
#include <fmt/format.h>

#include <iostream>

#include "cli/global.h"

namespace fsb::cli {

void AddInitCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  struct Opts {
    uint32_t version = 2;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("init", "Create a new repository");
  sub->add_option("--repository-version", o->version, "repository format version: 1 or 2 (default 2)");
  out.push_back({sub, [&g, o]() -> int {
                   Result<std::string> where = ResolveRepository(g);
                   if (!where.ok()) return Fail(g, where.status());
                   Result<Secret<std::string>> pw = ResolvePassword(g);
                   if (!pw.ok()) return Fail(g, pw.status());
                   Result<repo::RepositoryOptions> ro = RepositoryOptionsFrom(g);
                   if (!ro.ok()) return Fail(g, ro.status());
                   Result<repo::BackendOptions> bo = BackendOptionsFrom(g);
                   if (!bo.ok()) return Fail(g, bo.status());
                   auto be = repo::OpenBackend(*where, /*create=*/true, *bo);
                   if (!be.ok()) return Fail(g, be.status());
                   repo::InitOptions init;
                   init.version = o->version;
                   auto r = repo::Repository::Init(std::move(*be), *pw, init, *ro);
                   if (!r.ok()) return Fail(g, r.status().WithContext("init"));
                   if (g.json) {
                     std::cout << fmt::format(
                         "{{\"message_type\":\"initialized\",\"id\":\"{}\",\"repository\":\"{}\"}}\n",
                         (*r)->config().id, *where);
                   } else if (!g.quiet) {
                     std::cout << fmt::format("created restic repository {} at {}\n",
                                              (*r)->config().id.substr(0, 10), *where);
                   }
                   return kExitOk;
                 }});
}

}  // namespace fsb::cli
