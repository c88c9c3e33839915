// call_blocking: a call that takes no context runs on a pool thread while its
// caller waits for it or for the context, whichever ends first.
//
// Two parties share a Handoff (below) and the BlockingCall: the caller, blocked in
// run_blocking, and the pool task that runs the function (the worker).
// Invariants (cited as [In] below):
//  1. phase_ changes only under mutex_: queued -> running -> finished, or
//     queued -> withdrawn. The worker starts the function only after moving
//     queued -> running; the caller withdraws only a call still queued. So when the
//     context ends before the function started, exactly one of "withdrawn" and
//     "running" wins, and a withdrawn function never runs.
//  2. The caller abandons only while phase_ is running, setting abandoned_ under
//     mutex_; the worker sets finished and reads abandoned_ in one mutex_ section.
//     So either the caller saw finished (completed or interrupted: the value and
//     exception, written before, are visible to it) or the worker sees abandoned_
//     (the caller will never read them: the worker discards them). Never both.
//  3. An abandoned call is linked into the registry in the same mutex_ section that
//     sets abandoned_, so the worker, which unlinks it after seeing abandoned_ [2],
//     always finds it linked. Lock order: a Handoff's mutex_, then the registry's.
//     The worker unlinks after releasing mutex_ and nothing takes a Handoff's mutex_
//     while holding the registry's, so the order cannot be inverted.
//  4. No ctxpp lock is held while user code runs: the function (worker), the
//     interrupt hook (caller, mutex_ released), the destructors of a discarded value
//     or exception (worker, after unlocking), and Executor::execute, which may run
//     the task inline (InlineExecutor) and so take mutex_ itself.
//  5. The worker's task owns a reference on the Handoff and one on the call, so the
//     caller may return at any moment once it abandoned or withdrew the call.
//     Whoever releases last frees them. Who releases the result last is fixed:
//     - not abandoned: the worker drops its call reference in the mutex_ section
//       that sets finished; the caller holds its own until it has seen finished
//       under mutex_, so that release is never the last and runs no destructor.
//       The value and exception then belong to the caller alone and die on its
//       thread (an exception_ptr's count lives in libsupc++, where TSan cannot see
//       it, so sharing that last release would also read as a race);
//     - abandoned: the worker discards them before the registry entry goes, so
//       "no longer listed" implies "its result was released", on the worker.
//     (ThreadPool moves the task out of its queue; an executor that keeps a copy
//     of it holds one more reference, which only moves where the last release is.)
//  6. The context callback only takes mutex_ and notifies. ScopedCallback's
//     destructor waits while the callback runs on another thread, so the caller
//     never destroys it while holding mutex_ (the lock is declared after it and
//     so released before it).
//  7. The abandon cap is read without a lock at entry, and a call passes it long
//     before it may be abandoned: the count can reach cap - 1 + the number of
//     calls in flight, never more (the last one to pass saw at most cap - 1, and
//     every call abandoned since had passed before it). The shared pool keeps
//     2 x hardware threads beyond the cap for those and for live calls.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "ctxpp/blocking.hpp"
#include "ctxpp/scoped_callback.hpp"
#include "observe_internal.hpp"
#include "tree.hpp"

namespace ctxpp {
namespace detail {
namespace {

constexpr std::size_t kDefaultAbandonedLimit = 64;

std::atomic<std::size_t> abandoned_limit_value{kDefaultAbandonedLimit};
// The shared pool's bound once the pool exists; 0 before.
std::atomic<std::size_t> fixed_pool_bound{0};

enum class Phase { queued, running, finished, withdrawn };

// The control block shared by the caller and the worker of one call.
class Handoff {
 public:
  Handoff(std::string_view name, SourceLocation where) noexcept : name_(name), where_(where) {}

  std::mutex mutex_;
  std::condition_variable changed_;  // phase_ became finished, or the context ended
  Phase phase_ = Phase::queued;      // [1]
  bool abandoned_ = false;           // [2]
  clock::time_point started_;        // written by the worker with phase_ = running

