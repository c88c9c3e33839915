// Tests of ctxpp/group.hpp: TaskGroup, structured concurrency with a join that
// reports the first failure (pitfalls 15, 25-30 of design/pitfalls.md).
#include "ctxpp/group.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "ctxpp/blocking.hpp"
#include "ctxpp/context.hpp"
#include "ctxpp/coroutine.hpp"
#include "ctxpp/errc.hpp"
#include "ctxpp/executor.hpp"
#include "ctxpp/failure.hpp"
#include "ctxpp/result.hpp"
#include "ctxpp/task.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::Context;
using ctxpp::InlineExecutor;
using ctxpp::Result;
using ctxpp::Task;
using ctxpp::TaskFailure;
using ctxpp::TaskGroup;
using ctxpp::ThreadPool;
using ctxpp_test::Concurrency;
using ctxpp_test::describe;
using ctxpp_test::eventually;
using ctxpp_test::Gate;
using ctxpp_test::kAsan;
using ctxpp_test::kLongBound;
using ctxpp_test::kTsan;
using ctxpp_test::OpenOnExit;

// How long a test waits before it declares a deadlock that it can still undo (by
// raising a limit): far beyond what the healthy path takes, even under TSan.
constexpr ctxpp::clock::duration kRescueBound = 5s;

constexpr int scaled(int n) { return kTsan || kAsan ? std::max(n / 5, 1) : n; }

std::error_code io_error() { return std::make_error_code(std::errc::io_error); }
std::error_code reset_error() { return std::make_error_code(std::errc::connection_reset); }
std::error_code pipe_error() { return std::make_error_code(std::errc::broken_pipe); }
std::error_code unreachable_error() { return std::make_error_code(std::errc::host_unreachable); }

class Boom : public std::runtime_error {
 public:
  explicit Boom(int which) : std::runtime_error("boom " + std::to_string(which)), id(which) {}
  int id;
};

// Runs body on a helper thread; on a hang, prints the threads and aborts (a task
// blocked forever cannot be reclaimed safely).
template <class F>
void bounded(const char* what, F&& body) {
  Gate finished;
  std::thread runner([&] {
    std::forward<F>(body)();
    finished.open();
  });
  if (!finished.wait(kLongBound)) {
    std::fprintf(stderr, "DEADLOCK: %s did not finish within the bound; threads:%s\n", what,
                 ctxpp_test::describe_threads().c_str());
    std::abort();
  }
  runner.join();
}

// Limits group to one task at a time and fills that one slot with a task that blocks
// until release opens; returns once the task runs (false if it never started).
bool hold_the_only_slot(TaskGroup& group, Gate& release) {
  group.set_limit(1);
  auto started = std::make_shared<Gate>();  // the task may outlive a failed wait
  group.spawn([started, &release] {
    started->open();
    (void)release.wait();
  });
  return started->wait();
}

// Records what the unjoined-group handler receives while installed.
std::mutex g_unjoined_mutex;
std::vector<ctxpp::UnjoinedGroup> g_unjoined_reports;

void record_unjoined(const ctxpp::UnjoinedGroup& group) {
  std::lock_guard lock(g_unjoined_mutex);
  g_unjoined_reports.push_back(group);
}

class CaptureUnjoined {
 public:
  CaptureUnjoined() {
    {
      std::lock_guard lock(g_unjoined_mutex);
      g_unjoined_reports.clear();
    }
    previous_ = ctxpp::set_unjoined_group_handler(&record_unjoined);
  }
  CaptureUnjoined(const CaptureUnjoined&) = delete;
  CaptureUnjoined& operator=(const CaptureUnjoined&) = delete;
  ~CaptureUnjoined() { ctxpp::set_unjoined_group_handler(previous_); }

  std::vector<ctxpp::UnjoinedGroup> reports() const {
    std::lock_guard lock(g_unjoined_mutex);
    return g_unjoined_reports;
  }

 private:
  ctxpp::UnjoinedGroupHandler previous_ = nullptr;
};

bool ends_with(const char* text, const char* suffix) {
  const std::size_t n = std::strlen(text);
  const std::size_t m = std::strlen(suffix);
  return n >= m && std::strcmp(text + (n - m), suffix) == 0;
}

// ---------------------------------------------------------------------------
// spawn: with or without the context, and what each return type means.

TEST(TaskGroup, SpawnPassesTheGroupContextToFunctionsThatTakeIt) {
  TaskGroup group(background());
  std::atomic<bool> got_group_context{false};
  std::atomic<bool> ran_without_context{false};
  group.spawn([&](const Context& ctx) { got_group_context.store(ctx == group.context()); });
  group.spawn([&] { ran_without_context.store(true); });
  EXPECT_FALSE(group.wait());
  EXPECT_TRUE(got_group_context.load()) << "f(ctx) must receive the group's context";
  EXPECT_TRUE(ran_without_context.load()) << "f() must run too";
  EXPECT_TRUE(group.failures().empty());
}

TEST(TaskGroup, GroupContextIsAChildOfTheParent) {
  auto parent = ctxpp::with_cancel(background());
  TaskGroup group(parent.ctx);
  EXPECT_FALSE(group.context() == parent.ctx);
  EXPECT_FALSE(group.context().done());
  parent.cancel();
  EXPECT_TRUE(group.context().done()) << "the group's context ends with its parent";
  EXPECT_EQ(group.context().err(), ctxpp::errc::canceled);
}

TEST(TaskGroup, VoidTasksSucceed) {
  TaskGroup group(background());
  std::atomic<int> ran{0};
  for (int i = 0; i < 10; ++i) group.spawn([&] { ran.fetch_add(1); });
  EXPECT_FALSE(group.wait());
  EXPECT_EQ(ran.load(), 10);
  EXPECT_TRUE(group.failures().empty());
}

TEST(TaskGroup, ErrorCodeReturnFailsTheGroupWithThatCode) {
  TaskGroup group(background());
  group.spawn([] { return io_error(); });
  EXPECT_EQ(group.wait(), io_error());
  const std::vector<TaskFailure> failures = group.failures();
  ASSERT_EQ(failures.size(), 1U);
  EXPECT_EQ(failures[0].code, io_error());
  EXPECT_EQ(failures[0].exception, nullptr) << "an error return carries no exception";
  EXPECT_EQ(group.context().cause(), io_error()) << "the failure cancelled before wait() did";
}

TEST(TaskGroup, EmptyErrorCodeReturnIsSuccess) {
  TaskGroup group(background());
  group.spawn([]() -> std::error_code { return {}; });
  group.spawn([](const Context&) -> std::error_code { return {}; });
  EXPECT_FALSE(group.wait());
  EXPECT_TRUE(group.failures().empty());
  EXPECT_EQ(group.context().cause(), ctxpp::errc::canceled) << "ended by wait(), no failure cause";
}

