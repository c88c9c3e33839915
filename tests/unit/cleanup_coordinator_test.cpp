// Tests of ctxpp/cleanup_coordinator.hpp: when cleanup starts and where it runs,
// the release order, the background cleaner's deadline, the report, and the
// lifetime rules (remove, add after cleanup began, destructor, no thread leak).
#include "ctxpp/cleanup_coordinator.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "ctxpp/failure.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::CleanupCoordinator;
using ctxpp::CleanupOptions;
using ctxpp::CleanupRecord;
using ctxpp::CleanupReport;
using ctxpp::Context;
using ctxpp::Priority;
using ctxpp::ReleaseOutcome;
using ctxpp::Resource;
using ctxpp::with_cancel;
using ctxpp_test::eventually;
using ctxpp_test::Gate;
using ctxpp_test::HoldGate;
using ctxpp_test::kAsan;
using ctxpp_test::kLongBound;
using ctxpp_test::kTsan;

// Short enough to keep the suite fast, long enough that a trivial release on a
// fresh pool thread beats it even under a sanitizer.
constexpr ctxpp::clock::duration kBudget = (kTsan || kAsan) ? 1s : 200ms;

const ctxpp::Key<std::string> kRequestId{"request_id"};

// Blocking releases run here, not on the shared cleaner: this pool is destroyed,
// and its threads joined, at exit. The shared cleaner is a leaked ThreadPool whose
// idle-exited threads stay unjoined until its next task, which ThreadSanitizer
// reports as a thread leak when a whole binary outlives their idle timeout.
ctxpp::Executor* test_cleaner() {
  static ctxpp::ThreadPool pool(64, 2s);
  return &pool;
}

// Events in the order they happened, from any thread.
class Journal {
 public:
  void note(std::string event) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> events_;
};

const CleanupRecord* find(const CleanupReport& report, const std::string& name) {
  for (const CleanupRecord& record : report.records) {
    if (record.name == name) return &record;
  }
  return nullptr;
}

std::vector<std::string> names(const CleanupReport& report) {
  std::vector<std::string> result;
  for (const CleanupRecord& record : report.records) result.push_back(record.name);
  return result;
}

Resource nonblocking(std::string name, Priority priority, Journal* journal = nullptr) {
  return {.name = name, .priority = priority, .try_release = [journal, name] {
            if (journal != nullptr) journal->note("try:" + name);
            return true;
          }};
}

// try_release says "not now"; release notes its start and returns.
Resource blocking(std::string name, Priority priority, Journal* journal = nullptr) {
  return {.name = name,
          .priority = priority,
          .try_release =
              [journal, name] {
                if (journal != nullptr) journal->note("try:" + name);
                return false;
              },
          .release =
              [journal, name](const Context&) {
                if (journal != nullptr) journal->note("release:" + name);
              }};
}

// try_release counts its call in calls and says yes.
Resource counting(std::string name, std::atomic<int>& calls) {
  return {.name = std::move(name), .try_release = [&calls] {
            ++calls;
            return true;
          }};
}

// try_release parks in held.hold() until the test calls held.release(), then says yes:
// while it is parked, cleanup is under way.
Resource parking(std::string name, Priority priority, HoldGate& held) {
  return {.name = std::move(name), .priority = priority, .try_release = [&held] {
            held.hold();
            return true;
          }};
}

// Every release function has returned: what they capture from the test may go.
void expect_all_returned(const CleanupCoordinator& cleanup) {
  EXPECT_TRUE(eventually([&] { return cleanup.pending() == 0; }))
      << "releases still running:" << ctxpp_test::describe_threads();
}

// ---------------------------------------------------------------------------
// When and where cleanup runs.

TEST(CleanupCoordinator, CancelReturnsWithoutWaitingForABlockingRelease) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background = test_cleaner()});
  Gate may_return;
  Gate started;
  std::atomic<bool> returned{false};
  std::atomic<std::thread::id> ran_on{};
  cleanup.add({.name = "socket", .release = [&](const Context&) {
                 ran_on = std::this_thread::get_id();
                 started.open();
                 may_return.wait();
                 returned = true;
               }});
  cancel();
  // cancel() is back while the release is (or will be) parked on the closed gate.
  EXPECT_FALSE(returned.load());
  ASSERT_TRUE(started.wait());
  EXPECT_NE(ran_on.load(), std::this_thread::get_id());
  EXPECT_FALSE(returned.load());
  may_return.open();
  const CleanupReport report = cleanup.wait();
  ASSERT_EQ(report.records.size(), 1U);
  EXPECT_EQ(report.records[0].outcome, ReleaseOutcome::released);
  EXPECT_TRUE(returned.load());
}

