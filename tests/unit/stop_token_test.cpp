// Tests of ctxpp/stop_token.hpp and Context::stop_token(): both directions
// between contexts and std::stop_token (pitfalls 1, 11 and 16 shapes).
#include "ctxpp/stop_token.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/scoped_callback.hpp"
#include "support/test_support.hpp"

namespace {

using ctxpp_test::Gate;
using ctxpp_test::kTsan;
using ctxpp_test::run_bounded;

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::Context;
using ctxpp::with_cancel;
using ctxpp::with_stop_token;

constexpr std::chrono::steady_clock::duration kBound = ctxpp_test::kLongBound;

// ---------------------------------------------------------------------------
// Context::stop_token()

TEST(ContextStopToken, IsStopRequestedOnceTheContextIsCancelled) {
  auto [ctx, cancel] = with_cancel(background());
  const std::stop_token token = ctx.stop_token();
  EXPECT_TRUE(token.stop_possible());
  EXPECT_FALSE(token.stop_requested());
  cancel();
  EXPECT_TRUE(token.stop_requested());
  EXPECT_TRUE(ctx.stop_token().stop_requested());
}

TEST(ContextStopToken, IsStopRequestedAtOnceWhenObtainedAfterTheEnd) {
  auto [ctx, cancel] = with_cancel(background());
  cancel();
  EXPECT_TRUE(ctx.stop_token().stop_requested());
  auto [child, child_cancel] = with_cancel(ctx);  // done through its parent
  EXPECT_TRUE(child.stop_token().stop_requested());
  auto [expired, expired_cancel] = ctxpp::with_timeout(background(), 0s);
  EXPECT_TRUE(expired.stop_token().stop_requested());
}

TEST(ContextStopToken, FollowsAncestorsAndDeadlines) {
  auto [parent, parent_cancel] = with_cancel(background());
  auto [child, child_cancel] = with_cancel(parent);
  static const ctxpp::Key<int> key("k");
  const Context valued = ctxpp::with_value(child, key, 1);
  const std::stop_token via_value = valued.stop_token();
  const std::stop_token via_child = child.stop_token();
  parent_cancel();
  EXPECT_TRUE(via_child.stop_requested());
  EXPECT_TRUE(via_value.stop_requested());

  auto [timed, timed_cancel] = ctxpp::with_timeout(background(), 5ms);
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  // condition_variable_any wakes when the token is stop-requested.
  const bool predicate = cv.wait_for(lock, timed.stop_token(), kBound, [] { return false; });
  EXPECT_FALSE(predicate);
  EXPECT_TRUE(timed.done()) << "the wait ended by the bound, not by the deadline";
}

TEST(ContextStopToken, RepeatedCallsShareOneStopState) {
  auto [ctx, cancel] = with_cancel(background());
  const std::stop_token a = ctx.stop_token();
  const std::stop_token b = ctx.stop_token();
  const Context copy = ctx;
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, copy.stop_token());
}

TEST(ContextStopToken, StdStopCallbackRunsInTheCancellingThreadOrInline) {
  auto [ctx, cancel] = with_cancel(background());
  std::atomic<int> runs{0};
  std::thread::id ran_on;
  std::stop_callback callback(ctx.stop_token(), [&] {
    runs.fetch_add(1);
    ran_on = std::this_thread::get_id();
  });
  std::thread::id canceller_id;
  std::thread canceller([&, cancel = cancel] {
    canceller_id = std::this_thread::get_id();
    cancel();
  });
  canceller.join();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(ran_on, canceller_id);
  int late = 0;
  std::stop_callback inline_callback(ctx.stop_token(), [&] { ++late; });
  EXPECT_EQ(late, 1) << "registered after the end: runs inline";
}

TEST(ContextStopToken, ContextsThatCannotEndGiveATokenThatCannotStop) {
  auto [parent, cancel] = with_cancel(background());
  for (const Context& never :
       {background(), ctxpp::todo(), Context{}, ctxpp::without_cancel(parent)}) {
    const std::stop_token token = never.stop_token();
    EXPECT_FALSE(token.stop_possible());
    EXPECT_FALSE(token.stop_requested());
  }
}

TEST(ContextStopToken, ATokenOutlivingItsContextIsSafe) {
  std::stop_token token;
  {
    auto [ctx, cancel] = with_cancel(background());
    token = ctx.stop_token();
  }  // never cancelled, every handle gone: the stop_source goes with the node
  EXPECT_FALSE(token.stop_requested());
  EXPECT_FALSE(token.stop_possible()) << "no source remains that could request a stop";
  std::stop_token cancelled_token;
  {
    auto [ctx, cancel] = with_cancel(background());
    cancelled_token = ctx.stop_token();
    cancel();
  }
  EXPECT_TRUE(cancelled_token.stop_requested());
}

