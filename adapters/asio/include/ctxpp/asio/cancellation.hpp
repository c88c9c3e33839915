// ctxpp/asio/cancellation.hpp — contexts and Asio per-operation cancellation, both ways.
// Context -> Asio: bind a context to an operation's cancellation slot, so the
// operation completes with operation_aborted when the context ends, and map that to
// the context's error with outcome(). The context may end on any thread, but Asio's
// cancellation_signal is not thread-safe, so the adapter never emits from the
// cancelling thread: a ctxpp::ScopedCallback posts the emit to the operation's
// executor (give a strand when the operation's handlers run on one).
// Asio -> context: context_from() turns a cancellation slot into a child context.
// Example:
//   ::boost::asio::steady_timer timer(io, std::chrono::seconds(5));
//   timer.async_wait(ctxpp::asio::cancel_on(ctx, io.get_executor(),
//       [&](::boost::system::error_code ec) { result = ctxpp::asio::outcome(ctx, ec); }));
//   // ctx canceled -> result == ctxpp::errc::canceled; deadline -> deadline_exceeded
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/consign.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>

#include "ctxpp/context.hpp"
#include "ctxpp/scoped_callback.hpp"

namespace ctxpp::asio {

/// What an operation run under ctx really ended with: ctx.err() (errc::canceled or
/// errc::deadline_exceeded) when ec is operation_aborted and ctx has ended, otherwise
/// ec itself as a std::error_code ({} on success, even if ctx ended meanwhile: the
/// work was done). Thread safety: any thread. Cost: two loads. Errors: none.
std::error_code outcome(const Context& ctx, const ::boost::system::error_code& ec) noexcept;

namespace detail {

class BridgeState;

// The ScopedCallback function of a bridge: posts the emit to the executor.
struct PostEmit {
  BridgeState* state;
  void operator()() const noexcept;
};

// The signal, the executor it must be emitted on, and the registration on the context.
// Shared by the bridge, by the guards of bound operations and by posted emits, so a
// late emit never touches freed memory.
class BridgeState : public std::enable_shared_from_this<BridgeState> {
 public:
  BridgeState(Context ctx, ::boost::asio::any_io_executor executor) noexcept
      : ctx_(std::move(ctx)), executor_(std::move(executor)) {}
  BridgeState(const BridgeState&) = delete;
  BridgeState& operator=(const BridgeState&) = delete;

  // Registers on the context; posts an emit at once if it has already ended.
  void arm();
  // Starts one operation's binding (executor thread); its generation, for finish().
  std::uint64_t start();
  // The operation of this generation has completed: disconnects its handler, so a
  // later emit cannot reach an operation (or I/O object) that is gone.
  void finish(std::uint64_t generation) noexcept;
  // Posts an emit of terminal cancellation to the executor. Any thread.
  void post_emit() noexcept;
  // Emits now. Executor thread only.
  void emit(::boost::asio::cancellation_type_t type) { signal_.emit(type); }

  ::boost::asio::cancellation_slot slot() noexcept { return signal_.slot(); }
  const Context& context() const noexcept { return ctx_; }
  const ::boost::asio::any_io_executor& executor() const noexcept { return executor_; }

 private:
  Context ctx_;
  ::boost::asio::any_io_executor executor_;
  ::boost::asio::cancellation_signal signal_;
  std::uint64_t generation_ = 0;
  std::optional<ScopedCallback<PostEmit>> callback_;  // last: deregisters first
};

std::shared_ptr<BridgeState> make_bridge(const Context& ctx,
                                         ::boost::asio::any_io_executor executor);

// Consigned to a bound operation's handler: disconnects the slot once the handler has
// run (or is destroyed unrun), unless a newer operation was bound meanwhile.
class SlotGuard {
 public:
  SlotGuard(std::shared_ptr<BridgeState> state, std::uint64_t generation) noexcept
      : state_(std::move(state)), generation_(generation) {}
  SlotGuard(SlotGuard&& other) noexcept = default;
  SlotGuard& operator=(SlotGuard&&) = delete;
  SlotGuard(const SlotGuard&) = delete;
  SlotGuard& operator=(const SlotGuard&) = delete;
  ~SlotGuard() {
    if (state_) state_->finish(generation_);
  }

