// tests/support/test_support.hpp — what every ctxpp test binary shares: which
// sanitizer it runs under (loops are scaled down there), gates and bounded waits that
// fail with a message instead of hanging the suite, a concurrency counter, and what a
// failure message shows (the process's threads, an error code). The stress tests'
// seeds, budgets and watchdogs are in support/stress_support.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

namespace ctxpp_test {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kTsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif
#else
inline constexpr bool kTsan = false;
#endif

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAsan = true;
#else
inline constexpr bool kAsan = false;
#endif
#else
inline constexpr bool kAsan = false;
#endif

// The generous bound of a wait that only a bug can make long.
inline constexpr std::chrono::steady_clock::duration kLongBound = std::chrono::seconds(30);

// A one-shot gate: open() once, wait() with a bound.
class Gate {
 public:
  void open() {
    // Notify under the lock: a waiter may destroy the gate as soon as it wakes.
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  bool wait(std::chrono::steady_clock::duration bound = kLongBound) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, bound, [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Opens a gate when the scope ends, so that a failed assertion never leaves a task
// blocked on it while a pool's or a group's destructor waits for that task. Declare it
// after the pool or group: it is destroyed (and opens) first.
class OpenOnExit {
 public:
  explicit OpenOnExit(Gate& gate) : gate_(gate) {}
  OpenOnExit(const OpenOnExit&) = delete;
  OpenOnExit& operator=(const OpenOnExit&) = delete;
  ~OpenOnExit() { gate_.open(); }

 private:
  Gate& gate_;
};

// A thread parks in hold() (typically inside a cancellation callback) until the
// test calls release(); the test can wait until it got there.
class HoldGate {
 public:
  void hold(std::chrono::steady_clock::duration bound = kLongBound) {
    std::unique_lock lock(mutex_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, bound, [&] { return open_; });
  }
  bool wait_entered(std::chrono::steady_clock::duration bound = kLongBound) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, bound, [&] { return entered_; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool open_ = false;
};

// Polls pred (yielding) until it holds or bound passes; returns whether it held.
template <class Pred>
bool eventually(Pred pred, std::chrono::steady_clock::duration bound = kLongBound) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::yield();
  }
  return true;
}

// Counts tasks running at once and remembers the highest count: enter() as a task
// starts, leave() as it ends.
class Concurrency {
 public:
  void enter() {
    const int now = running_.fetch_add(1) + 1;
    int seen = max_.load();
    while (now > seen && !max_.compare_exchange_weak(seen, now)) {
    }
  }
  void leave() { running_.fetch_sub(1); }
  int running() const { return running_.load(); }
  int max() const { return max_.load(); }

 private:
  std::atomic<int> running_{0};
  std::atomic<int> max_{0};
};

// Runs body on a helper thread; aborts with a message if it does not finish
// within bound (a blocked call cannot be reclaimed safely).
template <class F>
void run_bounded(const char* what, F&& body,
                 std::chrono::steady_clock::duration bound = kLongBound) {
  Gate finished;
  std::thread runner([&] {
    std::forward<F>(body)();
    finished.open();
  });
  if (!finished.wait(bound)) {
    std::fprintf(stderr, "DEADLOCK: %s did not finish within the bound\n", what);
    std::abort();
  }
  runner.join();
}

// This process's threads with their state and kernel wait channel, one per line: what
// a test prints when a wait that should have ended did not.
inline std::string describe_threads() {
  std::ostringstream out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    std::ifstream wchan(entry.path() / "wchan");
    std::string channel;
    std::getline(wchan, channel);
    const auto close = line.rfind(')');
    out << "\n  " << entry.path().filename().string() << " "
        << (close != std::string::npos ? line.substr(0, close + 3) : line) << " wchan=" << channel;
  }
  return out.str();
}

// The number of threads of this process (entries of /proc/self/task); 0 if that cannot
// be read.
inline std::size_t process_thread_count() {
  std::size_t count = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec);
       it != std::filesystem::directory_iterator(); ++it) {
    ++count;
  }
  return count;
}

// An error code as category:value (message), or {} for none: for failure messages.
inline std::string describe(const std::error_code& ec) {
  if (!ec) return "{}";
  return std::string(ec.category().name()) + ":" + std::to_string(ec.value()) + " (" +
         ec.message() + ")";
}

}  // namespace ctxpp_test
