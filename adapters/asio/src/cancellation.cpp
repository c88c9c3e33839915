// Context -> Asio cancellation through a posted emit, and Asio -> context through a
// slot handler that cancels a child.
#include "ctxpp/asio/cancellation.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include "ctxpp/asio/error.hpp"

namespace ctxpp::asio {

std::error_code outcome(const Context& ctx, const ::boost::system::error_code& ec) noexcept {
  if (ec == ::boost::asio::error::operation_aborted && ctx.done()) return ctx.err();
  return ec;
}

namespace detail {

void PostEmit::operator()() const noexcept {
  // Runs in the cancelling thread, or inline in arm(). The state may be in its
  // destructor (the last owner let go on the executor): then lock() is empty and
  // there is nothing left to cancel.
  std::shared_ptr<BridgeState> self = state->weak_from_this().lock();
  if (!self) return;
  self->post_emit();
}

void BridgeState::arm() { callback_.emplace(ctx_, PostEmit{this}); }

std::uint64_t BridgeState::start() {
  // An operation bound after the end would miss the emit that already ran.
  if (ctx_.done()) post_emit();
  return ++generation_;
}

void BridgeState::finish(std::uint64_t generation) noexcept {
  if (generation == generation_) signal_.slot().clear();
}

void BridgeState::post_emit() noexcept {
  try {
    ::boost::asio::post(executor_, [self = shared_from_this()] {
      self->emit(::boost::asio::cancellation_type::terminal);
    });
  } catch (...) {
    // Only allocation can fail here; the cancel path cannot report it. The operation
    // then runs to its own end, and outcome() still reports ctx.err() if it is aborted.
  }
}

std::shared_ptr<BridgeState> make_bridge(const Context& ctx,
                                         ::boost::asio::any_io_executor executor) {
  auto state = std::make_shared<BridgeState>(ctx, std::move(executor));
  state->arm();  // after make_shared: an inline run needs weak_from_this()
  return state;
}

}  // namespace detail

WithCancel<Context, CancelFunc> context_from(const Context& parent,
                                             ::boost::asio::cancellation_slot slot,
                                             ::boost::asio::cancellation_type_t filter) {
  // The cause lives on an intermediate node so that callers get a plain CancelFunc.
  auto holder = with_cancel_cause(parent);
  auto child = with_cancel(holder.ctx);
  if (slot.is_connected()) {
    slot.assign(
        [cancel = std::move(holder.cancel), filter](::boost::asio::cancellation_type_t type) {
          if ((type & filter) != ::boost::asio::cancellation_type::none) {
            cancel(make_error_code(errc::asio_cancellation));
          }
        });
  }
  return child;
}

}  // namespace ctxpp::asio
