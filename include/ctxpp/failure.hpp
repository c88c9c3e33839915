// ctxpp/failure.hpp — the library's own outcomes, beside a context's two endings.
// errc says why a context ended; failure says what went wrong around it: a task
// or cleanup step threw, a cleanup ran out of its budget, a blocking call was
// abandoned or refused, a group was left without being joined. They are
// std::error_code values too, so they travel as causes and land in reports.
// Example:
//   if (group.wait() == ctxpp::failure::exception) log("a task threw");
#pragma once

#include <system_error>

namespace ctxpp {

/// What went wrong in structured concurrency, cleanup or a blocking call.
/// Zero is never used.
enum class failure {
  exception = 1,        ///< a task or cleanup step threw; the exception is kept beside the code
  not_joined = 2,       ///< a task group was destroyed without wait() outside unwinding
  budget_exceeded = 3,  ///< a cleanup or shutdown phase ran out of its time budget
  abandoned = 4,        ///< a blocking call outlived its context and was left to finish alone
  abandon_limit = 5,    ///< refused: too many abandoned blocking calls are still running
  rejected = 6,         ///< refused: the group, pool or shutdown no longer takes work
};

/// The category of failure; name() is "ctxpp.failure". Thread safety: any thread.
/// Cost: a function-local static, no allocation.
const std::error_category& failure_category() noexcept;

/// Wraps a failure into a std::error_code of failure_category().
std::error_code make_error_code(failure f) noexcept;

}  // namespace ctxpp

template <>
struct std::is_error_code_enum<ctxpp::failure> : std::true_type {};
