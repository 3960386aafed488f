// tests/integration/integration_util.h: running fsb and restic against one repository from the
// integration tests. Header-only (shared by every *_test.cc of fsb_integration_test).
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace fsb::testing {

// "exit N" plus both streams (trimmed), for failure messages.
inline std::string Describe(const RunResult& r) {
  auto trim = [](const std::string& s) { return s.size() > 6000 ? s.substr(0, 3000) + "\n[...]\n" + s.substr(s.size() - 3000) : s; };
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout ---\n" + trim(r.out) + "\n--- stderr ---\n" +
         trim(r.err);
}

// One repository with its password file; runs `fsb -r REPO ...` and `restic -r REPO --no-cache ...`.
class RepoCli {
 public:
  RepoCli(std::filesystem::path repo, std::filesystem::path password_file)
      : repo_(std::move(repo)), password_file_(std::move(password_file)) {}

  const std::filesystem::path& repo() const { return repo_; }
  const std::filesystem::path& password_file() const { return password_file_; }

  RunResult Fsb(const std::vector<std::string>& args, const std::string& cwd = {},
                const std::vector<std::string>& prefix = {}) const {
    std::vector<std::string> argv = prefix;
    argv.push_back(FsbBinary());
    argv.push_back("-r");
    argv.push_back(repo_.string());
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {"FSB_PASSWORD_FILE=" + password_file_.string()}, cwd);
  }

  RunResult Restic(const std::vector<std::string>& args, const std::string& cwd = {}) const {
    std::vector<std::string> argv = {"restic", "-r", repo_.string(), "--no-cache"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {"RESTIC_PASSWORD_FILE=" + password_file_.string()}, cwd);
  }

 private:
  std::filesystem::path repo_;
  std::filesystem::path password_file_;
};

// The last line of `out` that is a JSON object with this message_type (restic's --json lines).
inline std::optional<nlohmann::json> JsonMessage(const std::string& out, const std::string& message_type) {
  std::optional<nlohmann::json> found;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    if (j.value("message_type", "") == message_type) found = std::move(j);
  }
  return found;
}

// Parses a whole JSON document (e.g. `snapshots --json`); a discarded value on malformed input.
inline nlohmann::ordered_json ParseJson(const std::string& text) {
  return nlohmann::ordered_json::parse(text, nullptr, false);
}

// Adds o+rx (and g+rx) to `p` and each parent up to and including `top` (mkdtemp gives 0700), so
// that a process running as another user can reach `p`. Directories above `top` are not touched.
inline void MakeTraversable(const std::filesystem::path& top, const std::filesystem::path& p) {
  for (std::filesystem::path q = p;; q = q.parent_path()) {
    struct stat st {};
    if (stat(q.c_str(), &st) == 0) chmod(q.c_str(), (st.st_mode & 07777) | 0055);
    if (q == top || q == q.root_path() || q.empty()) break;
  }
}

}  // namespace fsb::testing