TEST(TaskGroup, ResultReturnFailsOnlyWhenItHoldsAnError) {
  {
    TaskGroup group(background());
    group.spawn([]() -> Result<int> { return 5; });
    group.spawn([]() -> Result<void> { return {}; });
    group.spawn([](const Context&) -> Result<std::string> { return std::string("ok"); });
    EXPECT_FALSE(group.wait()) << "a Result holding a value is success";
  }
  {
    TaskGroup group(background());
    group.spawn([]() -> Result<int> { return reset_error(); });
    EXPECT_EQ(group.wait(), reset_error());
  }
  {
    TaskGroup group(background());
    group.spawn([]() -> Result<void> { return pipe_error(); });
    EXPECT_EQ(group.wait(), pipe_error());
  }
}

TEST(TaskGroup, OtherReturnValuesAreIgnored) {
  TaskGroup group(background());
  group.spawn([] { return 42; });
  group.spawn([] { return std::string("not an error"); });
  EXPECT_FALSE(group.wait());
  EXPECT_TRUE(group.failures().empty());
}

TEST(TaskGroup, ResultsDerivedFromResultCountAsFailuresToo) {
  // call_blocking returns a BlockingResult<T>, derived from Result<T>: a task that
  // returns it fails when it holds an error, whatever T is.
  TaskGroup group(background());
  auto [ended, cancel] = ctxpp::with_cancel(background());
  cancel();
  group.spawn([ctx = ended] { return ctxpp::call_blocking(ctx, [] { return 7; }); });
  EXPECT_EQ(group.wait(), ctxpp::errc::canceled);
}

TEST(TaskGroup, ErrorCodeEnumsAndErrorConditionsCountAsFailures) {
  {
    TaskGroup group(background());
    group.spawn([] { return std::errc::connection_reset; });
    EXPECT_EQ(group.wait(), std::errc::connection_reset);
  }
  {
    TaskGroup group(background());
    group.spawn([] { return std::error_condition(std::errc::timed_out); });
    EXPECT_EQ(group.wait(), std::errc::timed_out);
  }
  {
    TaskGroup group(background());
    group.spawn([] { return std::errc{}; });  // zero: no error
    EXPECT_FALSE(group.wait());
  }
}

TEST(TaskGroup, ThrowingTaskFailsWithFailureExceptionAndWaitRethrowsTheSameObject) {
  TaskGroup group(background());
  std::atomic<const Boom*> thrown{nullptr};
  group.spawn([&] {
    try {
      throw Boom(1);
    } catch (const Boom& e) {
      thrown.store(&e);
      throw;
    }
  });
  for (int attempt = 0; attempt < 2; ++attempt) {  // the second wait() rethrows it too
    try {
      (void)group.wait();
      ADD_FAILURE() << "wait() #" << attempt + 1 << " must rethrow the task's exception";
    } catch (const Boom& e) {
      EXPECT_EQ(&e, thrown.load()) << "wait() #" << attempt + 1 << " threw a copy";
      EXPECT_EQ(e.id, 1);
    }
  }
  const std::vector<TaskFailure> failures = group.failures();
  ASSERT_EQ(failures.size(), 1U);
  EXPECT_EQ(failures[0].code, ctxpp::failure::exception);
  EXPECT_NE(failures[0].exception, nullptr);
  EXPECT_EQ(group.context().cause(), ctxpp::failure::exception);
}

TEST(TaskGroup, NonStandardExceptionIsCapturedAndRethrown) {
  TaskGroup group(background());
  group.spawn([] { throw 17; });
  try {
    (void)group.wait();
    ADD_FAILURE() << "wait() must rethrow";
  } catch (int value) {
    EXPECT_EQ(value, 17);
  }
}

TEST(TaskGroup, CoroutineTaskVoidSucceedsOrThrows) {
  ThreadPool pool(2);
  {
    TaskGroup group(background(), pool);
    std::atomic<bool> finished{false};
    group.spawn([&]() -> Task<> {
      co_await ctxpp::resume_on(pool);
      finished.store(true);
    });
    EXPECT_FALSE(group.wait());
    EXPECT_TRUE(finished.load());
  }
  {
    TaskGroup group(background(), pool);
    group.spawn([&]() -> Task<> {
      co_await ctxpp::resume_on(pool);
      throw Boom(2);
    });
    try {
      (void)group.wait();
      ADD_FAILURE() << "the coroutine's exception must be rethrown by wait()";
    } catch (const Boom& e) {
      EXPECT_EQ(e.id, 2);
    }
    EXPECT_EQ(group.context().cause(), ctxpp::failure::exception);
  }
}

TEST(TaskGroup, CoroutineTaskErrorCodeFailsWithItsCode) {
  ThreadPool pool(2);
  TaskGroup group(background(), pool);
  group.spawn([&](const Context&) -> Task<std::error_code> {
    co_await ctxpp::resume_on(pool);
    co_return unreachable_error();
  });
  group.spawn([&]() -> Task<std::error_code> { co_return std::error_code{}; });
  EXPECT_EQ(group.wait(), unreachable_error());
  EXPECT_EQ(group.failures().size(), 1U);
  EXPECT_EQ(group.context().cause(), unreachable_error());
}

TEST(TaskGroup, CoroutineTaskResultFailsWhenItHoldsAnError) {
  ThreadPool pool(2);
  TaskGroup group(background(), pool);
  group.spawn([&]() -> Task<Result<int>> {
    co_await ctxpp::resume_on(pool);
    co_return Result<int>(3);
  });
  group.spawn([&]() -> Task<Result<int>> {
    co_await ctxpp::resume_on(pool);
    co_return Result<int>(pipe_error());
  });
  EXPECT_EQ(group.wait(), pipe_error());
  EXPECT_EQ(group.failures().size(), 1U);
}

// ---------------------------------------------------------------------------
// The first failure (pitfalls 26, 28).

TEST(TaskGroup, FirstFailureCancelsSiblingsWithItsCause) {
  ThreadPool pool(4);
  TaskGroup group(background(), pool);
  Gate sibling_started;
  std::error_code sibling_err;
  std::error_code sibling_cause;
  group.spawn([&](const Context& ctx) {
    sibling_started.open();
    EXPECT_TRUE(ctx.wait_for(kLongBound)) << "the sibling was never cancelled";
    sibling_err = ctx.err();
    sibling_cause = ctx.cause();
  });
  ASSERT_TRUE(sibling_started.wait());
  group.spawn([] { return io_error(); });
  EXPECT_EQ(group.wait(), io_error());
  EXPECT_EQ(sibling_err, ctxpp::errc::canceled);
  EXPECT_EQ(sibling_cause, io_error()) << "got " << describe(sibling_cause);
  EXPECT_EQ(group.context().cause(), io_error());
}

TEST(TaskGroup, FirstExceptionCancelsSiblingsWithCauseFailureException) {
  ThreadPool pool(4);
  TaskGroup group(background(), pool);
  Gate sibling_started;
  std::error_code sibling_cause;
  group.spawn([&](const Context& ctx) {
    sibling_started.open();
    EXPECT_TRUE(ctx.wait_for(kLongBound)) << "the sibling was never cancelled";
    sibling_cause = ctx.cause();
  });
  ASSERT_TRUE(sibling_started.wait());
  group.spawn([] { throw Boom(3); });
  EXPECT_THROW((void)group.wait(), Boom);
  EXPECT_EQ(sibling_cause, ctxpp::failure::exception) << "got " << describe(sibling_cause);
  EXPECT_EQ(group.context().cause(), ctxpp::failure::exception);
}

