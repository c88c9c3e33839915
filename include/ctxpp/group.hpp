// ctxpp/group.hpp — structured concurrency: tasks that cannot outlive their scope.
// A TaskGroup runs functions (or coroutines) under a child of its context. The
// first task to fail — by returning an error or throwing — cancels its siblings
// with that failure as the cause; wait() joins every task and reports the first
// failure (rethrowing it if it was an exception); leaving the scope without wait()
// cancels and joins, so a task never outlives its group. Tasks run on an Executor
// (a small shared pool by default), never a thread per task; a limit bounds how
// many run at once.
// Example:
//   ctxpp::TaskGroup group(request_ctx);
//   group.spawn([&](const ctxpp::Context& ctx) { return load_user(ctx, id); });
//   group.spawn([&](const ctxpp::Context& ctx) { return load_orders(ctx, id); });
//   if (std::error_code ec = group.wait()) return ec;  // first failure, siblings cancelled
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "ctxpp/failure.hpp"
#include "ctxpp/result.hpp"
#include "ctxpp/source_location.hpp"
#include "ctxpp/task.hpp"

namespace ctxpp {

/// One failed task: its error, and the exception if it threw (then code is
/// failure::exception).
struct TaskFailure {
  std::error_code code;
  std::exception_ptr exception;
};

namespace detail {

class GroupState;

// A spawned function, type-erased and move-only. Owned by the group's queue until
// it starts, then by whoever runs it.
class GroupTask {
 public:
  virtual ~GroupTask() = default;
  // Runs the function with the group's context, destroys *this (the function and
  // its captures: what the task owned is released before the group hears of its
  // end), then reports the outcome through group_finish() — for a coroutine, all
  // of that when the coroutine ends. Never throws.
  virtual void start(const std::shared_ptr<GroupState>& group) noexcept = 0;
  GroupTask* next = nullptr;
};

const Context& group_context(const GroupState& group) noexcept;
// Records one task's end. code empty = success.
void group_finish(GroupState& group, std::error_code code, std::exception_ptr exception) noexcept;

template <class T>
struct IsTask : std::false_type {};
template <class T>
struct IsTask<Task<T>> : std::true_type {};
// Result<T> and anything derived from one (call_blocking's BlockingResult<T>).
template <class T>
void derives_from_result(const Result<T>&);
template <class V>
concept ResultLike = requires(const V& value) {
  derives_from_result(value);
};

// What a task's return value says about its outcome: void succeeds; an error_code
// (or an error code or condition enum such as std::errc, or an error_condition) or
// a Result fails when it holds an
// error. Other return values are ignored.
template <class R>
std::error_code outcome_of(R&& value) noexcept {
  using Value = std::remove_cvref_t<R>;
  if constexpr (std::is_same_v<Value, std::error_code>) {
    return value;
  } else if constexpr (std::is_error_code_enum_v<Value>) {
    return std::error_code(value);
  } else if constexpr (std::is_error_condition_enum_v<Value>) {
    const std::error_condition condition(value);  // std::errc: the generic category
    return {condition.value(), condition.category()};
  } else if constexpr (std::is_same_v<Value, std::error_condition>) {
    return std::error_code(value.value(), value.category());
  } else if constexpr (ResultLike<Value>) {
    return value.error();
  } else {
    (void)value;
    return {};
  }
}

// Runs a coroutine task to its end, then releases it and the function that made
// it (a coroutine lambda's captures live in that function), then reports.
template <class T>
Detached drive_group_task(Task<T> task, std::unique_ptr<GroupTask> owner,
                          std::shared_ptr<GroupState> group) {
  std::error_code code;
  std::exception_ptr exception;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
    } else {
      code = outcome_of(co_await std::move(task));
    }
  } catch (...) {
    exception = std::current_exception();
    code = make_error_code(failure::exception);
  }
  { Task<T> finished = std::move(task); }  // destroys the coroutine frame
  owner.reset();
  group_finish(*group, code, exception);
}

template <class F>
class GroupTaskOf final : public GroupTask {
 public:
  explicit GroupTaskOf(F function) : function_(std::move(function)) {}

