// examples/patterns/support.hpp — what the pattern programs use to check themselves,
// apart from the patterns they show: a named point where threads meet instead of
// sleeping, and the tally of the checks that decides the exit status.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>

namespace pattern_support {

// A one-shot signal with a bounded wait: threads meet at a named point instead of
// sleeping and hoping.
class Milestone {
 public:
  void reach() {
    std::lock_guard lock(mutex_);
    reached_ = true;
    changed_.notify_all();
  }
  bool wait_for(std::chrono::steady_clock::duration limit) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return reached_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool reached_ = false;
};

namespace detail {
inline int failures = 0;
}  // namespace detail

// One check: prints what failed, and counts it.
inline void expect(bool condition, const char* what) {
  if (condition) return;
  std::printf("  FAILED: %s\n", what);
  ++detail::failures;
}

// Prints "<program>: ok", or ": FAILED" if a check failed, and returns the exit status.
inline int verdict(const char* program) {
  std::printf("%s: %s\n", program, detail::failures == 0 ? "ok" : "FAILED");
  return detail::failures == 0 ? 0 : 1;
}

}  // namespace pattern_support
