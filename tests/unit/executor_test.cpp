// Tests of ctxpp/executor.hpp: the Executor interface, the elastic bounded
// ThreadPool, the shared default executor and InlineExecutor.
#include "ctxpp/executor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::InlineExecutor;
using ctxpp::ThreadPool;
using ctxpp_test::Concurrency;
using ctxpp_test::eventually;
using ctxpp_test::Gate;
using ctxpp_test::OpenOnExit;
using ctxpp_test::run_bounded;

// Starts on pool a task that blocks until release opens, and returns once it runs
// (false if it never started): on a one-thread pool, what comes next queues behind it.
bool start_blocker(ThreadPool& pool, Gate& release) {
  auto started = std::make_shared<Gate>();  // the task may outlive a failed wait
  pool.execute([started, &release] {
    started->open();
    (void)release.wait();
  });
  return started->wait();
}

// ---------------------------------------------------------------------------
// Construction.

TEST(ThreadPool, ZeroMaxThreadsThrowsInvalidArgument) {
  EXPECT_THROW(ThreadPool(0), std::invalid_argument);
  EXPECT_THROW(ThreadPool(0, 1s), std::invalid_argument);
}

TEST(ThreadPool, NegativeIdleTimeoutThrowsInvalidArgument) {
  EXPECT_THROW(ThreadPool(1, -1ms), std::invalid_argument);
  EXPECT_THROW(ThreadPool(4, std::chrono::nanoseconds(-1)), std::invalid_argument);
}

TEST(ThreadPool, ZeroIdleTimeoutIsAcceptedAndStillRunsTasks) {
  ThreadPool pool(2, 0ms);
  Gate ran;
  pool.execute([&] { ran.open(); });
  EXPECT_TRUE(ran.wait()) << "a pool whose threads never idle must still run its tasks";
}

TEST(ThreadPool, ReportsItsBound) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.max_threads(), 3U);
}

// ---------------------------------------------------------------------------
// Threads: on demand, bounded, and gone when idle.

TEST(ThreadPool, StartsNoThreadUntilATaskArrives) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.thread_count(), 0U);
  EXPECT_EQ(pool.queued(), 0U);
  Gate ran;
  std::thread::id ran_on;
  pool.execute([&] {
    ran_on = std::this_thread::get_id();
    ran.open();
  });
  ASSERT_TRUE(ran.wait()) << "the task did not run";
  EXPECT_NE(ran_on, std::this_thread::get_id()) << "a pool never runs a task inside execute()";
  EXPECT_GE(pool.thread_count(), 1U);
  EXPECT_LE(pool.thread_count(), 4U);
}

TEST(ThreadPool, StartsAThreadPerBlockedTaskUpToTheBoundThenQueues) {
  Gate release;
  ThreadPool pool(2);
  OpenOnExit guard(release);
  std::atomic<int> started{0};
  auto blocker = [&] {
    started.fetch_add(1);
    (void)release.wait();
  };
  pool.execute(blocker);
  ASSERT_TRUE(eventually([&] { return started.load() == 1; })) << "first task did not start";
  EXPECT_EQ(pool.thread_count(), 1U);
  pool.execute(blocker);
  ASSERT_TRUE(eventually([&] { return started.load() == 2; })) << "second task did not start";
  EXPECT_EQ(pool.thread_count(), 2U) << "a second thread starts when no thread is idle";
  pool.execute(blocker);
  EXPECT_EQ(pool.thread_count(), 2U) << "never more than max_threads";
  EXPECT_EQ(pool.queued(), 1U) << "the third task waits in the queue";
  release.open();
  EXPECT_TRUE(eventually([&] { return started.load() == 3 && pool.queued() == 0; }))
      << "the queued task never ran";
}

