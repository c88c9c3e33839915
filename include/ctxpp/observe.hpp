// ctxpp/observe.hpp — see cancellation happen: names and ids for contexts, one
// event per cancellation step, component scopes that time cancel→cleanup, and a
// live view of the context tree.
//
// Nothing is recorded until someone asks: with no observer added, no debug mode on
// (ctxpp/debug.hpp) and tracking off, creating and cancelling contexts costs one
// relaxed load more than without this header (bench/RESULTS.md, "Observability").
// Once observing, every new cancellable context gets a record: a process-unique id,
// its parent's id, its name, its creation site and time, its trace identity.
//
// Example:
//   auto sink = std::make_shared<ctxpp::JsonLinesObserver>(std::cerr);  // observers.hpp
//   ctxpp::ObserverRegistration registration = ctxpp::add_observer(sink);
//   auto ctx = ctxpp::with_name(request, "db.query");
//   ctxpp::ComponentScope scope(ctx, "db");    // signal received / cleanup done
//   run_query(ctx);
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/current.hpp"
#include "ctxpp/source_location.hpp"
#include "ctxpp/trace_context.hpp"

namespace ctxpp {

/// What an Event reports. Values are stable (they are written as these names).
enum class EventKind : std::uint8_t {
  created,             ///< a context was created while observing (tracking on)
  canceled,            ///< a context ended by itself: its cancel, its deadline, its stop
  propagated,          ///< a descendant ended because an ancestor did; delay = since origin
  observed,            ///< a party registered on a context ran (callback, waiter); delay too
  component_signal,    ///< a component scope saw its context end; delay = since origin
  component_cleanup,   ///< a component scope whose context ended closed; delay = cleanup time
  cleanup_report,      ///< a CleanupCoordinator finished; delay = its duration
  blocking_abandoned,  ///< call_blocking gave up waiting for a call; it runs on, accounted
  lease_lingering,     ///< a pool lease outlived its context or its max_hold
  finding,             ///< a debug detector found a mistake (ctxpp/debug.hpp)
};

/// How many EventKind values there are (they run from 0 to event_kind_count - 1).
inline constexpr std::size_t event_kind_count = static_cast<std::size_t>(EventKind::finding) + 1;

/// The name an EventKind is written as ("canceled", "component_cleanup", ...).
std::string_view to_string(EventKind kind) noexcept;

/// One step of the cancellation story. Passed by reference to observers; every view
/// in it is valid only during the call (copy what you keep).
struct Event {
  EventKind kind = EventKind::created;
  clock::time_point time{};             ///< when it happened (steady clock)
  std::uint64_t context_id = 0;         ///< the context it is about (0: untracked)
  std::uint64_t parent_id = 0;          ///< its parent's id (0: a root or untracked)
  std::uint64_t origin_id = 0;          ///< the context whose ending started it (0: none)
  std::string_view name;                ///< the context's name (nearest named ancestor)
  std::string_view component;           ///< component scope, pool or report name, if any
  std::error_code error;                ///< err() of the context, if it ended
  std::error_code cause;                ///< cause() of the context, if it ended
  SourceLocation where;                 ///< cancel call, creation or scope site
  SourceLocation other_where;           ///< findings: the second site (e.g. the scope's)
  clock::duration delay{};              ///< see the kind
  std::uint64_t thread = 0;             ///< a hash of the reporting thread's id
  std::string_view detail;              ///< findings and reports: one line of explanation
  const TraceContext* trace = nullptr;  ///< the context's trace identity, if any
};

/// Receives events. on_event runs on the thread where the event happened (the
/// cancelling thread for cancellations, after the whole propagation of that cancel
/// finished and with no ctxpp lock held), possibly on many threads at once.
/// Thread safety: must be callable from any thread concurrently.
/// Blocking: should not block; a slow observer slows the cancelling thread.
/// Errors: must not throw (noexcept); an observer must not add or remove observers
/// from inside on_event (that deadlocks).
class Observer {
 public:
  virtual ~Observer() = default;
  virtual void on_event(const Event& event) noexcept = 0;
};

/// Keeps an observer added; removes it when destroyed or reset. Move-only.
/// Blocking: reset() waits until no thread is inside the observer's on_event.
class [[nodiscard]] ObserverRegistration {
 public:
  ObserverRegistration() noexcept = default;
  explicit ObserverRegistration(std::uint64_t id) noexcept : id_(id) {}
  ObserverRegistration(ObserverRegistration&& other) noexcept : id_(other.id_) { other.id_ = 0; }
  ObserverRegistration& operator=(ObserverRegistration&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      other.id_ = 0;
    }
    return *this;
  }
  ObserverRegistration(const ObserverRegistration&) = delete;
  ObserverRegistration& operator=(const ObserverRegistration&) = delete;
  ~ObserverRegistration() { reset(); }
  void reset() noexcept;

