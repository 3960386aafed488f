// `fsb forget [--keep-* ...] [--keep-tag T]... [--group-by G] [--host H] [--tag T] [--path P]
// [--dry-run] [--prune [prune flags]] [--json] [ID...]`: restic 0.14's forget (repo/forget.h has
// the policy). Removes only snapshot files; with --prune it then runs `fsb prune` (cli/cmd_prune.h)
// under the same exclusive lock.
#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <iostream>
#include <set>

#include "base/log.h"
#include "cli/cmd_prune.h"
#include "cli/global.h"
#include "cli/snapshot_json.h"
#include "repo/forget.h"

namespace fsb::cli {
namespace {

struct ForgetOptions {
  repo::ForgetPolicy policy;
  std::string within, within_hourly, within_daily, within_weekly, within_monthly, within_yearly;
  std::vector<std::string> hosts;
  std::vector<std::string> tags;
  std::vector<std::string> paths;
  std::string group_by = "host,paths";  // restic 0.14's default
  bool compact = false;
  bool dry_run = false;
  bool prune = false;
  PruneFlags prune_flags;
  std::vector<std::string> ids;
};

Status ParseDurations(ForgetOptions& o) {
  const std::pair<const std::string*, repo::KeepDuration*> fields[] = {
      {&o.within, &o.policy.within},
      {&o.within_hourly, &o.policy.within_hourly},
      {&o.within_daily, &o.policy.within_daily},
      {&o.within_weekly, &o.policy.within_weekly},
      {&o.within_monthly, &o.policy.within_monthly},
      {&o.within_yearly, &o.policy.within_yearly}};
  for (const auto& [text, out] : fields) {
    if (text->empty()) continue;
    FSB_ASSIGN_OR_RETURN(*out, repo::ParseKeepDuration(*text));
  }
  return Status::Ok();
}

std::string Join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); i++) out += (i ? std::string(sep) : "") + v[i];
  return out;
}

