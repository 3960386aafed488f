// kube/internal/api_error.h: turns an API server's error answer (an HTTP status and its
// metav1.Status body, or a watch ERROR event) into an fsb Status, as documented in kube/client.h.
// Private to kube/. Pure functions; safe for concurrent use.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "base/status.h"

namespace fsb::kube::internal {

// The marks that IsConflict and IsGone look for. Only this module writes them, at the end of the
// message it makes; a caller's WithContext prefix keeps them.
inline constexpr std::string_view kConflictMark = "(HTTP 409 Conflict)";
inline constexpr std::string_view kGoneMark = "(HTTP 410 Gone)";

// "<verb> <what>: <server message> (HTTP <code> <reason>)", e.g.
// `get pods velero/x: pods "x" not found (HTTP 404 NotFound)`. `what` is "<resource> <ns>/<name>".
// The server message comes from a metav1.Status body; any other body is quoted (truncated, made
// printable), since a proxy may answer with HTML.
Status StatusFromHttp(std::string_view verb, std::string_view what, int http_status,
                      std::string_view body);

// The same for a metav1.Status object (a watch ERROR event's object); its `code` is the HTTP
// status (0 or missing: kInternal).
Status StatusFromApiStatus(std::string_view verb, std::string_view what,
                           const nlohmann::json& status);

}  // namespace fsb::kube::internal