  void start(const std::shared_ptr<GroupState>& group) noexcept override {
    std::unique_ptr<GroupTask> owner(this);
    std::error_code code;
    std::exception_ptr exception;
    try {
      using Returned = decltype(invoke(group_context(*group)));
      if constexpr (IsTask<Returned>::value) {
        // The driver owns the function from here and reports when the coroutine
        // ends; a frame allocation failure throws before it takes ownership.
        drive_group_task(invoke(group_context(*group)), std::move(owner), group);
        return;
      } else if constexpr (std::is_void_v<Returned>) {
        invoke(group_context(*group));
      } else {
        code = outcome_of(invoke(group_context(*group)));
      }
    } catch (...) {
      exception = std::current_exception();
      code = make_error_code(failure::exception);
    }
    owner.reset();
    group_finish(*group, code, exception);
  }

 private:
  decltype(auto) invoke(const Context& ctx) {
    if constexpr (std::is_invocable_v<F&, const Context&>) {
      return function_(ctx);
    } else {
      return function_();
    }
  }
  F function_;
};

}  // namespace detail

/// A scope owning concurrently running tasks.
/// Thread safety: spawn/try_spawn/set_limit/context/failures from any thread,
/// including from inside the group's own tasks and concurrently with wait().
/// wait() and the destructor from one thread at a time.
/// Ownership: the group owns its tasks; what they capture by reference must outlive
/// wait() (or the destructor), which is guaranteed for the scope that declared it.
/// Not copyable or movable.
class TaskGroup {
 public:
  /// No limit.
  static constexpr std::size_t kNoLimit = SIZE_MAX;

  /// A group whose context is a child of parent (cancelled by the first failure,
  /// by wait(), by the destructor, or when parent ends). Tasks run on executor,
  /// which must outlive the group.
  /// Errors: std::bad_alloc.
  explicit TaskGroup(const Context& parent, Executor& executor = default_executor(),
                     SourceLocation where = SourceLocation::current());
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  /// If tasks were spawned since the last wait(): cancels the context (cause
  /// failure::not_joined) and joins them. Outside stack unwinding, that is a bug
  /// (a forgotten wait()) and is reported to the unjoined-group handler with the
  /// group's creation site and any failure it would have lost. Unwinding is told
  /// apart by std::uncaught_exceptions() on the creating thread; on another thread
  /// any exception in flight there counts as unwinding.
  /// Blocking: until every task has ended. Must not run inside one of its own tasks.
  ~TaskGroup();

  /// The context the tasks receive. Valid as long as the group.
  const Context& context() const noexcept;

  /// At most limit tasks run at once (kNoLimit: no bound). Affects later spawns;
  /// tasks already started keep running.
  /// Errors: throws std::invalid_argument for 0.
  void set_limit(std::size_t limit);

  /// Starts f on the executor with the group's context: f(ctx) if it takes a
  /// const Context&, else f(). Its outcome: returning normally (void) succeeds;
  /// returning a std::error_code (or an error code enum such as std::errc, or a
  /// std::error_condition) or a Result fails if it holds an error; other return
  /// values are ignored; throwing
  /// fails with failure::exception; returning a ctxpp::Task runs that coroutine and
  /// takes its outcome by the same rules when it ends.
  /// A task spawned after the context ended still runs (it sees a done context),
  /// as in Go's errgroup: the function decides how to wind down.
  /// Blocking: while the limit is reached, until a task ends. A caller that is
  /// itself a task of another group (an outer task spawning into a nested group)
  /// meanwhile runs this group's queued tasks, so it cannot starve a small pool by
  /// occupying the thread they wait for; other callers just wait. Called from one of
  /// this group's own tasks, it never blocks (the task is queued and starts when a
  /// slot frees), so a task spawning siblings cannot deadlock. TRICKY: a coroutine
  /// task is recognised as "one of this group's own tasks" only until its first
  /// suspension (the mark is per thread, and it may resume anywhere): after that,
  /// spawn from it with try_spawn, or it may wait for the slot it holds itself.
  /// Cost: one allocation and an executor hand-off.
  /// Errors: std::bad_alloc, or what the executor throws (f is not run then).
  template <class F>
  void spawn(F&& f) {
    const Slot slot = reserve(Admission::block);
    enqueue(make_task(std::forward<F>(f), slot), slot);
  }