TEST(ContextStopToken, PublishesWritesMadeBeforeCancel) {
  const int iterations = kTsan ? 200 : 2000;
  for (int i = 0; i < iterations; ++i) {
    auto [ctx, cancel] = with_cancel(background());
    const std::stop_token token = ctx.stop_token();
    int payload = 0;  // plain memory: TSan checks the edge
    std::thread writer([&, cancel = cancel] {
      payload = 42;
      cancel();
    });
    while (!token.stop_requested()) std::this_thread::yield();
    EXPECT_EQ(payload, 42);
    writer.join();
  }
}

// ---------------------------------------------------------------------------
// with_stop_token()

TEST(WithStopToken, RequestStopCancelsTheChildAndItsDescendants) {
  auto [parent, parent_cancel] = with_cancel(background());
  std::stop_source source;
  auto [ctx, cancel] = with_stop_token(parent, source.get_token());
  auto [grandchild, gc_cancel] = with_cancel(ctx);
  EXPECT_FALSE(ctx.done());
  std::thread::id ran_on;
  int runs = 0;
  ctxpp::ScopedCallback on_grandchild(grandchild, [&]() noexcept {
    ++runs;
    ran_on = std::this_thread::get_id();
  });
  std::thread::id stopper_id;
  std::thread stopper([&] {
    stopper_id = std::this_thread::get_id();
    EXPECT_TRUE(source.request_stop());
  });
  stopper.join();
  EXPECT_TRUE(ctx.done()) << "request_stop() ends the child before it returns";
  EXPECT_EQ(ctx.err(), ctxpp::errc::canceled);
  EXPECT_EQ(ctx.cause(), ctxpp::errc::canceled);
  EXPECT_TRUE(grandchild.done());
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(ran_on, stopper_id) << "the cancel runs inline in the request_stop() thread";
  EXPECT_FALSE(parent.done()) << "the parent is not affected";
  EXPECT_FALSE(cancel.cancel());
}

TEST(WithStopToken, AnAlreadyStoppedTokenGivesADoneChild) {
  std::stop_source source;
  source.request_stop();
  auto [ctx, cancel] = with_stop_token(background(), source.get_token());
  EXPECT_TRUE(ctx.done());
  EXPECT_EQ(ctx.err(), ctxpp::errc::canceled);
  EXPECT_FALSE(cancel.cancel());
}

TEST(WithStopToken, ParentCancellationStillPropagates) {
  auto [parent, parent_cancel] = with_cancel(background());
  std::stop_source source;
  auto [ctx, cancel] = with_stop_token(parent, source.get_token());
  parent_cancel();
  EXPECT_TRUE(ctx.done());
  EXPECT_EQ(ctx.err(), ctxpp::errc::canceled);
  EXPECT_FALSE(source.stop_requested()) << "the context never requests a stop on the source";
  source.request_stop();  // does nothing harmful afterwards

  auto [timed, timed_cancel] = ctxpp::with_timeout(background(), 5ms);
  std::stop_source other;
  auto [child, child_cancel] = with_stop_token(timed, other.get_token());
  ASSERT_TRUE(child.wait_for(kBound));
  EXPECT_EQ(child.err(), ctxpp::errc::deadline_exceeded);
}

TEST(WithStopToken, OwnCancelWorksAndALaterRequestStopIsHarmless) {
  std::stop_source source;
  auto [ctx, cancel] = with_stop_token(background(), source.get_token());
  EXPECT_TRUE(cancel.cancel());
  EXPECT_TRUE(ctx.done());
  EXPECT_TRUE(source.request_stop());
  EXPECT_EQ(ctx.err(), ctxpp::errc::canceled);
}

TEST(WithStopToken, ATokenThatCannotStopGivesAPlainChild) {
  auto [parent, parent_cancel] = with_cancel(background());
  auto [ctx, cancel] = with_stop_token(parent, std::stop_token{});
  EXPECT_FALSE(ctx.done());
  parent_cancel();
  EXPECT_TRUE(ctx.done());
  auto [ctx2, cancel2] = with_stop_token(background(), std::stop_token{});
  EXPECT_TRUE(cancel2.cancel());
}

TEST(WithStopToken, DroppingTheChildUnregistersFromTheSource) {
  auto [parent, parent_cancel] = with_cancel(background());
  std::stop_source source;
  { auto [ctx, cancel] = with_stop_token(parent, source.get_token()); }
  EXPECT_EQ(ctxpp::detail::child_count(parent), 0U);
  source.request_stop();  // touches nothing of the freed child (ASan)
  EXPECT_FALSE(parent.done());
}

