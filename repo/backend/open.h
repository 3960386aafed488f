// repo/backend/open.h: a Backend from a repository string, as restic and Velero name them.
#pragma once

#include <memory>
#include <string_view>

#include "base/status.h"
#include "repo/backend/backend.h"

namespace fsb::repo {

// A local path or "local:PATH" opens the local backend (create=true makes the directory first,
// for init). Any other "scheme:" is kInvalidArgument naming the scheme.
Result<std::unique_ptr<Backend>> OpenBackend(std::string_view repo, bool create);

}  // namespace fsb::repo
