// examples/basic — the core in one page: a request context with a deadline, a value,
// a worker that checks done() in its loop, and a callback that fires on cancellation.
#include <ctxpp/after_func.hpp>
#include <ctxpp/context.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace {

constexpr ctxpp::Key<std::string> request_id_key{"request_id"};

// Work "on behalf of" ctx: stops as soon as ctx is done, reports why.
std::error_code crunch(const ctxpp::Context& ctx, long& steps) {
  while (!ctx.done()) {
    ++steps;
    std::this_thread::yield();
  }
  return ctx.err();
}

}  // namespace

int main() {
  using namespace std::chrono_literals;

  // 1. A request with a 50 ms budget, carrying its id.
  auto [request, cancel_request] = ctxpp::with_timeout(ctxpp::background(), 50ms);
  ctxpp::Context ctx = ctxpp::with_value(request, request_id_key, std::string("req-42"));

  std::atomic<bool> notified{false};
  auto handle = ctxpp::after_func(ctx, [&notified] { notified.store(true); });

  long steps = 0;
  const std::error_code why = crunch(ctx, steps);
  std::printf("%s: stopped after %ld steps: %s\n", ctx.value(request_id_key)->c_str(), steps,
              why.message().c_str());

  // 2. A child cancelled explicitly: the parent is unaffected.
  auto [parent, cancel_parent] = ctxpp::with_cancel(ctxpp::background());
  auto [child, cancel_child] = ctxpp::with_cancel(parent);
  cancel_child();
  std::printf("child done=%d (%s), parent done=%d\n", child.done() ? 1 : 0,
              child.err().message().c_str(), parent.done() ? 1 : 0);
  cancel_parent();

  // after_func runs on another thread: wait for it with a bound, never sleep blindly.
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (!notified.load() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  (void)handle;
  cancel_request();

  const bool ok = why == ctxpp::errc::deadline_exceeded && child.done() && notified.load();
  std::printf("%s\n", ok ? "basic example: ok" : "basic example: FAILED");
  return ok ? 0 : 1;
}
