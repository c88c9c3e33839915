// A project's own context type and blocking functions, added by .ctxpp-audit.json.
namespace corpus {

struct RequestContext {
  bool done() const;
};

namespace legacy {
int fetch_blocking(int id);
}

template <class F>
int run_cancellable(const RequestContext& ctx, F&& f) {
  return ctx.done() ? -1 : f();
}

int ignores(const RequestContext& ctx) { return 0; }  // expect: CTX001

int checks(const RequestContext& ctx) { return ctx.done() ? 0 : 1; }

int blocks(const RequestContext& ctx) {
  if (ctx.done()) return 0;
  return legacy::fetch_blocking(1);  // expect: CTX004
}

int wrapped(const RequestContext& ctx) {
  return run_cancellable(ctx, [] { return legacy::fetch_blocking(2); });
}

int no_context() { return legacy::fetch_blocking(3); }  // expect: CTX005

// CTX006 is disabled by the config.
void spin(const RequestContext& ctx) {
  if (ctx.done()) return;
  while (true) {
  }
}

}  // namespace corpus
