// ctxpp/context.hpp — cancellation, deadlines and request-scoped values.
// A Context is a cheap handle to an immutable node of a tree. Cancelling a node
// (explicitly, by its deadline, or because an ancestor ended) ends every node
// below it before cancel() returns; the first ending wins and is reported by
// err() and cause(). Checking is one acquire load; a cancellable child costs one
// allocation; deadlines share one timer thread. Semantics follow Go's context
// package (Go 1.21): causes, without_cancel, after_func.
// Example:
//   auto [ctx, cancel] = ctxpp::with_timeout(parent, std::chrono::seconds(2));
//   while (!ctx.done()) { do_a_slice_of_work(); }
//   if (ctx.err() == ctxpp::errc::deadline_exceeded) log("gave up");
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <stop_token>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "ctxpp/detail/node.hpp"
#include "ctxpp/errc.hpp"
#include "ctxpp/source_location.hpp"

namespace ctxpp {

using clock = std::chrono::steady_clock;

template <class T>
class Key;
class Context;

namespace detail {
struct Access;
}  // namespace detail

/// A typed key for with_value(). Identity is the Key object's address, never its
/// name: two keys with equal names are different keys. Define keys as
/// namespace-scope or static objects that outlive every context using them.
/// Thread safety: immutable. Cost: none. Ownership: not copyable (a copy would be
/// a different key).
template <class T>
class Key {
 public:
  /// name is for diagnostics only. Its characters must outlive the key.
  explicit constexpr Key(std::string_view name) noexcept : name_(name) {}
  Key(const Key&) = delete;
  Key& operator=(const Key&) = delete;

  constexpr std::string_view name() const noexcept { return name_; }

 private:
  std::string_view name_;
};

/// A cheap, copyable, thread-safe handle to an immutable node of the context tree.
/// A default-constructed (or moved-from) Context behaves exactly like background().
/// Thread safety: all members are const and safe from any thread at once.
/// Cost: copying is one relaxed atomic increment; destroying one decrement.
/// Ownership: the handle keeps its node and all ancestors alive (not descendants).
class Context {
 public:
  Context() noexcept = default;
  Context(const Context& other) noexcept : node_(other.node_), signal_(other.signal_) {
    detail::add_ref(node_);
  }
  Context(Context&& other) noexcept
      : node_(std::exchange(other.node_, nullptr)),
        signal_(std::exchange(other.signal_, nullptr)) {}
  Context& operator=(const Context& other) noexcept {
    Context(other).swap(*this);
    return *this;
  }
  Context& operator=(Context&& other) noexcept {
    Context(std::move(other)).swap(*this);
    return *this;
  }
  ~Context() { detail::release(node_); }

  void swap(Context& other) noexcept {
    std::swap(node_, other.node_);
    std::swap(signal_, other.signal_);
  }

  /// True once the context (or an ancestor) has ended.
  /// Blocking: never. Cost: one acquire load, no lock, no allocation.
  /// Ordering: if true, everything the cancelling thread wrote before cancel()
  /// is visible to the caller.
  bool done() const noexcept {
    return signal_ != nullptr &&
           (signal_->state_.load(std::memory_order_acquire) & detail::kDone) != 0U;
  }

  /// {} while not done; then errc::canceled or errc::deadline_exceeded, fixed forever.
  /// Cost: one acquire load.
  std::error_code err() const noexcept {
    if (signal_ == nullptr) return {};
    const std::uint32_t state = signal_->state_.load(std::memory_order_acquire);
    if ((state & detail::kDone) == 0U) return {};
    return make_error_code(static_cast<errc>((state & detail::kErrMask) >> detail::kErrShift));
  }

  /// Why the context ended: the cause given to a cause-cancel or to a *_cause
  /// deadline (here or on the ancestor that ended first); otherwise equal to err().
  /// {} while not done. Cost: O(distance to the node that holds the cause).
  std::error_code cause() const noexcept;

  /// The deadline, if this context or an ancestor has one (the earliest: a child
  /// never extends its parent's). time_point::max() is a real deadline that never
  /// fires. Cost: O(distance to the nearest ancestor with a deadline).
  std::optional<clock::time_point> deadline() const noexcept;

  /// The value stored under key by the nearest with_value() on the way to the
  /// root; nullptr if absent (always so on background() or a default Context).
  /// Ownership: the pointer is valid while any handle to this context lives.
  /// Cost: O(depth), no lock, no allocation.
  template <class T>
  const T* value(const Key<T>& key) const noexcept {
    return static_cast<const T*>(detail::find_value(node_, &key));
  }

  /// Blocks until done(). Blocking: forever on a context that never ends.
  /// Cost: one load when already done; a futex wait otherwise (no allocation).
  void wait() const noexcept;

  /// Blocks until done() or until d has passed; returns done(). Non-positive d polls.
  bool wait_for(clock::duration d) const noexcept;

  /// Blocks until done() or until t; returns done().
  bool wait_until(clock::time_point t) const noexcept;

