// bench/pool_bench.cpp — ctxpp::Pool beside a minimal std pool (StdPool below:
// std::mutex + std::condition_variable + a vector of idle resources, no contexts),
// the same cheap resource in both, in one run.
//   P1  uncontended acquire + release on one thread, the resource already idle.
//       P1/ctxpp_pool: acquire(ctx) with a cancellable ctx (the lease watches it);
//       P1/ctxpp_pool/background: acquire(background()), nothing to watch;
//       P1/std_pool.
//   P2  2 threads (->Threads(2)) each loop acquire + release on one shared pool for
//       300 ms, of max_size 1 (while both run, one finds the resource out) and of
//       max_size 2 (only the lock is shared); figures are ns per acquire + release per
//       thread (counter ns_per_call). ctxpp hands a returned resource to the oldest
//       waiter (FIFO). P2/std_pool lets the returning thread take it straight back
//       (barging: faster, unfair); P2/std_fifo_pool hands it over as ctxpp does, with
//       std primitives, to tell the price of FIFO order from the price of the
//       implementation. The counter waited_pct is the share of acquires that found
//       nothing idle: at max_size 1 it decides the figure (a wait costs a wake-up), and
//       on a busy machine, where the two threads seldom run at the same moment, it
//       falls towards 0 and the run measures no contention at all: compare it first.
//   P3  cancellation-to-return latency: a waiter blocked in acquire(ctx) on an
//       exhausted pool, asleep in the kernel; the benchmark thread reads steady_clock
//       and cancels ctx; the waiter reads steady_clock as soon as acquire() returned.
//       The std pool gets the cancellation a plain pool can be given by hand: a flag
//       set under its mutex, then a notify_all of its condition_variable. Each
//       repetition takes 2,000 samples and reports their p50_ns and p99_ns (counters;
//       the time column is their mean).
// Every benchmark repeats 5 times (--benchmark_repetitions=N to change) and reports
// aggregates only; the table printed at the end gives the medians over repetitions and
// each pair's ratio (baseline / ctxpp: above 1 means ctxpp is faster).
// Run: cmake --preset release -DCTXPP_BUILD_BENCH=ON
//      && cmake --build --preset release --target ctxpp-pool-bench
//      && build/release/bench/ctxpp-pool-bench
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "ctxpp/context.hpp"
#include "ctxpp/pool.hpp"
#include "median_reporter.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kDefaultRepetitions = 5;
constexpr int kLatencySamples = 2000;

// The pooled resource: cheap to make, so that only the pools are measured.
struct Resource {
  int id = 0;
  std::uint64_t uses = 0;
};

