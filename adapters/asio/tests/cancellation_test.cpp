// Context -> Asio (cancel_on, CancellationBridge, outcome) and Asio -> context
// (context_from) on real timers and signals.
#include "ctxpp/asio/cancellation.hpp"

#include <gtest/gtest.h>

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <thread>

#include "ctxpp/asio/error.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
// Contexts are unpacked into plain variables, not structured bindings, because
// clang 14 cannot capture a structured binding in a lambda.
using ctxpp_test::describe;

// Runs io until it has no more work, within a bound a passing test never nears.
void run_bounded(::boost::asio::io_context& io) {
  io.run_for(ctxpp_test::kLongBound);
  ASSERT_TRUE(io.stopped()) << "io_context still had work" << ctxpp_test::describe_threads();
}

TEST(CancelOn, TimerWaitStopsWhenContextIsCanceled) {
  ::boost::asio::io_context io;
  ::boost::asio::steady_timer timer(io, 60s);
  auto made = ctxpp::with_cancel(ctxpp::background());
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  std::error_code result;
  bool completed = false;
  timer.async_wait(
      ctxpp::asio::cancel_on(ctx, io.get_executor(), [&](::boost::system::error_code ec) {
        result = ctxpp::asio::outcome(ctx, ec);
        completed = true;
      }));
  const auto start = std::chrono::steady_clock::now();
  std::thread canceller([cancel = cancel] {
    std::this_thread::sleep_for(20ms);
    cancel();
  });
  run_bounded(io);
  canceller.join();
  EXPECT_TRUE(completed);
  EXPECT_EQ(result, ctxpp::errc::canceled) << describe(result);
  EXPECT_EQ(result, std::errc::operation_canceled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(CancelOn, DeadlineStopsTimerWaitWithDeadlineExceeded) {
  ::boost::asio::io_context io;
  ::boost::asio::steady_timer timer(io, 60s);
  auto made = ctxpp::with_timeout(ctxpp::background(), 30ms);
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  std::error_code result;
  timer.async_wait(ctxpp::asio::cancel_on(
      ctx, io.get_executor(),
      [&](::boost::system::error_code ec) { result = ctxpp::asio::outcome(ctx, ec); }));
  run_bounded(io);
  EXPECT_EQ(result, ctxpp::errc::deadline_exceeded) << describe(result);
}

TEST(CancelOn, ContextEndedBeforeTheOperationStartsCancelsIt) {
  ::boost::asio::io_context io;
  ::boost::asio::steady_timer timer(io, 60s);
  auto made = ctxpp::with_cancel(ctxpp::background());
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  cancel();
  std::error_code result;
  timer.async_wait(ctxpp::asio::cancel_on(
      ctx, io.get_executor(),
      [&](::boost::system::error_code ec) { result = ctxpp::asio::outcome(ctx, ec); }));
  run_bounded(io);
  EXPECT_EQ(result, ctxpp::errc::canceled) << describe(result);
}

TEST(CancelOn, OperationThatCompletesIsNotReachedByALaterCancel) {
  ::boost::asio::io_context io;
  auto timer = std::make_unique<::boost::asio::steady_timer>(io, 1ms);
  auto made = ctxpp::with_cancel(ctxpp::background());
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  std::error_code result = ctxpp::errc::canceled;
  timer->async_wait(ctxpp::asio::cancel_on(
      ctx, io.get_executor(),
      [&](::boost::system::error_code ec) { result = ctxpp::asio::outcome(ctx, ec); }));
  run_bounded(io);
  EXPECT_FALSE(result) << describe(result);
  timer.reset();  // the I/O object is gone; a late emit must not reach it
  cancel();
  io.restart();
  run_bounded(io);
}

TEST(CancellationBridge, ServesOperationsOneAfterAnother) {
  ::boost::asio::io_context io;
  ::boost::asio::steady_timer timer(io);
  auto made = ctxpp::with_cancel(ctxpp::background());
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  ctxpp::asio::CancellationBridge bridge(ctx, io.get_executor());
  std::error_code first = ctxpp::errc::canceled;
  std::error_code second;
  timer.expires_after(1ms);
  timer.async_wait(bridge.bind([&](::boost::system::error_code ec) {
    first = ctxpp::asio::outcome(ctx, ec);
    timer.expires_after(60s);
    timer.async_wait(bridge.bind(
        [&](::boost::system::error_code ec2) { second = ctxpp::asio::outcome(ctx, ec2); }));
    cancel();  // from inside the executor: the emit is still posted, never inline
  }));
  run_bounded(io);
  EXPECT_FALSE(first) << describe(first);
  EXPECT_EQ(second, ctxpp::errc::canceled) << describe(second);
}

TEST(Outcome, KeepsOtherErrorsAndSuccess) {
  auto made = ctxpp::with_cancel(ctxpp::background());
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  const ::boost::system::error_code aborted = ::boost::asio::error::operation_aborted;
  // Aborted by someone else while ctx is live: stays operation_aborted.
  EXPECT_EQ(ctxpp::asio::outcome(ctx, aborted), std::error_code(aborted));
  cancel();
  EXPECT_EQ(ctxpp::asio::outcome(ctx, aborted), ctxpp::errc::canceled);
  EXPECT_FALSE(ctxpp::asio::outcome(ctx, {}));
  const ::boost::system::error_code refused = ::boost::asio::error::connection_refused;
  EXPECT_EQ(ctxpp::asio::outcome(ctx, refused), std::error_code(refused));
}

TEST(ContextFrom, EmitOnTheSlotEndsTheContext) {
  ::boost::asio::cancellation_signal signal;
  auto made = ctxpp::asio::context_from(ctxpp::background(), signal.slot());
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  EXPECT_FALSE(ctx.done());
  signal.emit(::boost::asio::cancellation_type::terminal);
  EXPECT_TRUE(ctx.done());
  EXPECT_EQ(ctx.err(), ctxpp::errc::canceled);
  EXPECT_EQ(ctx.cause(), ctxpp::asio::errc::asio_cancellation) << describe(ctx.cause());
  signal.slot().clear();
}

TEST(ContextFrom, FilterIgnoresOtherTypesAndCancelFuncStillWorks) {
  ::boost::asio::cancellation_signal signal;
  auto made = ctxpp::asio::context_from(ctxpp::background(), signal.slot(),
                                        ::boost::asio::cancellation_type::terminal);
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  signal.emit(::boost::asio::cancellation_type::partial);
  EXPECT_FALSE(ctx.done());
  std::thread other([cancel = cancel] { cancel(); });  // CancelFunc from any thread
  other.join();
  EXPECT_EQ(ctx.err(), ctxpp::errc::canceled);
  EXPECT_EQ(ctx.cause(), ctxpp::errc::canceled) << describe(ctx.cause());
  signal.slot().clear();
}

TEST(ContextFrom, ParentEndEndsTheChild) {
  ::boost::asio::cancellation_signal signal;
  auto made_parent = ctxpp::with_timeout(ctxpp::background(), 10ms);
  const ctxpp::Context parent = made_parent.ctx;
  auto made = ctxpp::asio::context_from(parent, signal.slot());
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  EXPECT_TRUE(ctx.wait_for(ctxpp_test::kLongBound));
  EXPECT_EQ(ctx.err(), ctxpp::errc::deadline_exceeded);
  signal.slot().clear();
}

}  // namespace