  // Registry fields: written before linking, read by abandoned_calls() under the
  // registry's mutex; the links belong to that mutex.
  const std::string_view name_;
  const SourceLocation where_;
  clock::time_point abandoned_at_;
  Handoff* previous_ = nullptr;
  Handoff* next_ = nullptr;
};

// Abandoned calls still running: an intrusive list of their Handoffs, kept alive by
// the worker's reference until it unlinks them [5]. Intrusive so that abandoning,
// on the noexcept caller path, cannot fail to allocate.
class Registry {
 public:
  // Called with call.mutex_ held [3].
  void link(Handoff& call) noexcept {
    std::lock_guard lock(mutex_);
    // Taken under the lock so that the list stays ordered by abandonment.
    call.abandoned_at_ = clock::now();
    call.previous_ = tail_;
    call.next_ = nullptr;
    if (tail_ != nullptr) {
      tail_->next_ = &call;
    } else {
      head_ = &call;
    }
    tail_ = &call;
    // Relaxed: an increment publishes nothing; total_ is a statistic.
    count_.fetch_add(1, std::memory_order_relaxed);
    total_.fetch_add(1, std::memory_order_relaxed);
  }

  void unlink(Handoff& call) noexcept {
    std::lock_guard lock(mutex_);
    if (call.previous_ != nullptr) {
      call.previous_->next_ = call.next_;
    } else {
      head_ = call.next_;
    }
    if (call.next_ != nullptr) {
      call.next_->previous_ = call.previous_;
    } else {
      tail_ = call.previous_;
    }
    call.previous_ = call.next_ = nullptr;
    // Release, paired with count()'s acquire: whoever sees the count drop also sees
    // the discarded result's destructor [5] (a relaxed drop could be seen first).
    count_.fetch_sub(1, std::memory_order_release);
  }

  std::vector<AbandonedCall> snapshot() const {
    std::vector<AbandonedCall> calls;
    {
      std::lock_guard lock(mutex_);
      calls.reserve(count_.load(std::memory_order_relaxed));
      for (const Handoff* call = head_; call != nullptr; call = call->next_) {
        calls.push_back(AbandonedCall{std::string(call->name_), call->where_, call->started_,
                                      call->abandoned_at_});
      }
    }
    // The list is in abandonment order; a call that started earlier may have been
    // abandoned later (a longer deadline), and "oldest" means running longest.
    std::stable_sort(
        calls.begin(), calls.end(),
        [](const AbandonedCall& a, const AbandonedCall& b) { return a.started < b.started; });
    return calls;
  }

  std::size_t count() const noexcept { return count_.load(std::memory_order_acquire); }
  std::size_t total() const noexcept { return total_.load(std::memory_order_relaxed); }