TEST(CleanupCoordinator, TryReleaseRunsOffTheCancellingThread) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background = test_cleaner()});
  std::atomic<std::thread::id> ran_on{};
  cleanup.add({.name = "buffer", .try_release = [&] {
                 ran_on = std::this_thread::get_id();
                 return true;
               }});
  cancel();
  (void)cleanup.wait();
  EXPECT_NE(ran_on.load(), std::this_thread::get_id());
  EXPECT_NE(ran_on.load(), std::thread::id{});
}

TEST(CleanupCoordinator, ConstructedOnAnEndedContextBeginsCleanupWithoutBeingAsked) {
  auto [ctx, cancel] = with_cancel(background());
  cancel();
  std::atomic<int> reports{0};
  CleanupCoordinator cleanup(
      ctx, {.background = test_cleaner(), .on_report = [&](const CleanupReport&) { ++reports; }});
  // Neither cleanup_now() nor the destructor: the after_func alone starts it.
  const std::optional<CleanupReport> report = cleanup.wait_for(kLongBound);
  ASSERT_TRUE(report.has_value());
  EXPECT_TRUE(report->records.empty());
  EXPECT_EQ(reports.load(), 1);
}

TEST(CleanupCoordinator, DestructorRunsCleanupWhenTheContextNeverEnds) {
  Journal journal;
  std::atomic<int> reports{0};
  std::optional<CleanupReport> delivered;
  {
    CleanupCoordinator cleanup(
        background(), {.background = test_cleaner(), .on_report = [&](const CleanupReport& report) {
                         ++reports;
                         delivered = report;
                       }});
    cleanup.add(nonblocking("a", Priority::normal, &journal));
    cleanup.add(blocking("b", Priority::critical, &journal));
    EXPECT_FALSE(cleanup.wait_for(10ms).has_value());  // nothing can start it
  }
  EXPECT_EQ(reports.load(), 1);
  ASSERT_TRUE(delivered.has_value());
  EXPECT_EQ(names(*delivered), (std::vector<std::string>{"b", "a"}));
  EXPECT_TRUE(delivered->clean());
}

TEST(CleanupCoordinator, CleanupNowStartsCleanupOnANeverEndingContextOnce) {
  std::atomic<int> reports{0};
  std::atomic<int> releases{0};
  CleanupCoordinator cleanup(background(), {.background = test_cleaner(),
                                            .on_report = [&](const CleanupReport&) { ++reports; }});
  cleanup.add(counting("x", releases));
  cleanup.cleanup_now();
  cleanup.cleanup_now();
  const CleanupReport report = cleanup.wait();
  EXPECT_EQ(report.count(ReleaseOutcome::released), 1U);
  EXPECT_EQ(releases.load(), 1);
  EXPECT_EQ(reports.load(), 1);
}

// ---------------------------------------------------------------------------
// Order.

TEST(CleanupCoordinator, CriticalTryReleasesRunBeforeNormalAndBackgroundOnes) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background = test_cleaner()});
  Journal journal;
  cleanup.add(nonblocking("bg1", Priority::background, &journal));
  cleanup.add(nonblocking("n1", Priority::normal, &journal));
  cleanup.add(nonblocking("c1", Priority::critical, &journal));
  cleanup.add(nonblocking("n2", Priority::normal, &journal));
  cleanup.add(nonblocking("bg2", Priority::background, &journal));
  cleanup.add(nonblocking("c2", Priority::critical, &journal));
  cancel();
  const CleanupReport report = cleanup.wait();
  const std::vector<std::string> expected{"try:c1", "try:c2",  "try:n1",
                                          "try:n2", "try:bg1", "try:bg2"};
  EXPECT_EQ(journal.events(), expected);
  EXPECT_EQ(names(report), (std::vector<std::string>{"c1", "c2", "n1", "n2", "bg1", "bg2"}));
  for (std::size_t i = 1; i < report.records.size(); ++i) {
    EXPECT_LE(report.records[i - 1].finished, report.records[i].finished);
  }
}

