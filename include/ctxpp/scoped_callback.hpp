// ctxpp/scoped_callback.hpp — react to cancellation inline, without allocating.
// A ScopedCallback runs its function once, in the thread that cancels the context
// (or in its own constructor if the context is already done), and never after its
// destructor returned. The registration object is the list node, so registering
// costs no allocation: this is what adapters and coroutines build on. The shape is
// std::stop_callback's.
// Example:
//   ctxpp::ScopedCallback on_cancel(ctx, [&]() noexcept { ::shutdown(fd, SHUT_RDWR); });
//   auto n = ::read(fd, buf, size);   // unblocked by the shutdown on cancel
#pragma once

#include <type_traits>
#include <utility>

#include "ctxpp/context.hpp"

namespace ctxpp {

namespace detail {
// Links callback on node's list. False if node is already done (then the
// callback is not linked and the caller must run it itself).
// Cost: the node's spin lock; no allocation.
bool register_callback(SignalNode* node, CallbackBase* callback) noexcept;
// Unlinks callback. If a canceller on another thread is running it, waits until
// it returns; if called from inside the callback itself, returns at once.
void deregister_callback(SignalNode* node, CallbackBase* callback) noexcept;
}  // namespace detail

/// Runs f once when ctx ends.
/// Where it runs: inline in the constructor if ctx is already done; otherwise in
/// the thread whose cancel() (or timer expiry, or parent's cancel) ended ctx, with
/// no ctxpp lock held — it may cancel other contexts, register and deregister
/// callbacks, or destroy this very ScopedCallback.
/// Errors: f must not throw: the cancel path is noexcept, so an escaping
/// exception calls std::terminate.
/// Blocking: the destructor waits while f runs on another thread (so captures
/// stay valid), but not when called from inside f. Like std::stop_callback (and
/// .NET's Dispose) this can deadlock by design: do not destroy it while holding a
/// lock that f takes, and do not let two callbacks that run at the same time
/// destroy each other's registration. after_func's stop() is the form that never
/// waits. done() turns true before the callbacks run: a ScopedCallback destroyed
/// in that window is not run.
/// Ordering: f observes ctx.done() == true and everything written before cancel().
/// Cost: no allocation; one spin-lock section to register and one to deregister;
/// one reference on ctx's node. Never runs for a context that can never end.
/// Ownership: not copyable or movable (it is linked into the context's list).
template <class F>
class [[nodiscard]] ScopedCallback : private detail::CallbackBase {
  static_assert(std::is_nothrow_invocable_v<F&> || std::is_invocable_v<F&>,
                "ScopedCallback needs a function callable with no arguments");

 public:
  // clang-format off
  template <class G>
    requires std::is_constructible_v<F, G>
  ScopedCallback(const Context& ctx, G&& f) noexcept(std::is_nothrow_constructible_v<F, G>)
      : function_(std::forward<G>(f)) {
    // clang-format on
    detail::SignalNode* node = detail::Access::signal(ctx);
    if (node == nullptr) return;  // can never end: nothing to register
    fire_ = &fire;
    if (detail::register_callback(node, this)) {
      node_ = node;
      detail::add_ref(node_);
    } else {
      function_();  // already done: run inline, as std::stop_callback does
    }
  }

  ScopedCallback(const ScopedCallback&) = delete;
  ScopedCallback& operator=(const ScopedCallback&) = delete;

  ~ScopedCallback() {
    if (node_ != nullptr) {
      detail::deregister_callback(node_, this);
      detail::release(node_);
    }
  }

 private:
  static void fire(detail::CallbackBase* base) noexcept {
    static_cast<ScopedCallback*>(base)->function_();
  }

  detail::SignalNode* node_ = nullptr;
  F function_;
};

template <class F>
ScopedCallback(const Context&, F) -> ScopedCallback<F>;

}  // namespace ctxpp
