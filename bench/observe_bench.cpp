// bench/observe_bench.cpp — what observation costs (docs/observability.md, "Cost").
// O3: W3 (create a cancellable child of a cancellable parent, cancel it) with nothing
//     on, with an observer that counts events, and with the debug mode "all".
// O6: W6 (one root, 10,000 children each with a scoped callback; cancel the root and
//     time until every callback ran) with nothing on and with the counting observer.
// Each observed variant runs beside the plain one in the same process and is printed
// as a ratio plain / observed (below 1 means observation costs that share).
// The cost with nothing on, against the code before observation existed, is measured
// by bench/compare_revisions.sh instead (W1-W9 of ctxpp-bench at two commits).
#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include <benchmark/benchmark.h>

#include "ctxpp/context.hpp"
#include "ctxpp/debug.hpp"
#include "ctxpp/observe.hpp"
#include "ctxpp/scoped_callback.hpp"
#include "median_reporter.hpp"

namespace {

class CountingObserver final : public ctxpp::Observer {
 public:
  void on_event(const ctxpp::Event& /*event*/) noexcept override {
    count_.fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> count_{0};
};

enum class Mode { plain, observer, debug };

// Holds the observation mode for one benchmark run.
class ModeScope {
 public:
  explicit ModeScope(Mode mode) : mode_(mode) {
    if (mode == Mode::observer) registration_ = ctxpp::add_observer(observer_);
    if (mode == Mode::debug) {
      ctxpp::DebugOptions options;
      options.mode = ctxpp::DebugMode::all;
      ctxpp::set_debug(options);
    }
  }
  ~ModeScope() {
    registration_.reset();
    if (mode_ == Mode::debug) {
      ctxpp::set_debug({});
      (void)ctxpp::take_debug_findings();
    }
  }
  ModeScope(const ModeScope&) = delete;
  ModeScope& operator=(const ModeScope&) = delete;
  std::uint64_t events() const noexcept { return observer_->count(); }

 private:
  Mode mode_;
  std::shared_ptr<CountingObserver> observer_ = std::make_shared<CountingObserver>();
  ctxpp::ObserverRegistration registration_;
};

void o3(benchmark::State& state, Mode mode) {
  auto [parent, cancel_parent] = ctxpp::with_cancel(ctxpp::background());
  ModeScope scope(mode);
  for (auto _ : state) {
    auto [child, cancel] = ctxpp::with_cancel(parent);
    cancel();
    benchmark::DoNotOptimize(child);
  }
  state.counters["events_per_op"] =
      static_cast<double>(scope.events()) / static_cast<double>(state.iterations());
  cancel_parent();
}

void o6(benchmark::State& state, Mode mode) {
  constexpr int kChildren = 10'000;
  using Callback = ctxpp::ScopedCallback<void (*)() noexcept>;
  static std::atomic<int> fired{0};
  ModeScope scope(mode);
  for (auto _ : state) {
    auto [root, cancel] = ctxpp::with_cancel(ctxpp::background());
    std::vector<ctxpp::Context> children;
    children.reserve(kChildren);
    std::vector<std::unique_ptr<Callback>> parties;
    parties.reserve(kChildren);
    fired.store(0);
    for (int i = 0; i < kChildren; ++i) {
      auto child = ctxpp::with_cancel(root);
      children.push_back(child.ctx);
      parties.push_back(std::make_unique<Callback>(
          child.ctx, +[]() noexcept { fired.fetch_add(1, std::memory_order_relaxed); }));
    }
    const auto start = std::chrono::steady_clock::now();
    cancel();
    const auto end = std::chrono::steady_clock::now();
    if (fired.load() != kChildren) state.SkipWithError("a party did not run");
    state.SetIterationTime(std::chrono::duration<double>(end - start).count());
    parties.clear();
    children.clear();
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const auto micro = [](const char* name, Mode mode) {
    benchmark::RegisterBenchmark(name, o3, mode)->Repetitions(5)->MinTime(0.3);
  };
  micro("O3/plain", Mode::plain);
  micro("O3/observer", Mode::observer);
  micro("O3/debug", Mode::debug);
  const auto fanout = [](const char* name, Mode mode) {
    benchmark::RegisterBenchmark(name, o6, mode)
        ->UseManualTime()
        ->Iterations(1)
        ->Repetitions(9)
        ->Unit(benchmark::kMicrosecond);
  };
  fanout("O6/plain", Mode::plain);
  fanout("O6/observer", Mode::observer);
  ctxpp_bench::MedianReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  ctxpp_bench::print_ratio_header();
  using ctxpp_bench::print_ratio_row;
  print_ratio_row(reporter, "O3/observer", "O3/plain", "W3 with a counting observer");
  print_ratio_row(reporter, "O3/debug", "O3/plain", "W3 with CTXPP_DEBUG=all");
  print_ratio_row(reporter, "O6/observer", "O6/plain",
                  "W6 (10,000 scoped callbacks), counting observer; times in us");
  benchmark::Shutdown();
  return 0;
}