TEST(WithStopToken, BridgesOneContextTreeIntoAnother) {
  auto [a, cancel_a] = with_cancel(background());
  auto [b, cancel_b] = with_cancel(background());
  auto [bridged, bridged_cancel] = with_stop_token(b, a.stop_token());
  int runs = 0;
  ctxpp::ScopedCallback on_bridged(bridged, [&]() noexcept { ++runs; });
  run_bounded("cancel across a stop_token bridge", [ca = cancel_a] { ca(); });
  EXPECT_TRUE(bridged.done());
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(b.done());
}

// StopForward (the std::stop_callback inside the node) cancels the node without
// holding a reference on it. If a callback run by that cancel drops the last
// reference (here a registration deleting itself, pitfall 1's shape; a
// coroutine finishing and freeing its frame does the same), the node is freed
// while request_stop() is still propagating through it. A cancel through a
// CancelFunc, a parent or a timer always holds a reference; this path must too.
TEST(WithStopToken, ACallbackDroppingTheLastReferenceDuringRequestStopIsSafe) {
  std::stop_source source;
  std::atomic<int> runs{0};
  {
    auto [ctx, cancel] = with_stop_token(background(), source.get_token());
    struct Holder {
      ctxpp::ScopedCallback<std::function<void()>>* registration = nullptr;
    };
    auto* holder = new Holder;
    holder->registration = new ctxpp::ScopedCallback<std::function<void()>>(
        ctx, std::function<void()>([holder, &runs] {
          Holder* h = holder;
          std::atomic<int>* counter = &runs;
          delete h->registration;  // drops the last reference on the node
          delete h;
          counter->fetch_add(1);
        }));
  }  // only the registration keeps the child's node now
  run_bounded("request_stop() with a self-deleting callback", [&] { source.request_stop(); });
  EXPECT_EQ(runs.load(), 1);
}

TEST(WithStopToken, DestroyingTheChildWhileRequestStopRunsIsSafe) {
  const int iterations = kTsan ? 500 : 5000;
  auto [parent, parent_cancel] = with_cancel(background());
  std::barrier sync(2);
  int ended_by_stop = 0;
  for (int i = 0; i < iterations; ++i) {
    std::stop_source source;
    std::optional<ctxpp::WithCancel<Context, ctxpp::CancelFunc>> child;
    child.emplace(with_stop_token(parent, source.get_token()));
    std::atomic<int> runs{0};
    std::optional<ctxpp::ScopedCallback<std::function<void()>>> registration;
    registration.emplace(child->ctx, std::function<void()>([&runs] { runs.fetch_add(1); }));
    std::thread stopper([&] {
      sync.arrive_and_wait();
      source.request_stop();
    });
    sync.arrive_and_wait();
    if ((i & 1) == 0) {
      child.reset();         // the registration still holds the node
      registration.reset();  // now the last reference goes, racing request_stop()
    } else {
      registration.reset();
      child.reset();
    }
    stopper.join();
    ASSERT_LE(runs.load(), 1);
    ended_by_stop += runs.load();
  }
  EXPECT_EQ(ctxpp::detail::child_count(parent), 0U);
  std::printf("callback ran before removal in %d of %d rounds\n", ended_by_stop, iterations);
}

TEST(WithStopToken, JthreadRequestStopCancelsTheWorkersContext) {
  auto [parent, parent_cancel] = with_cancel(background());
  std::error_code seen;
  bool finished_in_time = false;
  Gate started;
  {
    std::jthread worker([parent = parent, &seen, &finished_in_time, &started](std::stop_token st) {
      auto [ctx, cancel] = with_stop_token(parent, std::move(st));
      started.open();
      finished_in_time = ctx.wait_for(kBound);  // "serve until told to stop"
      seen = ctx.err();
    });
    ASSERT_TRUE(started.wait());
  }  // ~jthread: request_stop() and join()
  EXPECT_TRUE(finished_in_time);
  EXPECT_EQ(seen, ctxpp::errc::canceled);
  EXPECT_FALSE(parent.done());
}

TEST(WithStopToken, JthreadStopsWhenTheParentContextIsCancelled) {
  // The other direction: the worker's context also ends with the parent.
  auto [parent, parent_cancel] = with_cancel(background());
  std::error_code seen;
  Gate started;
  std::jthread worker([parent = parent, &seen, &started](std::stop_token st) {
    auto [ctx, cancel] = with_stop_token(parent, std::move(st));
    started.open();
    (void)ctx.wait_for(kBound);
    seen = ctx.err();
  });
  ASSERT_TRUE(started.wait());
  parent_cancel();
  worker.join();
  EXPECT_EQ(seen, ctxpp::errc::canceled);
}

}  // namespace