// A table like restic's PrintSnapshots: oldest first, with a Reasons column for kept snapshots.
void PrintTable(const std::vector<repo::SnapshotEntry>& list,
                const std::vector<repo::KeepReason>* reasons, bool compact) {
  struct Row {
    std::string id, time, host, tags, reasons, paths;
  };
  std::vector<Row> rows;
  for (size_t i = list.size(); i-- > 0;) {  // `list` is newest first
    const repo::SnapshotEntry& e = list[i];
    Row r{e.id.Short(), HumanTime(e.snapshot.time), e.snapshot.hostname, Join(e.snapshot.tags, ","),
          "",           Join(e.snapshot.paths, ",")};
    if (reasons && i < reasons->size()) r.reasons = Join((*reasons)[i].matches, ", ");
    rows.push_back(std::move(r));
  }
  size_t host_w = 10, tags_w = 10, reasons_w = 7;
  for (const Row& r : rows) {
    host_w = std::max(host_w, r.host.size());
    tags_w = std::max(tags_w, r.tags.size());
    reasons_w = std::max(reasons_w, r.reasons.size());
  }
  auto line = [&](const Row& r) {
    std::string s =
        fmt::format("{:<8}  {:<19}  {:<{}}  {:<{}}", r.id, r.time, r.host, host_w, r.tags, tags_w);
    if (!compact) {
      if (reasons) s += fmt::format("  {:<{}}", r.reasons, reasons_w);
      s += "  " + r.paths;
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  std::string header = line({"ID", "Time", "Host", "Tags", "Reasons", "Paths"});
  std::cout << header << std::string(header.size() - 1, '-') << "\n";
  for (const Row& r : rows) std::cout << line(r);
  std::cout << std::string(header.size() - 1, '-') << "\n"
            << fmt::format("{} snapshots\n", rows.size());
}

// restic's `forget --json`: an array of {"tags","host","paths","keep","remove","reasons"}, with
// null for an empty (nil) list as Go's encoder writes it.
std::string ForgetJson(const std::vector<repo::ForgetGroup>& groups) {
  auto strings = [](const std::optional<std::vector<std::string>>& v) {
    if (!v) return std::string("null");
    std::string out = "[";
    for (size_t i = 0; i < v->size(); i++) {
      if (i) out += ',';
      repo::AppendGoJsonString((*v)[i], out);
    }
    return out + "]";
  };
  auto snapshots = [](const std::vector<repo::SnapshotEntry>& v) {
    if (v.empty()) return std::string("null");
    std::string out = "[";
    for (size_t i = 0; i < v.size(); i++) {
      if (i) out += ',';
      out += SnapshotJson({v[i].id, v[i].snapshot});
    }
    return out + "]";
  };
  std::string out = "[";
  for (size_t i = 0; i < groups.size(); i++) {
    const repo::ForgetGroup& g = groups[i];
    if (i) out += ',';
    out += "{\"tags\":" + strings(g.tags) + ",\"host\":";
    repo::AppendGoJsonString(g.host, out);
    out += ",\"paths\":" + strings(g.paths) + ",\"keep\":" + snapshots(g.result.keep) +
           ",\"remove\":" + snapshots(g.result.remove) + ",\"reasons\":";
    if (g.result.reasons.empty()) {
      out += "null";
    } else {
      out += '[';
      for (size_t j = 0; j < g.result.reasons.size(); j++) {
        if (j) out += ',';
        out += repo::KeepReasonJson(g.result.reasons[j]);
      }
      out += ']';
    }
    out += '}';
  }
  return out + "]\n";
}

int RunForget(const GlobalOptions& g, ForgetOptions& o) {
  // restic checks the prune flags first, --prune or not.
  Result<repo::PruneOptions> prune_options = PruneOptionsFrom(o.prune_flags);
  if (!prune_options.ok()) return Fail(g, prune_options.status());
  if (Status s = ParseDurations(o); !s.ok()) return Fail(g, s);
  if (Status s = repo::ValidatePolicy(o.policy); !s.ok()) return Fail(g, s);
  Result<repo::GroupBy> group_by = repo::ParseGroupBy(o.group_by);
  if (!group_by.ok()) return Fail(g, group_by.status());
  if (g.no_lock && !o.dry_run) {
    return Fail(g, Status::InvalidArgument(
                       "--no-lock is only applicable in combination with --dry-run for forget"));
  }
  // restic 0.14 takes an exclusive lock for forget, also for --dry-run unless --no-lock.
  Result<LockedRepository> opened = OpenLockedRepository(g, true, /*allow_no_lock=*/o.dry_run);
  if (!opened.ok()) return Fail(g, opened.status());
  repo::Repository& r = *opened->repo;
  auto log = GetLogger("cli");
  const bool text = !g.json && !g.quiet;
  repo::SnapshotFilter filter{o.hosts, o.tags, o.paths};

  std::vector<repo::Id> remove_ids;
  std::vector<repo::ForgetGroup> groups;
  if (!o.ids.empty()) {
    // Explicit IDs are forgotten as given (restic: filters only apply to "latest").
    std::vector<SnapshotWithId> filtered;
    bool loaded = false;
    for (const std::string& ref : o.ids) {
      Result<repo::Id> id = Status::NotFound("");
      if (ref == "latest") {
        if (!loaded) {
          Result<std::vector<SnapshotWithId>> all = LoadSnapshots(r);
          if (!all.ok()) return Fail(g, all.status());
          for (auto& s : *all) {
            if (filter.Matches(s.snapshot)) filtered.push_back(std::move(s));
          }
          loaded = true;
        }
        if (filtered.empty()) {
          std::cerr << "Ignoring \"latest\", no snapshot matched the given filter\n";
          continue;
        }
        id = filtered.back().id;  // LoadSnapshots sorts oldest first
      } else {
        id = r.FindSnapshot(ref);
        if (!id.ok()) {
          std::cerr << fmt::format("Ignoring \"{}\": {}\n", ref, id.status().message());
          continue;
        }
      }
      if (std::find(remove_ids.begin(), remove_ids.end(), *id) == remove_ids.end()) {
        remove_ids.push_back(*id);
      }
    }
  } else {
    Result<std::vector<SnapshotWithId>> all = LoadSnapshots(r);
    if (!all.ok()) return Fail(g, all.status());
    std::vector<repo::SnapshotEntry> list;
    for (auto& s : *all) {
      if (filter.Matches(s.snapshot)) list.push_back({s.id, std::move(s.snapshot)});
    }
    if (o.policy.Empty()) {
      if (text) std::cout << "no policy was specified, no snapshots will be removed\n";
    } else {
      if (text) std::cout << "Applying Policy: " << o.policy.ToString() << "\n";
      groups = repo::PlanForget(std::move(list), o.policy, *group_by, std::time(nullptr));
      for (const repo::ForgetGroup& grp : groups) {
        if (text) {
          if (g.verbose >= 1) {
            std::vector<std::string> parts;
            if (!grp.host.empty()) parts.push_back("host [" + grp.host + "]");
            if (grp.tags) parts.push_back("tags [" + Join(*grp.tags, ", ") + "]");
            if (grp.paths) parts.push_back("paths [" + Join(*grp.paths, ", ") + "]");
            std::cout << "snapshots for (" << Join(parts, ", ") << "):\n";
          }
          if (!grp.result.keep.empty()) {
            std::cout << fmt::format("keep {} snapshots:\n", grp.result.keep.size());
            PrintTable(grp.result.keep, &grp.result.reasons, o.compact);
            std::cout << "\n";
          }
          if (!grp.result.remove.empty()) {
            std::cout << fmt::format("remove {} snapshots:\n", grp.result.remove.size());
            PrintTable(grp.result.remove, nullptr, o.compact);
            std::cout << "\n";
          }
        }
        for (const repo::SnapshotEntry& e : grp.result.remove) remove_ids.push_back(e.id);
      }
    }
  }

  if (!remove_ids.empty()) {
    if (o.dry_run) {
      if (text) {
        std::cout << "Would have removed the following snapshots:\n{";
        for (size_t i = 0; i < remove_ids.size(); i++) {
          std::cout << (i ? " " : "") << remove_ids[i].Short();
        }
        std::cout << "}\n\n";
      }
    } else {
      for (const repo::Id& id : remove_ids) {
        Status s = r.backend().Remove(repo::Handle{repo::FileType::kSnapshot, id.Hex()});
        if (!s.ok()) {
          return Fail(
              g, Status(s.code(), fmt::format("remove snapshot {}: {}", id.Short(), s.message())));
        }
        log->info("removed snapshot snapshot={}", id.Short());
        if (text && g.verbose >= 2) std::cout << "removed snapshot " << id.Hex() << "\n";
      }
    }
  }
  if (g.json && !groups.empty()) std::cout << ForgetJson(groups);
  if (!remove_ids.empty() && o.prune) {
    if (!g.json && !g.quiet) {
      std::cout << fmt::format("{} snapshots have been removed, running prune\n",
                               remove_ids.size());
    }
    return RunPruneWithRepo(g, r, opened->lock.get(), std::move(*prune_options), o.dry_run,
                            remove_ids);
  }
  return kExitOk;
}

}  // namespace

void AddForgetCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  auto o = std::make_shared<ForgetOptions>();
  CLI::App* sub = app.add_subcommand("forget", "Remove snapshots according to a policy");
  repo::ForgetPolicy& p = o->policy;
  sub->add_option("-l,--keep-last", p.last, "keep the last n snapshots (-1: all)");
  sub->add_option("-H,--keep-hourly", p.hourly, "keep the last n hourly snapshots");
  sub->add_option("-d,--keep-daily", p.daily, "keep the last n daily snapshots");
  sub->add_option("-w,--keep-weekly", p.weekly, "keep the last n weekly snapshots");
  sub->add_option("-m,--keep-monthly", p.monthly, "keep the last n monthly snapshots");
  sub->add_option("-y,--keep-yearly", p.yearly, "keep the last n yearly snapshots");
  const char* kWithin = "duration (e.g. 1y5m7d2h; m = months) relative to the latest snapshot";
  sub->add_option("--keep-within", o->within, std::string("keep snapshots newer than ") + kWithin);
  sub->add_option("--keep-within-hourly", o->within_hourly,
                  std::string("keep hourly snapshots newer than ") + kWithin);
  sub->add_option("--keep-within-daily", o->within_daily,
                  std::string("keep daily snapshots newer than ") + kWithin);
  sub->add_option("--keep-within-weekly", o->within_weekly,
                  std::string("keep weekly snapshots newer than ") + kWithin);
  sub->add_option("--keep-within-monthly", o->within_monthly,
                  std::string("keep monthly snapshots newer than ") + kWithin);
  sub->add_option("--keep-within-yearly", o->within_yearly,
                  std::string("keep yearly snapshots newer than ") + kWithin);
  sub->add_option("--keep-tag", p.keep_tags,
                  "keep snapshots with this tag list (a,b = both; repeat for either)")
      ->allow_extra_args(false);
  sub->add_option("--host,--hostname", o->hosts, "only consider snapshots of this host")
      ->allow_extra_args(false);
  sub->add_option("--tag", o->tags, "only consider snapshots with this tag list (a,b = both)")
      ->allow_extra_args(false);
  sub->add_option("--path", o->paths, "only consider snapshots which include this path")
      ->allow_extra_args(false);
  sub->add_flag("-c,--compact", o->compact, "use compact output format");
  sub->add_option("-g,--group-by", o->group_by,
                  "group snapshots by host, paths and/or tags, comma separated ('' for none)");
  sub->add_flag("-n,--dry-run", o->dry_run,
                "do not delete anything, just print what would be done");
  sub->add_flag("--prune", o->prune,
                "automatically run the 'prune' command if snapshots have been removed");
  AddPruneFlags(sub, o->prune_flags);
  sub->add_option("snapshot-id", o->ids, "snapshots to forget (ID, prefix or latest)");
  out.push_back({sub, [&g, o]() -> int { return RunForget(g, *o); }});
}

}  // namespace fsb::cli
