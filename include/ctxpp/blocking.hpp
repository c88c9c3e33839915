// ctxpp/blocking.hpp — make a blocking call that takes no context cancellable.
// call_blocking runs a legacy call (a DNS lookup, a read(), sqlite3_step, PQexec)
// on a bounded worker pool, and returns to the caller as soon as the context ends,
// with the context's error. An interrupt hook (sqlite3_interrupt, PQcancel,
// shutdown() on a socket) is called so the call can stop early; a call that still
// does not return is abandoned safely: it keeps its own state, its result is
// destroyed when it finally returns, and until then it is counted and listed with
// its age and where it was made. A cap on abandoned calls protects the process
// from running out of threads.
// Example:
//   auto addr = ctxpp::call_blocking(ctx, [host] { return resolve(host); });
//   if (!addr) return addr.error();  // ctx ended first: errc::canceled or deadline
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "ctxpp/failure.hpp"
#include "ctxpp/result.hpp"
#include "ctxpp/source_location.hpp"

namespace ctxpp {

/// How a call_blocking call is run. Every field has a working default.
struct BlockingOptions {
  /// Shown in abandoned_calls(); the characters must outlive the call (a literal).
  std::string_view name = "blocking call";
  /// After the interrupt hook ran, how long the caller still waits for the call to
  /// return before abandoning it. An interrupted call usually returns at once, and
  /// the caller then knows the call is over (its connection or socket is free to
  /// reuse). Ignored without an interrupt hook: the caller returns at once.
  clock::duration interrupt_grace = std::chrono::milliseconds(50);
  /// Where the call runs; nullptr means ctxpp's shared blocking pool (bounded, see
  /// blocking_pool_max_threads()).
  Executor* executor = nullptr;
};

/// What call_blocking returns: the call's value, or why there is none.
/// error(): the context's err() when it ended first (also when the interrupted call
/// returned within the grace), failure::abandon_limit when refused, or
/// failure::rejected when the executor refused the work.
template <class T>
class [[nodiscard]] BlockingResult : public Result<T> {
 public:
  using Result<T>::Result;
  /// A result without a value; abandoned tells whether the call still runs.
  BlockingResult(std::error_code error, bool abandoned) noexcept
      : Result<T>(error), abandoned_(abandoned) {}

  /// True if the caller returned while the call was still running: it finishes
  /// alone, and its result will be discarded.
  bool abandoned() const noexcept { return abandoned_; }

 private:
  bool abandoned_ = false;
};

/// One abandoned call still running, as listed by abandoned_calls().
struct AbandonedCall {
  std::string name;
  SourceLocation where;         ///< where call_blocking was called
  clock::time_point started;    ///< when the call started running
  clock::time_point abandoned;  ///< when its caller returned
};

namespace detail {

// The part of a call shared by the caller and the worker; see src/blocking.cpp.
// Ownership: shared; whoever finishes last frees it.
class BlockingCall {
 public:
  virtual ~BlockingCall() = default;
  // Runs the user's function, storing its value or exception. Worker thread only.
  virtual void invoke() noexcept = 0;
  // Calls the interrupt hook, if any. Caller thread, at most once.
  virtual void interrupt() noexcept = 0;
  virtual bool has_interrupt() const noexcept = 0;
  // Destroys the stored value or exception. Worker thread, once the caller has
  // abandoned the call (it never reads them then), so that they are released there
  // even if the caller still holds its reference for a moment.
  virtual void discard() noexcept = 0;
};

enum class BlockingOutcome {
  completed,    // the function returned (value or exception stored): use it
  canceled,     // ctx ended before the function started: it never runs
  interrupted,  // ctx ended; the function returned within the grace: discard
  abandoned,    // ctx ended; the function is still running alone
  refused,      // not run: abandon cap reached (see error)
};

struct BlockingRun {
  BlockingOutcome outcome;
  std::error_code error;  // ctx.err(), or the refusal's failure code
};

// Runs call on the executor and waits for it or for ctx, as documented on
// call_blocking. Thread safety: any thread. Blocking: as call_blocking.
BlockingRun run_blocking(const Context& ctx, std::shared_ptr<BlockingCall> call,
                         const BlockingOptions& options, SourceLocation where) noexcept;

template <class F, class I>
class BlockingCallOf final : public BlockingCall {
 public:
  using Value = std::invoke_result_t<F&>;

  BlockingCallOf(F function, I interrupt_hook)
      : function_(std::move(function)), interrupt_(std::move(interrupt_hook)) {}

  void invoke() noexcept override {
    try {
      if constexpr (std::is_void_v<Value>) {
        function_();
        value_.emplace();
      } else {
        value_.emplace(function_());
      }
    } catch (...) {
      exception_ = std::current_exception();
    }
  }

