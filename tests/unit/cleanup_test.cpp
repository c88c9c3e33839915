#include "ctxpp/cleanup.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::Context;
using ctxpp::errc;
using ctxpp::failure;

const ctxpp::Key<std::string> kUser("user");

// Captures reports of the cleanup failure handler for the life of the test.
class CapturedFailures {
 public:
  CapturedFailures() : previous_(ctxpp::set_cleanup_failure_handler(&record)) {
    failures().clear();
  }
  ~CapturedFailures() { ctxpp::set_cleanup_failure_handler(previous_); }
  CapturedFailures(const CapturedFailures&) = delete;
  CapturedFailures& operator=(const CapturedFailures&) = delete;

  static std::vector<ctxpp::CleanupFailure>& failures() {
    static std::vector<ctxpp::CleanupFailure> list;
    return list;
  }

 private:
  static void record(const ctxpp::CleanupFailure& failure) { failures().push_back(failure); }
  ctxpp::CleanupFailureHandler previous_;
};

TEST(Defer, RunsAtScopeExit) {
  int runs = 0;
  {
    auto guard = ctxpp::defer([&] { ++runs; });
    EXPECT_TRUE(guard.armed());
    EXPECT_EQ(runs, 0);
  }
  EXPECT_EQ(runs, 1);
}

