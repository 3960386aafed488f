// cli/main.cc: the thin entry point; everything lives in fsb_cli.
#include "cli/cli.h"

int main(int argc, char** argv) { return fsb::cli::Main(argc, argv); }
