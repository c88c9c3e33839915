// The pool's shared state: slots, the FIFO line of waiters, lease bookkeeping,
// lingering detection and the idle reaper.
//
// Invariants (under State::mutex):
// [1] size() = idle + leased + creating <= max_size, except while close() drains
//     (size only falls then).
// [2] A slot is in exactly one place: idle_, leased_, or handed to a waiter that has
//     not woken yet (then already in leased_: the server starts the lease).
// [3] Capacity is never lost: whenever a slot is destroyed or a creation fails while
//     waiters exist, the first waiter gets a permit to create (creating + 1).
// [4] A waiter's state leaves `waiting` exactly once, under the mutex; whoever moves
//     it (server, canceller, closer) unlinks it and notifies it.
#include "ctxpp/pool.hpp"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

#include "ctxpp/after_func.hpp"
#include "ctxpp/current.hpp"
#include "ctxpp/scoped_callback.hpp"
#include "observe_internal.hpp"

namespace ctxpp::detail {

namespace {

// A one-shot timer on ctxpp's own timer thread: a context with a deadline and an
// after_func on it (the function runs on the callback executor, never on the timer
// thread).
struct Timer {
  Context context;
  CancelFunc cancel;
  AfterFuncHandle watch;

  void arm(clock::duration delay, std::function<void()> f) {
    const DetachedScope detached;  // the pool's own clock, not the caller's request
    auto scope = with_timeout(background(), delay);
    watch = after_func(scope.ctx, std::move(f));
    context = std::move(scope.ctx);
    cancel = std::move(scope.cancel);
  }
  // Stops the function and waits for it if it runs now. Never call from inside it.
  void disarm() noexcept {
    (void)watch.stop();
    watch.wait();  // returns at once when stop() prevented the function
    cancel();
    watch = AfterFuncHandle();
    cancel = CancelFunc();
    context = Context();
  }
};

// Where in the histogram d falls.
std::size_t bucket_of(clock::duration d) noexcept {
  const auto& bounds = PoolWaitHistogram::kBounds;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (d <= bounds[i]) return i;
  }
  return bounds.size();
}

}  // namespace

// The registration that notices the acquire context's end: embedded in the record, so
// watching costs no allocation.
struct ContextWatch : CallbackBase {
  explicit ContextWatch(PoolSlotRecord* r) noexcept : record(r) {}
  PoolSlotRecord* record;
  SignalNode* node = nullptr;
};

struct PoolSlotRecord {
  PoolSlot* slot = nullptr;
  clock::time_point created_at{};
  clock::time_point idle_since{};

  // The current lease (valid while leased).
  bool leased = false;
  std::size_t leased_index = 0;
  std::uint64_t generation = 0;
  clock::time_point acquired_at{};
  SourceLocation where{};
  bool context_ended = false;
  clock::time_point context_ended_at{};
  std::error_code context_error{};
  bool lingering_reported = false;

  std::optional<ContextWatch> watch{};  // one per lease, registered while it runs
  Context acquire_context{};            // read by the watch when it fires
  Timer hold_timer{};                   // max_hold, only with on_lingering
  Timer linger_timer{};                 // linger_after_context, only with on_lingering
  std::weak_ptr<PoolCore> core{};
};

// A bound lease: who may use the slot, and whether the pool took it back.
struct PoolBinding {
  std::mutex mutex;
  bool in_use = false;
  bool reclaim_pending = false;  // the context ended during a use() section
  bool reclaimed = false;        // the slot went back to the pool (or the lease ended)
  std::error_code error;
  Context context;  // kept so the binding fires even if the holder drops its handles
  AfterFuncHandle watch;
};

struct Waiter {
  enum class Status { waiting, served, permit, canceled, rejected };
  Waiter* previous = nullptr;
  Waiter* next = nullptr;
  Status status = Status::waiting;
  PoolSlotRecord* record = nullptr;
  SourceLocation where{};
  std::condition_variable wake;
};

