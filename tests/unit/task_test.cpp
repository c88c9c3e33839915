// Tests of ctxpp/task.hpp: the lazy Task<T> coroutine, sync_wait, resume_on and
// sleep_for.
#include "ctxpp/task.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "ctxpp/context.hpp"
#include "ctxpp/coroutine.hpp"
#include "ctxpp/errc.hpp"
#include "ctxpp/executor.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::Context;
using ctxpp::sync_wait;
using ctxpp::Task;
using ctxpp::ThreadPool;
using ctxpp_test::Gate;

// A pool of one thread that never idles out during a test, and that thread's id:
// every task (and every coroutine resumed on the pool) runs on it.
struct SingleThreadPool {
  SingleThreadPool() {
    Gate probed;
    pool.execute([&] {
      id = std::this_thread::get_id();
      probed.open();
    });
    if (!probed.wait()) ADD_FAILURE() << "the pool did not run the probe";
  }
  ThreadPool pool{1, std::chrono::hours(1)};
  std::thread::id id;
};

// Counts live instances; a coroutine parameter of this type lives in the frame.
struct Tracked {
  explicit Tracked(std::atomic<int>& live) : live_(&live) { live_->fetch_add(1); }
  Tracked(const Tracked& other) : live_(other.live_) { live_->fetch_add(1); }
  Tracked& operator=(const Tracked&) = delete;
  ~Tracked() { live_->fetch_sub(1); }
  std::atomic<int>* live_;
};

class Boom : public std::runtime_error {
 public:
  explicit Boom(int which) : std::runtime_error("boom"), id(which) {}
  int id;
};

// ---------------------------------------------------------------------------
// Values.

Task<int> forty_two() { co_return 42; }

TEST(Task, SyncWaitReturnsTheIntValue) { EXPECT_EQ(sync_wait(forty_two()), 42); }

Task<std::string> greet(std::string name) { co_return "hello " + name; }

TEST(Task, SyncWaitReturnsAString) {
  EXPECT_EQ(sync_wait(greet(std::string(100, 'x'))), "hello " + std::string(100, 'x'));
}

Task<std::unique_ptr<int>> make_boxed(int value) { co_return std::make_unique<int>(value); }

TEST(Task, CarriesAMoveOnlyValue) {
  std::unique_ptr<int> boxed = sync_wait(make_boxed(9));
  ASSERT_NE(boxed, nullptr);
  EXPECT_EQ(*boxed, 9);
}

Task<int> add_boxed() {
  std::unique_ptr<int> a = co_await make_boxed(1);
  std::unique_ptr<int> b = co_await make_boxed(2);
  co_return *a + *b;
}

TEST(Task, CoAwaitYieldsTheValueOfTheAwaitedTask) { EXPECT_EQ(sync_wait(add_boxed()), 3); }

TEST(Task, VoidTaskRunsItsBodyOnlyWhenAwaited) {
  bool ran = false;
  auto body = [](bool& flag) -> Task<> {
    flag = true;
    co_return;
  };
  Task<> task = body(ran);
  EXPECT_FALSE(ran) << "a Task is lazy: nothing runs before it is awaited";
  sync_wait(std::move(task));
  EXPECT_TRUE(ran);
}

TEST(Task, MoveTransfersTheCoroutine) {
  Task<int> a = forty_two();
  Task<int> b = std::move(a);
  Task<int> c = forty_two();
  c = std::move(b);  // the frame c held is destroyed, b's moves in
  EXPECT_EQ(sync_wait(std::move(c)), 42);
}

Task<int> await_moved_from() {
  Task<int> a = forty_two();
  Task<int> b = std::move(a);
  (void)co_await std::move(b);
  co_return co_await std::move(a);  // NOLINT(bugprone-use-after-move): the misuse under test
}

TEST(Task, AwaitingAMovedFromTaskThrowsLogicError) {
  EXPECT_THROW((void)sync_wait(await_moved_from()), std::logic_error);
}

// ---------------------------------------------------------------------------
// Exceptions.

Task<int> throws_boom(int id) {
  throw Boom(id);
  co_return 0;
}

Task<> void_throws_boom(int id) {
  throw Boom(id);
  co_return;
}

TEST(Task, ExceptionPropagatesThroughSyncWait) {
  try {
    (void)sync_wait(throws_boom(7));
    ADD_FAILURE() << "sync_wait must rethrow the task's exception";
  } catch (const Boom& e) {
    EXPECT_EQ(e.id, 7);
  }
  EXPECT_THROW(sync_wait(void_throws_boom(8)), Boom);
}

Task<int> catches_inner() {
  try {
    co_return co_await throws_boom(3);
  } catch (const Boom& e) {
    co_return 100 + e.id;
  }
}

