// kube/internal/util.h: small helpers shared by the kube module's files (percent-encoding, whole
// small files). Private to kube/. Pure functions; safe for concurrent use.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace fsb::kube::internal {

// RFC 3986: every byte outside the unreserved set (ALPHA DIGIT "-" "." "_" "~") as %XX. Used for
// path segments and for query keys and values alike.
std::string PercentEncode(std::string_view s);

// `s` without leading and trailing whitespace (a token file ends with a newline).
std::string TrimSpace(std::string_view s);

// The whole content of a small file (a token, a CA bundle, a kubeconfig). `what` names it in the
// error ("token file"): kNotFound, kPermissionDenied or kInvalidArgument (a directory) from errno;
// kResourceExhausted past `max_bytes`.
Result<std::string> ReadSmallFile(const std::string& path, std::string_view what,
                                  size_t max_bytes = 16 << 20);

}  // namespace fsb::kube::internal
