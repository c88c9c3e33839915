#include "ctxpp/observe.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ctxpp/blocking.hpp"
#include "ctxpp/cleanup_coordinator.hpp"
#include "ctxpp/group.hpp"
#include "ctxpp/trace_context.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::EventKind;

// What an observer saw, copied out of the event (its views die with the call).
struct Seen {
  EventKind kind;
  std::uint64_t context_id;
  std::uint64_t parent_id;
  std::uint64_t origin_id;
  std::string name;
  std::string component;
  std::error_code error;
  std::error_code cause;
  std::string file;
  unsigned line;
  ctxpp::clock::duration delay;
  std::string detail;
  bool has_trace;
  ctxpp::clock::time_point time;
};

class Recorder final : public ctxpp::Observer {
 public:
  void on_event(const ctxpp::Event& e) noexcept override {
    std::lock_guard lock(mutex_);
    seen_.push_back(Seen{e.kind, e.context_id, e.parent_id, e.origin_id, std::string(e.name),
                         std::string(e.component), e.error, e.cause, e.where.file_name(),
                         static_cast<unsigned>(e.where.line()), e.delay, std::string(e.detail),
                         e.trace != nullptr, e.time});
  }
  std::vector<Seen> of(EventKind kind) const {
    std::lock_guard lock(mutex_);
    std::vector<Seen> out;
    std::copy_if(seen_.begin(), seen_.end(), std::back_inserter(out),
                 [&](const Seen& s) { return s.kind == kind; });
    return out;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return seen_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Seen> seen_;
};

class Observed : public ::testing::Test {
 protected:
  void SetUp() override { registration_ = ctxpp::add_observer(recorder_); }
  void TearDown() override { registration_.reset(); }

