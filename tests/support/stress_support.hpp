// tests/support/stress_support.hpp — what the stress tests (tests/stress/) share.
//
// A stress test
//  - prints the seed it runs with (announce_seed): CTXPP_SEED if set, else a fresh one,
//    so that a failure can be replayed with CTXPP_SEED=<n> --gtest_filter=<test>;
//  - is bounded by an iteration count, cut down under a sanitizer (scaled), and by wall
//    time (Budget, or TimeBudget for a loop that counts its own iterations), and reports
//    how far it got;
//  - reports failures seen on worker threads, a few at most (Failures);
//  - cannot hang CTest. Either its body runs under run_with_watchdog, which fails the
//    test with a dump and abandons the body, so that the other tests of the binary still
//    run; or a Watchdog object lives beside the body and aborts the process, saying
//    where the test was, when the body blocks the test thread itself.
// Each test keeps its own bounds: the iteration counts, wall time and watchdog limits
// are arguments, not constants of this header.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>

#include "support/test_support.hpp"

namespace ctxpp_test {

// --- the seed ---------------------------------------------------------------------------

// The seed of this run: CTXPP_SEED if set and not empty (read by strtoull with base 0:
// decimal, 0x hex or 0 octal), else a fresh one. Fixed for the whole process, so every
// test of a binary and every failure message agree on it.
inline std::uint64_t run_seed() {
  static const std::uint64_t seed = [] {
    if (const char* env = std::getenv("CTXPP_SEED"); env != nullptr && *env != '\0') {
      return static_cast<std::uint64_t>(std::strtoull(env, nullptr, 0));
    }
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32U) ^ device() ^
           static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }();
  return seed;
}

// Prints run_seed() with the command line that replays the current test, records it as
// the test's "seed" property (in the XML report), and returns it. Call it first thing
// in every stress test.
inline std::uint64_t announce_seed() {
  const std::uint64_t seed = run_seed();
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::printf("[ seed     ] CTXPP_SEED=%llu --gtest_filter=%s.%s%s\n",
              static_cast<unsigned long long>(seed), info->test_suite_name(), info->name(),
              kTsan ? " (TSan: iterations cut 10x)" : "");
  std::fflush(stdout);
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  return seed;
}

// --- bounds -----------------------------------------------------------------------------

// The iterations a stress loop of n runs in this build: a tenth under ThreadSanitizer,
// n / asan_cut under AddressSanitizer (uncut unless the test asks), n otherwise; never
// fewer than one.
template <std::integral N>
constexpr N scaled(N n, N asan_cut = 1) {
  if (kTsan) return std::max<N>(n / 10, 1);
  if (kAsan) return std::max<N>(n / asan_cut, 1);
  return n;
}

// The wall time a stress test runs for by default: it then stops early and reports how
// many iterations it got through. CTXPP_STRESS_SECONDS (1..600) changes it: the test
// script shortens it where several builds share a machine; a soak run lengthens it.
inline std::chrono::steady_clock::duration stress_wall_time() {
  if (const char* env = std::getenv("CTXPP_STRESS_SECONDS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long seconds = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && seconds >= 1 && seconds <= 600) {
      return std::chrono::seconds(seconds);
    }
    std::fprintf(stderr, "CTXPP_STRESS_SECONDS='%s' ignored: expected 1..600\n", env);
  }
  return std::chrono::seconds(5);
}
inline const std::chrono::steady_clock::duration kStressWallTime = stress_wall_time();

// The wall-time half of a budget, for a loop that counts its own iterations. Read-only
// once made: any thread may ask it.
class TimeBudget {
 public:
  explicit TimeBudget(std::chrono::steady_clock::duration wall = kStressWallTime)
      : until_(std::chrono::steady_clock::now() + wall) {}
  bool out_of_time() const { return std::chrono::steady_clock::now() >= until_; }

 private:
  std::chrono::steady_clock::time_point until_;
};

