// Tests of ctxpp/after_func.hpp: Go's AfterFunc contract (pitfall 6).
#include "ctxpp/after_func.hpp"

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/scoped_callback.hpp"
#include "support/test_support.hpp"

// ---------------------------------------------------------------------------
// Fault injection for StopRacingTheLastReleaseOfTheContextTouchesNoFreedNode:
// the thread that sets t_stall_next_lock pauses in its next pthread_mutex_lock
// (std::mutex::lock) until the test lets it go, which widens a race window that
// is otherwise a few instructions wide. Every other lock passes straight through
// (to the sanitizer's interceptor, if any: RTLD_NEXT).
namespace {

using ctxpp_test::eventually;
using ctxpp_test::Gate;
using ctxpp_test::kTsan;
using ctxpp_test::run_bounded;
thread_local bool t_stall_next_lock = false;
std::atomic<int> g_stall_phase{0};  // 1: a thread is paused; 2: let it go
}  // namespace

extern "C" int pthread_mutex_lock(pthread_mutex_t* mutex) {  // NOLINT
  using Lock = int (*)(pthread_mutex_t*);
  static const Lock real = reinterpret_cast<Lock>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
  if (t_stall_next_lock) {
    t_stall_next_lock = false;
    g_stall_phase.store(1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (g_stall_phase.load() != 2 && std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
  }
  return real(mutex);
}

namespace {

using namespace std::chrono_literals;
using ctxpp::after_func;
using ctxpp::AfterFuncHandle;
using ctxpp::background;
using ctxpp::Context;
using ctxpp::with_cancel;

constexpr std::chrono::steady_clock::duration kBound = ctxpp_test::kLongBound;

// Runs body on a helper thread; aborts with a message if it does not finish
// within bound (a blocked call cannot be reclaimed safely).

// ---------------------------------------------------------------------------
// Where and when f runs.

TEST(AfterFunc, RunsOnceOnAnotherThreadAfterTheContextIsDone) {
  auto [ctx, cancel] = with_cancel(background());
  std::atomic<int> runs{0};
  std::thread::id ran_on;
  bool saw_done = false;
  AfterFuncHandle handle = after_func(ctx, [&, c = ctx] {
    ran_on = std::this_thread::get_id();
    saw_done = c.done();
    runs.fetch_add(1);
  });
  EXPECT_FALSE(handle.finished());
  // Not before the context is done (a detection window, not synchronisation).
  EXPECT_FALSE(handle.wait_for(20ms));
  EXPECT_EQ(runs.load(), 0);
  cancel();
  ASSERT_TRUE(handle.wait_for(kBound)) << "f did not run within the bound";
  EXPECT_TRUE(handle.finished());
  EXPECT_EQ(runs.load(), 1);
  EXPECT_NE(ran_on, std::this_thread::get_id()) << "f must not run in the cancelling thread";
  EXPECT_TRUE(saw_done);
  cancel();
  EXPECT_EQ(runs.load(), 1);
}

TEST(AfterFunc, NeverRunsInTheCancellingThreadEvenFromAnotherThread) {
  auto [ctx, cancel] = with_cancel(background());
  std::thread::id ran_on;
  AfterFuncHandle handle = after_func(ctx, [&] { ran_on = std::this_thread::get_id(); });
  std::thread::id canceller_id;
  std::thread canceller([&, cancel = cancel] {
    canceller_id = std::this_thread::get_id();
    cancel();
  });
  canceller.join();
  ASSERT_TRUE(handle.wait_for(kBound));
  EXPECT_NE(ran_on, canceller_id);
}

TEST(AfterFunc, RunsAtOnceOnTheExecutorIfAlreadyDone) {
  auto [ctx, cancel] = with_cancel(background());
  cancel();
  std::thread::id ran_on;
  AfterFuncHandle handle = after_func(ctx, [&] { ran_on = std::this_thread::get_id(); });
  ASSERT_TRUE(handle.wait_for(kBound)) << "f on a done context did not run";
  EXPECT_TRUE(handle.finished());
  EXPECT_NE(ran_on, std::this_thread::get_id()) << "not inline, even when already done";
  EXPECT_FALSE(handle.stop());
}

TEST(AfterFunc, RunsWhenAnAncestorOrADeadlineEndsTheContext) {
  auto [parent, parent_cancel] = with_cancel(background());
  auto [child, child_cancel] = with_cancel(parent);
  std::error_code child_err;
  AfterFuncHandle on_child = after_func(child, [&, c = child] { child_err = c.err(); });
  parent_cancel();
  ASSERT_TRUE(on_child.wait_for(kBound));
  EXPECT_EQ(child_err, ctxpp::errc::canceled);

  auto [timed, timed_cancel] = ctxpp::with_timeout(background(), 5ms);
  std::error_code timed_err;
  AfterFuncHandle on_timed = after_func(timed, [&, c = timed] { timed_err = c.err(); });
  ASSERT_TRUE(on_timed.wait_for(kBound)) << "f did not run after the deadline";
  EXPECT_EQ(timed_err, ctxpp::errc::deadline_exceeded);
}

TEST(AfterFunc, TenThousandOnOneContextAllRunExactlyOnce) {
  constexpr int kCount = 10000;
  auto [ctx, cancel] = with_cancel(background());
  std::vector<std::atomic<int>> runs(kCount);
  std::vector<AfterFuncHandle> handles;
  handles.reserve(kCount);
  for (int i = 0; i < kCount; ++i) {
    handles.push_back(
        after_func(ctx, [&runs, i] { runs[static_cast<std::size_t>(i)].fetch_add(1); }));
  }
  cancel();
  for (auto& handle : handles) ASSERT_TRUE(handle.wait_for(kBound)) << "an after_func never ran";
  int wrong = 0;
  for (auto& r : runs) wrong += r.load() != 1 ? 1 : 0;
  EXPECT_EQ(wrong, 0);
  for (auto& handle : handles) EXPECT_FALSE(handle.stop());
}

// ---------------------------------------------------------------------------
// stop() (Go: "stop returns true iff it stopped f from being run").

TEST(AfterFunc, StopReturnsTrueOnlyForTheCallThatPreventedF) {
  auto [ctx, cancel] = with_cancel(background());
  std::atomic<int> runs{0};
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> captured = sentinel;
  AfterFuncHandle handle = after_func(ctx, [&runs, sentinel] { runs.fetch_add(1); });
  sentinel.reset();
  AfterFuncHandle copy = handle;
  EXPECT_TRUE(handle.stop());
  EXPECT_FALSE(handle.stop());
  EXPECT_FALSE(copy.stop()) << "a copy shares the registration";
  EXPECT_TRUE(captured.expired()) << "stop() should release f's captures at once";
  cancel();
  EXPECT_TRUE(handle.wait_for(0s)) << "wait() returns at once when stop() prevented f";
  EXPECT_FALSE(handle.finished());
  // Anything f could have been queued behind has run by the time this one has.
  AfterFuncHandle later = after_func(ctx, [] {});
  ASSERT_TRUE(later.wait_for(kBound));
  EXPECT_EQ(runs.load(), 0);
}

TEST(AfterFunc, StopAfterCancelReturnedIsFalseAndFRuns) {
  auto [ctx, cancel] = with_cancel(background());
  std::atomic<int> runs{0};
  AfterFuncHandle handle = after_func(ctx, [&] { runs.fetch_add(1); });
  cancel();  // f is handed to the executor before cancel() returns: it has started
  EXPECT_FALSE(handle.stop());
  ASSERT_TRUE(handle.wait_for(kBound));
  EXPECT_EQ(runs.load(), 1);
  EXPECT_TRUE(handle.finished());
}

TEST(AfterFunc, StopOnceFStartedReturnsFalseWithoutWaitingForIt) {
  auto [ctx, cancel] = with_cancel(background());
  Gate started;
  Gate release;
  std::atomic<bool> f_finished{false};
  AfterFuncHandle handle = after_func(ctx, [&] {
    started.open();
    (void)release.wait();  // held until stop() has returned
    f_finished.store(true);
  });
  cancel();
  ASSERT_TRUE(started.wait()) << "f never started";
  bool stopped = true;
  // If stop() waited for f, it would never return: f waits for us.
  run_bounded(
      "stop() while f runs", [&] { stopped = handle.stop(); }, 10s);
  EXPECT_FALSE(stopped);
  EXPECT_FALSE(f_finished.load());
  EXPECT_FALSE(handle.finished());
  release.open();
  ASSERT_TRUE(handle.wait_for(kBound));
  EXPECT_TRUE(handle.finished());
  EXPECT_TRUE(f_finished.load());
  EXPECT_FALSE(handle.stop());
}

TEST(AfterFunc, NeverRunsOnAContextThatCannotEndAndStopIsTrueThere) {
  auto [parent, cancel] = with_cancel(background());
  for (const Context& never :
       {background(), ctxpp::todo(), Context{}, ctxpp::without_cancel(parent)}) {
    std::atomic<int> runs{0};
    AfterFuncHandle handle = after_func(never, [&] { runs.fetch_add(1); });
    EXPECT_TRUE(handle.stop()) << "the first stop() prevents f";
    EXPECT_FALSE(handle.stop());
    EXPECT_TRUE(handle.wait_for(0s));
    EXPECT_FALSE(handle.finished());
  }
  std::atomic<int> runs{0};
  AfterFuncHandle unstopped = after_func(background(), [&] { runs.fetch_add(1); });
  cancel();  // ends parent, never the detached child or background
  EXPECT_FALSE(unstopped.wait_for(20ms)) << "f on background() must never finish";
  EXPECT_FALSE(unstopped.finished());
  EXPECT_EQ(runs.load(), 0);
}

TEST(AfterFunc, ConcurrentStopsHaveExactlyOneWinner) {
  const int iterations = kTsan ? 50 : 300;
  constexpr int kThreads = 4;
  for (int i = 0; i < iterations; ++i) {
    auto [ctx, cancel] = with_cancel(background());
    std::atomic<int> runs{0};
    AfterFuncHandle handle = after_func(ctx, [&] { runs.fetch_add(1); });
    std::barrier sync(kThreads);
    std::atomic<int> winners{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, copy = handle]() mutable {
        sync.arrive_and_wait();
        if (copy.stop()) winners.fetch_add(1);
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(winners.load(), 1);
    cancel();
    ASSERT_EQ(runs.load(), 0);
  }
}

TEST(AfterFunc, StopRacingCancelHasExactlyOneOutcome) {
  // Either stop() returned true and f never runs, or it returned false and f
  // runs exactly once. (The long version is in tests/stress.)
  const int iterations = kTsan ? 300 : 3000;
  std::barrier sync(2);
  int stopped = 0;
  for (int i = 0; i < iterations; ++i) {
    auto [ctx, cancel] = with_cancel(background());
    std::atomic<int> runs{0};
    AfterFuncHandle handle = after_func(ctx, [&] { runs.fetch_add(1); });
    std::thread canceller([&, cancel = cancel] {
      sync.arrive_and_wait();
      cancel();
    });
    sync.arrive_and_wait();
    const bool prevented = handle.stop();
    canceller.join();
    ASSERT_TRUE(handle.wait_for(kBound));
    ASSERT_EQ(runs.load(), prevented ? 0 : 1) << "iteration " << i;
    ASSERT_EQ(handle.finished(), !prevented);
    stopped += prevented ? 1 : 0;
  }
  std::printf("stop() won %d of %d races\n", stopped, iterations);
}

// AfterFuncHandle::stop() wins its CAS (kPending -> kStopped) and only then, under
// the state's mutex, unlinks the registration from state->node. If in between
// a canceller pops and fires the registration (its schedule() loses and drops
// the registration's reference) and the last handle of the context goes, the
// node is freed while state->node still points at it, and stop() locks freed
// memory. The injected pause makes that interleaving deterministic; ASan and
// TSan report the use-after-free. (If stop() takes no mutex after its CAS, or
// takes it first, the pause happens elsewhere and the test simply passes.)
TEST(AfterFunc, StopRacingTheLastReleaseOfTheContextTouchesNoFreedNode) {
  std::atomic<int> runs{0};
  auto [ctx, cancel] = with_cancel(background());
  AfterFuncHandle handle = after_func(ctx, [&] { runs.fetch_add(1); });
  ctx = Context{};  // only `cancel` keeps the node now
  g_stall_phase.store(0);
  std::atomic<bool> stop_returned{false};
  bool stopped = false;
  std::thread stopper([&] {
    t_stall_next_lock = true;
    stopped = handle.stop();
    t_stall_next_lock = false;
    stop_returned.store(true);
  });
  const bool paused = eventually([&] { return g_stall_phase.load() == 1 || stop_returned.load(); });
  EXPECT_TRUE(paused) << "the stopping thread neither paused nor returned";
  cancel();                      // pops and fires the registration
  cancel = ctxpp::CancelFunc{};  // the last reference: the node is freed
  g_stall_phase.store(2);
  // Without ASan the freed node's memory may be reused with its lock bit set,
  // and stop() then spins forever: bound it.
  if (!eventually([&] { return stop_returned.load(); }, 10s)) {
    std::fprintf(stderr,
                 "HANG: stop() did not return: it is spinning on the lock of the freed node\n");
    std::abort();
  }
  stopper.join();
  ASSERT_TRUE(handle.wait_for(kBound));
  EXPECT_EQ(runs.load(), stopped ? 0 : 1);
}

// ---------------------------------------------------------------------------
// wait(), wait_for(), finished(), handles.

TEST(AfterFunc, WaitWaitForAndFinishedTrackTheRun) {
  auto [ctx, cancel] = with_cancel(background());
  Gate release;
  AfterFuncHandle handle = after_func(ctx, [&] { (void)release.wait(); });
  EXPECT_FALSE(handle.finished());
  EXPECT_FALSE(handle.wait_for(0s));
  cancel();
  EXPECT_FALSE(handle.wait_for(10ms)) << "f is held: wait_for must time out";
  EXPECT_FALSE(handle.finished());
  release.open();
  run_bounded("wait() for a finishing f", [&] { handle.wait(); });
  EXPECT_TRUE(handle.finished());
  EXPECT_TRUE(handle.wait_for(0s));
  EXPECT_TRUE(handle.wait_for(-1s));
}

TEST(AfterFunc, DefaultAndMovedFromHandlesHaveNothingToStop) {
  AfterFuncHandle empty;
  EXPECT_FALSE(empty.stop());
  EXPECT_TRUE(empty.wait_for(0s));
  EXPECT_FALSE(empty.finished());
  empty.wait();

  auto [ctx, cancel] = with_cancel(background());
  std::atomic<int> runs{0};
  AfterFuncHandle original = after_func(ctx, [&] { runs.fetch_add(1); });
  AfterFuncHandle moved = std::move(original);
  EXPECT_FALSE(original.stop());  // NOLINT(bugprone-use-after-move): defined as empty
  cancel();
  ASSERT_TRUE(moved.wait_for(kBound));
  EXPECT_TRUE(moved.finished());
  EXPECT_EQ(runs.load(), 1);
  AfterFuncHandle assigned;
  assigned = moved;
  EXPECT_TRUE(assigned.finished());
}

TEST(AfterFunc, WaitFromInsideFReturnsAtOnce) {
  auto [ctx, cancel] = with_cancel(background());
  auto holder = std::make_shared<AfterFuncHandle>();
  std::atomic<bool> waited{false};
  std::atomic<bool> wait_for_result{false};
  std::atomic<bool> finished_inside{true};
  *holder = after_func(ctx, [&, holder] {
    holder->wait();  // would wait for itself
    waited.store(true);
    wait_for_result.store(holder->wait_for(kBound));
    finished_inside.store(holder->finished());
  });
  cancel();
  ASSERT_TRUE(holder->wait_for(kBound)) << "wait() from inside f blocked";
  EXPECT_TRUE(waited.load());
  EXPECT_TRUE(wait_for_result.load());
  EXPECT_FALSE(finished_inside.load()) << "f has not finished while it runs";
  holder.reset();
}

TEST(AfterFunc, DroppingTheHandleDoesNotStopF) {
  auto [ctx, cancel] = with_cancel(background());
  Gate ran;
  {
    (void)after_func(ctx, [&] { ran.open(); });
  }
  cancel();
  EXPECT_TRUE(ran.wait()) << "f did not run after its handle was dropped";
}

TEST(AfterFunc, CapturesAreReleasedOnceFHasRun) {
  auto [ctx, cancel] = with_cancel(background());
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> captured = sentinel;
  AfterFuncHandle handle = after_func(ctx, [sentinel] { (void)sentinel; });
  sentinel.reset();
  cancel();
  ASSERT_TRUE(handle.wait_for(kBound));
  EXPECT_TRUE(captured.expired()) << "f's captures outlived its run";
}

TEST(AfterFunc, DroppingEveryHandleOfANeverCancelledContextFreesTheRegistration) {
  // Handle dropped first, then the context: the node orphans the registration
  // and frees it (LSan checks for leaks), f never runs.
  std::atomic<int> runs{0};
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> captured = sentinel;
  {
    auto [ctx, cancel] = with_cancel(background());
    {
      (void)after_func(ctx, [&runs, sentinel] { runs.fetch_add(1); });
    }
    sentinel.reset();
    EXPECT_FALSE(captured.expired());
  }
  EXPECT_TRUE(captured.expired()) << "the registration outlived every handle of its context";
  EXPECT_EQ(runs.load(), 0);

  // Context dropped first while the handle lives: f can never run, wait()
  // returns at once, and the handle is the last owner of the state.
  auto sentinel2 = std::make_shared<int>(0);
  std::weak_ptr<int> captured2 = sentinel2;
  AfterFuncHandle handle;
  {
    auto [ctx, cancel] = with_cancel(background());
    handle = after_func(ctx, [&runs, sentinel2] { runs.fetch_add(1); });
    sentinel2.reset();
  }
  EXPECT_TRUE(captured2.expired());
  run_bounded("wait() on an orphaned after_func", [&] { handle.wait(); });
  EXPECT_FALSE(handle.finished());
  EXPECT_EQ(runs.load(), 0);
}

// Documented divergence from Go: in Go a forgotten child stays in its parent's
// children map, so cancelling the parent still runs f. In ctxpp a child whose
// last handle is gone is freed and unlinked at once; its after_func is
// orphaned and never runs, even when the parent is cancelled later.
TEST(AfterFunc, ForgottenChildOrphansFEvenIfTheParentIsCancelledLater) {
  auto [parent, parent_cancel] = with_cancel(background());
  std::atomic<int> runs{0};
  AfterFuncHandle handle;
  {
    auto [child, child_cancel] = with_cancel(parent);
    handle = after_func(child, [&] { runs.fetch_add(1); });
  }
  parent_cancel();
  EXPECT_TRUE(handle.wait_for(0s));
  EXPECT_FALSE(handle.finished());
  EXPECT_EQ(runs.load(), 0);
}

// ---------------------------------------------------------------------------
// f uses the library.

TEST(AfterFunc, FMayCancelContextsIncludingItsOwn) {
  auto [parent, parent_cancel] = with_cancel(background());
  auto [ctx, cancel] = with_cancel(parent);
  auto [other, other_cancel] = with_cancel(background());
  std::thread::id scoped_ran_on;
  ctxpp::ScopedCallback on_other(other,
                                 [&]() noexcept { scoped_ran_on = std::this_thread::get_id(); });
  struct Seen {
    bool own = true;
    bool other = false;
    bool parent = false;
    std::thread::id f_thread;
    int nested_runs = 0;
  } seen;
  AfterFuncHandle nested;
  AfterFuncHandle handle =
      after_func(ctx, [&, c = cancel, oc = other_cancel, pc = parent_cancel, cx = ctx] {
        seen.f_thread = std::this_thread::get_id();
        seen.own = c.cancel();  // already ended: false, and no deadlock
        seen.other = oc.cancel();
        seen.parent = pc.cancel();
        // Register another after_func on the (done) context from inside f; it is
        // waited for from the test thread (FWaitingForAnotherFItPostedDoesNotDeadlock
        // waits from inside f).
        nested = after_func(cx, [&] { ++seen.nested_runs; });
      });
  cancel();
  ASSERT_TRUE(handle.wait_for(kBound)) << "f cancelling contexts did not finish";
  ASSERT_TRUE(nested.wait_for(kBound)) << "the after_func registered from inside f never ran";
  EXPECT_FALSE(seen.own);
  EXPECT_TRUE(seen.other);
  EXPECT_TRUE(seen.parent);
  EXPECT_EQ(scoped_ran_on, seen.f_thread)
      << "a scoped callback runs in the cancelling thread (f's)";
  EXPECT_EQ(seen.nested_runs, 1);
  EXPECT_TRUE(parent.done());
  EXPECT_TRUE(other.done());
}

// A function that blocks must not hold up the others for long ("one slow
// function cannot hold up the others", src/executor.cpp; Go runs each f in a
// goroutine of its own). Each f here waits until all of them have started, so
// they can only finish if they run at the same time; 8 is well below the
// executor's worker limit.
TEST(AfterFunc, BlockingFunctionsDoNotStarveTheOthers) {
  constexpr int kCount = 8;
  auto [ctx, cancel] = with_cancel(background());
  std::mutex m;
  std::condition_variable cv;
  int started = 0;
  std::atomic<int> saw_all{0};
  std::vector<AfterFuncHandle> handles;
  handles.reserve(kCount);
  for (int i = 0; i < kCount; ++i) {
    handles.push_back(after_func(ctx, [&] {
      std::unique_lock lock(m);
      ++started;
      cv.notify_all();
      if (cv.wait_for(lock, 10s, [&] { return started == kCount; })) saw_all.fetch_add(1);
    }));
  }
  cancel();
  for (auto& handle : handles) ASSERT_TRUE(handle.wait_for(kBound));
  EXPECT_EQ(saw_all.load(), kCount)
      << "blocked functions kept the others from starting for 10 s (no worker was added)";
}

// Pitfall 3 with the non-blocking API: two contexts end at once and each f stops
// the other's registration while both run. stop() never waits, so this cannot
// deadlock (ScopedCallback's destructor waits, like std::stop_callback's).
TEST(AfterFunc, FunctionsStoppingEachOthersRegistrationWhileBothRunDoNotDeadlock) {
  for (int round = 0; round < (kTsan ? 100 : 1000); ++round) {
    auto [a, cancel_a] = with_cancel(background());
    auto [b, cancel_b] = with_cancel(background());
    struct Shared {
      std::latch both_running{2};
      AfterFuncHandle handle[2];
      std::atomic<int> stop_results{0};
    };
    auto shared = std::make_shared<Shared>();
    for (int i = 0; i < 2; ++i) {
      shared->handle[i] = after_func(i == 0 ? a : b, [s = shared.get(), i] {
        s->both_running.arrive_and_wait();  // both functions are running now
        if (s->handle[1 - i].stop()) s->stop_results.fetch_add(1);
      });
    }
    std::thread t1([c = cancel_a] { c(); });
    std::thread t2([c = cancel_b] { c(); });
    t1.join();
    t2.join();
    for (auto& handle : shared->handle) {
      ASSERT_TRUE(handle.wait_for(kBound)) << "deadlock in round " << round;
    }
    EXPECT_EQ(shared->stop_results.load(), 0) << "stop() after f started must return false";
  }
}

TEST(AfterFunc, FWaitingForAnotherFItPostedDoesNotDeadlock) {
  auto [ctx, cancel] = with_cancel(background());
  std::atomic<int> nested_runs{0};
  std::atomic<bool> nested_finished{false};
  AfterFuncHandle handle = after_func(ctx, [&, c = ctx] {
    AfterFuncHandle nested = after_func(c, [&] { nested_runs.fetch_add(1); });
    nested_finished.store(nested.wait_for(10s));  // nothing else is ever posted
  });
  cancel();
  ASSERT_TRUE(handle.wait_for(kBound));
  EXPECT_TRUE(nested_finished.load()) << "an f posted from inside a running f never ran";
  EXPECT_EQ(nested_runs.load(), 1);
}

TEST(AfterFunc, FCancellingTheContextThatRunsItFromAScopedCallbackChain) {
  // f (on the executor) cancels a parent whose subtree has scoped callbacks
  // and another after_func: everything runs once, nothing waits on itself.
  auto [root, root_cancel] = with_cancel(background());
  auto [a, a_cancel] = with_cancel(root);
  auto [b, b_cancel] = with_cancel(root);
  std::atomic<int> scoped{0};
  ctxpp::ScopedCallback on_root(root, [&]() noexcept { scoped.fetch_add(1); });
  ctxpp::ScopedCallback on_b(b, [&]() noexcept { scoped.fetch_add(1); });
  std::atomic<int> b_after{0};
  AfterFuncHandle after_b = after_func(b, [&] { b_after.fetch_add(1); });
  AfterFuncHandle after_a = after_func(a, [rc = root_cancel] { rc(); });
  a_cancel();
  ASSERT_TRUE(after_a.wait_for(kBound));
  ASSERT_TRUE(after_b.wait_for(kBound));
  EXPECT_EQ(scoped.load(), 2);
  EXPECT_EQ(b_after.load(), 1);
}

}  // namespace
