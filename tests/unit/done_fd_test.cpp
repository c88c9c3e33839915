// Tests of Context::done_fd() (declared in ctxpp/context.hpp): a pollable
// descriptor that becomes readable when the context is done.
#include "ctxpp/context.hpp"
#include "support/test_support.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace {

using ctxpp_test::kTsan;

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::Context;
using ctxpp::with_cancel;

constexpr int kBoundMs = 30000;  // generous bound for a poll that should return at once

int fd_of(const Context& ctx) {
  std::error_code ec = std::make_error_code(std::errc::io_error);  // must be cleared
  const int fd = ctx.done_fd(ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_GE(fd, 0);
  return fd;
}

// True if fd polls readable within timeout_ms (0: right now).
bool readable(int fd, int timeout_ms = 0) {
  pollfd p{fd, POLLIN, 0};
  int n = 0;
  do {
    n = ::poll(&p, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  return n == 1 && (p.revents & POLLIN) != 0;
}

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

std::uint64_t seed_from_env() {
  if (const char* s = std::getenv("CTXPP_SEED")) return std::strtoull(s, nullptr, 0);
  return std::random_device{}();
}

TEST(DoneFd, BecomesReadableOnCancelAndNotBefore) {
  auto [ctx, cancel] = with_cancel(background());
  const int fd = fd_of(ctx);
  EXPECT_TRUE(is_open(fd));
  EXPECT_FALSE(readable(fd)) << "readable before the context is done";
  cancel();
  EXPECT_TRUE(readable(fd)) << "not readable once cancel() returned";
  EXPECT_TRUE(readable(fd)) << "stays readable (level-triggered, nobody reads it)";
}

TEST(DoneFd, SameFdOnEveryCallAndEveryCopy) {
  auto [ctx, cancel] = with_cancel(background());
  const int fd = fd_of(ctx);
  EXPECT_EQ(fd_of(ctx), fd);
  const Context copy = ctx;
  EXPECT_EQ(fd_of(copy), fd);
  static const ctxpp::Key<int> key("k");
  EXPECT_EQ(fd_of(ctxpp::with_value(ctx, key, 1)), fd) << "a value context shares its parent's end";
  auto [other, other_cancel] = with_cancel(background());
  EXPECT_NE(fd_of(other), fd);
  cancel();
  EXPECT_EQ(fd_of(ctx), fd);
}

TEST(DoneFd, ReadableAtOnceWhenObtainedAfterTheEnd) {
  auto [ctx, cancel] = with_cancel(background());
  cancel();
  EXPECT_TRUE(readable(fd_of(ctx)));
  auto [child, child_cancel] = with_cancel(ctx);
  EXPECT_TRUE(readable(fd_of(child)));
  auto [expired, expired_cancel] = ctxpp::with_timeout(background(), 0s);
  EXPECT_TRUE(readable(fd_of(expired)));
}

TEST(DoneFd, ReadableWhenAnAncestorOrTheDeadlineEndsIt) {
  auto [parent, parent_cancel] = with_cancel(background());
  auto [child, child_cancel] = with_cancel(parent);
  const int child_fd = fd_of(child);
  parent_cancel();
  EXPECT_TRUE(readable(child_fd));

  auto [timed, timed_cancel] = ctxpp::with_timeout(background(), 10ms);
  const int timed_fd = fd_of(timed);
  EXPECT_TRUE(readable(timed_fd, kBoundMs)) << "the deadline never made the fd readable";
  EXPECT_EQ(timed.err(), ctxpp::errc::deadline_exceeded);
}

TEST(DoneFd, PollWakesWhenAnotherThreadCancels) {
  auto [ctx, cancel] = with_cancel(background());
  const int fd = fd_of(ctx);
  std::thread canceller([cancel = cancel] { cancel(); });
  EXPECT_TRUE(readable(fd, kBoundMs)) << "poll was not woken by the cancel";
  canceller.join();
}

TEST(DoneFd, ContextsThatCannotEndGiveAValidFdThatNeverBecomesReadable) {
  auto [parent, cancel] = with_cancel(background());
  const int fd = fd_of(background());
  EXPECT_TRUE(is_open(fd));
  for (const Context& never :
       {background(), ctxpp::todo(), Context{}, ctxpp::without_cancel(parent)}) {
    EXPECT_EQ(fd_of(never), fd) << "one shared descriptor for every never-ending context";
  }
  cancel();  // ends parent, never its detached child
  EXPECT_FALSE(readable(fd));
  EXPECT_FALSE(readable(fd, 20)) << "became readable although nothing can end";
  EXPECT_TRUE(is_open(fd));
}

// Single-threaded on purpose: the check must run before anything else in the
// process could be handed the same descriptor number.
TEST(DoneFd, ClosedWhenTheLastHandleGoes) {
  int fd = -1;
  {
    auto [ctx, cancel] = with_cancel(background());
    fd = fd_of(ctx);
    ASSERT_TRUE(is_open(fd));
  }
  EXPECT_FALSE(is_open(fd)) << "the eventfd of a freed context was not closed";
  EXPECT_EQ(errno, EBADF);

  // Cancelled first, then freed.
  {
    auto [ctx, cancel] = with_cancel(background());
    fd = fd_of(ctx);
    cancel();
  }
  EXPECT_FALSE(is_open(fd));
}

TEST(DoneFd, StaysOpenWhileADescendantHandleLives) {
  int fd = -1;
  Context child_handle;
  {
    auto [parent, parent_cancel] = with_cancel(background());
    fd = fd_of(parent);
    auto [child, child_cancel] = with_cancel(parent);
    child_handle = child;
  }
  EXPECT_TRUE(is_open(fd)) << "a child keeps its parent (and its descriptor) alive";
  child_handle = Context{};
  EXPECT_FALSE(is_open(fd));
}

TEST(DoneFd, ConcurrentFirstCallsAgreeOnOneFd) {
  const int iterations = kTsan ? 100 : 1000;
  constexpr int kThreads = 4;
  for (int i = 0; i < iterations; ++i) {
    auto [ctx, cancel] = with_cancel(background());
    std::barrier sync(kThreads);
    std::vector<int> fds(kThreads, -1);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t, c = ctx] {
        sync.arrive_and_wait();
        std::error_code ec;
        fds[static_cast<std::size_t>(t)] = c.done_fd(ec);
      });
    }
    for (auto& t : threads) t.join();
    for (int fd : fds) ASSERT_EQ(fd, fds[0]);
    ASSERT_GE(fds[0], 0);
  }
}