// ---------------------------------------------------------------------------------------
// The baseline: a careful hand-written pool without contexts. Resources are created
// outside the lock; a returned one goes on the idle list and, only if someone waits,
// one waiter is notified after the lock is released (barging order), or it is handed
// straight to the oldest waiter (fifo order, as ctxpp::Pool does). Cancellation, for
// P3, is a flag the canceller sets under the pool's mutex before notifying.
class StdPool {
 public:
  enum class Order { barging, fifo };
  struct CancelFlag {
    bool canceled = false;  // guarded by the pool's mutex
  };

  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), resource_(std::move(other.resource_)) {}
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() {
      if (resource_) pool_->release(std::move(resource_));
    }
    explicit operator bool() const noexcept { return resource_ != nullptr; }
    Resource* operator->() const noexcept { return resource_.get(); }

   private:
    friend class StdPool;
    Lease(StdPool* pool, std::unique_ptr<Resource> resource) noexcept
        : pool_(pool), resource_(std::move(resource)) {}
    StdPool* pool_ = nullptr;
    std::unique_ptr<Resource> resource_;
  };

  StdPool(std::function<Resource()> create, std::size_t max_size, Order order)
      : create_(std::move(create)), max_size_(max_size), order_(order) {
    idle_.reserve(max_size);
  }
  StdPool(const StdPool&) = delete;
  StdPool& operator=(const StdPool&) = delete;

  // An idle resource, a new one below max_size, or the next one returned; empty if
  // `cancel` is set (by cancel()) first.
  Lease acquire(const CancelFlag* cancel = nullptr) {
    std::unique_lock lock(mutex_);
    if (!idle_.empty()) {  // in fifo order the idle list is empty while anyone waits
      std::unique_ptr<Resource> resource = std::move(idle_.back());
      idle_.pop_back();
      ++acquired_total_;
      return Lease(this, std::move(resource));
    }
    ++waited_total_;  // or created
    if (size_ < max_size_) {
      ++acquired_total_;
      ++size_;
      lock.unlock();
      return Lease(this, std::make_unique<Resource>(create_()));
    }
    const auto canceled = [cancel] { return cancel != nullptr && cancel->canceled; };
    ++waiting_;
    if (order_ == Order::barging) {
      returned_.wait(lock, [&] { return !idle_.empty() || canceled(); });
      --waiting_;
      if (idle_.empty()) return {};
      std::unique_ptr<Resource> resource = std::move(idle_.back());
      idle_.pop_back();
      ++acquired_total_;
      return Lease(this, std::move(resource));
    }
    Waiter waiter;
    line_.push_back(&waiter);
    waiter.wake.wait(lock, [&] { return waiter.served != nullptr || canceled(); });
    --waiting_;
    if (waiter.served == nullptr) {
      line_.erase(std::find(line_.begin(), line_.end(), &waiter));
      return {};
    }
    ++acquired_total_;
    return Lease(this, std::move(waiter.served));
  }

  // Wakes every waiter; the ones whose acquire() was given `flag` return empty.
  void cancel(CancelFlag& flag) {
    std::unique_lock lock(mutex_);
    flag.canceled = true;
    if (order_ == Order::fifo) {
      for (Waiter* w : line_) w->wake.notify_one();  // under the lock: see release()
      return;
    }
    lock.unlock();
    returned_.notify_all();
  }

  std::size_t waiting() const {
    std::lock_guard lock(mutex_);
    return waiting_;
  }

  // Percentage of the leases handed out whose acquire() did not find one idle.
  double waited_percent() const {
    std::lock_guard lock(mutex_);
    return acquired_total_ == 0
               ? 0.0
               : 100.0 * static_cast<double>(waited_total_) / static_cast<double>(acquired_total_);
  }

 private:
  struct Waiter {
    std::unique_ptr<Resource> served;
    std::condition_variable wake;
  };

  void release(std::unique_ptr<Resource> resource) {
    std::unique_lock lock(mutex_);
    if (order_ == Order::fifo && !line_.empty()) {
      Waiter* w = line_.front();
      line_.pop_front();
      w->served = std::move(resource);
      // Under the lock: once it sees `served` the waiter may leave and destroy `wake`.
      w->wake.notify_one();
      return;
    }
    idle_.push_back(std::move(resource));
    const bool wake = waiting_ > 0;
    lock.unlock();
    if (wake) returned_.notify_one();
  }

  std::function<Resource()> create_;
  const std::size_t max_size_;
  const Order order_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Resource>> idle_;
  std::size_t size_ = 0;
  std::size_t waiting_ = 0;
  std::uint64_t acquired_total_ = 0;
  std::uint64_t waited_total_ = 0;    // acquire() calls that found nothing idle
  std::condition_variable returned_;  // barging order
  std::deque<Waiter*> line_;          // fifo order, oldest first
};

std::function<Resource()> std_factory() {
  return [id = 0]() mutable { return Resource{++id, 0}; };
}

ctxpp::PoolHooks<Resource> ctxpp_hooks() {
  ctxpp::PoolHooks<Resource> hooks;
  hooks.create = [id = 0](const ctxpp::Context&) mutable -> ctxpp::Result<Resource> {
    return Resource{++id, 0};
  };
  return hooks;
}

ctxpp::PoolOptions ctxpp_options(std::size_t max_size) {
  ctxpp::PoolOptions options;
  options.max_size = max_size;
  return options;
}

// ---------------------------------------------------------------------------------------
// P1: one thread, the resource idle before every acquire (made by a first acquire).

