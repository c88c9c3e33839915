// Stress tests of callback registration and deregistration racing cancellation
// (pitfalls 1, 3, 4, 6, 7, 16). Each test prints its seed (replay with
// CTXPP_SEED=<n>), is bounded in iterations and in wall time (~5 s), runs 10x
// fewer iterations under TSan, and a watchdog aborts with a message instead of
// hanging if something deadlocks.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "ctxpp/after_func.hpp"
#include "ctxpp/context.hpp"
#include "ctxpp/coroutine.hpp"
#include "ctxpp/scoped_callback.hpp"
#include "support/stress_support.hpp"

namespace {

using ctxpp_test::announce_seed;
using ctxpp_test::scaled;
using ctxpp_test::TimeBudget;
using ctxpp_test::Watchdog;

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::CancelFunc;
using ctxpp::Context;
using ctxpp::ScopedCallback;
using ctxpp::with_cancel;

// Per test: stop early at kStressWallTime (5 s, or CTXPP_STRESS_SECONDS) and report how far we got;
// abort at the watchdog limit (a hang, not slowness).
constexpr auto kWatchdogLimit = 90s;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

// Burns a few cycles: random jitter so that both orders of a race get hit.
void jitter(unsigned spins) noexcept {
  for (unsigned k = 0; k < spins; ++k) cpu_relax();
}

// Spins until pred holds (pausing, then yielding: never sleeping).
template <class Pred>
void spin_until(Pred pred) {
  for (int spins = 0; !pred(); ++spins) {
    if (spins < 100) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

// A two-party start line where both sides spin, so that neither pays a futex
// wake-up and each round's race really starts at one instant (std::barrier
// lets the last arriver run ahead by a whole wake-up). The driver starts round
// r and later waits for the worker to report it finished.
class StartLine {
 public:
  static constexpr int kStop = 1 << 30;
  void start(int round) noexcept { go_.store(round, std::memory_order_release); }
  void stop() noexcept { go_.store(kStop, std::memory_order_release); }
  // Worker side: false once stopped.
  bool await_start(int round) noexcept {
    spin_until([&] { return go_.load(std::memory_order_acquire) >= round; });
    return go_.load(std::memory_order_acquire) != kStop;
  }
  void finish(int round) noexcept { done_.store(round, std::memory_order_release); }
  bool finished(int round) const noexcept { return done_.load(std::memory_order_acquire) >= round; }
  void await_finish(int round) noexcept {
    spin_until([&] { return finished(round); });
  }

 private:
  std::atomic<int> go_{-1};
  std::atomic<int> done_{-1};
};

// ---------------------------------------------------------------------------
// Pitfall 4 at 10^6: one thread registers while another cancels; the
// registration runs exactly once (inline here or in the canceller), and its
// removal never waits forever (pika#113).
TEST(CallbackStress, RegistrationRacingCancelRunsExactlyOnce) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  std::mt19937_64 rng(seed);
  const int iterations = scaled(1'000'000);
  StartLine line;
  std::optional<ctxpp::WithCancel<Context, CancelFunc>> slot;  // written before start()
  unsigned canceller_jitter = 0;                               // likewise
  std::thread canceller([&] {
    for (int i = 0; line.await_start(i); ++i) {
      jitter(canceller_jitter);
      slot->cancel();
      line.finish(i);
    }
  });
  const TimeBudget budget;
  int done_rounds = 0;
  int wrong = 0;
  int inline_runs = 0;
  int kept = 0;
  const std::thread::id me = std::this_thread::get_id();
  for (int i = 0; i < iterations; ++i) {
    if ((i & 1023) == 0) {
      watchdog.iteration(i);
      if (budget.out_of_time()) break;
    }
    slot.emplace(with_cancel(background()));
    const bool keep_until_cancelled = (rng() & 1U) != 0U;
    canceller_jitter = static_cast<unsigned>(rng() % 32);
    const unsigned my_jitter = static_cast<unsigned>(rng() % 32);
    std::atomic<int> runs{0};
    std::atomic<bool> ran_here{false};
    watchdog.phase("register racing cancel");
    line.start(i);
    jitter(my_jitter);
    {
      ScopedCallback callback(slot->ctx, [&]() noexcept {
        runs.fetch_add(1, std::memory_order_relaxed);
        if (std::this_thread::get_id() == me) ran_here.store(true, std::memory_order_relaxed);
      });
      if (keep_until_cancelled) {
        // Kept until the racing cancel() returned: it must have run exactly once.
        watchdog.phase("waiting for the canceller");
        line.await_finish(i);
        ++kept;
        if (runs.load() != 1) ++wrong;
        if (ran_here.load()) ++inline_runs;
      }
      watchdog.phase("removing a raced registration");
    }  // must never wait forever (pika#113's missing "executed" mark)
    const int seen = runs.load();
    line.await_finish(i);
    if (seen > 1 || runs.load() != seen) ++wrong;  // never twice, never after removal
    ++done_rounds;
  }
  line.stop();
  canceller.join();
  std::printf(
      "%d of %d rounds in budget; of %d kept registrations %d ran inline (registered "
      "after the cancel), the rest in the canceller\n",
      done_rounds, iterations, kept, inline_runs);
  EXPECT_EQ(wrong, 0) << "registrations that ran zero or two times, or after removal";
  EXPECT_GT(done_rounds, 0);
}

// ---------------------------------------------------------------------------
// Shared machinery for tree rounds: a small random tree, registrations owned
// through a claim flag so that exactly one party (an owner thread, the
// callback itself, or another callback) destroys each one.

constexpr int kFanOut = 3;
constexpr int kDepth = 3;  // 1 + 3 + 9 + 27 = 40 nodes

struct Tree {
  std::vector<ctxpp::WithCancel<Context, CancelFunc>> nodes;
  std::vector<int> parent;
  explicit Tree() {
    nodes.push_back(with_cancel(background()));
    parent.push_back(-1);
    int level_begin = 0;
    int level_end = 1;
    for (int d = 1; d <= kDepth; ++d) {
      for (int p = level_begin; p < level_end; ++p) {
        for (int k = 0; k < kFanOut; ++k) {
          nodes.push_back(with_cancel(nodes[static_cast<std::size_t>(p)].ctx));
          parent.push_back(p);
        }
      }
      level_begin = level_end;
      level_end = static_cast<int>(nodes.size());
    }
  }
  int size() const { return static_cast<int>(nodes.size()); }
  bool is_descendant_or_self(int node, int of) const {
    for (int n = node; n >= 0; n = parent[static_cast<std::size_t>(n)]) {
      if (n == of) return true;
    }
    return false;
  }
};

struct Rec;
struct RecFn {
  Rec* self;
  void operator()() const noexcept;
};
using Registration = ScopedCallback<RecFn>;

enum class Kind : std::uint8_t { plain, destroy_self, destroy_other, cancel_descendant };

struct Round;
struct Rec {
  Round* round = nullptr;
  int node = 0;
  Kind kind = Kind::plain;
  int target = -1;                       // destroy_other: a Rec index; cancel_descendant: a node
  std::atomic<bool> constructed{false};  // may be claimed only once fully built
  std::atomic<bool> claimed{false};
  std::atomic<bool> destroyed{false};  // set after the destructor returned
  std::atomic<int> runs{0};
  std::atomic<int> late{0};  // runs that began after the destructor returned
  alignas(Registration) unsigned char storage[sizeof(Registration)];

  Registration* registration() noexcept {
    return std::launder(reinterpret_cast<Registration*>(storage));
  }
  bool claim() noexcept { return constructed.load() && !claimed.exchange(true); }
  // Destroys the registration (caller won the claim). May wait for a run on another thread.
  void destroy() noexcept {
    registration()->~Registration();
    destroyed.store(true);
  }
};

struct Round {
  Tree tree;
  std::vector<Rec> recs;
  explicit Round(std::size_t count) : recs(count) {}
};

void RecFn::operator()() const noexcept {
  // Copy what we need first: destroy_self (or another callback) may end this
  // very function object while it runs.
  Rec* const me = self;
  Round* const round = me->round;
  const Kind kind = me->kind;
  const int target = me->target;
  if (me->destroyed.load()) me->late.fetch_add(1);
  me->runs.fetch_add(1);
  switch (kind) {
    case Kind::plain:
      break;
    case Kind::destroy_self:  // pitfall 1: must not block, must not touch freed memory
      if (me->claim()) me->destroy();
      break;
    case Kind::destroy_other: {  // a registration on the same node or below
      Rec& other = round->recs[static_cast<std::size_t>(target)];
      if (other.claim()) other.destroy();
      break;
    }
    case Kind::cancel_descendant:  // nested cancel from inside a callback
      round->tree.nodes[static_cast<std::size_t>(target)].cancel();
      break;
  }
}

// Builds rec i on a random node. Targets only point down the tree (same node
// or a descendant): then waits for running callbacks point strictly down and
// cannot form a cycle. Cross-tree mutual destruction is pitfall 3, tested apart.
void plan(Round& round, std::mt19937_64& rng, bool with_destroyers) {
  const int n = round.tree.size();
  for (Rec& rec : round.recs) {
    rec.round = &round;
    rec.node = static_cast<int>(rng() % static_cast<std::uint64_t>(n));
  }
  for (std::size_t i = 0; i < round.recs.size(); ++i) {
    Rec& rec = round.recs[i];
    const unsigned pick = with_destroyers ? static_cast<unsigned>(rng() % 4) : 0U;
    rec.kind = static_cast<Kind>(pick);
    if (rec.kind == Kind::destroy_other) {
      // Any rec whose node is the same or below.
      for (int tries = 0; tries < 16; ++tries) {
        const auto j = static_cast<std::size_t>(rng() % round.recs.size());
        if (j != i && round.tree.is_descendant_or_self(round.recs[j].node, rec.node)) {
          rec.target = static_cast<int>(j);
          break;
        }
      }
      if (rec.target < 0) rec.kind = Kind::plain;
    } else if (rec.kind == Kind::cancel_descendant) {
      const auto candidate = static_cast<int>(rng() % static_cast<std::uint64_t>(n));
      if (candidate != rec.node && round.tree.is_descendant_or_self(candidate, rec.node)) {
        rec.target = candidate;
      } else {
        rec.kind = Kind::plain;
      }
    }
  }
}

void construct(Rec& rec) {
  const Context& ctx = rec.round->tree.nodes[static_cast<std::size_t>(rec.node)].ctx;
  ::new (static_cast<void*>(rec.storage)) Registration(ctx, RecFn{&rec});
  rec.constructed.store(true);
}

// Runs rounds: `registrants` threads build and randomly destroy registrations
// while `cancellers` threads cancel random nodes; then the root is cancelled,
// every survivor must have run exactly once, and nothing ran after removal.
void run_tree_rounds(std::uint64_t seed, Watchdog& watchdog, bool with_destroyers) {
  constexpr int kRegistrants = 2;
  constexpr int kCancellers = 2;
  constexpr std::size_t kRecsPerThread = 48;
  const int rounds = scaled(3000);
  std::mt19937_64 rng(seed);
  const TimeBudget budget;
  int done_rounds = 0;
  long long survivors = 0;
  long long late = 0;
  long long twice = 0;
  long long survivors_wrong = 0;
  for (int r = 0; r < rounds && !budget.out_of_time(); ++r) {
    watchdog.iteration(r);
    Round round(kRegistrants * kRecsPerThread);
    plan(round, rng, with_destroyers);
    std::vector<std::uint64_t> seeds;
    for (int t = 0; t < kRegistrants + kCancellers; ++t) seeds.push_back(rng());
    std::barrier sync(kRegistrants + kCancellers);
    std::vector<std::thread> threads;
    for (int t = 0; t < kRegistrants; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 local(seeds[static_cast<std::size_t>(t)]);
        sync.arrive_and_wait();
        const std::size_t begin = static_cast<std::size_t>(t) * kRecsPerThread;
        for (std::size_t i = begin; i < begin + kRecsPerThread; ++i) {
          construct(round.recs[i]);
          // Now and then the owner destroys one of its own (maybe running).
          if (local() % 3 == 0) {
            const std::size_t victim = begin + local() % (i - begin + 1);
            if (round.recs[victim].claim()) round.recs[victim].destroy();
          }
          if (local() % 8 == 0) std::this_thread::yield();
        }
      });
    }
    for (int t = 0; t < kCancellers; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 local(seeds[static_cast<std::size_t>(kRegistrants + t)]);
        sync.arrive_and_wait();
        for (int k = 0; k < 6; ++k) {
          // Skip the root: it is cancelled last, by the driver.
          const auto node = 1 + local() % static_cast<std::uint64_t>(round.tree.size() - 1);
          round.tree.nodes[static_cast<std::size_t>(node)].cancel();
          if (local() % 2 == 0) std::this_thread::yield();
        }
      });
    }
    watchdog.phase("registrations racing cancels");
    for (auto& t : threads) t.join();
    watchdog.phase("final root cancel");
    round.tree.nodes[0].cancel();  // every cancel has returned: all survivors have run
    watchdog.phase("destroying the survivors");
    for (Rec& rec : round.recs) {
      if (rec.claim()) {
        ++survivors;
        if (rec.runs.load() != 1) ++survivors_wrong;
        rec.destroy();
      }
    }
    for (Rec& rec : round.recs) {
      late += rec.late.load();
      if (rec.runs.load() > 1) ++twice;
    }
    ++done_rounds;
  }
  std::printf("%d of %d rounds in budget, %lld survivors checked\n", done_rounds, rounds,
              survivors);
  EXPECT_EQ(late, 0) << "callbacks that ran after their destructor returned";
  EXPECT_EQ(twice, 0) << "callbacks that ran twice";
  EXPECT_EQ(survivors_wrong, 0)
      << "registrations alive through the final cancel that did not run once";
  EXPECT_GT(done_rounds, 0);
}