  std::shared_ptr<Recorder> recorder_ = std::make_shared<Recorder>();
  ctxpp::ObserverRegistration registration_;
};

const Seen* find(const std::vector<Seen>& seen, std::uint64_t id) {
  for (const Seen& s : seen) {
    if (s.context_id == id) return &s;
  }
  return nullptr;
}

TEST(Observe, AddObserverRejectsNull) {
  EXPECT_THROW((void)ctxpp::add_observer(nullptr), std::invalid_argument);
}

TEST(Observe, NothingIsTrackedWhileNobodyObserves) {
  ASSERT_FALSE(ctxpp::observing());
  const std::size_t before = ctxpp::live_tracked_contexts();
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  EXPECT_EQ(ctxpp::live_tracked_contexts(), before);
  // An id is still there on request, and stays the same.
  const std::uint64_t id = ctxpp::context_id(ctx);
  EXPECT_GT(id, 0U);
  EXPECT_EQ(ctxpp::context_id(ctx), id);
  EXPECT_EQ(ctxpp::context_id(ctxpp::background()), 0U);
  cancel();
}

TEST(Observe, NamesAreCarriedByDescendantsAndIdsLinkParents) {
  ctxpp::Context request = ctxpp::with_name(ctxpp::background(), "request");
  auto [db, cancel] = ctxpp::with_cancel(ctxpp::with_name(request, "db.pool"));
  auto [query, cancel_query] = ctxpp::with_timeout(db, 1h);
  EXPECT_EQ(ctxpp::context_name(request), "request");
  EXPECT_EQ(ctxpp::context_name(db), "db.pool");
  EXPECT_EQ(ctxpp::context_name(query), "db.pool") << "the nearest name above";
  EXPECT_NE(ctxpp::context_id(request), ctxpp::context_id(db));
  cancel();
}

TEST_F(Observed, RequestCancelledByClientDisconnectIsRecordedStepByStep) {
  // A request tree: the server's per-connection context, a named request under it,
  // a database and an upstream component each in its own scope on another thread.
  auto [connection, client_gone] = ctxpp::with_cancel(ctxpp::background());
  const ctxpp::Context request = ctxpp::with_name(connection, "GET /api/report");
  const ctxpp::Context db_named = ctxpp::with_name(request, "db");
  auto [db_ctx, db_done] = ctxpp::with_cancel(db_named);
  auto [up_ctx, up_done] = ctxpp::with_timeout(ctxpp::with_name(request, "upstream"), 1h);

  ctxpp_test::Gate entered;
  std::atomic<int> inside{0};
  auto component = [&](const ctxpp::Context& ctx, std::string_view name) {
    return std::thread([&, ctx, name] {
      ctxpp::ComponentScope scope(ctx, name);
      EXPECT_EQ(ctxpp::current(), ctx);
      if (inside.fetch_add(1) == 1) entered.open();
      ctx.wait();
      std::this_thread::sleep_for(5ms);  // the component's cleanup
    });
  };
  std::thread db = component(db_ctx, "db");
  std::thread upstream = component(up_ctx, "upstream");
  ASSERT_TRUE(entered.wait());

  const unsigned cancel_line = __LINE__ + 1;
  client_gone();
  db.join();
  upstream.join();

  const auto canceled = recorder_->of(EventKind::canceled);
  ASSERT_EQ(canceled.size(), 1U);
  EXPECT_EQ(canceled[0].context_id, ctxpp::context_id(connection));
  EXPECT_EQ(canceled[0].origin_id, canceled[0].context_id);
  EXPECT_EQ(canceled[0].error, ctxpp::errc::canceled);
  EXPECT_EQ(canceled[0].line, cancel_line) << "the cancel call's own line";
  EXPECT_NE(canceled[0].file.find("observe_test.cpp"), std::string::npos);

  // Each descendant: reached by the propagation of that one cancel, with its delay.
  const auto propagated = recorder_->of(EventKind::propagated);
  for (const ctxpp::Context* ctx : {&request, static_cast<const ctxpp::Context*>(&db_ctx),
                                    static_cast<const ctxpp::Context*>(&up_ctx)}) {
    const Seen* s = find(propagated, ctxpp::context_id(*ctx));
    ASSERT_NE(s, nullptr) << ctxpp::context_name(*ctx);
    EXPECT_EQ(s->origin_id, ctxpp::context_id(connection));
    EXPECT_EQ(s->error, ctxpp::errc::canceled);
    EXPECT_GE(s->delay, ctxpp::clock::duration::zero());
    EXPECT_LT(s->delay, ctxpp_test::kLongBound);
  }
  EXPECT_EQ(find(propagated, ctxpp::context_id(db_ctx))->parent_id, ctxpp::context_id(db_named));
  EXPECT_EQ(find(propagated, ctxpp::context_id(db_ctx))->name, "db");

  // Each component: signal received (delay since the cancel), then cleanup done.
  const auto signals = recorder_->of(EventKind::component_signal);
  const auto cleanups = recorder_->of(EventKind::component_cleanup);
  for (const char* name : {"db", "upstream"}) {
    auto by_name = [&](const Seen& s) { return s.component == name; };
    auto signal = std::find_if(signals.begin(), signals.end(), by_name);
    auto cleanup = std::find_if(cleanups.begin(), cleanups.end(), by_name);
    ASSERT_NE(signal, signals.end()) << name;
    ASSERT_NE(cleanup, cleanups.end()) << name;
    EXPECT_EQ(signal->origin_id, ctxpp::context_id(connection));
    EXPECT_EQ(cleanup->origin_id, ctxpp::context_id(connection)) << "joins its request";
    // A component may start its cleanup as soon as done() turns true, a hair before
    // its scope's own callback runs: allow 1 ms of the 5 ms to fall before the signal.
    EXPECT_GE(cleanup->delay, 4ms) << "from the signal to the end of the scope";
    EXPECT_GE(cleanup->time, signal->time);
  }
  // Waiting parties (the wait() of each component) were observed too.
  EXPECT_FALSE(recorder_->of(EventKind::observed).empty());
}

TEST_F(Observed, DeadlineIsRecordedWithTheSiteThatSetIt) {
  const unsigned line = __LINE__ + 1;
  auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::with_name(ctxpp::background(), "slow"), 5ms);
  ctx.wait();
  ASSERT_TRUE(ctxpp_test::eventually([&] { return !recorder_->of(EventKind::canceled).empty(); }));
  const auto canceled = recorder_->of(EventKind::canceled);
  EXPECT_EQ(canceled[0].error, ctxpp::errc::deadline_exceeded);
  EXPECT_EQ(canceled[0].line, line);
  EXPECT_EQ(canceled[0].name, "slow");
}

