// The shared executor that runs after_func functions off the cancelling thread.
// Elastic: a worker is started when more work is queued than workers are idle
// (up to kMaxWorkers), and a worker idle for kIdleTimeout retires, so a process that
// stops using after_func goes back to no executor threads. A blocking function
// therefore delays the others only once kMaxWorkers are all busy.
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
    if (tail_ != nullptr) {
      tail_->next = task;
    } else {
      head_ = task;
    }
    tail_ = task;
    ++queued_;
    if (queued_ <= idle_) {
      lock.unlock();
      ready_.notify_one();
      return;
    }
    if (workers_ < kMaxWorkers) {
      try {
        std::thread(&Executor::work, this).detach();
        ++workers_;
        return;
      } catch (const std::system_error&) {
        // No thread could be made; an existing worker will get to it.
      }
    }
    if (workers_ == 0) {
      // Nothing will ever run it otherwise: run it here, documented as the
      // last resort.
      ExecutorTask* mine = pop();
      lock.unlock();
      if (mine != nullptr) mine->run(mine);
    }
  }

 private:
  static constexpr int kMaxWorkers = 16;
  static constexpr std::chrono::seconds kIdleTimeout{2};

  ExecutorTask* pop() noexcept {
    ExecutorTask* task = head_;
    if (task != nullptr) {
      --queued_;
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
        ++idle_;
        const bool woken = ready_.wait_for(lock, kIdleTimeout, [this] { return head_ != nullptr; });
        --idle_;
        if (!woken) {
          --workers_;
          return;
        }
        continue;
      }
      lock.unlock();
      task->run(task);
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  ExecutorTask* head_ = nullptr;
  ExecutorTask* tail_ = nullptr;
  int workers_ = 0;
  int idle_ = 0;
  int queued_ = 0;
};

// Never destroyed: workers may still be draining during static destruction.
Executor& executor() {
  static auto* instance = new Executor();
  return *instance;
}

}  // namespace

void executor_post(ExecutorTask* task) noexcept { executor().post(task); }

}  // namespace ctxpp::detail