 private:
  std::uint64_t id_ = 0;
};

/// Adds an observer (several may be added; each gets every event). Turns tracking
/// on for contexts created from now on while at least one observer is added.
/// Thread safety: any thread. Cost: a mutex; copies the observer list.
/// Errors: std::invalid_argument if observer is null; std::bad_alloc.
ObserverRegistration add_observer(std::shared_ptr<Observer> observer);

/// Records contexts (ids, names, sites; the live tree) even with no observer: for a
/// debug endpoint that only renders the tree. Counted: each true needs one false.
/// Thread safety: any thread. Cost: one atomic.
void set_tracking(bool on) noexcept;

/// True while contexts created now get a record (observer, debug mode or tracking).
/// Cost: one relaxed load.
bool observing() noexcept;

/// A child of parent that carries name (copied) and is always tracked, whether or
/// not observing: events about it and its descendants carry the name, and the live
/// view shows it. It ends with its parent only (it has no cancel of its own).
/// Thread safety: any thread. Cost: one allocation for the node, one for its record.
/// Errors: std::bad_alloc.
Context with_name(const Context& parent, std::string_view name,
                  SourceLocation where = SourceLocation::current());

/// ctx's process-unique id (> 0), assigned on first request if ctx was created while
/// not observing; 0 for contexts that can never end (background(), without_cancel).
/// Thread safety: any thread. Cost: a load, or one allocation the first time.
std::uint64_t context_id(const Context& ctx) noexcept;

/// The name ctx carries (the nearest with_name above it), or "".
/// Thread safety: any thread. Cost: O(depth) loads.
std::string context_name(const Context& ctx);

namespace detail {
struct ComponentRecord;
}  // namespace detail

/// A component's part in a request: while alive, it records "signal received"
/// (component_signal) when ctx ends, and on destruction "cleanup done"
/// (component_cleanup, delay = from the signal to the destruction) if ctx had ended.
/// It also makes ctx the thread's current() (ctxpp/current.hpp) for its lifetime.
/// Thread safety: construct and destroy on one thread. Blocking: the destructor waits
/// while the signal is being recorded on another thread (microseconds).
/// Cost: when not observing, two thread-local stores; when observing, one callback
/// registration (no allocation) and one event per step. Ownership: not movable;
/// name must outlive the scope (string literal).
class [[nodiscard]] ComponentScope {
 public:
  ComponentScope(const Context& ctx, std::string_view name,
                 SourceLocation where = SourceLocation::current());
  ~ComponentScope();
  ComponentScope(const ComponentScope&) = delete;
  ComponentScope& operator=(const ComponentScope&) = delete;

  /// When the component saw its context end; nullopt while it has not.
  std::optional<clock::time_point> signaled_at() const noexcept;

 private:
  ContextScope scope_;
  std::unique_ptr<detail::ComponentRecord> impl_;  // null when not observing at construction
};

/// The same as constructing a ComponentScope (C++17 guaranteed elision).
inline ComponentScope component_scope(const Context& ctx, std::string_view name,
                                      SourceLocation where = SourceLocation::current()) {
  return ComponentScope(ctx, name, where);
}

/// One tracked context as the live view shows it.
struct ContextInfo {
  std::uint64_t id = 0;
  std::uint64_t parent_id = 0;
  std::string name;
  SourceLocation created_at;
  clock::duration age{};
  std::optional<clock::time_point> deadline;
  bool done = false;
  std::error_code error;  ///< err() once done
  std::error_code cause;  ///< cause() once done
};

/// Every tracked context alive now, parents before children.
/// Thread safety: any thread. Cost: O(tracked contexts) under the registry mutex.
std::vector<ContextInfo> context_tree();
/// The same rendered as indented text (one context a line) and as JSON
/// ({"contexts":[{"id":..,"parent":..,"name":..,"age_ms":..,"deadline_in_ms":..,
/// "state":"live"|"canceled"|"deadline_exceeded","cause":..,"created_at":"file:line"}]}).
std::string render_context_tree_text();
std::string render_context_tree_json();

/// Number of tracked contexts alive now. Cost: one relaxed load.
std::size_t live_tracked_contexts() noexcept;

namespace detail {
/// Emits an event to every observer (used by the library's own components).
/// No effect when no observer is added. Thread safety: any thread.
void emit(Event& event) noexcept;
/// True when at least one observer is added. Cost: one relaxed load.
bool has_observers() noexcept;
std::uint64_t thread_hash() noexcept;
}  // namespace detail

}  // namespace ctxpp