 private:
  mutable std::mutex mutex_;
  Handoff* head_ = nullptr;
  Handoff* tail_ = nullptr;
  std::atomic<std::size_t> count_{0};
  std::atomic<std::size_t> total_{0};
};

// Constant-initialised, so the noexcept paths never allocate it, and never
// destroyed: abandoned calls may still return during static destruction.
union RegistryStorage {
  constexpr RegistryStorage() : registry() {}
  ~RegistryStorage() {}
  Registry registry;
};
constinit RegistryStorage registry_storage;

Registry& registry() noexcept { return registry_storage.registry; }

std::size_t pool_bound_for(std::size_t limit) noexcept {
  const std::size_t spare = 2 * std::max<std::size_t>(1, std::thread::hardware_concurrency());
  if (limit > std::numeric_limits<std::size_t>::max() - spare) {
    return std::numeric_limits<std::size_t>::max();
  }
  return limit + spare;
}

// Never destroyed, like default_executor(): its threads may be running abandoned
// calls when the process exits. Errors: std::bad_alloc (a later call retries).
Executor& blocking_pool() {
  static auto* pool = [] {
    const std::size_t bound = pool_bound_for(abandoned_limit_value.load(std::memory_order_relaxed));
    auto* created = new ThreadPool(bound);
    fixed_pool_bound.store(bound, std::memory_order_relaxed);
    return created;
  }();
  return *pool;
}

void run_on_worker(Handoff& handoff, std::shared_ptr<BlockingCall>& call) noexcept {
  {
    std::lock_guard lock(handoff.mutex_);
    if (handoff.phase_ == Phase::withdrawn) return;  // [1]
    handoff.phase_ = Phase::running;
    handoff.started_ = clock::now();
  }
  call->invoke();
  bool abandoned = false;
  {
    std::lock_guard lock(handoff.mutex_);
    handoff.phase_ = Phase::finished;
    abandoned = handoff.abandoned_;  // [2]
    // TRICKY: a release under mutex_, safe only because it is never the last [5].
    if (!abandoned) call.reset();
  }
  if (!abandoned) {
    // Outside the lock: the waiter then finds mutex_ free. Our Handoff reference
    // keeps the condition variable alive even if the caller returns at once.
    handoff.changed_.notify_all();
    return;
  }
  call->discard();  // [4], [5]
  registry().unlink(handoff);
}

}  // namespace

namespace {
// An abandoned call, for observers (ctxpp/observe.hpp).
void publish_abandoned(const Context& ctx, const BlockingOptions& options,
                       const SourceLocation& where, std::error_code error) noexcept {
  try {
    (void)context_id(ctx);  // gives an untracked context its id and record
    RecordedEvent recorded;
    recorded.event.kind = EventKind::blocking_abandoned;
    recorded.event.time = clock::now();
    if (SignalNode* node = Access::signal(ctx)) describe(recorded, node);
    recorded.event.where = where;
    recorded.event.error = error;
    recorded.component.assign(options.name);
    recorded.detail = "a blocking call that cannot see its context was abandoned; it runs on";
    emit_recorded(recorded);
  } catch (...) {  // out of memory: abandoned_calls() still lists it
  }
}
}  // namespace

BlockingRun run_blocking(const Context& ctx, std::shared_ptr<BlockingCall> call,
                         const BlockingOptions& options, SourceLocation where) noexcept {
  if (ctx.done()) return {BlockingOutcome::canceled, ctx.err()};
  if (abandoned_call_count() >= abandoned_limit()) {  // [7]
    return {BlockingOutcome::refused, make_error_code(failure::abandon_limit)};
  }

  std::shared_ptr<Handoff> handoff;
  try {
    Executor& executor = options.executor != nullptr ? *options.executor : blocking_pool();
    handoff = std::make_shared<Handoff>(options.name, where);
    executor.execute([handoff, call]() mutable noexcept { run_on_worker(*handoff, call); });
  } catch (...) {
    // The executor's contract: a task it throws for is never run.
    return {BlockingOutcome::refused, make_error_code(failure::rejected)};
  }

  Handoff& state = *handoff;
  // Runs in the cancelling thread: must stay cheap [6].
  ScopedCallback wake_caller(ctx, [&state]() noexcept {
    std::lock_guard lock(state.mutex_);
    state.changed_.notify_all();
  });
  std::unique_lock lock(state.mutex_);  // released before wake_caller is destroyed [6]
  // done() turns true before the callback takes mutex_ to notify, so a wait that
  // checked done() under mutex_ cannot miss the wake-up.
  state.changed_.wait(lock, [&] { return state.phase_ == Phase::finished || ctx.done(); });
  // Both may hold: the function returned, so its result is there to use.
  if (state.phase_ == Phase::finished) return {BlockingOutcome::completed, {}};

  const std::error_code error = ctx.err();
  if (state.phase_ == Phase::queued) {
    state.phase_ = Phase::withdrawn;  // [1]: the worker will skip it
    return {BlockingOutcome::canceled, error};
  }

  if (call->has_interrupt()) {
    lock.unlock();
    call->interrupt();  // [4]
    lock.lock();
    const clock::time_point grace_end = saturating_add(clock::now(), options.interrupt_grace);
    if (state.changed_.wait_until(lock, grace_end,
                                  [&] { return state.phase_ == Phase::finished; })) {
      return {BlockingOutcome::interrupted, error};
    }
  }

  state.abandoned_ = true;  // [2]
  registry().link(state);   // [3]
  lock.unlock();
  if (has_observers()) publish_abandoned(ctx, options, where, error);
  return {BlockingOutcome::abandoned, error};
}

}  // namespace detail

std::vector<AbandonedCall> abandoned_calls() { return detail::registry().snapshot(); }

std::size_t abandoned_call_count() noexcept { return detail::registry().count(); }

std::size_t abandoned_calls_total() noexcept { return detail::registry().total(); }

void set_abandoned_limit(std::size_t limit) {
  if (limit == 0) throw std::invalid_argument("ctxpp::set_abandoned_limit: limit must be > 0");
  detail::abandoned_limit_value.store(limit, std::memory_order_relaxed);
}

std::size_t abandoned_limit() noexcept {
  return detail::abandoned_limit_value.load(std::memory_order_relaxed);
}

std::size_t blocking_pool_max_threads() noexcept {
  const std::size_t fixed = detail::fixed_pool_bound.load(std::memory_order_relaxed);
  if (fixed != 0) return fixed;
  // Not used yet: the bound it would get now.
  return detail::pool_bound_for(abandoned_limit());
}

}  // namespace ctxpp
