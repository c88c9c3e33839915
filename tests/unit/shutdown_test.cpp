#include "ctxpp/shutdown.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "ctxpp/scoped_callback.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::Shutdown;
using ctxpp::ShutdownOutcome;
using ctxpp::ShutdownPhase;

TEST(Shutdown, WithNoWorkFinishesGracefullyAtOnce) {
  Shutdown shutdown(background());
  EXPECT_EQ(shutdown.phase(), ShutdownPhase::running);
  const ctxpp::ShutdownReport report = shutdown.run(1h, 1h);
  EXPECT_EQ(report.outcome, ShutdownOutcome::graceful);
  EXPECT_EQ(report.in_flight_at_start, 0U);
  EXPECT_EQ(shutdown.phase(), ShutdownPhase::finished);
  EXPECT_TRUE(shutdown.drain_context().done());
  EXPECT_FALSE(shutdown.force_context().done()) << "a graceful shutdown never forces";
}

TEST(Shutdown, AdmitRefusesOnceDrainingBegan) {
  Shutdown shutdown(background());
  auto work = shutdown.admit();
  ASSERT_TRUE(work.has_value());
  EXPECT_EQ(shutdown.in_flight(), 1U);
  std::thread runner([&] { (void)shutdown.run(1h, 1h); });
  ASSERT_TRUE(ctxpp_test::eventually([&] { return shutdown.phase() == ShutdownPhase::draining; }));
  EXPECT_FALSE(shutdown.admit().has_value());
  work->reset();
  runner.join();
  EXPECT_EQ(shutdown.in_flight(), 0U);
}

TEST(Shutdown, RunningWorkFinishesDuringGraceWithoutBeingCancelled) {
  Shutdown shutdown(background());
  auto work = shutdown.admit();
  ASSERT_TRUE(work.has_value());
  ctxpp_test::Gate draining;
  ctxpp::ScopedCallback on_drain(shutdown.drain_context(), [&]() noexcept { draining.open(); });
  std::thread worker([&, token = std::move(*work)]() mutable {
    ASSERT_TRUE(draining.wait());
    EXPECT_FALSE(token.context().done()) << "work must not be cancelled while draining";
    token.reset();
  });
  const ctxpp::ShutdownReport report = shutdown.run(ctxpp_test::kLongBound, 1h);
  worker.join();
  EXPECT_EQ(report.outcome, ShutdownOutcome::graceful);
  EXPECT_EQ(report.in_flight_at_start, 1U);
  EXPECT_EQ(report.finished_gracefully, 1U);
  EXPECT_EQ(report.finished_forced, 0U);
  EXPECT_EQ(report.still_running, 0U);
}

TEST(Shutdown, EscalatesToForcedCancellationAfterTheGrace) {
  Shutdown shutdown(background());
  auto stubborn = shutdown.admit();
  auto quick = shutdown.admit();
  ASSERT_TRUE(stubborn && quick);
  ctxpp_test::Gate draining;
  ctxpp::ScopedCallback on_drain(shutdown.drain_context(), [&]() noexcept { draining.open(); });
  std::thread quick_worker([&, token = std::move(*quick)]() mutable {
    EXPECT_TRUE(draining.wait());  // finishes during the grace, not before run()
    token.reset();
  });
  std::thread stubborn_worker([token = std::move(*stubborn)]() mutable {
    token.context().wait();  // only stops when forced
  });
  const ctxpp::ShutdownReport report = shutdown.run(200ms, ctxpp_test::kLongBound);
  quick_worker.join();
  stubborn_worker.join();
  EXPECT_EQ(report.outcome, ShutdownOutcome::forced);
  EXPECT_EQ(report.in_flight_at_start, 2U);
  EXPECT_EQ(report.finished_gracefully, 1U);
  EXPECT_EQ(report.finished_forced, 1U);
  EXPECT_EQ(report.still_running, 0U);
  EXPECT_GE(report.forcing_at - report.draining_at, 200ms);
  EXPECT_EQ(shutdown.force_context().err(), ctxpp::errc::canceled);
}