TEST(CleanupCoordinator, EveryTryReleaseReturnsBeforeAnyBlockingReleaseStarts) {
  auto [ctx, cancel] = with_cancel(background());
  // One thread: blocking releases run in the order they were dispatched.
  ctxpp::ThreadPool pool(1, 50ms);
  CleanupCoordinator cleanup(ctx, {.background = &pool});
  Journal journal;
  cleanup.add(blocking("bg-blocking", Priority::background, &journal));
  cleanup.add(blocking("c-blocking", Priority::critical, &journal));
  cleanup.add(nonblocking("bg-quick", Priority::background, &journal));
  cleanup.add(blocking("n-blocking", Priority::normal, &journal));
  cleanup.add(nonblocking("n-quick", Priority::normal, &journal));
  cleanup.add({.name = "c-release-only",
               .priority = Priority::critical,
               .release = [&](const Context&) { journal.note("release:c-release-only"); }});
  cancel();
  const CleanupReport report = cleanup.wait();
  // Documented order: all try_release calls by priority, then the blocking
  // releases dispatched critical -> normal -> background.
  const std::vector<std::string> expected{
      "try:c-blocking",         "try:n-blocking",     "try:n-quick",
      "try:bg-blocking",        "try:bg-quick",       "release:c-blocking",
      "release:c-release-only", "release:n-blocking", "release:bg-blocking"};
  EXPECT_EQ(journal.events(), expected);
  EXPECT_TRUE(report.clean());
  for (const CleanupRecord& record : report.records) {
    if (record.blocking) {
      EXPECT_GE(record.finished, report.nonblocking_done) << record.name;
    } else {
      EXPECT_LE(record.finished, report.nonblocking_done) << record.name;
    }
  }
}

// ---------------------------------------------------------------------------
// The background cleaner and its deadline.

TEST(CleanupCoordinator, AHangingReleaseDelaysNoOtherRelease) {
  auto [ctx, cancel] = with_cancel(background());
  Gate unhang;  // opened only after the report: "hangs until the test ends"
  std::atomic<int> others_done{0};
  CleanupCoordinator cleanup(ctx, {.background_timeout = kBudget, .background = test_cleaner()});
  // Critical and first in every order: if anything waited for it, it would show.
  cleanup.add({.name = "hanging", .priority = Priority::critical, .release = [&](const Context&) {
                 unhang.wait();
               }});
  constexpr int kOthers = 6;
  for (int i = 0; i < kOthers; ++i) {
    cleanup.add({.name = "other" + std::to_string(i),
                 .priority = i % 2 == 0 ? Priority::critical : Priority::background,
                 .try_release = [] { return false; },
                 .release = [&](const Context&) { ++others_done; }});
  }
  cancel();
  ASSERT_TRUE(eventually([&] { return others_done.load() == kOthers; }));
  const CleanupReport report = cleanup.wait();
  const ctxpp::clock::time_point deadline = report.started + kBudget;
  // Final at the deadline, not when the hanging release returns: it is still parked.
  const CleanupRecord* hanging = find(report, "hanging");
  ASSERT_NE(hanging, nullptr);
  EXPECT_EQ(hanging->outcome, ReleaseOutcome::timed_out);
  EXPECT_TRUE(hanging->blocking);
  EXPECT_EQ(hanging->finished, deadline);
  EXPECT_LE(hanging->took, kBudget);
  EXPECT_EQ(report.finished, deadline);
  EXPECT_EQ(report.count(ReleaseOutcome::released), static_cast<std::size_t>(kOthers));
  for (const CleanupRecord& record : report.records) {
    if (record.name == "hanging") continue;
    EXPECT_EQ(record.outcome, ReleaseOutcome::released) << record.name;
    EXPECT_LT(record.finished, deadline) << record.name;
  }
  EXPECT_FALSE(report.clean());
  EXPECT_EQ(cleanup.pending(), 1U);  // still running alone
  unhang.open();
  expect_all_returned(cleanup);
  // The late return changed nothing in the final report.
  const CleanupReport again = cleanup.wait();
  EXPECT_EQ(find(again, "hanging")->outcome, ReleaseOutcome::timed_out);
}

