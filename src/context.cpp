// The context tree: creation, cancellation and its propagation, teardown.
//
// Invariants (cited as [In] below):
//  1. A node's state word (detail/node.hpp) holds a spin lock (kLocked). It guards
//     the node's child list, its callback list, and the sibling links and
//     kLinked flag of every child linked under it. No thread ever holds two node
//     locks at once, and no lock is held while user code runs or while the
//     timer or executor mutex is taken: so no lock order exists to violate.
//  2. Every bit but kLocked is changed either under the lock or by a CAS that
//     sees the lock free; the unlock store can therefore write the whole word.
//  3. kDone is set once, under the lock, by the "winner"; err bits and the cause
//     (cause_hops_, and the node's cause slot) are written before that release
//     store, so any thread that sees kDone (acquire) sees them.
//  4. A child, a scoped callback and an awaiter each hold a reference on the node
//     they are registered with; so a node whose count reaches zero has no child
//     and no such registration, and nobody can add one. Registrations that hold
//     no reference (after_func, the node's own fd/stop_token listeners) are
//     "orphaned" when the node is freed.
//  5. Registration (child or callback) checks kDone under the node's lock, and
//     the winner empties the lists only after publishing kDone under that lock:
//     a registration either sees kDone (and ends / runs inline) or is seen by
//     the winner. Nothing is lost, nothing runs twice.
//  6. Propagation is iterative (an explicit stack threaded through the popped
//     children's sibling links, which the popper owns once kLinked is cleared),
//     so depth 10^5 needs no deep recursion. Children are popped in batches, so
//     no lock is held for a whole fan-out. A child that someone else ended first
//     is waited for (kPropagated) only at the very end and only by a thread that
//     is not inside a callback: waits point strictly down the tree, and callback
//     code never waits, so waiting cannot form a cycle.
//  7. A popped child is used only after try_add_ref succeeded under the parent's
//     lock: a child whose count is already zero is being freed by a thread that
//     will unlink it under that same lock, and has nothing to propagate to [4].
#include <array>
#include <cstdint>
#include <limits>
#include <new>
#include <thread>

#include <unistd.h>

#include "observe_internal.hpp"
#include "tree.hpp"

