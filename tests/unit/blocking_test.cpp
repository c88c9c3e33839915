// Tests of ctxpp/blocking.hpp: call_blocking on real blocking calls (a pipe read, a
// sleep, a SQLite query, an uninterruptible lookup), its four endings, the abandoned
// call registry and its cap, and the pool it runs on.
#include "ctxpp/blocking.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#if defined(CTXPP_TEST_HAVE_SQLITE3)
#include <sqlite3.h>
#endif

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::call_blocking;
using ctxpp::CancelFunc;
using ctxpp::clock;
using ctxpp::with_cancel;
using ctxpp_test::eventually;
using ctxpp_test::Gate;
using ctxpp_test::HoldGate;
using ctxpp_test::kLongBound;
using ctxpp_test::process_thread_count;

// How long "returned promptly" may take: far below the blocks it cuts short (which
// last until the test releases them or kLongBound), far above any scheduling delay.
constexpr clock::duration kPromptBound = 5s;

bool no_abandoned_calls() { return ctxpp::abandoned_call_count() == 0; }

// Cancels from a helper thread once the blocking function says it started: the
// test thread is inside call_blocking meanwhile. Records when it cancelled.
class CancelWhenStarted {
 public:
  CancelWhenStarted(std::shared_ptr<Gate> started, CancelFunc cancel)
      : thread_([this, started = std::move(started), cancel = std::move(cancel)] {
          if (!started->wait()) return;  // the test fails on its own assertions
          cancelled_at_.store(clock::now());
          cancel();
        }) {}
  CancelWhenStarted(const CancelWhenStarted&) = delete;
  CancelWhenStarted& operator=(const CancelWhenStarted&) = delete;
  ~CancelWhenStarted() { join(); }

  void join() {
    if (thread_.joinable()) thread_.join();
  }
  // Call after join().
  clock::time_point cancelled_at() const { return cancelled_at_.load(); }

 private:
  std::atomic<clock::time_point> cancelled_at_{clock::time_point::max()};
  std::thread thread_;
};

// Restores the abandon cap a test changed, even when an assertion fails.
class AbandonedLimitRestorer {
 public:
  AbandonedLimitRestorer() = default;
  AbandonedLimitRestorer(const AbandonedLimitRestorer&) = delete;
  AbandonedLimitRestorer& operator=(const AbandonedLimitRestorer&) = delete;
  ~AbandonedLimitRestorer() { ctxpp::set_abandoned_limit(saved_); }

 private:
  std::size_t saved_ = ctxpp::abandoned_limit();
};

// A value that records where and how often it was destroyed; moved-from copies do
// not count.
struct DestructionLog {
  std::atomic<int> destroyed{0};
  std::mutex mutex;
  std::thread::id destroyer;
};

class Address {
 public:
  explicit Address(std::shared_ptr<DestructionLog> log) : log_(std::move(log)) {}
  Address(Address&& other) noexcept : log_(std::move(other.log_)) {}
  Address& operator=(Address&&) = delete;
  ~Address() {
    if (log_ == nullptr) return;
    {
      std::lock_guard lock(log_->mutex);
      log_->destroyer = std::this_thread::get_id();
    }
    log_->destroyed.fetch_add(1);
  }

 private:
  std::shared_ptr<DestructionLog> log_;
};

// A pipe shared by the blocked reader and the interrupt hook.
class Pipe {
 public:
  Pipe() {
    int fds[2] = {-1, -1};
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category());
    read_end_ = fds[0];
    write_end_ = fds[1];
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  ~Pipe() {
    ::close(read_end_);
    close_write_end();
  }

  int read_end() const noexcept { return read_end_; }
  // The reader then sees end of file. Safe from any thread, any number of times.
  void close_write_end() noexcept {
    const int fd = write_end_.exchange(-1);
    if (fd >= 0) ::close(fd);
  }

 private:
  int read_end_ = -1;
  std::atomic<int> write_end_{-1};
};

// ---------------------------------------------------------------------------
// Real blocking calls.

