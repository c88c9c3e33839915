// Tests of ctxpp/context.hpp: every rule of design/api.md with its corner cases,
// and pitfalls 9-14, 17-20, 22 and 31-32 of design/pitfalls.md that concern the core
// (the callback pitfalls 1-8 live in scoped_callback_test.cpp / after_func_test.cpp).
// Internal guarantees go through the detail hooks child_count() and pending_timers().
// Nothing here sleeps to synchronise: waits are on the context, bounded by kBound.
#include "ctxpp/context.hpp"

#include <gtest/gtest.h>

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <sstream>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "ctxpp/scoped_callback.hpp"
#include "support/test_support.hpp"

// ---------------------------------------------------------------------------
// Allocation counting (pitfall 32). Each test file is its own executable, so the
// replacement applies to this binary only. The counter is per thread: the timer
// thread and other tests' threads never disturb a measurement.
namespace {

using ctxpp_test::kAsan;
using ctxpp_test::kTsan;
thread_local std::size_t t_allocations = 0;

void* counted_alloc(std::size_t size) {
  ++t_allocations;
  if (void* p = std::malloc(size != 0 ? size : 1)) return p;
  throw std::bad_alloc();
}

void* counted_aligned_alloc(std::size_t size, std::align_val_t align) {
  ++t_allocations;
  const auto alignment = static_cast<std::size_t>(align);
  const std::size_t rounded =
      (std::max<std::size_t>(size, 1) + alignment - 1) / alignment * alignment;
  if (void* p = std::aligned_alloc(alignment, rounded)) return p;
  throw std::bad_alloc();
}
}  // namespace

// GCC 12 at -O1+ inlines these into callers and then flags new + free as a
// mismatch (-Wmismatched-new-delete); the pair is consistent by construction.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t size) { return counted_alloc(size); }
void* operator new[](std::size_t size) { return counted_alloc(size); }
void* operator new(std::size_t size, const std::nothrow_t& /*tag*/) noexcept {
  ++t_allocations;
  return std::malloc(size != 0 ? size : 1);
}
void* operator new[](std::size_t size, const std::nothrow_t& /*tag*/) noexcept {
  ++t_allocations;
  return std::malloc(size != 0 ? size : 1);
}
void* operator new(std::size_t size, std::align_val_t align) {
  return counted_aligned_alloc(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return counted_aligned_alloc(size, align);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t /*size*/) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t /*size*/) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t& /*tag*/) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t& /*tag*/) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t /*align*/) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t /*align*/) noexcept { std::free(p); }
void operator delete(void* p, std::size_t /*size*/, std::align_val_t /*align*/) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t /*size*/, std::align_val_t /*align*/) noexcept {
  std::free(p);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace {

// Sanitizers slow the big loops by 5-20x: cut them by 10 there.
constexpr std::size_t scaled(std::size_t n) { return (kTsan || kAsan) ? n / 10 : n; }

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::CancelCauseFunc;
using ctxpp::CancelFunc;
using ctxpp::clock;
using ctxpp::Context;
using ctxpp::errc;
using ctxpp::Key;
using ctxpp::merge;
using ctxpp::todo;
using ctxpp::with_cancel;
using ctxpp::with_cancel_cause;
using ctxpp::with_deadline;
using ctxpp::with_deadline_cause;
using ctxpp::with_timeout;
using ctxpp::with_timeout_cause;
using ctxpp::with_value;
using ctxpp::without_cancel;
using ctxpp::detail::child_count;
using ctxpp::detail::pending_timers;
using ctxpp_test::process_thread_count;

using Cancellable = ctxpp::WithCancel<Context, CancelFunc>;
using CauseCancellable = ctxpp::WithCancel<Context, CancelCauseFunc>;
using Contexts = std::initializer_list<const Context*>;

// Generous bound for anything that could hang: a correct library is done in
// microseconds, a deadlocked one never.
constexpr clock::duration kBound = 10s;

std::error_code canceled() { return ctxpp::make_error_code(errc::canceled); }
std::error_code deadline_exceeded() { return ctxpp::make_error_code(errc::deadline_exceeded); }
// Causes used by the tests: any error_code outside ctxpp's category.
std::error_code cause_a() { return std::make_error_code(std::errc::connection_reset); }
std::error_code cause_b() { return std::make_error_code(std::errc::broken_pipe); }
std::error_code cause_c() { return std::make_error_code(std::errc::host_unreachable); }

// Threads of this process with their state letter and name, and the timer count:
// printed when a bounded wait fails, so a hang shows who is stuck where.
std::string dump_process() {
  std::ostringstream out;
  out << "pending_timers=" << pending_timers() << "; threads:";
  out << ctxpp_test::describe_threads();
  return out.str();
}

// Resident set size in bytes (second field of /proc/self/statm, in pages).
std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size = 0;
  std::size_t resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// Registrations linked on ctx's signal node. Internal (node.hpp layout); call it
// only while no other thread touches ctx.
std::size_t registrations_on(const Context& ctx) {
  const ctxpp::detail::SignalNode* node = ctxpp::detail::Access::signal(ctx);
  std::size_t n = 0;
  for (const ctxpp::detail::CallbackBase* cb = node != nullptr ? node->callbacks_ : nullptr;
       cb != nullptr; cb = cb->next_) {
    ++n;
  }
  return n;
}

// Runs body on a fresh thread with a small stack: code that recurses per tree
// level overflows it long before depth 10^5, where an 8 MB main stack might not.
void run_on_small_stack(const std::function<void()>& body, std::size_t stack_bytes = 1U << 20U) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, stack_bytes), 0);
  pthread_t thread;
  auto trampoline = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&thread, &attr, trampoline, const_cast<std::function<void()>*>(&body)),
            0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

// Spins (yielding) until ctx is done or the bound passes: an observer that polls
// done() rather than sleeping in wait().
bool poll_until_done(const Context& ctx, clock::duration bound = kBound) {
  const clock::time_point until = clock::now() + bound;
  while (!ctx.done()) {
    if (clock::now() >= until) return false;
    std::this_thread::yield();
  }
  return true;
}

void expect_background_like(const Context& ctx, const char* what) {
  static const Key<int> key("background-like");
  EXPECT_FALSE(ctx.done()) << what;
  EXPECT_FALSE(ctx.err()) << what;
  EXPECT_FALSE(ctx.cause()) << what;
  EXPECT_FALSE(ctx.deadline().has_value()) << what;
  EXPECT_EQ(ctx.value(key), nullptr) << what;
  EXPECT_FALSE(ctx.wait_for(clock::duration::zero())) << what;
  EXPECT_FALSE(ctx.wait_until(clock::now() - 1s)) << what;
}

// Counts live instances and destructions of a value type.
struct Tracked {
  static inline std::atomic<int> live{0};
  static inline std::atomic<int> destroyed{0};
  int payload;
  explicit Tracked(int p) : payload(p) { ++live; }
  Tracked(const Tracked& other) : payload(other.payload) { ++live; }
  Tracked(Tracked&& other) noexcept : payload(other.payload) { ++live; }
  Tracked& operator=(const Tracked&) = delete;
  Tracked& operator=(Tracked&&) = delete;
  ~Tracked() {
    --live;
    ++destroyed;
  }
  static void reset() {
    live = 0;
    destroyed = 0;
  }
};

// ---------------------------------------------------------------------------
// background(), todo(), default and moved-from handles.

TEST(Background, IsNeverDoneHasNoDeadlineAndNoValues) {
  expect_background_like(background(), "background()");
  expect_background_like(todo(), "todo()");
  expect_background_like(Context{}, "Context{}");
  expect_background_like(Context(), "Context()");
}

TEST(Background, WaitForReturnsFalseAfterTheBound) {
  for (const Context& ctx : {background(), todo(), Context{}}) {
    const clock::time_point start = clock::now();
    EXPECT_FALSE(ctx.wait_for(20ms));
    EXPECT_GE(clock::now() - start, 20ms) << "wait_for returned before its bound";
    const clock::time_point until = clock::now() + 10ms;
    EXPECT_FALSE(ctx.wait_until(until));
    EXPECT_GE(clock::now(), until) << "wait_until returned before its time";
  }
}

TEST(Background, NonPositiveWaitReturnsAtOnce) {
  const clock::time_point start = clock::now();
  EXPECT_FALSE(background().wait_for(clock::duration::zero()));
  EXPECT_FALSE(background().wait_for(-1s));
  EXPECT_FALSE(background().wait_for(clock::duration::min()));
  EXPECT_FALSE(background().wait_until(clock::time_point::min()));
  EXPECT_FALSE(todo().wait_until(clock::now()));
  EXPECT_LT(clock::now() - start, kBound);
}

TEST(Background, ChildrenOfTodoAndDefaultBehaveLikeChildrenOfBackground) {
  for (const Context& root : {background(), todo(), Context{}}) {
    auto child = with_cancel(root);
    EXPECT_FALSE(child.ctx.done());
    EXPECT_TRUE(child.cancel.cancel());
    EXPECT_EQ(child.ctx.err(), canceled());
    expect_background_like(root, "root after its child was cancelled");
  }
}

TEST(Context, MovedFromBehavesLikeBackground) {
  auto pair = with_deadline(background(), clock::now() - 1s);
  ASSERT_TRUE(pair.ctx.done());
  Context moved = std::move(pair.ctx);
  EXPECT_TRUE(moved.done());
  expect_background_like(pair.ctx, "moved-from Context");  // NOLINT(bugprone-use-after-move)

  Context target;
  auto other = with_cancel(background());
  other.cancel();
  target = std::move(other.ctx);
  EXPECT_TRUE(target.done());
  expect_background_like(other.ctx, "moved-from by assignment");  // NOLINT(bugprone-use-after-move)
}

TEST(Context, CopiesObserveTheSameNode) {
  static const Key<int> key("copies");
  auto pair = with_cancel(with_value(background(), key, 7));
  const Context copy = pair.ctx;  // NOLINT(performance-unnecessary-copy-initialization)
  Context assigned;
  assigned = copy;
  EXPECT_EQ(copy.value(key), pair.ctx.value(key));
  pair.cancel();
  EXPECT_TRUE(copy.done());
  EXPECT_TRUE(assigned.done());
  EXPECT_EQ(assigned.err(), canceled());
}

// ---------------------------------------------------------------------------
// with_cancel: propagation, isolation, already-done parents.

TEST(WithCancel, ChildOfBackgroundStartsLive) {
  auto pair = with_cancel(background());
  EXPECT_FALSE(pair.ctx.done());
  EXPECT_FALSE(pair.ctx.err());
  EXPECT_FALSE(pair.ctx.cause());
  EXPECT_FALSE(pair.ctx.deadline().has_value());
}