TEST(CleanupCoordinator, ReleaseContextKeepsOwnerValuesOutlivesTheOwnerAndEndsAtTheBudget) {
  auto [parent, cancel] = with_cancel(background());
  const Context ctx = ctxpp::with_value(parent, kRequestId, std::string("req-42"));
  struct Seen {
    std::string value;
    bool done_at_start = true;
    std::optional<ctxpp::clock::time_point> deadline;
    std::error_code err;
    std::error_code cause;
    ctxpp::clock::time_point ended{};
  };
  auto seen = std::make_shared<Seen>();
  Gate observed;
  CleanupCoordinator cleanup(ctx, {.background_timeout = kBudget, .background = test_cleaner()});
  cleanup.add({.name = "conn", .release = [seen, &observed](const Context& release_ctx) {
                 const std::string* value = release_ctx.value(kRequestId);
                 seen->value = value != nullptr ? *value : "<missing>";
                 seen->done_at_start = release_ctx.done();
                 seen->deadline = release_ctx.deadline();
                 (void)release_ctx.wait_for(kLongBound);
                 seen->ended = ctxpp::clock::now();
                 seen->err = release_ctx.err();
                 seen->cause = release_ctx.cause();
                 observed.open();
               }});
  cancel();
  ASSERT_TRUE(observed.wait());
  const CleanupReport report = cleanup.wait();
  EXPECT_EQ(seen->value, "req-42");
  EXPECT_FALSE(seen->done_at_start) << "the owner's end must not reach the release context";
  ASSERT_TRUE(seen->deadline.has_value());
  EXPECT_EQ(*seen->deadline, report.started + kBudget);
  EXPECT_GE(seen->ended, report.started + kBudget);
  EXPECT_EQ(seen->err, ctxpp::errc::deadline_exceeded);
  EXPECT_EQ(seen->cause, make_error_code(ctxpp::failure::budget_exceeded));
  // It returned at the deadline, racing the finalisation: late or timed out.
  const ReleaseOutcome outcome = report.records.at(0).outcome;
  EXPECT_TRUE(outcome == ReleaseOutcome::late || outcome == ReleaseOutcome::timed_out);
  expect_all_returned(cleanup);
}

TEST(CleanupCoordinator, AReleaseReturningAfterTheDeadlineBeforeTheReportIsFinalIsLate) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background_timeout = kBudget, .background = test_cleaner()});
  Gate release_started;
  Gate release_returned;
  cleanup.add({.name = "slow", .release = [&](const Context& release_ctx) {
                 release_started.open();
                 (void)release_ctx.wait_for(kLongBound);  // returns just after the deadline
                 release_returned.open();
               }});
  cancel();
  ASSERT_TRUE(release_started.wait());
  // An add() whose try_release is held keeps the report from being final.
  HoldGate held;
  std::thread adder([&] { cleanup.add(parking("held", Priority::normal, held)); });
  ASSERT_TRUE(held.wait_entered());
  ASSERT_TRUE(release_returned.wait());
  // Its return is recorded once only "held" is left in flight.
  ASSERT_TRUE(eventually([&] { return cleanup.pending() == 1; }));
  EXPECT_FALSE(cleanup.wait_for(0ms).has_value());
  held.release();
  adder.join();
  const CleanupReport report = cleanup.wait();
  ASSERT_EQ(names(report), (std::vector<std::string>{"slow", "held"}));
  EXPECT_EQ(report.records[0].outcome, ReleaseOutcome::late);
  EXPECT_GT(report.records[0].finished, report.started + kBudget);
  EXPECT_EQ(report.records[1].outcome, ReleaseOutcome::released);
  EXPECT_TRUE(report.clean());  // late counts as clean
}

// ---------------------------------------------------------------------------
// Failures.

