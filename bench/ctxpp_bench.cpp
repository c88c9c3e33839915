// bench/ctxpp_bench.cpp — ctxpp's side of the W1–W9 comparison with Go, std and tokio.
// The workloads are those of ../shared/bench/go/README.md, done with the same work per
// op as the baselines; bench/compare.sh runs them side by side and pairs the results.
// Output: Google Benchmark's table on stderr, and on stdout one JSON object per
// workload with the baselines' keys and "impl":"ctxpp" (ns_per_op is the median over
// repetitions, ns_min/ns_max the spread; W6/W9 report their own fields).
// Knobs (environment): CTXPP_BENCH_REPS (micro repetitions, 5), CTXPP_BENCH_MIN_TIME
// (seconds per repetition, 0.5), CTXPP_BENCH_W6_REPS (15), CTXPP_BENCH_W6_N (10000),
// CTXPP_BENCH_W9_RUNS (3). Google Benchmark flags (--benchmark_filter=W3) work as usual.
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <latch>
#include <map>
#include <memory>
#include <new>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include "ctxpp/after_func.hpp"
#include "ctxpp/context.hpp"
#include "ctxpp/coroutine.hpp"
#include "ctxpp/scoped_callback.hpp"

namespace {

// ---------------------------------------------------------------------------------------
// W8: counting global operator new. Thread-local counters, so counting adds no shared
// cache-line traffic to W7. `requested` is what the caller asked for, `usable` what the
// glibc chunk really holds (malloc_usable_size, excluding the chunk header).
struct AllocCounters {
  std::uint64_t requested = 0;
  std::uint64_t usable = 0;
  std::uint64_t count = 0;
};
thread_local AllocCounters tl_allocs;

void* counted_malloc(std::size_t size, std::size_t align) {
  if (size == 0) size = 1;
  void* p = align <= alignof(std::max_align_t)
                ? std::malloc(size)
                : std::aligned_alloc(align, (size + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  tl_allocs.requested += size;
  tl_allocs.usable += malloc_usable_size(p);
  ++tl_allocs.count;
  return p;
}

}  // namespace

void* operator new(std::size_t size) { return counted_malloc(size, 0); }
void* operator new[](std::size_t size) { return counted_malloc(size, 0); }
void* operator new(std::size_t size, std::align_val_t align) {
  return counted_malloc(size, static_cast<std::size_t>(align));
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return counted_malloc(size, static_cast<std::size_t>(align));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_malloc(size, 0);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_malloc(size, 0);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

using ctxpp::clock;

// Reports the allocations made by this thread since `before` as per-iteration counters.
void report_allocs(benchmark::State& state, const AllocCounters& before) {
  using Counter = benchmark::Counter;
  const AllocCounters now = tl_allocs;
  state.counters["bytes_per_op"] =
      Counter(static_cast<double>(now.requested - before.requested), Counter::kAvgIterations);
  state.counters["usable_bytes_per_op"] =
      Counter(static_cast<double>(now.usable - before.usable), Counter::kAvgIterations);
  state.counters["allocs_per_op"] =
      Counter(static_cast<double>(now.count - before.count), Counter::kAvgIterations);
}

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::atoi(value) : fallback;
}

double env_double(const char* name, double fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::atof(value) : fallback;
}

double seconds_between(clock::time_point from, clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto to_s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return to_s(usage.ru_utime) + to_s(usage.ru_stime);
}

// ---------------------------------------------------------------------------------------
// W1 / W1b: the done-check on a live cancellable context (Go: select on Done(); Err()).
void w1_done(benchmark::State& state) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  for (auto _ : state) {
    bool done = ctx.done();
    benchmark::DoNotOptimize(done);
  }
}

void w1b_err(benchmark::State& state) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  for (auto _ : state) {
    bool failed = static_cast<bool>(ctx.err());
    benchmark::DoNotOptimize(failed);
  }
}

// ---------------------------------------------------------------------------------------
// W2: FNV-1a over a 16-byte buffer, seeded with the previous hash (one dependency chain),
// buf[0] = i each iteration, with and without a W1 check at the top. DoNotOptimize(p) is
// an asm with a memory clobber: the buffer is re-read from memory in both variants, and
// the check cannot be hoisted (done() is an atomic load anyway).
constexpr std::uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr std::uint64_t kFnvPrime = 1099511628211ULL;