TEST(WithCancel, CancelEndsContextWithCanceled) {
  auto pair = with_cancel(background());
  pair.cancel();
  EXPECT_TRUE(pair.ctx.done());
  EXPECT_EQ(pair.ctx.err(), canceled());
  EXPECT_EQ(pair.ctx.cause(), canceled()) << "without a cause, cause() equals err()";
  EXPECT_TRUE(pair.ctx.wait_for(clock::duration::zero()));
}

TEST(WithCancel, ParentCancelReachesChildrenAndGrandchildren) {
  static const Key<int> key("between");
  auto parent = with_cancel(background());
  auto child = with_cancel(parent.ctx);
  auto through_value = with_cancel(with_value(child.ctx, key, 1));
  auto grandchild = with_cancel_cause(through_value.ctx);
  auto timer = with_timeout(grandchild.ctx, 1h);
  parent.cancel();
  for (const Context* ctx :
       {&parent.ctx, &child.ctx, &through_value.ctx, &grandchild.ctx, &timer.ctx}) {
    EXPECT_TRUE(ctx->done());
    EXPECT_EQ(ctx->err(), canceled());
    EXPECT_EQ(ctx->cause(), canceled());
  }
}

TEST(WithCancel, ChildCancelAffectsNeitherParentNorSiblings) {
  auto parent = with_cancel(background());
  auto first = with_cancel(parent.ctx);
  auto second = with_cancel(parent.ctx);
  auto nephew = with_cancel(second.ctx);
  first.cancel();
  EXPECT_TRUE(first.ctx.done());
  EXPECT_FALSE(parent.ctx.done());
  EXPECT_FALSE(second.ctx.done());
  EXPECT_FALSE(nephew.ctx.done());
  EXPECT_EQ(child_count(parent.ctx), 1U);
  // The parent can still make children, and they are live.
  auto later = with_cancel(parent.ctx);
  EXPECT_FALSE(later.ctx.done());
}

TEST(WithCancel, ChildOfDoneParentIsDoneAtOnceWithParentsErrAndCause) {
  auto by_cancel = with_cancel(background());
  by_cancel.cancel();
  auto by_cause = with_cancel_cause(background());
  by_cause.cancel(cause_a());
  auto by_deadline = with_deadline(background(), clock::now() - 1ms);
  auto by_deadline_cause = with_deadline_cause(background(), clock::now() - 1ms, cause_b());

  struct Case {
    const Context* parent;
    std::error_code err;
    std::error_code cause;
  };
  for (const Case& c :
       {Case{&by_cancel.ctx, canceled(), canceled()}, Case{&by_cause.ctx, canceled(), cause_a()},
        Case{&by_deadline.ctx, deadline_exceeded(), deadline_exceeded()},
        Case{&by_deadline_cause.ctx, deadline_exceeded(), cause_b()}}) {
    const std::size_t timers = pending_timers();
    auto plain = with_cancel(*c.parent);
    auto with_cause = with_cancel_cause(*c.parent);
    auto timer = with_timeout(*c.parent, 1h);
    auto timer_cause = with_timeout_cause(*c.parent, 1h, cause_c());
    auto merged = merge(*c.parent, background());
    auto grandchild = with_cancel(plain.ctx);
    for (const Context* ctx : {&plain.ctx, &with_cause.ctx, &timer.ctx, &timer_cause.ctx,
                               &merged.ctx, &grandchild.ctx}) {
      EXPECT_TRUE(ctx->done());
      EXPECT_EQ(ctx->err(), c.err);
      EXPECT_EQ(ctx->cause(), c.cause);
    }
    EXPECT_EQ(pending_timers(), timers) << "a child born done must not arm a timer";
    EXPECT_EQ(child_count(*c.parent), 0U) << "a child born done is not linked";
    // Its own cancel neither wins nor changes anything.
    EXPECT_FALSE(plain.cancel.cancel());
    EXPECT_FALSE(with_cause.cancel.cancel(cause_c()));
    EXPECT_FALSE(timer_cause.cancel.cancel());
    EXPECT_EQ(with_cause.ctx.cause(), c.cause);
  }
}

TEST(WithCancel, CancelEndsEveryDescendantOfADeepChainBeforeReturning) {
  auto root = with_cancel(background());
  std::vector<Cancellable> chain;
  Context tip = root.ctx;
  for (int i = 0; i < 2000; ++i) {
    chain.push_back(with_cancel(tip));
    tip = chain.back().ctx;
  }
  root.cancel();
  for (const auto& link : chain) ASSERT_TRUE(link.ctx.done());
  EXPECT_EQ(tip.err(), canceled());
}

TEST(WithCancel, CancelEndsEveryDescendantOfAWideTreeBeforeReturning) {
  auto root = with_cancel(background());
  std::vector<Cancellable> children;
  std::vector<Cancellable> grandchildren;
  for (int i = 0; i < 20000; ++i) children.push_back(with_cancel(root.ctx));
  for (int i = 0; i < 20000; i += 7) grandchildren.push_back(with_cancel(children[i].ctx));
  EXPECT_EQ(child_count(root.ctx), children.size());
  root.cancel();
  EXPECT_EQ(child_count(root.ctx), 0U);
  EXPECT_TRUE(std::all_of(children.begin(), children.end(), [](const Cancellable& c) {
    return c.ctx.done() && c.ctx.err() == canceled();
  }));
  EXPECT_TRUE(std::all_of(grandchildren.begin(), grandchildren.end(),
                          [](const Cancellable& c) { return c.ctx.done(); }));
}

TEST(WithCancel, CancelEndsEveryNodeOfARandomMixedTree) {
  static const Key<int> key("mixed");
  std::mt19937 rng(12345);
  auto root = with_cancel(background());
  std::vector<Context> nodes{root.ctx};
  std::vector<CancelFunc> cancels;
  std::vector<CancelCauseFunc> cause_cancels;
  const std::size_t timers = pending_timers();
  for (int i = 0; i < 5000; ++i) {
    const Context parent = nodes[rng() % nodes.size()];
    switch (rng() % 5) {
      case 0: {
        auto c = with_cancel(parent);
        nodes.push_back(c.ctx);
        cancels.push_back(c.cancel);
        break;
      }
      case 1: {
        auto c = with_cancel_cause(parent);
        nodes.push_back(c.ctx);
        cause_cancels.push_back(c.cancel);
        break;
      }
      case 2: {
        auto c = with_timeout(parent, 1h + std::chrono::seconds(rng() % 100));
        nodes.push_back(c.ctx);
        cancels.push_back(c.cancel);
        break;
      }
      case 3:
        nodes.push_back(with_value(parent, key, i));
        break;
      default: {
        auto c = merge(parent, background());
        nodes.push_back(c.ctx);
        cancels.push_back(c.cancel);
        break;
      }
    }
  }
  EXPECT_GT(pending_timers(), timers);
  root.cancel();
  for (const Context& ctx : nodes) {
    ASSERT_TRUE(ctx.done());
    ASSERT_EQ(ctx.err(), canceled());
    ASSERT_EQ(ctx.cause(), canceled());
  }
  EXPECT_EQ(pending_timers(), timers) << "a cancelled subtree must release its timers at once";
}

// ---------------------------------------------------------------------------
// Unlinking: a long-lived parent does not grow (pitfall 14).

TEST(Cancel, UnlinksChildFromParent) {
  auto parent = with_cancel(background());
  auto child = with_cancel(parent.ctx);
  auto cause_child = with_cancel_cause(parent.ctx);
  auto timer_child = with_timeout(parent.ctx, 1h);
  auto merge_child = merge(parent.ctx, background());
  EXPECT_EQ(child_count(parent.ctx), 4U);
  child.cancel();
  EXPECT_EQ(child_count(parent.ctx), 3U);
  cause_child.cancel(cause_a());
  timer_child.cancel();
  merge_child.cancel();
  EXPECT_EQ(child_count(parent.ctx), 0U);
}

TEST(Cancel, UnlinksChildLinkedThroughAValueNode) {
  static const Key<int> key("unlink");
  auto parent = with_cancel(background());
  auto child = with_cancel(with_value(parent.ctx, key, 1));
  EXPECT_EQ(child_count(parent.ctx), 1U) << "value nodes link their children to the signal node";
  child.cancel();
  EXPECT_EQ(child_count(parent.ctx), 0U);
}

TEST(Cancel, DroppingEveryHandleOfAnUncancelledChildUnlinksIt) {
  auto parent = with_cancel(background());
  {
    auto child = with_cancel(parent.ctx);
    auto grandchild = with_timeout(child.ctx, 1h);
    EXPECT_EQ(child_count(parent.ctx), 1U);
  }
  EXPECT_EQ(child_count(parent.ctx), 0U) << "pitfall 14: dropped child left in the parent";

  // Dropping only the Context keeps the node (the CancelFunc owns it) ...
  CancelFunc kept_cancel;
  {
    auto child = with_cancel(parent.ctx);
    kept_cancel = child.cancel;
  }
  EXPECT_EQ(child_count(parent.ctx), 1U);
  // ... and the CancelFunc still works and unlinks it.
  EXPECT_TRUE(kept_cancel.cancel());
  EXPECT_EQ(child_count(parent.ctx), 0U);

  // Dropping only the CancelFunc keeps the child linked and reachable by the parent.
  Context kept_ctx;
  {
    auto child = with_cancel(parent.ctx);
    kept_ctx = child.ctx;
  }
  EXPECT_EQ(child_count(parent.ctx), 1U);
  parent.cancel();
  EXPECT_TRUE(kept_ctx.done());
  EXPECT_EQ(kept_ctx.err(), canceled());
  EXPECT_EQ(child_count(parent.ctx), 0U);
}

TEST(Cancel, ParentCancelUnlinksAllChildren) {
  auto parent = with_cancel(background());
  std::vector<Cancellable> children;
  for (int i = 0; i < 100; ++i) children.push_back(with_cancel(parent.ctx));
  parent.cancel();
  EXPECT_EQ(child_count(parent.ctx), 0U);
  // The children's own cancel is now a no-op that reports "not me".
  for (auto& child : children) EXPECT_FALSE(child.cancel.cancel());
}

TEST(Cancel, MillionChildrenOfALongLivedParentLeaveNoTrace) {
  auto parent = with_cancel(background());
  const std::size_t n = scaled(1000000);
  // Warm up the allocator so the baseline includes its steady-state arenas.
  for (std::size_t i = 0; i < 10000; ++i) with_cancel(parent.ctx).cancel();
  const std::size_t rss_before = rss_bytes();
  for (std::size_t i = 0; i < n; ++i) {
    auto child = with_cancel(parent.ctx);
    child.cancel();
  }
  // Also children that are dropped uncancelled, and timer children.
  for (std::size_t i = 0; i < n / 4; ++i) {
    auto child = with_cancel(parent.ctx);
  }
  for (std::size_t i = 0; i < n / 4; ++i) {
    auto child = with_timeout(parent.ctx, 1h);
    child.cancel();
  }
  const std::size_t rss_after = rss_bytes();
  EXPECT_EQ(child_count(parent.ctx), 0U);
  EXPECT_FALSE(parent.ctx.done());
  if (!kAsan) {  // ASan's quarantine keeps freed memory resident on purpose.
    constexpr std::size_t kTolerance = 8U << 20U;  // a 64-byte leak per child is 64 MB
    EXPECT_LE(rss_after, rss_before + kTolerance)
        << "RSS grew from " << rss_before << " to " << rss_after << " bytes";
  }
}

