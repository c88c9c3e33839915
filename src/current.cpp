// current(): a thread-local stack of scopes, linked through the scope objects
// themselves (they live on the stack of the thread that opened them), so opening
// one allocates nothing.
#include "ctxpp/current.hpp"

namespace ctxpp {
namespace {
thread_local ContextScope* tls_current = nullptr;
}  // namespace

ContextScope::ContextScope(const Context& ctx, SourceLocation where)
    : ctx_(ctx), where_(where), previous_(tls_current) {
  tls_current = this;
}

ContextScope::ContextScope(DetachedTag /*tag*/, SourceLocation where) noexcept
    : where_(where), previous_(tls_current), detached_(true) {
  tls_current = this;
}

ContextScope::~ContextScope() { tls_current = previous_; }

const Context& current() noexcept {
  static const Context root;
  return tls_current != nullptr ? tls_current->context() : root;
}

const ContextScope* current_scope() noexcept { return tls_current; }

}  // namespace ctxpp