inline std::uint64_t fnv1a16(std::uint64_t hash, const unsigned char* buf) {
  for (int i = 0; i < 16; ++i) {
    hash ^= buf[i];
    hash *= kFnvPrime;
  }
  return hash;
}

void fill_w2_buffer(unsigned char (&buf)[16]) {
  for (int k = 0; k < 16; ++k) buf[k] = static_cast<unsigned char>(k * 7 + 1);
}

void w2_nocheck(benchmark::State& state) {
  unsigned char buf[16];
  fill_w2_buffer(buf);
  std::uint64_t hash = kFnvOffset;
  unsigned i = 0;
  for (auto _ : state) {
    buf[0] = static_cast<unsigned char>(i++);
    const unsigned char* p = buf;
    benchmark::DoNotOptimize(p);
    hash = fnv1a16(hash, p);
  }
  benchmark::DoNotOptimize(hash);
}

void w2_check(benchmark::State& state) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  unsigned char buf[16];
  fill_w2_buffer(buf);
  std::uint64_t hash = kFnvOffset;
  unsigned i = 0;
  for (auto _ : state) {
    if (ctx.done()) break;
    buf[0] = static_cast<unsigned char>(i++);
    const unsigned char* p = buf;
    benchmark::DoNotOptimize(p);
    hash = fnv1a16(hash, p);
  }
  benchmark::DoNotOptimize(hash);
}

// ---------------------------------------------------------------------------------------
// W3 / W4 / W7 (+ W8): create a child of a live cancellable parent, cancel it (it
// unlinks from the parent), release both handles (the node is freed).
void w3_with_cancel(benchmark::State& state) {
  auto [parent, parent_cancel] = ctxpp::with_cancel(ctxpp::background());
  const AllocCounters before = tl_allocs;
  for (auto _ : state) {
    auto [ctx, cancel] = ctxpp::with_cancel(parent);
    cancel();
    benchmark::DoNotOptimize(ctx);
  }
  report_allocs(state, before);
}

void w4_with_timeout(benchmark::State& state) {
  auto [parent, parent_cancel] = ctxpp::with_cancel(ctxpp::background());
  const AllocCounters before = tl_allocs;
  for (auto _ : state) {
    auto [ctx, cancel] = ctxpp::with_timeout(parent, std::chrono::hours(1));
    cancel();
    benchmark::DoNotOptimize(ctx);
  }
  report_allocs(state, before);
}

// One live parent shared by every thread of the run (Go: RunParallel on one parent).
const ctxpp::Context& shared_parent() {
  static const auto pair = ctxpp::with_cancel(ctxpp::background());
  return pair.ctx;
}

void w7_with_cancel(benchmark::State& state) {
  const ctxpp::Context& parent = shared_parent();
  const AllocCounters before = tl_allocs;
  for (auto _ : state) {
    auto [ctx, cancel] = ctxpp::with_cancel(parent);
    cancel();
    benchmark::DoNotOptimize(ctx);
  }
  report_allocs(state, before);
}

// ---------------------------------------------------------------------------------------
// W5: value lookup from the leaf of background <- V0 <- ... <- V(d-1); the key sought is
// on V0, the others carry distinct keys of the same type, so the lookup walks d nodes.
void w5_value(benchmark::State& state) {
  const auto depth = static_cast<int>(state.range(0));
  // Keys are identified by address and must outlive the contexts: make them static.
  static std::vector<std::unique_ptr<ctxpp::Key<int>>> keys;
  while (static_cast<int>(keys.size()) < depth) {
    keys.push_back(std::make_unique<ctxpp::Key<int>>("w5"));
  }
  ctxpp::Context leaf = ctxpp::background();
  for (int i = 0; i < depth; ++i) leaf = ctxpp::with_value(leaf, *keys[i], i);
  const ctxpp::Key<int>& key = *keys[0];
  for (auto _ : state) {
    const int* value = leaf.value(key);
    benchmark::DoNotOptimize(value);
  }
  if (leaf.value(key) == nullptr || *leaf.value(key) != 0) state.SkipWithError("lookup failed");
}

