// kube/internal/fields.h: reads typed fields out of a Kubernetes JSON object, remembering the
// first type error ("podvolumebackup velero/x: spec.node: want a string, got number"). Absent or
// null fields read as empty/zero: the API server omits empty fields. One thread.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "kube/client.h"
#include "kube/objects.h"

namespace fsb::kube::internal {

class Fields {
 public:
  using Path = std::initializer_list<std::string_view>;
  Fields(const Object& obj, std::string what) : obj_(obj), what_(std::move(what)) {}

  // The value at `path`, or nullptr when a step is absent or null. A step through a non-object
  // is an error.
  const Object* Find(Path path);
  std::string Str(Path path);
  bool Bool(Path path);
  int64_t Int(Path path);
  std::map<std::string, std::string> StrMap(Path path);
  // An array of objects (absent = empty); each element is handed to `fn`.
  template <typename Fn>
  void ForEach(Path path, Fn&& fn) {
    const Object* a = Find(path);
    if (!a) return;
    if (!a->is_array()) return Error(path, "an array", *a);
    for (const Object& e : *a) {
      if (!e.is_object()) return Error(path, "an array of objects", e);
      fn(e);
    }
  }
  // Elements of an array of strings.
  std::vector<std::string> StrList(Path path);

  // Records kInvalidArgument with `message` unless an error is already recorded.
  void Fail(std::string message) {
    if (status_.ok()) status_ = Status::InvalidArgument(std::move(message));
  }
  // The object at `path`, or nullptr when absent or null; anything else is an error.
  const Object* Obj(Path path);

  Status status() const { return status_; }
  // Takes over the first error of a reader of a nested object.
  void Absorb(const Fields& nested) {
    if (status_.ok()) status_ = nested.status_;
  }
  const std::string& what() const { return what_; }

 private:
  void Error(Path path, std::string_view want, const Object& got);

  const Object& obj_;
  const std::string what_;
  Status status_;
};

// The metadata of a Kubernetes object (kube/objects.cc), read into `f`'s first error; `f` is on
// the whole object. For parsers of other object kinds, so their errors name their kind.
ObjectMeta ReadMeta(Fields& f);
// "<kind> <ns>/<name>" (or "<kind> <name>", "<kind> ?"), read leniently, for error messages.
std::string Describe(const Object& obj, std::string_view kind);

}  // namespace fsb::kube::internal