TEST(TaskGroup, WaitReturnsTheFirstFailureAndFailuresListsTheOthersAfterIt) {
  ThreadPool pool(4);
  TaskGroup group(background(), pool);
  std::latch siblings_started(2);
  for (const std::error_code later : {reset_error(), pipe_error()}) {
    group.spawn([&, later](const Context& ctx) {
      siblings_started.count_down();
      EXPECT_TRUE(ctx.wait_for(kLongBound));
      return later;  // a consequence of the first failure
    });
  }
  siblings_started.wait();
  group.spawn([] { return io_error(); });
  EXPECT_EQ(group.wait(), io_error());
  const std::vector<TaskFailure> failures = group.failures();
  ASSERT_EQ(failures.size(), 3U);
  EXPECT_EQ(failures[0].code, io_error()) << "the first failure comes first";
  const bool others_in_any_order =
      (failures[1].code == reset_error() && failures[2].code == pipe_error()) ||
      (failures[1].code == pipe_error() && failures[2].code == reset_error());
  EXPECT_TRUE(others_in_any_order)
      << describe(failures[1].code) << ", " << describe(failures[2].code);
  EXPECT_EQ(group.wait(), io_error()) << "a later wait() reports the same first failure";
}

TEST(TaskGroup, ContextIsCancelledWhenWaitReturnsEvenOnSuccess) {
  auto parent = ctxpp::with_cancel(background());
  TaskGroup group(parent.ctx);
  Gate checked;
  std::atomic<bool> done_while_running{true};
  group.spawn([&](const Context& ctx) {
    done_while_running.store(ctx.done());
    checked.open();
  });
  ASSERT_TRUE(checked.wait());
  EXPECT_FALSE(group.wait());
  EXPECT_FALSE(done_while_running.load()) << "the context must be live while tasks run";
  EXPECT_TRUE(group.context().done()) << "errgroup semantics: the context ends with the join";
  EXPECT_EQ(group.context().err(), ctxpp::errc::canceled);
  EXPECT_FALSE(parent.ctx.done()) << "ending the group's context never ends the parent";
}

TEST(TaskGroup, ChildExceptionCancelsSiblingsBeforeWaitIsCalled) {
  ThreadPool pool(4);
  TaskGroup group(background(), pool);
  Gate sibling_saw_cancel;
  std::error_code seen_cause;
  group.spawn([&](const Context& ctx) {
    if (ctx.wait_for(kLongBound)) {
      seen_cause = ctx.cause();
      sibling_saw_cancel.open();
    }
  });
  group.spawn([] { throw Boom(4); });
  // wait() is not called yet: the exception must cancel the sibling on its own.
  ASSERT_TRUE(sibling_saw_cancel.wait())
      << "a child exception did not cancel its sibling before wait()";
  EXPECT_THROW((void)group.wait(), Boom);
  EXPECT_EQ(seen_cause, ctxpp::failure::exception);
}

TEST(TaskGroup, ChildErrorCancelsSiblingsBeforeWaitIsCalled) {
  ThreadPool pool(4);
  TaskGroup group(background(), pool);
  Gate sibling_saw_cancel;
  group.spawn([&](const Context& ctx) {
    if (ctx.wait_for(kLongBound)) sibling_saw_cancel.open();
  });
  group.spawn([] { return io_error(); });
  ASSERT_TRUE(sibling_saw_cancel.wait())
      << "a child error did not cancel its sibling before wait()";
  EXPECT_EQ(group.wait(), io_error());
}

// ---------------------------------------------------------------------------
// Nested scopes and outer cancellation (pitfalls 15, 25, 30).

TEST(TaskGroup, InnerGroupFailureNeverSwallowsTheOuterTimeout) {
  auto outer = ctxpp::with_timeout(background(), 200ms);
  {
    TaskGroup inner(outer.ctx);
    inner.spawn([] { return io_error(); });
    EXPECT_EQ(inner.wait(), io_error());
    EXPECT_TRUE(inner.context().done());
  }
  EXPECT_NE(outer.ctx.err(), ctxpp::errc::canceled)
      << "the inner group's failure (or join) cancelled the outer context";
  ASSERT_TRUE(outer.ctx.wait_for(kLongBound)) << "the outer timeout never fired";
  EXPECT_EQ(outer.ctx.err(), ctxpp::errc::deadline_exceeded);
  EXPECT_EQ(outer.ctx.cause(), ctxpp::errc::deadline_exceeded);
}

TEST(TaskGroup, InnerGroupCancelNeverCancelsTheParent) {
  auto parent = ctxpp::with_cancel(background());
  CaptureUnjoined capture;  // the second group is destroyed without wait() on purpose
  {
    TaskGroup failing(parent.ctx);
    failing.spawn([] { throw Boom(5); });
    EXPECT_THROW((void)failing.wait(), Boom);
  }
  {
    TaskGroup abandoned(parent.ctx);
    abandoned.spawn([](const Context& ctx) { EXPECT_TRUE(ctx.wait_for(kLongBound)); });
  }
  EXPECT_FALSE(parent.ctx.done()) << "a group's failure, join or destructor cancelled its parent";
  EXPECT_EQ(capture.reports().size(), 1U);
}

TEST(TaskGroup, InnerGroupSeesTheOuterCauseWhenTheParentEndsFirst) {
  auto parent = ctxpp::with_cancel_cause(background());
  ThreadPool pool(2);
  TaskGroup group(parent.ctx, pool);
  Gate started;
  std::error_code seen_cause;
  group.spawn([&](const Context& ctx) {
    started.open();
    EXPECT_TRUE(ctx.wait_for(kLongBound));
    seen_cause = ctx.cause();
  });
  ASSERT_TRUE(started.wait());
  parent.cancel(unreachable_error());
  EXPECT_FALSE(group.wait()) << "the task succeeded: the parent's cancel is not a task failure";
  EXPECT_EQ(seen_cause, unreachable_error());
  EXPECT_EQ(group.context().cause(), unreachable_error());
}

TEST(TaskGroup, AllSuccessfulChildrenReportSuccessEvenIfTheParentIsCancelledAsTheGroupExits) {
  // trio#1457: an outer cancel racing with the exit must not turn success into "canceled".
  const int iterations = scaled(200);
  for (int i = 0; i < iterations; ++i) {
    auto parent = ctxpp::with_cancel(background());
    TaskGroup group(parent.ctx);
    std::atomic<int> ran{0};
    for (int t = 0; t < 4; ++t) {
      group.spawn([&](const Context& ctx) {
        (void)ctx.done();
        ran.fetch_add(1);
      });
    }
    std::latch go(2);
    std::thread canceller([&go, cancel = parent.cancel] {
      go.arrive_and_wait();
      cancel();
    });
    go.arrive_and_wait();
    const std::error_code ec = group.wait();
    canceller.join();
    ASSERT_FALSE(ec) << "iteration " << i << ": " << describe(ec);
    ASSERT_TRUE(group.failures().empty()) << "iteration " << i;
    ASSERT_EQ(ran.load(), 4);
  }
}

