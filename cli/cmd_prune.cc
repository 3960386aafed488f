// `fsb prune [--max-unused LIMIT] [--max-repack-size SIZE] [--repack-cacheable-only]
// [--repack-small] [--repack-uncompressed] [-n|--dry-run]`: restic 0.14's prune (repo/prune.h),
// with restic's output; --json prints one summary object instead.
#include "cli/cmd_prune.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <thread>

#include "base/log.h"

namespace fsb::cli {
namespace {

// restic's formatBytes (strictly above each power of 1024).
std::string ResticBytes(uint64_t c) {
  const double b = static_cast<double>(c);
  if (c > (1ull << 40)) return fmt::format("{:.3f} TiB", b / double(1ull << 40));
  if (c > (1ull << 30)) return fmt::format("{:.3f} GiB", b / double(1ull << 30));
  if (c > (1ull << 20)) return fmt::format("{:.3f} MiB", b / double(1ull << 20));
  if (c > (1ull << 10)) return fmt::format("{:.3f} KiB", b / double(1ull << 10));
  return fmt::format("{} B", c);
}

// restic's formatPercent: "" for a zero denominator, capped at 100.
std::string Percent(uint64_t num, uint64_t den) {
  if (den == 0) return "";
  double p = 100.0 * double(num) / double(den);
  return fmt::format("{:3.2f}%", std::min(p, 100.0));
}

// restic's printPruneStats: `verbose` adds the lines restic prints only with -v.
std::string StatsText(const repo::PruneStats& st, bool verbose) {
  std::string out;
  if (verbose) {
    out +=
        fmt::format("\nused:         {:10} blobs / {}\n", st.blobs.used, ResticBytes(st.size.used));
    if (st.blobs.duplicate > 0) {
      out += fmt::format("duplicates:   {:10} blobs / {}\n", st.blobs.duplicate,
                         ResticBytes(st.size.duplicate));
    }
    out += fmt::format("unused:       {:10} blobs / {}\n", st.blobs.unused,
                       ResticBytes(st.size.unused));
    if (st.unref_bytes > 0)
      out += fmt::format("unreferenced:                    {}\n", ResticBytes(st.unref_bytes));
    out += fmt::format("total:        {:10} blobs / {}\n", st.total_blobs(),
                       ResticBytes(st.total_bytes()));
    out += fmt::format("unused size: {} of total size\n",
                       Percent(st.unused_bytes(), st.total_bytes()));
  }
  out += fmt::format("\nto repack:    {:10} blobs / {}\n", st.blobs.repack,
                     ResticBytes(st.size.repack));
  out += fmt::format("this removes: {:10} blobs / {}\n", st.blobs.repackrm,
                     ResticBytes(st.size.repackrm));
  out += fmt::format("to delete:    {:10} blobs / {}\n", st.blobs.remove,
                     ResticBytes(st.size.remove + st.unref_bytes));
  out += fmt::format("total prune:  {:10} blobs / {}\n", st.prune_blobs(),
                     ResticBytes(st.prune_bytes()));
  out += fmt::format("remaining:    {:10} blobs / {}\n", st.total_blobs() - st.prune_blobs(),
                     ResticBytes(st.total_bytes() - st.prune_bytes()));
  out += fmt::format("unused size after prune: {} ({} of remaining size)\n",
                     ResticBytes(st.unused_bytes_after()),
                     Percent(st.unused_bytes_after(), st.total_bytes() - st.prune_bytes()));
  out += "\n";
  if (verbose) {
    out += fmt::format("totally used packs: {:10}\n", st.packs.used);
    out += fmt::format("partly used packs:  {:10}\n", st.packs.partly_used);
    out += fmt::format("unused packs:       {:10}\n\n", st.packs.unused);
    out += fmt::format("to keep:      {:10} packs\n", st.packs.keep);
    out += fmt::format("to repack:    {:10} packs\n", st.packs.repack);
    out += fmt::format("to delete:    {:10} packs\n", st.packs.remove);
    if (st.packs.unref > 0)
      out += fmt::format("to delete:    {:10} unreferenced packs\n\n", st.packs.unref);
  }
  return out;
}

std::string StatsJson(const repo::PruneStats& st, bool dry_run, const repo::PruneResult* r) {
  std::string out = fmt::format(
      "{{\"message_type\":\"summary\",\"dry_run\":{},\"snapshots\":{},"
      "\"blobs\":{{\"used\":{},\"duplicate\":{},\"unused\":{},\"remove\":{},\"repack\":{},"
      "\"repackrm\":{}}},"
      "\"bytes\":{{\"used\":{},\"duplicate\":{},\"unused\":{},\"remove\":{},\"repack\":{},"
      "\"repackrm\":{},"
      "\"unref\":{}}},"
      "\"packs\":{{\"used\":{},\"partly_used\":{},\"unused\":{},\"unref\":{},\"keep\":{},"
      "\"repack\":{},"
      "\"remove\":{},\"missing\":{}}},"
      "\"total_prune_blobs\":{},\"total_prune_bytes\":{},\"remaining_blobs\":{},\"remaining_"
      "bytes\":{},"
      "\"unused_bytes_after\":{}",
      dry_run ? "true" : "false", st.snapshots, st.blobs.used, st.blobs.duplicate, st.blobs.unused,
      st.blobs.remove, st.blobs.repack, st.blobs.repackrm, st.size.used, st.size.duplicate,
      st.size.unused, st.size.remove, st.size.repack, st.size.repackrm, st.unref_bytes,
      st.packs.used, st.packs.partly_used, st.packs.unused, st.packs.unref, st.packs.keep,
      st.packs.repack, st.packs.remove, st.missing_packs, st.prune_blobs(), st.prune_bytes(),
      st.total_blobs() - st.prune_blobs(), st.total_bytes() - st.prune_bytes(),
      st.unused_bytes_after());
  if (r != nullptr) {
    out += fmt::format(
        ",\"packs_written\":{},\"blobs_repacked\":{},\"index_files_written\":{},\"index_files_"
        "removed\":{},"
        "\"packs_removed\":{},\"remove_errors\":{}",
        r->packs_written, r->blobs_repacked, r->index_files_written, r->index_files_removed,
        r->packs_removed + r->unreferenced_removed, r->remove_errors.size());
  }
  return out + "}\n";
}

// The phase lines on stdout and, on a terminal, a live "[0:03] 45.00%  450 / 1000 packs" line on
// stderr sampled from PruneProgress by its own thread.
class PruneReporter {
 public:
  PruneReporter(const GlobalOptions& g, const repo::PruneProgress& progress)
      : progress_(progress), text_(!g.quiet && !g.json), live_(text_ && isatty(STDERR_FILENO)) {
    if (live_) thread_ = std::jthread([this](std::stop_token st) { Loop(st); });
  }
  ~PruneReporter() {
    if (thread_.joinable()) {
      thread_.request_stop();
      cv_.notify_all();
      thread_.join();
    }
    ClearLine();
  }
  // Called on the prune's calling thread.
  void Message(std::string_view m) {
    std::lock_guard l(mu_);
    ClearLineLocked();
    if (text_) std::cout << m << std::endl;
    unit_ = m.starts_with("loading indexes")                         ? "index files"
            : m.starts_with("finding data")                          ? "trees"
            : m.starts_with("repacking")                             ? "packs repacked"
            : m.starts_with("rebuilding index")                      ? "packs processed"
            : m.starts_with("deleting") || m.starts_with("removing") ? "files deleted"
                                                                     : "";
    start_ = std::chrono::steady_clock::now();
  }