void p1_ctxpp_pool(benchmark::State& state, bool cancellable) {
  ctxpp::Pool<Resource> pool(ctxpp_hooks(), ctxpp_options(1));
  auto scope = ctxpp::with_cancel(ctxpp::background());
  const ctxpp::Context ctx = cancellable ? scope.ctx : ctxpp::background();
  { auto first = pool.acquire(ctx); }
  for (auto _ : state) {
    auto lease = pool.acquire(ctx);
    if (!lease) {
      state.SkipWithError("acquire failed");
      break;
    }
    ++(*lease)->uses;
  }
}

void p1_std_pool(benchmark::State& state) {
  StdPool pool(std_factory(), 1, StdPool::Order::barging);
  { auto first = pool.acquire(); }
  for (auto _ : state) {
    auto lease = pool.acquire();
    if (!lease) {
      state.SkipWithError("acquire failed");
      break;
    }
    ++lease->uses;
  }
}

// ---------------------------------------------------------------------------------------
// P2: two threads on one pool. Thread 0 makes the pool before the loop and destroys it
// after: Google Benchmark starts and ends the loop of every thread at a barrier.
// Each thread calls for a fixed stretch of wall time (one iteration, manual time) and
// reports its own ns per call (counter ns_per_call, averaged over the threads): at
// max_size 1 a FIFO pool costs 100x more per call once the two threads hand the
// resource to each other (a wake-up per call) than while they seldom overlap, so a run
// sized by Google Benchmark from a fast trial could last minutes or end before the
// threads ever met. The counter waited_pct says how often an acquire() found nothing
// idle (it waited, or created one of the max_size resources): how contended the run was.

constexpr std::chrono::milliseconds kContendedFor{300};

std::unique_ptr<ctxpp::Pool<Resource>> p2_shared_ctxpp;
std::unique_ptr<StdPool> p2_shared_std;

// Calls acquire_release() for kContendedFor; false from it stops the run with an error.
template <class F>
void call_for_a_while(benchmark::State& state, F acquire_release) {
  for (auto _ : state) {
    std::uint64_t calls = 0;
    const Clock::time_point start = Clock::now();
    Clock::time_point now = start;
    while (now - start < kContendedFor) {
      for (int i = 0; i < 64; ++i) {  // a clock read costs about as much as a call
        if (!acquire_release()) {
          state.SkipWithError("acquire failed");
          return;
        }
      }
      calls += 64;
      now = Clock::now();
    }
    const std::chrono::duration<double> elapsed = now - start;
    state.SetIterationTime(elapsed.count());
    state.counters["ns_per_call"] = benchmark::Counter(
        elapsed.count() * 1e9 / static_cast<double>(calls), benchmark::Counter::kAvgThreads);
  }
}

void p2_ctxpp_pool(benchmark::State& state, std::size_t max_size) {
  if (state.thread_index() == 0) {
    p2_shared_ctxpp =
        std::make_unique<ctxpp::Pool<Resource>>(ctxpp_hooks(), ctxpp_options(max_size));
  }
  auto scope = ctxpp::with_cancel(ctxpp::background());  // each thread its own request
  call_for_a_while(state, [&] {
    auto lease = p2_shared_ctxpp->acquire(scope.ctx);
    if (!lease) return false;
    ++(*lease)->uses;
    return true;
  });
  if (state.thread_index() == 0) {
    const ctxpp::PoolStats stats = p2_shared_ctxpp->stats();
    state.counters["waited_pct"] = stats.acquired_total == 0
                                       ? 0.0
                                       : 100.0 * static_cast<double>(stats.wait_time.count) /
                                             static_cast<double>(stats.acquired_total);
    p2_shared_ctxpp.reset();
  }
}

void p2_std_pool(benchmark::State& state, std::size_t max_size, StdPool::Order order) {
  if (state.thread_index() == 0)
    p2_shared_std = std::make_unique<StdPool>(std_factory(), max_size, order);
  call_for_a_while(state, [&] {
    auto lease = p2_shared_std->acquire();
    if (!lease) return false;
    ++lease->uses;
    return true;
  });
  if (state.thread_index() == 0) {
    state.counters["waited_pct"] = p2_shared_std->waited_percent();
    p2_shared_std.reset();
  }
}

// ---------------------------------------------------------------------------------------
// P3: cancellation-to-return latency. One long-lived waiter thread per repetition; the
// pool's only resource is held by the benchmark thread throughout.