TEST(TaskGroup, ParentCancelReachesEveryChildIncludingOnesSpawnedAfter) {
  constexpr int kBefore = 6;
  constexpr int kAfter = 4;
  ThreadPool pool(kBefore + 2);
  auto parent = ctxpp::with_cancel(background());
  TaskGroup group(parent.ctx, pool);
  std::latch started(kBefore);
  std::atomic<int> saw_cancel{0};
  for (int i = 0; i < kBefore; ++i) {
    group.spawn([&](const Context& ctx) {
      started.count_down();
      if (ctx.wait_for(kLongBound) && ctx.err() == ctxpp::errc::canceled) saw_cancel.fetch_add(1);
    });
  }
  started.wait();
  parent.cancel();
  std::atomic<int> later_saw_done{0};
  for (int i = 0; i < kAfter; ++i) {
    group.spawn([&](const Context& ctx) {
      if (ctx.done()) later_saw_done.fetch_add(1);
    });
  }
  EXPECT_FALSE(group.wait());
  EXPECT_EQ(saw_cancel.load(), kBefore);
  EXPECT_EQ(later_saw_done.load(), kAfter) << "a task spawned after the cancel must see it";
}

TEST(TaskGroup, ChildCompletingAfterACancelLeavesTheRemainingOnesCancelled) {
  // asio#458: after a cancel, one child completing must not make the others miss it;
  // here with the others still queued behind the limit when the cancel comes.
  ThreadPool pool(4);
  auto parent = ctxpp::with_cancel(background());
  TaskGroup group(parent.ctx, pool);
  group.set_limit(1);
  Gate first_running;
  Gate release_first;
  OpenOnExit guard(release_first);
  std::atomic<int> queued_saw_done{0};
  std::atomic<int> queued_ran{0};
  group.spawn([&] {
    for (int i = 0; i < 3; ++i) {  // deferred: the limit is reached
      group.spawn([&](const Context& ctx) {
        queued_ran.fetch_add(1);
        if (ctx.done() && ctx.err() == ctxpp::errc::canceled) queued_saw_done.fetch_add(1);
      });
    }
    first_running.open();
    (void)release_first.wait();  // completes normally, after the cancel
  });
  ASSERT_TRUE(first_running.wait());
  EXPECT_EQ(queued_ran.load(), 0) << "the limit of 1 let a queued task start";
  parent.cancel();
  release_first.open();
  EXPECT_FALSE(group.wait());
  EXPECT_EQ(queued_ran.load(), 3);
  EXPECT_EQ(queued_saw_done.load(), 3) << "a child queued at the cancel started uncancelled";
}

// ---------------------------------------------------------------------------
// The concurrency limit (pitfall 27).

TEST(TaskGroup, SetLimitZeroThrowsInvalidArgument) {
  TaskGroup group(background());
  EXPECT_THROW(group.set_limit(0), std::invalid_argument);
  group.set_limit(1);
  group.set_limit(TaskGroup::kNoLimit);
}

TEST(TaskGroup, NeverRunsMoreThanTheLimitAtOnce) {
  constexpr int kLimit = 3;
  const int tasks = scaled(60);
  ThreadPool pool(8);
  TaskGroup group(background(), pool);
  group.set_limit(kLimit);
  Concurrency concurrency;
  Gate release;
  OpenOnExit guard(release);
  std::atomic<int> ran{0};
  auto task = [&] {
    concurrency.enter();
    (void)release.wait();
    std::this_thread::yield();
    concurrency.leave();
    ran.fetch_add(1);
  };
  for (int i = 0; i < kLimit; ++i) group.spawn(task);
  ASSERT_TRUE(eventually([&] { return concurrency.running() == kLimit; }))
      << "the first tasks did not all start";
  // The rest are spawned from another thread: spawn blocks at the limit.
  std::thread spawner([&] {
    for (int i = kLimit; i < tasks; ++i) group.spawn(task);
  });
  release.open();
  spawner.join();
  EXPECT_FALSE(group.wait());
  EXPECT_EQ(ran.load(), tasks);
  EXPECT_EQ(concurrency.max(), kLimit) << "more tasks than the limit ran at once";
}

TEST(TaskGroup, SpawnFromOutsideBlocksAtTheLimitUntilATaskEnds) {
  ThreadPool pool(4);
  TaskGroup group(background(), pool);
  Gate release;
  OpenOnExit guard(release);
  ASSERT_TRUE(hold_the_only_slot(group, release));
  Gate spawned;
  std::atomic<bool> second_ran{false};
  std::thread spawner([&] {
    group.spawn([&] { second_ran.store(true); });
    spawned.open();
  });
  // A detection window, not synchronisation: spawn must still be blocked.
  EXPECT_FALSE(spawned.wait(20ms)) << "spawn returned while the limit was reached";
  release.open();
  EXPECT_TRUE(spawned.wait()) << "spawn stayed blocked after a slot freed";
  spawner.join();
  EXPECT_FALSE(group.wait());
  EXPECT_TRUE(second_ran.load());
}

TEST(TaskGroup, TrySpawnReturnsFalseAtTheLimitWithoutBlockingOrRunning) {
  ThreadPool pool(4);
  TaskGroup group(background(), pool);
  Gate release;
  OpenOnExit guard(release);
  ASSERT_TRUE(hold_the_only_slot(group, release));
  std::atomic<int> refused_ran{0};
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(group.try_spawn([&] { refused_ran.fetch_add(1); }));
  }
  EXPECT_EQ(group.active(), 1U);
  release.open();
  ASSERT_TRUE(eventually([&] { return group.active() == 0; }));
  std::atomic<bool> accepted_ran{false};
  EXPECT_TRUE(group.try_spawn([&] { accepted_ran.store(true); })) << "a slot is free again";
  EXPECT_FALSE(group.wait());
  EXPECT_TRUE(accepted_ran.load());
  EXPECT_EQ(refused_ran.load(), 0) << "a refused function must never run";
}

TEST(TaskGroup, TrySpawnFromInsideATaskAtTheLimitReturnsFalse) {
  TaskGroup group(background());
  group.set_limit(1);
  std::atomic<int> accepted{0};
  std::atomic<int> refused{0};
  group.spawn([&] {
    for (int i = 0; i < 5; ++i) {
      if (group.try_spawn([] {})) {
        accepted.fetch_add(1);
      } else {
        refused.fetch_add(1);
      }
    }
  });
  EXPECT_FALSE(group.wait());
  EXPECT_EQ(accepted.load(), 0);
  EXPECT_EQ(refused.load(), 5);
}