TEST(CleanupCoordinator, AnExceptionInOneReleaseDoesNotSkipTheOthers) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background = test_cleaner()});
  std::atomic<int> released{0};
  cleanup.add({.name = "try-throws",
               .priority = Priority::critical,
               .try_release = []() -> bool { throw std::runtime_error("boom"); },
               .release = [&](const Context&) { ADD_FAILURE() << "release after a throw"; }});
  cleanup.add(
      {.name = "release-throws", .priority = Priority::critical, .release = [](const Context&) {
         throw 42;  // not a std::exception
       }});
  for (int i = 0; i < 3; ++i) {
    cleanup.add(counting("fine" + std::to_string(i), released));
    cleanup.add({.name = "fine-blocking" + std::to_string(i),
                 .priority = Priority::background,
                 .release = [&](const Context&) { ++released; }});
  }
  cancel();
  const CleanupReport report = cleanup.wait();
  EXPECT_EQ(released.load(), 6);
  EXPECT_EQ(report.count(ReleaseOutcome::failed), 2U);
  EXPECT_EQ(report.count(ReleaseOutcome::released), 6U);
  EXPECT_FALSE(report.clean());

  const CleanupRecord* try_throws = find(report, "try-throws");
  ASSERT_NE(try_throws, nullptr);
  EXPECT_EQ(try_throws->outcome, ReleaseOutcome::failed);
  EXPECT_FALSE(try_throws->blocking);
  EXPECT_EQ(try_throws->error_message, "boom");
  ASSERT_TRUE(try_throws->error);
  EXPECT_THROW(std::rethrow_exception(try_throws->error), std::runtime_error);

  const CleanupRecord* release_throws = find(report, "release-throws");
  ASSERT_NE(release_throws, nullptr);
  EXPECT_EQ(release_throws->outcome, ReleaseOutcome::failed);
  EXPECT_TRUE(release_throws->blocking);
  EXPECT_EQ(release_throws->error_message, "unknown exception");
  ASSERT_TRUE(release_throws->error);
  EXPECT_THROW(std::rethrow_exception(release_throws->error), int);
}

TEST(CleanupCoordinator, ADeclinedTryReleaseWithoutReleaseIsFailedWithAMessage) {
  CleanupCoordinator cleanup(background(), {.background = test_cleaner()});
  cleanup.add({.name = "stubborn", .try_release = [] { return false; }});
  cleanup.cleanup_now();
  const CleanupReport report = cleanup.wait();
  ASSERT_EQ(report.records.size(), 1U);
  EXPECT_EQ(report.records[0].outcome, ReleaseOutcome::failed);
  EXPECT_FALSE(report.records[0].error);
  EXPECT_EQ(report.records[0].error_message, "try_release declined and no release function is set");
}

TEST(CleanupCoordinator, AddWithoutAnyReleaseFunctionThrowsInvalidArgument) {
  CleanupCoordinator cleanup(background(), {.background = test_cleaner()});
  EXPECT_THROW(cleanup.add({.name = "nothing"}), std::invalid_argument);
  EXPECT_EQ(cleanup.pending(), 0U);
}

// An executor that refuses every task.
class RefusingExecutor final : public ctxpp::Executor {
 public:
  void execute(std::function<void()>) override { throw std::runtime_error("pool is shut"); }
};

TEST(CleanupCoordinator, AReleaseTheExecutorRefusesIsRecordedFailed) {
  RefusingExecutor refusing;
  CleanupCoordinator cleanup(background(), {.background = &refusing});
  cleanup.add({.name = "never-runs", .release = [](const Context&) { ADD_FAILURE(); }});
  cleanup.add(nonblocking("quick", Priority::normal));
  cleanup.cleanup_now();
  const CleanupReport report = cleanup.wait();
  const CleanupRecord* refused = find(report, "never-runs");
  ASSERT_NE(refused, nullptr);
  EXPECT_EQ(refused->outcome, ReleaseOutcome::failed);
  EXPECT_EQ(refused->error_message, "the background executor refused it: pool is shut");
  EXPECT_EQ(find(report, "quick")->outcome, ReleaseOutcome::released);
  EXPECT_EQ(cleanup.pending(), 0U);
}

// ---------------------------------------------------------------------------
// The report.