TEST(CallBlocking, PipeReadInterruptedByClosingTheWriteEndReturnsTheContextErrorNotAbandoned) {
  auto pipe = std::make_shared<Pipe>();
  auto started = std::make_shared<Gate>();
  auto read_returned = std::make_shared<std::atomic<long>>(-2);
  auto [ctx, cancel] = with_cancel(background());
  CancelWhenStarted canceller(started, cancel);
  ctxpp::BlockingOptions options;
  options.name = "pipe read";
  options.interrupt_grace = kLongBound;  // an interrupted read returns at once

  auto result = call_blocking(
      ctx,
      [pipe, started, read_returned] {
        started->open();
        char byte = 0;
        const ssize_t n = ::read(pipe->read_end(), &byte, 1);
        read_returned->store(static_cast<long>(n));
        return n;
      },
      [pipe]() noexcept { pipe->close_write_end(); }, options);

  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(result.error(), ctx.err());
  EXPECT_EQ(result.error(), ctxpp::errc::canceled);
  EXPECT_FALSE(result.abandoned());
  // Not abandoned means the call is over: the read already returned, at end of file.
  EXPECT_EQ(read_returned->load(), 0);
  EXPECT_EQ(ctxpp::abandoned_call_count(), 0U);
}

TEST(CallBlocking, SleepWithoutInterruptIsAbandonedListedAndForgottenOnceItReturns) {
  const std::size_t total_before = ctxpp::abandoned_calls_total();
  auto started = std::make_shared<Gate>();
  auto release = std::make_shared<std::atomic<bool>>(false);
  auto [ctx, cancel] = with_cancel(background());
  CancelWhenStarted canceller(started, cancel);
  ctxpp::BlockingOptions options;
  options.name = "sleep";

  // Sleeps in 1 s slices until the test has looked at the listing: one 1 s sleep
  // could end before a descheduled test thread gets to look.
  auto result = call_blocking(
      ctx,
      [started, release] {
        started->open();
        for (int slice = 0; slice < 60 && !release->load(); ++slice) {
          timespec one_second{1, 0};
          while (::nanosleep(&one_second, &one_second) != 0) {
          }
        }
      },
      nullptr, options);
  const clock::time_point returned_at = clock::now();
  canceller.join();

  EXPECT_TRUE(result.abandoned());
  EXPECT_EQ(result.error(), ctxpp::errc::canceled);
  EXPECT_LT(returned_at - canceller.cancelled_at(), kPromptBound);

  const std::vector<ctxpp::AbandonedCall> listed = ctxpp::abandoned_calls();
  ASSERT_EQ(listed.size(), 1U);
  EXPECT_EQ(listed[0].name, "sleep");
  EXPECT_STREQ(listed[0].where.file_name(), __FILE__);
  EXPECT_GT(listed[0].where.line(), 0U);
  EXPECT_LE(listed[0].started, listed[0].abandoned);
  EXPECT_LE(listed[0].abandoned, returned_at);
  EXPECT_EQ(ctxpp::abandoned_call_count(), 1U);
  EXPECT_EQ(ctxpp::abandoned_calls_total(), total_before + 1);

  release->store(true);
  EXPECT_TRUE(eventually(no_abandoned_calls)) << ctxpp_test::describe_threads();
  EXPECT_TRUE(ctxpp::abandoned_calls().empty());
  EXPECT_EQ(ctxpp::abandoned_calls_total(), total_before + 1);  // a counter, not a gauge
}

#if defined(CTXPP_TEST_HAVE_SQLITE3)
struct SqliteCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close(db); }
};
#endif

