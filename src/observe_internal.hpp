// Internal interface of observation (observe.cpp, debug.cpp) for the context tree.
//
// The switch: g_observe_flags is zero unless an observer is added, tracking is on or
// a debug mode is on. The tree reads it (relaxed: a context created just as the
// first observer is added may go untracked, which is allowed) once per creation and
// once per winning cancel; nothing else is paid while it is zero.
//
// A tracked node has a NodeMeta, owned by its Extras (made on demand) and freed with
// the node; kTracked in the node's flags_ says so without touching Extras.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ctxpp/debug.hpp"
#include "ctxpp/observe.hpp"
#include "tree.hpp"

namespace ctxpp::detail {

inline constexpr std::uint32_t kObserveObservers = 1U << 0U;
inline constexpr std::uint32_t kObserveTracking = 1U << 1U;
inline constexpr std::uint32_t kObserveLeaks = 1U << 2U;
inline constexpr std::uint32_t kObserveChains = 1U << 3U;

extern std::atomic<std::uint32_t> g_observe_flags;

inline std::uint32_t observe_flags() noexcept {
  return g_observe_flags.load(std::memory_order_relaxed);
}

// Flags of NodeBase::flags_ beyond kLinked (node.hpp) and kExpanded (context.cpp):
// set before the node is shared, never changed.
inline constexpr std::uint8_t kTracked = 1U << 2U;
// kCountedHandles (node.hpp): cancel handles are counted for the lost-cancel check.

struct NodeMeta {
  std::uint64_t id = 0;
  std::uint64_t parent_id = 0;
  std::string name;    // own name, or the nearest named ancestor's
  bool named = false;  // name given to this very node by with_name
  SourceLocation created_at;
  clock::time_point created{};
  std::optional<TraceContext> trace;
  SignalNode* node = nullptr;            // the node owning this record
  std::atomic<clock::rep> ended{0};      // time_since_epoch when it ended; 0 = live
  std::atomic<std::uint64_t> origin{0};  // id of the context whose end reached it
  std::atomic<std::int32_t> cancel_handles{0};
  std::atomic<bool> reported{false};  // lingering reported once
  NodeMeta* prev = nullptr;           // registry list, guarded by its mutex
  NodeMeta* next = nullptr;
};

// The node's record, or nullptr.
NodeMeta* meta_of(const SignalNode* node) noexcept;

// A creation while observe_flags() != 0: gives node a record (named if name is not
// empty), counts its cancel handles in leaks mode (handles: how many the caller
// returns), checks for a broken chain when parent is a root, emits `created`.
// Never throws: without memory the node stays untracked.
void track_created(SignalNode* node, const Context& parent, const SourceLocation& where,
                   std::string_view name, int handles) noexcept;

// Frees the record of a node being freed (Extras teardown).
void release_meta(NodeMeta* meta) noexcept;

// Records the end time of a tracked node (any thread that ended it).
void note_ended(SignalNode* node) noexcept;

// One cancellation being observed on this thread; nested cancels (from callbacks)
// stack. Events are kept here during the propagation and emitted after it, so no
// observer runs while the tree is half-propagated.
struct RecordedEvent {
  Event event;
  std::string name;
  std::string component;
  std::string detail;
  std::optional<TraceContext> trace;
};
// A step recorded by the propagation itself (a descendant ended, a party ran): small,
// so a fan-out of 10^4 records fast; it holds a reference on node until delivered,
// when the full event is built from the node's record.
struct Step {
  SignalNode* node;
  clock::time_point time;
  EventKind kind;
};
struct Observation {
  Observation* outer = nullptr;
  std::uint64_t origin_id = 0;
  clock::time_point start{};
  bool emit = false;                  // an observer is there: record events
  std::vector<RecordedEvent> events;  // the cancel itself, component signals
  std::vector<Step> steps;
};
extern thread_local Observation* tls_observation;

// Starts observing a cancel that node just won (publish succeeded); emits nothing
// yet. obs lives on the caller's stack.
void begin_observation(Observation& obs, SignalNode* node, errc err,
                       const SourceLocation* where) noexcept;
// Ends it: emits the recorded events and pops it.
void end_observation(Observation& obs) noexcept;
// A descendant ended by the propagation obs is running.
void observe_propagated(Observation& obs, SignalNode* node) noexcept;
// A registered party (callback) on node is about to run.
void observe_party(Observation& obs, SignalNode* node) noexcept;

// Fills an event's context fields from node's record (if any).
void describe(RecordedEvent& recorded, const SignalNode* node) noexcept;
// Emits recorded now (outside any propagation).
void emit_recorded(RecordedEvent& recorded) noexcept;

// Lost-cancel accounting (kCountedHandles set).
void cancel_handle_copied(SignalNode* node) noexcept;
void cancel_handle_dropped(SignalNode* node) noexcept;

// background()/todo() called: reports a broken chain if the thread has a current
// context and chains mode is on.
void check_fresh_root(const SourceLocation& where, const char* what) noexcept;

// Appends text as a JSON string: escaped, invalid UTF-8 replaced by U+FFFD
// (observers.cpp; the live view's JSON uses it too).
void append_json_string(std::string& out, std::string_view text);

// debug.cpp
void add_finding(Finding finding) noexcept;
clock::duration linger_bound() noexcept;
clock::duration lost_cancel_min_remaining() noexcept;
// The lingering sweep over contexts (observe.cpp) and scopes.
void sweep_lingering_contexts(clock::time_point now) noexcept;
void sweep_lingering_scopes(clock::time_point now) noexcept;
void recompute_observe_flags() noexcept;
std::uint32_t debug_flags() noexcept;
void read_debug_environment();

}  // namespace ctxpp::detail
