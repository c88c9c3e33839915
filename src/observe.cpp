// Observation: node records, the observer list, cancellation events, component
// scopes and the live view.
//
// Invariants (cited as [On] below):
//  1. A node's record is made before the node is shared (track_created runs before
//     attach), or later by context_id() through a CAS on Extras::meta; either way it
//     is freed only with the node (release_meta from destroy_extras).
//  2. A record is in the registry from its making until release_meta; a thread
//     holding g_registry_mutex may read the node behind any record in the list
//     (state, deadline, parents): the node is not freed before release_meta, which
//     takes the same mutex, returns.
//  3. Observers never run inside a propagation: the cancelling thread records into
//     its Observation and emits after propagate() returned (context.cpp). Observer
//     calls hold no ctxpp lock; an observer entry counts the threads inside it, so
//     ObserverRegistration::reset() can wait for them.
#include "ctxpp/observe.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <new>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <utility>

#include "observe_internal.hpp"

namespace ctxpp {
namespace detail {

std::atomic<std::uint32_t> g_observe_flags{0};
thread_local Observation* tls_observation = nullptr;

namespace {

// --- observers ---------------------------------------------------------------------

struct ObserverEntry {
  std::uint64_t id = 0;
  std::shared_ptr<Observer> observer;
  std::atomic<int> inside{0};  // threads in on_event right now
};
using ObserverList = std::vector<std::shared_ptr<ObserverEntry>>;

std::mutex g_observers_mutex;
std::shared_ptr<const ObserverList> g_observers;  // guarded by g_observers_mutex
std::uint64_t g_next_observer_id = 1;             // guarded by g_observers_mutex
std::atomic<int> g_tracking{0};

std::shared_ptr<const ObserverList> observers_snapshot() noexcept {
  std::lock_guard lock(g_observers_mutex);
  return g_observers;
}

void deliver(const ObserverList& list, const Event& event) noexcept {
  for (const auto& entry : list) {
    entry->inside.fetch_add(1, std::memory_order_acq_rel);
    entry->observer->on_event(event);
    entry->inside.fetch_sub(1, std::memory_order_acq_rel);
  }
}

// --- records -------------------------------------------------------------------------

std::mutex g_registry_mutex;
NodeMeta* g_registry = nullptr;  // guarded by g_registry_mutex [O2]
std::atomic<std::size_t> g_live{0};
std::atomic<std::uint64_t> g_next_id{1};

void registry_insert(NodeMeta* meta) noexcept {
  std::lock_guard lock(g_registry_mutex);
  meta->next = g_registry;
  if (g_registry != nullptr) g_registry->prev = meta;
  g_registry = meta;
  g_live.fetch_add(1, std::memory_order_relaxed);
}

// Fills a new record for node under parent_signal (either may be untracked).
void fill_meta(NodeMeta* meta, SignalNode* node, const SignalNode* parent_signal,
               const Context* parent, const SourceLocation& where, std::string_view name) {
  meta->id = g_next_id.fetch_add(1, std::memory_order_relaxed);
  meta->node = node;
  meta->created_at = where;
  meta->created = clock::now();
  const NodeMeta* parent_meta = parent_signal != nullptr ? meta_of(parent_signal) : nullptr;
  meta->parent_id = parent_meta != nullptr ? parent_meta->id : 0;
  if (!name.empty()) {
    meta->name.assign(name);
    meta->named = true;
  } else if (parent_meta != nullptr) {
    meta->name = parent_meta->name;
  }
  if (parent != nullptr) {
    if (const TraceContext* trace = trace_context(*parent)) meta->trace = *trace;
  }
}

std::uint64_t id_of(const SignalNode* node) noexcept {
  const NodeMeta* meta = node != nullptr ? meta_of(node) : nullptr;
  return meta != nullptr ? meta->id : 0;
}

// The site of the last background()/todo() reported on this thread: a context made
// from it on the same line (with_cancel(background())) is the same mistake.
thread_local SourceLocation tls_fresh_root_site;

bool same_site(const SourceLocation& a, const SourceLocation& b) noexcept {
  return a.line() == b.line() && a.line() != 0 &&
         std::string_view(a.file_name()) == std::string_view(b.file_name());
}

std::string site_text(const SourceLocation& where) {
  std::string text = where.file_name();
  text += ':';
  text += std::to_string(where.line());
  return text;
}

}  // namespace

NodeMeta* meta_of(const SignalNode* node) noexcept {
  const Extras* extras = node->extras_.load(std::memory_order_acquire);
  return extras != nullptr ? extras->meta.load(std::memory_order_acquire) : nullptr;
}

std::uint64_t thread_hash() noexcept {
  return static_cast<std::uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()));
}

