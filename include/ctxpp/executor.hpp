// ctxpp/executor.hpp — where tasks run: an interface and a bounded thread pool.
// Task groups, cancellable blocking calls and the cleanup coordinator never start
// a thread per task: they hand work to an Executor. The default is one small shared
// ThreadPool that grows on demand up to a bound and shrinks when idle; pass your own
// (an event loop, a pool of your sizing) through the Executor interface.
// Example:
//   ctxpp::ThreadPool pool(8);
//   ctxpp::TaskGroup group(ctx, pool);
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

#include "ctxpp/context.hpp"

namespace ctxpp {

/// Something that runs functions later, on threads it chooses.
/// Thread safety: execute() may be called from any thread at once, including from
/// inside a task it runs. Ownership: the executor owns task until it has run.
class Executor {
 public:
  /// Runs task exactly once, later. The task must not throw (an escaping exception
  /// calls std::terminate); ctxpp's own tasks never do.
  /// Blocking: never waits for the task; may briefly take a lock.
  /// Errors: throws (std::bad_alloc, std::system_error) only if the task could not
  /// be accepted; it is then never run.
  virtual void execute(std::function<void()> task) = 0;

 protected:
  Executor() = default;
  Executor(const Executor&) = default;
  Executor& operator=(const Executor&) = default;
  ~Executor() = default;
};

/// A pool of at most max_threads threads. A thread is started only when a task
/// arrives and no thread is idle; a thread idle for idle_timeout exits, down to
/// zero, so an unused pool holds no threads.
/// Thread safety: execute() from any thread, including from its own tasks.
/// Blocking: execute() never waits for a thread; tasks beyond max_threads queue in
/// FIFO order. The destructor runs every queued task and joins every thread.
/// Cost: execute() is a mutex section plus one std::function; a wake-up (futex) or
/// a thread start when no thread is idle.
/// Ownership: not copyable or movable. Tasks must not destroy their own pool.
class ThreadPool final : public Executor {
 public:
  /// Errors: throws std::invalid_argument if max_threads is 0 or idle_timeout is
  /// negative.
  explicit ThreadPool(std::size_t max_threads,
                      clock::duration idle_timeout = std::chrono::seconds(2));
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();

  /// See Executor::execute. Errors: std::bad_alloc; std::system_error if no thread
  /// exists and none can be started (the task is not queued then).
  void execute(std::function<void()> task) override;

  /// Threads alive right now (running or idle). Cost: a mutex section.
  std::size_t thread_count() const;
  /// Tasks accepted but not yet started. Cost: a mutex section.
  std::size_t queued() const;
  std::size_t max_threads() const noexcept { return max_threads_; }

 private:
  void work(std::list<std::thread>::iterator self);
  void join_finished(std::unique_lock<std::mutex>& lock);

  const std::size_t max_threads_;
  const clock::duration idle_timeout_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable all_exited_;
  std::deque<std::function<void()>> queue_;
  std::list<std::thread> threads_;
  std::vector<std::list<std::thread>::iterator> finished_;  // exited, not yet joined
  std::size_t idle_ = 0;
  std::size_t wakeups_ = 0;  // notifications granted to idle threads, not yet taken
  bool stopping_ = false;
};

/// The shared pool task groups use by default: at most max(64, 8 × hardware
/// threads) threads, started only on demand; idle ones exit after 2 s. The bound is
/// generous because request tasks block (a query, an upstream call, waiting for
/// their context): tasks beyond it queue, and tasks that wait for a queued sibling
/// would wait forever. Give CPU-bound work its own ThreadPool sized to the cores.
/// Never destroyed (tasks may still run during static destruction).
/// Thread safety: any thread. Cost: none after first use.
Executor& default_executor() noexcept;

/// Runs every task at once in the calling thread. For tests and for work that is
/// known to be short; a task group on it runs its tasks one by one inside spawn().
class InlineExecutor final : public Executor {
 public:
  void execute(std::function<void()> task) override { task(); }
};

}  // namespace ctxpp
