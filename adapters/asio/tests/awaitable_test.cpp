// Coroutines under a context: wait() and async_wait(), and with_context() stopping
// the operations an awaitable is waiting on.
#include "ctxpp/asio/awaitable.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <thread>

#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
// Contexts are unpacked into plain variables, not structured bindings, because
// clang 14 cannot capture a structured binding in a lambda.
using ctxpp_test::describe;
namespace net = ::boost::asio;

void run_bounded(net::io_context& io) {
  io.run_for(ctxpp_test::kLongBound);
  ASSERT_TRUE(io.stopped()) << "io_context still had work" << ctxpp_test::describe_threads();
}

TEST(Wait, CompletesWhenTheContextIsCanceledOnAnotherThread) {
  net::io_context io;
  auto made = ctxpp::with_cancel(ctxpp::background());
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  std::error_code got;
  bool done = false;
  net::co_spawn(
      io,
      [&, c = ctx]() -> net::awaitable<void> {
        got = co_await ctxpp::asio::wait(c);
        done = true;
      },
      net::detached);
  std::thread canceller([cancel = cancel] {
    std::this_thread::sleep_for(20ms);
    cancel();
  });
  run_bounded(io);
  canceller.join();
  EXPECT_TRUE(done);
  EXPECT_EQ(got, ctxpp::errc::canceled) << describe(got);
}

TEST(Wait, ContextAlreadyEndedCompletesAtOnceWithItsError) {
  net::io_context io;
  auto made = ctxpp::with_timeout(ctxpp::background(), 0ms);
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  std::error_code got;
  net::co_spawn(
      io, [&, c = ctx]() -> net::awaitable<void> { got = co_await ctxpp::asio::wait(c); },
      net::detached);
  run_bounded(io);
  EXPECT_EQ(got, ctxpp::errc::deadline_exceeded) << describe(got);
}

TEST(Wait, AsioCancellationCompletesItWithOperationAborted) {
  net::io_context io;
  auto made = ctxpp::with_cancel(ctxpp::background());
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  net::cancellation_signal signal;
  std::error_code got;
  net::co_spawn(
      io, [&, c = ctx]() -> net::awaitable<void> { got = co_await ctxpp::asio::wait(c); },
      net::bind_cancellation_slot(signal.slot(), net::detached));
  net::post(io, [&] { signal.emit(net::cancellation_type::terminal); });
  run_bounded(io);
  EXPECT_EQ(got, std::error_code(::boost::system::error_code(net::error::operation_aborted)))
      << describe(got);
  EXPECT_FALSE(ctx.done());
}

TEST(AsyncWait, CallbackHandlerRunsOnItsExecutor) {
  net::io_context io;
  auto made = ctxpp::with_timeout(ctxpp::background(), 20ms);
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  std::error_code got;
  std::thread::id ran_on;
  ctxpp::asio::async_wait(ctx, net::bind_executor(io, [&](std::error_code ec) {
                            got = ec;
                            ran_on = std::this_thread::get_id();
                          }));
  run_bounded(io);
  EXPECT_EQ(got, ctxpp::errc::deadline_exceeded) << describe(got);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

net::awaitable<::boost::system::error_code> long_timer_wait() {
  net::steady_timer timer(co_await net::this_coro::executor, 60s);
  auto [ec] = co_await timer.async_wait(net::as_tuple(net::use_awaitable));
  co_return ec;
}

TEST(WithContext, StopsTheAwaitedOperationWhenTheContextEnds) {
  net::io_context io;
  auto made = ctxpp::with_cancel(ctxpp::background());
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  std::error_code got;
  net::co_spawn(
      io,
      [&, c = ctx]() -> net::awaitable<void> {
        auto ec = co_await ctxpp::asio::with_context(c, long_timer_wait());
        got = ctxpp::asio::outcome(c, ec);
      },
      net::detached);
  std::thread canceller([cancel = cancel] {
    std::this_thread::sleep_for(20ms);
    cancel();
  });
  run_bounded(io);
  canceller.join();
  EXPECT_EQ(got, ctxpp::errc::canceled) << describe(got);
}

TEST(WithContext, DeadlineStopsAnAwaitableThatThrows) {
  net::io_context io;
  auto made = ctxpp::with_timeout(ctxpp::background(), 20ms);
  const ctxpp::Context ctx = made.ctx;
  const auto cancel = made.cancel;
  std::error_code got;
  net::co_spawn(
      io,
      [&, c = ctx]() -> net::awaitable<void> {
        try {
          co_await ctxpp::asio::with_context(c, []() -> net::awaitable<void> {
            net::steady_timer timer(co_await net::this_coro::executor, 60s);
            co_await timer.async_wait(net::use_awaitable);  // throws when cancelled
          }());
        } catch (const ::boost::system::system_error& e) {
          got = ctxpp::asio::outcome(c, e.code());
        }
      },
      net::detached);
  run_bounded(io);
  EXPECT_EQ(got, ctxpp::errc::deadline_exceeded) << describe(got);
}

TEST(WithContext, TheAwaitingCoroutinesCancellationReachesTheOperation) {
  net::io_context io;
  net::cancellation_signal signal;
  std::error_code got;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        auto ec = co_await ctxpp::asio::with_context(ctxpp::background(), long_timer_wait());
        got = ec;
      },
      net::bind_cancellation_slot(signal.slot(), net::detached));
  net::steady_timer later(io, 20ms);
  later.async_wait(
      [&](::boost::system::error_code) { signal.emit(net::cancellation_type::terminal); });
  run_bounded(io);
  EXPECT_EQ(got, std::error_code(::boost::system::error_code(net::error::operation_aborted)))
      << describe(got);
}

TEST(WithContext, ReturnsTheResultWhenNothingEnds) {
  net::io_context io;
  int got = 0;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        got = co_await ctxpp::asio::with_context(ctxpp::background(),
                                                 []() -> net::awaitable<int> { co_return 42; }());
      },
      net::detached);
  run_bounded(io);
  EXPECT_EQ(got, 42);
}

}  // namespace