TEST(Defer, RunsWhenTheScopeIsLeftByAnException) {
  int runs = 0;
  try {
    auto guard = ctxpp::defer([&] { ++runs; });
    throw std::runtime_error("request failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(runs, 1);
}

TEST(Defer, CancelPreventsTheRun) {
  int runs = 0;
  {
    auto guard = ctxpp::defer([&] { ++runs; });
    std::move(guard).cancel();
    EXPECT_FALSE(guard.armed());  // NOLINT(bugprone-use-after-move): cancel() leaves it valid
  }
  EXPECT_EQ(runs, 0);
}

TEST(Defer, InvokeRunsOnceAndDisarms) {
  int runs = 0;
  {
    auto guard = ctxpp::defer([&] { ++runs; });
    std::move(guard).invoke();
    EXPECT_EQ(runs, 1);
    std::move(guard).invoke();  // NOLINT(bugprone-use-after-move): a second invoke does nothing
    EXPECT_EQ(runs, 1);
  }
  EXPECT_EQ(runs, 1);
}

TEST(Defer, InvokePropagatesTheException) {
  CapturedFailures captured;
  auto guard = ctxpp::defer([] { throw std::runtime_error("close failed"); });
  EXPECT_THROW(std::move(guard).invoke(), std::runtime_error);
  EXPECT_TRUE(CapturedFailures::failures().empty());
}

TEST(Defer, MovedFromGuardDoesNothing) {
  int runs = 0;
  {
    auto first = ctxpp::defer([&] { ++runs; });
    auto second = std::move(first);
    EXPECT_FALSE(first.armed());  // NOLINT(bugprone-use-after-move)
    EXPECT_TRUE(second.armed());
  }
  EXPECT_EQ(runs, 1);
}

TEST(Defer, ExceptionInDestructorIsReportedWithItsSiteNotLost) {
  CapturedFailures captured;
  const std::size_t before = ctxpp::cleanup_failures_total();
  int later_runs = 0;
  {
    auto later = ctxpp::defer([&] { ++later_runs; });  // destroyed after the failing one
    auto failing = ctxpp::defer([] { throw std::runtime_error("close failed"); });
  }
  EXPECT_EQ(later_runs, 1) << "a failing cleanup must not skip the others";
  ASSERT_EQ(CapturedFailures::failures().size(), 1U);
  const ctxpp::CleanupFailure& failure = CapturedFailures::failures().front();
  EXPECT_EQ(failure.message, "close failed");
  EXPECT_NE(std::string(failure.where.file_name()).find("cleanup_test.cpp"), std::string::npos);
  EXPECT_GT(failure.where.line(), 0U);
  EXPECT_TRUE(failure.exception);
  EXPECT_EQ(ctxpp::cleanup_failures_total(), before + 1);
}

TEST(Defer, ExceptionInDestructorDuringUnwindingDoesNotTerminate) {
  CapturedFailures captured;
  try {
    auto failing = ctxpp::defer([] { throw 42; });
    throw std::runtime_error("request failed");
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "request failed");
  }
  ASSERT_EQ(CapturedFailures::failures().size(), 1U);
  EXPECT_EQ(CapturedFailures::failures().front().message, "unknown exception");
}

TEST(CleanupContext, KeepsValuesAndIsNotCancelledWithTheRequest) {
  auto [request, cancel] = ctxpp::with_cancel(ctxpp::with_value(background(), kUser, "ada"));
  cancel();
  auto [cleanup_ctx, release] = ctxpp::cleanup_context(request, 1h);
  EXPECT_FALSE(cleanup_ctx.done());
  ASSERT_NE(cleanup_ctx.value(kUser), nullptr);
  EXPECT_EQ(*cleanup_ctx.value(kUser), "ada");
  release();
  EXPECT_EQ(cleanup_ctx.err(), errc::canceled);
}

TEST(CleanupContext, EndsAtItsBudgetWithBudgetExceededAsCause) {
  auto [request, cancel] = ctxpp::with_cancel(background());
  cancel();
  auto [cleanup_ctx, release] = ctxpp::cleanup_context(request, 20ms);
  ASSERT_TRUE(cleanup_ctx.wait_for(ctxpp_test::kLongBound));
  EXPECT_EQ(cleanup_ctx.err(), errc::deadline_exceeded);
  EXPECT_EQ(cleanup_ctx.cause(), failure::budget_exceeded);
}

TEST(CleanupContext, ShieldedBudgetStopsAtTheBudgetThoughTheParentIsCancelledMidway) {
  // Pitfall 23: the parent's cancel must neither end the cleanup early nor stop it
  // from ending at its own budget.
  auto [request, cancel] = ctxpp::with_cancel(background());
  auto [cleanup_ctx, release] = ctxpp::cleanup_context(request, 30ms);
  cancel();
  EXPECT_FALSE(cleanup_ctx.done());
  ASSERT_TRUE(cleanup_ctx.wait_for(ctxpp_test::kLongBound));
  EXPECT_EQ(cleanup_ctx.err(), errc::deadline_exceeded);
  EXPECT_TRUE(request.done());
}

TEST(CleanupContext, NonPositiveBudgetEndsAtOnceAndHugeBudgetNever) {
  auto [zero, release_zero] = ctxpp::cleanup_context(background(), 0s);
  EXPECT_EQ(zero.err(), errc::deadline_exceeded);
  auto [negative, release_negative] = ctxpp::cleanup_context(background(), -5s);
  EXPECT_EQ(negative.err(), errc::deadline_exceeded);
  auto [huge, release_huge] = ctxpp::cleanup_context(background(), ctxpp::clock::duration::max());
  EXPECT_FALSE(huge.done());
  EXPECT_EQ(huge.deadline(), ctxpp::clock::time_point::max());
}

TEST(RunCleanup, ReturnsEmptyWhenCleanupFinishedInTime) {
  auto [request, cancel] = ctxpp::with_cancel(background());
  cancel();
  bool saw_live_context = false;
  const std::error_code ec =
      ctxpp::run_cleanup(request, 1h, [&](const Context& ctx) { saw_live_context = !ctx.done(); });
  EXPECT_FALSE(ec);
  EXPECT_TRUE(saw_live_context);
}

TEST(RunCleanup, ReportsBudgetExceededWhenTheBudgetRanOut) {
  const std::error_code ec =
      ctxpp::run_cleanup(background(), 10ms, [](const Context& ctx) { ctx.wait(); });
  EXPECT_EQ(ec, failure::budget_exceeded);
}

TEST(RunCleanup, ReturnsTheCleanupsOwnError) {
  const std::error_code ec = ctxpp::run_cleanup(background(), 1h, [](const Context&) {
    return std::make_error_code(std::errc::broken_pipe);
  });
  EXPECT_EQ(ec, std::errc::broken_pipe);
}

TEST(RunCleanup, ExceptionIsReportedAndReturnedNeverRethrown) {
  CapturedFailures captured;
  std::error_code ec;
  EXPECT_NO_THROW(ec = ctxpp::run_cleanup(background(), 1h, [](const Context&) {
                    throw std::runtime_error("rollback failed");
                  }));
  EXPECT_EQ(ec, failure::exception);
  ASSERT_EQ(CapturedFailures::failures().size(), 1U);
  EXPECT_EQ(CapturedFailures::failures().front().message, "rollback failed");
}

TEST(RunCleanup, ReleasesItsTimerWhenDone) {
  const std::size_t before = ctxpp::detail::pending_timers();
  EXPECT_FALSE(ctxpp::run_cleanup(background(), 1h, [](const Context&) {}));
  EXPECT_EQ(ctxpp::detail::pending_timers(), before);
}

}  // namespace