// ---------------------------------------------------------------------------------------
// W6: one root, n children, one waiting party per child; timed from root cancel until
// every party has observed it. Untimed setup as in Go: build everything, let it settle
// 20 ms. One warm-up fan-out per variant (Go discards its first repetition).
constexpr auto kSettle = std::chrono::milliseconds(20);

int w6_children() { return env_int("CTXPP_BENCH_W6_N", 10000); }

struct CountDown {
  std::atomic<int>* left;
  void operator()() const noexcept { left->fetch_sub(1, std::memory_order_acq_rel); }
};

// Waiting party: a ScopedCallback that runs inline in the cancelling thread.
double fanout_scoped_callback(int n) {
  auto [root, cancel] = ctxpp::with_cancel(ctxpp::background());
  std::vector<ctxpp::Context> children;
  children.reserve(static_cast<std::size_t>(n));
  std::atomic<int> left{n};
  auto callbacks = std::make_unique<std::optional<ctxpp::ScopedCallback<CountDown>>[]>(
      static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    children.push_back(ctxpp::with_cancel(root).ctx);
    callbacks[static_cast<std::size_t>(i)].emplace(children.back(), CountDown{&left});
  }
  std::this_thread::sleep_for(kSettle);
  const clock::time_point t0 = clock::now();
  cancel();
  while (left.load(std::memory_order_acquire) != 0) {
  }
  return seconds_between(t0, clock::now());
}

// Waiting party: an after_func registration (runs on ctxpp's executor threads).
double fanout_after_func(int n) {
  auto [root, cancel] = ctxpp::with_cancel(ctxpp::background());
  std::vector<ctxpp::Context> children;  // after_func holds no reference: keep them
  std::vector<ctxpp::AfterFuncHandle> handles;
  children.reserve(static_cast<std::size_t>(n));
  handles.reserve(static_cast<std::size_t>(n));
  std::latch ran(n);
  for (int i = 0; i < n; ++i) {
    children.push_back(ctxpp::with_cancel(root).ctx);
    handles.push_back(ctxpp::after_func(children.back(), [&ran] { ran.count_down(); }));
  }
  std::this_thread::sleep_for(kSettle);
  const clock::time_point t0 = clock::now();
  cancel();
  ran.wait();
  return seconds_between(t0, clock::now());
}

// A minimal eager coroutine: starts at once, frees its frame when it finishes.
struct Eager {
  struct promise_type {  // NOLINT(readability-identifier-naming): the language fixes it
    Eager get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

Eager await_then_count_down(ctxpp::Context ctx, std::atomic<int>* left) {
  (void)co_await ctxpp::cancelled(ctx);
  left->fetch_sub(1, std::memory_order_acq_rel);
}

// Waiting party: a coroutine suspended in co_await ctxpp::cancelled(child), resumed
// inline by the canceller; it finishes (frees its frame) before cancel() returns. The
// children are kept alive by the vector, as in the other variants, so the timed region
// holds delivery, resumption and the frame's end, not the children's teardown.
double fanout_coroutine(int n) {
  auto [root, cancel] = ctxpp::with_cancel(ctxpp::background());
  std::vector<ctxpp::Context> children;
  children.reserve(static_cast<std::size_t>(n));
  std::atomic<int> left{n};
  for (int i = 0; i < n; ++i) {
    children.push_back(ctxpp::with_cancel(root).ctx);
    await_then_count_down(children.back(), &left);
  }
  std::this_thread::sleep_for(kSettle);
  const clock::time_point t0 = clock::now();
  cancel();
  while (left.load(std::memory_order_acquire) != 0) {
  }
  return seconds_between(t0, clock::now());
}

// Waiting party: an OS thread blocked in child.wait() (std's W6 shape).
double fanout_threads(int n) {
  auto [root, cancel] = ctxpp::with_cancel(ctxpp::background());
  std::vector<ctxpp::Context> children;
  children.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) children.push_back(ctxpp::with_cancel(root).ctx);
  std::latch ready(n);
  std::latch observed(n);
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&ready, &observed, child = children[static_cast<std::size_t>(i)]] {
      ready.count_down();
      child.wait();
      observed.count_down();
    });
  }
  ready.wait();
  std::this_thread::sleep_for(kSettle);
  const clock::time_point t0 = clock::now();
  cancel();
  observed.wait();
  const double elapsed = seconds_between(t0, clock::now());
  for (std::thread& thread : threads) thread.join();
  return elapsed;
}

