// `fsb backup [--parent ID] [--tag T]... [--host H] [--exclude P]... [--json] PATH...`.
#include <fmt/format.h>
#include <unistd.h>

#include <iostream>
#include <sstream>

#include "cli/global.h"
#include "cli/progress_bar.h"
#include "repo/lock.h"
#include "uploader/backup.h"

namespace fsb::cli {
namespace {

std::string SummaryJson(const uploader::BackupSummary& s, double seconds) {
  return fmt::format(
      "{{\"message_type\":\"summary\",\"files_new\":{},\"files_changed\":{},\"files_unmodified\":{},"
      "\"dirs_new\":{},\"dirs_changed\":{},\"dirs_unmodified\":{},\"data_blobs\":{},\"tree_blobs\":{},"
      "\"data_added\":{},\"data_added_packed\":{},\"total_files_processed\":{},\"total_bytes_processed\":{},"
      "\"total_duration\":{:.6f},\"snapshot_id\":\"{}\"{}}}",
      s.files_new, s.files_changed, s.files_unmodified, s.dirs_new, s.dirs_changed, s.dirs_unmodified,
      s.data_blobs, s.tree_blobs, s.data_added, s.data_added_packed, s.total_files_processed,
      s.total_bytes_processed, seconds, s.snapshot_id.Hex(),
      s.parent ? fmt::format(",\"parent\":\"{}\"", s.parent->Hex()) : std::string());
}

}  // namespace

void AddBackupCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  struct Opts {
    std::vector<std::string> paths;
    std::string parent;
    std::vector<std::string> tags;
    std::string host;
    std::vector<std::string> excludes;
    bool force = false;
    bool with_atime = false;
    int workers = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("backup", "Create a new snapshot of files and directories");
  sub->add_option("paths", o->paths, "files and directories to back up")->required();
  sub->add_option("--parent", o->parent, "snapshot to compare with (default: latest of this host and paths)");
  sub->add_option("--tag", o->tags, "add a tag (may be repeated; a,b adds both)");
  sub->add_option("-H,--host", o->host, "host name recorded in the snapshot (default: this host)");
  sub->add_option("-e,--exclude", o->excludes, "exclude a pattern (may be repeated)");
  sub->add_flag("-f,--force", o->force, "read every file, ignoring the parent snapshot");
  sub->add_flag("--with-atime", o->with_atime, "store the files' access times");
  sub->add_option("--workers", o->workers, "file workers (default: number of CPUs)");
  out.push_back({sub, [&g, o]() -> int {
    Result<LockedRepository> opened = OpenLockedRepository(g, /*exclusive=*/false, /*allow_no_lock=*/false);
    if (!opened.ok()) return Fail(g, opened.status());
    repo::Repository& repo = *opened->repo;
    if (Status s = repo.LoadIndex(); !s.ok()) return Fail(g, s.WithContext("load index"));
    uploader::BackupOptions bo;
    bo.targets = o->paths;
    bo.hostname = o->host.empty() ? repo::Hostname() : o->host;
    for (const auto& t : o->tags) {
      std::stringstream ss(t);
      std::string one;
      while (std::getline(ss, one, ',')) {
        if (!one.empty()) bo.tags.push_back(one);
      }
    }
    bo.excludes = o->excludes;
    bo.no_parent = o->force;
    bo.with_atime = o->with_atime;
    bo.file_workers = o->workers;
    if (!o->parent.empty()) {
      Result<repo::Id> pid = repo.FindSnapshot(o->parent);
      if (!pid.ok()) return Fail(g, pid.status().WithContext("--parent"));
      bo.parent = *pid;
    }
    uploader::Progress progress;
    ProgressBar bar(progress, ProgressBar::ChooseMode(g.json, g.quiet), "backup");
    Result<uploader::BackupSummary> sum = uploader::RunBackup(repo, bo, &progress);
    bar.Stop();
    if (!sum.ok()) return Fail(g, sum.status().WithContext("backup"));
    for (const std::string& e : sum->errors) {
      if (g.json) {
        std::string m;
        repo::AppendGoJsonString(e, m);
        std::cerr << "{\"message_type\":\"error\",\"error\":{\"message\":" << m << "},\"during\":\"archival\"}\n";
      } else {
        std::cerr << "error: " << e << "\n";
      }
    }
    if (g.json) {
      std::cout << SummaryJson(*sum, bar.seconds_elapsed()) << std::endl;
    } else if (!g.quiet) {
      std::cout << fmt::format("\nFiles:       {:5} new, {:5} changed, {:5} unmodified\n", sum->files_new,
                               sum->files_changed, sum->files_unmodified);
      std::cout << fmt::format("Dirs:        {:5} new, {:5} changed, {:5} unmodified\n", sum->dirs_new,
                               sum->dirs_changed, sum->dirs_unmodified);
      std::cout << fmt::format("Added to the repository: {} ({} stored)\n\n", FormatBytes(sum->data_added),
                               FormatBytes(sum->data_added_packed));
      std::cout << fmt::format("processed {} files, {} in {:.1f}s\n", sum->total_files_processed,
                               FormatBytes(sum->total_bytes_processed), bar.seconds_elapsed());
      std::cout << fmt::format("snapshot {} saved\n", sum->snapshot_id.Short());
    }
    if (!sum->errors.empty()) {
      std::cerr << "Warning: at least one source file could not be read\n";
      return kExitPartial;
    }
    return kExitOk;
  }});
}

}  // namespace fsb::cli
