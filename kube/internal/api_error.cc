#include "kube/internal/api_error.h"

#include <fmt/format.h>

#include <string>

namespace fsb::kube::internal {
namespace {

std::string_view DefaultReason(int code) {
  switch (code) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 406:
      return "NotAcceptable";
    case 408:
      return "Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 413:
      return "RequestEntityTooLarge";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 429:
      return "TooManyRequests";
    case 500:
      return "InternalError";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return "";
  }
}

// A proxy's or load balancer's body, quoted: printable ASCII only, at most 200 bytes.
std::string QuoteBody(std::string_view body) {
  std::string out;
  for (const char c : body) {
    if (out.size() >= 200) {
      out += "...";
      break;
    }
    out.push_back(c >= 0x20 && c < 0x7f ? c : ' ');
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string StringField(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

Status Make(std::string_view verb, std::string_view what, int code, std::string reason,
            std::string message) {
  StatusCode sc;
  if (code == 409 && reason == "AlreadyExists") {
    sc = StatusCode::kAlreadyExists;
  } else if (code == 409) {
    sc = StatusCode::kFailedPrecondition;
    reason = "Conflict";  // kConflictMark
  } else if (code == 410) {
    sc = StatusCode::kFailedPrecondition;
    reason = "Gone";  // kGoneMark, also for the server's "Expired"
  } else if (code == 404) {
    sc = StatusCode::kNotFound;
  } else if (code == 401 || code == 403) {
    sc = StatusCode::kPermissionDenied;
  } else if (code == 408 || code == 429 || (code >= 500 && code < 600)) {
    sc = StatusCode::kUnavailable;
  } else if (code >= 400 && code < 500) {
    sc = StatusCode::kInvalidArgument;  // 400, 422 and the rest: the request is wrong
  } else {
    sc = StatusCode::kInternal;  // a redirect or a success code where none belongs
  }
  if (reason.empty()) reason = std::string(DefaultReason(code));
  if (message.empty()) message = "no message";
  std::string tail =
      reason.empty() ? fmt::format("(HTTP {})", code) : fmt::format("(HTTP {} {})", code, reason);
  return Status(sc, fmt::format("{} {}: {} {}", verb, what, message, tail));
}

}  // namespace

Status StatusFromHttp(std::string_view verb, std::string_view what, int http_status,
                      std::string_view body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded() && j.is_object() && StringField(j, "kind") == "Status") {
    return Make(verb, what, http_status, StringField(j, "reason"), StringField(j, "message"));
  }
  return Make(verb, what, http_status, "", QuoteBody(body));
}

Status StatusFromApiStatus(std::string_view verb, std::string_view what,
                           const nlohmann::json& status) {
  int code = 0;
  if (status.is_object()) {
    auto it = status.find("code");
    if (it != status.end() && it->is_number_integer()) code = it->get<int>();
  }
  return Make(verb, what, code, StringField(status, "reason"), StringField(status, "message"));
}

}  // namespace fsb::kube::internal
