// ctxpp/asio/awaitable.hpp — waiting for a context, and running a coroutine under one.
// async_wait(ctx, token) is an Asio asynchronous operation that completes when ctx
// ends (with ctx.err()) or when Asio cancels it; wait(ctx) is its awaitable form.
// with_context(ctx, op) runs an asio::awaitable so that every operation it awaits is
// cancelled (terminal) when ctx ends, as well as when the awaiting coroutine is.
// Example:
//   ::boost::asio::awaitable<void> session(ctxpp::Context ctx, tcp::socket socket) {
//     auto [ec, n] = co_await ctxpp::asio::with_context(ctx, read_request(socket));
//     ...
//   }
//   std::error_code why = co_await ctxpp::asio::wait(ctx);  // canceled / deadline_exceeded
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>

#include "ctxpp/asio/cancellation.hpp"
#include "ctxpp/context.hpp"
#include "ctxpp/scoped_callback.hpp"

namespace ctxpp::asio {

namespace detail {

class WaitBase;

// The ScopedCallback function of a wait: completes it with the context's error.
struct FinishOnEnd {
  WaitBase* wait;
  void operator()() const noexcept;
};

// One pending async_wait. It owns itself (self_) until it completes: nothing else
// refers to it but the context's callback and the handler's cancellation slot.
class WaitBase {
 public:
  explicit WaitBase(Context ctx) noexcept : ctx_(std::move(ctx)) {}
  WaitBase(const WaitBase&) = delete;
  WaitBase& operator=(const WaitBase&) = delete;
  virtual ~WaitBase() = default;

  // The first call wins and posts the completion with ec; later calls do nothing.
  // Any thread.
  void finish(std::error_code ec) noexcept {
    if (finished_.exchange(true, std::memory_order_acq_rel)) return;
    std::unique_ptr<WaitBase> self = std::move(self_);
    post_completion(std::move(self), ec);
  }

  const Context& context() const noexcept { return ctx_; }

 protected:
  // Posts the handler's invocation; self is what keeps this wait alive until then.
  virtual void post_completion(std::unique_ptr<WaitBase> self, std::error_code ec) noexcept = 0;

  // Called last by the initiation: from here on the wait may complete at any time.
  void arm(std::unique_ptr<WaitBase> self) {
    self_ = std::move(self);
    callback_.emplace(ctx_, FinishOnEnd{this});
  }
  void disarm() noexcept { callback_.reset(); }

 private:
  Context ctx_;
  std::atomic<bool> finished_{false};
  std::unique_ptr<WaitBase> self_;
  std::optional<ScopedCallback<FinishOnEnd>> callback_;
};

inline void FinishOnEnd::operator()() const noexcept { wait->finish(wait->context().err()); }

template <class Handler>
class Wait final : public WaitBase {
 public:
  Wait(Context ctx, Handler handler)
      : WaitBase(std::move(ctx)),
        handler_(std::move(handler)),
        work_(::boost::asio::prefer(
            ::boost::asio::any_io_executor(::boost::asio::get_associated_executor(handler_)),
            ::boost::asio::execution::outstanding_work.tracked)) {}

  static void start(Context ctx, Handler handler) {
    auto owned = std::make_unique<Wait>(std::move(ctx), std::move(handler));
    Wait* wait = owned.get();
    auto slot = ::boost::asio::get_associated_cancellation_slot(wait->handler_);
    if (slot.is_connected()) {
      slot.template emplace<OnCancel>(OnCancel{wait});
    }
    wait->arm(std::move(owned));
  }

 private:
  // Asio's side: runs on the executor inside the emit.
  struct OnCancel {
    Wait* wait;
    void operator()(::boost::asio::cancellation_type_t type) const noexcept {
      if ((type &
           (::boost::asio::cancellation_type::terminal | ::boost::asio::cancellation_type::partial |
            ::boost::asio::cancellation_type::total)) != ::boost::asio::cancellation_type::none) {
        wait->finish(::boost::system::error_code(::boost::asio::error::operation_aborted));
      }
    }
  };