TEST(CallbackStress, RegistrationAndDeregistrationRacingCancelFromSeveralThreads) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  run_tree_rounds(seed, watchdog, /*with_destroyers=*/false);
}

TEST(CallbackStress, CallbacksDeregisteredFromInsideCallbacksWhileOtherThreadsCancelParents) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  run_tree_rounds(seed, watchdog, /*with_destroyers=*/true);
}

// ---------------------------------------------------------------------------
// Pitfall 3 without forcing the overlap (the forced, deterministic version is
// in tests/unit/scoped_callback_test.cpp): two contexts cancelled at once, two
// callbacks each destroying the other's registration.
struct Mutual;
struct DestroyPeer {
  Mutual* mutual;
  int self;
  void operator()() const noexcept;
};
struct Mutual {
  std::atomic<bool> claimed[2] = {};
  std::optional<ScopedCallback<DestroyPeer>> registration[2];
};
void DestroyPeer::operator()() const noexcept {
  Mutual* const m = mutual;
  const int other = 1 - self;
  // Destroy the peer only if neither side claimed yet: a peer whose callback runs
  // concurrently then finds its claim taken and returns without destroying us, so
  // the destructor's wait for it ends (scoped_callback.hpp: destroying each other
  // while both run would wait both ways, as std::stop_callback does).
  if (!m->claimed[other].exchange(true) && !m->claimed[self].exchange(true)) {
    m->registration[other].reset();
  }
}