bool has_observers() noexcept { return (observe_flags() & kObserveObservers) != 0U; }

void recompute_observe_flags() noexcept {
  std::uint32_t flags = debug_flags();
  {
    std::lock_guard lock(g_observers_mutex);
    if (g_observers != nullptr && !g_observers->empty()) flags |= kObserveObservers;
  }
  if (g_tracking.load(std::memory_order_relaxed) > 0) flags |= kObserveTracking;
  g_observe_flags.store(flags, std::memory_order_relaxed);
}

void emit(Event& event) noexcept {
  if (!has_observers()) return;
  if (event.time == clock::time_point{}) event.time = clock::now();
  if (event.thread == 0) event.thread = thread_hash();
  const auto list = observers_snapshot();
  if (list != nullptr) deliver(*list, event);
}

namespace {
// Points the event's views at the strings the record owns (valid while it lives).
Event& bind_views(RecordedEvent& recorded) noexcept {
  recorded.event.name = recorded.name;
  recorded.event.component = recorded.component;
  recorded.event.detail = recorded.detail;
  recorded.event.trace = recorded.trace ? &*recorded.trace : nullptr;
  return recorded.event;
}
}  // namespace

void emit_recorded(RecordedEvent& recorded) noexcept { emit(bind_views(recorded)); }

void describe(RecordedEvent& recorded, const SignalNode* node) noexcept {
  Event& event = recorded.event;
  event.thread = thread_hash();
  const NodeMeta* meta = meta_of(node);
  if (meta != nullptr) {
    event.context_id = meta->id;
    event.parent_id = meta->parent_id;
    try {
      recorded.name = meta->name;
    } catch (...) {  // out of memory: the event goes without its name
    }
    recorded.trace = meta->trace;
  }
  const std::uint32_t state = node->state_.load(std::memory_order_acquire);
  if ((state & kDone) != 0U) {
    event.error = make_error_code(static_cast<errc>((state & kErrMask) >> kErrShift));
    event.cause = cause_of(const_cast<SignalNode*>(node));
  }
}

void track_created(SignalNode* node, const Context& parent, const SourceLocation& where,
                   std::string_view name, int handles) noexcept {
  const std::uint32_t flags = observe_flags();
  SignalNode* parent_signal = Access::signal(parent);
  // A root-less creation while the thread works for a request: the chain is cut.
  if ((flags & kObserveChains) != 0U && parent_signal == nullptr) {
    const NodeBase* parent_node = Access::node(parent);
    if (parent_node == nullptr || parent_node->kind_ == NodeKind::todo) {
      // background()/todo() on the same line already said so, with the same site.
      if (!same_site(std::exchange(tls_fresh_root_site, SourceLocation()), where)) {
        check_fresh_root(where, "a context made from a default-constructed one");
      }
    }
  }
  auto* meta = new (std::nothrow) NodeMeta();
  if (meta == nullptr) return;
  Extras* extras = extras_for(node);
  if (extras == nullptr) {
    delete meta;
    return;
  }
  try {
    fill_meta(meta, node, parent_signal, &parent, where, name);
  } catch (...) {
    delete meta;
    return;
  }
  // The node is not shared yet [O1]: plain read-modify-write of flags_ is safe.
  std::uint8_t node_flags = node->flags_.load(std::memory_order_relaxed) | kTracked;
  if (handles > 0 && (flags & kObserveLeaks) != 0U) {
    meta->cancel_handles.store(handles, std::memory_order_relaxed);
    node_flags |= kCountedHandles;
  }
  node->flags_.store(node_flags, std::memory_order_relaxed);
  extras->meta.store(meta, std::memory_order_release);
  registry_insert(meta);
  if ((flags & kObserveObservers) != 0U) {
    RecordedEvent created;
    created.event.kind = EventKind::created;
    created.event.time = meta->created;
    created.event.where = where;
    describe(created, node);
    emit_recorded(created);
  }
}