  void post_completion(std::unique_ptr<WaitBase> self, std::error_code ec) noexcept override {
    ::boost::asio::any_io_executor work = work_;
    try {
      ::boost::asio::post(work, [self = std::shared_ptr<WaitBase>(std::move(self)), ec]() {
        static_cast<Wait*>(self.get())->complete(ec);
      });
    } catch (...) {
      // Allocation failed: the handler cannot be run; it is destroyed with the wait.
    }
  }

  void complete(std::error_code ec) {
    // On the handler's executor: the slot may be touched, and after this the slot
    // handler cannot run any more.
    auto slot = ::boost::asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.clear();
    disarm();
    Handler handler = std::move(handler_);
    work_ = ::boost::asio::any_io_executor();
    std::move(handler)(ec);
  }

  Handler handler_;
  ::boost::asio::any_io_executor work_;  // keeps the executor's run() going while pending
};

}  // namespace detail

/// An asynchronous operation (signature void(std::error_code)) that completes when
/// ctx ends, with ctx.err(); or, if the handler's cancellation slot gets a terminal,
/// partial or total cancellation first, with operation_aborted. A context that has
/// already ended completes it at once (posted, never inline).
/// Thread safety: ctx may end on any thread; the handler runs on its associated
/// executor (system_executor if it has none) and the slot is used on that executor.
/// Blocking: never. Cost: one allocation for the operation, one post on completion.
/// Ownership: the operation keeps the executor's work count up while pending, so
/// run() does not return while a wait on a context that never ends is pending.
/// Errors: std::bad_alloc from the initiation.
template <class Token>
auto async_wait(const Context& ctx, Token&& token) {
  return ::boost::asio::async_initiate<Token, void(std::error_code)>(
      [](auto handler, Context c) {
        detail::Wait<std::decay_t<decltype(handler)>>::start(std::move(c), std::move(handler));
      },
      token, ctx);
}

/// Completes when ctx ends and returns ctx.err(); if the awaiting coroutine is
/// cancelled first, returns operation_aborted (as std::error_code) instead of
/// throwing. Rules and cost of async_wait.
inline ::boost::asio::awaitable<std::error_code> wait(Context ctx) {
  co_return co_await async_wait(ctx, ::boost::asio::use_awaitable);
}

/// Runs op (on the awaiting coroutine's executor, as a child coroutine) so that the
/// operations it awaits are cancelled (terminal) when ctx ends or when the awaiting
/// coroutine is cancelled; returns op's result. Exceptions from op, including the
/// system_error(operation_aborted) an awaited operation throws when cancelled, reach
/// the caller unchanged: use outcome(ctx, e.code()) to turn them into ctx.err().
/// T must be default-constructible (co_spawn's rule). Blocking: never. Cost: one
/// bridge (one allocation) and one co_spawn. Errors: whatever op throws.
template <class T>
::boost::asio::awaitable<T> with_context(Context ctx, ::boost::asio::awaitable<T> op) {
  auto executor = co_await ::boost::asio::this_coro::executor;
  auto outer = co_await ::boost::asio::this_coro::cancellation_state;
  auto bridge = detail::make_bridge(ctx, executor);
  // The awaiting coroutine's own cancellation goes on to op: during the co_await
  // below nothing else uses this coroutine's slot (the operation is bound to the bridge).
  auto outer_slot = outer.slot();
  if (outer_slot.is_connected()) {
    outer_slot.assign([bridge](::boost::asio::cancellation_type_t type) { bridge->emit(type); });
  }
  struct ClearOnExit {
    ::boost::asio::cancellation_slot slot;
    ~ClearOnExit() {
      if (slot.is_connected()) slot.clear();
    }
  } clear_on_exit{outer_slot};
  co_return co_await ::boost::asio::co_spawn(
      executor, std::move(op), detail::bind_guarded(bridge, ::boost::asio::use_awaitable));
}

}  // namespace ctxpp::asio