TEST(TaskGroup, SpawnFromInsideATaskAtTheLimitDoesNotDeadlockAndRunsBeforeWaitReturns) {
  // golang/go#70284: a task spawning siblings at the limit must not wait for a slot
  // that it holds itself.
  for (const std::size_t limit : {std::size_t{1}, std::size_t{2}}) {
    bounded("spawn from inside a task at the limit", [&] {
      ThreadPool pool(4);
      TaskGroup group(background(), pool);
      group.set_limit(limit);
      Concurrency concurrency;
      std::atomic<int> ran{0};
      std::function<void(int)> spawn_tree = [&](int depth) {
        group.spawn([&, depth] {
          concurrency.enter();
          ran.fetch_add(1);
          if (depth < 3) {
            for (int i = 0; i < 3; ++i) spawn_tree(depth + 1);
          }
          concurrency.leave();
        });
      };
      spawn_tree(0);
      EXPECT_FALSE(group.wait());
      EXPECT_EQ(ran.load(), 1 + 3 + 9 + 27) << "limit " << limit;
      EXPECT_LE(concurrency.max(), static_cast<int>(limit)) << "limit " << limit;
    });
  }
}

TEST(TaskGroup, RaisingTheLimitStartsDeferredTasksAtOnce) {
  ThreadPool pool(4);
  TaskGroup group(background(), pool);
  group.set_limit(1);
  Gate deferred_ran;
  Gate release;
  Gate spawned_inside;
  OpenOnExit guard(release);
  group.spawn([&] {
    group.spawn([&] { deferred_ran.open(); });  // over the limit: deferred
    spawned_inside.open();
    (void)release.wait();
  });
  ASSERT_TRUE(spawned_inside.wait());
  EXPECT_FALSE(deferred_ran.wait(20ms)) << "a deferred task started over the limit";
  group.set_limit(2);
  EXPECT_TRUE(deferred_ran.wait()) << "set_limit did not start the deferred task";
  release.open();
  EXPECT_FALSE(group.wait());
}

TEST(TaskGroup, SpawnConcurrentWithWaitFromAnotherThreadIsJoined) {
  bounded("spawn concurrent with wait()", [] {
    ThreadPool pool(4);
    TaskGroup group(background(), pool);
    group.set_limit(2);
    Gate first_started;
    Gate release_first;
    OpenOnExit guard(release_first);
    group.spawn([&] {
      first_started.open();
      (void)release_first.wait();
    });
    ASSERT_TRUE(first_started.wait());
    std::atomic<int> late_ran{0};
    std::atomic<bool> all_late_ran_at_wait_return{false};
    Gate waiter_started;
    std::thread waiter([&] {
      waiter_started.open();
      EXPECT_FALSE(group.wait());
      all_late_ran_at_wait_return.store(late_ran.load() == 10);
    });
    ASSERT_TRUE(waiter_started.wait());
    // Spawned while the first task still holds its slot, so wait() cannot return
    // in between; with a limit of 2 each spawn blocks until the previous one ended.
    std::thread spawner([&] {
      for (int i = 0; i < 10; ++i) group.spawn([&] { late_ran.fetch_add(1); });
    });
    spawner.join();
    release_first.open();
    waiter.join();
    EXPECT_TRUE(all_late_ran_at_wait_return.load())
        << "wait() returned before tasks spawned during it had ended";
  });
}

TEST(TaskGroup, WaitFromInsideATaskThrowsLogicError) {
  TaskGroup group(background());
  std::atomic<bool> threw_logic_error{false};
  group.spawn([&] {
    try {
      (void)group.wait();
    } catch (const std::logic_error&) {
      threw_logic_error.store(true);
    }
  });
  EXPECT_FALSE(group.wait()) << "the task caught the exception: it succeeded";
  EXPECT_TRUE(threw_logic_error.load()) << "wait() from a task of the group must throw";
}

// ---------------------------------------------------------------------------
// Destruction without wait() (pitfall 29).

TEST(TaskGroup, DestructorWithoutWaitCancelsJoinsAndReportsTheCreationSite) {
  CaptureUnjoined capture;
  ThreadPool pool(2);
  std::error_code seen_cause;
  std::atomic<bool> task_ended{false};
  Gate started;
  std::uint_least32_t created_line = 0;
  {
    created_line = __LINE__ + 1;
    TaskGroup group(background(), pool);
    group.spawn([&](const Context& ctx) {
      started.open();
      EXPECT_TRUE(ctx.wait_for(kLongBound)) << "the destructor did not cancel the task";
      seen_cause = ctx.cause();
      task_ended.store(true);
    });
    ASSERT_TRUE(started.wait());
  }
  EXPECT_TRUE(task_ended.load()) << "the destructor returned before the task ended";
  EXPECT_EQ(seen_cause, ctxpp::failure::not_joined) << "got " << describe(seen_cause);
  const std::vector<ctxpp::UnjoinedGroup> reports = capture.reports();
  ASSERT_EQ(reports.size(), 1U) << "the unjoined-group handler must be called once";
  EXPECT_EQ(reports[0].created_at.line(), created_line);
  EXPECT_TRUE(ends_with(reports[0].created_at.file_name(), "group_test.cpp"))
      << reports[0].created_at.file_name();
  EXPECT_EQ(reports[0].tasks_joined, 1U);
  EXPECT_TRUE(reports[0].failures.empty());
}

TEST(TaskGroup, DestructorReportsFailuresNobodyCollected) {
  CaptureUnjoined capture;
  {
    TaskGroup group(background());
    group.spawn([] { return io_error(); });
    ASSERT_TRUE(eventually([&] { return group.active() == 0; }));
  }
  const std::vector<ctxpp::UnjoinedGroup> reports = capture.reports();
  ASSERT_EQ(reports.size(), 1U);
  EXPECT_EQ(reports[0].tasks_joined, 0U) << "the task had ended before the destructor";
  ASSERT_EQ(reports[0].failures.size(), 1U);
  EXPECT_EQ(reports[0].failures[0].code, io_error());
}

TEST(TaskGroup, DestructorAfterWaitDoesNotCallTheHandler) {
  CaptureUnjoined capture;
  {
    TaskGroup group(background());
    group.spawn([] { return io_error(); });
    EXPECT_EQ(group.wait(), io_error());
  }
  { TaskGroup never_used(background()); }
  EXPECT_TRUE(capture.reports().empty());
}

TEST(TaskGroup, SpawnAfterWaitMustBeJoinedAgain) {
  CaptureUnjoined capture;
  std::atomic<bool> late_ran{false};
  {
    TaskGroup group(background());
    EXPECT_FALSE(group.wait());
    group.spawn([&](const Context& ctx) { late_ran.store(ctx.done()); });
  }
  EXPECT_TRUE(late_ran.load()) << "the task runs (on a done context) and is joined";
  EXPECT_EQ(capture.reports().size(), 1U) << "tasks spawned after the last wait() are unjoined";
}

TEST(TaskGroup, DestructorDuringUnwindingJoinsWithoutCallingTheHandler) {
  CaptureUnjoined capture;
  ThreadPool pool(2);
  std::atomic<bool> task_ended{false};
  std::error_code seen_cause;
  Gate started;
  try {
    TaskGroup group(background(), pool);
    group.spawn([&](const Context& ctx) {
      started.open();
      EXPECT_TRUE(ctx.wait_for(kLongBound));
      seen_cause = ctx.cause();
      task_ended.store(true);
    });
    ASSERT_TRUE(started.wait());
    throw Boom(6);
  } catch (const Boom&) {
    EXPECT_TRUE(task_ended.load()) << "unwinding destroyed the group before its task ended";
  }
  EXPECT_EQ(seen_cause, ctxpp::failure::not_joined);
  EXPECT_TRUE(capture.reports().empty()) << "unwinding is expected: no report";
}

