// Stress tests of call_blocking: many threads make calls whose contexts end at
// random moments (before the call, while it is queued, while it runs, never), with
// and without an interrupt hook, some throwing. Each call must end in exactly one
// way, withdrawn functions must never run, abandoned ones must be counted exactly
// and every result released. Each test prints its seed (replay with
// CTXPP_SEED=<n>), is bounded in iterations and in wall time (~5 s), runs 10x fewer
// iterations under TSan, and a watchdog aborts with a message instead of hanging.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ctxpp/blocking.hpp"
#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "support/stress_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::clock;
using ctxpp_test::announce_seed;
using ctxpp_test::scaled;
using ctxpp_test::TimeBudget;
using ctxpp_test::Watchdog;

// Per test: stop early at kStressWallTime (5 s, or CTXPP_STRESS_SECONDS) and report how far we got;
// abort at the watchdog limit (a hang, not slowness).
constexpr clock::duration kWatchdogLimit = 90s;
// Iterations are cut 10x under TSan (scaled) and 4x under ASan.
constexpr int kAsanCut = 4;

// What one call's function did, seen from outside.
struct Probe {
  std::atomic<bool> started{false};
  std::atomic<bool> finished{false};
  std::atomic<bool> interrupted{false};
};

// A result whose live instances are counted: zero at the end means every result,
// abandoned or not, was released.
class Counted {
 public:
  Counted(std::atomic<long>& live, int value) : live_(&live), value_(value) { live_->fetch_add(1); }
  Counted(Counted&& other) noexcept
      : live_(std::exchange(other.live_, nullptr)), value_(other.value_) {}
  Counted& operator=(Counted&&) = delete;
  ~Counted() {
    if (live_ != nullptr) live_->fetch_sub(1);
  }
  int value() const noexcept { return value_; }

 private:
  std::atomic<long>* live_;
  int value_;
};

// Burns about `micros` microseconds, or less if interrupted.
void work_for(std::chrono::microseconds micros, const Probe& probe, bool stop_when_interrupted) {
  const clock::time_point until = clock::now() + micros;
  while (clock::now() < until) {
    if (stop_when_interrupted && probe.interrupted.load(std::memory_order_relaxed)) return;
    std::this_thread::yield();
  }
}

struct Tally {
  std::atomic<long> completed{0};
  std::atomic<long> rethrown{0};
  std::atomic<long> ended_before_or_during{0};  // withdrawn, canceled up front, or interrupted
  std::atomic<long> withdrawn{0};               // of those: queued when the context ended
  std::atomic<long> interrupted{0};             // of those: ended while running, returned in time
  std::atomic<long> abandoned{0};
  std::atomic<long> refused{0};
  std::atomic<long> failures{0};
};

