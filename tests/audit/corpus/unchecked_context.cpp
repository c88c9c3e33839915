// CTX001 unchecked-context: true findings and the uses that must not be reported.
#include <functional>
#include <utility>

#include <ctxpp/context.hpp>
#include <ctxpp/coroutine.hpp>
#include <ctxpp/task.hpp>

namespace corpus {

int ignores(const ctxpp::Context& ctx, int x) {  // expect: CTX001
  return x * 2;
}

// (void) silences the compiler, not the audit.
int void_cast(const ctxpp::Context& ctx) {  // expect: CTX001
  (void)ctx;
  return 0;
}

int checks(const ctxpp::Context& ctx) { return ctx.done() ? 1 : 0; }

int passes(const ctxpp::Context& ctx) { return checks(ctx); }

// An unnamed parameter is a deliberate "not needed".
int unnamed(const ctxpp::Context&) { return 0; }

// An empty body has nothing to cancel: a no-op default for overriders.
struct Listener {
  virtual ~Listener() = default;
  virtual void on_event(const ctxpp::Context& ctx, int event) {}
};

int through_lambda(const ctxpp::Context& ctx) {
  auto probe = [&] { return ctx.done(); };
  return probe() ? 1 : 0;
}

int by_copy_capture(const ctxpp::Context& ctx) {
  auto probe = [ctx] { return ctx.err() ? 1 : 0; };
  return probe();
}

class Worker {
 public:
  explicit Worker(ctxpp::Context ctx) : ctx_(std::move(ctx)) {}
  void rebind(const ctxpp::Context& ctx) { ctx_ = ctx; }
  bool stopped() const { return ctx_.done(); }

 private:
  ctxpp::Context ctx_;
};

int forwards(ctxpp::Context ctx) { return passes(std::move(ctx)); }

int copies(const ctxpp::Context& ctx) {
  ctxpp::Context mine = ctx;
  return mine.done() ? 1 : 0;
}

template <class T>
T scaled(const ctxpp::Context& ctx, T v) {  // expect: CTX001
  return v * 2;
}

template <class F>
auto invoke_with(const ctxpp::Context& ctx, F&& f) {
  return std::forward<F>(f)(ctx);
}

int use_templates(const ctxpp::Context& ctx) {
  return scaled(ctx, 2) +
         invoke_with(ctx, [](const ctxpp::Context& inner) { return inner.done() ? 1 : 0; });
}

#define CORPUS_STOPPED(c) ((c).done())
bool via_macro(const ctxpp::Context& ctx) { return CORPUS_STOPPED(ctx); }

std::function<int(const ctxpp::Context&)> make_handler() {
  return [](const ctxpp::Context& ctx) { return 1; };  // expect: CTX001
}

ctxpp::Task<int> awaits(ctxpp::Context ctx) {
  co_await ctxpp::cancelled(ctx);
  co_return 1;
}

ctxpp::Task<int> ignores_in_coroutine(ctxpp::Context ctx) {  // expect: CTX001
  co_return 2;
}

// ctxpp-audit: ignore CTX001 — the interface requires the parameter
int suppressed(const ctxpp::Context& ctx) { return 0; }

int suppressed_same_line(const ctxpp::Context& ctx) { return 0; }  // ctxpp-audit: ignore CTX001

// ctxpp-audit: ignore CTX004 — another rule's suppression does not hide this one
int other_rule_suppressed(const ctxpp::Context& ctx) { return 0; }  // expect: CTX001

}  // namespace corpus
