// ctxpp/cleanup.hpp — deferred cleanup: scope guards and the context to clean up in.
// defer() runs a function when the scope ends, whichever way it ends, unless
// cancelled; a failing cleanup is reported, never lost and never a crash.
// cleanup_context() is the context for closing things after the request ended:
// it keeps the request's values, is not cancelled with it, and has its own short
// budget, whose expiry is reported as failure::budget_exceeded rather than passing
// silently.
// Example:
//   auto conn = pool.acquire(ctx);
//   auto release = ctxpp::defer([&] { pool.give_back(conn); });
//   ...
//   auto [cleanup_ctx, done] = ctxpp::cleanup_context(ctx, std::chrono::milliseconds(500));
//   conn.rollback(cleanup_ctx);  // runs even though ctx was cancelled; bounded by 500 ms
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include "ctxpp/context.hpp"
#include "ctxpp/failure.hpp"
#include "ctxpp/source_location.hpp"

namespace ctxpp {

/// A cleanup function that threw where nobody could catch it (a scope guard's
/// destructor, run_cleanup).
struct CleanupFailure {
  SourceLocation where;          ///< where the guard was made
  std::exception_ptr exception;  ///< what it threw
  std::string message;           ///< its what(), or "unknown exception"
};

/// Called for each CleanupFailure. Must not throw. The default writes one line to
/// stderr. Thread safety: set from any thread; the handler may run on any thread.
using CleanupFailureHandler = void (*)(const CleanupFailure&);

/// Installs handler (nullptr: the default); returns the previous one.
CleanupFailureHandler set_cleanup_failure_handler(CleanupFailureHandler handler) noexcept;

/// How many cleanup failures were reported since the process started. Cost: one load.
std::size_t cleanup_failures_total() noexcept;

namespace detail {
// Reports the exception being handled (call from a catch block). Never throws.
void report_cleanup_failure(SourceLocation where) noexcept;
}  // namespace detail

/// Runs a function when it goes out of scope, unless cancelled or already invoked.
/// Thread safety: none (a scope-local object). Cost: the function's size plus a
/// flag and a source location; no allocation.
/// Errors: an exception from the function in the destructor is caught and reported
/// to the cleanup failure handler (the scope may be unwinding already); from
/// invoke() it propagates to the caller.
/// Ownership: move-only; a moved-from guard does nothing.
template <class F>
class [[nodiscard]] Defer {
 public:
  explicit Defer(F function, SourceLocation where = SourceLocation::current()) noexcept(
      std::is_nothrow_move_constructible_v<F>)
      : function_(std::move(function)), where_(where) {}
  Defer(Defer&& other) noexcept(std::is_nothrow_move_constructible_v<F>)
      : function_(std::move(other.function_)),
        where_(other.where_),
        armed_(std::exchange(other.armed_, false)) {}
  Defer(const Defer&) = delete;
  Defer& operator=(const Defer&) = delete;
  Defer& operator=(Defer&&) = delete;

  ~Defer() {
    if (!armed_) return;
    try {
      function_();
    } catch (...) {
      detail::report_cleanup_failure(where_);
    }
  }

  /// The function will not run. Use as `std::move(guard).cancel();`.
  void cancel() && noexcept { armed_ = false; }

  /// Runs the function now (once); the destructor then does nothing.
  /// Errors: what the function throws.
  void invoke() && {
    if (!std::exchange(armed_, false)) return;
    function_();
  }

  /// True until cancelled, invoked or moved from.
  bool armed() const noexcept { return armed_; }

 private:
  F function_;
  SourceLocation where_;
  bool armed_ = true;
};

/// `auto guard = ctxpp::defer([&] { close(fd); });`
template <class F>
Defer<std::decay_t<F>> defer(F&& function, SourceLocation where = SourceLocation::current()) {
  return Defer<std::decay_t<F>>(std::forward<F>(function), where);
}

/// The context to clean up in after ctx ended: keeps ctx's values, is never ended
/// by ctx, and ends with errc::deadline_exceeded (cause failure::budget_exceeded)
/// once budget has passed. The cancel function releases its timer early: call it
/// when cleanup finished. A zero or negative budget ends it at once; a huge one
/// saturates (never ends by time).
/// Thread safety: any thread. Cost: two allocations, one timer entry.
/// Errors: std::bad_alloc.
WithCancel<Context, CancelFunc> cleanup_context(const Context& ctx, clock::duration budget);

/// Runs fn with a cleanup_context(ctx, budget) and says how it went: {} if fn
/// finished in time; failure::budget_exceeded if the budget ran out before fn
/// returned (whatever fn returned); otherwise fn's own error if it returns a
/// std::error_code; failure::exception if fn threw (the exception is reported to
/// the cleanup failure handler, never rethrown: cleanup failures do not unwind the
/// caller). fn takes `const Context&`.
/// Blocking: as long as fn runs; fn should honour its context.
template <class F>
std::error_code run_cleanup(const Context& ctx, clock::duration budget, F&& fn,
                            SourceLocation where = SourceLocation::current()) noexcept {
  std::error_code result;
  try {
    auto [cleanup_ctx, release_timer] = cleanup_context(ctx, budget);
    if constexpr (std::is_convertible_v<std::invoke_result_t<F&, const Context&>,
                                        std::error_code>) {
      result = fn(static_cast<const Context&>(cleanup_ctx));
    } else {
      fn(static_cast<const Context&>(cleanup_ctx));
    }
    if (cleanup_ctx.err() == errc::deadline_exceeded)
      result = make_error_code(failure::budget_exceeded);
    release_timer();
  } catch (...) {
    detail::report_cleanup_failure(where);
    result = make_error_code(failure::exception);
  }
  return result;
}

}  // namespace ctxpp
