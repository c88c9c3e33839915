// bench/group_bench.cpp — structured concurrency and cancellable blocking calls, each
// beside the plain-std way of doing the same thing, in one run.
//   G1  spawn 64 trivial tasks and join them: TaskGroup on the shared pool, vs a
//       std::thread per task, vs std::async(std::launch::async).
//   G2  8 tasks wait for cancellation; one fails: time from the failure until the
//       join returned with every sibling stopped. TaskGroup vs std::jthread +
//       std::stop_source + condition_variable_any (the hand-written equivalent).
//   B1  a trivial call through call_blocking vs std::async(...).get().
//   B2  a call that blocks and cannot be interrupted: time from cancel() until the
//       caller of call_blocking is back (the call is abandoned).
// Each benchmark reports the median of repetitions; the table printed at the end gives
// each pair's ratio (baseline / ctxpp: above 1 means ctxpp is faster).
// Run: cmake --preset release && cmake --build build/release --target ctxpp-group-bench
//      && build/release/bench/ctxpp-group-bench
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include "ctxpp/blocking.hpp"
#include "ctxpp/group.hpp"
#include "median_reporter.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kTasks = 64;
constexpr int kWaiters = 8;
constexpr int kRepetitions = 9;

void G1_task_group(benchmark::State& state) {
  std::atomic<int> sink{0};
  for (auto _ : state) {
    ctxpp::TaskGroup group(ctxpp::background());
    for (int i = 0; i < kTasks; ++i)
      group.spawn([&] { sink.fetch_add(1, std::memory_order_relaxed); });
    benchmark::DoNotOptimize(group.wait());
  }
  state.SetItemsProcessed(state.iterations() * kTasks);
}

void G1_std_thread(benchmark::State& state) {
  std::atomic<int> sink{0};
  for (auto _ : state) {
    std::vector<std::thread> threads;
    threads.reserve(kTasks);
    for (int i = 0; i < kTasks; ++i) {
      threads.emplace_back([&] { sink.fetch_add(1, std::memory_order_relaxed); });
    }
    for (auto& thread : threads) thread.join();
  }
  state.SetItemsProcessed(state.iterations() * kTasks);
}

void G1_std_async(benchmark::State& state) {
  std::atomic<int> sink{0};
  for (auto _ : state) {
    std::vector<std::future<void>> futures;
    futures.reserve(kTasks);
    for (int i = 0; i < kTasks; ++i) {
      futures.push_back(
          std::async(std::launch::async, [&] { sink.fetch_add(1, std::memory_order_relaxed); }));
    }
    for (auto& future : futures) future.get();
  }
  state.SetItemsProcessed(state.iterations() * kTasks);
}

void G2_task_group(benchmark::State& state) {
  for (auto _ : state) {
    ctxpp::TaskGroup group(ctxpp::background());
    std::atomic<int> waiting{0};
    for (int i = 0; i < kWaiters; ++i) {
      group.spawn([&](const ctxpp::Context& ctx) {
        waiting.fetch_add(1);
        ctx.wait();
        return ctx.err();
      });
    }
    while (waiting.load() < kWaiters) std::this_thread::yield();
    Clock::time_point failed_at;
    group.spawn([&] {
      failed_at = Clock::now();
      return std::make_error_code(std::errc::io_error);
    });
    (void)group.wait();
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - failed_at).count());
  }
}

void G2_std_jthread(benchmark::State& state) {
  for (auto _ : state) {
    std::stop_source stop;
    std::mutex mutex;
    std::condition_variable_any cv;
    std::atomic<int> waiting{0};
    std::vector<std::jthread> threads;
    for (int i = 0; i < kWaiters; ++i) {
      threads.emplace_back([&, token = stop.get_token()] {
        std::unique_lock lock(mutex);
        waiting.fetch_add(1);
        cv.wait(lock, token, [] { return false; });
      });
    }
    while (waiting.load() < kWaiters) std::this_thread::yield();
    const Clock::time_point failed_at = Clock::now();
    stop.request_stop();
    for (auto& thread : threads) thread.join();
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - failed_at).count());
  }
}

void B1_call_blocking(benchmark::State& state) {
  int value = 0;
  for (auto _ : state) {
    auto result = ctxpp::call_blocking(ctxpp::background(), [&] { return ++value; });
    benchmark::DoNotOptimize(result);
  }
}

void B1_std_async(benchmark::State& state) {
  int value = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::async(std::launch::async, [&] { return ++value; }).get());
  }
}

void B2_abandon(benchmark::State& state) {
  for (auto _ : state) {
    auto scope = ctxpp::with_cancel(ctxpp::background());  // clang 14 cannot capture bindings
    auto release = std::make_shared<std::promise<void>>();
    auto started = std::make_shared<std::promise<void>>();
    std::future<void> started_future = started->get_future();
    Clock::time_point cancelled_at;
    std::thread canceller([&, started_future = std::move(started_future)]() mutable {
      started_future.wait();
      cancelled_at = Clock::now();
      scope.cancel();
    });
    auto result = ctxpp::call_blocking(scope.ctx, [release, started] {
      started->set_value();
      release->get_future().wait();  // a call nothing can interrupt
    });
    const Clock::time_point returned = Clock::now();
    canceller.join();
    release->set_value();  // let the abandoned call finish before the next round
    benchmark::DoNotOptimize(result);
    state.SetIterationTime(std::chrono::duration<double>(returned - cancelled_at).count());
    while (ctxpp::abandoned_call_count() != 0) std::this_thread::yield();
  }
}

BENCHMARK(G1_task_group)->Name("G1/task_group")->Repetitions(kRepetitions);
BENCHMARK(G1_std_thread)->Name("G1/std_thread")->Repetitions(kRepetitions);
BENCHMARK(G1_std_async)->Name("G1/std_async")->Repetitions(kRepetitions);
BENCHMARK(G2_task_group)
    ->Name("G2/task_group")
    ->UseManualTime()
    ->Iterations(200)
    ->Repetitions(kRepetitions);
BENCHMARK(G2_std_jthread)
    ->Name("G2/std_jthread")
    ->UseManualTime()
    ->Iterations(200)
    ->Repetitions(kRepetitions);
BENCHMARK(B1_call_blocking)->Name("B1/call_blocking")->Repetitions(kRepetitions);
BENCHMARK(B1_std_async)->Name("B1/std_async")->Repetitions(kRepetitions);
BENCHMARK(B2_abandon)
    ->Name("B2/abandon")
    ->UseManualTime()
    ->Iterations(200)
    ->Repetitions(kRepetitions);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  ctxpp_bench::MedianReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  using ctxpp_bench::print_ratio_row;
  ctxpp_bench::print_ratio_header();
  print_ratio_row(reporter, "G1/task_group", "G1/std_thread", "64 tasks spawned and joined");
  print_ratio_row(reporter, "G1/task_group", "G1/std_async", "64 tasks spawned and joined");
  print_ratio_row(reporter, "G2/task_group", "G2/std_jthread",
                  "failure -> 8 siblings stopped and joined");
  print_ratio_row(reporter, "B1/call_blocking", "B1/std_async",
                  "one trivial call on another thread");
  if (auto it = reporter.medians.find("B2/abandon"); it != reporter.medians.end()) {
    std::printf(
        "| B2/abandon         | (none)           | %12.0f |              |        | cancel -> "
        "caller back, call abandoned\n",
        it->second);
  }
  benchmark::Shutdown();
  return 0;
}