TEST(DoneFd, FirstCallRacingCancelNeverLosesTheWakeUp) {
  // Whether the listener is registered before the cancel or finds the context
  // already done, the descriptor ends up readable (pitfall 11's lost wake-up).
  const int iterations = kTsan ? 300 : 3000;
  std::barrier sync(2);
  for (int i = 0; i < iterations; ++i) {
    auto [ctx, cancel] = with_cancel(background());
    std::thread canceller([&, cancel = cancel] {
      sync.arrive_and_wait();
      cancel();
    });
    sync.arrive_and_wait();
    const int fd = fd_of(ctx);
    canceller.join();
    ASSERT_TRUE(readable(fd)) << "iteration " << i;
  }
}

TEST(DoneFd, EpollOverManyContextsReportsExactlyTheCancelledOnes) {
  constexpr int kCount = 256;
  const std::uint64_t seed = seed_from_env();
  std::printf("seed=%llu (set CTXPP_SEED to replay)\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(ep, 0);
  std::vector<ctxpp::WithCancel<Context, ctxpp::CancelFunc>> contexts;
  auto [root, root_cancel] = with_cancel(background());
  for (int i = 0; i < kCount; ++i) {
    contexts.push_back(with_cancel(i % 2 == 0 ? root : contexts.back().ctx));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<std::uint32_t>(i);
    ASSERT_EQ(::epoll_ctl(ep, EPOLL_CTL_ADD, fd_of(contexts.back().ctx), &ev), 0);
  }
  auto ready = [&] {
    std::vector<epoll_event> events(kCount);
    const int n = ::epoll_wait(ep, events.data(), kCount, 0);
    std::set<std::uint32_t> out;
    for (int k = 0; k < n; ++k) out.insert(events[static_cast<std::size_t>(k)].data.u32);
    return out;
  };
  EXPECT_TRUE(ready().empty());
  // Cancel a random subset (odd indices are children of the previous one, so
  // cancelling an even one also ends the next).
  std::set<std::uint32_t> expected;
  for (int i = 0; i < kCount; ++i) {
    if (rng() % 4 != 0) continue;
    contexts[static_cast<std::size_t>(i)].cancel();
  }
  for (int i = 0; i < kCount; ++i) {
    if (contexts[static_cast<std::size_t>(i)].ctx.done())
      expected.insert(static_cast<std::uint32_t>(i));
  }
  EXPECT_EQ(ready(), expected) << "epoll must report exactly the done contexts, at once";
  root_cancel();
  EXPECT_EQ(ready().size(), static_cast<std::size_t>(kCount));
  ::close(ep);
}

}  // namespace