// The kernel's state letter for a thread of this process ('S': asleep, e.g. in a futex
// wait), or '\0' if it cannot be read.
char thread_state(pid_t tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/stat", static_cast<int>(tid));
  std::FILE* file = std::fopen(path, "r");
  if (file == nullptr) return 0;
  char line[512];
  const bool read = std::fgets(line, sizeof line, file) != nullptr;
  std::fclose(file);
  const char* paren = read ? std::strrchr(line, ')') : nullptr;  // "tid (comm) S ..."
  return paren != nullptr && paren[1] == ' ' ? paren[2] : '\0';
}

// Returns once the waiter has been asleep in the kernel for a while, so that every
// sample measures a wake-up and not a waiter still on its way into the wait (on a
// busy machine it may also be asleep on the pool's mutex for a moment: hence twice).
void wait_until_asleep(pid_t tid) {
  for (;;) {
    while (thread_state(tid) != 'S') std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    if (thread_state(tid) == 'S') return;
  }
}

// What P3 needs from each pool.
class CtxppWaitTarget {
 public:
  CtxppWaitTarget() : held_(pool_.acquire(ctxpp::background())) {}
  void arm() {  // benchmark thread, before the round
    auto scope = ctxpp::with_cancel(ctxpp::background());
    ctx_ = std::move(scope.ctx);
    cancel_ = std::move(scope.cancel);
  }
  bool acquire() { return static_cast<bool>(pool_.acquire(ctx_)); }  // waiter thread
  std::size_t waiting() const { return pool_.stats().waiting; }
  void cancel() { cancel_(); }
  bool exhausted() const { return static_cast<bool>(held_); }

 private:
  ctxpp::Pool<Resource> pool_{ctxpp_hooks(), ctxpp_options(1)};
  ctxpp::Result<ctxpp::Lease<Resource>> held_;
  ctxpp::Context ctx_;
  ctxpp::CancelFunc cancel_;
};

class StdWaitTarget {
 public:
  StdWaitTarget() : held_(pool_.acquire()) {}
  void arm() { flag_ = {}; }  // benchmark thread, before the round; no waiter yet
  bool acquire() { return static_cast<bool>(pool_.acquire(&flag_)); }
  std::size_t waiting() const { return pool_.waiting(); }
  void cancel() { pool_.cancel(flag_); }
  bool exhausted() const { return static_cast<bool>(held_); }

 private:
  StdPool pool_{std_factory(), 1, StdPool::Order::barging};
  StdPool::Lease held_;
  StdPool::CancelFlag flag_;
};

double percentile(std::vector<double>& samples, double p) {
  const auto k = static_cast<std::size_t>(p * static_cast<double>(samples.size() - 1));
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(k),
                   samples.end());
  return samples[k];
}

template <class Target>
void p3_cancel_to_return(benchmark::State& state) {
  Target target;
  if (!target.exhausted()) {
    state.SkipWithError("could not exhaust the pool");
    return;
  }
  std::atomic<int> round{0};     // the benchmark thread starts round r by storing r
  std::atomic<int> finished{0};  // the waiter stores r once round r's acquire returned
  std::atomic<pid_t> tid{0};
  std::atomic<bool> stop{false};
  Clock::time_point returned_at{};  // published by `finished`
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    tid.store(::gettid());
    tid.notify_one();
    for (int r = 1;; ++r) {
      round.wait(r - 1);
      if (stop.load()) return;
      const bool got = target.acquire();
      returned_at = Clock::now();
      if (got) acquired.store(true);
      finished.store(r, std::memory_order_release);
      finished.notify_one();
    }
  });
  tid.wait(0);
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations));
  int r = 0;
  for (auto _ : state) {
    target.arm();
    round.store(++r);
    round.notify_one();
    while (target.waiting() == 0) std::this_thread::yield();
    wait_until_asleep(tid.load());
    const Clock::time_point canceled_at = Clock::now();
    target.cancel();
    finished.wait(r - 1, std::memory_order_acquire);
    const std::chrono::duration<double> latency = returned_at - canceled_at;
    state.SetIterationTime(latency.count());
    samples.push_back(latency.count() * 1e9);
  }
  stop.store(true);
  round.store(++r);
  round.notify_one();
  waiter.join();
  if (acquired.load()) state.SkipWithError("acquire succeeded on an exhausted pool");
  if (!samples.empty()) {
    state.counters["p50_ns"] = percentile(samples, 0.50);
    state.counters["p99_ns"] = percentile(samples, 0.99);
  }
}