TEST(CleanupCoordinator, ReportRecordsOutcomeDurationBlockingFlagAndTimes) {
  auto [ctx, cancel] = with_cancel(background());
  std::atomic<int> reports{0};
  CleanupCoordinator cleanup(
      ctx, {.background = test_cleaner(), .on_report = [&](const CleanupReport&) { ++reports; }});
  cleanup.add(
      {.name = "cache", .priority = Priority::background, .try_release = [] { return true; }});
  cleanup.add({.name = "db",
               .priority = Priority::critical,
               .try_release = [] { return false; },
               .release =
                   [](const Context&) {
                     std::this_thread::sleep_for(20ms);  // a slow close, not synchronisation
                   }});
  const ctxpp::clock::time_point before = ctxpp::clock::now();
  cancel();
  const CleanupReport report = cleanup.wait();
  EXPECT_EQ(reports.load(), 1);
  ASSERT_EQ(names(report), (std::vector<std::string>{"db", "cache"}));

  const CleanupRecord& db = report.records[0];
  EXPECT_EQ(db.priority, Priority::critical);
  EXPECT_EQ(db.outcome, ReleaseOutcome::released);
  EXPECT_TRUE(db.blocking);
  EXPECT_GE(db.took, 20ms);
  EXPECT_FALSE(db.error);
  EXPECT_TRUE(db.error_message.empty());

  const CleanupRecord& cache = report.records[1];
  EXPECT_EQ(cache.priority, Priority::background);
  EXPECT_EQ(cache.outcome, ReleaseOutcome::released);
  EXPECT_FALSE(cache.blocking);
  EXPECT_GE(cache.took, ctxpp::clock::duration::zero());
  EXPECT_LT(cache.took, 20ms);

  EXPECT_GE(report.started, before);
  EXPECT_LE(report.started, report.nonblocking_done);
  EXPECT_LE(cache.finished, report.nonblocking_done);
  EXPECT_GE(db.finished, report.nonblocking_done + 20ms);
  EXPECT_EQ(report.finished, db.finished);
  EXPECT_TRUE(report.clean());
  EXPECT_EQ(report.count(ReleaseOutcome::released), 2U);
  EXPECT_EQ(report.count(ReleaseOutcome::timed_out), 0U);
}

TEST(CleanupCoordinator, WaitForReturnsNulloptUntilCleanupBegins) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background = test_cleaner()});
  EXPECT_FALSE(cleanup.wait_for(5ms).has_value());
  cancel();
  EXPECT_TRUE(cleanup.wait_for(kLongBound).has_value());
}

TEST(CleanupCoordinator, OnReportMayWaitAndDestroyTheCoordinator) {
  auto [ctx, cancel] = with_cancel(background());
  std::unique_ptr<CleanupCoordinator> cleanup;
  Gate destroyed;
  std::size_t records_seen = 0;
  // on_report waits on, then destroys, its own coordinator.
  cleanup = std::make_unique<CleanupCoordinator>(
      ctx,
      CleanupOptions{.background = test_cleaner(), .on_report = [&](const CleanupReport& report) {
                       records_seen = cleanup->wait().records.size();  // returns at once here
                       EXPECT_EQ(records_seen, report.records.size());
                       cleanup.reset();
                       destroyed.open();
                     }});
  cleanup->add(nonblocking("x", Priority::normal));
  cancel();
  ASSERT_TRUE(destroyed.wait());
  EXPECT_EQ(records_seen, 1U);
  EXPECT_EQ(cleanup, nullptr);
}

// ---------------------------------------------------------------------------
// remove() and add() around cleanup.

TEST(CleanupCoordinator, RemoveBeforeCleanupUnregistersTheResource) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background = test_cleaner()});
  std::atomic<int> kept_calls{0};
  std::atomic<int> removed_calls{0};
  const auto kept = cleanup.add(counting("kept", kept_calls));
  const auto removed = cleanup.add({.name = "removed",
                                    .try_release =
                                        [&] {
                                          ++removed_calls;
                                          return true;
                                        },
                                    .release = [&](const Context&) { ++removed_calls; }});
  EXPECT_EQ(cleanup.pending(), 2U);
  EXPECT_TRUE(cleanup.remove(removed));
  EXPECT_FALSE(cleanup.remove(removed)) << "a second remove";
  EXPECT_FALSE(cleanup.remove(removed + 1000)) << "an unknown id";
  EXPECT_EQ(cleanup.pending(), 1U);
  cancel();
  const CleanupReport report = cleanup.wait();
  EXPECT_EQ(names(report), std::vector<std::string>{"kept"});
  EXPECT_EQ(kept_calls.load(), 1);
  EXPECT_EQ(removed_calls.load(), 0);
  EXPECT_FALSE(cleanup.remove(kept)) << "cleanup already began";
}