TEST(TaskGroup, GroupDestroyedDuringAFailureJoinsEveryTask) {
  // Tasks keep writing into memory owned by this scope well after the cancel; the
  // memory is freed right after the destructor (ASan reports a later write, TSan an
  // unordered one).
  constexpr int kTasks = 8;
  CaptureUnjoined capture;
  ThreadPool pool(kTasks + 2);
  bounded("destructor during a failure", [&] {
    auto written = std::make_unique<int[]>(kTasks);
    Gate late;
    Context group_ctx;
    std::thread releaser;
    try {
      TaskGroup group(background(), pool);
      group_ctx = group.context();
      // Opens `late` a little after the group's context ended, while the
      // destructor is joining.
      releaser = std::thread([&late, ctx = group_ctx] {
        if (ctx.wait_for(kLongBound)) {
          for (int i = 0; i < 1000; ++i) std::this_thread::yield();
        }
        late.open();
      });
      std::latch started(kTasks);
      for (int i = 0; i < kTasks; ++i) {
        group.spawn(
            [&started, &late, slot = &written[static_cast<std::size_t>(i)]](const Context& ctx) {
              started.count_down();
              EXPECT_TRUE(ctx.wait_for(kLongBound));
              (void)late.wait();
              *slot = 1;
            });
      }
      started.wait();
      group.spawn([] { return io_error(); });
      throw Boom(7);  // the scope fails; the group is destroyed while unwinding
    } catch (const Boom&) {
      for (int i = 0; i < kTasks; ++i) {
        EXPECT_EQ(written[static_cast<std::size_t>(i)], 1) << "task " << i << " still running";
      }
    }
    written.reset();
    releaser.join();
  });
  EXPECT_TRUE(capture.reports().empty());
}

// ---------------------------------------------------------------------------
// What a task owns is released before wait() returns.

// Releasing takes a moment (yields), so a release that ran after the group heard
// of the task's end would still be under way when wait() returns.
void slow_release(int* flag) noexcept {
  for (int i = 0; i < 200; ++i) std::this_thread::yield();
  *flag = 1;
}

struct Release {
  void operator()(int* flag) const noexcept { slow_release(flag); }
};
using Owned = std::unique_ptr<int, Release>;

// Sets *flag when it goes out of scope, like a `defer`.
class Defer {
 public:
  explicit Defer(int* flag) : flag_(flag) {}
  Defer(const Defer&) = delete;
  Defer& operator=(const Defer&) = delete;
  ~Defer() { slow_release(flag_); }

 private:
  int* flag_;
};

TEST(TaskGroup, ResourcesOwnedByATaskAreReleasedBeforeWaitReturnsHoweverItEnds) {
  // Plain ints: the writes come from pool threads, and the reads after wait() must
  // be ordered after them (TSan checks it) and see them.
  enum Way { kReturn, kError, kThrow, kCancelled, kCoroutine, kCoroutineThrow, kWays };
  const int rounds = scaled(50);
  ThreadPool pool(4);
  for (int round = 0; round < rounds; ++round) {
    std::vector<int> captured(kWays, 0);
    std::vector<int> deferred(kWays, 0);
    TaskGroup group(background(), pool);
    group.spawn(
        [owned = Owned(&captured[kReturn]), flag = &deferred[kReturn]] { Defer defer(flag); });
    group.spawn([owned = Owned(&captured[kError]), flag = &deferred[kError]] {
      Defer defer(flag);
      return io_error();
    });
    group.spawn([owned = Owned(&captured[kThrow]), flag = &deferred[kThrow]] {
      Defer defer(flag);
      throw Boom(8);
    });
    group.spawn(
        [owned = Owned(&captured[kCancelled]), flag = &deferred[kCancelled]](const Context& ctx) {
          Defer defer(flag);
          EXPECT_TRUE(ctx.wait_for(kLongBound));
          return ctx.err();
        });
    group.spawn(
        [&pool, owned = Owned(&captured[kCoroutine]), flag = &deferred[kCoroutine]]() -> Task<> {
          Defer defer(flag);
          co_await ctxpp::resume_on(pool);
          EXPECT_NE(owned.get(), nullptr) << "a coroutine lambda's captures died while it ran";
        });
    group.spawn([&pool, owned = Owned(&captured[kCoroutineThrow]),
                 flag = &deferred[kCoroutineThrow]](const Context& ctx) -> Task<std::error_code> {
      Defer defer(flag);
      co_await ctxpp::cancelled(ctx);
      co_await ctxpp::resume_on(pool);
      throw Boom(9);
    });
    try {
      (void)group.wait();
    } catch (const Boom&) {
      // Whichever failure came first; the point is what was released.
    }
    for (int way = 0; way < kWays; ++way) {
      ASSERT_EQ(captured[static_cast<std::size_t>(way)], 1)
          << "round " << round << ": captures of task " << way << " outlived wait()";
      ASSERT_EQ(deferred[static_cast<std::size_t>(way)], 1)
          << "round " << round << ": a local of task " << way << " outlived wait()";
    }
  }
}

TEST(TaskGroup, ResourcesOwnedByATaskAreReleasedBeforeTheDestructorReturns) {
  CaptureUnjoined capture;
  ThreadPool pool(2);
  int captured = 0;
  int deferred = 0;
  Gate started;
  {
    TaskGroup group(background(), pool);
    group.spawn([&started, owned = Owned(&captured), flag = &deferred](const Context& ctx) {
      Defer defer(flag);
      started.open();
      EXPECT_TRUE(ctx.wait_for(kLongBound));
    });
    ASSERT_TRUE(started.wait()) << "the task did not start";  // on a pool thread, not helped
  }
  EXPECT_EQ(captured, 1);
  EXPECT_EQ(deferred, 1);
}

TEST(TaskGroup, RefusedTrySpawnReleasesTheFunctionAtOnce) {
  TaskGroup group(background());
  Gate release;
  OpenOnExit guard(release);
  ASSERT_TRUE(hold_the_only_slot(group, release));
  int released = 0;
  EXPECT_FALSE(group.try_spawn([owned = Owned(&released)] {}));
  EXPECT_EQ(released, 1) << "a refused function's captures must not be kept";
  release.open();
  EXPECT_FALSE(group.wait());
}

// ---------------------------------------------------------------------------
// Executors.

TEST(TaskGroup, InlineExecutorRunsEachTaskInsideSpawn) {
  InlineExecutor inline_executor;
  TaskGroup group(background(), inline_executor);
  std::thread::id ran_on;
  bool ran = false;
  group.spawn([&] {
    ran_on = std::this_thread::get_id();
    ran = true;
  });
  EXPECT_TRUE(ran) << "the task must have run before spawn returned";
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_EQ(group.active(), 0U);
  group.spawn([] { return io_error(); });
  EXPECT_TRUE(group.context().done()) << "the failure cancelled the context inside spawn";
  EXPECT_EQ(group.wait(), io_error());
}

