// tests/support/test_support.hpp — what every ctxpp test binary shares: which
// sanitizer it runs under (loops are scaled down there), and bounded waits that
// fail with a message instead of hanging the suite.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
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

}  // namespace ctxpp_test
