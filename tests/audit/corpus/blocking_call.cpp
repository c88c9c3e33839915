// CTX004 blocking-call.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <ctxpp/blocking.hpp>
#include <ctxpp/context.hpp>
#include <ctxpp/scoped_callback.hpp>

namespace corpus {

using namespace std::chrono_literals;

long reads(const ctxpp::Context& ctx, int fd, char* buf) {
  if (ctx.done()) return -1;
  return ::read(fd, buf, 16);  // expect: CTX004
}

void sleeps(const ctxpp::Context& ctx) {
  if (ctx.done()) return;
  std::this_thread::sleep_for(1s);  // expect: CTX004
}

int polls(const ctxpp::Context& ctx, int fd) {
  pollfd p{fd, POLLIN, 0};
  const int bounded = ::poll(&p, 1, 100);
  if (ctx.done()) return bounded;
  return ::poll(&p, 1, -1);  // expect: CTX004
}

int waits(const ctxpp::Context& ctx, std::future<int>& f, std::condition_variable& cv,
          std::mutex& m, bool& ready) {
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return ready; });  // expect: CTX004
  cv.wait_for(lock, 1ms);
  if (ctx.done()) return 0;
  return f.get();  // expect: CTX004
}

void joins(const ctxpp::Context& ctx, std::thread& t) {
  if (!ctx.done()) t.join();  // expect: CTX004
}

long wrapped(const ctxpp::Context& ctx, int fd) {
  auto r = ctxpp::call_blocking(
      ctx,
      [fd] {
        char c = 0;
        return ::read(fd, &c, 1);
      },
      [fd] { ::shutdown(fd, SHUT_RDWR); });
  return r ? *r : -1;
}

long wrapped_via_variable(const ctxpp::Context& ctx, int fd) {
  auto fn = [fd] {
    char c = 0;
    return ::recv(fd, &c, 1, 0);
  };
  auto r = ctxpp::call_blocking(ctx, fn);
  return r ? *r : -1;
}

// The callback shuts the socket down when ctx ends, so the read returns.
long with_callback(const ctxpp::Context& ctx, int fd) {
  ctxpp::ScopedCallback on_end(ctx, [fd]() noexcept { ::shutdown(fd, SHUT_RDWR); });
  char c = 0;
  return ::read(fd, &c, 1);
}

// A short sleep in a loop that checks ctx each turn is a polling step.
void polling(const ctxpp::Context& ctx) {
  while (!ctx.done()) std::this_thread::sleep_for(1ms);
}

// The thread body blocks its own thread, and sees no context.
void starts_thread(const ctxpp::Context& ctx) {
  if (ctx.done()) return;
  std::jthread worker([] { std::this_thread::sleep_for(1ms); });
}

#define CORPUS_NAP() std::this_thread::sleep_for(1ms)
void nap_macro(const ctxpp::Context& ctx) {
  if (ctx.done()) return;
  CORPUS_NAP();  // expect: CTX004
}

template <class T>
T templated_get(const ctxpp::Context& ctx, std::future<T>& f) {
  if (ctx.done()) return T{};
  return f.get();  // expect: CTX004
}

void suppressed(const ctxpp::Context& ctx) {
  if (ctx.done()) return;
  // ctxpp-audit: ignore CTX004 — a fixed 1 ms back-off
  std::this_thread::sleep_for(1ms);
}

}  // namespace corpus