template <double (*Fanout)(int)>
void w6(benchmark::State& state, int n) {
  static bool warmed = false;
  if (!warmed) {
    (void)Fanout(n);
    warmed = true;
  }
  for (auto _ : state) state.SetIterationTime(Fanout(n));
  state.counters["n"] = n;
}

// ---------------------------------------------------------------------------------------
// W9: 100,000 with_timeout contexts, d_i = 1 ms + i·999 ms/(n−1), created in the order of
// Go's rand.NewSource(42) shuffle. Lateness = time observed done − deadline. Observers:
//  - callback:   a ScopedCallback per context (runs on the timer thread as it fires);
//  - threads:    as Go's goroutines, after each block of 100 one OS thread that wait()s
//                on the block's contexts in deadline order (so it includes the kernel's
//                wake-up of a blocked thread, ~100,000 of them);
//  - coroutines: the same 1,000 observers as eager coroutines awaiting
//                ctxpp::cancelled() in deadline order (resumed on the timer thread).
// CPU = getrusage(RUSAGE_SELF) user+sys from the first creation to the last observation.
enum class Observer { callback, threads, coroutines };

struct W9Run {
  std::vector<std::int64_t> late;
  std::vector<clock::time_point> deadlines;
  std::vector<ctxpp::Context> contexts;
  std::latch* observed = nullptr;

  // The indices [start, end) sorted by deadline.
  std::vector<int> by_deadline(int start, int end) const {
    std::vector<int> order(static_cast<std::size_t>(end - start));
    std::iota(order.begin(), order.end(), start);
    std::sort(order.begin(), order.end(), [this](int a, int b) {
      return deadlines[static_cast<std::size_t>(a)] < deadlines[static_cast<std::size_t>(b)];
    });
    return order;
  }
  void record(std::size_t k) { late[k] = (clock::now() - deadlines[k]).count(); }
};

struct RecordLateness {
  W9Run* run;
  std::size_t index;
  void operator()() const noexcept {
    run->record(index);
    run->observed->count_down();
  }
};

Eager observe_in_order(W9Run* run, std::vector<int> order) {
  for (const int i : order) {
    (void)co_await ctxpp::cancelled(run->contexts[static_cast<std::size_t>(i)]);
    run->record(static_cast<std::size_t>(i));
  }
  run->observed->count_down();
}

double percentile_us(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto index = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1));
  return static_cast<double>(sorted[index]) / 1e3;
}

