// ctxpp/result.hpp — a value or the std::error_code that explains its absence.
// Cancellable operations return this instead of throwing: a context that ended is
// an outcome (errc::canceled, errc::deadline_exceeded), not an exception. It is the
// shape of C++23's std::expected<T, std::error_code>, small enough for C++20.
// Example:
//   ctxpp::Result<std::string> r = ctxpp::call_blocking(ctx, [&] { return lookup(name); });
//   if (!r) return r.error();
//   use(*r);
#pragma once

#include <optional>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <utility>

namespace ctxpp {

/// Thrown only by Result::value() when there is no value: the caller asked for a
/// value without checking. Carries the error.
class BadResultAccess : public std::system_error {
 public:
  explicit BadResultAccess(std::error_code ec)
      : std::system_error(ec, "ctxpp::Result has no value") {}
};

/// Either a T or a non-empty std::error_code.
/// Thread safety: like T (no internal synchronisation). Cost: sizeof(T) + an
/// error_code. Errors: constructing from an empty error_code makes a Result whose
/// error() is errc-free but still "no value": do not; every producer in ctxpp passes
/// a non-empty code.
template <class T>
class [[nodiscard]] Result {
 public:
  // clang-format off
  template <class U = T>
    requires std::is_constructible_v<T, U&&>
  Result(U&& value) : value_(std::forward<U>(value)) {}  // NOLINT(google-explicit-constructor)
  // clang-format on
  Result(std::error_code error) : error_(error) {}  // NOLINT(google-explicit-constructor)

  bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }

  /// {} when there is a value.
  std::error_code error() const noexcept { return error_; }

  /// The value. Errors: throws BadResultAccess(error()) when there is none.
  T& value() & {
    check();
    return *value_;
  }
  const T& value() const& {
    check();
    return *value_;
  }
  T&& value() && {
    check();
    return std::move(*value_);
  }

  /// Unchecked access: has_value() must be true.
  T& operator*() & noexcept { return *value_; }
  const T& operator*() const& noexcept { return *value_; }
  T&& operator*() && noexcept { return std::move(*value_); }
  T* operator->() noexcept { return &*value_; }
  const T* operator->() const noexcept { return &*value_; }

  template <class U>
  T value_or(U&& fallback) const& {
    return value_ ? *value_ : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  void check() const {
    if (!value_) throw BadResultAccess(error_);
  }

  std::optional<T> value_;
  std::error_code error_;
};

/// Success or a non-empty std::error_code.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() noexcept = default;
  Result(std::error_code error) noexcept : error_(error) {}  // NOLINT(google-explicit-constructor)

  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return has_value(); }
  std::error_code error() const noexcept { return error_; }

  /// Errors: throws BadResultAccess(error()) on failure.
  void value() const {
    if (error_) throw BadResultAccess(error_);
  }

 private:
  std::error_code error_;
};

}  // namespace ctxpp