void release_meta(NodeMeta* meta) noexcept {
  if (meta == nullptr) return;
  {
    std::lock_guard lock(g_registry_mutex);
    if (meta->prev != nullptr) {
      meta->prev->next = meta->next;
    } else {
      g_registry = meta->next;
    }
    if (meta->next != nullptr) meta->next->prev = meta->prev;
    g_live.fetch_sub(1, std::memory_order_relaxed);
  }
  delete meta;
}

void note_ended(SignalNode* node) noexcept {
  NodeMeta* meta = meta_of(node);
  if (meta == nullptr) return;
  clock::rep expected = 0;
  const clock::rep now = clock::now().time_since_epoch().count();
  meta->ended.compare_exchange_strong(expected, now == 0 ? 1 : now, std::memory_order_relaxed);
}

namespace {
// The step buffer of the last observation on this thread, emptied but with its
// capacity: growing a fresh vector for every fan-out cost more than the recording.
thread_local std::vector<Step> tls_spare_steps;
constexpr std::size_t kSpareStepsKept = 1U << 16U;  // 1.5 MB per thread at most
}  // namespace

void begin_observation(Observation& obs, SignalNode* node, errc err,
                       const SourceLocation* where) noexcept {
  obs.outer = tls_observation;
  tls_observation = &obs;
  obs.steps.swap(tls_spare_steps);  // nested: the outer one holds it, this gets none
  obs.start = clock::now();
  obs.origin_id = id_of(node);
  if (NodeMeta* meta = meta_of(node)) meta->origin.store(obs.origin_id, std::memory_order_relaxed);
  obs.emit = has_observers();
  if (!obs.emit) return;
  try {
    RecordedEvent& canceled = obs.events.emplace_back();
    canceled.event.kind = EventKind::canceled;
    canceled.event.time = obs.start;
    canceled.event.origin_id = obs.origin_id;
    describe(canceled, node);
    canceled.event.error = make_error_code(err);
    if (where != nullptr) {
      canceled.event.where = *where;
    } else if (const NodeMeta* meta = meta_of(node)) {
      canceled.event.where = meta->created_at;  // a deadline: where it was set
    }
  } catch (...) {  // out of memory: this cancellation goes unrecorded
    obs.emit = false;
  }
}

namespace {
void record_step(Observation& obs, SignalNode* node, EventKind kind) noexcept {
  try {
    obs.steps.push_back(Step{node, clock::now(), kind});
    add_ref(node);  // kept until delivered: callbacks may drop every other handle
  } catch (...) {   // out of memory: this step goes unrecorded
  }
}
}  // namespace

void observe_propagated(Observation& obs, SignalNode* node) noexcept {
  NodeMeta* meta = meta_of(node);
  if (meta == nullptr) return;
  meta->origin.store(obs.origin_id, std::memory_order_relaxed);
  if (obs.emit) record_step(obs, node, EventKind::propagated);
}

void observe_party(Observation& obs, SignalNode* node) noexcept {
  if (obs.emit && meta_of(node) != nullptr) record_step(obs, node, EventKind::observed);
}

void end_observation(Observation& obs) noexcept {
  tls_observation = obs.outer;
  const auto list = (obs.events.empty() && obs.steps.empty()) ? nullptr : observers_snapshot();
  // Both lists are in time order: deliver them merged, so observers see the story
  // in the order it happened.
  RecordedEvent step_event;
  std::size_t e = 0;
  std::size_t k = 0;
  while (e < obs.events.size() || k < obs.steps.size()) {
    const bool take_step = k < obs.steps.size() &&
                           (e == obs.events.size() || obs.steps[k].time < obs.events[e].event.time);
    RecordedEvent* recorded = nullptr;
    if (take_step) {
      const Step& step = obs.steps[k];
      step_event.event = Event{};
      step_event.event.kind = step.kind;
      step_event.event.time = step.time;
      step_event.event.delay = step.time - obs.start;
      step_event.event.origin_id = obs.origin_id;
      step_event.name.clear();
      step_event.trace.reset();
      describe(step_event, step.node);
      recorded = &step_event;
    } else {
      recorded = &obs.events[e];
    }
    if (list != nullptr) deliver(*list, bind_views(*recorded));
    if (take_step) {
      release(obs.steps[k].node);
      ++k;
    } else {
      ++e;
    }
  }
  obs.steps.clear();
  if (obs.steps.capacity() <= kSpareStepsKept &&
      obs.steps.capacity() > tls_spare_steps.capacity()) {
    obs.steps.swap(tls_spare_steps);
  }
}