std::map<std::string, double> w9_once(Observer observer) {
  constexpr int kN = 100000;
  constexpr int kGroup = 100;
  constexpr auto kSlots = static_cast<std::size_t>(kN);
  auto [parent, parent_cancel] = ctxpp::with_cancel(ctxpp::background());
  std::vector<clock::duration> durations(kSlots);
  for (int i = 0; i < kN; ++i) {
    durations[static_cast<std::size_t>(i)] =
        std::chrono::milliseconds(1) +
        std::chrono::nanoseconds(std::int64_t{i} * 999'000'000 / (kN - 1));
  }
  // Seeded shuffle (Fisher-Yates, mt19937_64): deadlines are not created in sorted
  // order. Same durations as Go's run, in a different (equally random) order.
  std::mt19937_64 shuffle_rng(42);
  for (std::size_t i = durations.size() - 1; i > 0; --i) {
    std::uniform_int_distribution<std::size_t> pick(0, i);
    std::swap(durations[i], durations[pick(shuffle_rng)]);
  }

  W9Run run;
  run.late.resize(kSlots);
  run.deadlines.resize(kSlots);
  run.contexts.resize(kSlots);
  std::vector<ctxpp::CancelFunc> cancels(kSlots);
  const bool per_context = observer == Observer::callback;
  auto callbacks = std::make_unique<std::optional<ctxpp::ScopedCallback<RecordLateness>>[]>(
      per_context ? kSlots : 0);
  std::latch observed(observer == Observer::callback     ? kN
                      : observer == Observer::coroutines ? kN / kGroup
                                                         : 0);
  run.observed = &observed;
  std::vector<std::thread> threads;
  threads.reserve(kSlots / kGroup);

  const double cpu0 = cpu_seconds();
  const clock::time_point t0 = clock::now();
  for (int start = 0; start < kN; start += kGroup) {
    const int end = std::min(start + kGroup, kN);
    for (int i = start; i < end; ++i) {
      const auto k = static_cast<std::size_t>(i);
      auto [ctx, cancel] = ctxpp::with_timeout(parent, durations[k]);
      run.deadlines[k] = *ctx.deadline();
      if (per_context) callbacks[k].emplace(ctx, RecordLateness{&run, k});
      run.contexts[k] = std::move(ctx);
      cancels[k] = std::move(cancel);
    }
    if (observer == Observer::threads) {
      threads.emplace_back([&run, start, end] {
        for (const int i : run.by_deadline(start, end)) {
          run.contexts[static_cast<std::size_t>(i)].wait();
          run.record(static_cast<std::size_t>(i));
        }
      });
    } else if (observer == Observer::coroutines) {
      observe_in_order(&run, run.by_deadline(start, end));
    }
  }
  const clock::time_point created = clock::now();
  for (std::thread& thread : threads) thread.join();
  observed.wait();
  const clock::time_point finished = clock::now();
  const double cpu = cpu_seconds() - cpu0;
  for (const ctxpp::CancelFunc& cancel : cancels) cancel();

  std::vector<std::int64_t> late = std::move(run.late);
  std::vector<std::int64_t> steady;
  for (std::size_t k = 0; k < late.size(); ++k) {
    if (run.deadlines[k] > created) steady.push_back(late[k]);
  }
  std::sort(late.begin(), late.end());
  std::sort(steady.begin(), steady.end());
  std::map<std::string, double> f;
  f["n"] = kN;
  f["p50_late_us"] = percentile_us(late, 0.50);
  f["p99_late_us"] = percentile_us(late, 0.99);
  f["max_late_us"] = percentile_us(late, 1.0);
  f["min_late_us"] = percentile_us(late, 0.0);
  f["steady_n"] = static_cast<double>(steady.size());
  f["steady_p50_late_us"] = percentile_us(steady, 0.50);
  f["steady_p99_late_us"] = percentile_us(steady, 0.99);
  f["steady_max_late_us"] = percentile_us(steady, 1.0);
  f["cpu_s"] = cpu;
  f["wall_s"] = seconds_between(t0, finished);
  f["create_ms"] = seconds_between(t0, created) * 1e3;
  f["ns_per_create"] = seconds_between(t0, created) * 1e9 / kN;
  return f;
}

void w9(benchmark::State& state, Observer observer) {
  for (auto _ : state) {
    const std::map<std::string, double> fields = w9_once(observer);
    state.SetIterationTime(fields.at("wall_s"));
    for (const auto& [name, value] : fields) state.counters[name] = value;
  }
}

// ---------------------------------------------------------------------------------------
// Reporting: the console table goes to stderr; every repetition's time and counters are
// kept here, keyed by the benchmark's name ("W5/depth:64"), for the medians on stdout.
struct Samples {
  std::vector<double> ns;
  std::map<std::string, std::vector<double>> counters;
};
std::map<std::string, Samples> g_samples;

class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  explicit CollectingReporter(OutputOptions options) : ConsoleReporter(options) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      std::string name = run.run_name.function_name;
      if (!run.run_name.args.empty()) name += "/" + run.run_name.args;
      Samples& samples = g_samples[name];
      samples.ns.push_back(run.GetAdjustedRealTime() * 1e9 /
                           benchmark::GetTimeUnitMultiplier(run.time_unit));
      for (const auto& [key, counter] : run.counters) {
        samples.counters[key].push_back(counter.value);
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}
double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

