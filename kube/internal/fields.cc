#include "kube/internal/fields.h"

#include <fmt/format.h>

namespace fsb::kube::internal {
namespace {

std::string JoinPath(Fields::Path path) {
  std::string s;
  for (std::string_view p : path) {
    if (!s.empty()) s += '.';
    s += p;
  }
  return s;
}

}  // namespace

void Fields::Error(Path path, std::string_view want, const Object& got) {
  if (!status_.ok()) return;
  status_ = Status::InvalidArgument(
      fmt::format("{}: {}: want {}, got {}", what_, JoinPath(path), want, got.type_name()));
}

const Object* Fields::Find(Path path) {
  const Object* cur = &obj_;
  std::vector<std::string_view> done;
  for (std::string_view step : path) {
    if (cur->is_null()) return nullptr;
    if (!cur->is_object()) {
      if (status_.ok() && done.empty()) {
        status_ = Status::InvalidArgument(
            fmt::format("{}: want an object, got {}", what_, cur->type_name()));
      } else if (status_.ok()) {
        status_ = Status::InvalidArgument(fmt::format("{}: {}: want an object, got {}", what_,
                                                      fmt::join(done, "."), cur->type_name()));
      }
      return nullptr;
    }
    auto it = cur->find(step);
    if (it == cur->end()) return nullptr;
    cur = &*it;
    done.push_back(step);
  }
  return cur->is_null() ? nullptr : cur;
}

const Object* Fields::Obj(Path path) {
  const Object* v = Find(path);
  if (v && !v->is_object()) {
    Error(path, "an object", *v);
    return nullptr;
  }
  return v;
}

std::string Fields::Str(Path path) {
  const Object* v = Find(path);
  if (!v) return "";
  if (!v->is_string()) {
    Error(path, "a string", *v);
    return "";
  }
  return v->get<std::string>();
}

bool Fields::Bool(Path path) {
  const Object* v = Find(path);
  if (!v) return false;
  if (!v->is_boolean()) {
    Error(path, "a boolean", *v);
    return false;
  }
  return v->get<bool>();
}

int64_t Fields::Int(Path path) {
  const Object* v = Find(path);
  if (!v) return 0;
  if (!v->is_number_integer()) {
    Error(path, "an integer", *v);
    return 0;
  }
  return v->get<int64_t>();
}

std::map<std::string, std::string> Fields::StrMap(Path path) {
  std::map<std::string, std::string> m;
  const Object* v = Find(path);
  if (!v) return m;
  if (!v->is_object()) {
    Error(path, "a map of strings", *v);
    return m;
  }
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (!it->is_string()) {
      Error(path, "a map of strings", *it);
      return {};
    }
    m.emplace(it.key(), it->get<std::string>());
  }
  return m;
}

std::vector<std::string> Fields::StrList(Path path) {
  std::vector<std::string> out;
  const Object* v = Find(path);
  if (!v) return out;
  if (!v->is_array()) {
    Error(path, "an array of strings", *v);
    return out;
  }
  for (const Object& e : *v) {
    if (!e.is_string()) {
      Error(path, "an array of strings", e);
      return {};
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace fsb::kube::internal