void cancel_handle_copied(SignalNode* node) noexcept {
  if (NodeMeta* meta = meta_of(node)) meta->cancel_handles.fetch_add(1, std::memory_order_relaxed);
}

void cancel_handle_dropped(SignalNode* node) noexcept {
  NodeMeta* meta = meta_of(node);
  // acq_rel: the last drop must see every other handle's cancel() (a done node).
  if (meta == nullptr || meta->cancel_handles.fetch_sub(1, std::memory_order_acq_rel) != 1) {
    return;
  }
  if ((node->state_.load(std::memory_order_acquire) & kDone) != 0U) return;
  const std::optional<clock::time_point> deadline = deadline_of(node);
  const clock::time_point now = clock::now();
  if (deadline && *deadline - now < lost_cancel_min_remaining()) return;
  try {
    Finding finding;
    finding.kind = FindingKind::lost_cancel;
    finding.where = meta->created_at;
    finding.context_id = meta->id;
    finding.name = meta->name;
    std::string text = "lost cancel: every cancel handle of context #" + std::to_string(meta->id);
    if (!meta->name.empty()) text += " '" + meta->name + "'";
    text += " created at " + site_text(meta->created_at) + " was dropped while it was live (";
    text +=
        deadline
            ? "its deadline is " +
                  std::to_string(
                      std::chrono::duration_cast<std::chrono::seconds>(*deadline - now).count()) +
                  " s away"
            : std::string("no deadline");
    text += "): call cancel() when the work ends";
    finding.message = std::move(text);
    add_finding(std::move(finding));
  } catch (...) {
  }
}

void check_fresh_root(const SourceLocation& where, const char* what) noexcept {
  if ((observe_flags() & kObserveChains) == 0U) return;
  const ContextScope* scope = current_scope();
  if (scope == nullptr || scope->detached()) return;
  tls_fresh_root_site = where;
  try {
    Finding finding;
    finding.kind = FindingKind::broken_chain;
    finding.where = where;
    finding.other_where = scope->where();
    const SignalNode* signal = Access::signal(scope->context());
    finding.context_id = id_of(signal);
    if (signal != nullptr) {
      if (const NodeMeta* meta = meta_of(signal)) finding.name = meta->name;
    }
    std::string text = "broken chain: ";
    text += what;
    text += " at " + site_text(where) + " while the thread works for context #" +
            std::to_string(finding.context_id);
    if (!finding.name.empty()) text += " '" + finding.name + "'";
    text += " (scope opened at " + site_text(scope->where()) +
            "): work started here is not cancelled with the request; derive from the "
            "current context instead";
    finding.message = std::move(text);
    add_finding(std::move(finding));
  } catch (...) {
  }
}

void sweep_lingering_contexts(clock::time_point now) noexcept {
  std::vector<Finding> found;
  {
    std::lock_guard lock(g_registry_mutex);
    for (NodeMeta* meta = g_registry; meta != nullptr; meta = meta->next) {
      const clock::rep ended = meta->ended.load(std::memory_order_relaxed);
      if (ended == 0) continue;
      const clock::duration age = now - clock::time_point(clock::duration(ended));
      if (age < linger_bound() || meta->reported.exchange(true)) continue;
      try {
        Finding& finding = found.emplace_back();
        finding.kind = FindingKind::lingering_context;
        finding.where = meta->created_at;
        finding.context_id = meta->id;
        finding.name = meta->name;
        finding.age = age;
        finding.message =
            "lingering context: #" + std::to_string(meta->id) +
            (meta->name.empty() ? std::string() : " '" + meta->name + "'") + " created at " +
            site_text(meta->created_at) + " ended " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(age).count()) +
            " ms ago and is still referenced (a Context copy kept after the work ended)";
      } catch (...) {
      }
    }
  }
  for (Finding& finding : found) add_finding(std::move(finding));
}

}  // namespace detail