TEST(Task, ExceptionPropagatesThroughCoAwait) { EXPECT_EQ(sync_wait(catches_inner()), 103); }

Task<int> passes_through(int depth) {
  if (depth == 0) co_return co_await throws_boom(11);
  co_return co_await passes_through(depth - 1);
}

TEST(Task, ExceptionCrossesSeveralAwaitsUnchanged) {
  try {
    (void)sync_wait(passes_through(10));
    ADD_FAILURE() << "expected the innermost exception";
  } catch (const Boom& e) {
    EXPECT_EQ(e.id, 11);
  }
}

// ---------------------------------------------------------------------------
// Lifetime.

Task<int> holds(Tracked tracked, bool& ran) {
  ran = true;
  (void)tracked;
  co_return 1;
}

TEST(Task, NeverStartedTaskIsDestroyedWithoutRunningOrLeaking) {
  std::atomic<int> live{0};
  bool ran = false;
  {
    Task<int> task = holds(Tracked(live), ran);
    EXPECT_EQ(live.load(), 1) << "the frame holds its own copy of the parameter";
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(live.load(), 0) << "destroying a never-started Task must destroy its frame";
}

TEST(Task, FinishedTaskReleasesItsFrameWhenDestroyed) {
  std::atomic<int> live{0};
  bool ran = false;
  EXPECT_EQ(sync_wait(holds(Tracked(live), ran)), 1);
  EXPECT_TRUE(ran);
  EXPECT_EQ(live.load(), 0);
}

// Not a tail chain: every level awaits the next, so the depth is real. Kept at
// 1,000: unoptimised builds do not guarantee that symmetric transfer is a tail call.
Task<int> count_down(int n) {
  if (n == 0) co_return 0;
  co_return 1 + co_await count_down(n - 1);
}

TEST(Task, AThousandNestedAwaitsComplete) { EXPECT_EQ(sync_wait(count_down(1000)), 1000); }

Task<> step(int& counter) {
  ++counter;
  co_return;
}

TEST(Task, AThousandSequentialAwaitsComplete) {
  int counter = 0;
  auto loop = [](int& c) -> Task<int> {
    for (int i = 0; i < 1000; ++i) co_await step(c);
    co_return c;
  };
  EXPECT_EQ(sync_wait(loop(counter)), 1000);
}

// ---------------------------------------------------------------------------
// resume_on.

Task<std::thread::id> thread_after_resume_on(ctxpp::Executor& executor) {
  co_await ctxpp::resume_on(executor);
  co_return std::this_thread::get_id();
}

TEST(ResumeOn, ContinuesOnAThreadOfTheExecutor) {
  SingleThreadPool pool;
  const std::thread::id resumed_on = sync_wait(thread_after_resume_on(pool.pool));
  EXPECT_NE(resumed_on, std::this_thread::get_id());
  EXPECT_EQ(resumed_on, pool.id) << "the coroutine must continue on the pool's thread";
}

TEST(ResumeOn, SyncWaitReturnsTheValueProducedOnAnotherThread) {
  SingleThreadPool pool;
  auto work = [](ctxpp::Executor& executor) -> Task<std::string> {
    co_await ctxpp::resume_on(executor);
    co_return std::string(1000, 'y');
  };
  EXPECT_EQ(sync_wait(work(pool.pool)), std::string(1000, 'y'));
}

class RefusingExecutor final : public ctxpp::Executor {
 public:
  void execute(std::function<void()> /*task*/) override {
    throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
  }
};

TEST(ResumeOn, RethrowsWhenTheExecutorRefusesWithoutSuspending) {
  RefusingExecutor refusing;
  auto attempt = [](ctxpp::Executor& executor) -> Task<std::thread::id> {
    try {
      co_await ctxpp::resume_on(executor);
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::resource_unavailable_try_again);
      co_return std::this_thread::get_id();
    }
    ADD_FAILURE() << "resume_on on a refusing executor must throw";
    co_return std::thread::id{};
  };
  EXPECT_EQ(sync_wait(attempt(refusing)), std::this_thread::get_id());
}

// ---------------------------------------------------------------------------
// sleep_for.

struct SleepOutcome {
  std::error_code ec;
  std::thread::id resumed_on;
  ctxpp::clock::duration elapsed{};
};

Task<SleepOutcome> timed_sleep(Context ctx, ctxpp::clock::duration d, ctxpp::Executor& executor) {
  const auto start = ctxpp::clock::now();
  SleepOutcome outcome;
  outcome.ec = co_await ctxpp::sleep_for(ctx, d, executor);
  outcome.resumed_on = std::this_thread::get_id();
  outcome.elapsed = ctxpp::clock::now() - start;
  co_return outcome;
}

