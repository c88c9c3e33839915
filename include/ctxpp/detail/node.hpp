// ctxpp/detail/node.hpp — the layout of context-tree nodes, shared by the inline
// fast paths of the public headers (done(), value(), handle copies) and src/.
// Nothing here is API: names and layout change without notice.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>

namespace ctxpp::detail {

// What a node is. Signal kinds (cancel and up) can end; the others only carry
// values or mark a root.
enum class NodeKind : std::uint8_t {
  todo,          // the static marker returned by todo()
  value,         // with_value: one key and its value
  detached,      // without_cancel: values of the parent, never done
  cancel,        // with_cancel
  cancel_cause,  // with_cancel_cause: stores the cause given to its cancel
  timer,         // with_deadline: a deadline, a timer entry and an optional cause
  merge,         // merge: linked under the primary, listening on the other
  stop_token,    // with_stop_token: a std::stop_callback forwarding into the node
};

// The packed state word of a signal node (NodeBase::state_):
//
//   bit 0      kLocked      spin lock guarding the node's child list, callback list
//                           and the sibling links of its children
//   bit 1      kDone        published end; the only bit done() reads
//   bit 2      kPropagated  every callback fired and every child reached
//   bit 3      kWaiters     a thread sleeps on this word (futex) and wants a wake-up
//   bits 4-5   the errc value once kDone is set (0 while live)
//
// Every bit but kLocked changes only while kLocked is held or by the owner of
// kDone (kPropagated), so the unlock store may write the whole word.
inline constexpr std::uint32_t kLocked = 1U << 0U;
inline constexpr std::uint32_t kDone = 1U << 1U;
inline constexpr std::uint32_t kPropagated = 1U << 2U;
inline constexpr std::uint32_t kWaiters = 1U << 3U;
inline constexpr std::uint32_t kErrShift = 4U;
inline constexpr std::uint32_t kErrMask = 3U << kErrShift;

// cause_hops_ value meaning "the cause equals err()".
inline constexpr std::uint32_t kNoCause = 0xFFFFFFFFU;

// Flags of a signal node: kLinked = in its parent's child list; kCountedHandles =
// its cancel handles are counted for the lost-cancel check (src/observe.cpp; set
// before the node is shared, never changed). Bits 1 and 2: src/.
inline constexpr std::uint8_t kLinked = 1U << 0U;
inline constexpr std::uint8_t kCountedHandles = 1U << 3U;

struct SignalNode;

// Common head of every node. A Context owns one reference on its node; a node
// owns one reference on its parent_.
struct NodeBase {
  std::atomic<std::uint32_t> refs_{1};
  std::atomic<std::uint32_t> state_{0};  // used by signal kinds only
  NodeKind kind_;
  // Signal kinds: kLinked is written under the parent's lock; the clearing store
  // is a release so a thread freeing the node can skip the lock after an
  // acquire load that sees it clear (context.cpp, retire_signal).
  std::atomic<std::uint8_t> flags_{0};
  // Signal kinds: which list of the parent holds this node: 0 = the parent's own
  // child list, k + 1 = shard k (see src/tree.hpp, ChildShards). Written before the
  // node is visible to other threads, never changed after.
  std::uint16_t parent_list_ = 0;
  // Signal kinds: how many signal-parent steps up the node holding the cause
  // lives (0 = this node), or kNoCause. Written before kDone is published.
  std::uint32_t cause_hops_ = kNoCause;
  NodeBase* parent_ = nullptr;

  explicit NodeBase(NodeKind kind) noexcept : kind_(kind) {}
  NodeBase(const NodeBase&) = delete;
  NodeBase& operator=(const NodeBase&) = delete;
};

// A with_value node. The value lives right after this header in the same
// allocation (see ValueNode<T> in context.hpp); value_ points at it.
struct ValueNodeBase : NodeBase {
  const void* key_;
  SignalNode* signal_;  // the nearest signal node above, not owned separately
  const void* value_ = nullptr;
  void (*destroy_)(ValueNodeBase*) noexcept = nullptr;

