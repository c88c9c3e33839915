// ctxpp/source_location.hpp — where a call was made, for reports and diagnostics.
// std::source_location needs compiler support that clang 14 lacks with libstdc++
// 12, so ctxpp carries its own: the same shape, filled in at the call site by the
// __builtin_FILE/LINE/FUNCTION intrinsics that g++ and clang both provide.
// Example:
//   void acquire(ctxpp::SourceLocation where = ctxpp::SourceLocation::current());
#pragma once

#include <cstdint>

namespace ctxpp {

/// A file, line and function name. Thread safety: immutable. Cost: three words,
/// no allocation. Ownership: the strings are literals with static storage.
class SourceLocation {
 public:
  constexpr SourceLocation() noexcept = default;

  /// As a default argument, names the caller's location.
  static constexpr SourceLocation current(const char* file = __builtin_FILE(),
                                          std::uint_least32_t line = __builtin_LINE(),
                                          const char* function = __builtin_FUNCTION()) noexcept {
    SourceLocation location;
    location.file_ = file;
    location.line_ = line;
    location.function_ = function;
    return location;
  }

  constexpr const char* file_name() const noexcept { return file_; }
  constexpr std::uint_least32_t line() const noexcept {
    return static_cast<std::uint_least32_t>(line_);
  }
  constexpr const char* function_name() const noexcept { return function_; }

 private:
  const char* file_ = "";
  const char* function_ = "";
  // A whole word, not 32 bits and padding: passed by value, the object is copied word
  // by word, and a word read back right after a 4-byte store of the line cannot be
  // forwarded from the store buffer (a stall of ~12 cycles per call on x86-64, which
  // every with_cancel() and cancel() paid for its default argument).
  std::uint64_t line_ = 0;
};

}  // namespace ctxpp
