// CTX002 broken-chain.
#include <chrono>

#include <ctxpp/context.hpp>

namespace corpus {

using namespace std::chrono_literals;

int helper(const ctxpp::Context& ctx);

int restarts(const ctxpp::Context& ctx) {
  auto [child, cancel] = ctxpp::with_timeout(ctxpp::background(), 1s);  // expect: CTX002
  const int n = helper(child) + helper(ctx);
  cancel();
  return n;
}

int todo_in_lambda(const ctxpp::Context& ctx) {
  auto run = [&] { return helper(ctxpp::todo()); };  // expect: CTX002
  return run() + helper(ctx);
}

class Service {
 public:
  int call() { return helper(ctxpp::background()); }  // expect: CTX002

  // Produces its own member context: nothing is cut off.
  void restart() {
    auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
    ctx_ = ctx;
    cancel_ = cancel;
  }

 private:
  ctxpp::Context ctx_;
  ctxpp::CancelFunc cancel_;
};

int detached(const ctxpp::Context& ctx) { return helper(ctxpp::without_cancel(ctx)); }

// No context in scope: a root is where contexts start.
int owns_root() {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  const int n = helper(ctx);
  cancel();
  return n;
}

int defaulted(int x, const ctxpp::Context& ctx = ctxpp::background()) { return helper(ctx) + x; }

int suppressed(const ctxpp::Context& ctx) {
  // ctxpp-audit: ignore CTX002 — audit records must be written even after cancellation
  return helper(ctxpp::background()) + helper(ctx);
}

}  // namespace corpus