TEST(ThreadPool, NeverRunsMoreThanMaxThreadsTasksAtOnce) {
  constexpr int kMax = 3;
  constexpr int kTasks = 20;
  Gate release;
  ThreadPool pool(kMax);
  OpenOnExit guard(release);
  Concurrency concurrency;
  std::atomic<int> finished{0};
  for (int i = 0; i < kTasks; ++i) {
    pool.execute([&] {
      concurrency.enter();
      (void)release.wait();
      concurrency.leave();
      finished.fetch_add(1);
    });
    EXPECT_LE(pool.thread_count(), static_cast<std::size_t>(kMax));
  }
  ASSERT_TRUE(eventually([&] { return concurrency.running() == kMax; }))
      << "the pool did not start max_threads threads for blocked tasks";
  EXPECT_EQ(pool.thread_count(), static_cast<std::size_t>(kMax));
  EXPECT_EQ(pool.queued(), static_cast<std::size_t>(kTasks - kMax));
  release.open();
  ASSERT_TRUE(eventually([&] { return finished.load() == kTasks; })) << "not every task ran";
  EXPECT_EQ(concurrency.max(), kMax);
  EXPECT_LE(pool.thread_count(), static_cast<std::size_t>(kMax));
}

TEST(ThreadPool, IdleThreadsExitAfterTheIdleTimeout) {
  ThreadPool pool(3, 20ms);
  Gate release;
  OpenOnExit guard(release);
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  for (int i = 0; i < 3; ++i) {
    pool.execute([&] {
      started.fetch_add(1);
      (void)release.wait();
      finished.fetch_add(1);
    });
  }
  ASSERT_TRUE(eventually([&] { return started.load() == 3; }));
  EXPECT_EQ(pool.thread_count(), 3U);
  release.open();
  ASSERT_TRUE(eventually([&] { return finished.load() == 3; }));
  EXPECT_TRUE(eventually([&] { return pool.thread_count() == 0; }))
      << "idle threads did not exit; still " << pool.thread_count();
  // The pool still works afterwards: a thread starts again on demand.
  Gate ran;
  pool.execute([&] { ran.open(); });
  EXPECT_TRUE(ran.wait()) << "a pool whose threads all exited must start a new one";
  EXPECT_TRUE(eventually([&] { return pool.thread_count() == 0; }));
}

TEST(ThreadPool, QueuedCountsTasksAcceptedButNotStarted) {
  Gate release;
  ThreadPool pool(1);
  OpenOnExit guard(release);
  ASSERT_TRUE(start_blocker(pool, release));
  EXPECT_EQ(pool.queued(), 0U) << "a running task is not queued";
  std::atomic<int> ran{0};
  for (int i = 0; i < 5; ++i) pool.execute([&] { ran.fetch_add(1); });
  EXPECT_EQ(pool.queued(), 5U);
  EXPECT_EQ(ran.load(), 0);
  release.open();
  EXPECT_TRUE(eventually([&] { return ran.load() == 5; }));
  EXPECT_EQ(pool.queued(), 0U);
}

// ---------------------------------------------------------------------------
// Order and re-entrancy.

TEST(ThreadPool, RunsTasksInFifoOrderWithOneThread) {
  constexpr int kTasks = 200;
  Gate release;
  Gate last;
  ThreadPool pool(1);
  OpenOnExit guard(release);
  std::mutex mutex;
  std::vector<int> order;
  pool.execute([&] { (void)release.wait(); });  // everything below queues behind it
  for (int i = 0; i < kTasks; ++i) {
    pool.execute([&, i] {
      std::lock_guard lock(mutex);
      order.push_back(i);
      if (i == kTasks - 1) last.open();
    });
  }
  release.open();
  ASSERT_TRUE(last.wait()) << "the queued tasks did not all run";
  std::lock_guard lock(mutex);
  ASSERT_EQ(order.size(), static_cast<std::size_t>(kTasks));
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end())) << "tasks ran out of order";
}

TEST(ThreadPool, ExecuteFromInsideATaskRunsTheNewTask) {
  ThreadPool pool(1);
  Gate inner_ran;
  std::atomic<bool> outer_returned_first{false};
  std::atomic<bool> outer_done{false};
  pool.execute([&] {
    pool.execute([&] {
      outer_returned_first.store(outer_done.load());
      inner_ran.open();
    });
    outer_done.store(true);
  });
  ASSERT_TRUE(inner_ran.wait()) << "a task executed from inside a task never ran";
  EXPECT_TRUE(outer_returned_first.load())
      << "with one thread, the inner task runs after the outer returns (not inline)";
}

