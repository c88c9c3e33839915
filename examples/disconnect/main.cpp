// examples/disconnect — one request, five kinds of downstream work, one client that hangs
// up. Shows every way ctxpp delivers the signal (a polling loop, a blocking read
// interrupted by a ScopedCallback, a coroutine, an after_func cleanup, a pollable fd) and
// prints how long each took to stop after cancel(), then checks that nothing lingers.
// Run: build/release/examples/ctxpp-example-disconnect [requests]
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <ctxpp/after_func.hpp>
#include <ctxpp/context.hpp>
#include <ctxpp/coroutine.hpp>
#include <ctxpp/scoped_callback.hpp>

namespace {

using std::chrono::microseconds;
using Clock = ctxpp::clock;

constexpr ctxpp::Key<std::string> user_key{"user"};

// A fire-and-forget coroutine: starts eagerly, frees itself at the end.
struct Detached {
  struct promise_type {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

enum Component { kDbLoop, kUpstreamRead, kCoroutine, kAfterFunc, kPollFd, kComponents };
constexpr std::array<const char*, kComponents> kNames = {
    "db loop (checks done())", "upstream read (ScopedCallback)", "coroutine (co_await)",
    "cleanup (after_func)", "poll() on done_fd"};

struct Timeline {
  Clock::time_point cancelled_at;
  std::array<std::atomic<std::int64_t>, kComponents> stopped_at_ns{};
  void stop(Component c) {
    stopped_at_ns[c].store(Clock::now().time_since_epoch().count(), std::memory_order_release);
  }
  double micros(Component c) const {
    const Clock::time_point t{Clock::duration(stopped_at_ns[c].load(std::memory_order_acquire))};
    return std::chrono::duration<double, std::micro>(t - cancelled_at).count();
  }
};

Detached watch(ctxpp::Context ctx, Timeline& timeline) {
  (void)co_await ctxpp::cancelled(ctx);
  timeline.stop(kCoroutine);
}

// Serves one request whose client disconnects after `work`. Returns false on a leak.
bool serve_one(const ctxpp::Context& server, Timeline& timeline, bool print) {
  auto [request, disconnect] = ctxpp::with_cancel_cause(server);
  const ctxpp::Context ctx = ctxpp::with_value(request, user_key, std::string("alice"));

  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sockets) != 0) return false;

  std::atomic<int> started{0};
  // 1. A CPU loop that checks the context between steps.
  std::thread db([&] {
    started.fetch_add(1);
    std::uint64_t rows = 0;
    while (!ctx.done()) ++rows;
    timeline.stop(kDbLoop);
  });
  // 2. A blocking read that only a shutdown() can interrupt.
  std::thread upstream([&] {
    ctxpp::ScopedCallback interrupt(ctx, [&]() noexcept { ::shutdown(sockets[0], SHUT_RDWR); });
    started.fetch_add(1);
    char byte = 0;
    (void)::read(sockets[0], &byte, 1);
    timeline.stop(kUpstreamRead);
  });
  // 3. A coroutine suspended until the request ends.
  watch(ctx, timeline);
  // 4. Cleanup off the cancelling thread.
  auto cleanup = ctxpp::after_func(ctx, [&] { timeline.stop(kAfterFunc); });
  // 5. An event loop that polls the context's fd next to its sockets.
  std::error_code fd_error;
  const int done_fd = ctx.done_fd(fd_error);
  std::thread loop([&] {
    started.fetch_add(1);
    pollfd fds{done_fd, POLLIN, 0};
    while (::poll(&fds, 1, 10000) == 0) {
    }
    timeline.stop(kPollFd);
  });

  while (started.load() < 3) std::this_thread::yield();
  // ctxpp-audit: ignore CTX004 — the demo waits 2 ms for the read to block, on purpose
  std::this_thread::sleep_for(std::chrono::milliseconds(2));

  timeline.cancelled_at = Clock::now();
  disconnect(std::make_error_code(std::errc::connection_reset));  // the client hung up

  db.join();
  upstream.join();
  loop.join();
  const bool cleaned = cleanup.wait_for(std::chrono::seconds(10));
  ::close(sockets[0]);
  ::close(sockets[1]);

  if (print) {
    std::printf("request of user %s ended: err=\"%s\", cause=\"%s\"\n",
                ctx.value(user_key)->c_str(), ctx.err().message().c_str(),
                ctx.cause().message().c_str());
    std::printf("%-34s %s\n", "component", "stopped after cancel()");
    for (int c = 0; c < kComponents; ++c) {
      std::printf("%-34s %10.1f us\n", kNames[c], timeline.micros(static_cast<Component>(c)));
    }
  }
  return cleaned && fd_error.value() == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int requests = argc > 1 ? std::max(1, std::atoi(argv[1])) : 200;
  auto [server, shutdown] = ctxpp::with_cancel(ctxpp::background());

  Timeline first;
  bool ok = serve_one(server, first, true);

  // Many more, to show the latencies are not a lucky first run, and that nothing grows.
  std::vector<double> worst(kComponents, 0.0);
  for (int i = 1; i < requests && ok; ++i) {
    Timeline timeline;
    ok = serve_one(server, timeline, false);
    for (int c = 0; c < kComponents; ++c) {
      worst[c] = std::max(worst[c], timeline.micros(static_cast<Component>(c)));
    }
  }
  std::printf("\nworst over %d requests:\n", requests);
  for (int c = 0; c < kComponents; ++c) std::printf("%-34s %10.1f us\n", kNames[c], worst[c]);

  // A request with a deadline instead of a disconnect.
  auto [deadline_request, cancel_deadline] =
      ctxpp::with_timeout(server, std::chrono::milliseconds(5));
  deadline_request.wait();
  std::printf("\nrequest with a 5 ms budget: %s\n", deadline_request.err().message().c_str());
  cancel_deadline();

  const std::size_t lingering = ctxpp::detail::child_count(server);
  std::printf("requests still linked under the server context: %zu\n", lingering);
  shutdown();
  if (!ok || lingering != 0) {
    std::printf("FAILED\n");
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