using detail::Access;

std::string_view to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::created:
      return "created";
    case EventKind::canceled:
      return "canceled";
    case EventKind::propagated:
      return "propagated";
    case EventKind::observed:
      return "observed";
    case EventKind::component_signal:
      return "component_signal";
    case EventKind::component_cleanup:
      return "component_cleanup";
    case EventKind::cleanup_report:
      return "cleanup_report";
    case EventKind::blocking_abandoned:
      return "blocking_abandoned";
    case EventKind::lease_lingering:
      return "lease_lingering";
    case EventKind::finding:
      return "finding";
  }
  return "unknown";
}

void ObserverRegistration::reset() noexcept {
  if (id_ == 0) return;
  std::shared_ptr<detail::ObserverEntry> removed;
  {
    std::lock_guard lock(detail::g_observers_mutex);
    if (detail::g_observers != nullptr) {
      try {
        auto next = std::make_shared<detail::ObserverList>();
        for (const auto& entry : *detail::g_observers) {
          if (entry->id == id_) {
            removed = entry;
          } else {
            next->push_back(entry);
          }
        }
        detail::g_observers = std::move(next);
      } catch (...) {
        // Out of memory: keep it in the list, unreachable by id; it stays harmless.
      }
    }
  }
  id_ = 0;
  detail::recompute_observe_flags();
  if (removed == nullptr) return;
  // Snapshots taken before the removal may still call it: wait for them to leave.
  while (removed->inside.load(std::memory_order_acquire) != 0) std::this_thread::yield();
}

ObserverRegistration add_observer(std::shared_ptr<Observer> observer) {
  if (observer == nullptr) throw std::invalid_argument("ctxpp::add_observer: null observer");
  auto entry = std::make_shared<detail::ObserverEntry>();
  entry->observer = std::move(observer);
  std::uint64_t id = 0;
  {
    std::lock_guard lock(detail::g_observers_mutex);
    auto next = detail::g_observers != nullptr
                    ? std::make_shared<detail::ObserverList>(*detail::g_observers)
                    : std::make_shared<detail::ObserverList>();
    id = detail::g_next_observer_id++;
    entry->id = id;
    next->push_back(std::move(entry));
    detail::g_observers = std::move(next);
  }
  detail::recompute_observe_flags();
  return ObserverRegistration(id);
}

void set_tracking(bool on) noexcept {
  detail::g_tracking.fetch_add(on ? 1 : -1, std::memory_order_relaxed);
  detail::recompute_observe_flags();
}

bool observing() noexcept { return detail::observe_flags() != 0U; }

Context with_name(const Context& parent, std::string_view name, SourceLocation where) {
  auto* node = detail::new_child<detail::SignalNode>(parent);
  detail::track_created(node, parent, where, name, 0);
  detail::attach(Access::signal(parent), node);
  return Access::adopt(node, node);
}