  /// A file descriptor that becomes readable (POLLIN, an eventfd counter > 0)
  /// once the context is done, for poll/epoll/io_uring loops.
  /// Ownership: owned by the context's node; do not close or read it; valid while
  /// any handle to this context lives. The same fd is returned on every call.
  /// Cost: created on first call (one eventfd, one small allocation); a load after.
  /// Errors: returns -1 and sets ec (errno of eventfd) if no descriptor could be
  /// made. A context that can never end returns a shared fd that never becomes
  /// readable.
  int done_fd(std::error_code& ec) const noexcept;

  /// A std::stop_token that is stop-requested once this context is done.
  /// A context that can never end returns a token with stop_possible() == false.
  /// Cost: first call allocates a std::stop_source and registers on the node.
  /// Errors: std::bad_alloc.
  std::stop_token stop_token() const;

  /// True if both handles name the same node.
  friend bool operator==(const Context& a, const Context& b) noexcept {
    return a.node_ == b.node_ && a.signal_ == b.signal_;
  }

 private:
  friend struct detail::Access;
  Context(detail::NodeBase* node, detail::SignalNode* signal) noexcept
      : node_(node), signal_(signal) {}

  detail::NodeBase* node_ = nullptr;      // owned reference; nullptr = background
  detail::SignalNode* signal_ = nullptr;  // where done() reads; kept alive by node_
};

/// Never done, no deadline, no values. Cost: none (a null handle); in debug mode
/// "chains" (ctxpp/debug.hpp) a call while the thread has a current() context is
/// reported as a broken chain, with where.
Context background(SourceLocation where = SourceLocation::current()) noexcept;

/// Same semantics as background(); marks a place where a caller's context has not
/// been plumbed through yet, so tools and reports can find it.
Context todo(SourceLocation where = SourceLocation::current()) noexcept;

/// Cancels its context and all descendants. Copyable; every copy cancels the same
/// context. Thread safety: any thread, any number at once; exactly one call ends
/// the context (the first), the others change nothing.
/// Blocking: runs the scoped callbacks registered on the subtree inline and
/// returns after every descendant is done. A call that lost the race to another
/// canceller waits until that canceller has finished the subtree, except when it
/// is made from inside a cancellation callback (then it returns at once).
/// Ownership: keeps the context's node alive. A default-constructed or moved-from
/// CancelFunc does nothing.
class CancelFunc {
 public:
  CancelFunc() noexcept = default;
  CancelFunc(const CancelFunc& other) noexcept : node_(other.node_) {
    detail::copy_cancel_handle(node_);
  }
  CancelFunc(CancelFunc&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {}
  CancelFunc& operator=(CancelFunc other) noexcept {
    std::swap(node_, other.node_);
    return *this;
  }
  ~CancelFunc() { detail::drop_cancel_handle(node_); }

  /// Cancels with errc::canceled. Later calls do nothing. where is what observers
  /// (ctxpp/observe.hpp) report as the cancel site.
  void operator()(SourceLocation where = SourceLocation::current()) const noexcept {
    (void)cancel(where);
  }

  /// Same, and tells whether this call is the one that ended the context.
  /// Errors: returns false if the context had already ended (by any means).
  bool cancel(SourceLocation where = SourceLocation::current()) const noexcept;

 private:
  friend struct detail::Access;
  explicit CancelFunc(detail::SignalNode* node) noexcept : node_(node) {}
  detail::SignalNode* node_ = nullptr;
};

/// Like CancelFunc, with a cause reported by cause() of the context and its
/// descendants; err() is errc::canceled. A {} cause means errc::canceled.
class CancelCauseFunc {
 public:
  CancelCauseFunc() noexcept = default;
  CancelCauseFunc(const CancelCauseFunc& other) noexcept : node_(other.node_) {
    detail::copy_cancel_handle(node_);
  }
  CancelCauseFunc(CancelCauseFunc&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {}
  CancelCauseFunc& operator=(CancelCauseFunc other) noexcept {
    std::swap(node_, other.node_);
    return *this;
  }
  ~CancelCauseFunc() { detail::drop_cancel_handle(node_); }

  void operator()(std::error_code cause,
                  SourceLocation where = SourceLocation::current()) const noexcept {
    (void)cancel(cause, where);
  }

  /// True if this call ended the context; false if it had already ended.
  bool cancel(std::error_code cause,
              SourceLocation where = SourceLocation::current()) const noexcept;

 private:
  friend struct detail::Access;
  explicit CancelCauseFunc(detail::SignalNode* node) noexcept : node_(node) {}
  detail::SignalNode* node_ = nullptr;
};

/// A new context and the function that cancels it; use with structured bindings:
/// `auto [ctx, cancel] = ctxpp::with_cancel(parent);`
template <class Ctx, class Cancel>
struct WithCancel {
  Ctx ctx;
  Cancel cancel;
};

/// A child that ends when cancel is called or when parent ends (with parent's
/// err() and cause()). A child of an already-done parent is done at once.
/// The child unlinks from its parent when cancelled or when its last handle goes,
/// so a long-lived parent does not grow.
/// Cost: one allocation of 64 bytes; registration takes the parent's spin lock.
/// Errors: std::bad_alloc.
WithCancel<Context, CancelFunc> with_cancel(const Context& parent,
                                            SourceLocation where = SourceLocation::current());

/// with_cancel whose cancel function takes a cause.
WithCancel<Context, CancelCauseFunc> with_cancel_cause(
    const Context& parent, SourceLocation where = SourceLocation::current());

/// A child that also ends with errc::deadline_exceeded at d. Never extends the
/// parent's deadline: when the parent's is earlier, no timer is made (a plain
/// with_cancel child). A deadline not in the future ends the child before the
/// call returns. d == time_point::max() is a deadline that never fires.
/// Cost: one allocation; a shared timer thread, no thread or OS timer per context;
/// cancelling releases the timer entry at once.
WithCancel<Context, CancelFunc> with_deadline(const Context& parent, clock::time_point d,
                                              SourceLocation where = SourceLocation::current());

/// with_deadline(parent, now + d), saturating: a huge d clamps to time_point::max()
/// (never fires, nothing overflows); zero or negative d ends the child at once.
WithCancel<Context, CancelFunc> with_timeout(const Context& parent, clock::duration d,
                                             SourceLocation where = SourceLocation::current());

/// with_deadline whose expiry reports cause through cause(). The returned cancel
/// function does not set the cause (Go's rule): cancelling reports errc::canceled.
WithCancel<Context, CancelFunc> with_deadline_cause(
    const Context& parent, clock::time_point d, std::error_code cause,
    SourceLocation where = SourceLocation::current());

/// with_timeout whose expiry reports cause.
WithCancel<Context, CancelFunc> with_timeout_cause(
    const Context& parent, clock::duration d, std::error_code cause,
    SourceLocation where = SourceLocation::current());

namespace detail {

template <class T>
struct ValueNode final : ValueNodeBase {
  T value;

