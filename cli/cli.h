// cli/cli.h: the `fsb` command: parses arguments and dispatches to one subcommand.
#pragma once

namespace fsb::cli {

// Returns the process exit code: 0 success, 1 fatal error, 3 snapshot written but some files
// could not be read (restic's meaning).
int Main(int argc, char** argv);

}  // namespace fsb::cli