 private:
  void ClearLine() {
    std::lock_guard l(mu_);
    ClearLineLocked();
  }
  void ClearLineLocked() {
    if (shown_) std::fputs("\r\033[K", stderr);
    shown_ = false;
  }
  void Loop(std::stop_token st) {
    for (;;) {
      std::unique_lock l(mu_);
      cv_.wait_for(l, st, std::chrono::milliseconds(200), [] { return false; });
      if (st.stop_requested()) return;
      const uint64_t done = progress_.done.load(), total = progress_.total.load();
      if (unit_.empty() || (done == 0 && total == 0)) continue;
      const auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::steady_clock::now() - start_)
                            .count();
      std::string line = fmt::format("\r[{}:{:02}] ", secs / 60, secs % 60);
      if (total > 0) {
        line += fmt::format("{:.2f}%  {} / {} {}", 100.0 * double(done) / double(total), done,
                            total, unit_);
      } else {
        line += fmt::format("{} {}", done, unit_);
      }
      std::fputs((line + "\033[K").c_str(), stderr);
      std::fflush(stderr);
      shown_ = true;
    }
  }

  const repo::PruneProgress& progress_;
  const bool text_;
  const bool live_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::string unit_;                             // guarded by mu_
  std::chrono::steady_clock::time_point start_;  // guarded by mu_
  bool shown_ = false;                           // guarded by mu_
  std::jthread thread_;
};

}  // namespace

void AddPruneFlags(CLI::App* sub, PruneFlags& f) {
  sub->add_option("--max-unused", f.max_unused,
                  "tolerate given limit of unused data (absolute value in bytes with suffixes k/K, "
                  "m/M, g/G, "
                  "t/T, a value in % or the word 'unlimited')")
      ->capture_default_str();
  sub->add_option("--max-repack-size", f.max_repack_size,
                  "maximum size to repack (allowed suffixes: k/K, m/M, g/G, t/T)");
  sub->add_flag("--repack-cacheable-only", f.repack_cacheable_only,
                "only repack packs which are cacheable");
  sub->add_flag("--repack-small", f.repack_small,
                "repack pack files below 80% of target pack size");
  sub->add_flag("--repack-uncompressed", f.repack_uncompressed, "repack all uncompressed data");
}

