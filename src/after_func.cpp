// after_func: a registration on the context that, when fired, hands f to the
// shared executor.
//
// The registration holds no reference on the node (Go's AfterFunc does not keep
// its context alive either): if every handle to the context goes away while it
// is live, the node orphans the registration and f never runs. So the node
// pointer in the state is guarded by the state's mutex, and the lock order is
// state mutex -> node lock (the node never takes a state's mutex while holding
// its own lock).
//
// References on the state: one per handle, one for the registration while it is
// linked (released by whoever takes it out of the list: stop(), fire, orphan),
// one for the executor task while queued or running.
#include <functional>
#include <mutex>
#include <thread>

#include "tree.hpp"

namespace ctxpp {
namespace detail {

// status_ values; kWaiterBit marks a thread sleeping in wait().
inline constexpr std::uint32_t kPending = 0;
inline constexpr std::uint32_t kStopped = 1;
inline constexpr std::uint32_t kScheduled = 2;
inline constexpr std::uint32_t kRunning = 3;
inline constexpr std::uint32_t kFinished = 4;
inline constexpr std::uint32_t kWaiterBit = 0x100;
inline constexpr std::uint32_t kStatusMask = 0xFF;

struct AfterFuncState;
struct AfterFuncRegistration final : CallbackBase {
  AfterFuncState* owner = nullptr;
};
struct AfterFuncTask final : ExecutorTask {
  AfterFuncState* owner = nullptr;
};

struct AfterFuncState {
  std::atomic<std::uint32_t> refs{1};
  std::atomic<std::uint32_t> status{kPending};
  AfterFuncRegistration registration;
  AfterFuncTask task;
  std::function<void()> function;
  std::mutex mutex;            // guards node
  SignalNode* node = nullptr;  // while the registration may be linked
  std::thread::id runner;      // written before kRunning is published

  AfterFuncState() noexcept {
    registration.owner = this;
    task.owner = this;
  }

  static AfterFuncState* from(CallbackBase* callback) noexcept {
    return static_cast<AfterFuncRegistration*>(callback)->owner;
  }
  static AfterFuncState* from(ExecutorTask* base) noexcept {
    return static_cast<AfterFuncTask*>(base)->owner;
  }

  void add_ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Moves status from `from` to `to`, keeping the waiter bit; wakes waiters.
  bool transition(std::uint32_t from, std::uint32_t to) noexcept {
    std::uint32_t value = status.load(std::memory_order_relaxed);
    for (;;) {
      if ((value & kStatusMask) != from) return false;
      if (status.compare_exchange_weak(value, (value & kWaiterBit) | to, std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
        if ((value & kWaiterBit) != 0U) futex_wake_all(&status);
        return true;
      }
    }
  }

  static void run(ExecutorTask* task) noexcept {
    AfterFuncState* self = from(task);
    self->runner = std::this_thread::get_id();
    self->transition(kScheduled, kRunning);
    self->function();  // an exception here terminates (documented)
    self->function = nullptr;
    self->transition(kRunning, kFinished);
    self->release();  // the task's reference
  }

  // Hands f to the executor, taking over the registration's reference.
  void schedule() noexcept {
    if (transition(kPending, kScheduled)) {
      task.run = &run;
      executor_post(&task);
    } else {
      release();  // stopped first: the registration's reference goes
    }
  }

  // Called by the canceller with the registration popped [context.cpp 1].
  static void fire(CallbackBase* callback) noexcept {
    // TRICKY: schedule() may free the state; tell the canceller not to touch
    // the registration after we return (nobody waits on its completion).
    *callback->removed_during_fire_ = true;
    AfterFuncState* self = from(callback);
    {
      // The node is alive now (its canceller holds it) but may be freed once we
      // return: a racing stop() must not unlink from it any more.
      std::lock_guard lock(self->mutex);
      self->node = nullptr;
    }
    self->schedule();
  }

  // The node is being freed with the registration linked: f can never run.
  static void orphan(CallbackBase* callback) noexcept {
    AfterFuncState* self = from(callback);
    {
      std::lock_guard lock(self->mutex);
      self->node = nullptr;
    }
    if (self->transition(kPending, kStopped)) self->function = nullptr;
    self->release();  // the registration's reference
  }
};

}  // namespace detail

using detail::AfterFuncState;

AfterFuncHandle::AfterFuncHandle(const AfterFuncHandle& other) noexcept : state_(other.state_) {
  if (state_ != nullptr) state_->add_ref();
}

AfterFuncHandle::AfterFuncHandle(AfterFuncHandle&& other) noexcept
    : state_(std::exchange(other.state_, nullptr)) {}

AfterFuncHandle& AfterFuncHandle::operator=(AfterFuncHandle other) noexcept {
  std::swap(state_, other.state_);
  return *this;
}

AfterFuncHandle::~AfterFuncHandle() {
  if (state_ != nullptr) state_->release();
}

bool AfterFuncHandle::stop() noexcept {
  if (state_ == nullptr) return false;
  if (!state_->transition(detail::kPending, detail::kStopped)) return false;
  bool unlinked = false;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->node != nullptr) {
      unlinked = detail::unlink_callback(state_->node, &state_->registration);
      state_->node = nullptr;
    }
  }
  state_->function = nullptr;  // captures go now; nobody can run f any more
  // If the registration was popped by a canceller instead, its fire() sees
  // kStopped and releases; if it was orphaned, orphan() does.
  if (unlinked) state_->release();
  return true;
}

void AfterFuncHandle::wait() const noexcept { (void)wait_for(clock::duration::max()); }

bool AfterFuncHandle::wait_for(clock::duration d) const noexcept {
  if (state_ == nullptr) return true;
  const clock::time_point deadline = detail::saturating_add(clock::now(), d);
  for (;;) {
    std::uint32_t value = state_->status.load(std::memory_order_acquire);
    const std::uint32_t status = value & detail::kStatusMask;
    if (status == detail::kStopped || status == detail::kFinished) return true;
    if (status == detail::kRunning && state_->runner == std::this_thread::get_id()) {
      return true;  // called from inside f: waiting would never end
    }
    if (clock::now() >= deadline) return false;
    if ((value & detail::kWaiterBit) == 0U &&
        !state_->status.compare_exchange_weak(value, value | detail::kWaiterBit,
                                              std::memory_order_acq_rel)) {
      continue;
    }
    const clock::time_point* limit = deadline == clock::time_point::max() ? nullptr : &deadline;
    detail::futex_wait(&state_->status, value | detail::kWaiterBit, limit);
  }
}

bool AfterFuncHandle::finished() const noexcept {
  return state_ != nullptr && (state_->status.load(std::memory_order_acquire) &
                               detail::kStatusMask) == detail::kFinished;
}

AfterFuncHandle after_func(const Context& ctx, std::function<void()> f) {
  auto* state = new AfterFuncState();
  state->function = std::move(f);
  state->registration.fire_ = &AfterFuncState::fire;
  state->registration.orphan_ = &AfterFuncState::orphan;
  AfterFuncHandle handle(state);  // the handle's reference
  detail::SignalNode* node = detail::Access::signal(ctx);
  if (node == nullptr) return handle;  // can never end: f never runs
  state->add_ref();                    // the registration's reference
  state->node = node;                  // not shared yet: no lock needed
  if (!detail::register_callback(node, &state->registration)) {
    state->node = nullptr;
    state->schedule();  // already done: run it now, still on the executor
  }
  return handle;
}

}  // namespace ctxpp
