// base/secret.h: a value that must never be logged or printed; formats as "***".
#pragma once

#include <fmt/format.h>

#include <string>
#include <utility>

namespace fsb {

template <typename T>
class Secret {
 public:
  Secret() = default;
  explicit Secret(T value) : value_(std::move(value)) {}
  // The one way to reach the value: the name makes every use easy to audit.
  const T& Reveal() const { return value_; }

 private:
  T value_{};
};

}  // namespace fsb

template <typename T>
struct fmt::formatter<fsb::Secret<T>> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(const fsb::Secret<T>&, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format("***", ctx);
  }
};
