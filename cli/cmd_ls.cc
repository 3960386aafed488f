// `fsb ls SNAPSHOT[:SUBPATH] [--json] [-l]`: list the files of a snapshot.
#include <fmt/format.h>

#include <functional>
#include <iostream>

#include "cli/global.h"
#include "cli/snapshot_json.h"

namespace fsb::cli {
namespace {

std::string Permissions(const repo::Node& n) {
  char t = '-';
  switch (n.type) {
    case repo::NodeType::kDir: t = 'd'; break;
    case repo::NodeType::kSymlink: t = 'L'; break;
    case repo::NodeType::kDev: t = 'D'; break;
    case repo::NodeType::kCharDev: t = 'c'; break;
    case repo::NodeType::kFifo: t = 'p'; break;
    case repo::NodeType::kSocket: t = 'S'; break;
    default: break;
  }
  std::string s(1, t);
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; i++) s += (n.mode & (1u << (8 - i))) ? rwx[i] : '-';
  return s;
}

}  // namespace

void AddLsCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  struct Opts {
    std::string snapshot;
    bool long_format = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("ls", "List the files in a snapshot");
  sub->add_option("snapshot", o->snapshot, "snapshot ID, prefix or \"latest\", optionally :SUBPATH")->required();
  sub->add_flag("-l,--long", o->long_format, "long listing");
  out.push_back({sub, [&g, o]() -> int {
    Result<SnapshotForReading> opened = OpenSnapshotForReading(g, o->snapshot);
    if (!opened.ok()) return Fail(g, opened.status());
    repo::Repository& repo = opened->repo();
    const SnapshotRef& ref = opened->ref;
    const repo::Id* sid = &ref.id;
    const repo::Snapshot* snap = &ref.snapshot;
    const std::string& subpath = ref.subpath;
    if (g.json) {
      std::cout << SnapshotJson({*sid, *snap}, "snapshot") << "\n";
    } else if (!g.quiet) {
      std::cerr << fmt::format("snapshot {} of [{}] at {}:\n", sid->Short(),
                               snap->paths.empty() ? "" : snap->paths[0], HumanTime(snap->time));
    }
    Status err;
    std::function<void(const repo::Id&, const std::string&)> walk = [&](const repo::Id& tree,
                                                                       const std::string& prefix) {
      if (!err.ok()) return;
      Result<std::vector<repo::Node>> nodes = repo.LoadTree(tree);
      if (!nodes.ok()) {
        err = nodes.status();
        return;
      }
      for (const repo::Node& n : *nodes) {
        std::string path = prefix + "/" + n.name;
        bool under = subpath.empty() || path == subpath || path.rfind(subpath + "/", 0) == 0 ||
                     subpath.rfind(path + "/", 0) == 0;
        if (!under) continue;
        bool show = subpath.empty() || path.size() >= subpath.size();
        if (show) {
          if (g.json) {
            std::string j = "{\"name\":";
            repo::AppendGoJsonString(n.name, j);
            j += fmt::format(",\"type\":\"{}\",\"path\":", repo::NodeTypeName(n.type));
            repo::AppendGoJsonString(path, j);
            j += fmt::format(",\"uid\":{},\"gid\":{}", n.uid, n.gid);
            if (n.type == repo::NodeType::kFile) j += fmt::format(",\"size\":{}", n.size);
            j += fmt::format(",\"mode\":{},\"permissions\":\"{}\"", n.mode, Permissions(n));
            j += ",\"mtime\":\"" + repo::FormatTimestamp(n.mtime) + "\",\"atime\":\"" +
                 repo::FormatTimestamp(n.atime) + "\",\"ctime\":\"" + repo::FormatTimestamp(n.ctime) + "\"";
            j += ",\"struct_type\":\"node\"}";
            std::cout << j << "\n";
          } else if (o->long_format) {
            std::cout << fmt::format("{} {:>5} {:>5} {:>12} {} {}{}\n", Permissions(n), n.uid, n.gid, n.size,
                                     HumanTime(n.mtime), path,
                                     n.type == repo::NodeType::kSymlink ? " -> " + n.linktarget : "");
          } else {
            std::cout << path << "\n";
          }
        }
        if (n.type == repo::NodeType::kDir && n.subtree) walk(*n.subtree, path);
      }
    };
    walk(snap->tree, "");
    if (!err.ok()) return Fail(g, err);
    return kExitOk;
  }});
}

}  // namespace fsb::cli