double counter_median(const Samples& samples, const std::string& key) {
  const auto it = samples.counters.find(key);
  return it == samples.counters.end() ? -1 : median(it->second);
}

const Samples* find_samples(const std::string& name) {
  const auto it = g_samples.find(name);
  return it == g_samples.end() || it->second.ns.empty() ? nullptr : &it->second;
}

void print_allocs(const Samples& samples) {
  std::printf(",\"bytes_per_op\":%.1f,\"usable_bytes_per_op\":%.1f,\"allocs_per_op\":%.3f",
              counter_median(samples, "bytes_per_op"),
              counter_median(samples, "usable_bytes_per_op"),
              counter_median(samples, "allocs_per_op"));
}

void emit_micro(const std::string& name) {
  const Samples* samples = find_samples(name);
  if (samples == nullptr) return;
  std::printf(
      "{\"workload\":\"%s\",\"impl\":\"ctxpp\",\"ns_per_op\":%.3f,\"ns_min\":%.3f,"
      "\"ns_max\":%.3f,\"runs\":%zu",
      name.c_str(), median(samples->ns), min_of(samples->ns), max_of(samples->ns),
      samples->ns.size());
  if (samples->counters.count("bytes_per_op") != 0) print_allocs(*samples);
  std::printf("}\n");
}

void emit_w8(const std::string& label, const std::string& name, std::size_t inline_bytes) {
  const Samples* samples = find_samples(name);
  if (samples == nullptr) return;
  std::printf("{\"workload\":\"%s\",\"impl\":\"ctxpp\"", label.c_str());
  print_allocs(*samples);
  std::printf(",\"inline_bytes_per_child\":%zu}\n", inline_bytes);
}

void emit_w2() {
  const Samples* nocheck = find_samples("W2/nocheck");
  const Samples* check = find_samples("W2/check");
  if (nocheck == nullptr || check == nullptr) return;
  // Repetition i of each ran back to back (alternating order), so pair them.
  std::vector<double> pct;
  for (std::size_t i = 0; i < nocheck->ns.size() && i < check->ns.size(); ++i) {
    pct.push_back((check->ns[i] / nocheck->ns[i] - 1) * 100);
  }
  const double no = median(nocheck->ns);
  const double with = median(check->ns);
  // A/A noise: spread of the identical no-check repetitions around their median.
  const double noise = (max_of(nocheck->ns) - min_of(nocheck->ns)) / no * 100;
  std::printf(
      "{\"workload\":\"W2\",\"impl\":\"ctxpp\",\"ns_per_op_nocheck\":%.3f,"
      "\"ns_per_op_check\":%.3f,\"overhead_pct\":%.2f,\"overhead_pct_min\":%.2f,"
      "\"overhead_pct_max\":%.2f,\"nocheck_spread_pct\":%.2f,\"runs\":%zu}\n",
      no, with, (with / no - 1) * 100, min_of(pct), max_of(pct), noise, pct.size());
}

void emit_w6(const std::string& name, const char* waiters) {
  const Samples* samples = find_samples(name);
  if (samples == nullptr) return;
  const double n = counter_median(*samples, "n");
  const double us = median(samples->ns) / 1e3;
  std::printf(
      "{\"workload\":\"%s\",\"impl\":\"ctxpp\",\"n\":%.0f,\"us_per_fanout\":%.3f,"
      "\"min_us\":%.3f,\"max_us\":%.3f,\"ns_per_child\":%.3f,\"runs\":%zu,"
      "\"waiters\":\"%s\"}\n",
      name.c_str(), n, us, min_of(samples->ns) / 1e3, max_of(samples->ns) / 1e3, us * 1e3 / n,
      samples->ns.size(), waiters);
}