// ---------------------------------------------------------------------------
// CancelFunc / CancelCauseFunc (pitfall 9).

TEST(CancelFunc, CancelReturnsTrueOnlyForTheFirstCall) {
  auto pair = with_cancel(background());
  const CancelFunc copy = pair.cancel;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_TRUE(copy.cancel());
  EXPECT_FALSE(copy.cancel());
  EXPECT_FALSE(pair.cancel.cancel());
  pair.cancel();  // operator() after the end: no effect
  EXPECT_EQ(pair.ctx.err(), canceled());

  auto cause_pair = with_cancel_cause(background());
  const CancelCauseFunc cause_copy = cause_pair.cancel;  // NOLINT
  EXPECT_TRUE(cause_pair.cancel.cancel(cause_a()));
  EXPECT_FALSE(cause_copy.cancel(cause_b()));
  EXPECT_FALSE(cause_pair.cancel.cancel({}));
  EXPECT_EQ(cause_pair.ctx.cause(), cause_a());
}

TEST(CancelFunc, CancelReturnsFalseWhenTheContextEndedOtherwise) {
  auto parent = with_cancel(background());
  auto child = with_cancel(parent.ctx);
  auto cause_child = with_cancel_cause(parent.ctx);
  parent.cancel();
  EXPECT_FALSE(child.cancel.cancel()) << "ended by its parent, not by this call";
  EXPECT_FALSE(cause_child.cancel.cancel(cause_a()));
  EXPECT_EQ(cause_child.ctx.cause(), canceled());

  auto expired = with_timeout(background(), -1s);
  EXPECT_FALSE(expired.cancel.cancel()) << "ended by its deadline";
  EXPECT_EQ(expired.ctx.err(), deadline_exceeded());
}

TEST(CancelFunc, ExactlyOneOfManyConcurrentCallsWins) {
  for (int round = 0; round < 200; ++round) {
    auto pair = with_cancel_cause(background());
    std::atomic<int> winners{0};
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, cancel = pair.cancel, t] {
        ready.fetch_add(1);
        while (ready.load() < 4) std::this_thread::yield();
        if (cancel.cancel(t % 2 == 0 ? cause_a() : cause_b())) winners.fetch_add(1);
        EXPECT_TRUE(pair.ctx.done()) << "a cancel returned before the context was done";
      });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(winners.load(), 1);
    EXPECT_TRUE(pair.ctx.cause() == cause_a() || pair.ctx.cause() == cause_b());
  }
}

TEST(CancelFunc, LosingCallReturnsWithTheChildUnlinkedFromItsParent) {
  // The timer thread ends each child; its later cancel() loses the race and must
  // still return only once the child is gone from its parent ("a cancelled child
  // is unlinked from its parent at once").
  auto parent = with_cancel(background());
  for (int i = 0; i < 200; ++i) {
    auto child = with_timeout(parent.ctx, 100us);
    ASSERT_TRUE(child.ctx.wait_for(kBound));
    EXPECT_FALSE(child.cancel.cancel());
    ASSERT_EQ(ctxpp::detail::child_count(parent.ctx), 0U) << "round " << i;
  }
}

TEST(CancelFunc, LosingCallReturnsOnlyAfterTheWholeSubtreeIsDone) {
  // context.hpp: "A call that lost the race to another canceller waits until that
  // canceller has finished the subtree"; api.md: "cancel() has cancelled every
  // descendant by the time it returns".
  // B ends child C and is held inside C's propagation by an inline callback;
  // A then ends parent P (C is already ended by B, so A has to wait for B);
  // a third call on P loses to A and must not return while C's subtree is live.
  auto parent = with_cancel(background());
  auto child = with_cancel(parent.ctx);
  std::vector<Cancellable> below;
  for (int i = 0; i < 100; ++i) {
    below.push_back(with_cancel(child.ctx));
    below.push_back(with_cancel(below.back().ctx));  // a grandchild under each
  }
  auto gate = std::make_shared<ctxpp_test::HoldGate>();
  auto hold = [gate]() noexcept { gate->hold(kBound); };
  ctxpp::ScopedCallback<decltype(hold)> holder(child.ctx, hold);
  std::thread b([cancel = child.cancel] { cancel(); });
  ASSERT_TRUE(gate->wait_entered(kBound)) << dump_process();
  std::thread a([cancel = parent.cancel] { cancel(); });
  ASSERT_TRUE(poll_until_done(parent.ctx)) << dump_process();
  // The losing call runs on its own thread: with a correct library it blocks
  // until B is released, which only this thread can do.
  struct Outcome {
    std::atomic<bool> returned{false};
    std::atomic<bool> won{false};
    std::atomic<long> live{0};
  };
  auto outcome = std::make_shared<Outcome>();
  std::thread loser([&below, outcome, cancel = parent.cancel] {
    outcome->won = cancel.cancel();
    outcome->live = std::count_if(below.begin(), below.end(),
                                  [](const Cancellable& c) { return !c.ctx.done(); });
    outcome->returned = true;
  });
  // Give a buggy loser time to return early; a correct one stays blocked.
  const clock::time_point until = clock::now() + 100ms;
  while (!outcome->returned && clock::now() < until) std::this_thread::yield();
  gate->release();
  loser.join();
  a.join();
  b.join();
  EXPECT_FALSE(outcome->won.load());
  EXPECT_EQ(outcome->live.load(), 0)
      << "a losing cancel() returned while descendants of its context were live";
  EXPECT_TRUE(
      std::all_of(below.begin(), below.end(), [](const Cancellable& c) { return c.ctx.done(); }));
}

TEST(CancelFunc, LosingCallWaitsAlsoForALargeSubtreeEndedElsewhere) {
  // The same rule without a callback: B walks a large subtree, A ends the parent,
  // a third call loses to A.
  const std::size_t fan_out = scaled(200000);
  int violations = 0;
  for (int round = 0; round < 5; ++round) {
    auto parent = with_cancel(background());
    auto child = with_cancel(parent.ctx);
    std::vector<Cancellable> below;
    below.reserve(fan_out);
    for (std::size_t i = 0; i < fan_out; ++i) below.push_back(with_cancel(child.ctx));
    std::thread b([cancel = child.cancel] { cancel(); });
    ASSERT_TRUE(poll_until_done(child.ctx)) << dump_process();
    std::thread a([cancel = parent.cancel] { cancel(); });
    ASSERT_TRUE(poll_until_done(parent.ctx)) << dump_process();
    const bool won = parent.cancel.cancel();
    const auto live = std::count_if(below.begin(), below.end(),
                                    [](const Cancellable& c) { return !c.ctx.done(); });
    a.join();
    b.join();
    EXPECT_FALSE(won);
    if (live != 0) {
      ++violations;
      ADD_FAILURE() << "round " << round << ": a losing cancel() returned while " << live << " of "
                    << fan_out << " descendants were live";
    }
  }
  EXPECT_EQ(violations, 0);
}

TEST(CancelFunc, DefaultAndMovedFromAreNoOps) {
  const CancelFunc none;
  EXPECT_FALSE(none.cancel());
  none();
  const CancelCauseFunc no_cause;
  EXPECT_FALSE(no_cause.cancel(cause_a()));
  no_cause(cause_a());

  auto pair = with_cancel(background());
  CancelFunc moved = std::move(pair.cancel);
  EXPECT_FALSE(pair.cancel.cancel());  // NOLINT(bugprone-use-after-move)
  pair.cancel();                       // NOLINT(bugprone-use-after-move)
  EXPECT_FALSE(pair.ctx.done()) << "a moved-from CancelFunc cancelled its old context";
  EXPECT_TRUE(moved.cancel());
  EXPECT_TRUE(pair.ctx.done());

  auto cause_pair = with_cancel_cause(background());
  CancelCauseFunc cause_moved;
  cause_moved = std::move(cause_pair.cancel);
  EXPECT_FALSE(cause_pair.cancel.cancel(cause_a()));  // NOLINT(bugprone-use-after-move)
  EXPECT_FALSE(cause_pair.ctx.done());
  EXPECT_TRUE(cause_moved.cancel(cause_b()));
  EXPECT_EQ(cause_pair.ctx.cause(), cause_b());
}

TEST(CancelFunc, CopyAssignmentCancelsTheSameContext) {
  auto first = with_cancel(background());
  auto second = with_cancel(background());
  CancelFunc f = first.cancel;
  f = second.cancel;  // f now names the second context only
  EXPECT_TRUE(f.cancel());
  EXPECT_FALSE(first.ctx.done());
  EXPECT_TRUE(second.ctx.done());
}

TEST(CancelFunc, WorksAfterEveryContextHandleIsGone) {
  auto parent = with_cancel(background());
  CancelFunc cancel;
  {
    auto child = with_cancel(parent.ctx);
    cancel = child.cancel;
  }
  EXPECT_TRUE(cancel.cancel());
  EXPECT_EQ(child_count(parent.ctx), 0U);
}

// ---------------------------------------------------------------------------
// cause() (pitfalls 12 and 20).

TEST(Cause, CauseCancelReportsTheGivenCauseAndCanceledErr) {
  auto pair = with_cancel_cause(background());
  auto child = with_cancel(pair.ctx);
  EXPECT_FALSE(pair.ctx.cause()) << "a live context has no cause";
  pair.cancel(cause_a());
  EXPECT_EQ(pair.ctx.err(), canceled());
  EXPECT_EQ(pair.ctx.cause(), cause_a());
  EXPECT_EQ(child.ctx.err(), canceled());
  EXPECT_EQ(child.ctx.cause(), cause_a());
}

TEST(Cause, EmptyCauseMeansCanceled) {
  auto pair = with_cancel_cause(background());
  auto child = with_cancel_cause(pair.ctx);
  EXPECT_TRUE(pair.cancel.cancel(std::error_code{}));
  EXPECT_EQ(pair.ctx.cause(), canceled());
  EXPECT_EQ(child.ctx.cause(), canceled());
}

TEST(Cause, ParentCancelledFirstBothReportTheParentsCause) {
  auto parent = with_cancel_cause(background());
  auto child = with_cancel_cause(parent.ctx);
  parent.cancel(cause_a());
  EXPECT_FALSE(child.cancel.cancel(cause_b()));
  EXPECT_EQ(parent.ctx.cause(), cause_a());
  EXPECT_EQ(child.ctx.cause(), cause_a());
}