TEST(ThreadPool, ExecuteFromManyThreadsRunsEveryTaskOnce) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = ctxpp_test::kTsan ? 200 : 2000;
  ThreadPool pool(3);
  std::vector<std::atomic<int>> runs(kThreads * kPerThread);
  {
    std::vector<std::thread> submitters;
    for (int t = 0; t < kThreads; ++t) {
      submitters.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          const auto index = static_cast<std::size_t>(t * kPerThread + i);
          pool.execute([&runs, index] { runs[index].fetch_add(1); });
        }
      });
    }
    for (auto& thread : submitters) thread.join();
  }
  ASSERT_TRUE(eventually([&] {
    return std::all_of(runs.begin(), runs.end(), [](const auto& r) { return r.load() != 0; });
  })) << "some tasks never ran";
  EXPECT_TRUE(std::all_of(runs.begin(), runs.end(), [](const auto& r) { return r.load() == 1; }))
      << "a task ran more than once";
  EXPECT_LE(pool.thread_count(), 3U);
}

// ---------------------------------------------------------------------------
// Destruction.

TEST(ThreadPool, DestructorRunsEveryQueuedTaskAndJoins) {
  constexpr int kQueued = 100;
  std::atomic<int> ran{0};
  Gate release;
  run_bounded("~ThreadPool with queued tasks", [&] {
    {
      ThreadPool pool(1);
      OpenOnExit guard(release);  // lets the blocker go just before the destructor runs
      ASSERT_TRUE(start_blocker(pool, release));
      for (int i = 0; i < kQueued; ++i) pool.execute([&] { ran.fetch_add(1); });
      ASSERT_EQ(pool.queued(), static_cast<std::size_t>(kQueued));
    }
    EXPECT_EQ(ran.load(), kQueued) << "the destructor returned before running every queued task";
  });
}

TEST(ThreadPool, DestructorRunsTasksQueuedByTasksDuringDestruction) {
  std::atomic<int> ran{0};
  Gate release;
  run_bounded("~ThreadPool with tasks queueing tasks", [&] {
    {
      ThreadPool pool(1);
      OpenOnExit guard(release);
      ASSERT_TRUE(start_blocker(pool, release));
      pool.execute([&] {
        ran.fetch_add(1);
        pool.execute([&] { ran.fetch_add(1); });
      });
    }
    EXPECT_EQ(ran.load(), 2) << "a task queued by a task was dropped";
  });
}

TEST(ThreadPool, DestructorOfAnIdlePoolJoinsItsThreadsPromptly) {
  run_bounded("~ThreadPool of idle threads with a long idle timeout", [] {
    ThreadPool pool(3, std::chrono::hours(1));
    std::atomic<int> ran{0};
    for (int i = 0; i < 3; ++i) pool.execute([&] { ran.fetch_add(1); });
    ASSERT_TRUE(eventually([&] { return ran.load() == 3; }));
    EXPECT_GE(pool.thread_count(), 1U);
    // Leaving the scope must not wait an hour for the idle timeout.
  });
}

// ---------------------------------------------------------------------------
// The default executor and InlineExecutor.

TEST(DefaultExecutor, IsOneSharedInstance) {
  EXPECT_EQ(&ctxpp::default_executor(), &ctxpp::default_executor());
}

TEST(DefaultExecutor, RunsTasksOnAnotherThread) {
  constexpr int kTasks = 50;
  std::atomic<int> ran{0};
  std::atomic<bool> ran_inline{false};
  const std::thread::id caller = std::this_thread::get_id();
  Gate all;
  for (int i = 0; i < kTasks; ++i) {
    ctxpp::default_executor().execute([&] {
      if (std::this_thread::get_id() == caller) ran_inline.store(true);
      if (ran.fetch_add(1) + 1 == kTasks) all.open();
    });
  }
  ASSERT_TRUE(all.wait()) << "the default executor did not run every task";
  EXPECT_FALSE(ran_inline.load());
}

TEST(InlineExecutor, RunsTheTaskInTheCallingThreadBeforeExecuteReturns) {
  InlineExecutor executor;
  std::thread::id ran_on;
  bool ran = false;
  executor.execute([&] {
    ran_on = std::this_thread::get_id();
    ran = true;
  });
  EXPECT_TRUE(ran);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(InlineExecutor, NestedExecuteRunsDepthFirst) {
  InlineExecutor executor;
  std::vector<int> order;
  executor.execute([&] {
    order.push_back(1);
    executor.execute([&] { order.push_back(2); });
    order.push_back(3);
  });
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

}  // namespace
