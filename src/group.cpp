// TaskGroup: a join counter, a queue of tasks not yet started, and the group's
// context.
//
// Invariants (all under GroupState::mutex):
//  [1] outstanding = (tasks holding a slot: ready or running) + deferred; wait()
//      returns only when it is zero, and a task leaves it only after its function
//      (and captures) were destroyed and its failure recorded.
//  [2] Every ready task has a runner posted to the executor or a waiting thread
//      that will take it: runners are interchangeable (each pops whatever task is
//      ready, or nothing), so a thread that helps (in wait(), or in a spawn blocked
//      by the limit) never strands a task.
//  [3] slots_in_use never exceeds the limit, except after set_limit lowered it.
//      Deferred tasks (spawned from inside the group over the limit) take the slot
//      a finishing task gives up.
//  [4] No lock is held while user code runs or while the context is cancelled (a
//      cancel runs callbacks inline, and those may spawn into this very group).
// The first failure cancels the context before the task leaves `outstanding`, so
// wait() never returns before the siblings were told.
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "ctxpp/group.hpp"

namespace ctxpp::detail {

class GroupState : public std::enable_shared_from_this<GroupState> {
 public:
  GroupState(const Context& parent, Executor& runs_on, SourceLocation where)
      : executor(&runs_on),
        created_at(where),
        creating_thread(std::this_thread::get_id()),
        uncaught_at_creation(std::uncaught_exceptions()) {
    auto [child, cancel_child] = with_cancel_cause(parent, where);
    ctx = std::move(child);
    cancel = std::move(cancel_child);
  }

  ~GroupState() {
    delete_list(ready_head);
    delete_list(deferred_head);
  }

  static void delete_list(GroupTask* task) noexcept {
    while (task != nullptr) delete std::exchange(task, task->next);
  }

  static void push(GroupTask*& head, GroupTask*& tail, GroupTask* task) noexcept {
    task->next = nullptr;
    if (tail != nullptr) {
      tail->next = task;
    } else {
      head = task;
    }
    tail = task;
  }

  static GroupTask* pop(GroupTask*& head, GroupTask*& tail) noexcept {
    GroupTask* task = head;
    if (task != nullptr) {
      head = task->next;
      if (head == nullptr) tail = nullptr;
      task->next = nullptr;
    }
    return task;
  }

  // Removes task from a queue if it is still there.
  static bool unlink(GroupTask*& head, GroupTask*& tail, GroupTask* task) noexcept {
    GroupTask* previous = nullptr;
    for (GroupTask* it = head; it != nullptr; previous = it, it = it->next) {
      if (it != task) continue;
      (previous != nullptr ? previous->next : head) = it->next;
      if (tail == it) tail = previous;
      it->next = nullptr;
      return true;
    }
    return false;
  }

  Context ctx;
  CancelCauseFunc cancel;
  Executor* executor;
  SourceLocation created_at;
  std::thread::id creating_thread;
  int uncaught_at_creation;  // std::uncaught_exceptions() on creating_thread

