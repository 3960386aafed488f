#include "kube/resource.h"

#include "kube/internal/util.h"

namespace fsb::kube {

std::string Resource::GroupVersionPath() const {
  if (group.empty()) return "/api/" + std::string(version);
  return "/apis/" + std::string(group) + "/" + std::string(version);
}

std::string Resource::Path(std::string_view ns, std::string_view name,
                           std::string_view subresource) const {
  std::string p = GroupVersionPath();
  if (namespaced && !ns.empty()) {
    p += "/namespaces/";
    p += internal::PercentEncode(ns);
  }
  p += "/";
  p += plural;
  if (!name.empty()) {
    p += "/";
    p += internal::PercentEncode(name);
    if (!subresource.empty()) {
      p += "/";
      p += internal::PercentEncode(subresource);
    }
  }
  return p;
}

std::string Resource::QualifiedName() const {
  if (group.empty()) return std::string(plural);
  return std::string(plural) + "." + std::string(group);
}

std::string Resource::ApiVersion() const {
  if (group.empty()) return std::string(version);
  return std::string(group) + "/" + std::string(version);
}

}  // namespace fsb::kube