  /// Like spawn, but never blocks: returns false when the limit is reached; f is
  /// then neither run nor moved from (the caller may retry with it).
  template <class F>
  bool try_spawn(F&& f) {
    const Slot slot = reserve(Admission::refuse);
    if (slot == Slot::refused) return false;
    enqueue(make_task(std::forward<F>(f), slot), slot);
    return true;
  }

  /// Joins every task spawned so far (including ones spawned while waiting), then
  /// cancels the context (as errgroup does: a group's context ends with its join,
  /// even on success). Returns the first failure; if that was an exception, rethrows
  /// it. Not-yet-started tasks are run on the calling thread while it waits, so
  /// nested groups on a small pool make progress.
  /// Blocking: until every task ended. Later calls return the same first failure.
  /// Errors: throws std::logic_error if called from one of the group's own tasks
  /// (it would wait for itself) — detected for plain tasks and for coroutine tasks
  /// before their first suspension; later, or from a task of a nested group, such a
  /// call deadlocks.
  std::error_code wait();

  /// Awaitable join for coroutines: `std::error_code ec = co_await group.join();`
  /// Same outcome as wait(); the awaiting coroutine resumes in the thread that
  /// finished the last task (or at once if none is running). Awaiting it from one
  /// of the group's own tasks never resumes.
  auto join() noexcept {
    struct Awaiter {
      TaskGroup* group;
      bool await_ready() const noexcept { return group->idle(); }
      bool await_suspend(std::coroutine_handle<> handle) {
        return group->suspend_until_idle(handle);
      }
      std::error_code await_resume() { return group->collect(); }
    };
    return Awaiter{this};
  }

  /// Every failure so far, in the order they happened. The first is what wait()
  /// reports; later ones are often consequences (siblings seeing the cancel).
  std::vector<TaskFailure> failures() const;

  /// Tasks spawned and not yet ended.
  std::size_t active() const noexcept;

 private:
  enum class Admission { block, refuse };
  enum class Slot { running, deferred, refused };

  // Takes a running slot (waiting, and meanwhile running queued tasks of this group,
  // while the limit is reached), or a deferred place for a task of this group, or
  // refuses.
  Slot reserve(Admission admission);
  // Queues task in the reserved place and, for a running slot, hands it to the
  // executor. Errors: what the executor throws (the task is then not run, unless a
  // waiting thread already took it).
  void enqueue(detail::GroupTask* task, Slot slot);
  // Gives back a reserved place that will not be used.
  void release(Slot slot) noexcept;
  // Allocates the task; on failure gives back the reserved place and rethrows.
  template <class F>
  detail::GroupTask* make_task(F&& f, Slot slot) {
    try {
      return new detail::GroupTaskOf<std::decay_t<F>>(std::forward<F>(f));
    } catch (...) {
      release(slot);
      throw;
    }
  }
  bool idle() const noexcept;
  bool suspend_until_idle(std::coroutine_handle<> handle);
  void join_all();
  std::error_code collect();

  std::shared_ptr<detail::GroupState> state_;
};

/// What the unjoined-group handler receives.
struct UnjoinedGroup {
  SourceLocation created_at;
  std::size_t tasks_joined = 0;       ///< tasks the destructor had to cancel and join
  std::vector<TaskFailure> failures;  ///< failures nobody collected with wait()
};

/// Replaces the handler called when a TaskGroup is destroyed without wait()
/// outside stack unwinding; returns the previous one. The default writes one line
/// to stderr. nullptr restores the default. The handler must not throw.
/// Thread safety: any thread; a handler running at the time of the change finishes.
using UnjoinedGroupHandler = void (*)(const UnjoinedGroup&);
UnjoinedGroupHandler set_unjoined_group_handler(UnjoinedGroupHandler handler) noexcept;

}  // namespace ctxpp
