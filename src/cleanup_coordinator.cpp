// CleanupCoordinator: releases a context's resources once it ends, critical first,
// non-blocking first, and every blocking release alone on the background cleaner.
//
// Phases of one cleanup (begin() is the only entry, whoever calls it first):
//   A. under the lock: take the registry, stamp `started`, fix the deadline and make
//      the release context; then, unlocked, call every try_release in release order
//      (priority class, then registration order) and settle what they released.
//   B. stamp `nonblocking_done`, count the remaining releases as outstanding, and
//      hand them to one task of the background executor, which dispatches each, in
//      the same order, as its own task there. Handing out from that task keeps the
//      thread starts of an elastic pool (~0.1 ms each, 100 for a C1 request) off
//      ctxpp's callback executor, where they held up the next cancellation's
//      after_func by ~3 ms (C1 bench).
//   C. finalise: once nothing is being tried or dispatched and every blocking
//      release has returned or the deadline has passed; a release still running
//      then is recorded timed_out and left to finish alone.
//
// Invariants (all guarded by State::mutex):
//  1. A record, once settled, never changes; once `final` is set no record does,
//     so the report can be read without the lock from then on (on_report does).
//  2. `final` requires: started, !initial_phase, adding == 0, and either
//     unsettled_blocking == 0 or the deadline has passed; not that phase B's
//     hand-out task has run (behind a saturated pool it may run after the
//     deadline: its releases are timed_out then). Every place that can
//     make one of these true calls finalise_if_ready(): the end of phase B, the end
//     of an add(), a returning release, the deadline's after_func, and a waiter
//     whose bounded sleep reached the deadline (so no executor is needed for it).
//  3. No user code runs under the lock: not a release function, not on_report, not
//     the destructor of a release function's captures (functions are destroyed
//     after unlocking), not a callback on the release context (cancelled unlocked).
//  4. Everything a background task touches is owned by the task: the State through
//     a shared_ptr, its release function and context by value. A release still
//     running after the coordinator and its owner are gone touches no freed memory.
//  5. Before cleanup begins, records and slots hold one default-constructed entry
//     per registered resource, made by add() (which may throw) and dropped by
//     remove(). begin() only fills them in release order: it runs where nothing
//     can be thrown, and on the cancel path, where first touching the fresh pages
//     of a large vector cost ~0.6 ms for 1,000 records (measured on the C1 bench).
#include "ctxpp/cleanup_coordinator.hpp"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "ctxpp/after_func.hpp"
#include "ctxpp/failure.hpp"
#include "observe_internal.hpp"
#include "tree.hpp"

namespace ctxpp {
namespace {

// The report as one event, for observers (ctxpp/observe.hpp).
void publish_report(const CleanupReport& report) noexcept {
  try {
    detail::RecordedEvent recorded;
    recorded.event.kind = EventKind::cleanup_report;
    recorded.event.time = report.finished;
    recorded.event.delay = report.finished - report.started;
    recorded.component = "cleanup";
    recorded.detail = std::to_string(report.records.size()) +
                      " resources: " + std::to_string(report.count(ReleaseOutcome::released)) +
                      " released, " + std::to_string(report.count(ReleaseOutcome::late)) +
                      " late, " + std::to_string(report.count(ReleaseOutcome::timed_out)) +
                      " timed out, " + std::to_string(report.count(ReleaseOutcome::failed)) +
                      " failed";
    detail::emit_recorded(recorded);
  } catch (...) {  // out of memory: the report still goes to on_report
  }
}

}  // namespace

namespace {

constexpr int kPriorityClasses = 3;

// Release order of a priority; an out-of-range value counts as background.
int priority_rank(Priority priority) noexcept {
  const int rank = static_cast<int>(priority);
  return rank >= 0 && rank < kPriorityClasses ? rank : kPriorityClasses - 1;
}

// The shared background cleaner. Leaked on purpose: a timed-out release may still
// be running (or queued) during static destruction and must find its pool intact.
Executor& shared_cleaner() {
  static auto* pool = new ThreadPool(256);
  return *pool;
}

// Grows v geometrically to hold `needed` elements (reserve(n) alone is exact in
// libstdc++ and would make n adds quadratic).
template <class T>
void reserve_for(std::vector<T>& v, std::size_t needed) {
  if (v.capacity() < needed) v.reserve(std::max(needed, 2 * v.capacity()));
}

// What a release function did.
struct Attempt {
  bool released = false;
  std::exception_ptr error;
  std::string message;
};

template <class F>
Attempt attempt(F&& call) noexcept {
  Attempt result;
  try {
    result.released = std::forward<F>(call)();
  } catch (const std::exception& e) {
    result.error = std::current_exception();
    result.message = e.what();
  } catch (...) {
    result.error = std::current_exception();
    result.message = "unknown exception";
  }
  return result;
}

}  // namespace

std::size_t CleanupReport::count(ReleaseOutcome outcome) const noexcept {
  return static_cast<std::size_t>(
      std::count_if(records.begin(), records.end(),
                    [outcome](const CleanupRecord& record) { return record.outcome == outcome; }));
}

bool CleanupReport::clean() const noexcept {
  return std::all_of(records.begin(), records.end(), [](const CleanupRecord& record) {
    return record.outcome == ReleaseOutcome::released || record.outcome == ReleaseOutcome::late;
  });
}

struct CleanupCoordinator::State : std::enable_shared_from_this<State> {
  // Per record, what finalisation needs to settle it as timed_out.
  struct Slot {
    clock::duration try_took{};           // time spent in try_release
    clock::time_point release_started{};  // set when its blocking release began
    bool settled = false;
  };