  template <class U>
  ValueNode(const void* key, SignalNode* signal, U&& v)
      : ValueNodeBase(key, signal), value(std::forward<U>(v)) {
    value_ = &value;
    destroy_ = [](ValueNodeBase* self) noexcept { delete static_cast<ValueNode*>(self); };
  }
};

struct Access {
  static NodeBase* node(const Context& ctx) noexcept { return ctx.node_; }
  static SignalNode* signal(const Context& ctx) noexcept { return ctx.signal_; }
  static SignalNode* node(const CancelFunc& f) noexcept { return f.node_; }
  static SignalNode* node(const CancelCauseFunc& f) noexcept { return f.node_; }
  // Takes over one reference on node.
  static Context adopt(NodeBase* node, SignalNode* signal) noexcept { return {node, signal}; }
  static CancelFunc adopt_cancel(SignalNode* node) noexcept { return CancelFunc(node); }
  static CancelCauseFunc adopt_cancel_cause(SignalNode* node) noexcept {
    return CancelCauseFunc(node);
  }
};

}  // namespace detail

/// A child carrying value under key; lookups from it and its descendants find it
/// unless a nearer with_value uses the same key. Never cancellable by itself:
/// done()/err()/deadline() are the parent's.
/// Cost: one allocation holding the value inline. Ownership: the value is
/// destroyed with the last reference to its node: normally when the last handle to
/// this context and to every context derived from it goes; but a thread that is
/// ending a descendant at that moment (the timer thread at a deadline, a parent's
/// canceller) holds a reference meanwhile, and then that thread destroys it, right
/// after it finished ending the context. Keep value destructors cheap and
/// thread-agnostic.
/// Errors: std::bad_alloc, or whatever constructing T from value throws.
template <class T, class U>
Context with_value(const Context& parent, const Key<T>& key, U&& value) {
  auto* node =
      new detail::ValueNode<T>(&key, detail::Access::signal(parent), std::forward<U>(value));
  node->parent_ = detail::Access::node(parent);
  detail::add_ref(node->parent_);
  return detail::Access::adopt(node, detail::Access::signal(parent));
}

/// Keeps parent's values; never done, no deadline, no cause, whatever happens to
/// parent (even if parent is already done). For cleanup that must outlive the
/// request. Cost: one small allocation. Errors: std::bad_alloc.
Context without_cancel(const Context& parent);

/// Done when either input is done, with the err()/cause() of whichever ended
/// first; deadline() is the earlier of the two; values come from primary.
/// cancel() ends it and releases its registration on other; so does dropping its
/// last handle. The merge is a child of primary: primary's cancel() returns with
/// the merge's whole subtree done. other's cancel() returns with the merge done,
/// and with its subtree done too unless a cancel of the merge (or of primary) was
/// already under way on another thread, which finishes it.
/// Where it runs: when other ends, the merge ends inline in other's canceller.
/// Cost: no thread; one allocation; a registration on other.
/// Errors: std::bad_alloc.
WithCancel<Context, CancelFunc> merge(const Context& primary, const Context& other,
                                      SourceLocation where = SourceLocation::current());

namespace detail {
// Test hooks (not API): the number of children linked under ctx's signal node,
// and the number of pending entries in the shared timer service.
std::size_t child_count(const Context& ctx) noexcept;
std::size_t pending_timers() noexcept;
}  // namespace detail

}  // namespace ctxpp

#include "ctxpp/after_func.hpp"  // after_func is part of the core contract (api.md)