std::uint64_t context_id(const Context& ctx) noexcept {
  detail::SignalNode* node = Access::signal(ctx);
  if (node == nullptr) return 0;
  if (const detail::NodeMeta* meta = detail::meta_of(node)) return meta->id;
  detail::Extras* extras = detail::extras_for(node);
  auto* meta = new (std::nothrow) detail::NodeMeta();
  if (extras == nullptr || meta == nullptr) {
    delete meta;
    return 0;
  }
  try {
    detail::fill_meta(meta, node, detail::signal_of(node->parent_), nullptr, {}, {});
  } catch (...) {
    delete meta;
    return 0;
  }
  detail::NodeMeta* expected = nullptr;
  // acq_rel: publish the record; on failure, read the winner's.
  if (!extras->meta.compare_exchange_strong(expected, meta, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
    delete meta;
    return expected->id;
  }
  detail::registry_insert(meta);
  return meta->id;
}

std::string context_name(const Context& ctx) {
  // Contexts made while nobody observed have no record: the name is further up.
  for (const detail::SignalNode* node = Access::signal(ctx); node != nullptr;
       node = detail::signal_of(node->parent_)) {
    const detail::NodeMeta* meta = detail::meta_of(node);
    if (meta != nullptr && !meta->name.empty()) return meta->name;
  }
  return {};
}

std::size_t live_tracked_contexts() noexcept {
  return detail::g_live.load(std::memory_order_relaxed);
}

// --- component scopes ----------------------------------------------------------------

struct detail::ComponentRecord final : detail::CallbackBase {
  std::string_view name;
  SourceLocation where;
  detail::SignalNode* node = nullptr;
  bool registered = false;
  std::atomic<clock::rep> signaled{0};
  std::atomic<bool> reported{false};
  ComponentRecord* prev = nullptr;  // scope registry, guarded by g_scopes_mutex
  ComponentRecord* next = nullptr;

  clock::time_point signaled_time() const noexcept {
    return clock::time_point(clock::duration(signaled.load(std::memory_order_acquire)));
  }
};

namespace detail {
namespace {
std::mutex g_scopes_mutex;
ComponentRecord* g_scopes = nullptr;  // guarded by g_scopes_mutex

void record_signal(ComponentRecord* impl, clock::time_point now = clock::now()) noexcept {
  impl->signaled.store(now.time_since_epoch().count(), std::memory_order_release);
  Observation* obs = tls_observation;
  const bool inside = obs != nullptr && obs->emit;
  if (!inside && !has_observers()) return;
  try {
    RecordedEvent local;
    RecordedEvent& recorded = inside ? obs->events.emplace_back() : local;
    recorded.event.kind = EventKind::component_signal;
    recorded.event.time = now;
    recorded.event.where = impl->where;
    recorded.component.assign(impl->name);
    describe(recorded, impl->node);
    if (inside) {
      recorded.event.origin_id = obs->origin_id;
      recorded.event.delay = now - obs->start;
    } else {
      // Seen after the propagation's own record (see ~ComponentScope): the origin as
      // the propagation noted it, no delay.
      if (const NodeMeta* meta = meta_of(impl->node)) {
        recorded.event.origin_id = meta->origin.load(std::memory_order_relaxed);
      }
      emit_recorded(recorded);
    }
  } catch (...) {
  }
}

void fire_component(CallbackBase* base) noexcept {
  record_signal(static_cast<ComponentRecord*>(base));
}
}  // namespace

void sweep_lingering_scopes(clock::time_point now) noexcept {
  std::vector<Finding> found;
  {
    std::lock_guard lock(g_scopes_mutex);
    for (ComponentRecord* impl = g_scopes; impl != nullptr; impl = impl->next) {
      if (impl->signaled.load(std::memory_order_acquire) == 0) continue;
      const clock::duration age = now - impl->signaled_time();
      if (age < linger_bound() || impl->reported.exchange(true)) continue;
      try {
        Finding& finding = found.emplace_back();
        finding.kind = FindingKind::lingering_scope;
        finding.where = impl->where;
        finding.context_id = id_of(impl->node);
        finding.name.assign(impl->name);
        finding.age = age;
        finding.message =
            "lingering component: '" + finding.name + "' (scope at " + site_text(impl->where) +
            ") saw its context end " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(age).count()) +
            " ms ago and has not finished its cleanup";
      } catch (...) {
      }
    }
  }
  for (Finding& finding : found) add_finding(std::move(finding));
}
}  // namespace detail

ComponentScope::ComponentScope(const Context& ctx, std::string_view name, SourceLocation where)
    : scope_(ctx, where) {
  detail::SignalNode* node = Access::signal(ctx);
  if (node == nullptr || detail::observe_flags() == 0U) return;
  impl_ = std::make_unique<detail::ComponentRecord>();
  impl_->name = name;
  impl_->where = where;
  impl_->node = node;  // kept alive by scope_'s copy of ctx
  impl_->fire_ = &detail::fire_component;
  {
    std::lock_guard lock(detail::g_scopes_mutex);
    impl_->next = detail::g_scopes;
    if (detail::g_scopes != nullptr) detail::g_scopes->prev = impl_.get();
    detail::g_scopes = impl_.get();
  }
  impl_->registered = detail::register_callback(node, impl_.get());
  if (!impl_->registered) detail::record_signal(impl_.get());  // ended already
}

