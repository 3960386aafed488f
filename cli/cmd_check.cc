// `fsb check [--read-data | --read-data-subset n/t | x% | SIZE]`.
#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <iostream>

#include "cli/global.h"
#include "repo/check.h"
#include "repo/prune.h"

namespace fsb::cli {

namespace {

// restic 0.14's --read-data-subset forms: "n/t" (1 ≤ n ≤ t ≤ 256), "x%" / "x.y%" (0 < x ≤ 100),
// or a size in bytes with suffixes k/K, m/M, g/G, t/T. kInvalidArgument with restic's messages.
Status ParseSubset(const std::string& s, repo::CheckOptions& co) {
  const Status invalid = Status::InvalidArgument(
      "check flag --read-data-subset has invalid value, please see documentation");
  if (const size_t slash = s.find('/'); slash != std::string::npos) {
    uint32_t n = 0, t = 0;
    const char* end = s.data() + s.size();
    auto [p1, e1] = std::from_chars(s.data(), s.data() + slash, n);
    auto [p2, e2] = std::from_chars(s.data() + slash + 1, end, t);
    if (e1 != std::errc() || p1 != s.data() + slash || e2 != std::errc() || p2 != end)
      return invalid;
    if (n == 0 || t == 0 || n > t) {
      return Status::InvalidArgument(
          "check flag --read-data-subset=n/t values must be positive integers, and n <= t, e.g. "
          "--read-data-subset=1/2");
    }
    if (t > 256)
      return Status::InvalidArgument("check flag --read-data-subset=n/t t must be at most 256");
    co.subset_n = n;
    co.subset_m = t;
    return Status::Ok();
  }
  if (!s.empty() && s.back() == '%') {
    const std::string num = s.substr(0, s.size() - 1);
    char* end = nullptr;
    const double p = std::strtod(num.c_str(), &end);
    if (num.empty() || end != num.c_str() + num.size() || !std::isfinite(p)) return invalid;
    if (p <= 0.0 || p > 100.0) {
      return Status::InvalidArgument(
          "check flag --read-data-subset=x% x must be above 0.0% and at most 100.0%");
    }
    co.subset_percent = p;
    return Status::Ok();
  }
  Result<uint64_t> size = repo::ParseSize(s);
  if (!size.ok()) return invalid;
  if (*size == 0)
    return Status::InvalidArgument("check flag --read-data-subset=n n must be above 0");
  co.subset_bytes = *size;
  return Status::Ok();
}

}  // namespace

void AddCheckCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  struct Opts {
    bool read_data = false;
    std::string subset;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("check", "Check the repository for errors");
  sub->add_flag("--read-data", o->read_data, "read and verify every pack");
  sub->add_option(
      "--read-data-subset", o->subset,
      "read a subset of data packs, specified as 'n/t' for specific part, or either 'x%' or "
      "'x.y%' or a size in bytes with suffixes k/K, m/M, g/G, t/T for a random subset");
  out.push_back(
      {sub, [&g, o]() -> int {
         if (o->read_data && !o->subset.empty()) {
           return Fail(
               g, Status::InvalidArgument(
                      "check flags --read-data and --read-data-subset cannot be used together"));
         }
         repo::CheckOptions co;
         co.read_data = o->read_data;
         if (!o->subset.empty()) {
           if (Status st = ParseSubset(o->subset, co); !st.ok()) return Fail(g, st);
           co.read_data = true;
         }
         // restic 0.14's check takes an exclusive lock; a shared one is enough to keep prune away
         // while letting backups continue.
         Result<LockedRepository> opened = OpenLockedRepository(g, false, false);
         if (!opened.ok()) return Fail(g, opened.status());
         repo::Repository& repo = *opened->repo;
         auto res = repo::RunCheck(repo, co, [&](const std::string& phase) {
           if (!g.quiet && !g.json) std::cout << phase << "\n";
         });
         if (!res.ok()) return Fail(g, res.status());
         if (g.verbose > 0) {
           for (const auto& h : res->hints) std::cout << "hint: " << h << "\n";
         }
         for (const auto& e : res->errors) std::cerr << "error: " << e << "\n";
         if (g.json) {
           std::cout << fmt::format(
               "{{\"message_type\":\"summary\",\"num_errors\":{},\"snapshots\":{},\"trees\":{},"
               "\"packs\":{},"
               "\"packs_read\":{},\"blobs_read\":{}}}\n",
               res->errors.size(), res->snapshots, res->trees, res->packs, res->packs_read,
               res->blobs_read);
         }
         if (!res->ok()) {
           std::cerr << fmt::format("Fatal: repository contains errors ({})\n", res->errors.size());
           return kExitFatal;
         }
         if (!g.quiet && !g.json) std::cout << "no errors were found\n";
         return kExitOk;
       }});
}

}  // namespace fsb::cli
