// Consumer of an installed ctxpp::asio: a timer wait stopped by its context's deadline.
#include <ctxpp/asio/cancellation.hpp>
#include <ctxpp/asio/error.hpp>
#include <ctxpp/context.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdio>

int main() {
  ::boost::asio::io_context io;
  ::boost::asio::steady_timer timer(io, std::chrono::seconds(30));
  // Named members, not structured bindings: clang 14 cannot capture those in a lambda.
  auto deadline = ctxpp::with_timeout(ctxpp::background(), std::chrono::milliseconds(10));
  const ctxpp::Context ctx = deadline.ctx;
  std::error_code result;
  timer.async_wait(ctxpp::asio::cancel_on(
      ctx, io.get_executor(),
      [&](::boost::system::error_code ec) { result = ctxpp::asio::outcome(ctx, ec); }));
  io.run_for(std::chrono::seconds(10));
  deadline.cancel();
  if (result != ctxpp::errc::deadline_exceeded) {
    std::fprintf(stderr, "unexpected outcome: %s\n", result.message().c_str());
    return 1;
  }
  std::puts("ctxpp::asio consumer ok");
  return 0;
}