TEST(CallBlocking, SqliteQueryInterruptedBySqlite3InterruptReturnsPromptlyAndItsConnectionWorks) {
#if !defined(CTXPP_TEST_HAVE_SQLITE3)
  GTEST_SKIP() << "built without SQLite3: find_package(SQLite3) found no library";
#else
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &raw), SQLITE_OK);
  std::shared_ptr<sqlite3> db(raw, SqliteCloser{});

  // The progress handler says when the statement is really running: an interrupt
  // sent before sqlite3_step starts is a no-op and the query would never end. It
  // also stops a query that the interrupt failed to stop, so a bug fails the test
  // instead of hanging it.
  struct Probe {
    std::atomic<bool> running_once{false};
    std::shared_ptr<Gate> running = std::make_shared<Gate>();
    clock::time_point safety_stop = clock::now() + kLongBound;
    std::atomic<bool> stopped_by_safety{false};
    std::atomic<int> step_result{-1};
  };
  auto probe = std::make_shared<Probe>();
  sqlite3_progress_handler(
      db.get(), 1000,
      [](void* arg) -> int {
        auto* p = static_cast<Probe*>(arg);
        if (!p->running_once.exchange(true)) p->running->open();
        if (clock::now() < p->safety_stop) return 0;
        p->stopped_by_safety.store(true);
        return 1;
      },
      probe.get());

  auto [ctx, cancel] = with_cancel(background());
  CancelWhenStarted canceller(probe->running, cancel);
  ctxpp::BlockingOptions options;
  options.name = "sqlite count";
  options.interrupt_grace = kLongBound;

  auto result = call_blocking(
      ctx,
      [db, probe] {
        static constexpr const char* kEndless =
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM "
            "c";
        sqlite3_stmt* statement = nullptr;
        int rc = sqlite3_prepare_v2(db.get(), kEndless, -1, &statement, nullptr);
        if (rc == SQLITE_OK) rc = sqlite3_step(statement);
        sqlite3_finalize(statement);
        probe->step_result.store(rc);
        return rc;
      },
      [db]() noexcept { sqlite3_interrupt(db.get()); }, options);
  const clock::time_point returned_at = clock::now();
  canceller.join();

  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(result.error(), ctxpp::errc::canceled);
  EXPECT_FALSE(result.abandoned());
  EXPECT_LT(returned_at - canceller.cancelled_at(), kPromptBound);
  EXPECT_EQ(probe->step_result.load(), SQLITE_INTERRUPT);
  EXPECT_FALSE(probe->stopped_by_safety.load());

  // The call is over (not abandoned), so the connection is ours again.
  sqlite3_progress_handler(db.get(), 0, nullptr, nullptr);
  sqlite3_stmt* statement = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT 40 + 2", -1, &statement, nullptr), SQLITE_OK);
  EXPECT_EQ(sqlite3_step(statement), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(statement, 0), 42);
  sqlite3_finalize(statement);
#endif
}

TEST(CallBlocking, UninterruptibleCallIsAbandonedAndItsResultIsDestroyedOnItsWorkerWhenItReturns) {
  auto log = std::make_shared<DestructionLog>();
  auto started = std::make_shared<Gate>();
  auto answer = std::make_shared<std::promise<void>>();
  auto worker = std::make_shared<std::atomic<std::thread::id>>();
  auto [ctx, cancel] = with_cancel(background());
  CancelWhenStarted canceller(started, cancel);

  // Like getaddrinfo: no way to interrupt it; the test plays the DNS server.
  auto result = call_blocking(ctx, [log, started, reply = answer->get_future(), worker] {
    worker->store(std::this_thread::get_id());
    started->open();
    reply.wait();
    return Address(log);
  });
  canceller.join();

  EXPECT_TRUE(result.abandoned());
  EXPECT_EQ(result.error(), ctxpp::errc::canceled);
  EXPECT_EQ(log->destroyed.load(), 0);  // still running: there is no result yet
  EXPECT_EQ(ctxpp::abandoned_call_count(), 1U);

  answer->set_value();
  ASSERT_TRUE(eventually(no_abandoned_calls)) << ctxpp_test::describe_threads();
  // Released before it stopped being listed, and on the thread that ran it.
  EXPECT_EQ(log->destroyed.load(), 1);
  std::lock_guard lock(log->mutex);
  EXPECT_EQ(log->destroyer, worker->load());
  EXPECT_NE(log->destroyer, std::this_thread::get_id());
}

// ---------------------------------------------------------------------------
// When the function runs, and what the caller gets.

TEST(CallBlocking, ContextAlreadyDoneReturnsItsErrorAndTheFunctionNeverRuns) {
  auto [ctx, cancel] = with_cancel(background());
  cancel();
  bool ran = false;
  auto result = call_blocking(ctx, [&ran] {
    ran = true;
    return 1;
  });
  EXPECT_FALSE(ran);
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(result.error(), ctxpp::errc::canceled);
  EXPECT_FALSE(result.abandoned());
}

