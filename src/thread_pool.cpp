// ThreadPool: an elastic, bounded pool. Threads start on demand (never more than
// max_threads) and idle ones exit after idle_timeout. A thread that retires while
// the pool lives detaches itself: nobody may ever call the pool again to join it
// (the shared pools are never destroyed), and an unjoined thread keeps its stack.
// Threads that exit because the pool is being destroyed are joined by the
// destructor, so no task or thread outlives it.
//
// Invariant: idle_ counts threads blocked in ready_.wait; wakeups_ counts
// notifications granted to them and not yet consumed. A task finds an idle thread
// only if idle_ > wakeups_; otherwise a new thread is started (if below the bound).
#include <algorithm>
#include <stdexcept>
#include <system_error>

#include "ctxpp/executor.hpp"

namespace ctxpp {

ThreadPool::ThreadPool(std::size_t max_threads, clock::duration idle_timeout)
    : max_threads_(max_threads), idle_timeout_(idle_timeout) {
  if (max_threads == 0) throw std::invalid_argument("ctxpp::ThreadPool: max_threads must be > 0");
  if (idle_timeout < clock::duration::zero()) {
    throw std::invalid_argument("ctxpp::ThreadPool: idle_timeout must not be negative");
  }
}

ThreadPool::~ThreadPool() {
  std::unique_lock lock(mutex_);
  stopping_ = true;
  ready_.notify_all();
  all_exited_.wait(lock, [this] { return threads_.size() == finished_.size(); });
  join_finished(lock);
}

void ThreadPool::execute(std::function<void()> task) {
  std::unique_lock lock(mutex_);
  join_finished(lock);
  queue_.push_back(std::move(task));
  if (idle_ > wakeups_) {
    ++wakeups_;
    ready_.notify_one();
    return;
  }
  if (threads_.size() - finished_.size() >= max_threads_) return;  // queued: FIFO
  try {
    threads_.emplace_back();
    auto self = std::prev(threads_.end());
    *self = std::thread(&ThreadPool::work, this, self);
  } catch (...) {
    threads_.pop_back();
    if (threads_.size() == finished_.size()) {
      queue_.pop_back();  // nobody would ever run it: refuse it
      throw;
    }
    // Other threads exist: they will get to the task.
  }
}

void ThreadPool::work(std::list<std::thread>::iterator self) {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (!queue_.empty()) {
      std::function<void()> task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      task();
      task = nullptr;  // destroy captures outside the lock
      lock.lock();
      continue;
    }
    if (stopping_) break;
    ++idle_;
    const bool woken = ready_.wait_for(
        lock, idle_timeout_, [this] { return wakeups_ > 0 || stopping_ || !queue_.empty(); });
    --idle_;
    if (wakeups_ > 0) --wakeups_;
    if (!woken && queue_.empty() && !stopping_) {
      // Idle too long: retire. Under the lock, so the destructor (which waits on
      // all_exited_ with it) sees either this thread listed or gone.
      self->detach();
      threads_.erase(self);
      all_exited_.notify_all();
      return;
    }
  }
  finished_.push_back(self);
  all_exited_.notify_all();
}

void ThreadPool::join_finished(std::unique_lock<std::mutex>& lock) {
  // A finished thread has nothing left to do but return from work(): its join is
  // immediate. The lock is kept: nothing else touches these list entries.
  (void)lock;
  for (auto it : finished_) {
    if (it->joinable()) it->join();
    threads_.erase(it);
  }
  finished_.clear();
}

std::size_t ThreadPool::thread_count() const {
  std::lock_guard lock(mutex_);
  return threads_.size() - finished_.size();
}

std::size_t ThreadPool::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

Executor& default_executor() noexcept {
  static auto* pool = new ThreadPool(
      std::max<std::size_t>(64, 8 * static_cast<std::size_t>(std::thread::hardware_concurrency())));
  return *pool;
}

}  // namespace ctxpp