namespace ctxpp {
namespace detail {

thread_local int tls_firing_depth = 0;
thread_local const SignalNode* tls_firing_timer = nullptr;

// CTXPP_DEBUG is read before main: this file is in every program that makes a context.
void read_debug_environment();
namespace {
const bool g_debug_environment_read = (read_debug_environment(), true);
}  // namespace

namespace {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Spins briefly, then yields: lock holders never run user code [1], so holds
// are short, but the holder may be preempted.
inline void backoff(int& spins) noexcept {
  if (++spins < 64) {
    cpu_relax();
  } else {
    std::this_thread::yield();
  }
}

}  // namespace

std::uint32_t lock(SignalNode* node, bool* contended) noexcept {
  // Acquire on success: the critical section must see what the previous holder
  // wrote before its release store in unlock().
  std::uint32_t state = node->state_.load(std::memory_order_relaxed);
  int spins = 0;
  for (;;) {
    if ((state & kLocked) == 0U) {
      if (node->state_.compare_exchange_weak(state, state | kLocked, std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
        return state | kLocked;
      }
      continue;
    }
    if (contended != nullptr) *contended = true;
    backoff(spins);
    state = node->state_.load(std::memory_order_relaxed);
  }
}

std::uint32_t set_bits(SignalNode* node, std::uint32_t bits) noexcept {
  // acq_rel: the bit publishes the setter's prior writes (kPropagated means
  // "the subtree is done") and orders the setter after the last lock holder.
  std::uint32_t state = node->state_.load(std::memory_order_relaxed);
  int spins = 0;
  for (;;) {
    if ((state & kLocked) == 0U) {
      if (node->state_.compare_exchange_weak(state, state | bits, std::memory_order_acq_rel,
                                             std::memory_order_relaxed)) {
        return state;
      }
      continue;
    }
    backoff(spins);
    state = node->state_.load(std::memory_order_relaxed);
  }
}

std::error_code* cause_slot(SignalNode* node) noexcept {
  switch (node->kind_) {
    case NodeKind::cancel_cause:
      return &static_cast<CauseNode*>(node)->cause_;
    case NodeKind::timer:
      return &static_cast<TimerNode*>(node)->cause_;
    case NodeKind::merge:
      return &static_cast<MergeNode*>(node)->cause_;
    default:
      return nullptr;
  }
}

namespace {

inline SignalNode* signal_parent(const SignalNode* node) noexcept {
  return signal_of(node->parent_);
}

inline std::uint32_t child_hops(std::uint32_t hops) noexcept {
  return hops == kNoCause ? kNoCause : hops + 1;
}

inline std::uint32_t err_bits(errc err) noexcept {
  return static_cast<std::uint32_t>(err) << kErrShift;
}

inline errc err_of(std::uint32_t state) noexcept {
  return static_cast<errc>((state & kErrMask) >> kErrShift);
}

// Ends node if nobody has [3]. cause != nullptr stores an explicit cause
// (hops must be 0 then). True if this call won.
bool publish(SignalNode* node, errc err, std::uint32_t hops,
             const std::error_code* cause) noexcept {
  std::uint32_t state = lock(node);
  if ((state & kDone) != 0U) {
    unlock(node, state);
    return false;
  }
  if (cause != nullptr) *cause_slot(node) = *cause;
  node->cause_hops_ = hops;
  std::uint32_t next = state | kDone | err_bits(err);
  // A node with nothing registered has nothing to propagate, and nothing can be
  // registered once kDone is visible [5]: publish kPropagated with it. (Children in
  // shards are not visible under this lock: a sharded node always propagates.)
  if (node->children_ == nullptr && node->callbacks_ == nullptr && shards_of(node) == nullptr) {
    next |= kPropagated;
  }
  unlock(node, next);
  if ((state & kWaiters) != 0U) futex_wake_all(&node->state_);
  if ((node->flags_.load(std::memory_order_relaxed) & kTracked) != 0U) note_ended(node);
  return true;
}

// Unlinks child from the list whose head is `head`. Caller holds that list's lock
// (the parent's, or the shard's) [1].
inline void unlink_child(SignalNode*& head, SignalNode* child) noexcept {
  if (child->prev_sibling_ != nullptr) {
    child->prev_sibling_->next_sibling_ = child->next_sibling_;
  } else {
    head = child->next_sibling_;
  }
  if (child->next_sibling_ != nullptr) child->next_sibling_->prev_sibling_ = child->prev_sibling_;
  child->prev_sibling_ = nullptr;
  child->next_sibling_ = nullptr;
  const auto flags = child->flags_.load(std::memory_order_relaxed);
  child->flags_.store(static_cast<std::uint8_t>(flags & ~kLinked), std::memory_order_release);
}

// The spin lock of a shard: the same protocol as a node's lock, kLocked only.
void lock_shard(ChildShard& shard) noexcept {
  int spins = 0;
  for (;;) {
    std::uint32_t free = 0;
    if (shard.lock.compare_exchange_weak(free, kLocked, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      return;
    }
    backoff(spins);
  }
}
inline void unlock_shard(ChildShard& shard) noexcept {
  shard.lock.store(0, std::memory_order_release);
}

// Removes node from its parent's child list if it is still there.
void detach_from_parent(SignalNode* node) noexcept {
  SignalNode* parent = signal_parent(node);
  if (parent == nullptr) return;
  if (node->parent_list_ != 0) {
    // Linked in a shard: the shard array outlives every child linked in it.
    ChildShard& shard = shards_of(parent)->shard[node->parent_list_ - 1U];
    lock_shard(shard);
    if ((node->flags_.load(std::memory_order_relaxed) & kLinked) != 0U) {
      unlink_child(shard.children, node);
    }
    unlock_shard(shard);
    return;
  }
  const std::uint32_t state = lock(parent);
  if ((node->flags_.load(std::memory_order_relaxed) & kLinked) != 0U) {
    unlink_child(parent->children_, node);
  }
  unlock(parent, state);
}

// Ends a merge's registration on its other input, once (see MergeNode). If the
// listener is running on another thread, waits for it; from inside it, does not.
void stop_listening(MergeNode* merge) noexcept {
  bool listening = false;
  {
    std::lock_guard guard(merge->registration_mutex_);
    listening = std::exchange(merge->listening_, false);
  }
  if (!listening) return;
  deregister_callback(merge->other_, &merge->listener_);
  release(merge->other_);
}

// Kind-specific work once a node is done: release the timer entry at once,
// stop listening on a merge's other context.
void finish_kind(SignalNode* node) noexcept {
  if (node->kind_ == NodeKind::timer) {
    // The timer thread took the entry out itself before firing it.
    if (node != tls_firing_timer) timer_remove(static_cast<TimerNode*>(node));
  } else if (node->kind_ == NodeKind::merge) {
    stop_listening(static_cast<MergeNode*>(node));
  }
}

struct Propagation {
  errc err;
  Observation* observation = nullptr;  // recording this cancel, or nullptr
  SignalNode* stack = nullptr;         // nodes we ended, to expand, linked by next_sibling_
  SignalNode* deferred = nullptr;      // children someone else ended, still propagating

  static void push(SignalNode*& list, SignalNode* node) noexcept {
    node->next_sibling_ = list;
    list = node;
  }
};

inline constexpr std::uint8_t kExpanded = 1U << 1U;  // flags_: owned by the propagator

// Ends the children of node (done, ended by us) and fires its callbacks, with
// the lock released around each user call [1]. Children we end that have
// anything below them are pushed for expansion [6]. Returns true if it pushed
// any (kPropagated must then wait for them); otherwise it has published
// kPropagated itself, in the same critical section that found the lists empty.
// TRICKY: a callback may deregister itself (same thread: flagged through
// `removed`; the registration may be gone when it returns) or be deregistered
// by another thread (which then waits for mark_callback_done).
constexpr std::size_t kBatch = 32;
using Batch = std::array<SignalNode*, kBatch>;

// Moves up to kBatch children from the list at head into batch. Caller holds the
// list's lock.
std::size_t pop_children(SignalNode*& head, Batch& batch) noexcept {
  std::size_t count = 0;
  while (count < kBatch && head != nullptr) {
    SignalNode* child = head;
    // Reference first, unlink second: the release store that clears kLinked lets a
    // child whose count is zero be freed at once (retire_signal), so it must be the
    // last touch of a child we hold no reference on [7].
    const bool owned = try_add_ref(child);
    unlink_child(head, child);
    if (owned) batch[count++] = child;
  }
  return count;
}

// What ending a batch of children did (bits).
inline constexpr unsigned kPushedChild = 1U;    // pushed for expansion
inline constexpr unsigned kDeferredChild = 2U;  // someone else is ending it

// Ends the popped children.
unsigned end_children(const Batch& batch, std::size_t count, std::uint32_t hops,
                      Propagation& work) noexcept;

// What expand() left to do for the node.
enum class Expanded {
  marked,          // nothing below is pending: kPropagated is published
  children_above,  // children pushed above it on the stack: mark when they are done
  waits_deferred,  // only children someone else is ending: mark after waiting for them
};

Expanded expand(SignalNode* node, Propagation& work) noexcept {
  const std::uint32_t hops = child_hops(node->cause_hops_);
  Batch batch{};
  unsigned pending = 0;
  // Shards first: no child can be added to them any more (kDone is published) [5].
  if (ChildShards* shards = shards_of(node)) {
    for (ChildShard& shard : shards->shard) {
      for (;;) {
        lock_shard(shard);
        const std::size_t count = pop_children(shard.children, batch);
        unlock_shard(shard);
        if (count == 0) break;
        pending |= end_children(batch, count, hops, work);
      }
    }
  }
  for (;;) {
    const std::uint32_t state = lock(node);
    const std::size_t count = pop_children(node->children_, batch);
    // Children first, callbacks only once no child is left: a popped callback must
    // run right after the unlock. Ending children can wait (a merge child waits
    // for its listener running elsewhere); a callback popped but not yet run
    // meanwhile would make its own deregistration wait for nothing [6].
    CallbackBase* callback = count == 0 ? node->callbacks_ : nullptr;
    bool removed = false;
    if (callback != nullptr) {
      node->callbacks_ = callback->next_;
      if (callback->next_ != nullptr) callback->next_->prev_ = nullptr;
      callback->next_ = nullptr;
      callback->linked_ = false;
      callback->popped_ = true;
      callback->removed_during_fire_ = &removed;
      callback->firing_thread_ = std::this_thread::get_id();
    } else if (count == 0) {
      if (pending != 0U) {
        unlock(node, state);
        return (pending & kPushedChild) != 0U ? Expanded::children_above : Expanded::waits_deferred;
      }
      unlock(node, state | kPropagated);
      if ((state & kWaiters) != 0U) futex_wake_all(&node->state_);
      return Expanded::marked;
    }
    unlock(node, state);

    pending |= end_children(batch, count, hops, work);
    if (callback != nullptr) {
      if (work.observation != nullptr) observe_party(*work.observation, node);
      ++tls_firing_depth;
      callback->fire_(callback);
      --tls_firing_depth;
      if (!removed) mark_callback_done(callback);
    }
  }
}

unsigned end_children(const Batch& batch, std::size_t count, std::uint32_t hops,
                      Propagation& work) noexcept {
  unsigned pending = 0;
  for (std::size_t i = 0; i < count; ++i) {
    SignalNode* child = batch[i];
    const bool won = publish(child, work.err, hops, nullptr);
    if (won && work.observation != nullptr) observe_propagated(*work.observation, child);
    if (!won) {
      // Someone else ended it first: wait for it at the end, if at all [6].
      if ((child->state_.load(std::memory_order_acquire) & kPropagated) != 0U) {
        release(child);
      } else {
        Propagation::push(work.deferred, child);
        pending |= kDeferredChild;
      }
    } else if ((child->state_.load(std::memory_order_relaxed) & kPropagated) != 0U) {
      finish_kind(child);  // a leaf: nothing below it to expand
      release(child);
    } else {
      Propagation::push(work.stack, child);
      pending |= kPushedChild;
    }
  }
  return pending;
}

void mark_propagated(SignalNode* node) noexcept {
  const std::uint32_t before = set_bits(node, kPropagated);
  if ((before & kWaiters) != 0U) futex_wake_all(&node->state_);
}

// Propagates from root, which this thread just ended [3]. Post-order: a node is
// marked kPropagated after every node pushed above it is finished. Once any child
// had to be deferred (someone else is ending it), nodes that finish later are
// marked only after the deferred ones are waited for, so a losing canceller that
// waits for kPropagated never returns before the whole subtree is done [6].
void propagate(SignalNode* root, errc err, Observation* observation) noexcept {
  Propagation work{err, observation};
  SignalNode* late = nullptr;  // finished, to mark after the waits; we own a reference
  bool root_marked = (root->state_.load(std::memory_order_acquire) & kPropagated) != 0U;
  if (!root_marked) {
    root_marked = expand(root, work) == Expanded::marked;
    while (work.stack != nullptr) {
      SignalNode* node = work.stack;
      bool marked = false;
      const auto flags = node->flags_.load(std::memory_order_relaxed);
      if ((flags & kExpanded) == 0U) {
        node->flags_.store(static_cast<std::uint8_t>(flags | kExpanded), std::memory_order_relaxed);
        const Expanded result = expand(node, work);
        if (result == Expanded::children_above) continue;
        marked = result == Expanded::marked;
      }
      work.stack = node->next_sibling_;
      node->next_sibling_ = nullptr;
      finish_kind(node);
      if (!marked && work.deferred != nullptr) {
        Propagation::push(late, node);
        continue;
      }
      if (!marked) mark_propagated(node);  // every child pushed above it is finished
      release(node);
    }
  }
  finish_kind(root);
  while (work.deferred != nullptr) {
    SignalNode* node = work.deferred;
    work.deferred = node->next_sibling_;
    node->next_sibling_ = nullptr;
    // Not from inside a callback: the canceller we would wait for may be our caller.
    if (tls_firing_depth == 0) wait_state(node, kPropagated, nullptr);
    release(node);
  }
  while (late != nullptr) {
    SignalNode* node = late;
    late = node->next_sibling_;
    node->next_sibling_ = nullptr;
    mark_propagated(node);
    release(node);
  }
  if (!root_marked) mark_propagated(root);
}

void free_node(NodeBase* node) noexcept {
  switch (node->kind_) {
    case NodeKind::todo:
      return;  // static, never freed (its count never reaches zero in practice)
    case NodeKind::value: {
      auto* value = static_cast<ValueNodeBase*>(node);
      value->destroy_(value);
      return;
    }
    case NodeKind::detached:
      delete static_cast<DetachedNode*>(node);
      return;
    case NodeKind::cancel:
      delete static_cast<SignalNode*>(node);
      return;
    case NodeKind::cancel_cause:
      delete static_cast<CauseNode*>(node);
      return;
    case NodeKind::timer:
      delete static_cast<TimerNode*>(node);
      return;
    case NodeKind::merge:
      delete static_cast<MergeNode*>(node);
      return;
    case NodeKind::stop_token:
      delete static_cast<StopTokenNode*>(node);
      return;
  }
}

// Tears down a signal node whose count reached zero [4].
void retire_signal(SignalNode* node) noexcept {
  if (node->kind_ == NodeKind::stop_token) {
    // First: destroying the std::stop_callback waits for a request_stop() that
    // is running it on another thread, so nothing forwards into us afterwards.
    static_cast<StopTokenNode*>(node)->callback_.reset();
  } else if (node->kind_ == NodeKind::merge) {
    // A listener firing on another thread holds a reference on us (merge_fire), so
    // the count being zero means none is running, or its fire gave up at once.
    stop_listening(static_cast<MergeNode*>(node));
  } else if (node->kind_ == NodeKind::timer &&
             (node->state_.load(std::memory_order_acquire) & kDone) == 0U) {
    // A done timer node already left the heap in finish_kind (or timer_add).
    timer_remove(static_cast<TimerNode*>(node));
  }
  // Once unlinked, a node is never linked again: a clear flag (acquire, pairs
  // with the release in unlink_child) means the parent is done with us.
  if ((node->flags_.load(std::memory_order_acquire) & kLinked) != 0U) detach_from_parent(node);
  // Only reference-free registrations can remain [4]: orphan them. The lock is
  // still needed: AfterFuncHandle::stop() may be unlinking one right now. A
  // propagated node fired all of its registrations and takes no new ones.
  const bool propagated = (node->state_.load(std::memory_order_acquire) & kPropagated) != 0U;
  while (!propagated) {
    const std::uint32_t state = lock(node);
    CallbackBase* callback = node->callbacks_;
    if (callback != nullptr) {
      node->callbacks_ = callback->next_;
      if (callback->next_ != nullptr) callback->next_->prev_ = nullptr;
      callback->linked_ = false;
      callback->next_ = nullptr;
      callback->prev_ = nullptr;
    }
    unlock(node, state);
    if (callback == nullptr) break;
    if (callback->orphan_ != nullptr) callback->orphan_(callback);
  }
  if (Extras* extras = node->extras_.load(std::memory_order_acquire)) destroy_extras(extras);
}

}  // namespace

void destroy_chain(NodeBase* node) noexcept {
  // Iterative: releasing a deep chain must not recurse [6].
  while (node != nullptr) {
    NodeBase* parent = node->parent_;
    if (node->kind_ != NodeKind::value && node->kind_ != NodeKind::detached &&
        node->kind_ != NodeKind::todo) {
      retire_signal(static_cast<SignalNode*>(node));
    }
    free_node(node);
    if (parent == nullptr || parent->refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    node = parent;
  }
}

namespace {
// propagate() of a cancel under observation: kept out of line so the plain path
// pays only the flag test.
[[gnu::noinline]] void propagate_observed(SignalNode* node, errc err,
                                          const SourceLocation* where) noexcept {
  Observation observation;
  begin_observation(observation, node, err, where);
  propagate(node, err, &observation);
  end_observation(observation);
}
}  // namespace

bool cancel_node(SignalNode* node, errc err, std::uint32_t hops, const std::error_code* cause,
                 const SourceLocation* where) noexcept {
  if (!publish(node, err, hops, cause)) {
    // Lost the race. Like Go, return only once the winner has finished the
    // subtree, unless we are inside a callback (the winner may be our caller) [6].
    if (tls_firing_depth == 0) wait_state(node, kPropagated, nullptr);
    // The winner may not have unlinked it yet (a leaf publishes kPropagated at
    // once): make "unlinked when cancel() returns" hold for this caller too.
    detach_from_parent(node);
    return false;
  }
  // TRICKY: callbacks run during propagation may drop every handle to the node (a
  // callback deleting the object that owns the CancelFunc). Hold it while user code
  // can run; a leaf published kPropagated at once and runs none.
  const bool runs_user_code = (node->state_.load(std::memory_order_relaxed) & kPropagated) == 0U;
  if (runs_user_code) add_ref(node);
  // Unlink only after the subtree is done: while it is linked, a concurrent cancel
  // of the parent finds it and waits for it (see propagate) [6].
  if (observe_flags() != 0U) [[unlikely]] {
    propagate_observed(node, err, where);
  } else if (runs_user_code) {
    propagate(node, err, nullptr);
  } else {
    finish_kind(node);  // a leaf: all that propagate() would do (W3)
  }
  detach_from_parent(node);
  if (runs_user_code) release(node);
  return true;
}

// Links child under parent, or ends it at once if parent is done [5].
// child is not yet visible to any other thread.
namespace {

inline void push_child(SignalNode*& head, SignalNode* child) noexcept {
  child->next_sibling_ = head;
  if (head != nullptr) head->prev_sibling_ = child;
  head = child;
  // Keeps the flags set at birth (kTracked, kCountedHandles); nobody else writes them
  // until the child is reachable, which our caller's unlock makes it.
  child->flags_.store(child->flags_.load(std::memory_order_relaxed) | kLinked,
                      std::memory_order_relaxed);
}

// child is born done: parent ended before it could be linked. child is not shared
// yet, so no lock is needed; the release store still orders cause_hops_ before kDone.
void end_at_birth(SignalNode* parent, std::uint32_t parent_state, SignalNode* child) noexcept {
  child->cause_hops_ = child_hops(parent->cause_hops_);
  child->state_.store(kDone | kPropagated | (parent_state & kErrMask), std::memory_order_release);
  if ((child->flags_.load(std::memory_order_relaxed) & kTracked) != 0U) note_ended(child);
}

// The shard of the calling thread: threads are spread round-robin, so two threads
// hammering one parent use different cache lines.
std::size_t my_shard() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t index =
      next.fetch_add(1, std::memory_order_relaxed) % kChildShards;
  return index;
}

// Gives parent its shard array after its lock was found contended. Best effort:
// without memory it keeps the single list.
void install_shards(SignalNode* parent) noexcept {
  Extras* extras = extras_for(parent);
  if (extras == nullptr || extras->shards.load(std::memory_order_acquire) != nullptr) return;
  auto* shards = new (std::nothrow) ChildShards();
  if (shards == nullptr) return;
  const std::uint32_t state = lock(parent);
  // Only while live: the canceller reads the array after publishing kDone under this
  // same lock, so it either sees the array or the array is never installed [5].
  if ((state & kDone) == 0U && extras->shards.load(std::memory_order_relaxed) == nullptr) {
    extras->shards.store(shards, std::memory_order_release);
    shards = nullptr;
  }
  unlock(parent, state);
  delete shards;
}

}  // namespace

void attach(SignalNode* parent, SignalNode* child) noexcept {
  if (parent == nullptr) return;
  if (ChildShards* shards = shards_of(parent)) {
    const std::size_t index = my_shard();
    ChildShard& shard = shards->shard[index];
    lock_shard(shard);
    // Acquire: pairs with the publishing store of kDone [3][5].
    const std::uint32_t state = parent->state_.load(std::memory_order_acquire);
    if ((state & kDone) == 0U) {
      child->parent_list_ = static_cast<std::uint16_t>(index + 1);
      push_child(shard.children, child);
      unlock_shard(shard);
      return;
    }
    unlock_shard(shard);
    end_at_birth(parent, state, child);
    return;
  }
  bool contended = false;
  const std::uint32_t state = lock(parent, &contended);
  if ((state & kDone) == 0U) {
    push_child(parent->children_, child);
    unlock(parent, state);
    if (contended) install_shards(parent);
    return;
  }
  unlock(parent, state);
  end_at_birth(parent, state, child);
}

std::optional<clock::time_point> deadline_of(const SignalNode* node) noexcept {
  for (; node != nullptr; node = signal_of(node->parent_)) {
    if (node->kind_ == NodeKind::timer) return static_cast<const TimerNode*>(node)->deadline_;
    if (node->kind_ == NodeKind::merge) return static_cast<const MergeNode*>(node)->deadline_;
  }
  return std::nullopt;
}

std::error_code cause_of(SignalNode* node) noexcept {
  const std::uint32_t state = node->state_.load(std::memory_order_acquire);
  if ((state & kDone) == 0U) return {};
  std::uint32_t hops = node->cause_hops_;
  if (hops == kNoCause) return make_error_code(err_of(state));
  SignalNode* holder = node;
  for (; hops > 0 && holder != nullptr; --hops) holder = signal_parent(holder);
  const std::error_code* slot = holder != nullptr ? cause_slot(holder) : nullptr;
  return slot != nullptr ? *slot : make_error_code(err_of(state));
}

bool register_callback(SignalNode* node, CallbackBase* callback) noexcept {
  if ((node->state_.load(std::memory_order_acquire) & kDone) != 0U) return false;
  const std::uint32_t state = lock(node);
  if ((state & kDone) != 0U) {
    unlock(node, state);
    return false;
  }
  callback->prev_ = nullptr;
  callback->next_ = node->callbacks_;
  if (node->callbacks_ != nullptr) node->callbacks_->prev_ = callback;
  node->callbacks_ = callback;
  callback->linked_ = true;
  callback->popped_ = false;
  unlock(node, state);
  return true;
}

namespace {
// Unlinks callback if linked. Caller holds node's lock [1].
bool unlink_callback_locked(SignalNode* node, CallbackBase* callback) noexcept {
  if (!callback->linked_) return false;
  if (callback->prev_ != nullptr) {
    callback->prev_->next_ = callback->next_;
  } else {
    node->callbacks_ = callback->next_;
  }
  if (callback->next_ != nullptr) callback->next_->prev_ = callback->prev_;
  callback->linked_ = false;
  callback->prev_ = nullptr;
  callback->next_ = nullptr;
  return true;
}
}  // namespace

bool unlink_callback(SignalNode* node, CallbackBase* callback) noexcept {
  const std::uint32_t state = lock(node);
  const bool unlinked = unlink_callback_locked(node, callback);
  unlock(node, state);
  return unlinked;
}

void deregister_callback(SignalNode* node, CallbackBase* callback) noexcept {
  const std::uint32_t state = lock(node);
  if (unlink_callback_locked(node, callback)) {
    unlock(node, state);
    return;
  }
  const bool popped = callback->popped_;
  const bool on_this_thread = callback->firing_thread_ == std::this_thread::get_id();
  unlock(node, state);
  if (!popped) return;  // never linked (ran inline) or already orphaned
  if (callback->completed_.load(std::memory_order_acquire) != kCallbackRunning) return;
  if (on_this_thread) {
    // TRICKY: called from inside the callback itself: it cannot finish while we
    // wait. Tell the canceller not to touch the registration afterwards.
    *callback->removed_during_fire_ = true;
    return;
  }
  wait_callback_done(callback);
}

namespace {
// The static node behind todo(): a count no program reaches keeps it from ever
// being freed.
NodeBase& todo_node() noexcept {
  static NodeBase node(NodeKind::todo);
  static const bool initialised = [] {
    node.refs_.store(1U << 30U, std::memory_order_relaxed);
    return true;
  }();
  (void)initialised;
  return node;
}

// now: the caller's clock reading if it has one (with_timeout), else nullopt; a
// clock read costs about as much as the rest of the call.
WithCancel<Context, CancelFunc> make_timer(const Context& parent, clock::time_point d,
                                           const std::error_code* cause,
                                           std::optional<clock::time_point> now,
                                           const SourceLocation& where) {
  const std::optional<clock::time_point> parent_deadline = parent.deadline();
  if (parent_deadline.has_value() && *parent_deadline <= d) {
    return with_cancel(parent, where);  // never extends the parent's deadline (Go)
  }
  auto* node = new_child_for_pair<TimerNode>(parent);
  node->deadline_ = d;
  if (cause != nullptr && *cause) node->cause_ = *cause;
  if (observe_flags() != 0U) [[unlikely]]
    track_created(node, parent, where, {}, 1);
  attach(Access::signal(parent), node);
  WithCancel<Context, CancelFunc> result{Access::adopt(node, node), Access::adopt_cancel(node)};
  if ((node->state_.load(std::memory_order_acquire) & kDone) == 0U) {
    if (d <= (now ? *now : clock::now())) {
      cancel_node(node, errc::deadline_exceeded, node->cause_ ? 0 : kNoCause, nullptr);
    } else if (d != clock::time_point::max()) {
      timer_add(node);
    }
  }
  return result;
}

}  // namespace

std::size_t child_count(const Context& ctx) noexcept {
  SignalNode* node = Access::signal(ctx);
  if (node == nullptr) return 0;
  const std::uint32_t state = lock(node);
  std::size_t count = 0;
  for (SignalNode* child = node->children_; child != nullptr; child = child->next_sibling_) ++count;
  unlock(node, state);
  if (ChildShards* shards = shards_of(node)) {
    for (ChildShard& shard : shards->shard) {
      lock_shard(shard);
      for (SignalNode* child = shard.children; child != nullptr; child = child->next_sibling_) {
        ++count;
      }
      unlock_shard(shard);
    }
  }
  return count;
}

void StopForward::operator()() const noexcept {
  // The node's count may be zero: its retire is then waiting in ~stop_callback for us
  // and nothing can observe it any more [7].
  if (!try_add_ref(node)) return;
  cancel_node(node, errc::canceled, kNoCause, nullptr);
  release(node);  // may free it from inside its own stop_callback (allowed)
}

}  // namespace detail

using detail::Access;

Context background(SourceLocation where) noexcept {
  if ((detail::observe_flags() & detail::kObserveChains) != 0U) [[unlikely]] {
    detail::check_fresh_root(where, "background()");
  }
  return {};
}

Context todo(SourceLocation where) noexcept {
  if ((detail::observe_flags() & detail::kObserveChains) != 0U) [[unlikely]] {
    detail::check_fresh_root(where, "todo()");
  }
  detail::NodeBase& node = detail::todo_node();
  detail::add_ref(&node);
  return Access::adopt(&node, nullptr);
}

std::error_code Context::cause() const noexcept {
  return signal_ == nullptr ? std::error_code{} : detail::cause_of(signal_);
}

std::optional<clock::time_point> Context::deadline() const noexcept {
  return detail::deadline_of(signal_);
}

bool CancelFunc::cancel(SourceLocation where) const noexcept {
  return node_ != nullptr &&
         detail::cancel_node(node_, errc::canceled, detail::kNoCause, nullptr, &where);
}

bool CancelCauseFunc::cancel(std::error_code cause, SourceLocation where) const noexcept {
  if (node_ == nullptr) return false;
  if (!cause) cause = make_error_code(errc::canceled);
  return detail::cancel_node(node_, errc::canceled, 0, &cause, &where);
}

WithCancel<Context, CancelFunc> with_cancel(const Context& parent, SourceLocation where) {
  auto* node = detail::new_child_for_pair<detail::SignalNode>(parent);
  if (detail::observe_flags() != 0U) [[unlikely]]
    detail::track_created(node, parent, where, {}, 1);
  detail::attach(Access::signal(parent), node);
  return {Access::adopt(node, node), Access::adopt_cancel(node)};
}

WithCancel<Context, CancelCauseFunc> with_cancel_cause(const Context& parent,
                                                       SourceLocation where) {
  auto* node = detail::new_child_for_pair<detail::CauseNode>(parent);
  if (detail::observe_flags() != 0U) [[unlikely]]
    detail::track_created(node, parent, where, {}, 1);
  detail::attach(Access::signal(parent), node);
  return {Access::adopt(node, node), Access::adopt_cancel_cause(node)};
}

WithCancel<Context, CancelFunc> with_deadline(const Context& parent, clock::time_point d,
                                              SourceLocation where) {
  return detail::make_timer(parent, d, nullptr, std::nullopt, where);
}

WithCancel<Context, CancelFunc> with_timeout(const Context& parent, clock::duration d,
                                             SourceLocation where) {
  const clock::time_point now = clock::now();
  return detail::make_timer(parent, detail::saturating_add(now, d), nullptr, now, where);
}

WithCancel<Context, CancelFunc> with_deadline_cause(const Context& parent, clock::time_point d,
                                                    std::error_code cause, SourceLocation where) {
  return detail::make_timer(parent, d, &cause, std::nullopt, where);
}

WithCancel<Context, CancelFunc> with_timeout_cause(const Context& parent, clock::duration d,
                                                   std::error_code cause, SourceLocation where) {
  const clock::time_point now = clock::now();
  return detail::make_timer(parent, detail::saturating_add(now, d), &cause, now, where);
}

Context without_cancel(const Context& parent) {
  auto* node = detail::new_child<detail::DetachedNode>(parent);
  return Access::adopt(node, nullptr);
}

namespace detail {
namespace {
void merge_fire(CallbackBase* base) noexcept {
  MergeNode* merge = static_cast<MergeListener*>(base)->owner_;
  // A count of zero: the merge is being freed and its retire waits for us; nothing
  // can observe it any more, so there is nothing to end [7].
  if (!try_add_ref(merge)) return;
  SignalNode* other = merge->other_;  // kept alive by other's canceller
  const std::uint32_t state = other->state_.load(std::memory_order_acquire);
  const std::error_code cause = cause_of(other);
  cancel_node(merge, err_of(state), 0, &cause);
  release(merge);  // may free it, deregistering from inside this fire (allowed)
}
}  // namespace
}  // namespace detail

WithCancel<Context, CancelFunc> merge(const Context& primary, const Context& other,
                                      SourceLocation where) {
  auto* node = detail::new_child_for_pair<detail::MergeNode>(primary);
  const std::optional<clock::time_point> a = primary.deadline();
  const std::optional<clock::time_point> b = other.deadline();
  if (a && b) {
    node->deadline_ = std::min(*a, *b);
  } else {
    node->deadline_ = a ? a : b;
  }
  node->listener_.owner_ = node;
  node->listener_.fire_ = &detail::merge_fire;
  detail::SignalNode* other_signal = Access::signal(other);
  if (other_signal != nullptr) {
    detail::add_ref(other_signal);
    node->other_ = other_signal;
  }
  if (detail::observe_flags() != 0U) [[unlikely]] {
    detail::track_created(node, primary, where, {}, 1);
  }
  detail::attach(Access::signal(primary), node);
  WithCancel<Context, CancelFunc> result{Access::adopt(node, node), Access::adopt_cancel(node)};
  if (other_signal == nullptr) return result;
  bool other_done = false;
  bool registered = false;
  {
    // The node is linked under primary and may be ending right now on another
    // thread; register only while it is live, under the hand-over mutex.
    std::lock_guard guard(node->registration_mutex_);
    if (!result.ctx.done()) {
      registered = detail::register_callback(other_signal, &node->listener_);
      other_done = !registered;
      node->listening_ = registered;
    }
  }
  if (!registered) {
    // Never registered (ended already, or other is done): hand back the reference.
    // Safe without the mutex: nothing sets listening_ after this point.
    if (other_done) {
      const std::uint32_t state = other_signal->state_.load(std::memory_order_acquire);
      const std::error_code cause = detail::cause_of(other_signal);
      detail::cancel_node(node, detail::err_of(state), 0, &cause);
    }
    node->other_ = nullptr;
    detail::release(other_signal);
  }
  return result;
}

}  // namespace ctxpp