TEST(CallBlocking, ContextEndingBeforeTheFunctionStartsWithdrawsItAndItNeverRuns) {
  auto ran = std::make_shared<std::atomic<bool>>(false);
  {
    ctxpp::ThreadPool pool(1);
    HoldGate busy;
    pool.execute([&busy] { busy.hold(); });
    ASSERT_TRUE(busy.wait_entered());

    auto [ctx, cancel] = with_cancel(background());
    std::thread canceller([&pool, cancel = cancel] {
      if (eventually([&pool] { return pool.queued() == 1; })) cancel();
    });
    ctxpp::BlockingOptions options;
    options.executor = &pool;
    auto result = call_blocking(
        ctx,
        [ran] {
          ran->store(true);
          return 1;
        },
        nullptr, options);
    canceller.join();
    busy.release();

    EXPECT_FALSE(result.has_value());
    EXPECT_EQ(result.error(), ctx.err());
    EXPECT_EQ(result.error(), ctxpp::errc::canceled);
    EXPECT_FALSE(result.abandoned());
    EXPECT_EQ(ctxpp::abandoned_call_count(), 0U);
  }  // the pool runs the withdrawn task before it is destroyed
  EXPECT_FALSE(ran->load());
}

TEST(CallBlocking, ReturnsTheValueOfAFunctionThatCompletes) {
  auto [ctx, cancel] = with_cancel(background());
  auto number = call_blocking(ctx, [] { return 42; });
  ASSERT_TRUE(number.has_value());
  EXPECT_EQ(*number, 42);
  EXPECT_FALSE(number.abandoned());

  auto owned = call_blocking(background(), [] { return std::make_unique<std::string>("moved"); });
  ASSERT_TRUE(owned.has_value());
  EXPECT_EQ(**owned, "moved");
}

TEST(CallBlocking, VoidFunctionThatCompletesReturnsSuccessAfterItRan) {
  auto ran = std::make_shared<std::atomic<bool>>(false);
  auto result = call_blocking(background(), [ran] { ran->store(true); });
  EXPECT_TRUE(result.has_value());
  EXPECT_FALSE(result.error());
  EXPECT_FALSE(result.abandoned());
  EXPECT_TRUE(ran->load());  // the caller waited for it
}

TEST(CallBlocking, RunsOnTheGivenExecutor) {
  ctxpp::InlineExecutor inline_executor;
  ctxpp::BlockingOptions options;
  options.executor = &inline_executor;
  auto result = call_blocking(
      background(), [] { return std::this_thread::get_id(); }, nullptr, options);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(*result, std::this_thread::get_id());

  auto pooled = call_blocking(background(), [] { return std::this_thread::get_id(); });
  ASSERT_TRUE(pooled.has_value());
  EXPECT_NE(*pooled, std::this_thread::get_id());  // the shared pool, never the caller
}

TEST(CallBlocking, ExceptionOfTheFunctionIsRethrownToTheWaitingCaller) {
  try {
    auto result =
        call_blocking(background(), []() -> int { throw std::runtime_error("no route"); });
    ADD_FAILURE() << "no exception; has_value=" << result.has_value();
  } catch (const std::runtime_error& error) {
    EXPECT_STREQ(error.what(), "no route");
  }
}

TEST(CallBlocking, ExceptionOfAnAbandonedCallIsDiscardedNotRethrown) {
  const std::size_t total_before = ctxpp::abandoned_calls_total();
  auto started = std::make_shared<Gate>();
  auto release = std::make_shared<Gate>();
  auto threw = std::make_shared<std::atomic<bool>>(false);
  auto [ctx, cancel] = with_cancel(background());
  CancelWhenStarted canceller(started, cancel);

  auto result = call_blocking(ctx, [started, release, threw]() -> int {
    started->open();
    release->wait();
    threw->store(true);
    throw std::runtime_error("too late");
  });
  canceller.join();
  EXPECT_TRUE(result.abandoned());
  EXPECT_EQ(result.error(), ctxpp::errc::canceled);

  release->open();
  ASSERT_TRUE(eventually(no_abandoned_calls)) << ctxpp_test::describe_threads();
  EXPECT_TRUE(threw->load());
  EXPECT_EQ(ctxpp::abandoned_calls_total(), total_before + 1);
}