// Iteration and wall-time budget of one test: `while (budget.next()) { ... }` runs
// scaled(iterations) times at the most, and stops once wall has passed.
class Budget {
 public:
  explicit Budget(std::size_t iterations,
                  std::chrono::steady_clock::duration wall = kStressWallTime)
      : left_(scaled(iterations)), time_(wall) {}
  bool next() {
    if (left_ == 0 || time_.out_of_time()) return false;
    --left_;
    ++done_;
    return true;
  }
  // Iterations next() granted so far.
  std::size_t done() const { return done_; }

 private:
  std::size_t left_;
  std::size_t done_ = 0;
  TimeBudget time_;
};

// --- failures on worker threads ---------------------------------------------------------

// Reports at most a few failures from any thread, each with the seed, then stays quiet.
// message is called only for a failure that is reported.
class Failures {
 public:
  template <class F>
  void report(F&& message) {
    if (count_.fetch_add(1) < 8) ADD_FAILURE() << message() << "\n(seed " << run_seed() << ")";
  }
  bool any() const { return count_.load() != 0; }

 private:
  std::atomic<int> count_{0};
};

// --- hangs ------------------------------------------------------------------------------

// Runs body on its own thread and waits for it up to limit. On a hang the test fails
// with "hang: ..." followed by dump()'s text (what the test wants shown: threads, live
// contexts, ...), and the thread is abandoned, so the rest of the run can go on; that is
// safe because it owns everything it touches (body is moved into shared state).
inline void run_with_watchdog(std::chrono::steady_clock::duration limit,
                              const std::function<std::string()>& dump,
                              std::function<void()> body) {
  struct State {
    std::mutex mutex;
    std::condition_variable cv;
    bool finished = false;
    std::function<void()> body;
  };
  auto state = std::make_shared<State>();
  state->body = std::move(body);
  std::thread runner([state] {
    state->body();
    {
      std::lock_guard lock(state->mutex);
      state->finished = true;
    }
    state->cv.notify_all();
  });
  std::unique_lock lock(state->mutex);
  if (state->cv.wait_for(lock, limit, [&] { return state->finished; })) {
    lock.unlock();
    runner.join();
    return;
  }
  lock.unlock();
  runner.detach();
  ADD_FAILURE() << "hang: the test body did not finish within "
                << std::chrono::duration_cast<std::chrono::seconds>(limit).count() << " s; "
                << dump();
}

// Aborts the process if it is still alive limit after the watchdog was made, printing
// where the test was (the last phase() and iteration() it marked, if any), the seed and
// the process's threads: a deadlocked test must fail, not hang CTest. For a test whose
// body runs on the test thread and cannot be abandoned; it watches from a thread of its
// own, stopped and joined by the destructor.
class Watchdog {
 public:
  explicit Watchdog(std::chrono::steady_clock::duration limit)
      : thread_([this, limit] { watch(limit); }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  // what must outlive the watchdog (a string literal, typically).
  void phase(const char* what) noexcept { phase_.store(what); }
  void iteration(std::int64_t i) noexcept { iteration_.store(i, std::memory_order_relaxed); }

 private:
  void watch(std::chrono::steady_clock::duration limit) {
    std::unique_lock lock(mutex_);
    if (cv_.wait_for(lock, limit, [&] { return stop_; })) return;
    std::string where;
    if (const char* phase = phase_.load(); phase != nullptr) {
      where += std::string(": phase '") + phase + "'";
    }
    if (const std::int64_t i = iteration_.load(); i >= 0) {
      where += (where.empty() ? ": iteration " : ", iteration ") + std::to_string(i);
    }
    std::fprintf(stderr,
                 "HANG: test still running after the watchdog limit%s, seed=%llu (replay with "
                 "CTXPP_SEED). Most likely a deadlock. Threads:%s\n",
                 where.c_str(), static_cast<unsigned long long>(run_seed()),
                 describe_threads().c_str());
    std::abort();
  }

  std::atomic<const char*> phase_{nullptr};
  std::atomic<std::int64_t> iteration_{-1};
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the members it reads exist
};

// --- jitter -----------------------------------------------------------------------------

// Burns about `iterations` cheap steps without touching memory: random delays that make
// both orders of a race happen.
inline void spin_for(std::uint32_t iterations) {
  for (std::uint32_t i = 0; i < iterations; ++i) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
}

}  // namespace ctxpp_test
