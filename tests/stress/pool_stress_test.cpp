// Stress tests of ctxpp::Pool: many threads acquire with contexts that end at random
// moments (before the call, while waiting, while leased, never), bind some leases,
// use, discard or break resources, while the pool is small enough that most callers
// wait. A resource must never be used by two holders at once, every waiter must get
// exactly one outcome, and at the end the books balance: nothing leased or waiting,
// every resource created is destroyed once the pool is gone. Each test prints its
// seed (replay with CTXPP_SEED=<n>), is bounded in iterations and wall time, and a
// watchdog aborts with a message instead of hanging.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/errc.hpp"
#include "ctxpp/failure.hpp"
#include "ctxpp/pool.hpp"
#include "support/stress_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::clock;
using ctxpp_test::announce_seed;
using ctxpp_test::scaled;
using ctxpp_test::TimeBudget;
using ctxpp_test::Watchdog;

constexpr clock::duration kWatchdogLimit = 90s;

struct Books {
  std::atomic<long> created{0};
  std::atomic<long> destroyed{0};
  std::atomic<long> shared_use{0};   // a resource seen by two holders at once
  std::atomic<long> wrong_error{0};  // an acquire that failed with something unexpected
  std::atomic<long> acquired{0};
  std::atomic<long> refused{0};    // ended before or while waiting
  std::atomic<long> reclaimed{0};  // use() refused after a bound context ended
};

class Resource {
 public:
  explicit Resource(Books& books) : books_(&books) { books_->created.fetch_add(1); }
  Resource(Resource&& other) noexcept : books_(std::exchange(other.books_, nullptr)) {}
  Resource& operator=(Resource&&) = delete;
  Resource(const Resource&) = delete;
  Resource& operator=(const Resource&) = delete;
  ~Resource() {
    if (books_ != nullptr) books_->destroyed.fetch_add(1);
  }
  // Marks the resource used for a moment; counts it if someone else holds it.
  void touch() {
    if (holders_.fetch_add(1) != 0) books_->shared_use.fetch_add(1);
    std::this_thread::yield();
    holders_.fetch_sub(1);
  }
  std::atomic<bool> broken{false};
  std::atomic<int> interrupts{0};

 private:
  Books* books_;
  std::atomic<int> holders_{0};
};

ctxpp::PoolHooks<Resource> hooks_for(Books& books) {
  ctxpp::PoolHooks<Resource> hooks;
  hooks.create = [&books](const ctxpp::Context&) -> ctxpp::Result<Resource> {
    return Resource(books);
  };
  hooks.recycle = [](Resource& r) { return !r.broken.load(); };
  hooks.interrupt = [](Resource& r) { r.interrupts.fetch_add(1); };
  return hooks;
}

// One caller's turn: a context that ends at a random moment, then acquire and use.
void one_turn(std::mt19937_64& random, ctxpp::Pool<Resource>& pool, Books& books) {
  auto pick = [&random](int bound) { return static_cast<int>(random() % bound); };
  const int ending = pick(5);  // 0 before, 1 short timeout, 2 cancel mid-lease, 3/4 never
  ctxpp::Context ctx;
  ctxpp::CancelFunc cancel;
  if (ending == 1) {
    auto made = ctxpp::with_timeout(background(), std::chrono::microseconds(pick(300)));
    ctx = made.ctx;
    cancel = made.cancel;
  } else {
    auto made = ctxpp::with_cancel(background());
    ctx = made.ctx;
    cancel = made.cancel;
    if (ending == 0) cancel();
  }
  auto lease = pool.acquire(ctx);
  if (!lease) {
    const std::error_code error = lease.error();
    if (error != ctx.err() && error != ctxpp::failure::rejected) books.wrong_error.fetch_add(1);
    books.refused.fetch_add(1);
    return;
  }
  books.acquired.fetch_add(1);
  const bool bound = pick(2) == 0;
  if (bound) (void)lease->bind(ctx);
  for (int i = 0, n = 1 + pick(3); i < n; ++i) {
    if (ending == 2 && i == 1) cancel();  // mid-lease: a bound lease is reclaimed
    auto use = lease->use();
    if (!use) {
      if (!bound) books.wrong_error.fetch_add(1);
      books.reclaimed.fetch_add(1);
      break;
    }
    use->touch();
  }
  switch (pick(8)) {
    case 0:
      lease->discard();
      break;
    case 1:
      if (auto use = lease->use()) use->broken = true;  // recycle will refuse it
      break;
    default:
      break;  // returned by the destructor
  }
}

