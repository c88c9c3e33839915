// CTX006 loop-without-check.
#include <sys/socket.h>

#include <atomic>
#include <functional>
#include <stop_token>
#include <vector>

#include <ctxpp/context.hpp>

namespace corpus {

bool step(const ctxpp::Context& ctx);

void spins(const ctxpp::Context& ctx, std::atomic<int>& n) {
  if (ctx.done()) return;
  while (true) {  // expect: CTX006
    if (n.fetch_add(1) > 100) break;
  }
}

void forever(const ctxpp::Context& ctx, std::atomic<bool>& stop) {
  if (ctx.done()) return;
  for (;;) {  // expect: CTX006
    if (stop.load()) return;
  }
}

void receives(const ctxpp::Context& ctx, int fd) {
  if (ctx.done()) return;
  char buf[64];
  for (int i = 0; i < 10; ++i) {                      // expect: CTX006
    if (::recv(fd, buf, sizeof buf, 0) <= 0) return;  // expect: CTX004
  }
}

void do_forever(const ctxpp::Context& ctx, std::atomic<int>& n) {
  if (ctx.done()) return;
  do {  // expect: CTX006
    n.fetch_add(1);
  } while (true);
}

void checked(const ctxpp::Context& ctx) {
  while (true) {
    if (ctx.done()) return;
  }
}

void passes_in_loop(const ctxpp::Context& ctx) {
  for (;;) {
    if (step(ctx)) break;
  }
}

void bounded(const ctxpp::Context& ctx, int& n) {
  for (int i = 0; i < 10; ++i) ++n;
  if (ctx.done()) n = 0;
}

void stop_token_loop(const ctxpp::Context& ctx) {
  const std::stop_token token = ctx.stop_token();
  while (true) {
    if (token.stop_requested()) return;
  }
}

void lambda_in_loop(const ctxpp::Context& ctx, std::vector<std::function<bool()>>& out) {
  for (;;) {
    out.push_back([ctx] { return ctx.done(); });
    if (out.size() > 3) return;
  }
}

class Loop {
 public:
  void run(const ctxpp::Context& ctx) {
    ctx_ = ctx;
    while (true) {
      if (ctx_.done()) return;
    }
  }

 private:
  ctxpp::Context ctx_;
};

void suppressed(const ctxpp::Context& ctx, std::atomic<int>& n) {
  if (ctx.done()) return;
  // ctxpp-audit: ignore CTX006 — ends within 100 turns
  while (true) {
    if (n.fetch_add(1) > 100) break;
  }
}

}  // namespace corpus