  State(const Context& ctx, CleanupOptions options)
      : owner(ctx),
        budget(std::max(options.background_timeout, clock::duration::zero())),
        background(options.background != nullptr ? options.background : &shared_cleaner()),
        on_report(std::move(options.on_report)) {}

  // Immutable after construction.
  const Context owner;
  const clock::duration budget;
  Executor* const background;
  const std::function<void(const CleanupReport&)> on_report;

  // Set once by the constructor of the coordinator, before it is shared.
  AfterFuncHandle owner_watch;

  mutable std::mutex mutex;
  // Notified when cleanup begins (waiters learn the deadline) and when the final
  // report has been delivered.
  mutable std::condition_variable changed;

  // Guarded by mutex.
  Id next_id = 1;
  std::map<Id, Resource> registered;  // before cleanup began; ordered by id
  bool started = false;
  bool initial_phase = false;          // phases A and B of the registered resources running
  int adding = 0;                      // add() calls between reserving a record and dispatch
  std::size_t unsettled_blocking = 0;  // reported blocking releases without outcome
  std::size_t blocking_running = 0;    // tasks dispatched and not returned (any kind)
  std::size_t in_flight = 0;           // taken from the registry, not returned
  bool deadline_passed = false;
  bool final = false;
  bool delivered = false;  // on_report has returned; waiters may go
  std::thread::id reporter;
  clock::time_point deadline{};
  clock::time_point last_settled{};
  Context release_ctx;
  CancelFunc release_cancel;
  AfterFuncHandle deadline_watch;
  std::exception_ptr setup_error;  // the release context could not be made
  CleanupReport report;
  std::vector<Slot> slots;  // parallel to report.records

  // ---- phases ---------------------------------------------------------------

  void begin() noexcept;
  void dispatch(std::size_t slot, std::function<void(const Context&)> release, const Context& ctx,
                bool reported) noexcept;
  void hand_out(std::map<Id, Resource>& taken, const Context& ctx) noexcept;
  void dispatch_all(std::map<Id, Resource>& taken, const Context& ctx) noexcept;
  void run_release(std::size_t slot, const std::function<void(const Context&)>& release,
                   const Context& ctx, bool reported) noexcept;
  Id add_during_cleanup(std::unique_lock<std::mutex>& lock, Resource resource, Id id);
  void release_unreported(Resource resource);
  bool finalise_if_ready(std::unique_lock<std::mutex>& lock) noexcept;
  bool wait_until(std::unique_lock<std::mutex>& lock, clock::time_point until) noexcept;

  void settle(std::size_t slot, ReleaseOutcome outcome, clock::time_point finished,
              clock::duration took, Attempt* failure) noexcept {
    Slot& state = slots[slot];
    if (state.settled) return;
    state.settled = true;
    CleanupRecord& record = report.records[slot];
    record.outcome = outcome;
    record.finished = finished;
    record.took = took;
    if (failure != nullptr) {
      record.error = std::move(failure->error);
      record.error_message = std::move(failure->message);
    }
    last_settled = std::max(last_settled, finished);
  }

