// Internal interface of the context tree, shared by the files of src/.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>
#include <system_error>

#include "ctxpp/context.hpp"
#include "ctxpp/detail/node.hpp"
#include "ctxpp/scoped_callback.hpp"

namespace ctxpp::detail {

// ---------------------------------------------------------------------------
// Node kinds beyond the plain with_cancel node (which is a bare SignalNode).

struct CauseNode final : SignalNode {
  std::error_code cause_;  // written by the winning cause-cancel, before kDone
  CauseNode() noexcept : SignalNode(NodeKind::cancel_cause) {}
};

inline constexpr std::size_t kNotInHeap = static_cast<std::size_t>(-1);

struct TimerNode final : SignalNode {
  clock::time_point deadline_;
  std::error_code cause_;                // reported when the deadline fires; {} = err()
  std::size_t heap_index_ = kNotInHeap;  // guarded by the timer service's mutex
  TimerNode() noexcept : SignalNode(NodeKind::timer) {}
};

struct MergeNode;
// The merge node's registration on the other context.
struct MergeListener final : CallbackBase {
  MergeNode* owner_ = nullptr;
};

// A merge is linked under its primary like any child and listens on the other
// input with listener_. The registration is handed over under registration_mutex_:
// merge() registers only while the node is live, and the first of finish_kind and
// retire_signal to find listening_ set deregisters and releases other_. Lock order:
// registration_mutex_ before the other node's spin lock; never the reverse.
struct MergeNode final : SignalNode {
  std::optional<clock::time_point> deadline_;
  std::error_code cause_;        // copied from the other input when it ends first
  SignalNode* other_ = nullptr;  // owned reference; immutable once set
  std::mutex registration_mutex_;
  bool listening_ = false;  // guarded by registration_mutex_
  MergeListener listener_;
  MergeNode() noexcept : SignalNode(NodeKind::merge) {}
};

struct StopForward {
  SignalNode* node;
  void operator()() const noexcept;
};

struct StopTokenNode final : SignalNode {
  std::optional<std::stop_callback<StopForward>> callback_;
  StopTokenNode() noexcept : SignalNode(NodeKind::stop_token) {}
};

struct DetachedNode final : NodeBase {
  DetachedNode() noexcept : NodeBase(NodeKind::detached) {}
};

// Child lists of a parent that children are added to from several threads at once
// (W7): one list and one spin lock per cache line, picked by the registering thread,
// so a hot parent does not serialise its children on one lock word. Installed the first
// time registration finds the parent's own lock contended; never removed.
struct alignas(64) ChildShard {
  std::atomic<std::uint32_t> lock{0};  // kLocked only
  SignalNode* children = nullptr;
};
inline constexpr std::size_t kChildShards = 16;
struct ChildShards {
  std::array<ChildShard, kChildShards> shard;
};

struct Extras;
// An internal listener that knows the Extras it belongs to.
struct ExtrasListener final : CallbackBase {
  Extras* owner = nullptr;
};

struct NodeMeta;

// Lazily made per-node resources (done_fd, stop_token). Owned by the node.
struct Extras {
  std::mutex mutex;  // guards creation only
  std::atomic<int> fd{-1};
  ExtrasListener fd_listener;
  std::optional<std::stop_source> stop_source;
  ExtrasListener stop_listener;
  // Installed under the node's lock, and only while the node is not done.
  std::atomic<ChildShards*> shards{nullptr};
  // The node's observation record (observe.cpp); freed with the Extras.
  std::atomic<NodeMeta*> meta{nullptr};
  Extras() noexcept {
    fd_listener.owner = this;
    stop_listener.owner = this;
  }
};

// ---------------------------------------------------------------------------
// Locking and state (context.cpp).

// Takes the node's spin lock; returns the state word as held (kLocked set). Sets
// *contended if it had to wait.
std::uint32_t lock(SignalNode* node, bool* contended = nullptr) noexcept;
// Releases the lock, storing state (kLocked cleared) with release order.
inline void unlock(SignalNode* node, std::uint32_t state) noexcept {
  node->state_.store(state & ~kLocked, std::memory_order_release);
}
// Sets bits while the lock is free; returns the previous word.
std::uint32_t set_bits(SignalNode* node, std::uint32_t bits) noexcept;

// now + d without overflow: clamps to time_point::max() / min().
inline clock::time_point saturating_add(clock::time_point now, clock::duration d) noexcept {
  clock::rep sum = 0;
  if (__builtin_add_overflow(now.time_since_epoch().count(), d.count(), &sum)) {
    return d.count() > 0 ? clock::time_point::max() : clock::time_point::min();
  }
  return clock::time_point(clock::duration(sum));
}

// Adds a reference unless the count is already zero (the node is being freed).
inline bool try_add_ref(NodeBase* node) noexcept {
  std::uint32_t refs = node->refs_.load(std::memory_order_relaxed);
  while (refs != 0) {
    if (node->refs_.compare_exchange_weak(refs, refs + 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

// Ends node as cancel() would: err, and either an explicit cause stored into the
// node's cause slot (cause != nullptr) or hops (kNoCause, or 0 when the node's
// slot already holds the cause). Runs the whole propagation. True if this call
// ended the node. The caller keeps node alive.
// where: the cancel call's site, for observers (nullptr: a deadline, a stop, a merge).
bool cancel_node(SignalNode* node, errc err, std::uint32_t hops, const std::error_code* cause,
                 const SourceLocation* where = nullptr) noexcept;

// Links child under parent (nullptr: a root), or ends it at once with the
// parent's outcome if parent is done. child must not be visible to other threads.
void attach(SignalNode* parent, SignalNode* child) noexcept;

// Unlinks callback from node's list if it is still linked; never waits.
bool unlink_callback(SignalNode* node, CallbackBase* callback) noexcept;

// A new node of type Node under parent, holding a reference on parent's node.
template <class Node>
Node* new_child(const Context& parent) {
  auto* node = new Node();
  node->parent_ = Access::node(parent);
  add_ref(node->parent_);
  return node;
}

// Same, with two references: one for the Context, one for the cancel function.
template <class Node>
Node* new_child_for_pair(const Context& parent) {
  Node* node = new_child<Node>(parent);
  node->refs_.store(2, std::memory_order_relaxed);
  return node;
}

// The cause slot of a node kind that has one, else nullptr.
std::error_code* cause_slot(SignalNode* node) noexcept;
// The deadline a context reading node reports: the nearest timer or merge above.
std::optional<clock::time_point> deadline_of(const SignalNode* node) noexcept;
// The node's resolved cause (only meaningful once done).
std::error_code cause_of(SignalNode* node) noexcept;

// Per-thread depth of cancellation callbacks being run; a cancel that lost the
// race does not wait while it is non-zero (see context.cpp, invariant 6).
extern thread_local int tls_firing_depth;
// The timer node the timer thread is ending right now (already out of the heap).
extern thread_local const SignalNode* tls_firing_timer;

// ---------------------------------------------------------------------------
// Waiting (wait.cpp).

// Sleeps while *word == expected, until woken or abs_deadline (nullptr: none).
void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                const clock::time_point* abs_deadline) noexcept;
void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept;

// Blocks until (state & bits) != 0 or the deadline; true if the bits are set.
bool wait_state(SignalNode* node, std::uint32_t bits, const clock::time_point* deadline) noexcept;

// CallbackBase::completed_ values.
inline constexpr std::uint32_t kCallbackRunning = 0;
inline constexpr std::uint32_t kCallbackDone = 1;
inline constexpr std::uint32_t kCallbackWaited = 2;
void mark_callback_done(CallbackBase* callback) noexcept;
void wait_callback_done(CallbackBase* callback) noexcept;

// ---------------------------------------------------------------------------
// Timer service (timer_service.cpp).

// Arms node's deadline. Thread safety: any thread. Cost: O(log n) under a mutex.
void timer_add(TimerNode* node);
// Disarms it if armed; no effect otherwise.
void timer_remove(TimerNode* node) noexcept;

// ---------------------------------------------------------------------------
// Shared executor for after_func (executor.cpp).

struct ExecutorTask {
  ExecutorTask* next = nullptr;
  clock::time_point queued_at{};
  void (*run)(ExecutorTask*) noexcept = nullptr;
};
// Queues task to run on an executor thread. Never blocks on the task; runs it
// inline only if no executor thread exists and none can be created.
void executor_post(ExecutorTask* task) noexcept;

// ---------------------------------------------------------------------------
// Extras (stop_token.cpp): made on first use; nullptr only if out of memory.
Extras* extras_for(SignalNode* node) noexcept;
void destroy_extras(Extras* extras) noexcept;

inline ChildShards* shards_of(const SignalNode* node) noexcept {
  const Extras* extras = node->extras_.load(std::memory_order_acquire);
  return extras == nullptr ? nullptr : extras->shards.load(std::memory_order_acquire);
}

}  // namespace ctxpp::detail
