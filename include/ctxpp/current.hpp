// ctxpp/current.hpp — the context the calling thread is working for.
// A scope object (ContextScope, or ComponentScope from observe.hpp) makes a context
// the thread's current() until it ends; scopes nest. Code deep in a call chain that
// was not handed a context can still find the request's, and the debug mode
// (ctxpp/debug.hpp, "chains") reports code that starts a fresh root
// (background(), todo(), a context from a default-constructed one) while a current
// context exists: the middleware that re-roots requests and cuts them off from
// their client's cancellation.
// Example:
//   ctxpp::ContextScope scope(request_ctx);
//   legacy_handler();   // deep inside: ctxpp::current() is request_ctx
#pragma once

#include "ctxpp/context.hpp"
#include "ctxpp/source_location.hpp"

namespace ctxpp {

/// Makes ctx the calling thread's current() until destroyed, then restores the one
/// before. Thread safety: construct and destroy on the same thread, in LIFO order
/// with other scopes (automatic storage does that). Cost: one reference on ctx and
/// two thread-local stores. Ownership: holds a copy of ctx; not copyable or movable.
/// A coroutine that suspends inside a scope leaves it current on that thread: open
/// scopes between suspension points only.
class [[nodiscard]] ContextScope {
 public:
  explicit ContextScope(const Context& ctx, SourceLocation where = SourceLocation::current());
  ~ContextScope();
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;

  const Context& context() const noexcept { return ctx_; }
  /// Where the scope was opened.
  SourceLocation where() const noexcept { return where_; }
  /// True for a DetachedScope.
  bool detached() const noexcept { return detached_; }

 private:
  friend class DetachedScope;
  struct DetachedTag {};
  ContextScope(DetachedTag, SourceLocation where) noexcept;

  Context ctx_;
  SourceLocation where_;
  ContextScope* previous_;
  bool detached_ = false;
};

/// Code inside works for no request on purpose (a pool's timer, a cleanup budget, a
/// background job started from a request thread): current() is a background context
/// and fresh roots made inside are not reported as broken chains.
/// Thread safety, cost and ownership: as ContextScope.
class [[nodiscard]] DetachedScope {
 public:
  explicit DetachedScope(SourceLocation where = SourceLocation::current()) noexcept
      : scope_(ContextScope::DetachedTag{}, where) {}

 private:
  ContextScope scope_;
};

/// The innermost ContextScope's context on this thread, or a background context.
/// Thread safety: thread-local. Cost: one thread-local load. Valid while the scope is.
const Context& current() noexcept;

/// The innermost scope on this thread, or nullptr.
const ContextScope* current_scope() noexcept;

}  // namespace ctxpp
