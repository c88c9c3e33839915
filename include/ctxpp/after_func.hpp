// ctxpp/after_func.hpp — run a function once a context is done (Go's AfterFunc).
// The function runs once, on a thread of ctxpp's shared callback executor (never
// inside the cancelling thread), after the context ends — at once if it already
// has. stop() prevents a run that has not started and never blocks; wait() is the
// separate, explicit way to wait until a started run has finished.
// Example:
//   auto handle = ctxpp::after_func(ctx, [&] { socket.shutdown(); });
//   ...
//   if (!handle.stop()) handle.wait();  // the shutdown ran or is running: join it
#pragma once

#include <chrono>
#include <functional>

#include "ctxpp/context.hpp"

namespace ctxpp {

namespace detail {
struct AfterFuncState;
}  // namespace detail

/// Controls one after_func registration. Dropping the handle does not stop f.
/// Thread safety: any member from any thread; stop() races resolve with exactly
/// one winner. Ownership: shares the registration with the context; a
/// default-constructed or moved-from handle reports "nothing to stop".
class [[nodiscard]] AfterFuncHandle {
 public:
  AfterFuncHandle() noexcept = default;
  AfterFuncHandle(const AfterFuncHandle& other) noexcept;
  AfterFuncHandle(AfterFuncHandle&& other) noexcept;
  AfterFuncHandle& operator=(AfterFuncHandle other) noexcept;
  ~AfterFuncHandle();

  /// Prevents f from running. True if this call prevented it; false if f was
  /// already started (the context ended first) or stop() was already called.
  /// Blocking: never, and it does not wait for a running f.
  /// Cost: one CAS and the context's spin lock to unregister.
  bool stop() noexcept;

  /// Blocks until f has finished, or returns at once if stop() prevented it.
  /// Blocking: as long as the context stays live and f is not stopped.
  /// Errors: must not be called from inside f (it would wait for itself):
  /// that call returns at once instead.
  void wait() const noexcept;

  /// wait() bounded by d; true if f finished or was prevented.
  bool wait_for(clock::duration d) const noexcept;

  /// True once f has finished running (false if it was prevented).
  bool finished() const noexcept;

 private:
  friend AfterFuncHandle after_func(const Context& ctx, std::function<void()> f);
  explicit AfterFuncHandle(detail::AfterFuncState* state) noexcept : state_(state) {}
  detail::AfterFuncState* state_ = nullptr;
};

/// Runs f once, on a thread of the shared executor, after ctx is done (at once,
/// still on the executor, if it already is). On a context that can never end, f
/// never runs. The registration holds no reference on ctx: if every handle to a
/// live ctx and to its descendants goes away, the node is freed, the registration
/// with it, and f never runs, even if an ancestor is cancelled later (unlike Go,
/// where the parent keeps such a context reachable). Keep a handle to ctx for as
/// long as f may be wanted.
/// f must not throw: an exception escaping f calls std::terminate.
/// Cost: one allocation for the registration; the executor's threads are shared
/// (created on demand; idle ones retire but one, kept for the next burst), never
/// one per call.
/// Errors: std::bad_alloc; f is not run then.
AfterFuncHandle after_func(const Context& ctx, std::function<void()> f);

}  // namespace ctxpp