TEST(Cause, ChildCancelledFirstKeepsItsOwnCause) {
  auto parent = with_cancel_cause(background());
  auto child = with_cancel_cause(parent.ctx);
  auto grandchild = with_cancel(child.ctx);
  child.cancel(cause_b());
  parent.cancel(cause_a());
  EXPECT_EQ(child.ctx.cause(), cause_b());
  EXPECT_EQ(grandchild.ctx.cause(), cause_b());
  EXPECT_EQ(parent.ctx.cause(), cause_a());
}

TEST(Cause, PlainCancelUnderACauseParentReportsCanceled) {
  auto parent = with_cancel_cause(background());
  auto child = with_cancel(parent.ctx);
  child.cancel();
  parent.cancel(cause_a());
  EXPECT_EQ(child.ctx.cause(), canceled());
  EXPECT_EQ(parent.ctx.cause(), cause_a());
}

TEST(Cause, DeadlineCauseIsReportedWhenTheDeadlineFires) {
  auto pair = with_timeout_cause(background(), 1ms, cause_a());
  auto child = with_cancel(pair.ctx);
  ASSERT_TRUE(child.ctx.wait_for(kBound)) << dump_process();
  EXPECT_EQ(pair.ctx.err(), deadline_exceeded());
  EXPECT_EQ(pair.ctx.cause(), cause_a());
  EXPECT_EQ(child.ctx.err(), deadline_exceeded());
  EXPECT_EQ(child.ctx.cause(), cause_a());
}

TEST(Cause, DeadlineCausesCancelFuncDoesNotSetTheCause) {
  auto pair = with_deadline_cause(background(), clock::now() + 1h, cause_a());
  auto child = with_cancel(pair.ctx);
  EXPECT_TRUE(pair.cancel.cancel());
  EXPECT_EQ(pair.ctx.err(), canceled());
  EXPECT_EQ(pair.ctx.cause(), canceled()) << "Go: WithDeadlineCause's cancel sets no cause";
  EXPECT_EQ(child.ctx.cause(), canceled());
}

TEST(Cause, PastDeadlineCauseIsReportedAtOnce) {
  auto pair = with_deadline_cause(background(), clock::now() - 1s, cause_a());
  ASSERT_TRUE(pair.ctx.done());
  EXPECT_EQ(pair.ctx.err(), deadline_exceeded());
  EXPECT_EQ(pair.ctx.cause(), cause_a());
  EXPECT_FALSE(pair.cancel.cancel());
  EXPECT_EQ(pair.ctx.cause(), cause_a());

  auto zero = with_timeout_cause(background(), clock::duration::zero(), cause_b());
  ASSERT_TRUE(zero.ctx.done());
  EXPECT_EQ(zero.ctx.cause(), cause_b());
}

TEST(Cause, DeadlineCauseWithEmptyCauseReportsDeadlineExceeded) {
  auto pair = with_timeout_cause(background(), -1s, std::error_code{});
  ASSERT_TRUE(pair.ctx.done());
  EXPECT_EQ(pair.ctx.cause(), deadline_exceeded());
}

TEST(Cause, DeadlineReasonPropagatesToEveryDescendant) {
  static const Key<int> key("deadline-reason");
  auto timer = with_timeout_cause(background(), 2ms, cause_a());
  auto child = with_cancel(timer.ctx);
  auto cause_child = with_cancel_cause(child.ctx);
  auto valued = with_cancel(with_value(cause_child.ctx, key, 1));
  auto nested_timer = with_timeout(valued.ctx, 1h);
  auto merged = merge(nested_timer.ctx, background());
  ASSERT_TRUE(merged.ctx.wait_for(kBound)) << dump_process();
  for (const Context* ctx :
       {&child.ctx, &cause_child.ctx, &valued.ctx, &nested_timer.ctx, &merged.ctx}) {
    EXPECT_EQ(ctx->err(), deadline_exceeded()) << "pitfall 20: not a generic cancel";
    EXPECT_EQ(ctx->cause(), cause_a());
  }
  // A child made after the end inherits the same outcome.
  auto late = with_cancel(valued.ctx);
  EXPECT_EQ(late.ctx.err(), deadline_exceeded());
  EXPECT_EQ(late.ctx.cause(), cause_a());
}

TEST(Cause, DeadlineWithoutCauseReportsDeadlineExceededBelow) {
  auto timer = with_timeout(background(), 1ms);
  auto child = with_cancel_cause(timer.ctx);
  ASSERT_TRUE(child.ctx.wait_for(kBound)) << dump_process();
  EXPECT_EQ(child.ctx.err(), deadline_exceeded());
  EXPECT_EQ(child.ctx.cause(), deadline_exceeded());
}

TEST(Cause, ChildrenMadeAfterACauseCancelInheritTheCause) {
  auto root = with_cancel_cause(background());
  root.cancel(cause_a());
  auto child = with_cancel(root.ctx);
  auto grandchild = with_cancel_cause(child.ctx);
  auto great = with_timeout(grandchild.ctx, 1h);
  EXPECT_EQ(child.ctx.cause(), cause_a());
  EXPECT_EQ(grandchild.ctx.cause(), cause_a());
  EXPECT_EQ(great.ctx.cause(), cause_a());
}

TEST(Cause, WithoutCancelReportsNoCause) {
  auto parent = with_cancel_cause(background());
  parent.cancel(cause_a());
  const Context detached = without_cancel(parent.ctx);
  EXPECT_FALSE(detached.cause());
  EXPECT_FALSE(detached.err());
}

// ---------------------------------------------------------------------------
// Deadlines and timers (pitfalls 17-19).

TEST(WithDeadline, ReportsItsDeadlineAndItsChildrenInheritIt) {
  static const Key<int> key("inherit");
  const clock::time_point d = clock::now() + 1h;
  auto pair = with_deadline(background(), d);
  ASSERT_TRUE(pair.ctx.deadline().has_value());
  EXPECT_EQ(*pair.ctx.deadline(), d);
  EXPECT_FALSE(pair.ctx.done());
  auto child = with_cancel(with_value(pair.ctx, key, 3));
  EXPECT_EQ(child.ctx.deadline(), d);
  EXPECT_EQ(with_value(pair.ctx, key, 4).deadline(), d);
}

TEST(WithDeadline, NeverExtendsTheParentsDeadline) {
  const clock::time_point early = clock::now() + 1h;
  auto parent = with_deadline(background(), early);
  const std::size_t timers = pending_timers();
  auto later = with_deadline(parent.ctx, early + 1h);
  auto equal = with_deadline(parent.ctx, early);
  auto later_timeout = with_timeout(parent.ctx, 3h);
  auto later_cause = with_deadline_cause(parent.ctx, early + 1s, cause_a());
  auto huge = with_timeout(parent.ctx, clock::duration::max());
  for (const Context* ctx :
       {&later.ctx, &equal.ctx, &later_timeout.ctx, &later_cause.ctx, &huge.ctx}) {
    ASSERT_TRUE(ctx->deadline().has_value());
    EXPECT_EQ(*ctx->deadline(), early) << "a child reported a deadline later than its parent's";
  }
  EXPECT_EQ(pending_timers(), timers) << "pitfall 17: a needless timer was created";
  // They are still cancellable children.
  EXPECT_TRUE(later.cancel.cancel());
  EXPECT_FALSE(parent.ctx.done());
  EXPECT_EQ(child_count(parent.ctx), 4U);
}

TEST(WithDeadline, EarlierDeadlineThanTheParentsIsKept) {
  const clock::time_point late = clock::now() + 2h;
  auto parent = with_deadline(background(), late);
  const std::size_t timers = pending_timers();
  auto child = with_deadline(parent.ctx, late - 1h);
  EXPECT_EQ(child.ctx.deadline(), late - 1h);
  EXPECT_EQ(pending_timers(), timers + 1);
  child.cancel();
  EXPECT_EQ(pending_timers(), timers);
}

TEST(WithDeadline, ParentsDeadlineEndsAChildWithALaterOne) {
  auto parent = with_timeout(background(), 2ms);
  auto child = with_timeout(parent.ctx, 1h);
  ASSERT_TRUE(child.ctx.wait_for(kBound)) << dump_process();
  EXPECT_EQ(child.ctx.err(), deadline_exceeded());
  EXPECT_EQ(child.ctx.cause(), deadline_exceeded());
}

TEST(WithDeadline, PastDeadlineEndsTheContextBeforeReturning) {
  const std::size_t timers = pending_timers();
  for (const clock::time_point d : {clock::now() - 1h, clock::now() - 1ns, clock::now(),
                                    clock::time_point{}, clock::time_point::min()}) {
    auto pair = with_deadline(background(), d);
    EXPECT_TRUE(pair.ctx.done());
    EXPECT_EQ(pair.ctx.err(), deadline_exceeded());
    EXPECT_EQ(pair.ctx.cause(), deadline_exceeded());
    ASSERT_TRUE(pair.ctx.deadline().has_value());
    EXPECT_EQ(*pair.ctx.deadline(), d);
  }
  EXPECT_EQ(pending_timers(), timers) << "an expired deadline must not stay armed";
}

TEST(WithTimeout, ZeroAndNegativeTimeoutsEndTheContextBeforeReturning) {
  const std::size_t timers = pending_timers();
  for (const clock::duration d : {clock::duration::zero(), clock::duration(-1),
                                  clock::duration(-1s), clock::duration(-100h)}) {
    auto pair = with_timeout(background(), d);
    auto child = with_cancel(pair.ctx);
    EXPECT_TRUE(pair.ctx.done());
    EXPECT_EQ(pair.ctx.err(), deadline_exceeded());
    EXPECT_EQ(child.ctx.err(), deadline_exceeded());
    EXPECT_EQ(child_count(pair.ctx), 0U);
  }
  EXPECT_EQ(pending_timers(), timers);
}

TEST(WithDeadline, LaterCancelKeepsTheDeadlineReason) {
  auto pair = with_timeout(background(), -1ms);
  auto child = with_cancel(pair.ctx);
  EXPECT_FALSE(pair.cancel.cancel());
  EXPECT_EQ(pair.ctx.err(), deadline_exceeded());
  EXPECT_EQ(child.ctx.err(), deadline_exceeded());

  auto fired = with_timeout(background(), 1ms);
  ASSERT_TRUE(fired.ctx.wait_for(kBound)) << dump_process();
  EXPECT_FALSE(fired.cancel.cancel());
  EXPECT_EQ(fired.ctx.err(), deadline_exceeded());
}