TEST(SleepFor, ReturnsNoErrorAfterTheFullDurationAndResumesOnTheExecutor) {
  SingleThreadPool pool;
  const SleepOutcome outcome = sync_wait(timed_sleep(background(), 30ms, pool.pool));
  EXPECT_FALSE(outcome.ec) << outcome.ec.message();
  EXPECT_GE(outcome.elapsed, 30ms) << "sleep_for returned before the full duration";
  EXPECT_EQ(outcome.resumed_on, pool.id) << "not resumed on the executor (timer thread?)";
}

TEST(SleepFor, ReturnsCanceledWhenTheContextIsCancelledFirst) {
  SingleThreadPool pool;
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  std::thread::id canceller_id;
  Gate canceller_ready;
  std::thread canceller([&, cancel = cancel] {
    canceller_id = std::this_thread::get_id();
    canceller_ready.open();
    cancel();
  });
  ASSERT_TRUE(canceller_ready.wait());
  const SleepOutcome outcome = sync_wait(timed_sleep(ctx, std::chrono::hours(1), pool.pool));
  canceller.join();
  EXPECT_EQ(outcome.ec, ctxpp::errc::canceled);
  EXPECT_NE(outcome.resumed_on, canceller_id) << "resumed inside the canceller";
  EXPECT_EQ(outcome.resumed_on, pool.id);
  EXPECT_LT(outcome.elapsed, std::chrono::minutes(10)) << "the hour-long sleep was not cut short";
}

TEST(SleepFor, CancelAfterSuspensionResumesOnTheExecutorNotInTheCanceller) {
  SingleThreadPool pool;
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  // The coroutine registers its wait, then the test cancels from this thread: the
  // sleeper is resumed by this cancel, and must hop to the pool before returning.
  auto sleeper = [](Context c, ctxpp::Executor& executor, Gate& about_to_sleep,
                    std::thread::id& resumed_on) -> Task<std::error_code> {
    about_to_sleep.open();
    std::error_code ec = co_await ctxpp::sleep_for(c, std::chrono::hours(1), executor);
    resumed_on = std::this_thread::get_id();
    co_return ec;
  };
  Gate about_to_sleep;
  std::thread::id resumed_on;
  std::error_code ec;
  std::thread runner(
      [&, c = ctx] { ec = sync_wait(sleeper(c, pool.pool, about_to_sleep, resumed_on)); });
  ASSERT_TRUE(about_to_sleep.wait());
  cancel();
  runner.join();
  EXPECT_EQ(ec, ctxpp::errc::canceled);
  EXPECT_NE(resumed_on, std::this_thread::get_id()) << "resumed inside the canceller";
  EXPECT_EQ(resumed_on, pool.id);
}

TEST(SleepFor, ReturnsDeadlineExceededWhenTheContextDeadlineComesFirst) {
  SingleThreadPool pool;
  auto [ctx, cancel] = ctxpp::with_timeout(background(), 20ms);
  const SleepOutcome outcome = sync_wait(timed_sleep(ctx, std::chrono::hours(1), pool.pool));
  EXPECT_EQ(outcome.ec, ctxpp::errc::deadline_exceeded);
  EXPECT_EQ(outcome.resumed_on, pool.id) << "not resumed on the executor (timer thread?)";
}

TEST(SleepFor, OnAnAlreadyCancelledContextReturnsCanceledOnTheExecutor) {
  SingleThreadPool pool;
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  cancel();
  const SleepOutcome outcome = sync_wait(timed_sleep(ctx, std::chrono::hours(1), pool.pool));
  EXPECT_EQ(outcome.ec, ctxpp::errc::canceled);
  EXPECT_EQ(outcome.resumed_on, pool.id);
}

TEST(SleepFor, NonPositiveDurationStillHopsThroughTheExecutor) {
  SingleThreadPool pool;
  const SleepOutcome zero = sync_wait(timed_sleep(background(), 0ms, pool.pool));
  EXPECT_FALSE(zero.ec);
  EXPECT_EQ(zero.resumed_on, pool.id);
  const SleepOutcome negative = sync_wait(timed_sleep(background(), -5ms, pool.pool));
  EXPECT_FALSE(negative.ec);
  EXPECT_EQ(negative.resumed_on, pool.id);
}

TEST(SleepFor, UsesTheDefaultExecutorWhenNoneIsGiven) {
  auto sleeper = []() -> Task<std::thread::id> {
    std::error_code ec = co_await ctxpp::sleep_for(background(), 1ms);
    EXPECT_FALSE(ec);
    co_return std::this_thread::get_id();
  };
  EXPECT_NE(sync_wait(sleeper()), std::this_thread::get_id());
}

}  // namespace
