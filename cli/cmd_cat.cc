// `fsb cat config|snapshot ID|index ID|key ID|blob ID|pack ID|tree SNAPSHOT[:PATH]|masterkey`.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <sstream>

#include "cli/global.h"
#include "cli/snapshot_json.h"
#include "repo/key.h"

namespace fsb::cli {
namespace {

Status WriteOut(ByteView b) {
  size_t off = 0;
  while (off < b.size()) {
    ssize_t n = write(STDOUT_FILENO, b.data() + off, b.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno(errno, "write", "stdout");
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

void AddCatCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  struct Opts {
    std::string type;
    std::string id;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("cat", "Print internal objects to stdout");
  sub->add_option("type", o->type, "config, masterkey, snapshot, index, key, blob, pack or tree")->required();
  sub->add_option("id", o->id, "object ID (or snapshot reference for tree)");
  out.push_back({sub, [&g, o]() -> int {
    Result<LockedRepository> opened = OpenLockedRepository(g, false, true);
    if (!opened.ok()) return Fail(g, opened.status());
    repo::Repository& repo = *opened->repo;
    const std::string& t = o->type;
    auto need_id = [&]() -> Result<repo::Id> {
      if (o->id.empty()) return Status::InvalidArgument("cat " + t + ": an ID is required");
      if (t == "snapshot") return repo.FindSnapshot(o->id);
      return repo::Id::FromHex(o->id);
    };
    Status s;
    if (t == "config") {
      s = WriteOut(AsBytes(repo::EncodeConfig(repo.config()) + "\n"));
    } else if (t == "masterkey") {
      s = WriteOut(AsBytes(repo::EncodeMasterKeyJson(repo.key()) + "\n"));
    } else if (t == "snapshot" || t == "index" || t == "key" || t == "pack") {
      Result<repo::Id> id = need_id();
      if (!id.ok()) return Fail(g, id.status());
      if (t == "key" || t == "pack") {
        auto data = repo.backend().Load(
            repo::Handle{t == "key" ? repo::FileType::kKey : repo::FileType::kPack, id->Hex()}, 0, 0);
        if (!data.ok()) return Fail(g, data.status());
        s = WriteOut(*data);
      } else {
        auto data = repo.LoadUnpacked(t == "snapshot" ? repo::FileType::kSnapshot : repo::FileType::kIndex, *id);
        if (!data.ok()) return Fail(g, data.status());
        s = WriteOut(*data);
        if (s.ok() && (data->empty() || data->back() != '\n')) s = WriteOut(AsBytes("\n"));
      }
    } else if (t == "blob" || t == "tree") {
      if (Status ls = repo.LoadIndex(); !ls.ok()) return Fail(g, ls);
      repo::Id id;
      if (t == "tree") {
        Result<SnapshotRef> ref = ResolveSnapshotRef(repo, o->id);
        if (!ref.ok()) return Fail(g, ref.status());
        id = ref->snapshot.tree;
        const std::string& sub = ref->subpath;
        std::stringstream ss(sub);
        std::string comp;
        while (std::getline(ss, comp, '/')) {
          if (comp.empty()) continue;
          auto nodes = repo.LoadTree(id);
          if (!nodes.ok()) return Fail(g, nodes.status());
          auto it = std::find_if(nodes->begin(), nodes->end(), [&](auto& n) { return n.name == comp; });
          if (it == nodes->end() || !it->subtree) return Fail(g, Status::NotFound("path " + sub + " not found"));
          id = *it->subtree;
        }
        auto data = repo.LoadBlob(repo::BlobType::kTree, id);
        if (!data.ok()) return Fail(g, data.status());
        s = WriteOut(*data);
      } else {
        Result<repo::Id> bid = need_id();
        if (!bid.ok()) return Fail(g, bid.status());
        repo::BlobType bt = repo.HasBlob(repo::BlobType::kData, *bid) ? repo::BlobType::kData : repo::BlobType::kTree;
        auto data = repo.LoadBlob(bt, *bid);
        if (!data.ok()) return Fail(g, data.status());
        s = WriteOut(*data);
      }
    } else {
      return Fail(g, Status::InvalidArgument("cat: unknown type \"" + t + "\""));
    }
    if (!s.ok()) return Fail(g, s);
    return kExitOk;
  }});
}

}  // namespace fsb::cli
