#include "coordinator/common.h"

#include <fmt/format.h>

#include "repo/crypto.h"

namespace fsb::coordinator {

bool ClaimedByFsb(const kube::ObjectMeta& meta, bool claim_all) {
  if (claim_all) return true;
  auto it = meta.labels.find(std::string(kLabelCoordinator));
  return it != meta.labels.end() && it->second == "true";
}

bool HandledByFsb(const kube::ObjectMeta& meta) {
  auto it = meta.annotations.find(std::string(kAnnotationHandledBy));
  return it != meta.annotations.end() && it->second == kHandledByValue;
}

std::string ValidLabelValue(std::string_view name) {
  if (name.size() <= 63) return std::string(name);
  repo::Sha256 h;
  h.Update(AsBytes(name));
  return std::string(name.substr(0, 57)) + h.Finish().Hex().substr(0, 6);
}

std::string JsonList(const std::vector<std::string>& items) {
  kube::Object a = kube::Object::array();
  for (const std::string& s : items) a.push_back(s);
  return a.dump();
}

std::vector<std::string> ParseJsonList(const kube::Labels& annotations, std::string_view key) {
  std::vector<std::string> out;
  auto it = annotations.find(std::string(key));
  if (it == annotations.end()) return out;
  kube::Object a = kube::Object::parse(it->second, nullptr, false);
  if (a.is_discarded() || !a.is_array()) return out;
  for (const kube::Object& e : a) {
    if (e.is_string()) out.push_back(e.get<std::string>());
  }
  return out;
}

std::string PhaseOf(const kube::Object& obj) {
  if (!obj.is_object()) return "";
  auto st = obj.find("status");
  if (st == obj.end() || !st->is_object()) return "";
  auto ph = st->find("phase");
  return ph != st->end() && ph->is_string() ? ph->get<std::string>() : "";
}

void SetAnnotation(kube::Object& obj, std::string_view key, const std::string& value) {
  kube::Object& md = obj["metadata"];
  if (!md.contains("annotations") || !md["annotations"].is_object()) {
    md["annotations"] = kube::Object::object();
  }
  md["annotations"][std::string(key)] = value;
}

std::string NowTimestamp() { return kube::FormatTime(kube::Clock::now()); }

kube::Object ClaimedCopy(const kube::Object& obj, const std::vector<std::string>& errs) {
  kube::Object next = obj;
  kube::Object& st = next["status"];
  if (!st.is_object()) st = kube::Object::object();
  SetAnnotation(next, kAnnotationHandledBy, std::string(kHandledByValue));
  if (!errs.empty()) {
    st["phase"] = kPhaseFailedValidation;
    st["validationErrors"] = errs;
    st["completionTimestamp"] = NowTimestamp();
  }
  return next;
}

Result<kube::Object> PutClaimed(kube::Client& client, const kube::Resource& r, std::string_view ns,
                                const kube::Object& next, std::string_view kind) {
  Result<kube::Object> stored = client.Update(r, ns, next);
  if (!stored.ok() && kube::IsConflict(stored.status())) {
    const kube::Object& meta = next["metadata"];
    return Status::Unavailable(fmt::format("{} {} changed meanwhile (rv {})", kind,
                                           meta.value("name", ""),
                                           meta.value("resourceVersion", "")));
  }
  return stored;
}

}  // namespace fsb::coordinator