TEST(WithTimeout, MaxDurationSaturatesToARealDeadlineThatNeverFires) {
  const std::size_t timers = pending_timers();
  auto huge = with_timeout(background(), clock::duration::max());
  auto max_point = with_deadline(background(), clock::time_point::max());
  auto huge_cause = with_timeout_cause(background(), clock::duration::max(), cause_a());
  for (const Context* ctx : {&huge.ctx, &max_point.ctx, &huge_cause.ctx}) {
    ASSERT_TRUE(ctx->deadline().has_value()) << "time_point::max() is a real deadline";
    EXPECT_EQ(*ctx->deadline(), clock::time_point::max());
    EXPECT_FALSE(ctx->done());
  }
  EXPECT_EQ(pending_timers(), timers) << "a deadline that never fires needs no timer";
  EXPECT_FALSE(huge.ctx.wait_for(20ms));
  // A child with a real timeout gets the earlier deadline and a timer.
  auto child = with_timeout(huge.ctx, 1h);
  ASSERT_TRUE(child.ctx.deadline().has_value());
  EXPECT_LT(*child.ctx.deadline(), clock::time_point::max());
  EXPECT_EQ(pending_timers(), timers + 1);
  huge.cancel();
  EXPECT_EQ(child.ctx.err(), canceled());
  EXPECT_EQ(pending_timers(), timers);
  // Large but not max durations saturate too.
  auto almost = with_timeout(background(), clock::duration::max() - 1s);
  EXPECT_EQ(almost.ctx.deadline(), clock::time_point::max());
  EXPECT_FALSE(almost.ctx.done());
}

TEST(WithTimeout, MinDurationDoesNotOverflow) {
  const clock::time_point before = clock::now();
  auto pair = with_timeout(background(), clock::duration::min());
  EXPECT_TRUE(pair.ctx.done());
  EXPECT_EQ(pair.ctx.err(), deadline_exceeded());
  ASSERT_TRUE(pair.ctx.deadline().has_value());
  EXPECT_LE(*pair.ctx.deadline(), before) << "now + duration::min() wrapped into the future";
  auto cause_pair = with_timeout_cause(background(), clock::duration::min(), cause_a());
  EXPECT_EQ(cause_pair.ctx.cause(), cause_a());
}

TEST(WithTimeout, FiresWithDeadlineExceededNeverEarly) {
  const std::size_t timers = pending_timers();
  auto pair = with_timeout(background(), 5ms);
  auto child = with_cancel(pair.ctx);
  ASSERT_TRUE(pair.ctx.deadline().has_value());
  const clock::time_point d = *pair.ctx.deadline();
  ASSERT_TRUE(child.ctx.wait_for(kBound)) << dump_process();
  EXPECT_GE(clock::now(), d) << "the timer fired before its deadline";
  EXPECT_EQ(pair.ctx.err(), deadline_exceeded());
  EXPECT_EQ(child.ctx.err(), deadline_exceeded());
  EXPECT_EQ(pending_timers(), timers);
  EXPECT_FALSE(pair.cancel.cancel());
}

TEST(WithTimeout, ManyTimersAllFire) {
  std::vector<Cancellable> timers;
  for (int i = 0; i < 50; ++i) timers.push_back(with_timeout(background(), 1ms * (50 - i)));
  for (const auto& t : timers) ASSERT_TRUE(t.ctx.wait_for(kBound)) << dump_process();
  for (const auto& t : timers) EXPECT_EQ(t.ctx.err(), deadline_exceeded());
}

TEST(WithDeadline, CancelReleasesTheTimerAtOnce) {
  const std::size_t timers = pending_timers();
  auto pair = with_timeout(background(), 1h);
  EXPECT_EQ(pending_timers(), timers + 1);
  pair.cancel();
  EXPECT_EQ(pending_timers(), timers);
}

TEST(WithDeadline, DroppingEveryHandleOfASubtreeReleasesItsTimers) {
  const std::size_t timers = pending_timers();
  auto parent = with_cancel(background());
  {
    auto timer = with_timeout(parent.ctx, 1h);
    auto child_timer = with_timeout(timer.ctx, 30min);
    auto grandchild = with_cancel(child_timer.ctx);
    auto grand_timer = with_deadline_cause(grandchild.ctx, clock::now() + 10min, cause_a());
    EXPECT_EQ(pending_timers(), timers + 3);
  }
  EXPECT_EQ(pending_timers(), timers) << "a dropped subtree left its timers armed";
  EXPECT_EQ(child_count(parent.ctx), 0U);
}

TEST(WithDeadline, ParentCancelReleasesDescendantTimers) {
  const std::size_t timers = pending_timers();
  auto parent = with_cancel(background());
  std::vector<Cancellable> children;
  for (int i = 0; i < 100; ++i) children.push_back(with_timeout(parent.ctx, 1h + 1s * i));
  EXPECT_EQ(pending_timers(), timers + 100);
  parent.cancel();
  EXPECT_EQ(pending_timers(), timers);
}

TEST(WithDeadline, MillionOneHourTimersCancelledLeaveNoTimersAndNoThreads) {
  // Make sure the shared timer thread exists before counting threads.
  with_timeout(background(), 1h).cancel();
  const std::size_t threads = process_thread_count();
  const std::size_t timers = pending_timers();
  const std::size_t n = scaled(1000000);
  std::size_t rss_first_round = 0;
  for (int round = 0; round < 2; ++round) {
    // Round 0: 10^6 cancelled; round 1: a quarter as many, destroyed uncancelled.
    const std::size_t count = round == 0 ? n : n / 4;
    std::vector<Cancellable> contexts;
    contexts.reserve(count);
    for (std::size_t i = 0; i < count; ++i) contexts.push_back(with_timeout(background(), 1h));
    EXPECT_EQ(pending_timers(), timers + count);
    EXPECT_EQ(process_thread_count(), threads) << "pitfall 18: a thread per timer";
    if (round == 0) {
      for (auto& c : contexts) c.cancel();  // cancelled ...
    }
    contexts.clear();  // ... or destroyed uncancelled (round 1)
    contexts.shrink_to_fit();
    EXPECT_EQ(pending_timers(), timers);
    if (round == 0) rss_first_round = rss_bytes();
  }
  EXPECT_EQ(process_thread_count(), threads);
  if (!kAsan) {
    EXPECT_LE(rss_bytes(), rss_first_round + (16U << 20U)) << "memory of cancelled timers kept";
  }
}

TEST(WithDeadline, TimerFiringConcurrentlyWithCancelHasExactlyOneReason) {
  // Pitfall 19 (the long version lives in the stress tests).
  std::mt19937 rng(7);
  int cancel_won = 0;
  int deadline_won = 0;
  for (int i = 0; i < 300; ++i) {
    const clock::time_point d = clock::now() + std::chrono::microseconds(rng() % 200);
    auto timer = with_deadline_cause(background(), d, cause_a());
    auto child = with_cancel(timer.ctx);
    while (clock::now() < d) {
    }
    const bool won = timer.cancel.cancel();
    ASSERT_TRUE(child.ctx.wait_for(kBound)) << dump_process();
    if (won) {
      ++cancel_won;
      EXPECT_EQ(timer.ctx.err(), canceled());
      EXPECT_EQ(timer.ctx.cause(), canceled());
    } else {
      ++deadline_won;
      EXPECT_EQ(timer.ctx.err(), deadline_exceeded());
      EXPECT_EQ(timer.ctx.cause(), cause_a());
    }
    EXPECT_EQ(child.ctx.err(), timer.ctx.err());
    EXPECT_EQ(child.ctx.cause(), timer.ctx.cause());
  }
  EXPECT_EQ(cancel_won + deadline_won, 300);
}

// ---------------------------------------------------------------------------
// value().

TEST(Value, FindsTheValueStoredUnderItsKey) {
  static const Key<std::string> name("name");
  static const Key<int> id("id");
  const Context ctx = with_value(with_value(background(), name, "alice"), id, 42);
  ASSERT_NE(ctx.value(name), nullptr);
  EXPECT_EQ(*ctx.value(name), "alice");
  ASSERT_NE(ctx.value(id), nullptr);
  EXPECT_EQ(*ctx.value(id), 42);
  EXPECT_EQ(name.name(), "name");
}

TEST(Value, NearestKeyWins) {
  static const Key<int> key("shadowed");
  const Context outer = with_value(background(), key, 1);
  auto middle = with_cancel(outer);
  const Context inner = with_value(middle.ctx, key, 2);
  auto leaf = with_timeout(inner, 1h);
  EXPECT_EQ(*outer.value(key), 1);
  EXPECT_EQ(*middle.ctx.value(key), 1);
  EXPECT_EQ(*inner.value(key), 2);
  EXPECT_EQ(*leaf.ctx.value(key), 2);
}

TEST(Value, KeysWithTheSameNameAreDifferentKeys) {
  static const Key<int> first("same");
  static const Key<int> second("same");
  const Context ctx = with_value(background(), first, 1);
  EXPECT_EQ(ctx.value(second), nullptr) << "keys are identified by address, not name";
  const Context both = with_value(ctx, second, 2);
  EXPECT_EQ(*both.value(first), 1);
  EXPECT_EQ(*both.value(second), 2);
}

TEST(Value, AbsentKeyAndRootsGiveNullptr) {
  static const Key<int> present("present");
  static const Key<int> absent("absent");
  EXPECT_EQ(background().value(present), nullptr);
  EXPECT_EQ(todo().value(present), nullptr);
  EXPECT_EQ(Context{}.value(present), nullptr);
  EXPECT_EQ(with_value(background(), present, 1).value(absent), nullptr);
  auto child = with_cancel(background());
  EXPECT_EQ(child.ctx.value(present), nullptr);
}

TEST(Value, IsVisibleThroughEveryKindOfChildAndAfterTheEnd) {
  static const Key<int> key("through");
  const Context root = with_value(todo(), key, 5);
  auto cancel_child = with_cancel(root);
  auto cause_child = with_cancel_cause(cancel_child.ctx);
  auto timer_child = with_timeout(cause_child.ctx, 1h);
  auto merged = merge(timer_child.ctx, background());
  const Context detached = without_cancel(merged.ctx);
  cancel_child.cancel();
  for (const Context* ctx :
       Contexts{&cancel_child.ctx, &cause_child.ctx, &timer_child.ctx, &merged.ctx, &detached}) {
    ASSERT_NE(ctx->value(key), nullptr);
    EXPECT_EQ(*ctx->value(key), 5);
  }
}

TEST(Value, PointerIsStableAcrossCopiesAndLookups) {
  static const Key<std::vector<int>> key("stable");
  const Context ctx = with_value(background(), key, std::vector<int>{1, 2, 3});
  const Context copy = ctx;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(ctx.value(key), copy.value(key));
  EXPECT_EQ(ctx.value(key), ctx.value(key));
  EXPECT_EQ(ctx.value(key)->size(), 3U);
}