TEST(CallBlocking, DeadlineEndsTheCallWithDeadlineExceeded) {
  auto unblock = std::make_shared<Gate>();
  auto [ctx, cancel] = ctxpp::with_timeout(background(), 20ms);
  ctxpp::BlockingOptions options;
  options.interrupt_grace = kLongBound;
  auto result = call_blocking(
      ctx, [unblock] { return unblock->wait(); }, [unblock]() noexcept { unblock->open(); },
      options);
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(result.error(), ctxpp::errc::deadline_exceeded);
  EXPECT_EQ(result.error(), std::errc::timed_out);
  EXPECT_FALSE(result.abandoned());
}

TEST(CallBlocking, InterruptRunsOnceOnTheCallerThreadAndAnUnhelpedCallIsAbandonedAfterTheGrace) {
  auto started = std::make_shared<Gate>();
  auto release = std::make_shared<Gate>();
  auto interrupts = std::make_shared<std::atomic<int>>(0);
  auto interrupt_thread = std::make_shared<std::atomic<std::thread::id>>();
  auto [ctx, cancel] = with_cancel(background());
  CancelWhenStarted canceller(started, cancel);
  ctxpp::BlockingOptions options;
  options.interrupt_grace = 10ms;

  auto result = call_blocking(
      ctx,
      [started, release] {
        started->open();
        release->wait();
      },
      [interrupts, interrupt_thread]() noexcept {
        interrupt_thread->store(std::this_thread::get_id());
        interrupts->fetch_add(1);
      },
      options);
  canceller.join();

  EXPECT_TRUE(result.abandoned());
  EXPECT_EQ(result.error(), ctxpp::errc::canceled);
  EXPECT_EQ(interrupts->load(), 1);
  EXPECT_EQ(interrupt_thread->load(), std::this_thread::get_id());

  release->open();
  EXPECT_TRUE(eventually(no_abandoned_calls)) << ctxpp_test::describe_threads();
}

// ---------------------------------------------------------------------------
// Refusals.

TEST(CallBlocking, AbandonCapRefusesNewCallsUntilTheAbandonedOnesFinish) {
  AbandonedLimitRestorer restore;
  ctxpp::set_abandoned_limit(2);
  std::vector<std::shared_ptr<Gate>> releases;
  for (int i = 0; i < 2; ++i) {
    auto started = std::make_shared<Gate>();
    auto release = releases.emplace_back(std::make_shared<Gate>());
    auto [ctx, cancel] = with_cancel(background());
    CancelWhenStarted canceller(started, cancel);
    auto result = call_blocking(ctx, [started, release] {
      started->open();
      release->wait();
    });
    ASSERT_TRUE(result.abandoned());
  }
  ASSERT_EQ(ctxpp::abandoned_call_count(), 2U);

  bool ran = false;
  auto refused = call_blocking(background(), [&ran] {
    ran = true;
    return 1;
  });
  EXPECT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error(), ctxpp::failure::abandon_limit);
  EXPECT_FALSE(refused.abandoned());
  EXPECT_FALSE(ran);

  for (const auto& release : releases) release->open();
  ASSERT_TRUE(eventually(no_abandoned_calls)) << ctxpp_test::describe_threads();
  auto accepted = call_blocking(background(), [] { return 7; });
  ASSERT_TRUE(accepted.has_value());
  EXPECT_EQ(*accepted, 7);
}

TEST(BlockingAbandonedLimit, ZeroThrowsInvalidArgumentAndKeepsTheLimit) {
  const std::size_t before = ctxpp::abandoned_limit();
  EXPECT_THROW(ctxpp::set_abandoned_limit(0), std::invalid_argument);
  EXPECT_EQ(ctxpp::abandoned_limit(), before);
}