void emit_w9(const std::string& name, const char* observer) {
  const Samples* samples = find_samples(name);
  if (samples == nullptr) return;
  std::printf("{\"workload\":\"%s\",\"impl\":\"ctxpp\"", name.c_str());
  for (const auto& [key, values] : samples->counters) {
    std::printf(",\"%s\":%.3f", key.c_str(), median(values));
    if (key == "p50_late_us" || key == "p99_late_us" || key == "max_late_us" || key == "cpu_s") {
      std::printf(",\"%s_min\":%.3f,\"%s_max\":%.3f", key.c_str(), min_of(values), key.c_str(),
                  max_of(values));
    }
  }
  std::printf(",\"runs\":%zu,\"observer\":\"%s\"}\n", samples->ns.size(), observer);
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = env_int("CTXPP_BENCH_REPS", 5);
  const double min_time = env_double("CTXPP_BENCH_MIN_TIME", 0.5);
  const int w6_reps = env_int("CTXPP_BENCH_W6_REPS", 15);
  const int w9_runs = env_int("CTXPP_BENCH_W9_RUNS", 3);
  const int w6_n = w6_children();

  const auto micro = [&](const char* name, void (*fn)(benchmark::State&)) {
    return benchmark::RegisterBenchmark(name, fn)->Repetitions(reps)->MinTime(min_time);
  };
  micro("W1/done", w1_done);
  micro("W1b/err", w1b_err);
  // W2: the two loops alternate, one repetition at a time (ABBA order), so each
  // nocheck/check pair sees the same machine state; emit_w2 pairs them.
  for (int i = 0; i < reps; ++i) {
    const bool check_first = i % 2 == 1;
    benchmark::RegisterBenchmark(check_first ? "W2/check" : "W2/nocheck",
                                 check_first ? w2_check : w2_nocheck)
        ->MinTime(min_time);
    benchmark::RegisterBenchmark(check_first ? "W2/nocheck" : "W2/check",
                                 check_first ? w2_nocheck : w2_check)
        ->MinTime(min_time);
  }
  micro("W3/with_cancel", w3_with_cancel);
  micro("W4/with_timeout", w4_with_timeout);
  micro("W5", w5_value)->ArgName("depth")->Arg(1)->Arg(8)->Arg(64);
  micro("W7/with_cancel", w7_with_cancel)->Threads(2)->UseRealTime();
  const auto fanout = [&](const char* name, void (*fn)(benchmark::State&, int), int n) {
    benchmark::RegisterBenchmark(name, fn, n)
        ->UseManualTime()
        ->Iterations(1)
        ->Repetitions(w6_reps)
        ->Unit(benchmark::kMicrosecond);
  };
  fanout("W6/scoped_callback", w6<fanout_scoped_callback>, w6_n);
  fanout("W6/after_func", w6<fanout_after_func>, w6_n);
  fanout("W6/coroutine", w6<fanout_coroutine>, w6_n);
  fanout("W6/threads:1000", w6<fanout_threads>, 1000);
  const auto timers = [&](const char* name, Observer observer) {
    benchmark::RegisterBenchmark(name, w9, observer)
        ->UseManualTime()
        ->Iterations(1)
        ->Repetitions(w9_runs)
        ->Unit(benchmark::kMillisecond);
  };
  timers("W9", Observer::callback);
  timers("W9/waiters", Observer::threads);
  timers("W9/coroutines", Observer::coroutines);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  CollectingReporter reporter(isatty(STDERR_FILENO) != 0
                                  ? benchmark::ConsoleReporter::OO_ColorTabular
                                  : benchmark::ConsoleReporter::OO_Tabular);
  reporter.SetOutputStream(&std::cerr);
  reporter.SetErrorStream(&std::cerr);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  for (const char* name : {"W1/done", "W1b/err", "W3/with_cancel", "W4/with_timeout", "W5/depth:1",
                           "W5/depth:8", "W5/depth:64", "W7/with_cancel"}) {
    emit_micro(name);
  }
  emit_w2();
  using Handles = ctxpp::WithCancel<ctxpp::Context, ctxpp::CancelFunc>;
  emit_w8("W8/W3", "W3/with_cancel", sizeof(Handles));
  emit_w8("W8/W4", "W4/with_timeout", sizeof(Handles));
  emit_w6("W6/scoped_callback", "scoped_callback");
  emit_w6("W6/after_func", "after_func");
  emit_w6("W6/coroutine", "coroutine");
  emit_w6("W6/threads:1000", "threads");
  emit_w9("W9", "scoped_callback");
  emit_w9("W9/waiters", "threads");
  emit_w9("W9/coroutines", "coroutines");
  return 0;
}
