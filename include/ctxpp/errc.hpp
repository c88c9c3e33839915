// ctxpp/errc.hpp — the two ways a context ends, as std::error_code.
// Cancellation is an outcome, not an exception: a done context reports
// errc::canceled or errc::deadline_exceeded through Context::err(). Both map to
// the portable conditions std::errc::operation_canceled and std::errc::timed_out,
// so code that knows nothing of ctxpp can still test `ec == std::errc::timed_out`.
// Example:
//   if (ctx.err() == ctxpp::errc::deadline_exceeded) return retry_later();
#pragma once

#include <system_error>

namespace ctxpp {

/// Why a context ended. Zero is never used: an empty error_code means "not done".
enum class errc {
  canceled = 1,           ///< a cancel function was called (here or on an ancestor)
  deadline_exceeded = 2,  ///< the deadline passed (here or on an ancestor)
};

/// The category of errc. Its name() is "ctxpp"; messages are "context canceled"
/// and "context deadline exceeded" (Go's wording).
/// Thread safety: any thread. Cost: a function-local static, no allocation.
const std::error_category& context_category() noexcept;

/// Wraps an errc into a std::error_code of context_category().
/// Thread safety: any thread. Cost: none beyond the category lookup.
std::error_code make_error_code(errc e) noexcept;

/// Same value as a portable condition: canceled -> std::errc::operation_canceled,
/// deadline_exceeded -> std::errc::timed_out.
std::error_condition make_error_condition(errc e) noexcept;

}  // namespace ctxpp

template <>
struct std::is_error_code_enum<ctxpp::errc> : std::true_type {};
