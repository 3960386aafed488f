// `fsb snapshots [--json] [--tag T]... [--host H] [--latest N]`.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>

#include "cli/global.h"
#include "cli/snapshot_json.h"

namespace fsb::cli {

void AddSnapshotsCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  struct Opts {
    std::vector<std::string> tags;
    std::vector<std::string> hosts;
    int latest = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("snapshots", "List snapshots");
  sub->add_option("--tag", o->tags, "only snapshots with this tag (a,b = both)");
  sub->add_option("-H,--host", o->hosts, "only snapshots of this host");
  sub->add_option("--latest", o->latest, "only the last N snapshots (per host and paths)");
  out.push_back({sub, [&g, o]() -> int {
    Result<LockedRepository> opened = OpenLockedRepository(g, false, true);
    if (!opened.ok()) return Fail(g, opened.status());
    Result<std::vector<SnapshotWithId>> all = LoadSnapshots(*opened->repo);
    if (!all.ok()) return Fail(g, all.status());
    std::vector<SnapshotWithId> list;
    for (auto& s : *all) {
      if (!o->hosts.empty() &&
          std::find(o->hosts.begin(), o->hosts.end(), s.snapshot.hostname) == o->hosts.end()) {
        continue;
      }
      if (!MatchesTags(s.snapshot, o->tags)) continue;
      list.push_back(std::move(s));
    }
    if (o->latest > 0) {
      // restic: the latest N per (host, paths) group.
      std::map<std::string, int> seen;
      std::vector<SnapshotWithId> kept;
      for (auto it = list.rbegin(); it != list.rend(); ++it) {
        std::string key = it->snapshot.hostname;
        for (auto& p : it->snapshot.paths) key += "\n" + p;
        if (seen[key]++ < o->latest) kept.push_back(*it);
      }
      std::reverse(kept.begin(), kept.end());
      list = std::move(kept);
    }
    if (g.json) {
      std::string outj = "[";
      for (size_t i = 0; i < list.size(); i++) {
        if (i) outj += ',';
        outj += SnapshotJson(list[i]);
      }
      outj += "]\n";
      std::cout << outj;
      return kExitOk;
    }
    std::cout << fmt::format("{:<9} {:<25} {:<16} {:<16} {}\n", "ID", "Time", "Host", "Tags", "Paths");
    std::cout << std::string(80, '-') << "\n";
    for (const auto& s : list) {
      std::string tags;
      for (size_t i = 0; i < s.snapshot.tags.size(); i++) tags += (i ? "," : "") + s.snapshot.tags[i];
      std::string paths;
      for (size_t i = 0; i < s.snapshot.paths.size(); i++) paths += (i ? "\n" + std::string(70, ' ') : "") + s.snapshot.paths[i];
      std::cout << fmt::format("{:<9} {:<25} {:<16} {:<16} {}\n", s.id.Short(), HumanTime(s.snapshot.time),
                               s.snapshot.hostname, tags, paths);
    }
    std::cout << std::string(80, '-') << "\n" << fmt::format("{} snapshots\n", list.size());
    return kExitOk;
  }});
}

}  // namespace fsb::cli
