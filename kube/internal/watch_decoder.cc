#include "kube/internal/watch_decoder.h"

#include <fmt/format.h>

namespace fsb::kube::internal {

Result<RawWatchEvent> ParseWatchEvent(std::string_view line) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Corruption("malformed watch event: not a JSON object");
  }
  auto type = j.find("type");
  if (type == j.end() || !type->is_string()) {
    return Status::Corruption("malformed watch event: no type");
  }
  auto object = j.find("object");
  if (object == j.end() || !object->is_object()) {
    return Status::Corruption(
        fmt::format("malformed watch event: {} without an object", type->get<std::string>()));
  }
  RawWatchEvent ev;
  ev.type = type->get<std::string>();
  ev.object = std::move(*object);
  return ev;
}

Status WatchDecoder::Emit(std::string_view line, const Handler& handler) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
    line.remove_suffix(1);
  }
  size_t start = 0;
  while (start < line.size() && (line[start] == ' ' || line[start] == '\t')) ++start;
  line.remove_prefix(start);
  if (line.empty()) return Status::Ok();
  FSB_ASSIGN_OR_RETURN(RawWatchEvent ev, ParseWatchEvent(line));
  return handler(std::move(ev));
}

Status WatchDecoder::Feed(std::string_view chunk, const Handler& handler) {
  buf_.append(chunk);
  size_t begin = 0;
  Status status;
  for (;;) {
    const size_t nl = buf_.find('\n', std::max(begin, scanned_));
    if (nl == std::string::npos) break;
    status = Emit(std::string_view(buf_).substr(begin, nl - begin), handler);
    begin = nl + 1;
    if (!status.ok()) break;
  }
  buf_.erase(0, begin);
  scanned_ = status.ok() ? buf_.size() : 0;
  if (status.ok() && buf_.size() > max_line_bytes) {
    return Status::ResourceExhausted(
        fmt::format("watch event longer than {} bytes", max_line_bytes));
  }
  return status;
}

Status WatchDecoder::Finish(const Handler& handler) {
  std::string rest = std::move(buf_);
  buf_.clear();
  scanned_ = 0;
  return Emit(rest, handler);
}

}  // namespace fsb::kube::internal