TEST(Value, IsDestroyedExactlyOnceWhenTheLastHandleGoes) {
  static const Key<Tracked> key("tracked");
  Tracked::reset();
  int destroyed_before = 0;
  {
    Context ctx = with_value(background(), key, Tracked(9));
    EXPECT_EQ(Tracked::live.load(), 1) << "the value must be stored inline, once";
    destroyed_before = Tracked::destroyed.load();  // the moved-from temporary
    Context copy = ctx;
    auto child = with_cancel(ctx);
    ctx = Context{};
    copy = Context{};
    EXPECT_EQ(Tracked::live.load(), 1) << "a descendant keeps the value alive";
    EXPECT_EQ(child.ctx.value(key)->payload, 9);
    child.cancel();
    EXPECT_EQ(Tracked::live.load(), 1) << "cancelling does not free values";
    const Context grandchild = child.ctx;
    child = Cancellable{};
    EXPECT_EQ(Tracked::live.load(), 1);
    EXPECT_EQ(Tracked::destroyed.load(), destroyed_before);
    EXPECT_EQ(grandchild.value(key)->payload, 9);
  }
  EXPECT_EQ(Tracked::live.load(), 0) << "the value leaked";
  EXPECT_EQ(Tracked::destroyed.load(), destroyed_before + 1) << "destroyed more than once";

  // Built in place from U: one construction, one destruction, nothing else.
  Tracked::reset();
  {
    const Context ctx = with_value(background(), key, 11);
    EXPECT_EQ(Tracked::live.load(), 1);
    EXPECT_EQ(Tracked::destroyed.load(), 0) << "no temporary expected when built from U";
    auto child = with_cancel(ctx);
    child.cancel();
  }
  EXPECT_EQ(Tracked::live.load(), 0);
  EXPECT_EQ(Tracked::destroyed.load(), 1) << "destroyed more or less than exactly once";
}

TEST(Value, OutlivesATimeoutThatFiresWhileItIsInUse) {
  // Pitfall 21: a timeout may fire right before the body returns; what the
  // context holds stays valid while handed out and is destroyed exactly once.
  static const Key<Tracked> key("in-use");
  Tracked::reset();
  Context handed_out;
  {
    auto scope = with_timeout(with_value(background(), key, 21), 1ms);
    const Tracked* resource = scope.ctx.value(key);
    ASSERT_TRUE(scope.ctx.wait_for(kBound)) << dump_process();
    EXPECT_EQ(resource->payload, 21) << "the timeout invalidated a value in use";
    handed_out = scope.ctx;
  }
  EXPECT_EQ(Tracked::live.load(), 1);
  EXPECT_EQ(handed_out.value(key)->payload, 21);
  EXPECT_EQ(handed_out.err(), deadline_exceeded());
  handed_out = Context{};
  // The timer thread may still be finishing the node it ended (see the next
  // test for whether that may delay the destruction): wait, bounded.
  const clock::time_point until = clock::now() + kBound;
  while (Tracked::live.load() != 0 && clock::now() < until) std::this_thread::yield();
  EXPECT_EQ(Tracked::live.load(), 0) << "the value leaked";
  EXPECT_EQ(Tracked::destroyed.load(), 1) << "destroyed more or less than exactly once";
}

TEST(Value, IsDestroyedByTheThreadEndingItsContextWhenThatThreadHoldsTheLastReference) {
  // context.hpp (with_value): a thread that is ending a descendant (a parent's
  // canceller, the timer thread) holds a reference meanwhile; if the user drops the
  // last handle during that time, the value lives until that thread is done and is
  // then destroyed by it, exactly once, right after the context ended. Here the
  // parent's canceller is held inside the end of the child (by a std::stop_callback,
  // which runs inline) while the user drops the last handle.
  static const Key<Tracked> key("ender-owned");
  Tracked::reset();
  auto gate = std::make_shared<ctxpp_test::HoldGate>();
  auto hold = [gate]() noexcept { gate->hold(kBound); };
  auto parent = with_cancel(background());
  auto scope = std::make_unique<Cancellable>(with_cancel(with_value(parent.ctx, key, 5)));
  std::optional<std::stop_callback<decltype(hold)>> held;
  held.emplace(scope->ctx.stop_token(), hold);
  std::thread ender([cancel = parent.cancel] { cancel(); });
  ASSERT_TRUE(gate->wait_entered(kBound)) << dump_process();
  scope.reset();  // every handle of the context and of its value is gone
  const int live_after_drop = Tracked::live.load();
  gate->release();
  ender.join();
  held.reset();
  EXPECT_EQ(live_after_drop, 1) << "the value died while its context was still being ended "
                                   "(the ending thread holds a reference for exactly that reason)";
  EXPECT_EQ(Tracked::live.load(), 0) << "the ending thread did not destroy the value once done";
  EXPECT_EQ(Tracked::destroyed.load(), 1);
}

TEST(Value, HoldsMoveOnlyValues) {
  static const Key<std::unique_ptr<int>> key("move-only");
  const Context ctx = with_value(background(), key, std::make_unique<int>(3));
  ASSERT_NE(ctx.value(key), nullptr);
  EXPECT_EQ(**ctx.value(key), 3);
}

TEST(Value, DoesNotChangeDoneOrDeadline) {
  static const Key<int> key("transparent");
  auto live = with_timeout(background(), 1h);
  const Context over_live = with_value(live.ctx, key, 1);
  EXPECT_FALSE(over_live.done());
  EXPECT_EQ(over_live.deadline(), live.ctx.deadline());
  EXPECT_EQ(child_count(live.ctx), 0U) << "a value node is not a cancellable child";
  live.cancel();
  EXPECT_TRUE(over_live.done());
  EXPECT_EQ(over_live.err(), canceled());
  EXPECT_TRUE(over_live.wait_for(clock::duration::zero()));

  auto done_cause = with_cancel_cause(background());
  done_cause.cancel(cause_a());
  const Context over_done = with_value(done_cause.ctx, key, 2);
  EXPECT_TRUE(over_done.done());
  EXPECT_EQ(over_done.cause(), cause_a());
}

// ---------------------------------------------------------------------------
// without_cancel (pitfall 22).

TEST(WithoutCancel, KeepsValuesAndIsNeverDone) {
  static const Key<int> key("kept");
  auto parent = with_timeout(with_value(background(), key, 8), 1h);
  const Context detached = without_cancel(parent.ctx);
  parent.cancel();
  ASSERT_TRUE(parent.ctx.done());
  EXPECT_FALSE(detached.done());
  EXPECT_FALSE(detached.err());
  EXPECT_FALSE(detached.cause());
  EXPECT_FALSE(detached.deadline().has_value()) << "a detached context has no deadline";
  ASSERT_NE(detached.value(key), nullptr);
  EXPECT_EQ(*detached.value(key), 8);
  EXPECT_FALSE(detached.wait_for(5ms));
}

TEST(WithoutCancel, FromAnAlreadyCancelledParentIsLive) {
  static const Key<int> key("kept-after-end");
  auto parent = with_cancel_cause(with_value(background(), key, 4));
  parent.cancel(cause_a());
  const Context detached = without_cancel(parent.ctx);
  EXPECT_FALSE(detached.done());
  EXPECT_FALSE(detached.err());
  EXPECT_FALSE(detached.cause());
  EXPECT_EQ(*detached.value(key), 4);

  auto expired = with_deadline(background(), clock::now() - 1s);
  const Context detached_expired = without_cancel(expired.ctx);
  EXPECT_FALSE(detached_expired.done());
  EXPECT_FALSE(detached_expired.deadline().has_value());
}

TEST(WithoutCancel, ChildrenAreCancellableOnlyOnTheirOwn) {
  auto parent = with_timeout(background(), 1h);
  const Context detached = without_cancel(parent.ctx);
  auto child = with_cancel(detached);
  auto timer = with_timeout(detached, 2h);
  EXPECT_EQ(child_count(parent.ctx), 0U) << "a detached subtree is not linked to the parent";
  // The detached child's own deadline is not capped by the original parent's.
  ASSERT_TRUE(timer.ctx.deadline().has_value());
  EXPECT_GT(*timer.ctx.deadline(), *parent.ctx.deadline());
  parent.cancel();
  EXPECT_FALSE(child.ctx.done());
  EXPECT_FALSE(timer.ctx.done());
  child.cancel();
  EXPECT_EQ(child.ctx.err(), canceled());
  EXPECT_FALSE(detached.done());
}

TEST(WithoutCancel, OfBackgroundIsLikeBackground) {
  expect_background_like(without_cancel(background()), "without_cancel(background())");
  expect_background_like(without_cancel(todo()), "without_cancel(todo())");
}

// ---------------------------------------------------------------------------
// merge().

TEST(Merge, IsDoneWhenThePrimaryIsDone) {
  static const Key<int> key("primary-values");
  auto primary = with_cancel_cause(with_value(background(), key, 1));
  auto other = with_cancel(background());
  auto merged = merge(primary.ctx, other.ctx);
  auto child = with_cancel(merged.ctx);
  EXPECT_FALSE(merged.ctx.done());
  primary.cancel(cause_a());
  EXPECT_TRUE(merged.ctx.done());
  EXPECT_EQ(merged.ctx.err(), canceled());
  EXPECT_EQ(merged.ctx.cause(), cause_a());
  EXPECT_EQ(child.ctx.cause(), cause_a());
  EXPECT_FALSE(other.ctx.done()) << "merge must not cancel its inputs";
  EXPECT_EQ(registrations_on(other.ctx), 0U) << "a done merge still listens on other";
}

TEST(Merge, IsDoneWhenTheOtherIsDoneWithItsErrAndCause) {
  auto primary = with_cancel(background());
  auto other = with_cancel_cause(background());
  auto merged = merge(primary.ctx, other.ctx);
  auto child = with_cancel_cause(merged.ctx);
  other.cancel(cause_b());
  EXPECT_TRUE(merged.ctx.done()) << "other's cancel returned before the merge was done";
  EXPECT_EQ(merged.ctx.err(), canceled());
  EXPECT_EQ(merged.ctx.cause(), cause_b());
  EXPECT_TRUE(child.ctx.done());
  EXPECT_EQ(child.ctx.cause(), cause_b());
  EXPECT_FALSE(primary.ctx.done());
  EXPECT_EQ(child_count(primary.ctx), 0U) << "a merge ended by other stays linked to primary";
}

TEST(Merge, OthersDeadlineEndsItWithDeadlineExceeded) {
  auto primary = with_cancel(background());
  auto other = with_timeout_cause(background(), 2ms, cause_c());
  auto merged = merge(primary.ctx, other.ctx);
  ASSERT_TRUE(merged.ctx.wait_for(kBound)) << dump_process();
  EXPECT_EQ(merged.ctx.err(), deadline_exceeded());
  EXPECT_EQ(merged.ctx.cause(), cause_c());
}