// Runs one call with random timing and checks what the caller can check at once;
// withdrawn and abandoned probes are kept for the checks after the drain.
void one_call(std::mt19937_64& random, ctxpp::Executor& small_pool, std::atomic<long>& live,
              Tally& tally, std::vector<std::shared_ptr<Probe>>& never_run,
              std::vector<std::shared_ptr<Probe>>& left_running) {
  auto pick = [&random](int bound) { return static_cast<int>(random() % bound); };
  const int how_it_ends = pick(4);  // 0: done up front, 1: timeout, 2: by fn, 3: never
  const bool with_interrupt = pick(2) == 0;
  const bool throws = pick(8) == 0;
  const auto work = std::chrono::microseconds(pick(300));
  const int value = pick(1'000'000);

  ctxpp::Context ctx;
  ctxpp::CancelFunc cancel;
  if (how_it_ends == 1) {
    auto made = ctxpp::with_timeout(background(), std::chrono::microseconds(pick(400)));
    ctx = made.ctx;
    cancel = made.cancel;
  } else {
    auto made = ctxpp::with_cancel(background());
    ctx = made.ctx;
    cancel = made.cancel;
    if (how_it_ends == 0) cancel();
  }

  auto probe = std::make_shared<Probe>();
  const bool cancel_inside = how_it_ends == 2;
  auto function = [probe, &live, cancel_inside, cancel, work, throws, with_interrupt, value] {
    probe->started.store(true);
    if (cancel_inside) cancel();
    work_for(work, *probe, with_interrupt);
    probe->finished.store(true);
    if (throws) throw std::runtime_error("stress");
    return Counted(live, value);
  };
  ctxpp::BlockingOptions options;
  options.name = "stress";
  options.interrupt_grace = std::chrono::microseconds(pick(2000));
  // A pool smaller than the number of callers keeps calls queued, so contexts also
  // end before their function started.
  if (pick(2) == 0) options.executor = &small_pool;

  try {
    auto result =
        with_interrupt
            ? ctxpp::call_blocking(
                  ctx, function, [probe]() noexcept { probe->interrupted.store(true); }, options)
            : ctxpp::call_blocking(ctx, function, nullptr, options);
    if (result.has_value()) {
      // Completed: the caller waited for the function, which did not throw.
      if (result->value() != value || throws || !probe->finished.load())
        tally.failures.fetch_add(1);
      tally.completed.fetch_add(1);
    } else if (result.abandoned()) {
      if (!result.error() || result.error() != ctx.err()) tally.failures.fetch_add(1);
      tally.abandoned.fetch_add(1);
      left_running.push_back(probe);
    } else if (result.error() == ctxpp::failure::abandon_limit) {
      if (probe->started.load()) tally.failures.fetch_add(1);
      tally.refused.fetch_add(1);
      never_run.push_back(probe);
    } else {
      // Ended before it started (it never will) or interrupted (it is over).
      if (!result.error() || result.error() != ctx.err()) tally.failures.fetch_add(1);
      const bool started = probe->started.load();
      if (started != probe->finished.load()) tally.failures.fetch_add(1);
      if (!started) never_run.push_back(probe);
      if (!started && how_it_ends != 0) tally.withdrawn.fetch_add(1);
      if (started) tally.interrupted.fetch_add(1);
      tally.ended_before_or_during.fetch_add(1);
    }
  } catch (const std::runtime_error&) {
    // Rethrown only to a caller that waited for the function to the end.
    if (!throws || !probe->finished.load()) tally.failures.fetch_add(1);
    tally.rethrown.fetch_add(1);
  }
}

void run_callers(std::uint64_t seed, int threads, int iterations_per_thread,
                 ctxpp::Executor& small_pool, std::atomic<long>& live, Tally& tally,
                 std::vector<std::shared_ptr<Probe>>& never_run,
                 std::vector<std::shared_ptr<Probe>>& left_running, long& iterations_done) {
  const TimeBudget budget;
  std::mutex merge_mutex;
  std::atomic<long> done{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      std::mt19937_64 random(seed + static_cast<std::uint64_t>(t));
      std::vector<std::shared_ptr<Probe>> my_never_run;
      std::vector<std::shared_ptr<Probe>> my_left_running;
      for (int i = 0; i < iterations_per_thread && !budget.out_of_time(); ++i) {
        one_call(random, small_pool, live, tally, my_never_run, my_left_running);
        done.fetch_add(1, std::memory_order_relaxed);
      }
      std::lock_guard lock(merge_mutex);
      never_run.insert(never_run.end(), my_never_run.begin(), my_never_run.end());
      left_running.insert(left_running.end(), my_left_running.begin(), my_left_running.end());
    });
  }
  for (auto& caller : callers) caller.join();
  iterations_done = done.load();
}

TEST(BlockingStress, RandomCancellationEndsEveryCallOnceAndReleasesEveryResult) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  const std::size_t total_before = ctxpp::abandoned_calls_total();
  std::atomic<long> live{0};
  Tally tally;
  std::vector<std::shared_ptr<Probe>> never_run;
  std::vector<std::shared_ptr<Probe>> left_running;
  long iterations = 0;
  ctxpp::ThreadPool small_pool(2, 50ms);  // destroyed first: its tasks use the above

  run_callers(seed, 6, scaled(10000, kAsanCut), small_pool, live, tally, never_run, left_running,
              iterations);

  ASSERT_TRUE(ctxpp_test::eventually([] { return ctxpp::abandoned_call_count() == 0; }))
      << "seed=" << seed << ctxpp_test::describe_threads();
  std::printf(
      "[ result   ] %ld calls: %ld completed, %ld rethrown, %ld ended early (%ld withdrawn, "
      "%ld interrupted), %ld abandoned, %ld refused\n",
      iterations, tally.completed.load(), tally.rethrown.load(),
      tally.ended_before_or_during.load(), tally.withdrawn.load(), tally.interrupted.load(),
      tally.abandoned.load(), tally.refused.load());
  EXPECT_EQ(tally.failures.load(), 0) << "seed=" << seed;
  EXPECT_EQ(tally.completed + tally.rethrown + tally.ended_before_or_during + tally.abandoned +
                tally.refused,
            iterations)
      << "seed=" << seed;
  EXPECT_EQ(ctxpp::abandoned_calls_total() - total_before,
            static_cast<std::size_t>(tally.abandoned.load()))
      << "seed=" << seed;
  for (const auto& probe : left_running) EXPECT_TRUE(probe->finished.load()) << "seed=" << seed;
  // Withdrawn tasks may still sit in the pool's queue: they must skip the function.
  ASSERT_TRUE(ctxpp_test::eventually([&] { return live.load() == 0; }))
      << live.load() << " results never released, seed=" << seed;
  for (const auto& probe : never_run) EXPECT_FALSE(probe->started.load()) << "seed=" << seed;
}

