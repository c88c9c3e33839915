// ctxpp/task.hpp — a minimal lazy coroutine type for context-aware async code.
// Task<T> is what a coroutine returns when it wants to be awaited by another
// coroutine or run by a TaskGroup: it starts when awaited, resumes its awaiter by
// symmetric transfer (constant stack on long chains where the compiler makes it a
// tail call, as optimised g++/clang builds do), and carries a value or an
// exception. sync_wait runs one to completion from ordinary code; sleep_for and
// resume_on are the two suspension points most handlers need beside
// `co_await ctxpp::cancelled(ctx)`.
// Example:
//   ctxpp::Task<std::error_code> poll_upstream(ctxpp::Context ctx) {
//     while (!ctx.done()) {
//       if (auto ec = co_await ctxpp::sleep_for(ctx, 100ms)) co_return ec;  // ended
//       refresh();
//     }
//     co_return ctx.err();
//   }
#pragma once

#include <condition_variable>
#include <coroutine>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include "ctxpp/context.hpp"
#include "ctxpp/coroutine.hpp"
#include "ctxpp/executor.hpp"

namespace ctxpp {

template <class T = void>
class Task;

namespace detail {

// Stores what a Task produced. Thread safety: written by the coroutine before its
// final suspension, read by its awaiter after resumption (happens-before through
// the resumption itself).
template <class T>
class TaskResult {
 public:
  template <class U>
  void return_value(U&& value) {
    result_.template emplace<1>(std::forward<U>(value));
  }
  void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }
  T take() {
    if (result_.index() == 2) std::rethrow_exception(std::get<2>(result_));
    return std::move(std::get<1>(result_));
  }

 private:
  std::variant<std::monostate, T, std::exception_ptr> result_;
};

template <>
class TaskResult<void> {
 public:
  void return_void() noexcept {}
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }
  void take() {
    if (exception_) std::rethrow_exception(exception_);
  }

 private:
  std::exception_ptr exception_;
};

// A coroutine that starts at once and frees itself when it ends: the driver that
// connects a Task to ordinary code (sync_wait, task groups). Its body must catch
// everything (an escaping exception terminates).
struct Detached {
  struct promise_type {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

}  // namespace detail

/// A lazily started coroutine producing a T (or an exception).
/// Where it runs: nothing runs until it is awaited (or passed to sync_wait or a
/// TaskGroup); it then runs inline in the awaiting thread up to its first real
/// suspension, and continues wherever that suspension is resumed.
/// Thread safety: a Task is awaited once, by one awaiter.
/// Cost: one frame allocation per call (the compiler may elide it); no locks.
/// Ownership: move-only; destroying a Task that never started destroys its frame.
/// Destroying one that is suspended mid-way is not allowed (await it to the end).
/// Errors: an exception escaping the coroutine is rethrown by co_await.
template <class T>
class [[nodiscard]] Task {
 public:
  struct promise_type : detail::TaskResult<T> {
    Task get_return_object() noexcept {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct FinalAwaiter {
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> self) noexcept {
        return self.promise().continuation_;
      }
      void await_resume() const noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }

    std::coroutine_handle<> continuation_ = std::noop_coroutine();
  };

  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    Task(std::move(other)).swap(*this);
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (handle_) handle_.destroy();
  }
  void swap(Task& other) noexcept { std::swap(handle_, other.handle_); }

  /// Starts the task and suspends the awaiter until it finishes; evaluates to its
  /// value or rethrows its exception. Errors: std::logic_error on an empty
  /// (moved-from) Task.
  auto operator co_await() && noexcept {
    struct Awaiter {
      std::coroutine_handle<promise_type> handle;
      bool await_ready() const noexcept { return !handle; }  // empty: await_resume throws
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
        handle.promise().continuation_ = awaiting;
        return handle;  // symmetric transfer: start the task on this thread
      }
      T await_resume() {
        if (!handle) throw std::logic_error("co_await on an empty ctxpp::Task (moved from)");
        return handle.promise().take();
      }
    };
    return Awaiter{handle_};
  }

 private:
  explicit Task(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}
  std::coroutine_handle<promise_type> handle_;
};

namespace detail {

template <class T>
struct SyncWaitState {
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  std::optional<std::conditional_t<std::is_void_v<T>, char, T>> value;
  std::exception_ptr exception;
};

template <class T>
Detached sync_wait_driver(Task<T> task, SyncWaitState<T>& state) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
      state.value.emplace();
    } else {
      state.value.emplace(co_await std::move(task));
    }
  } catch (...) {
    state.exception = std::current_exception();
  }
  // Notify under the lock: the waiter destroys state as soon as it sees done.
  std::lock_guard lock(state.mutex);
  state.done = true;
  state.cv.notify_all();
}

}  // namespace detail

/// Runs task to completion, blocking the calling thread; returns its value or
/// rethrows its exception.
/// Blocking: until the task ends, however it is resumed (other threads included).
/// Errors: must not be called from a thread the task needs in order to finish (an
/// executor's only thread): that deadlocks.
template <class T>
T sync_wait(Task<T> task) {
  detail::SyncWaitState<T> state;
  detail::sync_wait_driver(std::move(task), state);
  std::unique_lock lock(state.mutex);
  state.cv.wait(lock, [&] { return state.done; });
  if (state.exception) std::rethrow_exception(state.exception);
  if constexpr (!std::is_void_v<T>) return std::move(*state.value);
}

/// Awaitable that moves the awaiting coroutine onto executor: it resumes in one of
/// the executor's tasks. Errors: if the executor refuses (throws), co_await
/// rethrows that exception without suspending.
class [[nodiscard]] ResumeOn {
 public:
  explicit ResumeOn(Executor& executor) noexcept : executor_(&executor) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) {
    executor_->execute([handle] { handle.resume(); });
  }
  void await_resume() const noexcept {}

 private:
  Executor* executor_;
};

/// co_await resume_on(pool): continue on pool.
inline ResumeOn resume_on(Executor& executor) noexcept { return ResumeOn(executor); }

namespace detail {
// The cause sleep_for gives its own timer, to tell "slept the full time" from "ctx
// ended" without a race: a context's first ending wins, cause included.
const std::error_category& sleep_category() noexcept;
}  // namespace detail

/// Suspends for d, or until ctx ends, whichever is first. Evaluates to {} after
/// the full d, or to ctx.err() when ctx ended first (decided by whichever ended the
/// sleep, not by what happened during the hop to the executor).
/// Where it resumes: on executor (default_executor() by default), never on ctxpp's
/// timer thread or inside the canceller — unless executor runs tasks inline
/// (InlineExecutor): then on whichever thread ended the sleep.
/// Cost: one context child with a timer entry and one executor hand-off.
/// Errors: std::bad_alloc; a non-positive d still hops through the executor.
inline Task<std::error_code> sleep_for(Context ctx, clock::duration d,
                                       Executor& executor = default_executor()) {
  std::error_code result;
  {
    const std::error_code slept(1, detail::sleep_category());
    // ctxpp-audit: ignore CTX003 — timer and cancel_timer end with this scope, freeing the entry
    auto [timer, cancel_timer] = with_timeout_cause(ctx, d, slept);
    co_await cancelled(timer);
    if (timer.cause() != slept) result = timer.err();  // ctx ended first: its err()
  }
  co_await resume_on(executor);
  co_return result;
}

}  // namespace ctxpp
