#include "cli/cli.h"

#include <cstdio>

namespace fsb::cli {

int Main(int, char**) {
  std::fprintf(stderr, "fsb: not yet implemented\n");
  return 1;
}

}  // namespace fsb::cli