TEST_F(Observed, SiblingFailureIsTheCauseSeenByTheOtherTasks) {
  ctxpp::ThreadPool pool(2);
  const std::error_code failure = std::make_error_code(std::errc::connection_refused);
  ctxpp::TaskGroup group(ctxpp::with_name(ctxpp::background(), "checkout"), pool);
  ctxpp_test::Gate inventory_started;
  group.spawn([&inventory_started](const ctxpp::Context& ctx) {
    ctxpp::ComponentScope scope(ctx, "inventory");
    inventory_started.open();
    ctx.wait();
  });
  ASSERT_TRUE(inventory_started.wait());  // fail while the sibling works
  group.spawn([failure](const ctxpp::Context&) { return failure; });
  EXPECT_EQ(group.wait(), failure);
  // The failing task's thread delivers the events after its propagation; wait() may
  // return first.
  ASSERT_TRUE(
      ctxpp_test::eventually([&] { return !recorder_->of(EventKind::component_signal).empty(); }));
  const auto canceled = recorder_->of(EventKind::canceled);
  ASSERT_FALSE(canceled.empty());
  EXPECT_EQ(canceled[0].cause, failure);
  EXPECT_EQ(canceled[0].name, "checkout");
  const auto signals = recorder_->of(EventKind::component_signal);
  ASSERT_EQ(signals.size(), 1U);
  EXPECT_EQ(signals[0].component, "inventory");
  EXPECT_EQ(signals[0].cause, failure);
}

TEST_F(Observed, CreatedEventsCarryParentIdsAndTheTraceIdentity) {
  ctxpp::TraceContext trace;
  trace.trace_id[0] = 0xab;
  trace.parent_id[0] = 0xcd;
  const ctxpp::Context traced = ctxpp::with_trace_context(ctxpp::background(), trace);
  auto [parent, cancel_parent] = ctxpp::with_cancel(traced);
  auto [child, cancel_child] = ctxpp::with_cancel(parent);
  const auto created = recorder_->of(EventKind::created);
  const Seen* p = find(created, ctxpp::context_id(parent));
  const Seen* c = find(created, ctxpp::context_id(child));
  ASSERT_NE(p, nullptr);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->parent_id, p->context_id);
  EXPECT_TRUE(c->has_trace);
  ASSERT_NE(ctxpp::trace_context(child), nullptr);
  EXPECT_EQ(*ctxpp::trace_context(child), trace);
  cancel_parent();
}

TEST_F(Observed, RemovedObserverHearsNothingMore) {
  registration_.reset();
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  cancel();
  EXPECT_EQ(recorder_->size(), 0U);
}

TEST_F(Observed, CleanupReportsAndAbandonedCallsFeedTheStream) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  {
    ctxpp::CleanupCoordinator coordinator(ctx);
    coordinator.add({.name = "cache", .try_release = [] { return true; }});
    cancel();
    (void)coordinator.wait();
  }
  const auto reports = recorder_->of(EventKind::cleanup_report);
  ASSERT_EQ(reports.size(), 1U);
  EXPECT_NE(reports[0].detail.find("1 released"), std::string::npos) << reports[0].detail;

  // A call that cannot be interrupted is abandoned when its context ends.
  auto [call_ctx, end_call] = ctxpp::with_cancel(ctxpp::with_name(ctxpp::background(), "legacy"));
  auto release = std::make_shared<ctxpp_test::Gate>();
  auto started = std::make_shared<ctxpp_test::Gate>();
  std::thread canceller([end = end_call, started] {
    (void)started->wait();  // abandon a call that runs, not one still queued
    end();
  });
  const unsigned line = __LINE__ + 1;
  auto result = ctxpp::call_blocking(call_ctx, [release, started] {
    started->open();
    (void)release->wait();
  });
  canceller.join();
  release->open();
  EXPECT_TRUE(result.abandoned());
  const auto abandoned = recorder_->of(EventKind::blocking_abandoned);
  ASSERT_EQ(abandoned.size(), 1U);
  EXPECT_EQ(abandoned[0].line, line);
  EXPECT_EQ(abandoned[0].name, "legacy");
  EXPECT_EQ(abandoned[0].error, ctxpp::errc::canceled);
}