ComponentScope::~ComponentScope() {
  if (impl_ == nullptr) return;
  if (impl_->registered) detail::deregister_callback(impl_->node, impl_.get());
  // TRICKY: done() turns true before the callbacks run, so a component that saw the
  // end through done() or wait() can close its scope before the canceller reached the
  // scope's callback, which then never runs. The component did see the signal: date it
  // at the context's end when the record knows it.
  if (impl_->signaled.load(std::memory_order_acquire) == 0 &&
      (impl_->node->state_.load(std::memory_order_acquire) & detail::kDone) != 0U) {
    clock::time_point ended = clock::now();
    if (const detail::NodeMeta* meta = detail::meta_of(impl_->node)) {
      const clock::rep at = meta->ended.load(std::memory_order_relaxed);
      if (at != 0) ended = clock::time_point(clock::duration(at));
    }
    detail::record_signal(impl_.get(), ended);
  }
  {
    std::lock_guard lock(detail::g_scopes_mutex);
    if (impl_->prev != nullptr) {
      impl_->prev->next = impl_->next;
    } else {
      detail::g_scopes = impl_->next;
    }
    if (impl_->next != nullptr) impl_->next->prev = impl_->prev;
  }
  if (impl_->signaled.load(std::memory_order_acquire) == 0) return;
  const clock::time_point now = clock::now();
  const clock::duration cleanup = now - impl_->signaled_time();
  if ((detail::debug_flags() & detail::kObserveLeaks) != 0U && cleanup >= detail::linger_bound() &&
      !impl_->reported.exchange(true)) {
    try {
      Finding finding;
      finding.kind = FindingKind::lingering_scope;
      finding.where = impl_->where;
      finding.context_id = detail::id_of(impl_->node);
      finding.name.assign(impl_->name);
      finding.age = cleanup;
      finding.message =
          "lingering component: '" + finding.name + "' (scope at " +
          detail::site_text(impl_->where) + ") took " +
          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(cleanup).count()) +
          " ms from its context's end to the end of its cleanup";
      detail::add_finding(std::move(finding));
    } catch (...) {
    }
  }
  if (!detail::has_observers()) return;
  try {
    detail::RecordedEvent recorded;
    recorded.event.kind = EventKind::component_cleanup;
    recorded.event.time = now;
    recorded.event.delay = cleanup;
    recorded.event.where = impl_->where;
    recorded.component.assign(impl_->name);
    detail::describe(recorded, impl_->node);
    // The same origin as the signal, so the cleanup joins its request.
    if (const detail::NodeMeta* meta = detail::meta_of(impl_->node)) {
      recorded.event.origin_id = meta->origin.load(std::memory_order_relaxed);
    }
    detail::emit_recorded(recorded);
  } catch (...) {
  }
}

std::optional<clock::time_point> ComponentScope::signaled_at() const noexcept {
  if (impl_ == nullptr || impl_->signaled.load(std::memory_order_acquire) == 0) return std::nullopt;
  return impl_->signaled_time();
}

// --- live view -----------------------------------------------------------------------

