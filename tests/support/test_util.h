// tests/support/test_util.h: helpers shared by every test binary: temp dirs, fixtures, seeded data,
// running external programs. One thread at a time unless said otherwise.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "base/bytes.h"

namespace fsb::testing {

// A fresh directory under $TMPDIR (or /tmp), removed recursively (after making everything
// writable) in the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// tests/testdata/<rel>. Fixtures are found through this one helper.
std::filesystem::path TestDataPath(const std::string& rel);

// Copies a fixture tree into `dest` (which must not exist), made writable, as a test's own copy.
void CopyTree(const std::filesystem::path& src, const std::filesystem::path& dest);

// Deterministic pseudo-random bytes (xoshiro256**) from `seed`.
Bytes SeededRandomBytes(uint64_t seed, size_t n);

std::string ReadFileToString(const std::filesystem::path& p);
void WriteStringToFile(const std::filesystem::path& p, std::string_view content);

struct RunResult {
  int exit_code = -1;  // -1 when it did not exit normally
  std::string out;
  std::string err;
};
// Runs argv (argv[0] looked up in PATH) with extra environment entries "K=V", in `cwd` if not
// empty, capturing stdout and stderr; stdin is /dev/null.
RunResult RunCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
                     const std::string& cwd = {});

// Absolute path of an executable on PATH, or empty.
std::string FindProgram(const std::string& name);

// True when FSB_REQUIRE_INTEROP=1 (CI): a missing restic binary is then a failure, not a skip.
bool InteropRequired();

// The path of the built fsb binary.
std::string FsbBinary();

// Runs `fn` in a child process that has dropped root (uid/gid 65534), so permission checks apply
// even when the tests run as root. Returns fn's exit code (0-99), or -1 when privileges cannot be
// dropped here (no CAP_SETUID, say).
int RunUnprivileged(const std::function<int()>& fn);

}  // namespace fsb::testing