TEST(CallbackStress, CallbacksDestroyingEachOthersRegistrationUnderConcurrentCancel) {
  announce_seed();
  Watchdog watchdog(30s);
  const int iterations = scaled(20000);
  std::barrier sync(3);
  std::array<std::optional<ctxpp::WithCancel<Context, CancelFunc>>, 2> pair;
  std::atomic<bool> stop{false};
  auto canceller = [&](int which) {
    for (;;) {
      sync.arrive_and_wait();
      if (stop.load(std::memory_order_relaxed)) return;
      pair[static_cast<std::size_t>(which)]->cancel();
      sync.arrive_and_wait();
    }
  };
  std::thread t0(canceller, 0);
  std::thread t1(canceller, 1);
  const TimeBudget budget;
  int done_rounds = 0;
  for (int i = 0; i < iterations && !budget.out_of_time(); ++i) {
    watchdog.iteration(i);
    auto mutual = std::make_unique<Mutual>();
    pair[0].emplace(with_cancel(background()));
    pair[1].emplace(with_cancel(background()));
    mutual->registration[0].emplace(pair[0]->ctx, DestroyPeer{mutual.get(), 0});
    mutual->registration[1].emplace(pair[1]->ctx, DestroyPeer{mutual.get(), 1});
    watchdog.phase("two callbacks destroying each other (pitfall 3)");
    sync.arrive_and_wait();  // go
    sync.arrive_and_wait();  // both cancels returned
    for (int k = 0; k < 2; ++k) {
      if (!mutual->claimed[k].exchange(true)) mutual->registration[k].reset();
    }
    ++done_rounds;
  }
  stop.store(true);
  sync.arrive_and_wait();
  t0.join();
  t1.join();
  std::printf("%d of %d rounds in budget\n", done_rounds, iterations);
}