 private:
  std::shared_ptr<BridgeState> state_;
  std::uint64_t generation_;
};

template <class Token>
auto bind_guarded(const std::shared_ptr<BridgeState>& state, Token&& token) {
  const std::uint64_t generation = state->start();
  return ::boost::asio::bind_cancellation_slot(
      state->slot(),
      ::boost::asio::consign(std::forward<Token>(token), SlotGuard(state, generation)));
}

}  // namespace detail

/// Binds one context to the operations started through bind(), one at a time: when
/// the context ends, the operation in progress completes with operation_aborted
/// (terminal cancellation, emitted on executor). An operation bound after the context
/// ended is cancelled as soon as it starts.
/// Thread safety: the context may end on any thread; construct, bind() and destroy
/// on the executor's thread (inside its handlers, or before it runs), like the
/// operations themselves. Executor: the one the bound operations complete on (a
/// strand if they use one).
/// Blocking: never; the destructor may wait for a cancel callback running on another
/// thread (it only posts). Cost: one allocation; one post when the context ends.
/// Ownership: not copyable; bound operations keep the shared state alive, so the bridge
/// may go before they complete. Errors: std::bad_alloc from the constructor; an emit
/// that cannot be posted (allocation failure) is dropped.
class CancellationBridge {
 public:
  CancellationBridge(const Context& ctx, ::boost::asio::any_io_executor executor)
      : state_(detail::make_bridge(ctx, std::move(executor))) {}
  CancellationBridge(const CancellationBridge&) = delete;
  CancellationBridge& operator=(const CancellationBridge&) = delete;

  /// The completion token token, bound to this bridge's cancellation slot. Use the
  /// result for exactly one operation, started right away.
  template <class Token>
  auto bind(Token&& token) {
    return detail::bind_guarded(state_, std::forward<Token>(token));
  }

  const Context& context() const noexcept { return state_->context(); }

 private:
  std::shared_ptr<detail::BridgeState> state_;
};

/// token bound to ctx for a single operation whose handlers run on executor: the
/// operation completes with operation_aborted when ctx ends (see CancellationBridge,
/// whose rules apply). Start the operation at once, on executor's thread.
/// Cost: one allocation per call. Errors: std::bad_alloc.
template <class Executor, class Token>
auto cancel_on(const Context& ctx, const Executor& executor, Token&& token) {
  return detail::bind_guarded(detail::make_bridge(ctx, ::boost::asio::any_io_executor(executor)),
                              std::forward<Token>(token));
}

/// A child of parent that also ends, with cause errc::asio_cancellation (err()
/// errc::canceled), when a cancellation of a type in filter is emitted on slot.
/// The slot's handler is replaced (assign). Thread rules: the slot handler runs where
/// the signal is emitted (the executor); call this and clear the slot on that thread
/// too. The CancelFunc is thread-safe, as always. Clear the slot (or destroy its
/// signal) when the work is over: the handler holds a reference to the context.
/// Do not pass a coroutine's this_coro::cancellation_state slot: the coroutine's next
/// co_await replaces the handler; use with_context() or a slot of your own there.
/// A disconnected slot gives a plain with_cancel child.
/// Cost: two allocations (the child and the node that holds the cause).
/// Errors: std::bad_alloc.
WithCancel<Context, CancelFunc> context_from(
    const Context& parent, ::boost::asio::cancellation_slot slot,
    ::boost::asio::cancellation_type_t filter = ::boost::asio::cancellation_type::terminal |
                                                ::boost::asio::cancellation_type::partial |
                                                ::boost::asio::cancellation_type::total);

}  // namespace ctxpp::asio
