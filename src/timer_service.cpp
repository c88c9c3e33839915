// The shared timer service: one thread and one 4-ary min-heap for every
// deadline in the process, never a thread or an OS timer per context.
//
// Rules:
//  1. The heap and every TimerNode::heap_index_ are guarded by mutex_.
//  2. The heap holds no reference on a node: a node removes its entry before it
//     is freed (retire) and as soon as it ends (finish_kind). The thread takes a
//     reference with try_add_ref under mutex_ before firing; a node whose count
//     is zero is being freed and is skipped.
//  3. No node lock is taken while mutex_ is held; nodes are ended after it is
//     released (the firing runs callbacks, which may create deadlines).
//  4. The thread sleeps until the earliest deadline; an insertion wakes it only
//     when the new deadline is earlier than the time it sleeps until, so
//     create+cancel of far deadlines costs no syscall.
#include <algorithm>
#include <array>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "tree.hpp"

namespace ctxpp::detail {
namespace {

class TimerService {
  // The deadline is copied beside the pointer: comparisons stay in the array
  // instead of missing the cache on every node.
  struct Entry {
    clock::time_point deadline;
    TimerNode* node;
  };

 public:
  void add(TimerNode* node) {
    std::unique_lock lock(mutex_);
    node->heap_index_ = heap_.size();
    heap_.push_back({node->deadline_, node});  // may throw bad_alloc: node stays unarmed
    sift_up(heap_.size() - 1);
    if (!thread_started_) start_thread();
    if (node->deadline_ < wake_at_) {
      wake_at_ = node->deadline_;
      lock.unlock();
      wake_.notify_one();
    }
  }

  void remove(TimerNode* node) noexcept {
    std::lock_guard lock(mutex_);
    erase(node);
  }

  std::size_t size() noexcept {
    std::lock_guard lock(mutex_);
    return heap_.size();
  }

 private:
  static constexpr std::size_t kArity = 4;
  static constexpr std::size_t kFireBatch = 256;

  void start_thread() {
    std::thread(&TimerService::run, this).detach();
    thread_started_ = true;
  }

  void place(std::size_t index, const Entry& entry) noexcept {
    heap_[index] = entry;
    entry.node->heap_index_ = index;
  }

  void sift_up(std::size_t index) noexcept {
    const Entry entry = heap_[index];
    while (index > 0) {
      const std::size_t parent = (index - 1) / kArity;
      if (!(entry.deadline < heap_[parent].deadline)) break;
      place(index, heap_[parent]);
      index = parent;
    }
    place(index, entry);
  }

  void sift_down(std::size_t index) noexcept {
    const Entry entry = heap_[index];
    const std::size_t size = heap_.size();
    for (;;) {
      const std::size_t first = index * kArity + 1;
      if (first >= size) break;
      std::size_t best = first;
      const std::size_t last = std::min(first + kArity, size);
      for (std::size_t child = first + 1; child < last; ++child) {
        if (heap_[child].deadline < heap_[best].deadline) best = child;
      }
      if (!(heap_[best].deadline < entry.deadline)) break;
      place(index, heap_[best]);
      index = best;
    }
    place(index, entry);
  }

  void erase(TimerNode* node) noexcept {
    const std::size_t index = node->heap_index_;
    if (index == kNotInHeap) return;
    node->heap_index_ = kNotInHeap;
    const Entry last = heap_.back();
    heap_.pop_back();
    if (last.node != node) {
      place(index, last);
      sift_up(index);
      sift_down(last.node->heap_index_);
    }
    // Give memory back after a burst (10^6 cancelled timers must not pin it).
    if (heap_.capacity() > 1024 && heap_.size() < heap_.capacity() / 4) heap_.shrink_to_fit();
  }

  void run() noexcept {
    std::array<TimerNode*, kFireBatch> due{};
    std::unique_lock lock(mutex_);
    for (;;) {
      if (heap_.empty()) {
        wake_at_ = clock::time_point::max();
        wake_.wait(lock);
        continue;
      }
      const clock::time_point now = clock::now();
      if (now < heap_.front().deadline) {
        wake_at_ = heap_.front().deadline;
        wake_.wait_until(lock, wake_at_);
        continue;
      }
      std::size_t count = 0;
      while (count < kFireBatch && !heap_.empty() && !(now < heap_.front().deadline)) {
        TimerNode* node = heap_.front().node;
        erase(node);
        if (try_add_ref(node)) due[count++] = node;  // rule 2
      }
      lock.unlock();  // rule 3
      for (std::size_t i = 0; i < count; ++i) {
        TimerNode* node = due[i];
        tls_firing_timer = node;
        cancel_node(node, errc::deadline_exceeded, node->cause_ ? 0 : kNoCause, nullptr);
        tls_firing_timer = nullptr;
        release(node);
      }
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Entry> heap_;
  clock::time_point wake_at_ = clock::time_point::max();
  bool thread_started_ = false;
};

// Never destroyed: the timer thread may run during static destruction, and a
// context may end after main() returned.
TimerService& service() {
  static auto* instance = new TimerService();
  return *instance;
}

}  // namespace

void timer_add(TimerNode* node) {
  TimerService& timers = service();
  timers.add(node);
  // If the node ended before it was armed, its finish_kind found nothing to
  // remove: disarm it now (rule 2).
  if ((node->state_.load(std::memory_order_acquire) & kDone) != 0U) timers.remove(node);
}

void timer_remove(TimerNode* node) noexcept { service().remove(node); }

std::size_t pending_timers() noexcept { return service().size(); }

}  // namespace ctxpp::detail
