// base/status.h: the one error channel of fsb. A Status is a code (drives behaviour: retry or not,
// which PVB phase) plus a message for a person. Result<T> is a value or a non-OK Status.
// Value types; safe to copy between threads.
#pragma once

#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace fsb {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kCorruption,
  kUnavailable,  // transient: worth a retry
  kResourceExhausted,
  kFailedPrecondition,
  kCancelled,
  kInternal,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status PermissionDenied(std::string m) {
    return {StatusCode::kPermissionDenied, std::move(m)};
  }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

  // Maps errno to a code (ENOENT→kNotFound, EACCES/EPERM→kPermissionDenied,
  // ENOSPC/EDQUOT→kResourceExhausted, EEXIST→kAlreadyExists, EINTR/EAGAIN/ETIMEDOUT→kUnavailable,
  // EINVAL/ENOTDIR/ELOOP/EXDEV→kInvalidArgument, others→kInternal). Message: "<op> <name>: <strerror>".
  static Status FromErrno(int err, std::string_view op, std::string_view name = {});

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "<code name>: <message>", or "ok".
  std::string ToString() const;
  // Returns a copy whose message is "<context>: <message>"; OK stays OK.
  Status WithContext(std::string_view context) const;
  // Drop on purpose; the caller says why in a comment.
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) v_ = Status::Internal("Result constructed from OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T value_or(T fallback) const& { return ok() ? value() : std::move(fallback); }

 private:
  std::variant<Status, T> v_;
};

[[noreturn]] void CheckFailed(const char* file, int line, const char* expr);

}  // namespace fsb

#define FSB_CONCAT_INNER_(a, b) a##b
#define FSB_CONCAT_(a, b) FSB_CONCAT_INNER_(a, b)

#define FSB_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::fsb::Status fsb_status_ = (expr);        \
    if (!fsb_status_.ok()) return fsb_status_; \
  } while (0)

#define FSB_ASSIGN_OR_RETURN_IMPL_(tmp, decl, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  decl = std::move(tmp).value()

// FSB_ASSIGN_OR_RETURN(Bytes b, Load(...));
#define FSB_ASSIGN_OR_RETURN(decl, expr) \
  FSB_ASSIGN_OR_RETURN_IMPL_(FSB_CONCAT_(fsb_result_, __LINE__), decl, expr)

// Aborts with file:line in every build. Only for broken invariants that could damage a
// repository, never for input from the environment.
#define FSB_CHECK(cond) \
  ((cond) ? (void)0 : ::fsb::CheckFailed(__FILE__, __LINE__, #cond))