  std::mutex mutex;
  std::condition_variable changed;  // outstanding or slots_in_use went down
  GroupTask* ready_head = nullptr;
  GroupTask* ready_tail = nullptr;
  GroupTask* deferred_head = nullptr;
  GroupTask* deferred_tail = nullptr;
  std::size_t limit = TaskGroup::kNoLimit;
  std::size_t slots_in_use = 0;
  std::size_t outstanding = 0;
  bool unjoined = false;               // tasks were spawned since the last join
  bool failed = false;                 // first_failure is set
  TaskFailure first_failure;           // kept apart from `failures`: recording it never allocates
  std::vector<TaskFailure> failures;   // every failure, as far as memory allowed
  std::size_t failures_collected = 0;  // failures a join has reported
  std::vector<std::coroutine_handle<>> join_waiters;
};

namespace {

// The group whose task this thread is running, if any (spawn never blocks there,
// wait() refuses there).
thread_local GroupState* tls_current_group = nullptr;

std::atomic<UnjoinedGroupHandler> unjoined_handler{nullptr};

void default_unjoined_handler(const UnjoinedGroup& group) {
  std::fprintf(stderr,
               "ctxpp: TaskGroup created at %s:%u (%s) was destroyed without wait(): "
               "%zu task(s) cancelled and joined, %zu failure(s) not collected\n",
               group.created_at.file_name(), static_cast<unsigned>(group.created_at.line()),
               group.created_at.function_name(), group.tasks_joined, group.failures.size());
}

void run_task(const std::shared_ptr<GroupState>& group, GroupTask* task) noexcept {
  GroupState* const previous = std::exchange(tls_current_group, group.get());
  task->start(group);  // destroys task
  tls_current_group = previous;
}

void run_one(const std::shared_ptr<GroupState>& group) noexcept {
  GroupTask* task = nullptr;
  {
    std::lock_guard lock(group->mutex);
    task = GroupState::pop(group->ready_head, group->ready_tail);
  }
  if (task != nullptr) run_task(group, task);
}

// Posts a runner for one ready task ([2]). If the executor refuses, the task is
// run here instead: the caller is a finishing task or set_limit, never a spawner
// (spawn reports the refusal itself).
void post_runner_or_run(const std::shared_ptr<GroupState>& group) noexcept {
  try {
    group->executor->execute([group] { run_one(group); });
  } catch (...) {
    run_one(group);
  }
}

}  // namespace

const Context& group_context(const GroupState& group) noexcept { return group.ctx; }

void group_finish(GroupState& group, std::error_code code, std::exception_ptr exception) noexcept {
  if (code) {
    bool first = false;
    {
      std::lock_guard lock(group.mutex);
      first = !group.failed;
      if (first) {
        group.failed = true;
        group.first_failure = {code, exception};
      }
      try {
        group.failures.push_back({code, std::move(exception)});
      } catch (...) {
        // Out of memory for the list: the first failure is kept apart, and the
        // count of later ones is what is lost.
      }
    }
    if (first) {
      // [4]: outside the lock, before leaving outstanding. Callbacks and coroutines
      // resumed by the cancel are not this group's tasks: clear the mark meanwhile.
      GroupState* const marked = std::exchange(tls_current_group, nullptr);
      group.cancel(code);
      tls_current_group = marked;
    }
  }
  std::vector<std::coroutine_handle<>> waiters;
  std::size_t promoted = 0;
  std::shared_ptr<GroupState> keep;
  {
    std::lock_guard lock(group.mutex);
    --group.slots_in_use;
    --group.outstanding;
    while (group.deferred_head != nullptr && group.slots_in_use < group.limit) {  // [3]
      GroupState::push(group.ready_head, group.ready_tail,
                       GroupState::pop(group.deferred_head, group.deferred_tail));
      ++group.slots_in_use;
      ++promoted;
    }
    if (group.outstanding == 0) waiters.swap(group.join_waiters);
    group.changed.notify_all();
    if (promoted > 0) keep = group.shared_from_this();
  }
  for (; promoted > 0; --promoted) post_runner_or_run(keep);
  if (!waiters.empty()) {
    // A coroutine resumed from join() is not one of this group's tasks.
    GroupState* const marked = std::exchange(tls_current_group, nullptr);
    for (std::coroutine_handle<> waiter : waiters) waiter.resume();
    tls_current_group = marked;
  }
}

}  // namespace ctxpp::detail