struct PoolCore::State {
  mutable std::mutex mutex;
  bool closed = false;
  std::vector<PoolSlotRecord*> idle;    // back = most recently returned
  std::vector<PoolSlotRecord*> leased;  // record->leased_index is its position
  std::size_t creating = 0;
  Waiter* first_waiter = nullptr;
  Waiter* last_waiter = nullptr;
  std::size_t waiting = 0;
  std::condition_variable drained;
  bool reaper_armed = false;
  Timer reaper;
  PoolStats totals;  // only the *_total fields and wait_time are kept here

  std::size_t size() const noexcept { return idle.size() + leased.size() + creating; }
  // Wakes close() once a closed pool holds nothing any more.
  void notify_if_drained() noexcept {
    if (closed && size() == 0) drained.notify_all();
  }

  void link(Waiter* w) noexcept {
    w->previous = last_waiter;
    w->next = nullptr;
    if (last_waiter != nullptr) {
      last_waiter->next = w;
    } else {
      first_waiter = w;
    }
    last_waiter = w;
    ++waiting;
  }
  void unlink(Waiter* w) noexcept {
    (w->previous != nullptr ? w->previous->next : first_waiter) = w->next;
    (w->next != nullptr ? w->next->previous : last_waiter) = w->previous;
    w->previous = w->next = nullptr;
    --waiting;
  }
  void add_leased(PoolSlotRecord* r) {
    r->leased = true;
    r->leased_index = leased.size();
    leased.push_back(r);
  }
  void remove_leased(PoolSlotRecord* r) noexcept {
    PoolSlotRecord* last = leased.back();
    leased[r->leased_index] = last;
    last->leased_index = r->leased_index;
    leased.pop_back();
    r->leased = false;
  }
  void record_wait(clock::duration waited) noexcept {
    auto& h = totals.wait_time;
    ++h.counts[bucket_of(waited)];
    ++h.count;
    h.sum += waited;
  }
};

void validate_pool_options(const PoolOptions& options, bool has_create) {
  if (!has_create) throw std::invalid_argument("ctxpp::Pool: hooks.create must be set");
  if (options.max_size == 0) throw std::invalid_argument("ctxpp::Pool: max_size must be > 0");
  if (options.idle_timeout < clock::duration::zero()) {
    throw std::invalid_argument("ctxpp::Pool: idle_timeout must not be negative");
  }
  if (options.max_lifetime < clock::duration::zero()) {
    throw std::invalid_argument("ctxpp::Pool: max_lifetime must not be negative");
  }
  if (options.linger_after_context < clock::duration::zero()) {
    throw std::invalid_argument("ctxpp::Pool: linger_after_context must not be negative");
  }
  if (options.max_hold < clock::duration::zero()) {
    throw std::invalid_argument("ctxpp::Pool: max_hold must not be negative");
  }
  if (options.max_idle > options.max_size) {
    throw std::invalid_argument("ctxpp::Pool: max_idle must not exceed max_size");
  }
}

// Private steps of PoolCore that need State.
struct PoolAccess {
  // --- lease bookkeeping ------------------------------------------------------------

  // Under the lock: the record becomes leased to a caller at `where`.
  static void begin_lease(PoolCore::State& s, PoolSlotRecord* r, SourceLocation where,
                          clock::time_point now) {
    s.add_leased(r);
    ++r->generation;
    r->acquired_at = now;
    r->where = where;
    r->context_ended = false;
    r->context_error = {};
    r->lingering_reported = false;
  }

  // Under the lock: a lease reaches its acquirer (not when a waiter is served: that
  // waiter may find its context ended and pass the resource on).
  static void count_acquire(PoolCore::State& s, std::optional<clock::time_point> started) {
    ++s.totals.acquired_total;
    if (started) s.record_wait(clock::now() - *started);
  }

