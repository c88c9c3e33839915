// Tests of ctxpp/coroutine.hpp: `co_await ctxpp::cancelled(ctx)` from a
// coroutine type that knows nothing about ctxpp (pitfalls 1, 7, 16 shapes).
#include "ctxpp/coroutine.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
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
using ctxpp::CancelFunc;
using ctxpp::Context;
using ctxpp::with_cancel;

// ---------------------------------------------------------------------------
// A minimal eager task: starts at once, stays suspended at the end until the
// owner destroys it. Knows nothing about ctxpp.
class Task {
 public:
  struct promise_type {  // NOLINT(readability-identifier-naming): the name the language requires
    Task get_return_object() noexcept {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };

  Task() noexcept = default;
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    Task(std::move(other)).swap(*this);
    return *this;
  }
  ~Task() {
    if (handle_) handle_.destroy();
  }
  void swap(Task& other) noexcept { std::swap(handle_, other.handle_); }
  bool done() const noexcept { return handle_ && handle_.done(); }

 private:
  explicit Task(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}
  std::coroutine_handle<promise_type> handle_;
};

// A fire-and-forget coroutine: its frame destroys itself when it finishes, so
// a coroutine resumed inline by a cancel frees the awaiter inside the callback.
struct Detached {
  struct promise_type {  // NOLINT(readability-identifier-naming): the name the language requires
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

struct Outcome {
  std::atomic<int> resumed{0};
  std::error_code err;
  std::thread::id resumed_on;
  Gate finished;
};

Task await_end(Context ctx, std::shared_ptr<Outcome> out) {
  const std::error_code err = co_await ctxpp::cancelled(ctx);
  out->err = err;
  out->resumed_on = std::this_thread::get_id();
  out->resumed.fetch_add(1);
}

Detached await_end_detached(Context ctx, std::shared_ptr<Outcome> out) {
  const std::error_code err = co_await ctxpp::cancelled(ctx);
  out->err = err;
  out->resumed_on = std::this_thread::get_id();
  out->resumed.fetch_add(1);
  out->finished.open();
}

// ---------------------------------------------------------------------------

TEST(Cancelled, ResumesInlineInTheCancellingThreadWithCanceled) {
  auto [ctx, cancel] = with_cancel(background());
  auto out = std::make_shared<Outcome>();
  Task task = await_end(ctx, out);
  EXPECT_FALSE(task.done()) << "must suspend while the context is live";
  EXPECT_EQ(out->resumed.load(), 0);
  std::thread::id canceller_id;
  std::thread canceller([&, cancel = cancel] {
    canceller_id = std::this_thread::get_id();
    cancel();
  });
  canceller.join();
  // cancel() returned: the coroutine has already run to its end, in that thread.
  EXPECT_TRUE(task.done());
  EXPECT_EQ(out->resumed.load(), 1);
  EXPECT_EQ(out->resumed_on, canceller_id);
  EXPECT_EQ(out->err, ctxpp::errc::canceled);
}

TEST(Cancelled, ResumesWithDeadlineExceededWhenTheDeadlineFires) {
  auto [ctx, cancel] = ctxpp::with_timeout(background(), 20ms);
  auto out = std::make_shared<Outcome>();
  await_end_detached(ctx, out);
  ASSERT_TRUE(out->finished.wait()) << "the coroutine was not resumed by the deadline";
  EXPECT_EQ(out->err, ctxpp::errc::deadline_exceeded);
  EXPECT_EQ(out->resumed.load(), 1);
}

TEST(Cancelled, ResumesWhenAnAncestorIsCancelledEvenWithoutOtherHandles) {
  auto [parent, parent_cancel] = with_cancel(background());
  auto out = std::make_shared<Outcome>();
  Task task;
  {
    auto [child, child_cancel] = with_cancel(parent);
    task = await_end(child, out);
  }  // the coroutine (and its awaiter) now hold the only references to child
  EXPECT_FALSE(task.done());
  parent_cancel();
  EXPECT_TRUE(task.done());
  EXPECT_EQ(out->err, ctxpp::errc::canceled);
}

TEST(Cancelled, DoesNotSuspendIfAlreadyDone) {
  auto [ctx, cancel] = with_cancel(background());
  cancel();
  auto [child, child_cancel] = with_cancel(ctx);
  auto [expired, expired_cancel] = ctxpp::with_timeout(background(), 0s);
  for (const Context& done : {ctx, child, expired}) {
    EXPECT_TRUE(ctxpp::cancelled(done).await_ready());
    auto out = std::make_shared<Outcome>();
    Task task = await_end(done, out);
    EXPECT_TRUE(task.done()) << "co_await on a done context must not suspend";
    EXPECT_EQ(out->resumed_on, std::this_thread::get_id());
    EXPECT_EQ(out->err, done.err());
  }
  EXPECT_FALSE(ctxpp::cancelled(background()).await_ready());
}

Task await_twice(Context ctx, std::shared_ptr<Outcome> out) {
  (void)co_await ctxpp::cancelled(ctx);
  out->resumed.fetch_add(1);
  out->err = co_await ctxpp::cancelled(ctx);  // done now: no suspension
  out->resumed.fetch_add(1);
}

TEST(Cancelled, AwaitingAgainAfterResumptionDoesNotSuspend) {
  auto [ctx, cancel] = with_cancel(background());
  auto out = std::make_shared<Outcome>();
  Task task = await_twice(ctx, out);
  cancel();
  EXPECT_TRUE(task.done());
  EXPECT_EQ(out->resumed.load(), 2);
}

TEST(Cancelled, NeverResumesOnAContextThatCannotEnd) {
  auto [parent, cancel] = with_cancel(background());
  std::vector<std::shared_ptr<Outcome>> outs;
  std::vector<Task> tasks;
  for (const Context& never :
       {background(), ctxpp::todo(), Context{}, ctxpp::without_cancel(parent)}) {
    outs.push_back(std::make_shared<Outcome>());
    tasks.push_back(await_end(never, outs.back()));
  }
  cancel();
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    EXPECT_FALSE(tasks[i].done());
    EXPECT_EQ(outs[i]->resumed.load(), 0);
  }
  tasks.clear();  // destroying them is fine
}

TEST(Cancelled, DestroyingASuspendedCoroutineUnregistersIt) {
  auto [parent, parent_cancel] = with_cancel(background());
  auto out = std::make_shared<Outcome>();
  {
    auto [child, child_cancel] = with_cancel(parent);
    Task task = await_end(child, out);
    EXPECT_FALSE(task.done());
  }  // the frame (and its awaiter) is destroyed while suspended
  EXPECT_EQ(ctxpp::detail::child_count(parent), 0U)
      << "the destroyed awaiter must release its reference on the context";
  auto [ctx, cancel] = with_cancel(background());
  { Task task = await_end(ctx, out); }
  cancel();  // touches nothing of the destroyed frame (ASan)
  parent_cancel();
  EXPECT_EQ(out->resumed.load(), 0);
}

TEST(Cancelled, ACoroutineFinishingInsideTheCallbackFreesItsFrameSafely) {
  // Detached frames destroy themselves on resumption, i.e. inside the cancel's
  // callback loop; the canceller must not touch the awaiter afterwards (ASan),
  // and the other registrations on the list must still run.
  auto [ctx, cancel] = with_cancel(background());
  int scoped_runs = 0;
  ctxpp::ScopedCallback first(ctx, [&]() noexcept { ++scoped_runs; });
  std::vector<std::shared_ptr<Outcome>> outs;
  for (int i = 0; i < 8; ++i) {
    outs.push_back(std::make_shared<Outcome>());
    await_end_detached(ctx, outs.back());
  }
  ctxpp::ScopedCallback last(ctx, [&]() noexcept { ++scoped_runs; });
  cancel();
  EXPECT_EQ(scoped_runs, 2);
  for (auto& out : outs) EXPECT_EQ(out->resumed.load(), 1);
}

TEST(Cancelled, ManyCoroutinesOnOneContextAllResumeOnce) {
  constexpr int kCount = 10000;
  auto [ctx, cancel] = with_cancel(background());
  auto out = std::make_shared<Outcome>();
  std::vector<Task> tasks;
  tasks.reserve(kCount);
  for (int i = 0; i < kCount; ++i) tasks.push_back(await_end(ctx, out));
  EXPECT_EQ(out->resumed.load(), 0);
  cancel();
  EXPECT_EQ(out->resumed.load(), kCount);
  int not_done = 0;
  for (auto& task : tasks) not_done += task.done() ? 0 : 1;
  EXPECT_EQ(not_done, 0);
}

// Pitfall 7 (cppcoro#221): a coroutine resumed inline by a cancel goes on to
// cancel another context, deregister other callbacks and destroy another
// suspended coroutine. Nothing may deadlock: no lock is held while it runs.
struct Pitfall7 {
  Context a;
  Context b;
  CancelFunc cancel_b;
  std::optional<ctxpp::ScopedCallback<std::function<void()>>> victim_on_a;
  std::optional<ctxpp::ScopedCallback<std::function<void()>>> live_on_c;
  Task other_on_a;  // another coroutine suspended on a
  bool cancel_b_result = false;
  std::error_code b_err;
  int steps = 0;
};

Task resumed_then_works(std::shared_ptr<Pitfall7> s) {
  (void)co_await ctxpp::cancelled(s->a);
  s->cancel_b_result = s->cancel_b.cancel();  // b's callbacks and coroutines run nested
  ++s->steps;
  s->victim_on_a.reset();  // still linked on a, or already run
  s->live_on_c.reset();    // linked on a live context
  s->other_on_a = Task{};  // destroys a coroutine suspended on a (or finished)
  ++s->steps;
  s->b_err = co_await ctxpp::cancelled(s->b);  // done: no suspension
  auto [child, child_cancel] = with_cancel(s->a);
  s->b_err = child.done() ? s->b_err : std::error_code{};
  ++s->steps;
}

TEST(Cancelled, ResumedCoroutineMayCancelAndDeregisterWithoutDeadlock) {
  auto s = std::make_shared<Pitfall7>();
  auto [a, cancel_a] = with_cancel(background());
  auto [b, cancel_b] = with_cancel(background());
  auto [c, cancel_c] = with_cancel(background());
  s->a = a;
  s->b = b;
  s->cancel_b = cancel_b;
  int victim_runs = 0;
  int c_runs = 0;
  s->victim_on_a.emplace(a, std::function<void()>([&] { ++victim_runs; }));
  s->live_on_c.emplace(c, std::function<void()>([&] { ++c_runs; }));
  auto other = std::make_shared<Outcome>();
  s->other_on_a = await_end(a, other);
  auto on_b = std::make_shared<Outcome>();
  Task waiting_on_b = await_end(b, on_b);
  Task task = resumed_then_works(s);
  ASSERT_FALSE(task.done());
  run_bounded("cancel resuming a coroutine that cancels and deregisters",
              [ca = cancel_a] { ca(); });
  EXPECT_TRUE(task.done());
  EXPECT_EQ(s->steps, 3);
  EXPECT_TRUE(s->cancel_b_result);
  EXPECT_EQ(s->b_err, ctxpp::errc::canceled);
  EXPECT_TRUE(waiting_on_b.done()) << "the coroutine on b is resumed by the nested cancel";
  EXPECT_LE(victim_runs, 1);
  EXPECT_LE(other->resumed.load(), 1);
  cancel_c();
  EXPECT_EQ(c_runs, 0);
}

TEST(Cancelled, SuspensionRacingCancelResumesExactlyOnce) {
  // The coroutine suspends (await_suspend registers) while another thread
  // cancels: it resumes exactly once, inline either here (already done) or in
  // the canceller. Detached frames are freed by the resumption itself, so a
  // late write to the awaiter by the suspending thread is a use-after-free
  // (ASan) and, in any case, a data race (TSan).
  const int iterations = kTsan ? 2000 : 20000;
  std::barrier sync(2);
  std::vector<std::pair<Context, CancelFunc>> contexts;
  contexts.reserve(static_cast<std::size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    auto [ctx, cancel] = with_cancel(background());
    contexts.emplace_back(ctx, cancel);
  }
  std::vector<std::shared_ptr<Outcome>> outs;
  for (int i = 0; i < iterations; ++i) outs.push_back(std::make_shared<Outcome>());
  std::thread canceller([&] {
    for (auto& [ctx, cancel] : contexts) {
      sync.arrive_and_wait();
      cancel();
    }
  });
  for (std::size_t i = 0; i < contexts.size(); ++i) {
    sync.arrive_and_wait();
    await_end_detached(contexts[i].first, outs[i]);
  }
  canceller.join();
  int wrong = 0;
  for (auto& out : outs) {
    if (!out->finished.wait()) {
      ++wrong;
      continue;
    }
    wrong += out->resumed.load() != 1 ? 1 : 0;
  }
  EXPECT_EQ(wrong, 0);
}

}  // namespace