  ValueNodeBase(const void* key, SignalNode* signal) noexcept
      : NodeBase(NodeKind::value), key_(key), signal_(signal) {}
};

// A registration on a signal node: the object is the list node, so
// registering allocates nothing. Lists are guarded by the node's kLocked bit.
struct CallbackBase {
  CallbackBase* prev_ = nullptr;
  CallbackBase* next_ = nullptr;
  // Runs the reaction. Never throws (the cancel path is noexcept).
  void (*fire_)(CallbackBase*) noexcept = nullptr;
  // Called instead of fire_ when the node is freed with the registration still
  // linked (only registrations that hold no reference on the node: after_func,
  // the node's own done_fd/stop_token listeners). nullptr: nothing to do.
  void (*orphan_)(CallbackBase*) noexcept = nullptr;
  // Set by the canceller before fire_ runs, to a flag on its own stack; a
  // deregistration from inside fire_ (same thread) sets it instead of waiting.
  bool* removed_during_fire_ = nullptr;
  std::thread::id firing_thread_{};
  std::atomic<std::uint32_t> completed_{0};  // see src/tree.hpp kCallback*
  bool linked_ = false;                      // in the node's list; guarded by the node's lock
  bool popped_ = false;                      // taken by a canceller; guarded by the node's lock
};

struct Extras;

// A node that can end. 64 bytes for with_cancel (see bench W8).
struct SignalNode : NodeBase {
  SignalNode* prev_sibling_ = nullptr;  // in the parent's child list
  SignalNode* next_sibling_ = nullptr;  // ... also the worklist link once popped
  SignalNode* children_ = nullptr;
  CallbackBase* callbacks_ = nullptr;
  std::atomic<Extras*> extras_{nullptr};  // fd, stop_source: created on demand

  explicit SignalNode(NodeKind kind = NodeKind::cancel) noexcept : NodeBase(kind) {}
};

// The signal node a context of this node reads done()/err() from; nullptr when
// it can never end.
inline SignalNode* signal_of(NodeBase* node) noexcept {
  if (node == nullptr) return nullptr;
  switch (node->kind_) {
    case NodeKind::todo:
    case NodeKind::detached:
      return nullptr;
    case NodeKind::value:
      return static_cast<ValueNodeBase*>(node)->signal_;
    default:
      return static_cast<SignalNode*>(node);
  }
}

// Frees a node whose last reference is gone, then walks up releasing parents
// (iteratively: a chain of 10^5 nodes must not recurse).
void destroy_chain(NodeBase* node) noexcept;

inline void add_ref(NodeBase* node) noexcept {
  // Relaxed: a new reference is made from an existing one, which already
  // keeps the node alive; nothing is published by the increment itself.
  if (node != nullptr) node->refs_.fetch_add(1, std::memory_order_relaxed);
}

inline void release(NodeBase* node) noexcept {
  // acq_rel: the releasing thread's writes to the node must be visible to the
  // thread that frees it (release), and the freeing thread must see them (acquire).
  if (node != nullptr && node->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    destroy_chain(node);
  }
}

// Cancel handles (CancelFunc, CancelCauseFunc): a reference, and in debug mode a
// count of handles (observe.cpp). The flag is read relaxed: it never changes once
// the node is shared.
void cancel_handle_copied(SignalNode* node) noexcept;
void cancel_handle_dropped(SignalNode* node) noexcept;
inline void copy_cancel_handle(SignalNode* node) noexcept {
  add_ref(node);
  if (node != nullptr && (node->flags_.load(std::memory_order_relaxed) & kCountedHandles) != 0U) {
    cancel_handle_copied(node);
  }
}
inline void drop_cancel_handle(SignalNode* node) noexcept {
  if (node != nullptr && (node->flags_.load(std::memory_order_relaxed) & kCountedHandles) != 0U) {
    cancel_handle_dropped(node);
  }
  release(node);
}

// The value stored under key, searching from node to the root; nullptr if absent.
inline const void* find_value(const NodeBase* node, const void* key) noexcept {
  for (; node != nullptr; node = node->parent_) {
    if (node->kind_ == NodeKind::value) {
      const auto* value_node = static_cast<const ValueNodeBase*>(node);
      if (value_node->key_ == key) return value_node->value_;
    }
  }
  return nullptr;
}

}  // namespace ctxpp::detail