TEST(BlockingStress, AbandonCapHoldsUnderConcurrentCallersAndRefusedCallsNeverRun) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  const std::size_t saved_limit = ctxpp::abandoned_limit();
  constexpr std::size_t kLimit = 3;
  constexpr int kCallers = 6;
  ctxpp::set_abandoned_limit(kLimit);

  std::atomic<long> live{0};
  std::atomic<long> refused{0};
  std::atomic<long> abandoned{0};
  std::atomic<long> failures{0};
  std::atomic<std::size_t> most_abandoned{0};
  std::vector<std::shared_ptr<Probe>> refused_probes;
  std::mutex refused_mutex;
  const TimeBudget budget;

  std::vector<std::thread> callers;
  for (int t = 0; t < kCallers; ++t) {
    callers.emplace_back([&, t] {
      std::mt19937_64 random(seed + 1000 + static_cast<std::uint64_t>(t));
      for (int i = 0; i < scaled(3000, kAsanCut) && !budget.out_of_time(); ++i) {
        // Ends while its function (which ignores interrupts) still runs: abandoned
        // unless refused, withdrawn, or the function wins the race.
        auto made = ctxpp::with_timeout(background(), std::chrono::microseconds(random() % 200));
        auto probe = std::make_shared<Probe>();
        const auto work = std::chrono::microseconds(200 + random() % 800);
        auto result = ctxpp::call_blocking(made.ctx, [probe, &live, work] {
          probe->started.store(true);
          work_for(work, *probe, false);
          probe->finished.store(true);
          return Counted(live, 1);
        });
        if (result.abandoned()) abandoned.fetch_add(1);
        if (result.error() == ctxpp::failure::abandon_limit) {
          refused.fetch_add(1);
          if (probe->started.load()) failures.fetch_add(1);
          {
            std::lock_guard lock(refused_mutex);
            refused_probes.push_back(probe);
          }
          // Come back as soon as there is room: every caller then races for the
          // last places under the cap.
          (void)ctxpp_test::eventually([] { return ctxpp::abandoned_call_count() < kLimit; }, 1s);
        }
        const std::size_t now = ctxpp::abandoned_call_count();
        std::size_t seen = most_abandoned.load();
        while (now > seen && !most_abandoned.compare_exchange_weak(seen, now)) {
        }
      }
    });
  }
  for (auto& caller : callers) caller.join();
  const bool drained = ctxpp_test::eventually([] { return ctxpp::abandoned_call_count() == 0; });
  ctxpp::set_abandoned_limit(saved_limit);
  ASSERT_TRUE(drained) << "seed=" << seed << ctxpp_test::describe_threads();

  std::printf("[ result   ] %ld abandoned, %ld refused, at most %zu abandoned at once\n",
              abandoned.load(), refused.load(), most_abandoned.load());
  EXPECT_EQ(failures.load(), 0) << "seed=" << seed;
  // A caller checks the cap on entry and may be abandoned later, so the count can
  // pass the cap only by callers that were already past the check.
  EXPECT_LE(most_abandoned.load(), kLimit - 1 + kCallers) << "seed=" << seed;
  ASSERT_TRUE(ctxpp_test::eventually([&] { return live.load() == 0; })) << "seed=" << seed;
  for (const auto& probe : refused_probes) EXPECT_FALSE(probe->started.load()) << "seed=" << seed;
}

}  // namespace