namespace ctxpp {

using detail::GroupState;
using detail::GroupTask;

TaskGroup::TaskGroup(const Context& parent, Executor& executor, SourceLocation where)
    : state_(std::make_shared<GroupState>(parent, executor, where)) {}

TaskGroup::~TaskGroup() {
  std::size_t tasks = 0;
  bool settled = false;
  {
    std::lock_guard lock(state_->mutex);
    tasks = state_->outstanding;
    settled = !state_->unjoined && tasks == 0;
  }
  if (settled) {
    // Nothing ran, or wait() joined it: the context ends with the group (errgroup),
    // so it is never left live and unlinked-late under its parent.
    state_->cancel({});
    return;
  }
  state_->cancel(make_error_code(failure::not_joined));
  join_all();
  // Unwinding through the scope is the expected way to skip wait(). The count is per
  // thread: on another thread, any exception in flight counts as unwinding.
  const int baseline =
      std::this_thread::get_id() == state_->creating_thread ? state_->uncaught_at_creation : 0;
  if (std::uncaught_exceptions() > baseline) return;
  UnjoinedGroup report;
  report.created_at = state_->created_at;
  report.tasks_joined = tasks;
  {
    std::lock_guard lock(state_->mutex);
    try {
      report.failures.assign(
          state_->failures.begin() + static_cast<std::ptrdiff_t>(state_->failures_collected),
          state_->failures.end());
    } catch (...) {
      // Report without the list rather than not at all.
    }
  }
  UnjoinedGroupHandler handler = detail::unjoined_handler.load(std::memory_order_acquire);
  (handler != nullptr ? handler : &detail::default_unjoined_handler)(report);
}

const Context& TaskGroup::context() const noexcept { return state_->ctx; }

void TaskGroup::set_limit(std::size_t limit) {
  if (limit == 0) throw std::invalid_argument("ctxpp::TaskGroup::set_limit: limit must be > 0");
  std::size_t promoted = 0;
  {
    std::lock_guard lock(state_->mutex);
    state_->limit = limit;
    while (state_->deferred_head != nullptr && state_->slots_in_use < limit) {
      GroupState::push(state_->ready_head, state_->ready_tail,
                       GroupState::pop(state_->deferred_head, state_->deferred_tail));
      ++state_->slots_in_use;
      ++promoted;
    }
    state_->changed.notify_all();  // blocked spawners may fit now
  }
  for (; promoted > 0; --promoted) detail::post_runner_or_run(state_);
}

TaskGroup::Slot TaskGroup::reserve(Admission admission) {
  GroupState& group = *state_;
  const bool inside = detail::tls_current_group == &group;
  const bool nested = detail::tls_current_group != nullptr;
  std::unique_lock lock(group.mutex);
  while (group.slots_in_use >= group.limit) {
    if (admission == Admission::refuse) return Slot::refused;
    if (inside) {  // never block a task of this group: it may hold the slot we wait for
      ++group.outstanding;
      group.unjoined = true;
      return Slot::deferred;
    }
    // A caller that is itself a task of some group (an outer task of a nested group)
    // may occupy the executor thread that the task holding the slot is queued for:
    // it helps by running queued tasks. Other callers (an acceptor loop) just wait,
    // so a spawn never runs someone else's task on a thread that does not expect it.
    GroupTask* queued = nested ? GroupState::pop(group.ready_head, group.ready_tail) : nullptr;
    if (queued != nullptr) {
      lock.unlock();
      detail::run_task(state_, queued);
      lock.lock();
      continue;
    }
    group.changed.wait(lock);
  }
  ++group.slots_in_use;
  ++group.outstanding;
  group.unjoined = true;
  return Slot::running;
}

void TaskGroup::release(Slot slot) noexcept {
  if (slot == Slot::refused) return;
  std::lock_guard lock(state_->mutex);
  if (slot == Slot::running) --state_->slots_in_use;
  --state_->outstanding;
  state_->changed.notify_all();
}

void TaskGroup::enqueue(GroupTask* task, Slot slot) {
  GroupState& group = *state_;
  {
    std::lock_guard lock(group.mutex);
    if (slot == Slot::deferred) {
      if (group.slots_in_use >= group.limit) {
        GroupState::push(group.deferred_head, group.deferred_tail, task);
        return;
      }
      // A slot freed while the task was being made, and the task that freed it found
      // nothing deferred to promote: take the slot now, or nobody would.
      ++group.slots_in_use;
    }
    GroupState::push(group.ready_head, group.ready_tail, task);
  }
  try {
    group.executor->execute([state = state_] { detail::run_one(state); });
  } catch (...) {
    std::unique_lock lock(group.mutex);
    if (!GroupState::unlink(group.ready_head, group.ready_tail, task)) {
      return;  // a waiting thread took it: it runs
    }
    --group.slots_in_use;
    --group.outstanding;
    group.changed.notify_all();
    lock.unlock();
    delete task;
    throw;
  }
}

void TaskGroup::join_all() {
  std::unique_lock lock(state_->mutex);
  for (;;) {
    if (GroupTask* task = GroupState::pop(state_->ready_head, state_->ready_tail)) {
      lock.unlock();
      detail::run_task(state_, task);  // help: a runner may be stuck behind us in a pool
      lock.lock();
      continue;
    }
    if (state_->outstanding == 0) break;
    state_->changed.wait(lock);
  }
}

std::error_code TaskGroup::wait() {
  if (detail::tls_current_group == state_.get()) {
    throw std::logic_error("ctxpp::TaskGroup::wait called from one of the group's own tasks");
  }
  join_all();
  return collect();
}

std::error_code TaskGroup::collect() {
  TaskFailure first;
  {
    std::lock_guard lock(state_->mutex);
    state_->unjoined = false;
    state_->failures_collected = state_->failures.size();
    if (state_->failed) first = state_->first_failure;
  }
  state_->cancel({});  // the group's context ends with its join, as errgroup's does
  if (first.exception) std::rethrow_exception(first.exception);
  return first.code;
}

bool TaskGroup::idle() const noexcept {
  std::lock_guard lock(state_->mutex);
  return state_->outstanding == 0;
}

bool TaskGroup::suspend_until_idle(std::coroutine_handle<> handle) {
  std::lock_guard lock(state_->mutex);
  if (state_->outstanding == 0) return false;
  state_->join_waiters.push_back(handle);
  return true;
}

std::vector<TaskFailure> TaskGroup::failures() const {
  std::lock_guard lock(state_->mutex);
  return state_->failures;
}

std::size_t TaskGroup::active() const noexcept {
  std::lock_guard lock(state_->mutex);
  return state_->outstanding;
}

UnjoinedGroupHandler set_unjoined_group_handler(UnjoinedGroupHandler handler) noexcept {
  return detail::unjoined_handler.exchange(handler, std::memory_order_acq_rel);
}

}  // namespace ctxpp