// ---------------------------------------------------------------------------------------

void register_benchmarks() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("P1/ctxpp_pool", p1_ctxpp_pool, true);
  RegisterBenchmark("P1/ctxpp_pool/background", p1_ctxpp_pool, false);
  RegisterBenchmark("P1/std_pool", p1_std_pool);
  const auto contended = [](benchmark::internal::Benchmark* b) {
    b->Threads(2)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
  };
  for (const std::size_t max_size : {std::size_t{1}, std::size_t{2}}) {
    const std::string suffix = "/max_size:" + std::to_string(max_size);
    contended(RegisterBenchmark(("P2/ctxpp_pool" + suffix).c_str(), p2_ctxpp_pool, max_size));
    contended(RegisterBenchmark(("P2/std_pool" + suffix).c_str(), p2_std_pool, max_size,
                                StdPool::Order::barging));
    contended(RegisterBenchmark(("P2/std_fifo_pool" + suffix).c_str(), p2_std_pool, max_size,
                                StdPool::Order::fifo));
  }
  RegisterBenchmark("P3/ctxpp_pool", p3_cancel_to_return<CtxppWaitTarget>)
      ->UseManualTime()
      ->Iterations(kLatencySamples);
  RegisterBenchmark("P3/std_pool", p3_cancel_to_return<StdWaitTarget>)
      ->UseManualTime()
      ->Iterations(kLatencySamples);
}

// Google Benchmark's flags, with this suite's defaults in front (later ones win).
std::vector<char*> with_default_flags(int argc, char** argv) {
  static std::string repetitions = "--benchmark_repetitions=" + std::to_string(kDefaultRepetitions);
  static std::string aggregates = "--benchmark_report_aggregates_only=true";
  std::vector<char*> args{argv[0], repetitions.data(), aggregates.data()};
  args.insert(args.end(), argv + 1, argv + argc);
  args.push_back(nullptr);
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = with_default_flags(argc, argv);
  int args_count = static_cast<int>(args.size()) - 1;
  benchmark::Initialize(&args_count, args.data());
  register_benchmarks();
  ctxpp_bench::MedianReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  using ctxpp_bench::print_ratio_row;
  ctxpp_bench::print_ratio_header();
  print_ratio_row(reporter, "P1/ctxpp_pool", "P1/std_pool", "acquire + release, 1 thread");
  print_ratio_row(reporter, "P1/ctxpp_pool/background", "P1/std_pool",
                  "acquire(background()) + release, 1 thread");
  const auto per_call = [&](const std::string& name) {
    return reporter.counter(name, "ns_per_call");
  };
  for (const char* max_size : {"1", "2"}) {
    const std::string suffix = std::string("/max_size:") + max_size;
    const std::string ours = "P2/ctxpp_pool" + suffix;
    for (const char* baseline : {"P2/std_pool", "P2/std_fifo_pool"}) {
      const std::string theirs = baseline + suffix;
      // How contended the run was: the share of acquires that found nothing idle.
      char what[160];
      std::snprintf(what, sizeof what,
                    "acquire + release per thread, 2 threads, max_size %s; waited %.1f %% vs "
                    "%.1f %%",
                    max_size, reporter.counter(ours, "waited_pct").value_or(-1),
                    reporter.counter(theirs, "waited_pct").value_or(-1));
      print_ratio_row(ours.c_str(), theirs.c_str(), per_call(ours), per_call(theirs), what);
    }
  }
  for (const char* counter : {"p50_ns", "p99_ns"}) {
    const std::string what = std::string("cancel -> acquire() returned, ") + counter;
    print_ratio_row("P3/ctxpp_pool", "P3/std_pool", reporter.counter("P3/ctxpp_pool", counter),
                    reporter.counter("P3/std_pool", counter), what.c_str());
  }
  benchmark::Shutdown();
  return 0;
}