TEST(CallBlocking, ExecutorThatThrowsIsReportedAsRejectedAndTheFunctionNeverRuns) {
  class Refusing final : public ctxpp::Executor {
   public:
    void execute(std::function<void()> /*task*/) override {
      throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    }
  };
  Refusing refusing;
  ctxpp::BlockingOptions options;
  options.executor = &refusing;
  bool ran = false;
  auto result = call_blocking(
      background(), [&ran] { ran = true; }, nullptr, options);
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(result.error(), ctxpp::failure::rejected);
  EXPECT_FALSE(result.abandoned());
  EXPECT_FALSE(ran);
}

// ---------------------------------------------------------------------------
// Threads.

TEST(CallBlocking, ManyCallsNeverStartAThreadPerCallAndLeaveNoThreadBehind) {
  constexpr std::size_t kPoolThreads = 4;
  constexpr int kCallers = 4;
  constexpr int kCallsPerCaller = 50;  // 200 calls
  ctxpp::ThreadPool pool(kPoolThreads, 50ms);
  const std::size_t threads_before = process_thread_count();
  std::atomic<std::size_t> most_pool_threads{0};
  std::atomic<std::size_t> most_process_threads{0};
  std::atomic<int> abandoned{0};
  std::atomic<int> meant_to_abandon{0};
  std::atomic<int> completed{0};
  auto record_peak = [](std::atomic<std::size_t>& peak, std::size_t now) {
    std::size_t seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  };

  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int i = 0; i < kCallsPerCaller; ++i) {
        ctxpp::BlockingOptions options;
        options.executor = &pool;
        auto [ctx, cancel] = with_cancel(background());
        if (i % 4 == 0) {
          // Ends its own context, then blocks until its caller has returned: it can
          // only be abandoned.
          meant_to_abandon.fetch_add(1);
          auto caller_returned = std::make_shared<Gate>();
          auto result = call_blocking(
              ctx,
              [cancel = cancel, caller_returned] {
                cancel();
                caller_returned->wait();
              },
              nullptr, options);
          caller_returned->open();
          if (result.abandoned()) abandoned.fetch_add(1);
        } else {
          const int expected = c * 1000 + i;
          auto result = call_blocking(
              ctx,
              [expected] {
                timespec brief{0, 200'000};
                ::nanosleep(&brief, nullptr);
                return expected;
              },
              nullptr, options);
          if (result.has_value() && *result == expected) completed.fetch_add(1);
        }
        record_peak(most_pool_threads, pool.thread_count());
        record_peak(most_process_threads, process_thread_count());
      }
    });
  }
  for (auto& caller : callers) caller.join();

  EXPECT_GT(meant_to_abandon.load(), 0);
  EXPECT_EQ(abandoned.load(), meant_to_abandon.load());
  EXPECT_EQ(completed.load(), kCallers * kCallsPerCaller - meant_to_abandon.load());
  EXPECT_LE(most_pool_threads.load(), kPoolThreads);
  // A pool thread that retired is replaced before the kernel has reaped it, and a
  // sanitizer starts its own helper thread: a few more than the callers and the
  // pool, never one per call.
  constexpr std::size_t kSlack = 4;
  EXPECT_LE(most_process_threads.load(), threads_before + kCallers + kPoolThreads + kSlack);
  EXPECT_TRUE(eventually(no_abandoned_calls)) << ctxpp_test::describe_threads();
  EXPECT_TRUE(eventually([&pool] { return pool.thread_count() == 0; }))
      << pool.thread_count() << " pool threads left" << ctxpp_test::describe_threads();
}

TEST(BlockingPool, BoundCoversTheCapAndEveryHardwareThreadTwiceAndIsFixedOnceUsed) {
  auto warm_up = call_blocking(background(), [] { return 1; });  // the pool exists now
  ASSERT_TRUE(warm_up.has_value());
  const std::size_t hardware = std::max(1U, std::thread::hardware_concurrency());
  const std::size_t bound = ctxpp::blocking_pool_max_threads();
  // The cap in force when the pool was made is unknown here (another test may
  // have lowered it first), but it was at least 1.
  EXPECT_GE(bound, 1 + 2 * hardware);

  AbandonedLimitRestorer restore;
  ctxpp::set_abandoned_limit(ctxpp::abandoned_limit() + 100);
  EXPECT_EQ(ctxpp::blocking_pool_max_threads(), bound);
}

}  // namespace