TEST(PoolStress, RandomEndingsNeverShareAResourceAndTheBooksBalance) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  Books books;
  long turns = 0;
  {
    ctxpp::PoolOptions options;
    options.max_size = 3;
    options.idle_timeout = 2ms;  // the reaper races the acquirers too
    options.linger_after_context = 0ns;
    std::atomic<long> lingering_reports{0};
    options.on_lingering = [&](const ctxpp::LingeringLease&) { lingering_reports.fetch_add(1); };
    ctxpp::Pool<Resource> pool(hooks_for(books), options);
    const TimeBudget budget;
    const int per_thread = scaled(3000);
    std::atomic<long> done{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 random(seed + static_cast<std::uint64_t>(t));
        for (int i = 0; i < per_thread && !budget.out_of_time(); ++i) {
          one_turn(random, pool, books);
          done.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    for (auto& thread : threads) thread.join();
    turns = done.load();
    const auto stats = pool.stats();
    EXPECT_EQ(stats.leased, 0U);
    EXPECT_EQ(stats.waiting, 0U);
    EXPECT_EQ(stats.creating, 0U);
    EXPECT_EQ(stats.size, stats.idle);
    EXPECT_LE(stats.size, 3U);
    EXPECT_EQ(stats.created_total - stats.destroyed_total, stats.size);
    EXPECT_EQ(static_cast<long>(stats.acquired_total), books.acquired.load());
    EXPECT_EQ(static_cast<long>(stats.created_total), books.created.load());
    // Every lingering report names a lease that was counted once.
    EXPECT_LE(lingering_reports.load(), static_cast<long>(stats.lingered_total));
  }
  std::printf("[ turns    ] %ld (acquired %ld, refused %ld, reclaimed %ld)\n", turns,
              books.acquired.load(), books.refused.load(), books.reclaimed.load());
  EXPECT_EQ(books.shared_use.load(), 0);
  EXPECT_EQ(books.wrong_error.load(), 0);
  EXPECT_EQ(books.created.load(), books.destroyed.load());
  EXPECT_GT(books.refused.load(), 0);
  EXPECT_GT(books.acquired.load(), 0);
}

TEST(PoolStress, CloseRacingAcquiresLeavesNothingBehind) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  const TimeBudget budget;
  Books books;
  std::mt19937_64 random(seed);
  for (int round = 0; round < scaled(200) && !budget.out_of_time(); ++round) {
    ctxpp::PoolOptions options;
    options.max_size = 2;
    ctxpp::Pool<Resource> pool(hooks_for(books), options);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t, salt = random()] {
        std::mt19937_64 mine(salt + static_cast<std::uint64_t>(t));
        for (int i = 0; i < 20; ++i) one_turn(mine, pool, books);
      });
    }
    // Close at a random moment while the callers run: they all end (rejected or
    // served), and close() returns once every lease is back.
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 500));
    auto bounded = ctxpp::with_timeout(background(), 30s);
    EXPECT_FALSE(pool.close(bounded.ctx));
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(pool.stats().size, 0U);
  }
  EXPECT_EQ(books.shared_use.load(), 0);
  EXPECT_EQ(books.wrong_error.load(), 0);
  EXPECT_EQ(books.created.load(), books.destroyed.load());
}

// close(ctx) with leases out waits until ctx ends; the context's callback takes the
// pool's mutex. Ending ctx while close() wakes up must never leave close() holding
// the mutex while it waits for that callback to finish.
TEST(PoolStress, CloseWhoseContextEndsAsItWakesNeverHangs) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  const TimeBudget budget;
  std::mt19937_64 random(seed);
  Books books;
  int rounds = 0;
  for (; rounds < scaled(2000) && !budget.out_of_time(); ++rounds) {
    ctxpp::PoolOptions options;
    options.max_size = 1;
    ctxpp::Pool<Resource> pool(hooks_for(books), options);
    auto held = pool.acquire(background());
    ASSERT_TRUE(held);
    auto scope = ctxpp::with_timeout(background(), std::chrono::microseconds(random() % 8));
    EXPECT_EQ(pool.close(scope.ctx), ctxpp::errc::deadline_exceeded);
  }
  std::printf("[ rounds   ] %d\n", rounds);
  EXPECT_EQ(books.created.load(), books.destroyed.load());
}

}  // namespace