TEST(Merge, FirstEndingWins) {
  auto primary = with_cancel_cause(background());
  auto other = with_cancel_cause(background());
  auto merged = merge(primary.ctx, other.ctx);
  other.cancel(cause_b());
  primary.cancel(cause_a());
  EXPECT_EQ(merged.ctx.cause(), cause_b());

  auto primary2 = with_cancel_cause(background());
  auto other2 = with_cancel_cause(background());
  auto merged2 = merge(primary2.ctx, other2.ctx);
  primary2.cancel(cause_a());
  other2.cancel(cause_b());
  EXPECT_EQ(merged2.ctx.cause(), cause_a());
}

TEST(Merge, DeadlineIsTheEarlierOfTheTwo) {
  const clock::time_point now = clock::now();
  auto early = with_deadline(background(), now + 1h);
  auto late = with_deadline(background(), now + 2h);
  auto none = with_cancel(background());
  EXPECT_EQ(merge(early.ctx, late.ctx).ctx.deadline(), now + 1h);
  EXPECT_EQ(merge(late.ctx, early.ctx).ctx.deadline(), now + 1h);
  EXPECT_EQ(merge(none.ctx, late.ctx).ctx.deadline(), now + 2h);
  EXPECT_EQ(merge(late.ctx, none.ctx).ctx.deadline(), now + 2h);
  EXPECT_FALSE(merge(none.ctx, background()).ctx.deadline().has_value());
  // And its children never extend it.
  auto merged = merge(late.ctx, early.ctx);
  const std::size_t timers = pending_timers();
  auto child = with_timeout(merged.ctx, 3h);
  EXPECT_EQ(child.ctx.deadline(), now + 1h);
  EXPECT_EQ(pending_timers(), timers);
}

TEST(Merge, ValuesComeFromThePrimary) {
  static const Key<int> key("merge-values");
  static const Key<int> other_only("other-only");
  const Context primary = with_value(background(), key, 1);
  const Context other = with_value(with_value(background(), key, 2), other_only, 3);
  auto merged = merge(primary, other);
  ASSERT_NE(merged.ctx.value(key), nullptr);
  EXPECT_EQ(*merged.ctx.value(key), 1);
  EXPECT_EQ(merged.ctx.value(other_only), nullptr);
}

TEST(Merge, CancelEndsTheMergeButNeitherInput) {
  auto primary = with_cancel(background());
  auto other = with_cancel(background());
  auto merged = merge(primary.ctx, other.ctx);
  EXPECT_EQ(child_count(primary.ctx), 1U);
  EXPECT_EQ(registrations_on(other.ctx), 1U);
  EXPECT_TRUE(merged.cancel.cancel());
  EXPECT_FALSE(merged.cancel.cancel());
  EXPECT_EQ(merged.ctx.err(), canceled());
  EXPECT_EQ(merged.ctx.cause(), canceled());
  EXPECT_FALSE(primary.ctx.done());
  EXPECT_FALSE(other.ctx.done());
  EXPECT_EQ(child_count(primary.ctx), 0U);
  EXPECT_EQ(registrations_on(other.ctx), 0U) << "cancel() did not release the registration";
  other.cancel();
  EXPECT_EQ(merged.ctx.err(), canceled());
}

TEST(Merge, CancelReturnsFalseWhenOtherEndedIt) {
  auto other = with_cancel(background());
  auto merged = merge(background(), other.ctx);
  other.cancel();
  EXPECT_FALSE(merged.cancel.cancel());
}

TEST(Merge, ManyMergesOnALongLivedOtherDoNotGrowIt) {
  auto other = with_cancel(background());
  auto primary = with_cancel(background());
  const std::size_t n = scaled(200000);
  const std::size_t rss_before = rss_bytes();
  for (std::size_t i = 0; i < n; ++i) {
    auto merged = merge(primary.ctx, other.ctx);
    merged.cancel();
  }
  for (std::size_t i = 0; i < n / 2; ++i) {
    auto merged = merge(primary.ctx, other.ctx);  // dropped uncancelled
  }
  EXPECT_EQ(registrations_on(other.ctx), 0U);
  EXPECT_EQ(child_count(primary.ctx), 0U);
  if (!kAsan) {
    EXPECT_LE(rss_bytes(), rss_before + (8U << 20U));
  }
  // Cancelling other must touch none of the freed merges (ASan would see it).
  EXPECT_TRUE(other.cancel.cancel());
  EXPECT_FALSE(primary.ctx.done());
}

TEST(Merge, OfAlreadyDoneInputsIsDoneAtOnce) {
  auto done_primary = with_cancel_cause(background());
  done_primary.cancel(cause_a());
  auto done_other = with_deadline_cause(background(), clock::now() - 1s, cause_b());
  auto live = with_cancel(background());

  auto by_primary = merge(done_primary.ctx, live.ctx);
  EXPECT_TRUE(by_primary.ctx.done());
  EXPECT_EQ(by_primary.ctx.err(), canceled());
  EXPECT_EQ(by_primary.ctx.cause(), cause_a());

  auto by_other = merge(live.ctx, done_other.ctx);
  EXPECT_TRUE(by_other.ctx.done());
  EXPECT_EQ(by_other.ctx.err(), deadline_exceeded());
  EXPECT_EQ(by_other.ctx.cause(), cause_b());
  EXPECT_EQ(child_count(live.ctx), 0U);
  EXPECT_FALSE(by_other.cancel.cancel());

  auto both = merge(done_primary.ctx, done_other.ctx);
  EXPECT_TRUE(both.ctx.done());
  // Either input's outcome, as one consistent pair.
  const bool primary_pair = both.ctx.err() == canceled() && both.ctx.cause() == cause_a();
  const bool other_pair = both.ctx.err() == deadline_exceeded() && both.ctx.cause() == cause_b();
  EXPECT_TRUE(primary_pair || other_pair);
  EXPECT_EQ(registrations_on(live.ctx), 0U);
}

TEST(Merge, WithANeverEndingOtherIsAPlainCancellableChild) {
  auto primary = with_cancel(background());
  for (const Context& other : {background(), todo(), without_cancel(primary.ctx)}) {
    auto merged = merge(primary.ctx, other);
    EXPECT_FALSE(merged.ctx.done());
    EXPECT_TRUE(merged.cancel.cancel());
  }
  auto merged = merge(background(), background());
  EXPECT_FALSE(merged.ctx.done());
  merged.cancel();
  EXPECT_EQ(merged.ctx.err(), canceled());
}

TEST(Merge, OfAContextWithItselfEndsOnce) {
  auto input = with_cancel_cause(background());
  auto merged = merge(input.ctx, input.ctx);
  input.cancel(cause_a());
  EXPECT_TRUE(merged.ctx.done());
  EXPECT_EQ(merged.ctx.cause(), cause_a());
}

TEST(Merge, DroppingItWhileOtherIsEndingItNeitherHangsNorFreesItEarly) {
  // Thread B cancels other, which ends the merge through its registration; B is
  // held inside the merge's propagation by a std::stop_callback on the merge's
  // stop_token (runs inline, holds no reference on the merge). Thread D drops
  // the last handles of the merge and B is released at about the same time. D
  // may wait for B, but both must finish (no hang), and nothing may touch the
  // freed merge (ASan). Repeated: the interleavings differ from round to round.
  struct Dropper {
    std::unique_ptr<Cancellable> merged;
    std::atomic<bool> started{false};
    std::atomic<bool> finished{false};
  };
  for (int round = 0; round < 200; ++round) {
    auto other = with_cancel_cause(background());
    auto merged = std::make_unique<Cancellable>(merge(background(), other.ctx));
    auto gate = std::make_shared<ctxpp_test::HoldGate>();
    auto hold = [gate]() noexcept { gate->hold(kBound); };
    std::stop_callback<decltype(hold)> held(merged->ctx.stop_token(), hold);
    std::thread b([cancel = other.cancel] { cancel(cause_a()); });
    ASSERT_TRUE(gate->wait_entered(kBound)) << dump_process();
    auto dropper = std::make_shared<Dropper>();
    dropper->merged = std::move(merged);
    std::thread d([dropper] {
      dropper->started = true;
      dropper->merged.reset();  // the last handles of the merge
      dropper->finished = true;
    });
    while (!dropper->started) std::this_thread::yield();
    for (int i = 0; i < round % 16; ++i) std::this_thread::yield();
    gate->release();
    b.join();
    const clock::time_point until = clock::now() + kBound;
    while (!dropper->finished && clock::now() < until) std::this_thread::yield();
    if (!dropper->finished) {
      d.detach();  // stuck for good; it owns everything it touches
      FAIL() << "round " << round << ": dropping a merge while its other input was ending it hung; "
             << dump_process();
    }
    d.join();
    EXPECT_TRUE(other.ctx.done());
    EXPECT_EQ(registrations_on(other.ctx), 0U);
  }
}

TEST(Merge, ChainsOfMergesPropagate) {
  auto a = with_cancel(background());
  auto b = with_cancel(background());
  auto c = with_cancel_cause(background());
  auto ab = merge(a.ctx, b.ctx);
  auto abc = merge(ab.ctx, c.ctx);
  auto cab = merge(c.ctx, ab.ctx);
  b.cancel();
  EXPECT_TRUE(ab.ctx.done());
  EXPECT_TRUE(abc.ctx.done());
  EXPECT_TRUE(cab.ctx.done());
  EXPECT_FALSE(a.ctx.done());
  EXPECT_FALSE(c.ctx.done());
}

// ---------------------------------------------------------------------------
// wait / wait_for / wait_until (pitfall 11: no lost wake-up).

TEST(Wait, ReturnsAtOnceWhenAlreadyDone) {
  auto pair = with_cancel(background());
  pair.cancel();
  pair.ctx.wait();
  EXPECT_TRUE(pair.ctx.wait_for(clock::duration::zero()));
  EXPECT_TRUE(pair.ctx.wait_for(-1s));
  EXPECT_TRUE(pair.ctx.wait_for(clock::duration::max()));
  EXPECT_TRUE(pair.ctx.wait_until(clock::time_point::min()));
  EXPECT_TRUE(pair.ctx.wait_until(clock::time_point::max()));
}

TEST(Wait, WaitForTimesOutOnALiveContext) {
  auto pair = with_timeout(background(), 1h);
  const clock::time_point start = clock::now();
  EXPECT_FALSE(pair.ctx.wait_for(20ms));
  EXPECT_GE(clock::now() - start, 20ms);
  EXPECT_FALSE(pair.ctx.wait_until(clock::now() + 5ms));
  EXPECT_FALSE(pair.ctx.wait_until(clock::now() - 1s));
  EXPECT_FALSE(pair.ctx.wait_for(clock::duration::min()));
  EXPECT_FALSE(pair.ctx.done());
}