  static void on_context_end(CallbackBase* base) noexcept {
    auto* watch = static_cast<ContextWatch*>(base);
    PoolSlotRecord* r = watch->record;
    const std::shared_ptr<PoolCore> core = r->core.lock();
    if (!core) return;
    bool arm_linger = false;
    {
      std::lock_guard lock(core->state_->mutex);
      if (!r->leased) return;
      r->context_ended = true;
      r->context_ended_at = clock::now();
      r->context_error = r->acquire_context.err();
      arm_linger = reports_lingering(*core);
    }
    if (arm_linger) {
      const std::uint64_t generation = r->generation;
      try {
        r->linger_timer.arm(core->options_.linger_after_context, [weak = r->core, r, generation] {
          check_lingering(weak, r, generation);
        });
      } catch (...) {  // out of memory: the lease is still found by lingering()
      }
    }
  }

  // Outside the lock, on the thread that acquired: watch the context and arm timers.
  // Never throws: the lease is already counted as leased.
  static void watch_lease(PoolCore& core, PoolSlotRecord* r, const Context& ctx) noexcept {
    SignalNode* node = Access::signal(ctx);
    if (node != nullptr) {
      r->acquire_context = ctx;
      ContextWatch& watch = r->watch.emplace(r);
      watch.fire_ = &on_context_end;
      if (register_callback(node, &watch)) {
        watch.node = node;
        add_ref(node);
      } else {
        on_context_end(&watch);  // ended since the check in acquire()
      }
    }
    if (reports_lingering(core) && core.options_.max_hold > clock::duration::zero()) {
      const std::uint64_t generation = r->generation;
      try {
        r->hold_timer.arm(core.options_.max_hold, [weak = r->core, r, generation] {
          check_lingering(weak, r, generation);
        });
      } catch (...) {  // out of memory: the lease is still found by lingering()
      }
    }
  }

  // Outside the lock, before the record changes hands: nothing watches it afterwards.
  static void unwatch_lease(PoolSlotRecord* r) noexcept {
    if (r->watch && r->watch->node != nullptr) {
      deregister_callback(r->watch->node, &*r->watch);
      release(r->watch->node);
    }
    r->watch.reset();
    r->acquire_context = Context();
    r->hold_timer.disarm();
    r->linger_timer.disarm();
  }

  // Under the lock: why this lease lingers at now, if it does. No allocation: this is
  // asked on every return.
  static std::optional<LingerReason> linger_reason(const PoolOptions& o, const PoolSlotRecord* r,
                                                   clock::time_point now) noexcept {
    if (o.max_hold > clock::duration::zero() && now - r->acquired_at > o.max_hold) {
      return LingerReason::held_too_long;
    }
    if (r->context_ended && now - r->context_ended_at >= o.linger_after_context) {
      return LingerReason::outlived_context;
    }
    return std::nullopt;
  }

  // Under the lock: the report of a lingering lease.
  static std::optional<LingeringLease> lingering_now(const PoolCore& core, const PoolSlotRecord* r,
                                                     clock::time_point now, bool returned) {
    const std::optional<LingerReason> reason = linger_reason(core.options_, r, now);
    if (!reason) return std::nullopt;
    LingeringLease found;
    found.pool = core.options_.name;
    found.where = r->where;
    found.reason = *reason;
    found.held_for = now - r->acquired_at;
    found.returned = returned;
    if (r->context_ended) {
      found.since_context_end = now - r->context_ended_at;
      found.context_error = r->context_error;
    }
    return found;
  }

  // Lingering leases are watched for on_lingering, for observers and for the debug
  // mode "leaks" (ctxpp/debug.hpp), all fed by the same timers.
  static bool reports_lingering(const PoolCore& core) noexcept {
    return static_cast<bool>(core.options_.on_lingering) || observe_flags() != 0U;
  }

  static void report(const PoolCore& core, const LingeringLease& lease) noexcept {
    if ((debug_flags() & kObserveLeaks) != 0U || has_observers()) publish_lingering(lease);
    if (!core.options_.on_lingering) return;
    try {
      core.options_.on_lingering(lease);
    } catch (...) {  // documented: dropped
    }
  }