TEST(Shutdown, WorkOutlivingTheForceBudgetIsReportedNotHidden) {
  Shutdown shutdown(background());
  auto work = shutdown.admit();
  ASSERT_TRUE(work.has_value());
  const ctxpp::ShutdownReport report = shutdown.run(5ms, 5ms);  // the work ignores everything
  EXPECT_EQ(report.outcome, ShutdownOutcome::budget_exceeded);
  EXPECT_EQ(report.still_running, 1U);
  EXPECT_EQ(shutdown.in_flight(), 1U);
  work->reset();
  EXPECT_EQ(shutdown.in_flight(), 0U);
}

TEST(Shutdown, ZeroGraceForcesAtOnce) {
  Shutdown shutdown(background());
  auto work = shutdown.admit();
  ASSERT_TRUE(work.has_value());
  std::thread worker([token = std::move(*work)]() mutable { token.context().wait(); });
  const ctxpp::ShutdownReport report = shutdown.run(0s, ctxpp_test::kLongBound);
  worker.join();
  EXPECT_EQ(report.outcome, ShutdownOutcome::forced);
}

TEST(Shutdown, NegativeDurationsCountAsZero) {
  Shutdown shutdown(background());
  auto work = shutdown.admit();
  ASSERT_TRUE(work.has_value());
  const ctxpp::ShutdownReport report = shutdown.run(-1s, -1s);
  EXPECT_EQ(report.outcome, ShutdownOutcome::budget_exceeded);
  EXPECT_TRUE(shutdown.force_context().done());
}

TEST(Shutdown, ParentEndingEndsBothPhasesContexts) {
  auto [parent, cancel] = ctxpp::with_cancel(background());
  Shutdown shutdown(parent);
  auto work = shutdown.admit();
  ASSERT_TRUE(work.has_value());
  cancel();
  EXPECT_TRUE(work->context().done());
  EXPECT_TRUE(shutdown.drain_context().done());
  EXPECT_FALSE(shutdown.admit().has_value()) << "nothing is admitted once the parent ended";
}

TEST(Shutdown, SecondRunWaitsForTheFirstAndReturnsItsReport) {
  Shutdown shutdown(background());
  auto work = shutdown.admit();
  ASSERT_TRUE(work.has_value());
  ctxpp::ShutdownReport first;
  ctxpp::ShutdownReport second;
  std::thread a([&] { first = shutdown.run(ctxpp_test::kLongBound, 1h); });
  ASSERT_TRUE(ctxpp_test::eventually([&] { return shutdown.phase() == ShutdownPhase::draining; }));
  std::thread b([&] { second = shutdown.run(0s, 0s); });
  work->reset();
  a.join();
  b.join();
  EXPECT_EQ(first.outcome, ShutdownOutcome::graceful);
  EXPECT_EQ(second.outcome, ShutdownOutcome::graceful);
  EXPECT_EQ(first.finished_at, second.finished_at);
}

TEST(Shutdown, WorkTokenMayOutliveTheShutdown) {
  std::optional<Shutdown::Work> work;
  {
    Shutdown shutdown(background());
    work = shutdown.admit();
    ASSERT_TRUE(work.has_value());
  }
  EXPECT_FALSE(work->context().done());
  work->reset();
  EXPECT_FALSE(work->context().done()) << "a finished token behaves like background()";
}

TEST(Shutdown, ConcurrentAdmitsAndRunAgreeOnTheCount) {
  // Every admitted token is counted exactly once, whichever side of the drain it
  // landed on: run() must not report more finished work than was admitted.
  const int threads = 4;
  const int per_thread = ctxpp_test::kTsan ? 200 : 2000;
  Shutdown shutdown(background());
  std::atomic<int> admitted{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        auto work = shutdown.admit();
        if (!work) return;
        admitted.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  const ctxpp::ShutdownReport report = shutdown.run(ctxpp_test::kLongBound, 1h);
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(report.outcome, ShutdownOutcome::graceful);
  EXPECT_EQ(report.finished_gracefully, report.in_flight_at_start);
  EXPECT_EQ(shutdown.in_flight(), 0U);
  EXPECT_LE(admitted.load(), threads * per_thread);
}

}  // namespace