// ---------------------------------------------------------------------------
// Pitfall 6 under stress: stop() racing cancel has exactly one outcome. In half
// the rounds the stopping thread holds no reference to the context and the
// canceller drops the last one right after cancelling (the shape in which a
// stale node pointer inside stop() would be dereferenced after free).
TEST(CallbackStress, AfterFuncStopRacingCancelHasExactlyOneOutcome) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  std::mt19937_64 rng(seed);
  const int iterations = scaled(100'000);
  StartLine line;
  std::optional<CancelFunc> cancel_slot;  // written before start()
  unsigned canceller_jitter = 0;
  std::atomic<int> runs{0};
  std::thread canceller([&] {
    for (int i = 0; line.await_start(i); ++i) {
      jitter(canceller_jitter);
      (*cancel_slot)();
      cancel_slot.reset();  // possibly the last reference
      line.finish(i);
    }
  });
  const TimeBudget budget;
  int done_rounds = 0;
  int prevented = 0;
  int wrong = 0;
  for (int i = 0; i < iterations; ++i) {
    if ((i & 255) == 0) {
      watchdog.iteration(i);
      if (budget.out_of_time()) break;
    }
    runs.store(0);
    canceller_jitter = static_cast<unsigned>(rng() % 64);
    const unsigned my_jitter = static_cast<unsigned>(rng() % 64);
    const bool hold_context = (rng() & 1U) != 0U;
    std::optional<ctxpp::WithCancel<Context, CancelFunc>> mine;
    std::optional<ctxpp::AfterFuncHandle> handle;
    {
      auto pair = with_cancel(background());
      cancel_slot = pair.cancel;
      handle.emplace(ctxpp::after_func(pair.ctx, [&runs] { runs.fetch_add(1); }));
      if (hold_context) mine.emplace(std::move(pair));
    }  // unless held, the canceller now owns the last reference
    watchdog.phase(hold_context ? "stop racing cancel (context held)"
                                : "stop racing cancel and the last release");
    line.start(i);
    jitter(my_jitter);
    const bool stopped = handle->stop();
    line.await_finish(i);
    prevented += stopped ? 1 : 0;
    watchdog.phase("waiting for f");
    if (!handle->wait_for(30s)) ++wrong;
    if (runs.load() != (stopped ? 0 : 1)) ++wrong;
    if (handle->finished() == stopped) ++wrong;
    ++done_rounds;
  }
  line.stop();
  canceller.join();
  std::printf("%d of %d rounds in budget, stop() won %d\n", done_rounds, iterations, prevented);
  EXPECT_EQ(wrong, 0) << "rounds where stop()'s answer and f's run disagree";
}