  static void publish_lingering(const LingeringLease& lease) noexcept {
    try {
      const auto ms = [](clock::duration d) {
        return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
      };
      std::string text = "lingering lease: pool '" + lease.pool + "' lease acquired at " +
                         lease.where.file_name() + ":" + std::to_string(lease.where.line()) +
                         " held " + ms(lease.held_for) + " ms";
      if (lease.since_context_end) {
        text += ", " + ms(*lease.since_context_end) + " ms after its context ended (" +
                lease.context_error.message() + ")";
      }
      if (lease.returned) text += " (returned late)";
      RecordedEvent recorded;
      recorded.event.kind = EventKind::lease_lingering;
      recorded.event.time = clock::now();
      recorded.event.where = lease.where;
      recorded.event.delay = lease.since_context_end.value_or(lease.held_for);
      recorded.event.error = lease.context_error;
      recorded.component = lease.pool;
      recorded.detail = text;
      emit_recorded(recorded);
      if ((debug_flags() & kObserveLeaks) == 0U) return;
      Finding finding;
      finding.kind = FindingKind::lingering_lease;
      finding.message = std::move(text);
      finding.where = lease.where;
      finding.name = lease.pool;
      finding.age = recorded.event.delay;
      add_finding(std::move(finding));
    } catch (...) {  // out of memory: on_lingering still hears of it
    }
  }

  static void check_lingering(const std::weak_ptr<PoolCore>& weak, PoolSlotRecord* r,
                              std::uint64_t generation) noexcept {
    const std::shared_ptr<PoolCore> core = weak.lock();
    if (!core) return;
    std::optional<LingeringLease> found;
    {
      std::lock_guard lock(core->state_->mutex);
      if (!r->leased || r->generation != generation || r->lingering_reported) return;
      found = lingering_now(*core, r, clock::now(), false);
      if (!found) return;  // e.g. the timer fired a hair early
      r->lingering_reported = true;
      ++core->state_->totals.lingered_total;
    }
    report(*core, *found);
  }

  // --- handing slots over -----------------------------------------------------------

  // Under the lock, after capacity was freed: the first waiter may create. [3]
  static void pass_capacity(PoolCore::State& s) noexcept {
    if (s.closed || s.first_waiter == nullptr) return;
    Waiter* w = s.first_waiter;
    s.unlink(w);
    w->status = Waiter::Status::permit;
    ++s.creating;
    w->wake.notify_one();
  }

  // Under the lock: a usable slot goes to the first waiter or to the idle list.
  // Returns false if it must be destroyed instead.
  static bool place(PoolCore& core, PoolCore::State& s, PoolSlotRecord* r, clock::time_point now,
                    bool& arm_reaper) {
    if (s.first_waiter != nullptr) {
      Waiter* w = s.first_waiter;
      s.unlink(w);
      w->status = Waiter::Status::served;
      w->record = r;
      begin_lease(s, r, w->where, now);
      w->wake.notify_one();
      return true;
    }
    const std::size_t max_idle =
        core.options_.max_idle == 0 ? core.options_.max_size : core.options_.max_idle;
    if (s.idle.size() >= max_idle) return false;
    r->idle_since = now;
    s.idle.push_back(r);
    if (!s.reaper_armed && (core.options_.idle_timeout > clock::duration::zero() ||
                            core.options_.max_lifetime > clock::duration::zero())) {
      s.reaper_armed = true;
      arm_reaper = true;
    }
    return true;
  }

  static bool expiring(const PoolOptions& o) noexcept {
    return o.idle_timeout > clock::duration::zero() || o.max_lifetime > clock::duration::zero();
  }

  // Whether r is past idle_timeout or max_lifetime; false when neither is set.
  static bool expired(const PoolCore& core, const PoolSlotRecord* r,
                      clock::time_point now) noexcept {
    const PoolOptions& o = core.options_;
    if (o.max_lifetime > clock::duration::zero() && now - r->created_at >= o.max_lifetime) {
      return true;
    }
    return o.idle_timeout > clock::duration::zero() && !r->leased &&
           now - r->idle_since >= o.idle_timeout;
  }