  // Appends an unsettled record for a resource added during cleanup. Errors:
  // std::bad_alloc, with nothing appended.
  std::size_t reserve_record(Resource& resource) {
    reserve_for(report.records, report.records.size() + 1);
    reserve_for(slots, slots.size() + 1);
    report.records.push_back(CleanupRecord{});
    slots.push_back(Slot{});
    CleanupRecord& record = report.records.back();
    record.name = std::move(resource.name);
    record.priority = resource.priority;
    return report.records.size() - 1;
  }
};

void CleanupCoordinator::State::begin() noexcept {
  std::map<Id, Resource> taken;
  {
    std::unique_lock lock(mutex);
    if (started) return;
    started = true;
    initial_phase = true;
    const clock::time_point now = clock::now();
    report.started = now;
    deadline = detail::saturating_add(now, budget);
    try {
      // Made under the lock so that an add() racing with us finds it ready; no
      // user code runs here (the owner's values are shared, not copied).
      auto [ctx, cancel] = with_deadline_cause(without_cancel(owner), deadline,
                                               make_error_code(failure::budget_exceeded));
      release_ctx = std::move(ctx);
      release_cancel = std::move(cancel);
      deadline_watch = after_func(release_ctx, [weak = weak_from_this()] {
        if (auto self = weak.lock()) {
          std::unique_lock deadline_lock(self->mutex);
          self->deadline_passed = true;
          self->finalise_if_ready(deadline_lock);
        }
      });
    } catch (...) {
      setup_error = std::current_exception();
    }
    taken = std::move(registered);
    registered.clear();      // a moved-from map is only valid-but-unspecified
    std::size_t filled = 0;  // records[0, taken.size()) exist already (invariant 5)
    for (int rank = 0; rank < kPriorityClasses; ++rank) {
      for (auto& entry : taken) {
        if (priority_rank(entry.second.priority) != rank) continue;
        CleanupRecord& record = report.records[filled++];
        record.name = std::move(entry.second.name);
        record.priority = entry.second.priority;
      }
    }
    in_flight += taken.size();
  }
  changed.notify_all();  // waiters now have a deadline to wake at

  // Phase A: every try_release, in release order. Slots of the initial resources
  // are 0..n-1 in that order (no record exists before cleanup begins).
  std::size_t slot = 0;
  for (int rank = 0; rank < kPriorityClasses; ++rank) {
    for (auto& entry : taken) {
      Resource& resource = entry.second;  // not a binding: lambdas capture it (clang 14)
      if (priority_rank(resource.priority) != rank) continue;
      const std::size_t my_slot = slot++;
      if (!resource.try_release) continue;
      const clock::time_point tried = clock::now();
      Attempt result = attempt([&] { return resource.try_release(); });
      const clock::time_point ended = clock::now();
      resource.try_release = nullptr;  // its captures go now, unlocked (invariant 3)
      const bool declined_for_good = !result.released && !result.error && !resource.release;
      if (result.released || result.error || declined_for_good) resource.release = nullptr;
      std::lock_guard lock(mutex);
      if (result.released) {
        settle(my_slot, ReleaseOutcome::released, ended, ended - tried, nullptr);
      } else if (result.error) {
        settle(my_slot, ReleaseOutcome::failed, ended, ended - tried, &result);
      } else if (declined_for_good) {
        result.message = "try_release declined and no release function is set";
        settle(my_slot, ReleaseOutcome::failed, ended, ended - tried, &result);
      } else {
        slots[my_slot].try_took = ended - tried;
        continue;
      }
      --in_flight;
    }
  }

  // Phase B: count the blocking releases as outstanding, then hand them out.
  std::unique_lock lock(mutex);
  report.nonblocking_done = clock::now();
  last_settled = std::max(last_settled, report.nonblocking_done);
  std::size_t blocking = 0;
  slot = 0;
  for (int rank = 0; rank < kPriorityClasses; ++rank) {
    for (auto& entry : taken) {
      Resource& resource = entry.second;
      if (priority_rank(resource.priority) != rank) continue;
      const std::size_t my_slot = slot++;
      if (!resource.release) continue;
      report.records[my_slot].blocking = true;
      if (setup_error) {
        Attempt failure{false, setup_error, "could not make the release context"};
        settle(my_slot, ReleaseOutcome::failed, clock::now(), slots[my_slot].try_took, &failure);
        --in_flight;
        continue;  // its function dies unlocked with taken, below
      }
      ++blocking;
    }
  }
  unsettled_blocking += blocking;
  blocking_running += blocking;
  const Context ctx = setup_error ? Context() : release_ctx;
  lock.unlock();
  if (blocking > 0) hand_out(taken, ctx);
  lock.lock();
  initial_phase = false;
  lock.unlock();
  taken.clear();  // what is left (functions already run) dies unlocked (invariant 3)
  lock.lock();
  finalise_if_ready(lock);
}

void CleanupCoordinator::State::hand_out(std::map<Id, Resource>& taken,
                                         const Context& ctx) noexcept {
  try {
    // Shared: an Executor task is a copyable std::function.
    auto resources = std::make_shared<std::map<Id, Resource>>(std::move(taken));
    try {
      background->execute([self = shared_from_this(), resources, ctx]() noexcept {
        self->dispatch_all(*resources, ctx);
      });
      return;
    } catch (...) {
      taken = std::move(*resources);  // refused: hand them out from here instead
    }
  } catch (...) {
    // No memory for the hand-out task: taken is intact; hand them out from here.
  }
  dispatch_all(taken, ctx);
}

void CleanupCoordinator::State::dispatch_all(std::map<Id, Resource>& taken,
                                             const Context& ctx) noexcept {
  // Slots follow the release order of phase A (invariant 5), recomputed the same way.
  std::size_t slot = 0;
  for (int rank = 0; rank < kPriorityClasses; ++rank) {
    for (auto& entry : taken) {
      Resource& resource = entry.second;
      if (priority_rank(resource.priority) != rank) continue;
      const std::size_t my_slot = slot++;
      if (resource.release) dispatch(my_slot, std::move(resource.release), ctx, true);
    }
  }
}

void CleanupCoordinator::State::dispatch(std::size_t slot,
                                         std::function<void(const Context&)> release,
                                         const Context& ctx, bool reported) noexcept {
  try {
    background->execute([self = shared_from_this(), slot, release = std::move(release), ctx,
                         reported]() noexcept { self->run_release(slot, release, ctx, reported); });
  } catch (...) {
    // Never accepted: it will never run. Recorded as the failure it is.
    Attempt failure{false, std::current_exception(), "the background executor refused it"};
    try {
      std::rethrow_exception(failure.error);
    } catch (const std::exception& e) {
      failure.message = std::string("the background executor refused it: ") + e.what();
    } catch (...) {
    }
    std::unique_lock lock(mutex);
    --blocking_running;
    --in_flight;
    if (reported && !final) {
      settle(slot, ReleaseOutcome::failed, clock::now(), slots[slot].try_took, &failure);
      --unsettled_blocking;
      finalise_if_ready(lock);
    }
  }
}

void CleanupCoordinator::State::run_release(std::size_t slot,
                                            const std::function<void(const Context&)>& release,
                                            const Context& ctx, bool reported) noexcept {
  const clock::time_point begun = clock::now();
  if (reported) {
    std::lock_guard lock(mutex);
    slots[slot].release_started = begun;
  }
  Attempt result = attempt([&] {
    release(ctx);
    return true;
  });
  const clock::time_point ended = clock::now();
  std::unique_lock lock(mutex);
  --blocking_running;
  --in_flight;
  if (!reported || final) return;  // timed out and already reported: nothing to touch
  const clock::duration took = slots[slot].try_took + (ended - begun);
  if (result.error) {
    settle(slot, ReleaseOutcome::failed, ended, took, &result);
  } else {
    settle(slot, ended > deadline ? ReleaseOutcome::late : ReleaseOutcome::released, ended, took,
           nullptr);
  }
  --unsettled_blocking;
  finalise_if_ready(lock);
}

bool CleanupCoordinator::State::finalise_if_ready(std::unique_lock<std::mutex>& lock) noexcept {
  if (!started || final || initial_phase || adding > 0) return false;
  if (clock::now() >= deadline) deadline_passed = true;
  if (unsettled_blocking > 0 && !deadline_passed) return false;
  if (unsettled_blocking > 0) {
    for (std::size_t slot = 0; slot < slots.size(); ++slot) {
      if (slots[slot].settled) continue;
      const clock::time_point release_started = slots[slot].release_started;
      clock::duration took = slots[slot].try_took;
      if (release_started != clock::time_point{} && release_started < deadline) {
        took += deadline - release_started;
      }
      settle(slot, ReleaseOutcome::timed_out, deadline, took, nullptr);
    }
    unsettled_blocking = 0;
  }
  report.finished = last_settled;
  final = true;
  reporter = std::this_thread::get_id();
  // With every release returned nobody uses the release context any more: end it
  // now so its timer entry goes at once. Otherwise it must end by its deadline, so
  // a running release sees deadline_exceeded and the budget_exceeded cause.
  const bool end_release_ctx = blocking_running == 0;
  AfterFuncHandle watch = end_release_ctx ? std::move(deadline_watch) : AfterFuncHandle();
  CancelFunc cancel = end_release_ctx ? std::move(release_cancel) : CancelFunc();
  lock.unlock();
  (void)watch.stop();
  cancel();  // unlocked: callbacks on the release context are user code (invariant 3)
  watch = AfterFuncHandle();
  cancel = CancelFunc();
  // The report is frozen (invariant 1): on_report reads it without the lock.
  if (detail::has_observers()) publish_report(report);
  if (on_report) on_report(report);
  lock.lock();
  delivered = true;
  changed.notify_all();
  return true;
}

bool CleanupCoordinator::State::wait_until(std::unique_lock<std::mutex>& lock,
                                           clock::time_point until) noexcept {
  for (;;) {
    // From inside on_report (which may wait, or destroy the coordinator) the
    // report is final but not yet delivered: waiting would wait for ourselves.
    if (delivered || (final && reporter == std::this_thread::get_id())) return true;
    const clock::time_point now = clock::now();
    // A waiter finalises at the deadline itself (invariant 2): the bound of wait()
    // and of the destructor then holds even if every executor thread is busy.
    if (started && !final && now >= deadline && finalise_if_ready(lock)) continue;
    if (now >= until) return false;
    clock::time_point wake = until;
    if (started && !final && deadline > now && deadline < wake) wake = deadline;
    if (wake == clock::time_point::max()) {
      changed.wait(lock);
    } else {
      changed.wait_until(lock, wake);
    }
  }
}

CleanupCoordinator::Id CleanupCoordinator::State::add_during_cleanup(
    std::unique_lock<std::mutex>& lock, Resource resource, Id id) {
  const std::size_t slot = reserve_record(resource);  // may throw: nothing changed yet
  ++adding;
  ++in_flight;
  lock.unlock();
  if (resource.try_release) {
    const clock::time_point tried = clock::now();
    Attempt result = attempt([&] { return resource.try_release(); });
    const clock::time_point ended = clock::now();
    resource.try_release = nullptr;
    const bool declined_for_good = !result.released && !result.error && !resource.release;
    if (result.released || result.error || declined_for_good) {
      resource.release = nullptr;
      if (declined_for_good) result.message = "try_release declined and no release function is set";
      lock.lock();
      settle(slot, result.released ? ReleaseOutcome::released : ReleaseOutcome::failed, ended,
             ended - tried, result.released ? nullptr : &result);
      --in_flight;
      --adding;
      finalise_if_ready(lock);
      return id;
    }
    lock.lock();
    slots[slot].try_took = ended - tried;
  } else {
    lock.lock();
  }
  report.records[slot].blocking = true;
  if (setup_error) {
    Attempt failure{false, setup_error, "could not make the release context"};
    settle(slot, ReleaseOutcome::failed, clock::now(), slots[slot].try_took, &failure);
    --in_flight;
  } else {
    ++unsettled_blocking;
    ++blocking_running;
    const Context ctx = release_ctx;
    lock.unlock();
    dispatch(slot, std::move(resource.release), ctx, true);
    lock.lock();
  }
  --adding;
  finalise_if_ready(lock);
  return id;
}

void CleanupCoordinator::State::release_unreported(Resource resource) {
  // The report was delivered already: same rules, a fresh budget from now, and no
  // record. The release context is made first, so a bad_alloc leaves nothing half done.
  auto [ctx, cancel] =
      with_timeout_cause(without_cancel(owner), budget, make_error_code(failure::budget_exceeded));
  (void)cancel;  // ends by its deadline; the timer entry goes then
  {
    std::lock_guard lock(mutex);
    ++in_flight;
  }
  if (resource.try_release) {
    const Attempt result = attempt([&] { return resource.try_release(); });
    resource.try_release = nullptr;
    if (result.released || result.error || !resource.release) {
      std::lock_guard lock(mutex);
      --in_flight;
      return;
    }
  }
  {
    std::lock_guard lock(mutex);
    ++blocking_running;
  }
  dispatch(0, std::move(resource.release), ctx, false);
}

// ---- public members ---------------------------------------------------------

CleanupCoordinator::CleanupCoordinator(const Context& ctx, CleanupOptions options)
    : state_(std::make_shared<State>(ctx, std::move(options))) {
  state_->owner_watch = after_func(ctx, [weak = std::weak_ptr<State>(state_)] {
    if (auto self = weak.lock()) self->begin();
  });
}

CleanupCoordinator::~CleanupCoordinator() {
  cleanup_now();
  std::unique_lock lock(state_->mutex);
  // Inside on_report (which may destroy the coordinator) this returns at once.
  (void)state_->wait_until(lock, clock::time_point::max());
}

CleanupCoordinator::Id CleanupCoordinator::add(Resource resource) {
  if (!resource.try_release && !resource.release) {
    throw std::invalid_argument("ctxpp::CleanupCoordinator::add: resource has no release function");
  }
  std::unique_lock lock(state_->mutex);
  const Id id = state_->next_id++;
  if (!state_->started) {
    // Its record and slot now, so begin() neither allocates nor faults (invariant 5).
    const std::size_t needed = state_->registered.size() + 1;
    reserve_for(state_->report.records, needed);
    reserve_for(state_->slots, needed);
    state_->report.records.emplace_back();
    state_->slots.emplace_back();
    try {
      state_->registered.emplace(id, std::move(resource));
    } catch (...) {
      state_->report.records.pop_back();
      state_->slots.pop_back();
      throw;
    }
    return id;
  }
  if (state_->final) {
    lock.unlock();
    state_->release_unreported(std::move(resource));
    return id;
  }
  return state_->add_during_cleanup(lock, std::move(resource), id);
}

bool CleanupCoordinator::remove(Id id) noexcept {
  std::map<Id, Resource>::node_type removed;  // destroyed after unlocking (invariant 3)
  std::lock_guard lock(state_->mutex);
  if (state_->started) return false;
  removed = state_->registered.extract(id);
  if (removed.empty()) return false;
  state_->report.records.pop_back();  // one default record per registered resource
  state_->slots.pop_back();
  return true;
}

bool CleanupCoordinator::dismiss() noexcept {
  std::map<Id, Resource> dismissed;  // destroyed after unlocking (invariant 3)
  std::lock_guard lock(state_->mutex);
  if (state_->started) return false;
  dismissed.swap(state_->registered);
  state_->report.records.clear();  // invariant 5: only default entries so far
  state_->slots.clear();
  return true;
}

void CleanupCoordinator::cleanup_now() noexcept {
  // TRICKY: begin() may end in on_report, which may destroy *this: from here on
  // only the local reference to the State is touched.
  const std::shared_ptr<State> state = state_;
  (void)state->owner_watch.stop();  // the registration leaves the owner's node now
  state->begin();
}

CleanupReport CleanupCoordinator::wait() const {
  std::unique_lock lock(state_->mutex);
  (void)state_->wait_until(lock, clock::time_point::max());
  return state_->report;
}

std::optional<CleanupReport> CleanupCoordinator::wait_for(clock::duration d) const {
  std::unique_lock lock(state_->mutex);
  if (!state_->wait_until(lock, detail::saturating_add(clock::now(), d))) return std::nullopt;
  return state_->report;
}

std::size_t CleanupCoordinator::pending() const noexcept {
  std::lock_guard lock(state_->mutex);
  return state_->registered.size() + state_->in_flight;
}

}  // namespace ctxpp