TEST(Wait, WakesWhenCancelledFromAnotherThread) {
  for (int i = 0; i < 50; ++i) {
    auto parent = with_cancel(background());
    auto child = with_cancel(parent.ctx);
    std::atomic<bool> child_woke{false};
    std::atomic<bool> parent_woke{false};
    std::thread waiter_child([&] { child_woke = child.ctx.wait_for(kBound); });
    std::thread waiter_parent([&] { parent_woke = parent.ctx.wait_until(clock::now() + kBound); });
    parent.cancel();
    waiter_child.join();
    waiter_parent.join();
    ASSERT_TRUE(child_woke) << "lost wake-up on a child; " << dump_process();
    ASSERT_TRUE(parent_woke) << "lost wake-up; " << dump_process();
  }
}

TEST(Wait, ManyWaitersAllWake) {
  auto pair = with_cancel(background());
  std::vector<std::thread> waiters;
  std::atomic<int> woke{0};
  for (int i = 0; i < 16; ++i) {
    waiters.emplace_back([&] {
      if (pair.ctx.wait_for(kBound)) woke.fetch_add(1);
    });
  }
  pair.cancel();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(woke.load(), 16) << dump_process();
}

TEST(Wait, WaitReturnsWhenTheDeadlineFires) {
  auto pair = with_timeout(background(), 3ms);
  auto returned = std::make_shared<std::atomic<bool>>(false);
  std::thread waiter([ctx = pair.ctx, returned] {
    ctx.wait();
    *returned = true;
  });
  // Bounded: if wait() never returns, fail instead of hanging (the waiter then
  // leaks on purpose; it owns everything it touches).
  const clock::time_point until = clock::now() + kBound;
  while (!returned->load() && clock::now() < until) std::this_thread::yield();
  if (!returned->load()) {
    waiter.detach();
    FAIL() << "wait() did not return after the deadline fired; " << dump_process();
  }
  waiter.join();
  EXPECT_EQ(pair.ctx.err(), deadline_exceeded());
}

// ---------------------------------------------------------------------------
// Publication (pitfall 11): data written before cancel() is visible to a thread
// that observes done(). Under TSan a missing happens-before is a reported race.

TEST(Publication, WritesBeforeCancelAreVisibleToAThreadThatSeesDone) {
  for (int i = 0; i < 500; ++i) {
    auto parent = with_cancel(background());
    auto child = with_cancel(parent.ctx);
    std::string payload;
    int number = -1;
    std::thread writer([&payload, &number, i, cancel = parent.cancel] {
      payload = "written before cancel";
      number = i;
      cancel();
    });
    const Context& observed = (i % 2 == 0) ? child.ctx : parent.ctx;
    bool seen = false;
    switch (i % 3) {
      case 0:
        seen = poll_until_done(observed);
        break;
      case 1:
        seen = observed.wait_for(kBound);
        break;
      default: {
        const clock::time_point until = clock::now() + kBound;
        while (!observed.err() && clock::now() < until) std::this_thread::yield();
        seen = static_cast<bool>(observed.err());
      }
    }
    ASSERT_TRUE(seen) << dump_process();
    EXPECT_EQ(payload, "written before cancel");
    EXPECT_EQ(number, i);
    writer.join();
  }
}

TEST(Publication, CauseWrittenByTheCancellerIsVisibleWithDone) {
  for (int i = 0; i < 500; ++i) {
    auto parent = with_cancel_cause(background());
    auto child = with_cancel(parent.ctx);
    std::thread writer([cancel = parent.cancel] { cancel(cause_a()); });
    ASSERT_TRUE(poll_until_done(child.ctx)) << dump_process();
    EXPECT_EQ(child.ctx.cause(), cause_a());
    EXPECT_EQ(child.ctx.err(), canceled());
    writer.join();
  }
}

// ---------------------------------------------------------------------------
// Deep chains (pitfall 13): no recursion per level, neither to cancel nor to free.

TEST(Chain, DeepChainCancelsAndIsDestroyedWithoutStackOverflow) {
  run_on_small_stack([] {
    constexpr int kDepth = 100000;
    auto root = with_cancel_cause(background());
    std::vector<Cancellable> chain;
    chain.reserve(kDepth);
    Context tip = root.ctx;
    for (int i = 0; i < kDepth; ++i) {
      chain.push_back(with_cancel(tip));
      tip = chain.back().ctx;
    }
    root.cancel(cause_a());
    EXPECT_TRUE(tip.done());
    EXPECT_EQ(tip.err(), canceled());
    EXPECT_EQ(tip.cause(), cause_a()) << "the cause must be found 10^5 levels up";
    EXPECT_TRUE(
        std::all_of(chain.begin(), chain.end(), [](const Cancellable& c) { return c.ctx.done(); }));
    tip = Context{};
    chain.clear();  // root first: the leaf's release then frees the whole chain
  });
}

TEST(Chain, DeepUncancelledChainIsDestroyedFromTheLeafWithoutStackOverflow) {
  run_on_small_stack([] {
    constexpr int kDepth = 100000;
    static const Key<int> key("deep");
    const std::size_t timers = pending_timers();
    Context tip = with_value(background(), key, 1);
    auto top_timer = with_timeout(tip, 1h);
    tip = top_timer.ctx;
    top_timer = Cancellable{};
    for (int i = 0; i < kDepth; ++i) {
      switch (i % 4) {
        case 0:
          tip = with_cancel(tip).ctx;
          break;
        case 1:
          tip = with_value(tip, key, i);
          break;
        case 2:
          tip = with_cancel_cause(tip).ctx;
          break;
        default:
          tip = merge(tip, background()).ctx;
          break;
      }
    }
    EXPECT_FALSE(tip.done());
    EXPECT_TRUE(tip.deadline().has_value());
    EXPECT_EQ(*tip.value(key), kDepth - 3);  // the nearest value node
    tip = Context{};                         // frees 10^5 nodes, leaf to root
    EXPECT_EQ(pending_timers(), timers);
  });
}

TEST(Chain, DeepChainCancelledFromTheMiddleAndFromTheLeafUp) {
  run_on_small_stack([] {
    constexpr int kDepth = 100000;
    auto root = with_cancel(background());
    std::vector<Cancellable> chain;
    chain.reserve(kDepth);
    Context tip = root.ctx;
    for (int i = 0; i < kDepth; ++i) {
      chain.push_back(with_cancel(tip));
      tip = chain.back().ctx;
    }
    chain[kDepth / 2].cancel();
    EXPECT_TRUE(tip.done());
    EXPECT_FALSE(chain[kDepth / 2 - 1].ctx.done());
    EXPECT_EQ(child_count(chain[kDepth / 2 - 1].ctx), 0U);
    for (int i = kDepth - 1; i >= 0; --i) chain[static_cast<std::size_t>(i)].cancel();
    EXPECT_FALSE(root.ctx.done());
    EXPECT_EQ(child_count(root.ctx), 0U);
    // Destroy leaf first this time.
    tip = Context{};
    while (!chain.empty()) chain.pop_back();
  });
}

// ---------------------------------------------------------------------------
// Allocation counts (pitfall 32).

TEST(Alloc, ObserversAllocateNothing) {
  static const Key<int> key("alloc");
  auto live = with_timeout(with_value(background(), key, 1), 1h);
  auto done = with_cancel_cause(with_value(background(), key, 2));
  done.cancel(cause_a());
  const Context value_child = with_value(done.ctx, key, 3);
  const std::size_t before = t_allocations;
  int sink = 0;
  for (const Context* ctx : Contexts{&live.ctx, &done.ctx, &value_child}) {
    sink += ctx->done() ? 1 : 0;
    sink += ctx->err() ? 1 : 0;
    sink += ctx->cause() ? 1 : 0;
    sink += ctx->deadline().has_value() ? 1 : 0;
    sink += *ctx->value(key);
    sink += ctx->wait_for(clock::duration::zero()) ? 1 : 0;
    const Context copy = *ctx;  // NOLINT(performance-unnecessary-copy-initialization)
    sink += copy.done() ? 1 : 0;
  }
  sink += background().done() ? 1 : 0;
  sink += todo().err() ? 1 : 0;
  EXPECT_EQ(t_allocations - before, 0U) << "done()/err()/cause()/value()/deadline() allocated";
  EXPECT_GT(sink, 0);
}

TEST(Alloc, WithCancelAllocatesExactlyOnce) {
  static const Key<int> key("alloc-once");
  auto parent = with_cancel(background());
  const Context valued = with_value(parent.ctx, key, 1);
  for (const Context* p : Contexts{&parent.ctx, &valued}) {
    std::size_t before = t_allocations;
    auto child = with_cancel(*p);
    EXPECT_EQ(t_allocations - before, 1U) << "with_cancel";
    before = t_allocations;
    auto cause_child = with_cancel_cause(*p);
    EXPECT_EQ(t_allocations - before, 1U) << "with_cancel_cause";
    before = t_allocations;
    const Context v = with_value(*p, key, 2);
    EXPECT_EQ(t_allocations - before, 1U) << "with_value stores its value inline";
    before = t_allocations;
    auto merged = merge(*p, child.ctx);
    EXPECT_EQ(t_allocations - before, 1U) << "merge: one allocation (issue 2)";
  }
  std::size_t before = t_allocations;
  auto root_child = with_cancel(background());
  EXPECT_EQ(t_allocations - before, 1U) << "with_cancel(background())";
  // A timeout child: one allocation once the timer service is warm.
  for (int i = 0; i < 4; ++i) with_timeout(background(), 1h).cancel();
  before = t_allocations;
  auto timer = with_timeout(parent.ctx, 1h);
  EXPECT_EQ(t_allocations - before, 1U) << "with_timeout";
}

TEST(Alloc, CancellingALeafAllocatesNothing) {
  auto parent = with_cancel(background());
  auto leaf = with_cancel(parent.ctx);
  auto cause_leaf = with_cancel_cause(parent.ctx);
  auto root_leaf = with_cancel(background());
  const std::size_t before = t_allocations;
  leaf.cancel();
  cause_leaf.cancel(cause_a());
  root_leaf.cancel();
  EXPECT_FALSE(leaf.cancel.cancel());
  EXPECT_EQ(t_allocations - before, 0U);
}

TEST(Alloc, CancellingATreeAllocatesNothing) {
  auto root = with_cancel(background());
  std::vector<Cancellable> nodes;
  nodes.reserve(1000);
  for (int i = 0; i < 1000; ++i) {
    nodes.push_back(with_cancel(i == 0 ? root.ctx : nodes[static_cast<std::size_t>(i) / 3].ctx));
  }
  const std::size_t before = t_allocations;
  root.cancel();
  EXPECT_EQ(t_allocations - before, 0U) << "propagation allocated";
  EXPECT_TRUE(nodes.back().ctx.done());
}

}  // namespace