  // Outside the lock.
  static void destroy(PoolCore& core, PoolSlotRecord* r) noexcept {
    core.destroy_slot(r->slot);
    delete r;
  }

  // Under the lock: the record leaves the pool for good.
  static void forget(PoolCore::State& s) noexcept {
    ++s.totals.destroyed_total;
    pass_capacity(s);
    s.notify_if_drained();
  }

  // Under the lock: a creation that will not happen gives its capacity back. [3]
  static void give_back_creation(PoolCore::State& s) noexcept {
    --s.creating;
    pass_capacity(s);
    s.notify_if_drained();
  }

  // The end of a lease: the slot goes back (or is destroyed). Outside the lock.
  static void return_slot(PoolCore& core, PoolSlotRecord* r, bool discard) noexcept {
    unwatch_lease(r);
    PoolCore::State& s = *core.state_;
    const PoolOptions& o = core.options_;
    // The clock is read only when something depends on it: a read costs about as much
    // as the rest of an uncontended return.
    const bool timed = expiring(o) || o.max_hold > clock::duration::zero();
    clock::time_point now = timed ? clock::now() : clock::time_point();
    // Recycled even if the pool closes meanwhile: the lock is taken once, below.
    const bool healthy = !discard && !expired(core, r, now) && core.recycle_slot(r->slot);
    std::optional<LingeringLease> late;
    bool arm_reaper = false;
    bool keep = false;
    {
      std::lock_guard lock(s.mutex);
      if (!timed && (r->context_ended || s.first_waiter != nullptr)) now = clock::now();
      if (!r->lingering_reported) {
        late = lingering_now(core, r, now, true);
        if (late) ++s.totals.lingered_total;
      }
      s.remove_leased(r);
      if (healthy && !s.closed) keep = place(core, s, r, now, arm_reaper);
      if (!keep) forget(s);
    }
    if (!keep) destroy(core, r);
    if (arm_reaper) start_reaper(core);
    if (late) report(core, *late);
  }

  // A bound lease's context ended: the slot goes back.
  static void reclaim(PoolCore& core, PoolSlotRecord* r) noexcept {
    {
      std::lock_guard lock(core.state_->mutex);
      ++core.state_->totals.revoked_total;
    }
    return_slot(core, r, false);
  }

  // --- the idle reaper --------------------------------------------------------------

  static void start_reaper(PoolCore& core) noexcept {
    PoolCore::State& s = *core.state_;
    clock::time_point next{};
    {
      std::lock_guard lock(s.mutex);
      if (s.closed || s.idle.empty()) {
        s.reaper_armed = false;
        return;
      }
      next = next_expiry(core, s);
    }
    try {
      const std::weak_ptr<PoolCore> weak = core.weak_from_this();
      Timer timer;
      timer.arm(std::max(next - clock::now(), clock::duration::zero()), [weak] {
        if (const std::shared_ptr<PoolCore> alive = weak.lock()) reap(*alive);
      });
      std::lock_guard lock(s.mutex);
      // The previous timer has fired (it is running reap() now, or this is the
      // first): replacing it never waits.
      s.reaper = std::move(timer);
    } catch (...) {
      std::lock_guard lock(s.mutex);
      s.reaper_armed = false;  // out of memory: idle ones expire on the next acquire
    }
  }

  // Under the lock: when the first idle resource expires.
  static clock::time_point next_expiry(const PoolCore& core, const PoolCore::State& s) {
    const PoolOptions& o = core.options_;
    auto next = clock::time_point::max();
    for (const PoolSlotRecord* r : s.idle) {
      if (o.idle_timeout > clock::duration::zero()) {
        next = std::min(next, r->idle_since + o.idle_timeout);
      }
      if (o.max_lifetime > clock::duration::zero()) {
        next = std::min(next, r->created_at + o.max_lifetime);
      }
    }
    return next;
  }

