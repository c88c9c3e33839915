// The shared executor that runs after_func functions off the cancelling thread.
//
// A cancel can post thousands of short functions at once (one per registration), or a
// few that block for seconds (closing a connection). Rules:
//  1. Waking a thread costs a syscall, so a post wakes or starts a worker only when no
//     worker is active (running or about to pop); an active worker drains the queue.
//  2. A worker that pops a task while more are queued wakes (or starts) one more, up
//     to the number of hardware threads: a burst gets every core, one futex wake per
//     worker rather than one per task.
//  3. A task that has waited kStall means the active workers are blocked in slow
//     functions (or in waiting for the very task queued behind them): a worker is
//     added beyond the hardware count, up to kMaxWorkers. Nobody may post again to
//     notice, so while tasks are queued a monitor thread checks every kStall; it
//     exits when the queue is empty.
//  4. A worker idle for kIdleTimeout retires, except the last one: a burst after a
//     quiet spell then costs the cancelling thread a futex wake, not a thread start
//     (hundreds of microseconds here).
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>

#include "tree.hpp"

namespace ctxpp::detail {
namespace {

class Executor {
 public:
  void post(ExecutorTask* task) noexcept {
    std::unique_lock lock(mutex_);
    task->next = nullptr;
    task->queued_at = clock::now();
    if (tail_ != nullptr) {
      tail_->next = task;
    } else {
      head_ = task;
    }
    tail_ = task;
    if (active_ == 0 || stalled(task->queued_at)) {
      add_worker(lock);
    } else if (!monitoring_) {
      start_monitor();
    }
  }

 private:
  static constexpr int kMaxWorkers = 64;
  static constexpr std::chrono::seconds kIdleTimeout{2};
  static constexpr std::chrono::milliseconds kStall{2};

  static int eager_workers() noexcept {
    static const int count = static_cast<int>(std::max(2U, std::thread::hardware_concurrency()));
    return count;
  }

  bool stalled(clock::time_point now) const noexcept {
    return head_ != nullptr && now - head_->queued_at >= kStall;
  }

  // Wakes a sleeping worker or starts a new one (rules 1-3). Called with the lock held.
  void add_worker(std::unique_lock<std::mutex>& lock) noexcept {
    if (sleeping_ > 0) {
      // The woken worker counts as active from now on, so a burst of posts sends one
      // wake-up, not one per post while it is still getting the mutex.
      --sleeping_;
      ++active_;
      ++wake_tokens_;
      ready_.notify_one();
      return;
    }
    if (workers_ >= kMaxWorkers) return;
    try {
      std::thread(&Executor::work, this).detach();
      ++workers_;
      ++active_;
    } catch (const std::system_error&) {
      if (workers_ == 0) {
        // No thread could be made and none exists: run the queue here, the only way
        // the functions ever run.
        while (ExecutorTask* task = pop()) {
          lock.unlock();
          task->run(task);
          lock.lock();
        }
      }
    }
  }

  void start_monitor() noexcept {
    try {
      std::thread(&Executor::monitor, this).detach();
      monitoring_ = true;
    } catch (const std::system_error&) {
      // Without a monitor, stalls are still noticed by the next post or pop.
    }
  }

  void monitor() noexcept {
    std::unique_lock lock(mutex_);
    while (head_ != nullptr) {
      stall_check_.wait_for(lock, kStall);
      if (stalled(clock::now())) add_worker(lock);
    }
    monitoring_ = false;
  }

  ExecutorTask* pop() noexcept {
    ExecutorTask* task = head_;
    if (task != nullptr) {
      head_ = task->next;
      if (head_ == nullptr) tail_ = nullptr;
    }
    return task;
  }

  void work() noexcept {
    std::unique_lock lock(mutex_);
    for (;;) {
      ExecutorTask* task = pop();
      if (task == nullptr) {
        --active_;
        ++sleeping_;
        while (!ready_.wait_for(lock, kIdleTimeout, [this] { return wake_tokens_ > 0; })) {
          if (workers_ > 1) {
            --sleeping_;
            --workers_;  // rule 4
            return;
          }
        }
        --wake_tokens_;  // add_worker already counted us active
        continue;
      }
      if (head_ != nullptr && (active_ < eager_workers() || stalled(clock::now()))) {
        add_worker(lock);  // rule 2
      }
      lock.unlock();
      task->run(task);
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable stall_check_;  // only waited on by the monitor, with a timeout
  bool monitoring_ = false;
  ExecutorTask* head_ = nullptr;
  ExecutorTask* tail_ = nullptr;
  int workers_ = 0;
  int active_ = 0;       // workers not sleeping
  int sleeping_ = 0;     // workers waiting on ready_
  int wake_tokens_ = 0;  // wake-ups granted by add_worker, not yet taken
};

// Never destroyed: workers may still be draining during static destruction.
Executor& executor() {
  static auto* instance = new Executor();
  return *instance;
}

}  // namespace

void executor_post(ExecutorTask* task) noexcept { executor().post(task); }

}  // namespace ctxpp::detail