TEST(TaskGroup, InlineExecutorWithALimitRunsTasksSpawnedFromInside) {
  InlineExecutor inline_executor;
  TaskGroup group(background(), inline_executor);
  group.set_limit(1);
  std::vector<int> order;
  group.spawn([&] {
    order.push_back(1);
    group.spawn([&] { order.push_back(3); });  // deferred, runs when this one ends
    order.push_back(2);
  });
  EXPECT_FALSE(group.wait());
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(TaskGroup, TasksRunOnTheGivenExecutorAndTheDefaultOneOtherwise) {
  {
    Gate ran;
    std::thread::id ran_on;
    TaskGroup group(background());  // default_executor()
    group.spawn([&] {
      ran_on = std::this_thread::get_id();
      ran.open();
    });
    ASSERT_TRUE(ran.wait()) << "the default executor did not run the task";
    EXPECT_FALSE(group.wait());
    EXPECT_NE(ran_on, std::this_thread::get_id());
  }
  {
    ThreadPool pool(1, std::chrono::hours(1));
    std::thread::id pool_thread;
    Gate probed;
    pool.execute([&] {
      pool_thread = std::this_thread::get_id();
      probed.open();
    });
    ASSERT_TRUE(probed.wait());
    Gate ran;
    std::thread::id ran_on;
    TaskGroup group(background(), pool);
    group.spawn([&] {
      ran_on = std::this_thread::get_id();
      ran.open();
    });
    ASSERT_TRUE(ran.wait());
    EXPECT_FALSE(group.wait());
    EXPECT_EQ(ran_on, pool_thread);
  }
}

TEST(TaskGroup, NestedGroupsOnASingleThreadPoolComplete) {
  bounded("nested groups on ThreadPool(1)", [] {
    ThreadPool pool(1);
    TaskGroup outer(background(), pool);
    std::atomic<int> inner_ran{0};
    for (int i = 0; i < 4; ++i) {
      outer.spawn([&](const Context& ctx) {
        TaskGroup inner(ctx, pool);
        for (int j = 0; j < 4; ++j) {
          inner.spawn([&](const Context& inner_ctx) {
            TaskGroup innermost(inner_ctx, pool);
            innermost.spawn([&] { inner_ran.fetch_add(1); });
            return innermost.wait();
          });
        }
        return inner.wait();  // the only pool thread may be this one: wait() helps
      });
    }
    EXPECT_FALSE(outer.wait());
    EXPECT_EQ(inner_ran.load(), 16);
  });
}

TEST(TaskGroup, NestedGroupWithALimitOnASingleThreadPoolCompletes) {
  // The outer task holds the only pool thread while it spawns into an inner group
  // at its limit: the inner task it waits for is queued behind it on that thread.
  // spawn() has to make progress the way wait() does (run a queued task itself).
  ThreadPool pool(1);
  TaskGroup outer(background(), pool);
  Gate outer_running;
  Gate inner_published;
  Gate second_spawned;
  Gate rescue_done;
  OpenOnExit guard(rescue_done);
  std::atomic<TaskGroup*> inner_group{nullptr};
  std::atomic<int> inner_ran{0};
  outer.spawn([&](const Context& ctx) {
    outer_running.open();
    TaskGroup inner(ctx, pool);
    inner.set_limit(1);
    inner_group.store(&inner);
    inner_published.open();
    inner.spawn([&] { inner_ran.fetch_add(1); });
    inner.spawn([&] { inner_ran.fetch_add(1); });  // at the limit
    second_spawned.open();
    (void)rescue_done.wait();  // keeps `inner` alive while the test may touch it
    return inner.wait();
  });
  ASSERT_TRUE(outer_running.wait());
  ASSERT_TRUE(inner_published.wait());
  const bool progressed = second_spawned.wait(kRescueBound);
  if (!progressed) {
    ADD_FAILURE() << "deadlock: spawn() at the limit on the pool's only thread waits for a "
                     "task queued behind it on that same thread; threads:"
                  << ctxpp_test::describe_threads();
    inner_group.load()->set_limit(TaskGroup::kNoLimit);  // undo the deadlock
    EXPECT_TRUE(second_spawned.wait()) << "raising the limit did not unblock spawn";
  }
  rescue_done.open();
  EXPECT_FALSE(outer.wait());
  EXPECT_EQ(inner_ran.load(), 2);
}

TEST(TaskGroup, HundredGroupsOfTwentyTasksNeverExceedThePoolAndLeaveNoThread) {
  ThreadPool pool(4, 50ms);
  std::atomic<std::size_t> max_threads{0};
  auto note_threads = [&] {
    const std::size_t now = pool.thread_count();
    std::size_t seen = max_threads.load();
    while (now > seen && !max_threads.compare_exchange_weak(seen, now)) {
    }
  };
  const int groups = scaled(100);
  for (int g = 0; g < groups; ++g) {
    TaskGroup group(background(), pool);
    std::atomic<int> ran{0};
    for (int t = 0; t < 20; ++t) {
      group.spawn([&] {
        note_threads();
        ran.fetch_add(1);
      });
    }
    ASSERT_FALSE(group.wait());
    ASSERT_EQ(ran.load(), 20);
    note_threads();
  }
  EXPECT_LE(max_threads.load(), 4U);
  EXPECT_TRUE(eventually([&] { return pool.thread_count() == 0; }))
      << "idle pool threads did not exit; still " << pool.thread_count();
}

TEST(TaskGroup, ActiveCountsTasksNotYetEnded) {
  ThreadPool pool(4);
  TaskGroup group(background(), pool);
  EXPECT_EQ(group.active(), 0U);
  Gate release;
  OpenOnExit guard(release);
  std::latch started(3);
  for (int i = 0; i < 3; ++i) {
    group.spawn([&] {
      started.count_down();
      (void)release.wait();
    });
  }
  started.wait();
  EXPECT_EQ(group.active(), 3U);
  release.open();
  EXPECT_FALSE(group.wait());
  EXPECT_EQ(group.active(), 0U);
}

// ---------------------------------------------------------------------------
// Coroutine tasks.

TEST(TaskGroup, CoroutineTasksAwaitingCancelledEndWhenASiblingFails) {
  constexpr int kWaiters = 5;
  ThreadPool pool(2);
  TaskGroup group(background(), pool);
  std::atomic<int> resumed_canceled{0};
  for (int i = 0; i < kWaiters; ++i) {
    group.spawn([&](const Context& ctx) -> Task<> {
      auto bounded_ctx = ctxpp::with_timeout(ctx, kLongBound);
      const std::error_code ec = co_await ctxpp::cancelled(bounded_ctx.ctx);
      if (ec == ctxpp::errc::canceled) resumed_canceled.fetch_add(1);
    });
  }
  group.spawn([&](const Context& ctx) -> Task<std::error_code> {
    if (std::error_code ec = co_await ctxpp::sleep_for(ctx, 1ms, pool)) co_return ec;
    co_return io_error();
  });
  EXPECT_EQ(group.wait(), io_error());
  EXPECT_EQ(resumed_canceled.load(), kWaiters);
}

TEST(TaskGroup, CoroutineSleepForIsCutShortBySiblingFailure) {
  ThreadPool pool(2);
  TaskGroup group(background(), pool);
  std::error_code slept;
  group.spawn([&](const Context& ctx) -> Task<std::error_code> {
    slept = co_await ctxpp::sleep_for(ctx, std::chrono::hours(1), pool);
    co_return slept;
  });
  group.spawn([]() -> Task<> {
    throw Boom(10);
    co_return;
  });
  EXPECT_THROW((void)group.wait(), Boom);
  EXPECT_EQ(slept, ctxpp::errc::canceled);
  const std::vector<TaskFailure> failures = group.failures();
  ASSERT_EQ(failures.size(), 2U);
  EXPECT_EQ(failures[0].code, ctxpp::failure::exception);
  EXPECT_EQ(failures[1].code, ctxpp::errc::canceled);
}

Task<std::error_code> join_a_failing_group(ThreadPool& pool, std::atomic<int>& cancelled_siblings) {
  TaskGroup group(background(), pool);
  for (int i = 0; i < 3; ++i) {
    group.spawn([&](const Context& ctx) -> Task<std::error_code> {
      auto bounded_ctx = ctxpp::with_timeout(ctx, kLongBound);
      co_await ctxpp::cancelled(bounded_ctx.ctx);
      co_await ctxpp::resume_on(pool);
      if (ctx.err() == ctxpp::errc::canceled) cancelled_siblings.fetch_add(1);
      co_return ctx.err();
    });
  }
  group.spawn([&](const Context& ctx) -> Task<std::error_code> {
    (void)co_await ctxpp::sleep_for(ctx, 1ms, pool);
    co_return io_error();
  });
  const std::error_code ec = co_await group.join();
  EXPECT_TRUE(group.context().done());
  EXPECT_EQ(group.failures().size(), 4U);
  co_return ec;
}

TEST(TaskGroup, CoAwaitJoinFromACoroutineReturnsTheFirstFailure) {
  ThreadPool pool(2);
  std::atomic<int> cancelled_siblings{0};
  EXPECT_EQ(ctxpp::sync_wait(join_a_failing_group(pool, cancelled_siblings)), io_error());
  EXPECT_EQ(cancelled_siblings.load(), 3);
}

Task<int> join_a_throwing_group(ThreadPool& pool) {
  TaskGroup group(background(), pool);
  group.spawn([&]() -> Task<> {
    co_await ctxpp::resume_on(pool);
    throw Boom(11);
  });
  try {
    (void)co_await group.join();
  } catch (const Boom& e) {
    co_return e.id;
  }
  co_return 0;
}

TEST(TaskGroup, CoAwaitJoinRethrowsTheFirstException) {
  ThreadPool pool(2);
  EXPECT_EQ(ctxpp::sync_wait(join_a_throwing_group(pool)), 11);
}

Task<std::error_code> join_an_idle_group() {
  TaskGroup group(background());
  co_return co_await group.join();
}

TEST(TaskGroup, CoAwaitJoinOnAGroupWithNoTaskResumesAtOnce) {
  EXPECT_FALSE(ctxpp::sync_wait(join_an_idle_group()));
}

// Wraps the join awaiter and opens `gate` once the coroutine is suspended in it:
// the task that the join waits for is held on that gate, so the join really
// suspends and is resumed by the task's thread.
template <class Inner>
struct OpenWhenSuspended {
  Inner inner;
  Gate* gate;
  bool await_ready() { return inner.await_ready(); }
  bool await_suspend(std::coroutine_handle<> handle) {
    Gate* const to_open = gate;
    const bool suspended = inner.await_suspend(handle);
    if (suspended) to_open->open();  // no member is touched after this
    return suspended;
  }
  decltype(auto) await_resume() { return inner.await_resume(); }
};

struct JoinThenWait {
  bool suspended = false;
  std::error_code joined;
  std::error_code waited;
  bool wait_threw_logic_error = false;
};

Task<JoinThenWait> join_then_wait(ThreadPool& pool) {
  JoinThenWait out;
  TaskGroup group(background(), pool);
  Gate release;
  group.spawn([&] {
    (void)release.wait();
    return io_error();
  });
  const std::thread::id before = std::this_thread::get_id();
  out.joined = co_await OpenWhenSuspended<decltype(group.join())>{group.join(), &release};
  out.suspended = std::this_thread::get_id() != before;
  try {
    out.waited = group.wait();  // "later calls return the same first failure"
  } catch (const std::logic_error&) {
    out.wait_threw_logic_error = true;
  }
  co_return out;
}

TEST(TaskGroup, WaitAfterCoAwaitJoinReturnsTheSameFailure) {
  ThreadPool pool(2);
  JoinThenWait out;
  bounded("wait() after co_await join()", [&] { out = ctxpp::sync_wait(join_then_wait(pool)); });
  EXPECT_TRUE(out.suspended) << "the join did not suspend; the test did not exercise it";
  EXPECT_EQ(out.joined, io_error());
  EXPECT_FALSE(out.wait_threw_logic_error)
      << "the coroutine resumed from join() is not one of the group's tasks, yet wait() "
         "refused it: the resuming thread still carries the group's task marker";
  if (!out.wait_threw_logic_error) {
    EXPECT_EQ(out.waited, io_error());
  }
}

TEST(TaskGroup, CoroutineTaskAfterResumingElsewhereUsesTrySpawnAtTheLimitWithoutBlocking) {
  // The "own task" mark is per thread and cannot follow a coroutine that resumed
  // elsewhere; the header's documented way out is try_spawn, which never blocks
  // and leaves the function with the caller for a retry once the slot is free.
  ThreadPool pool(2);
  TaskGroup group(background(), pool);
  group.set_limit(1);
  Gate refused;
  std::atomic<bool> sibling_ran{false};
  group.spawn([&]() -> Task<> {
    co_await ctxpp::resume_on(pool);
    auto sibling = [&] { sibling_ran = true; };
    if (!group.try_spawn(sibling)) refused.open();  // at the limit: refused, not blocked
  });
  EXPECT_TRUE(refused.wait()) << "try_spawn at the limit must refuse at once";
  EXPECT_FALSE(group.wait());
  EXPECT_FALSE(sibling_ran.load());
  EXPECT_TRUE(group.try_spawn([&] { sibling_ran = true; })) << "the slot is free again";
  EXPECT_FALSE(group.wait());
  EXPECT_TRUE(sibling_ran.load());
}

TEST(TaskGroup, CoroutineLambdaCapturesLiveUntilTheCoroutineEnds) {
  ThreadPool pool(2);
  TaskGroup group(background(), pool);
  std::string seen;
  group.spawn(
      [&pool, &seen, text = std::string(200, 'z'), boxed = std::make_unique<int>(12)]() -> Task<> {
        co_await ctxpp::resume_on(pool);
        co_await ctxpp::resume_on(pool);
        seen = text + std::to_string(*boxed);
      });
  EXPECT_FALSE(group.wait());
  EXPECT_EQ(seen, std::string(200, 'z') + "12");
}

}  // namespace
