// CTX003 lost-cancel.
#include <chrono>
#include <functional>
#include <utility>
#include <vector>

#include <ctxpp/context.hpp>

namespace corpus {

using namespace std::chrono_literals;

int helper(const ctxpp::Context& ctx);

void discarded(const ctxpp::Context& parent) {
  ctxpp::with_cancel(parent);  // expect: CTX003
}

int only_ctx(const ctxpp::Context& parent) {
  auto ctx = ctxpp::with_timeout(parent, 1s).ctx;  // expect: CTX003
  return helper(ctx);
}

int binding_unused(const ctxpp::Context& parent) {
  auto [ctx, cancel] = ctxpp::with_timeout(parent, 1s);  // expect: CTX003
  return helper(ctx);
}

int member_unused(const ctxpp::Context& parent) {
  auto r = ctxpp::with_deadline(parent, ctxpp::clock::now() + 1s);  // expect: CTX003
  return helper(r.ctx);
}

int held_in_variable(const ctxpp::Context& parent) {
  auto r = ctxpp::with_cancel(parent);  // expect: CTX003
  ctxpp::CancelFunc stop = std::move(r.cancel);
  return helper(r.ctx);
}

int called(const ctxpp::Context& parent) {
  auto [ctx, cancel] = ctxpp::with_cancel(parent);
  const int n = helper(ctx);
  cancel();
  return n;
}

int member_called(const ctxpp::Context& parent) {
  auto r = ctxpp::with_cancel_cause(parent);
  const int n = helper(r.ctx);
  r.cancel({});
  return n;
}

int held_then_called(const ctxpp::Context& parent) {
  auto r = ctxpp::with_timeout_cause(parent, 1s, {});
  ctxpp::CancelFunc stop = std::move(r.cancel);
  const int n = helper(r.ctx);
  stop();
  return n;
}

class Holder {
 public:
  void start(const ctxpp::Context& parent) {
    auto [ctx, cancel] = ctxpp::with_cancel(parent);
    ctx_ = ctx;
    cancel_ = std::move(cancel);
  }

 private:
  ctxpp::Context ctx_;
  ctxpp::CancelFunc cancel_;
};

ctxpp::CancelFunc returned(const ctxpp::Context& parent, ctxpp::Context& out) {
  auto [ctx, cancel] = ctxpp::with_cancel(parent);
  out = ctx;
  return cancel;
}

void passed(const ctxpp::Context& a, const ctxpp::Context& b, std::vector<ctxpp::CancelFunc>& all) {
  auto [ctx, cancel] = ctxpp::merge(a, b);
  all.push_back(cancel);
  helper(ctx);
}

std::function<void()> captured(const ctxpp::Context& parent) {
  auto [ctx, cancel] = ctxpp::with_cancel(parent);
  helper(ctx);
  return [stop = cancel] { stop(); };
}

auto whole_returned(const ctxpp::Context& parent) { return ctxpp::with_cancel(parent); }

int deliberate(const ctxpp::Context& parent) {
  auto [ctx, cancel] = ctxpp::with_timeout(parent, 1s);
  (void)cancel;  // ends by its deadline
  return helper(ctx);
}

using Pair = ctxpp::WithCancel<ctxpp::Context, ctxpp::CancelFunc>;

// Reading a stored result loses nothing.
int from_storage(std::vector<Pair>& pairs) { return helper(pairs[0].ctx); }

// A function returning a new result is a with_* call for this rule.
Pair make_child(const ctxpp::Context& parent) { return ctxpp::with_cancel(parent); }

int from_factory(const ctxpp::Context& parent) {
  auto ctx = make_child(parent).ctx;  // expect: CTX003
  return helper(ctx);
}

int suppressed(const ctxpp::Context& parent) {
  auto [ctx, cancel] = ctxpp::with_timeout(parent, 1s);  // ctxpp-audit: ignore CTX003
  return helper(ctx);
}

}  // namespace corpus