TEST(CleanupCoordinator, RemoveOnceCleanupBeganReturnsFalseAndTheReleaseStillRuns) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background = test_cleaner()});
  HoldGate held;
  std::atomic<int> second_calls{0};
  cleanup.add(parking("first", Priority::critical, held));
  const auto second = cleanup.add(counting("second", second_calls));
  cancel();
  ASSERT_TRUE(held.wait_entered());  // cleanup is under way
  EXPECT_FALSE(cleanup.remove(second));
  held.release();
  const CleanupReport report = cleanup.wait();
  EXPECT_EQ(second_calls.load(), 1);
  EXPECT_EQ(report.count(ReleaseOutcome::released), 2U);
}

TEST(CleanupCoordinator, DismissBeforeCleanupReleasesNothingAndLaterAddsCount) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background = test_cleaner()});
  std::atomic<int> dismissed_calls{0};
  std::atomic<int> later_calls{0};
  for (int i = 0; i < 3; ++i) {
    cleanup.add({.name = "dismissed",
                 .try_release =
                     [&] {
                       ++dismissed_calls;
                       return true;
                     },
                 .release = [&](const Context&) { ++dismissed_calls; }});
  }
  EXPECT_TRUE(cleanup.dismiss()) << "the commit happened before cleanup began";
  EXPECT_EQ(cleanup.pending(), 0U);
  cleanup.add(counting("later", later_calls));
  cancel();
  const CleanupReport report = cleanup.wait();
  EXPECT_EQ(names(report), std::vector<std::string>{"later"});
  EXPECT_EQ(dismissed_calls.load(), 0);
  EXPECT_EQ(later_calls.load(), 1);
}

TEST(CleanupCoordinator, DismissOnceCleanupBeganReturnsFalseAndEveryReleaseRuns) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background = test_cleaner()});
  HoldGate held;
  std::atomic<int> second_calls{0};
  cleanup.add(parking("first", Priority::critical, held));
  cleanup.add(counting("second", second_calls));
  cancel();
  ASSERT_TRUE(held.wait_entered());  // cleanup is under way: too late to commit
  EXPECT_FALSE(cleanup.dismiss());
  held.release();
  const CleanupReport report = cleanup.wait();
  EXPECT_EQ(second_calls.load(), 1);
  EXPECT_EQ(report.count(ReleaseOutcome::released), 2U);
}

TEST(CleanupCoordinator, AddAfterCleanupBeganReleasesAtOnceAndAppendsToTheReport) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx, {.background_timeout = kLongBound, .background = test_cleaner()});
  Gate may_return;
  Gate parked;
  cleanup.add({.name = "parked", .release = [&](const Context&) {
                 parked.open();
                 may_return.wait();
               }});
  cancel();
  ASSERT_TRUE(parked.wait());  // cleanup began; the report cannot be final yet
  std::atomic<bool> quick_done{false};
  Gate late_blocking_done;
  const auto quick_id = cleanup.add({.name = "late-quick", .try_release = [&] {
                                       quick_done = true;
                                       return true;
                                     }});
  EXPECT_TRUE(quick_done.load()) << "try_release runs inside add() once cleanup began";
  EXPECT_FALSE(cleanup.remove(quick_id));
  cleanup.add({.name = "late-blocking",
               .priority = Priority::critical,
               .release = [&](const Context& release_ctx) {
                 EXPECT_FALSE(release_ctx.done());
                 late_blocking_done.open();
               }});
  ASSERT_TRUE(late_blocking_done.wait()) << "dispatched at once, not after the parked one";
  may_return.open();
  const CleanupReport report = cleanup.wait();
  EXPECT_EQ(names(report), (std::vector<std::string>{"parked", "late-quick", "late-blocking"}));
  EXPECT_TRUE(report.clean());
  EXPECT_FALSE(report.records[1].blocking);
  EXPECT_TRUE(report.records[2].blocking);
}