Result<repo::PruneOptions> PruneOptionsFrom(const PruneFlags& f) {
  repo::PruneOptions o;
  FSB_ASSIGN_OR_RETURN(o.max_unused, repo::ParseMaxUnused(f.max_unused));
  if (!f.max_repack_size.empty()) {
    Result<uint64_t> size = repo::ParseSize(f.max_repack_size);
    if (!size.ok()) return size.status().WithContext("--max-repack-size");
    o.max_repack_bytes = *size;
  }
  o.repack_cacheable_only = f.repack_cacheable_only;
  o.repack_small = f.repack_small;
  o.repack_uncompressed = f.repack_uncompressed;
  return o;
}

int RunPruneWithRepo(const GlobalOptions& g, repo::Repository& r, repo::RepoLock* lock,
                     repo::PruneOptions o, bool dry_run, std::vector<repo::Id> ignore_snapshots) {
  const bool text = !g.quiet && !g.json;
  repo::PruneProgress progress;
  std::optional<PruneReporter> reporter;
  reporter.emplace(g, progress);
  o.ignore_snapshots = std::move(ignore_snapshots);
  o.progress = &progress;
  o.message = [&](std::string_view m) { reporter->Message(m); };
  // Nothing is deleted unless the lock is still safely ours (repo/lock.h: Valid).
  // Test hook (prune_interop_test): FSB_TEST_PRUNE_KILL_AT=<phase name> kills the process (SIGKILL,
  // no clean-up, the lock left behind) where that phase would start, to show that restic accepts
  // the repository a crash leaves.
  const char* kill_at = std::getenv("FSB_TEST_PRUNE_KILL_AT");
  o.before_phase = [lock, kill_at](repo::PrunePhase p) {
    if (kill_at != nullptr && repo::PrunePhaseName(p) == kill_at) {
      std::fflush(nullptr);
      raise(SIGKILL);
    }
    return lock ? lock->Valid() : Status::Ok();
  };
  Result<std::unique_ptr<repo::Pruner>> planned = repo::Pruner::Plan(r, std::move(o));
  if (!planned.ok()) {
    reporter.reset();
    return Fail(g, planned.status().WithContext("prune"));
  }
  repo::Pruner& pruner = **planned;
  if (text) std::cout << StatsText(pruner.stats(), g.verbose >= 1);
  if (dry_run) {
    reporter.reset();
    if (text && g.verbose >= 1) {
      auto show = [](const std::vector<repo::Id>& ids) {
        std::string s = "{";
        for (size_t i = 0; i < ids.size(); i++) s += (i ? " " : "") + ids[i].Short();
        return s + "}";
      };
      const std::vector<repo::Id> unref = pruner.UnreferencedPacks();
      if (!unref.empty())
        std::cout << "Would have removed the following unreferenced packs:\n"
                  << show(unref) << "\n\n";
      std::cout << "Would have repacked and removed the following packs:\n"
                << show(pruner.RepackPacks()) << "\n\n";
      std::cout << "Would have removed the following no longer used packs:\n"
                << show(pruner.RemovePacks()) << "\n\n";
    }
    if (g.json) std::cout << StatsJson(pruner.stats(), true, nullptr);
    return kExitOk;
  }
  Result<repo::PruneResult> done = pruner.Execute();
  reporter.reset();
  if (!done.ok()) return Fail(g, done.status().WithContext("prune"));
  for (const std::string& e : done->remove_errors) {
    // restic's DeleteFiles: the index no longer names these files, so they are only garbage.
    std::cerr << "unable to remove file from the repository: " << e << "\n";
  }
  if (g.json) std::cout << StatsJson(pruner.stats(), false, &*done);
  return kExitOk;
}

void AddPruneCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  struct Opts {
    PruneFlags flags;
    bool dry_run = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("prune", "Remove unneeded data from the repository");
  sub->add_flag("-n,--dry-run", o->dry_run,
                "do not modify the repository, just print what would be done");
  AddPruneFlags(sub, o->flags);
  out.push_back({sub, [&g, o]() -> int {
                   Result<repo::PruneOptions> po = PruneOptionsFrom(o->flags);
                   if (!po.ok()) return Fail(g, po.status());
                   // restic takes the exclusive lock for a dry run too; --no-lock skips it there
                   // only.
                   Result<LockedRepository> opened =
                       OpenLockedRepository(g, true, /*allow_no_lock=*/o->dry_run);
                   if (!opened.ok()) return Fail(g, opened.status());
                   return RunPruneWithRepo(g, *opened->repo, opened->lock.get(), std::move(*po),
                                           o->dry_run, {});
                 }});
}

}  // namespace fsb::cli
