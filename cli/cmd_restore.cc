// `fsb restore SNAPSHOT[:SUBPATH] --target DIR [--include P]... [--verify]`.
#include <fmt/format.h>

#include <iostream>

#include "cli/global.h"
#include "cli/progress_bar.h"
#include "cli/snapshot_json.h"
#include "uploader/restore.h"

namespace fsb::cli {

void AddRestoreCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  struct Opts {
    std::string snapshot;
    std::string target;
    std::vector<std::string> includes;
    bool verify = false;
    int workers = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("restore", "Restore a snapshot into a directory");
  sub->add_option("snapshot", o->snapshot, "snapshot ID, unique prefix or \"latest\", optionally :SUBPATH")
      ->required();
  sub->add_option("-t,--target", o->target, "directory to restore into")->required();
  sub->add_option("-i,--include", o->includes, "restore only matching paths (may be repeated)");
  sub->add_flag("--verify", o->verify, "read back restored files and check their content");
  sub->add_option("--workers", o->workers, "parallel pack readers/writers");
  out.push_back({sub, [&g, o]() -> int {
    Result<SnapshotForReading> opened = OpenSnapshotForReading(g, o->snapshot);
    if (!opened.ok()) return Fail(g, opened.status());
    repo::Repository& repo = opened->repo();
    const SnapshotRef& ref = opened->ref;
    const repo::Id* sid = &ref.id;
    const repo::Snapshot* snap = &ref.snapshot;
    const std::string& subpath = ref.subpath;
    uploader::RestoreOptions ro;
    ro.target = o->target;
    ro.subpath = subpath;
    ro.includes = o->includes;
    ro.verify = o->verify;
    ro.workers = o->workers;
    if (!g.quiet && !g.json) {
      std::cout << fmt::format("restoring snapshot {} of {} at {} to {}\n", sid->Short(),
                               snap->paths.empty() ? "" : snap->paths[0], HumanTime(snap->time), o->target);
    }
    uploader::Progress progress;
    ProgressBar bar(progress, ProgressBar::ChooseMode(g.json, g.quiet), "restore");
    Result<uploader::RestoreSummary> sum = uploader::RunRestore(repo, snap->tree, ro, &progress);
    bar.Stop();
    if (!sum.ok()) return Fail(g, sum.status().WithContext("restore"));
    for (const std::string& e : sum->errors) std::cerr << "error: " << e << "\n";
    for (const std::string& e : sum->metadata_errors) std::cerr << "error: " << e << "\n";
    const size_t error_count = sum->errors.size() + sum->metadata_errors.size();
    if (g.json) {
      std::cout << fmt::format(
          "{{\"message_type\":\"summary\",\"seconds_elapsed\":{:.3f},\"total_files\":{},\"files_restored\":{},"
          "\"total_bytes\":{},\"bytes_restored\":{},\"packs_read\":{},\"verified_files\":{},\"errors\":{}}}\n",
          bar.seconds_elapsed(), sum->files, sum->files, sum->bytes, sum->bytes, sum->packs_read,
          sum->verified_files, error_count);
    } else if (!g.quiet) {
      std::cout << fmt::format("restored {} files, {} dirs, {} others, {} in {:.1f}s\n", sum->files, sum->dirs,
                               sum->others, FormatBytes(sum->bytes), bar.seconds_elapsed());
      if (o->verify) std::cout << fmt::format("verified {} files\n", sum->verified_files);
    }
    if (error_count != 0) {  // as restic: metadata that could not be applied is an error too
      std::cerr << fmt::format("there were {} errors\n", error_count);
      return kExitFatal;
    }
    return kExitOk;
  }});
}

}  // namespace fsb::cli