TEST(CleanupCoordinator, AddAfterTheReportIsFinalStillReleasesButReportsNothing) {
  CleanupCoordinator cleanup(background(), {.background = test_cleaner()});
  cleanup.add(nonblocking("early", Priority::normal));
  cleanup.cleanup_now();
  const CleanupReport first = cleanup.wait();
  std::atomic<bool> quick_done{false};
  Gate blocking_done;
  cleanup.add({.name = "after-final-quick", .try_release = [&] {
                 quick_done = true;
                 return true;
               }});
  EXPECT_TRUE(quick_done.load());
  cleanup.add({.name = "after-final-blocking", .release = [&](const Context& release_ctx) {
                 // A fresh budget from the add, not the long-passed one.
                 EXPECT_FALSE(release_ctx.done());
                 EXPECT_TRUE(release_ctx.deadline().has_value());
                 blocking_done.open();
               }});
  cleanup.add({.name = "after-final-throws",
               .try_release = []() -> bool { throw std::runtime_error("caught, not reported"); }});
  ASSERT_TRUE(blocking_done.wait());
  expect_all_returned(cleanup);
  EXPECT_EQ(names(cleanup.wait()), names(first));
}

// ---------------------------------------------------------------------------
// Threads.

TEST(CleanupCoordinator, LeavesNoThreadBehindOnAPrivatePool) {
  ctxpp::ThreadPool pool(8, 50ms);
  {
    auto [ctx, cancel] = with_cancel(background());
    Gate unhang;
    CleanupCoordinator cleanup(ctx, {.background_timeout = kBudget, .background = &pool});
    cleanup.add({.name = "hanging", .release = [&](const Context&) { unhang.wait(); }});
    for (int i = 0; i < 12; ++i) {  // more than the pool's threads: some queue
      cleanup.add(blocking("b" + std::to_string(i), Priority::normal));
    }
    cancel();
    const CleanupReport report = cleanup.wait();
    EXPECT_EQ(report.count(ReleaseOutcome::timed_out), 1U);
    EXPECT_EQ(report.count(ReleaseOutcome::released), 12U);
    unhang.open();
    expect_all_returned(cleanup);
  }
  EXPECT_TRUE(eventually([&] { return pool.thread_count() == 0; }))
      << pool.thread_count() << " pool threads left:" << ctxpp_test::describe_threads();
}

TEST(CleanupCoordinator, ManyCoordinatorsOnOneContextAllReport) {
  auto [ctx, cancel] = with_cancel(background());
  constexpr int kCoordinators = (kTsan || kAsan) ? 20 : 100;
  std::atomic<int> releases{0};
  std::atomic<int> reports{0};
  std::vector<std::unique_ptr<CleanupCoordinator>> coordinators;
  for (int i = 0; i < kCoordinators; ++i) {
    coordinators.push_back(std::make_unique<CleanupCoordinator>(
        ctx, CleanupOptions{.background = test_cleaner(),
                            .on_report = [&](const CleanupReport&) { ++reports; }}));
    coordinators.back()->add(counting("r", releases));
  }
  cancel();
  for (auto& coordinator : coordinators) EXPECT_TRUE(coordinator->wait().clean());
  EXPECT_EQ(releases.load(), kCoordinators);
  EXPECT_EQ(reports.load(), kCoordinators);
}

// Last in the file on purpose: see test_cleaner().
TEST(CleanupCoordinator, WithoutAnExecutorBlockingReleasesRunOnTheSharedCleaner) {
  auto [ctx, cancel] = with_cancel(background());
  CleanupCoordinator cleanup(ctx);  // CleanupOptions::background == nullptr
  std::atomic<std::thread::id> ran_on{};
  Gate ran;
  cleanup.add({.name = "socket", .release = [&](const Context&) {
                 ran_on = std::this_thread::get_id();
                 ran.open();
               }});
  cancel();
  ASSERT_TRUE(ran.wait());
  const CleanupReport report = cleanup.wait();
  EXPECT_EQ(report.records.at(0).outcome, ReleaseOutcome::released);
  EXPECT_TRUE(report.records.at(0).blocking);
  EXPECT_NE(ran_on.load(), std::this_thread::get_id());
}

}  // namespace
