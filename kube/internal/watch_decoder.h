// kube/internal/watch_decoder.h: splits a watch response body into its events. The API server
// writes one JSON object per line ({"type":"ADDED","object":{...}}\n); the pieces curl hands over
// split it anywhere, so lines are reassembled here. Private to kube/. One thread at a time.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/status.h"

namespace fsb::kube::internal {

struct RawWatchEvent {
  std::string type;  // "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR", ...
  nlohmann::json object;
};

// One line: kCorruption when it is not a JSON object with a string "type" and an object "object".
Result<RawWatchEvent> ParseWatchEvent(std::string_view line);

class WatchDecoder {
 public:
  using Handler = std::function<Status(RawWatchEvent&&)>;

  // Appends `chunk` and hands each completed event to `handler`; returns the first non-OK Status
  // of the handler or of parsing. kResourceExhausted when one line grows past `max_line_bytes`.
  Status Feed(std::string_view chunk, const Handler& handler);
  // At the end of the body: a last event without its newline is still an event.
  Status Finish(const Handler& handler);

  // An object in etcd is at most 1.5 MiB; its JSON with managed fields fits easily in 16 MiB.
  static constexpr size_t max_line_bytes = 16 << 20;

 private:
  Status Emit(std::string_view line, const Handler& handler);

  std::string buf_;     // bytes of the line being received
  size_t scanned_ = 0;  // buf_[0, scanned_) holds no newline
};

}  // namespace fsb::kube::internal