// ---------------------------------------------------------------------------
// Coroutines suspending on random nodes while several threads cancel: each is
// resumed exactly once (pitfall 4 for the awaiter; pitfall 7's inline resume).
struct Detached {
  struct promise_type {  // NOLINT(readability-identifier-naming): the name the language requires
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

Detached await_node(Context ctx, std::atomic<int>* resumed) {
  (void)co_await ctxpp::cancelled(ctx);
  resumed->fetch_add(1);
}

TEST(CallbackStress, CoroutinesSuspendingWhileSeveralThreadsCancelResumeOnce) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  std::mt19937_64 rng(seed);
  const int rounds = scaled(3000);
  constexpr int kPerThread = 32;
  constexpr int kAwaiters = 2;
  constexpr int kCancellers = 2;
  const TimeBudget budget;
  int done_rounds = 0;
  int wrong = 0;
  for (int r = 0; r < rounds && !budget.out_of_time(); ++r) {
    watchdog.iteration(r);
    Tree tree;
    std::vector<std::atomic<int>> resumed(kAwaiters * kPerThread);
    std::vector<std::uint64_t> seeds;
    for (int t = 0; t < kAwaiters + kCancellers; ++t) seeds.push_back(rng());
    std::barrier sync(kAwaiters + kCancellers);
    std::vector<std::thread> threads;
    for (int t = 0; t < kAwaiters; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 local(seeds[static_cast<std::size_t>(t)]);
        sync.arrive_and_wait();
        for (int k = 0; k < kPerThread; ++k) {
          const auto node = local() % static_cast<std::uint64_t>(tree.size());
          await_node(tree.nodes[node].ctx, &resumed[static_cast<std::size_t>(t * kPerThread + k)]);
        }
      });
    }
    for (int t = 0; t < kCancellers; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 local(seeds[static_cast<std::size_t>(kAwaiters + t)]);
        sync.arrive_and_wait();
        for (int k = 0; k < 4; ++k) {
          const auto node = local() % static_cast<std::uint64_t>(tree.size());
          tree.nodes[node].cancel();
          std::this_thread::yield();
        }
      });
    }
    watchdog.phase("coroutines suspending racing cancels");
    for (auto& t : threads) t.join();
    tree.nodes[0].cancel();
    for (auto& n : resumed) wrong += n.load() != 1 ? 1 : 0;
    ++done_rounds;
  }
  std::printf("%d of %d rounds in budget\n", done_rounds, rounds);
  EXPECT_EQ(wrong, 0) << "coroutines not resumed exactly once";
}

}  // namespace