TEST_F(Observed, LiveViewShowsTheTreeAsTextAndJson) {
  const ctxpp::Context request = ctxpp::with_name(ctxpp::background(), "request \"42\"");
  auto [db, cancel_db] = ctxpp::with_timeout(ctxpp::with_name(request, "db"), 1h);
  cancel_db();
  const auto tree = ctxpp::context_tree();
  auto at = [&](std::uint64_t id) {
    return std::find_if(tree.begin(), tree.end(), [&](const auto& i) { return i.id == id; });
  };
  const auto request_info = at(ctxpp::context_id(request));
  const auto db_info = at(ctxpp::context_id(db));
  ASSERT_NE(request_info, tree.end());
  ASSERT_NE(db_info, tree.end());
  EXPECT_LT(request_info - tree.begin(), db_info - tree.begin()) << "parents first";
  EXPECT_TRUE(db_info->done);
  EXPECT_TRUE(db_info->deadline.has_value());
  EXPECT_FALSE(request_info->done);

  const std::string text = ctxpp::render_context_tree_text();
  EXPECT_NE(text.find("'db' canceled"), std::string::npos) << text;
  EXPECT_NE(text.find("observe_test.cpp:"), std::string::npos) << text;
  const std::string json = ctxpp::render_context_tree_json();
  EXPECT_EQ(json.rfind("{\"contexts\":[", 0), 0U) << json;
  EXPECT_NE(json.find("\"name\":\"request \\\"42\\\"\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"state\":\"canceled\""), std::string::npos) << json;
}

TEST_F(Observed, RecordsGoWithTheirContexts) {
  const std::size_t before = ctxpp::live_tracked_contexts();
  {
    auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
    EXPECT_EQ(ctxpp::live_tracked_contexts(), before + 1);
    cancel();
  }
  EXPECT_EQ(ctxpp::live_tracked_contexts(), before);
}

TEST_F(Observed, ManyThreadsCancellingAtOnceDeliverEveryEventOnce) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < kPerThread; ++i) {
        auto [parent, cancel] = ctxpp::with_cancel(ctxpp::background());
        auto [child, cancel_child] = ctxpp::with_cancel(parent);
        cancel();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(recorder_->of(EventKind::canceled).size(), std::size_t{kThreads * kPerThread});
  EXPECT_EQ(recorder_->of(EventKind::propagated).size(), std::size_t{kThreads * kPerThread});
}

TEST(ComponentScopeTest, WithoutObservationItOnlySetsCurrent) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  {
    ctxpp::ComponentScope scope(ctx, "db");
    EXPECT_EQ(ctxpp::current(), ctx);
    cancel();
    EXPECT_FALSE(scope.signaled_at().has_value()) << "nothing recorded when not observing";
  }
  EXPECT_EQ(ctxpp::current(), ctxpp::background());
}

TEST_F(Observed, ScopeOnAnEndedContextRecordsTheSignalAtOnce) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  cancel();
  ctxpp::ComponentScope scope(ctx, "late");
  EXPECT_TRUE(scope.signaled_at().has_value());
  EXPECT_EQ(recorder_->of(EventKind::component_signal).size(), 1U);
}

}  // namespace