  static void reap(PoolCore& core) noexcept {
    PoolCore::State& s = *core.state_;
    std::vector<PoolSlotRecord*> dead;
    bool again = false;
    {
      std::lock_guard lock(s.mutex);
      const clock::time_point now = clock::now();
      auto keep_end =
          std::stable_partition(s.idle.begin(), s.idle.end(),
                                [&](const PoolSlotRecord* r) { return !expired(core, r, now); });
      dead.assign(keep_end, s.idle.end());
      s.idle.erase(keep_end, s.idle.end());
      for (std::size_t i = 0; i < dead.size(); ++i) forget(s);
      again = !s.closed && !s.idle.empty();
      s.reaper_armed = again;
    }
    for (PoolSlotRecord* r : dead) destroy(core, r);
    if (again) start_reaper(core);
  }
};

// ---------------------------------------------------------------------------------------

PoolCore::PoolCore(PoolOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {}

PoolCore::~PoolCore() {
  // Every lease holds a reference: none is out. Destroy what is idle.
  Timer reaper = std::move(state_->reaper);
  (void)reaper.watch.stop();
  reaper.cancel();
  for (PoolSlotRecord* r : state_->idle) PoolAccess::destroy(*this, r);
}

Result<LeaseHandle> PoolCore::acquire(const Context& ctx, SourceLocation where) {
  if (ctx.done()) return ctx.err();
  State& s = *state_;
  std::vector<PoolSlotRecord*> expired;
  PoolSlotRecord* record = nullptr;
  bool create = false;
  std::optional<clock::time_point> started;
  const bool expiring = PoolAccess::expiring(options_);
  // The acquire time matters only to expiry and to lingering reports, and a lease on a
  // context that can never end, without max_hold, can never linger: skip the clock
  // read then (it costs about as much as the rest of an uncontended acquire). It is
  // read before the lock, so that the critical section stays short.
  const bool timed =
      expiring || options_.max_hold > clock::duration::zero() || Access::signal(ctx) != nullptr;
  clock::time_point now = timed ? clock::now() : clock::time_point();
  {
    std::unique_lock lock(s.mutex);
    if (s.closed) return make_error_code(failure::rejected);
    while (!s.idle.empty()) {
      PoolSlotRecord* r = s.idle.back();
      s.idle.pop_back();
      if (expiring && PoolAccess::expired(*this, r, now)) {
        expired.push_back(r);
        ++s.totals.destroyed_total;
        continue;
      }
      record = r;
      PoolAccess::begin_lease(s, r, where, now);
      PoolAccess::count_acquire(s, std::nullopt);
      break;
    }
    if (record == nullptr) {
      if (!timed) now = clock::now();
      started = now;
      if (s.size() < options_.max_size) {
        ++s.creating;
        create = true;
      } else {
        // Wait in line. The canceller and the server both move the waiter under the
        // lock [4]; the callback is registered without it (it takes the lock).
        Waiter waiter;
        waiter.where = where;
        s.link(&waiter);
        lock.unlock();
        {
          ScopedCallback on_end(ctx, [&s, &waiter]() noexcept {
            {
              std::lock_guard guard(s.mutex);
              if (waiter.status != Waiter::Status::waiting) return;
              s.unlink(&waiter);
              waiter.status = Waiter::Status::canceled;
            }
            // Notified after the unlock, so the waiter does not wake into a held mutex.
            // It cannot leave (taking `wake` with it) before this returns: destroying
            // its ScopedCallback waits for a callback running on another thread.
            waiter.wake.notify_one();
          });
          lock.lock();
          waiter.wake.wait(lock, [&] { return waiter.status != Waiter::Status::waiting; });
          lock.unlock();
        }  // the callback is gone before the waiter leaves the stack
        lock.lock();
        switch (waiter.status) {
          case Waiter::Status::served:
            record = waiter.record;
            break;
          case Waiter::Status::permit:
            create = true;
            break;
          case Waiter::Status::canceled:
            ++s.totals.canceled_waits_total;
            return ctx.err();
          case Waiter::Status::rejected:
            return make_error_code(failure::rejected);
          case Waiter::Status::waiting:
            break;  // unreachable: the wait ends only when the status changed
        }
        // Served or allowed to create, but the context ended meanwhile: pass it on.
        if (ctx.done()) {
          ++s.totals.canceled_waits_total;
          if (record != nullptr) {
            lock.unlock();
            PoolAccess::return_slot(*this, record, false);
          } else {
            PoolAccess::give_back_creation(s);
            lock.unlock();
          }
          for (PoolSlotRecord* r : expired) PoolAccess::destroy(*this, r);
          return ctx.err();
        }
        if (record != nullptr) PoolAccess::count_acquire(s, started);
      }
    }
    for (std::size_t i = 0; i < expired.size(); ++i) PoolAccess::pass_capacity(s);
  }
  for (PoolSlotRecord* r : expired) PoolAccess::destroy(*this, r);

  if (create) {
    std::error_code error;
    PoolSlot* slot = nullptr;
    auto give_back = [&] {
      std::lock_guard lock(s.mutex);
      ++s.totals.create_failures_total;
      PoolAccess::give_back_creation(s);
    };
    try {
      slot = create_slot(ctx, error);
    } catch (...) {
      give_back();
      throw;
    }
    if (slot == nullptr) {
      give_back();
      return error ? error : make_error_code(failure::rejected);
    }
    PoolSlotRecord* r = nullptr;
    try {
      r = new PoolSlotRecord();
    } catch (...) {
      destroy_slot(slot);
      give_back();
      throw;
    }
    r->slot = slot;
    r->core = weak_from_this();
    slot->record = r;
    std::unique_lock lock(s.mutex);
    --s.creating;
    ++s.totals.created_total;
    r->created_at = clock::now();
    if (s.closed) {
      ++s.totals.destroyed_total;
      s.notify_if_drained();
      lock.unlock();
      PoolAccess::destroy(*this, r);
      return make_error_code(failure::rejected);
    }
    PoolAccess::begin_lease(s, r, where, r->created_at);
    PoolAccess::count_acquire(s, started);
    record = r;
  }

  PoolAccess::watch_lease(*this, record, ctx);
  LeaseHandle handle;
  handle.core = shared_from_this();
  handle.slot = record->slot;
  return Result<LeaseHandle>(std::move(handle));
}

void PoolCore::release(LeaseHandle& handle, bool discard) noexcept {
  if (handle.binding) {
    PoolBinding& b = *handle.binding;
    (void)b.watch.stop();
    b.watch.wait();  // a reclaim running now finishes first
    bool give_back = false;
    {
      std::lock_guard lock(b.mutex);
      give_back = !b.reclaimed;  // a pending reclaim is this release
      b.reclaimed = true;
      b.reclaim_pending = false;
    }
    if (!give_back) return;
  }
  PoolAccess::return_slot(*this, handle.slot->record, discard);
}

std::error_code PoolCore::bind(LeaseHandle& handle, const Context& ctx) {
  if (handle.binding) {
    PoolBinding& old = *handle.binding;
    (void)old.watch.stop();
    old.watch.wait();
    std::lock_guard lock(old.mutex);
    if (old.reclaimed || old.reclaim_pending) return old.error;
  }
  auto binding = std::make_shared<PoolBinding>();
  binding->context = ctx;
  PoolSlotRecord* record = handle.slot->record;
  const std::weak_ptr<PoolBinding> weak_binding = binding;
  const std::weak_ptr<PoolCore> weak_core = weak_from_this();
  handle.binding = binding;
  binding->watch = after_func(ctx, [weak_binding, weak_core, record]() noexcept {
    const std::shared_ptr<PoolBinding> b = weak_binding.lock();
    const std::shared_ptr<PoolCore> core = weak_core.lock();
    if (!b || !core) return;
    {
      std::lock_guard lock(b->mutex);
      if (b->reclaimed) return;
    }
    // The holder may be inside use() right now: the hook must stop that work.
    core->interrupt_slot(record->slot);
    bool give_back = false;
    {
      std::lock_guard lock(b->mutex);
      if (b->reclaimed) return;
      b->error = b->context.err();
      if (b->in_use) {
        b->reclaim_pending = true;  // the end of use() gives it back
      } else {
        b->reclaimed = true;
        give_back = true;
      }
    }
    if (give_back) PoolAccess::reclaim(*core, record);
  });
  if (ctx.done()) {
    // Already ended: the reclaim is scheduled; make it visible before returning.
    binding->watch.wait();
    return ctx.err();
  }
  return {};
}

void* enter_use(const LeaseHandle& handle, std::error_code& error) noexcept {
  PoolBinding& b = *handle.binding;
  std::lock_guard lock(b.mutex);
  if (b.reclaimed || b.reclaim_pending) {
    error = b.error ? b.error : make_error_code(failure::rejected);
    return nullptr;
  }
  b.in_use = true;
  return handle.slot->resource;
}

void leave_use(const LeaseHandle& handle) noexcept {
  PoolBinding& b = *handle.binding;
  bool give_back = false;
  {
    std::lock_guard lock(b.mutex);
    b.in_use = false;
    if (b.reclaim_pending) {
      b.reclaim_pending = false;
      b.reclaimed = true;
      give_back = true;
    }
  }
  if (give_back) PoolAccess::reclaim(*handle.core, handle.slot->record);
}

void PoolCore::close_now() noexcept {
  State& s = *state_;
  std::vector<PoolSlotRecord*> idle;
  Timer reaper;
  {
    std::lock_guard lock(s.mutex);
    s.closed = true;
    while (s.first_waiter != nullptr) {
      Waiter* w = s.first_waiter;
      s.unlink(w);
      w->status = Waiter::Status::rejected;
      w->wake.notify_one();
    }
    idle.swap(s.idle);
    s.totals.destroyed_total += idle.size();
    reaper = std::move(s.reaper);
    s.reaper_armed = false;
    s.notify_if_drained();
  }
  reaper.disarm();
  for (PoolSlotRecord* r : idle) PoolAccess::destroy(*this, r);
}

std::error_code PoolCore::close(const Context& ctx) {
  close_now();
  State& s = *state_;
  bool drained = false;
  {
    // The callback takes the mutex: the lock must be released before the callback's
    // destructor runs (it waits for a callback running on the cancelling thread), so
    // the lock is declared after it and goes first.
    ScopedCallback on_end(ctx, [&s]() noexcept {
      std::lock_guard guard(s.mutex);
      s.drained.notify_all();
    });
    std::unique_lock lock(s.mutex);
    s.drained.wait(lock, [&] { return s.size() == 0 || ctx.done(); });
    drained = s.size() == 0;
  }
  return drained ? std::error_code() : ctx.err();
}

PoolStats PoolCore::stats() const {
  const State& s = *state_;
  std::lock_guard lock(s.mutex);
  PoolStats out = s.totals;
  out.idle = s.idle.size();
  out.leased = s.leased.size();
  out.creating = s.creating;
  out.size = s.size();
  out.waiting = s.waiting;
  const clock::time_point now = clock::now();
  for (const PoolSlotRecord* r : s.leased) {
    if (PoolAccess::linger_reason(options_, r, now)) ++out.lingering;
  }
  return out;
}

std::vector<LingeringLease> PoolCore::lingering() const {
  const State& s = *state_;
  std::vector<LingeringLease> out;
  std::lock_guard lock(s.mutex);
  const clock::time_point now = clock::now();
  for (const PoolSlotRecord* r : s.leased) {
    if (auto found = PoolAccess::lingering_now(*this, r, now, false)) {
      out.push_back(std::move(*found));
    }
  }
  std::sort(out.begin(), out.end(), [](const LingeringLease& a, const LingeringLease& b) {
    return a.held_for > b.held_for;
  });
  return out;
}

}  // namespace ctxpp::detail