  void interrupt() noexcept override {
    if constexpr (!std::is_same_v<I, std::nullptr_t>) interrupt_();
  }
  bool has_interrupt() const noexcept override { return !std::is_same_v<I, std::nullptr_t>; }
  void discard() noexcept override {
    value_.reset();
    exception_ = nullptr;
  }

  std::exception_ptr exception_;
  std::optional<std::conditional_t<std::is_void_v<Value>, char, Value>> value_;

 private:
  F function_;
  I interrupt_;
};

}  // namespace detail

/// Runs fn() on a worker and returns its value, or the context's error as soon as
/// ctx ends, whichever comes first.
/// - ctx already done: fn never runs; returns ctx.err().
/// - ctx ends before fn started (all workers busy): fn is withdrawn, never runs.
/// - ctx ends while fn runs: interrupt() is called from the cancelling side (the
///   caller's thread), then the caller waits at most options.interrupt_grace for fn
///   to return; if it does not, the call is abandoned (abandoned() is true): fn
///   finishes on its worker, its value (or exception) is destroyed there, and it is
///   listed by abandoned_calls() until then. Give fn a value type whose destructor
///   releases what it holds (a unique_ptr, a socket object), so an abandoned result
///   leaks nothing. Without an interrupt hook the call is abandoned at once.
/// An exception thrown by fn is rethrown to a caller that is still waiting; that of
/// an abandoned call is discarded (counted in abandoned_calls_total()).
/// Thread safety: any thread; fn and interrupt run on different threads at the same
/// time, so interrupt must be safe to call while fn runs (sqlite3_interrupt,
/// PQcancel and shutdown() are). interrupt must not throw (std::terminate).
/// TRICKY: interrupt is called once. A hook that only stops work already under way
/// (sqlite3_interrupt while no statement runs yet) can miss a call that had not
/// reached that point; then the call is abandoned after the grace. Pair such a hook
/// with a check of the context inside fn (SQLite's progress handler reading
/// ctx.done()), or use a hook whose effect sticks (shutdown() on a socket).
/// Blocking: until fn returns or ctx ends (+ interrupt_grace with a hook).
/// Ownership: fn and interrupt are moved into a state shared with the worker; what
/// they capture by reference must outlive an abandoned call: capture by value.
/// Cost: one allocation and a hand-off to a pool thread (never a thread per call).
/// Errors: errc::* from ctx; failure::abandon_limit if abandoned_limit() calls are
/// abandoned and still running (fn does not run); failure::rejected if the executor
/// cannot take the call; exceptions of fn as described.
template <class F, class I = std::nullptr_t>
auto call_blocking(const Context& ctx, F&& fn, I&& interrupt = nullptr,
                   BlockingOptions options = {}, SourceLocation where = SourceLocation::current()) {
  using Function = std::decay_t<F>;
  using Interrupt = std::decay_t<I>;
  using Call = detail::BlockingCallOf<Function, Interrupt>;
  using Value = typename Call::Value;
  auto call = std::make_shared<Call>(std::forward<F>(fn), std::forward<I>(interrupt));
  const detail::BlockingRun run = detail::run_blocking(ctx, call, options, where);
  if (run.outcome != detail::BlockingOutcome::completed) {
    return BlockingResult<Value>(run.error, run.outcome == detail::BlockingOutcome::abandoned);
  }
  if (call->exception_) std::rethrow_exception(call->exception_);
  if constexpr (std::is_void_v<Value>) {
    return BlockingResult<void>();
  } else {
    return BlockingResult<Value>(std::move(*call->value_));
  }
}

/// Abandoned calls still running, oldest first. Thread safety: any thread.
/// Cost: a mutex section and a copy of the list.
std::vector<AbandonedCall> abandoned_calls();

/// How many abandoned calls are still running (the gauge). Cost: one load.
std::size_t abandoned_call_count() noexcept;

/// How many calls were ever abandoned (the counter). Cost: one load.
std::size_t abandoned_calls_total() noexcept;

/// The cap on abandoned calls running at once; at the cap, call_blocking refuses
/// new calls with failure::abandon_limit. Default 64. Thread safety: any thread;
/// a lower cap does not affect calls already abandoned. Calls already accepted can
/// still be abandoned, so the count can pass the cap by the calls in flight.
/// Errors: throws std::invalid_argument for 0.
void set_abandoned_limit(std::size_t limit);
std::size_t abandoned_limit() noexcept;

/// The shared blocking pool's thread bound: abandoned_limit() + 2 × hardware threads,
/// fixed when the pool is first used.
std::size_t blocking_pool_max_threads() noexcept;

}  // namespace ctxpp
