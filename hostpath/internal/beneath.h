// hostpath/internal/beneath.h: the errno-level form of OpenBeneath, for callers in hostpath/ that
// turn each errno into their own message, and the tests' switch to the fallback walk.
// Safe for concurrent use.
#pragma once

#include <string_view>

#include "hostpath/beneath.h"

namespace fsb::hostpath::internal {

// OpenBeneath's resolution: a new fd (the caller owns it), or -errno. The errno values that mean
// something here: ELOOP (a refused symlink, or more than 40), EXDEV (resolution would leave
// dir_fd), ENOENT, ENOTDIR, EACCES / EPERM, EAGAIN (openat2 raced with renames 16 times).
int OpenBeneathRaw(int dir_fd, std::string_view rel_path, const OpenOptions& options);

// true: every OpenBeneath takes the component-by-component walk, as on a kernel without openat2.
// For tests; takes effect for calls that start after it returns.
void ForceFallbackForTesting(bool force);

// Whether openat2 is used (probed once, on the first call): false when it answered ENOSYS or EPERM
// or when the fallback is forced.
bool UsesOpenat2();

}  // namespace fsb::hostpath::internal
