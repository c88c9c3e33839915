// ctxpp/coroutine.hpp — co_await a context's end from any C++20 coroutine.
// `co_await ctxpp::cancelled(ctx)` suspends until ctx is done and yields its
// err(). It works with any coroutine type (the awaiter only needs a
// std::coroutine_handle<>), allocates nothing, and resumes the coroutine inline
// in the thread that cancels — so a handler can race "work finished" against
// "request abandoned" without a thread or a poll.
// Example:
//   task<void> watchdog(ctxpp::Context ctx, Connection& conn) {
//     std::error_code why = co_await ctxpp::cancelled(ctx);
//     conn.abort(why);
//   }
#pragma once

#include <coroutine>
#include <system_error>

#include "ctxpp/context.hpp"
#include "ctxpp/scoped_callback.hpp"

namespace ctxpp {

/// Awaiter returned by cancelled(). Resumes the awaiting coroutine once the
/// context is done; `co_await` evaluates to the context's err().
/// Where it resumes: without suspending if already done; otherwise inline in the
/// thread that ends the context (cancel(), a timer, a parent's cancel), with no
/// ctxpp lock held, so the resumed coroutine may cancel, register or deregister
/// anything. Hand off to your executor in the coroutine if that thread must not
/// run your code.
/// Ownership: holds a reference on the context. Destroying a coroutine suspended
/// here unregisters it; doing so while another thread is cancelling that context
/// is a data race on the coroutine, as with any awaiter.
/// Cost: no allocation; one spin-lock section to register.
/// A context that can never end never resumes the coroutine.
class [[nodiscard]] CancelledAwaiter : private detail::CallbackBase {
 public:
  explicit CancelledAwaiter(Context ctx) noexcept : ctx_(std::move(ctx)) {}
  CancelledAwaiter(const CancelledAwaiter&) = delete;
  CancelledAwaiter& operator=(const CancelledAwaiter&) = delete;
  ~CancelledAwaiter() {
    if (registered_) detail::deregister_callback(detail::Access::signal(ctx_), this);
  }

  bool await_ready() const noexcept { return ctx_.done(); }

  bool await_suspend(std::coroutine_handle<> handle) noexcept {
    detail::SignalNode* node = detail::Access::signal(ctx_);
    if (node == nullptr) return true;  // never ends: stay suspended
    handle_ = handle;
    fire_ = &fire;
    // TRICKY: once registered, another thread may resume (and destroy) the coroutine
    // before this function returns: touch no member after a successful registration.
    registered_ = true;
    if (!detail::register_callback(node, this)) {
      registered_ = false;
      return false;  // already done: continue without suspending
    }
    return true;
  }

  std::error_code await_resume() const noexcept { return ctx_.err(); }

 private:
  static void fire(detail::CallbackBase* base) noexcept {
    auto* self = static_cast<CancelledAwaiter*>(base);
    // TRICKY: resuming may destroy the coroutine frame and this awaiter with it.
    // Tell the canceller not to touch the registration after we return, and
    // mark it unregistered so the destructor skips deregistration.
    *self->removed_during_fire_ = true;
    self->registered_ = false;
    self->handle_.resume();
  }

  Context ctx_;
  std::coroutine_handle<> handle_;
  bool registered_ = false;
};

/// Awaitable end of ctx; see CancelledAwaiter.
inline CancelledAwaiter cancelled(const Context& ctx) noexcept { return CancelledAwaiter(ctx); }

}  // namespace ctxpp