std::vector<ContextInfo> context_tree() {
  std::vector<ContextInfo> all;
  const clock::time_point now = clock::now();
  {
    std::lock_guard lock(detail::g_registry_mutex);
    for (detail::NodeMeta* meta = detail::g_registry; meta != nullptr; meta = meta->next) {
      ContextInfo& info = all.emplace_back();
      info.id = meta->id;
      info.parent_id = meta->parent_id;
      info.name = meta->name;
      info.created_at = meta->created_at;
      info.age = now - meta->created;
      // The node outlives its record's stay in the registry [O2].
      info.deadline = detail::deadline_of(meta->node);
      const std::uint32_t state = meta->node->state_.load(std::memory_order_acquire);
      info.done = (state & detail::kDone) != 0U;
      if (info.done) {
        info.error =
            make_error_code(static_cast<errc>((state & detail::kErrMask) >> detail::kErrShift));
        info.cause = detail::cause_of(meta->node);
      }
    }
  }
  // Parents before children: depth-first from the records whose parent is not listed.
  std::unordered_map<std::uint64_t, std::vector<std::size_t>> children;
  std::unordered_map<std::uint64_t, std::size_t> index;
  for (std::size_t i = 0; i < all.size(); ++i) index.emplace(all[i].id, i);
  std::vector<std::size_t> roots;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i].parent_id != 0 && index.count(all[i].parent_id) != 0) {
      children[all[i].parent_id].push_back(i);
    } else {
      roots.push_back(i);
    }
  }
  const auto by_id = [&](std::size_t a, std::size_t b) { return all[a].id < all[b].id; };
  std::sort(roots.begin(), roots.end(), by_id);
  std::vector<ContextInfo> ordered;
  ordered.reserve(all.size());
  std::vector<std::size_t> stack(roots.rbegin(), roots.rend());
  while (!stack.empty()) {
    const std::size_t i = stack.back();
    stack.pop_back();
    auto found = children.find(all[i].id);
    if (found != children.end()) {
      std::sort(found->second.begin(), found->second.end(), by_id);
      stack.insert(stack.end(), found->second.rbegin(), found->second.rend());
    }
    ordered.push_back(std::move(all[i]));
  }
  return ordered;
}

namespace {

std::string state_name(const ContextInfo& info) {
  if (!info.done) return "live";
  return info.error == errc::deadline_exceeded ? "deadline_exceeded" : "canceled";
}

long long milliseconds(clock::duration d) {
  return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

}  // namespace

std::string render_context_tree_text() {
  const std::vector<ContextInfo> tree = context_tree();
  std::unordered_map<std::uint64_t, int> depth;
  std::ostringstream out;
  out << tree.size() << " tracked contexts\n";
  const clock::time_point now = clock::now();
  for (const ContextInfo& info : tree) {
    auto parent = depth.find(info.parent_id);
    const int level = parent != depth.end() ? parent->second + 1 : 0;
    depth[info.id] = level;
    out << std::string(static_cast<std::size_t>(level) * 2, ' ') << '#' << info.id;
    if (!info.name.empty()) out << " '" << info.name << "'";
    out << ' ' << state_name(info) << " age " << milliseconds(info.age) << " ms";
    if (info.deadline) {
      if (*info.deadline == clock::time_point::max()) {
        out << " deadline never";
      } else {
        out << " deadline in " << milliseconds(*info.deadline - now) << " ms";
      }
    }
    if (info.done && info.cause != info.error) out << " cause " << info.cause.message();
    out << " at " << info.created_at.file_name() << ':' << info.created_at.line() << '\n';
  }
  return out.str();
}

std::string render_context_tree_json() {
  const std::vector<ContextInfo> tree = context_tree();
  const clock::time_point now = clock::now();
  std::string out = "{\"contexts\":[";
  bool first = true;
  for (const ContextInfo& info : tree) {
    if (!first) out += ',';
    first = false;
    out += "{\"id\":" + std::to_string(info.id) + ",\"parent\":" + std::to_string(info.parent_id) +
           ",\"name\":";
    detail::append_json_string(out, info.name);
    out += ",\"age_ms\":" + std::to_string(milliseconds(info.age)) + ",\"deadline_in_ms\":";
    if (info.deadline && *info.deadline != clock::time_point::max()) {
      out += std::to_string(milliseconds(*info.deadline - now));
    } else {
      out += "null";
    }
    out += ",\"state\":\"" + state_name(info) + "\",\"cause\":";
    if (info.done) {
      detail::append_json_string(out, info.cause.message());
    } else {
      out += "null";
    }
    out += ",\"created_at\":";
    detail::append_json_string(out, std::string(info.created_at.file_name()) + ":" +
                                        std::to_string(info.created_at.line()));
    out += '}';
  }
  out += "]}";
  return out;
}

// --- trace identity --------------------------------------------------------------------

namespace {
const Key<TraceContext> kTraceContextKey("ctxpp.trace_context");
}  // namespace

Context with_trace_context(const Context& parent, const TraceContext& trace) {
  return with_value(parent, kTraceContextKey, trace);
}

const TraceContext* trace_context(const Context& ctx) noexcept {
  return ctx.value(kTraceContextKey);
}

}  // namespace ctxpp
