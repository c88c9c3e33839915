// Tests of ctxpp/pool.hpp: acquiring (idle, create, FIFO wait, cancel), leases and
// their return paths, bind() reclaiming, health checks, idle expiry, lingering-lease
// reports, close() and the stats snapshot.
#include "ctxpp/pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/errc.hpp"
#include "ctxpp/failure.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::Context;
using ctxpp::Lease;
using ctxpp::Pool;
using ctxpp::PoolHooks;
using ctxpp::PoolOptions;
using ctxpp::Result;
using ctxpp_test::eventually;
using ctxpp_test::Gate;

// What happened to the resources of one pool.
struct Ledger {
  std::atomic<int> created{0};
  std::atomic<int> destroyed{0};
  std::atomic<int> recycled{0};
  std::atomic<int> interrupted{0};
};

// A resource that counts its own end. Move-only, like a connection.
class Conn {
 public:
  Conn(int id, std::shared_ptr<Ledger> ledger) : id_(id), ledger_(std::move(ledger)) {}
  Conn(Conn&& other) noexcept : id_(other.id_), ledger_(std::move(other.ledger_)) {}
  Conn& operator=(Conn&&) = delete;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    if (ledger_) ++ledger_->destroyed;
  }
  int id() const { return id_; }
  std::atomic<bool> healthy{true};
  std::atomic<int> in_use{0};

 private:
  int id_;
  std::shared_ptr<Ledger> ledger_;
};

PoolHooks<Conn> counting_hooks(const std::shared_ptr<Ledger>& ledger) {
  PoolHooks<Conn> hooks;
  hooks.create = [ledger](const Context&) -> Result<Conn> {
    const int id = ++ledger->created;
    return Conn(id, ledger);
  };
  hooks.recycle = [ledger](Conn& c) {
    ++ledger->recycled;
    return c.healthy.load();
  };
  hooks.interrupt = [ledger](Conn&) { ++ledger->interrupted; };
  return hooks;
}

PoolOptions sized(std::size_t max_size) {
  PoolOptions options;
  options.max_size = max_size;
  return options;
}

// Waits (bounded) until the pool has `n` callers in line.
template <class T>
bool waiting_is(const Pool<T>& pool, std::size_t n) {
  return eventually([&] { return pool.stats().waiting == n; });
}

// --- construction -----------------------------------------------------------------------

TEST(PoolOptions, ZeroMaxSizeIsRejectedNamingTheField) {
  auto ledger = std::make_shared<Ledger>();
  try {
    Pool<Conn> pool(counting_hooks(ledger), sized(0));
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("max_size"), std::string::npos) << e.what();
  }
}

TEST(PoolOptions, NegativeDurationsAreRejectedNamingTheField) {
  auto ledger = std::make_shared<Ledger>();
  const std::vector<std::pair<std::string, void (*)(PoolOptions&)>> cases = {
      {"idle_timeout", [](PoolOptions& o) { o.idle_timeout = -1ms; }},
      {"max_lifetime", [](PoolOptions& o) { o.max_lifetime = -1ms; }},
      {"linger_after_context", [](PoolOptions& o) { o.linger_after_context = -1ms; }},
      {"max_hold", [](PoolOptions& o) { o.max_hold = -1ms; }},
  };
  for (const auto& [field, set] : cases) {
    PoolOptions options = sized(2);
    set(options);
    try {
      Pool<Conn> pool(counting_hooks(ledger), options);
      ADD_FAILURE() << field << ": no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  }
}

TEST(PoolOptions, MissingCreateHookAndOversizedMaxIdleAreRejected) {
  EXPECT_THROW(Pool<Conn>(PoolHooks<Conn>{}, sized(2)), std::invalid_argument);
  auto ledger = std::make_shared<Ledger>();
  PoolOptions options = sized(2);
  options.max_idle = 3;
  EXPECT_THROW(Pool<Conn>(counting_hooks(ledger), options), std::invalid_argument);
}

// --- acquire ------------------------------------------------------------------------------

TEST(PoolAcquire, CreatesOnDemandThenReusesTheIdleResource) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(2));
  int first_id = 0;
  {
    auto lease = pool.acquire(background());
    ASSERT_TRUE(lease) << ctxpp_test::describe(lease.error());
    ASSERT_TRUE(*lease);
    first_id = (*lease)->id();
    EXPECT_EQ(pool.stats().leased, 1U);
  }
  EXPECT_EQ(pool.stats().idle, 1U);
  auto again = pool.acquire(background());
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->id(), first_id);
  EXPECT_EQ(ledger->created.load(), 1);
  const auto stats = pool.stats();
  EXPECT_EQ(stats.acquired_total, 2U);
  EXPECT_EQ(stats.created_total, 1U);
  EXPECT_EQ(ledger->recycled.load(), 1);
}

TEST(PoolAcquire, EndedContextReturnsItsErrorAndCreatesNothing) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(2));
  auto scope = ctxpp::with_cancel(background());
  scope.cancel();
  auto lease = pool.acquire(scope.ctx);
  ASSERT_FALSE(lease);
  EXPECT_EQ(lease.error(), ctxpp::errc::canceled);
  EXPECT_EQ(ledger->created.load(), 0);
  EXPECT_EQ(pool.stats().size, 0U);
}

TEST(PoolAcquire, AtMaxSizeWaitsForAReturnedResource) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto held = pool.acquire(background());
  ASSERT_TRUE(held);
  const int id = (*held)->id();
  int got = 0;
  std::thread waiter([&] {
    auto lease = pool.acquire(background());
    if (lease) got = (*lease)->id();
  });
  ASSERT_TRUE(waiting_is(pool, 1));
  held->release();
  waiter.join();
  EXPECT_EQ(got, id);
  EXPECT_EQ(ledger->created.load(), 1);
  EXPECT_EQ(pool.stats().wait_time.count, 2U);  // the creation and the wait
}

TEST(PoolAcquire, WaitersAreServedInArrivalOrder) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto held = pool.acquire(background());
  ASSERT_TRUE(held);
  std::mutex mutex;
  std::vector<int> order;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([&, i] {
      auto lease = pool.acquire(background());
      ASSERT_TRUE(lease);
      std::lock_guard lock(mutex);
      order.push_back(i);
    });
    ASSERT_TRUE(waiting_is(pool, static_cast<std::size_t>(i) + 1));  // queued in turn
  }
  held->release();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
}

TEST(PoolAcquire, CancelStopsTheWaitWithTheContextsError) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto held = pool.acquire(background());
  ASSERT_TRUE(held);
  auto scope = ctxpp::with_cancel(background());
  std::error_code error;
  std::thread waiter([&, ctx = scope.ctx] {
    auto lease = pool.acquire(ctx);
    error = lease ? std::error_code() : lease.error();
  });
  ASSERT_TRUE(waiting_is(pool, 1));
  scope.cancel();
  waiter.join();
  EXPECT_EQ(error, ctxpp::errc::canceled);
  const auto stats = pool.stats();
  EXPECT_EQ(stats.waiting, 0U);
  EXPECT_EQ(stats.canceled_waits_total, 1U);
  // The resource went nowhere: it is still the holder's, and comes back idle.
  held->release();
  EXPECT_EQ(pool.stats().idle, 1U);
}

TEST(PoolAcquire, DeadlineStopsTheWaitWithDeadlineExceeded) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto held = pool.acquire(background());
  ASSERT_TRUE(held);
  auto scope = ctxpp::with_timeout(background(), 20ms);
  auto lease = pool.acquire(scope.ctx);
  ASSERT_FALSE(lease);
  EXPECT_EQ(lease.error(), ctxpp::errc::deadline_exceeded);
}

TEST(PoolAcquire, CanceledWaiterLeavesTheLineAndTheNextOneIsServed) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto held = pool.acquire(background());
  ASSERT_TRUE(held);
  auto first = ctxpp::with_cancel(background());
  std::error_code first_error;
  bool second_served = false;
  std::thread t1([&, ctx = first.ctx] {
    auto lease = pool.acquire(ctx);
    first_error = lease ? std::error_code() : lease.error();
  });
  ASSERT_TRUE(waiting_is(pool, 1));
  std::thread t2([&] { second_served = static_cast<bool>(pool.acquire(background())); });
  ASSERT_TRUE(waiting_is(pool, 2));
  first.cancel();
  t1.join();
  held->release();
  t2.join();
  EXPECT_EQ(first_error, ctxpp::errc::canceled);
  EXPECT_TRUE(second_served);
}

TEST(PoolAcquire, FactoryGetsTheAcquirersContext) {
  static const ctxpp::Key<std::string> request_id("request-id");
  std::string seen;
  PoolHooks<int> hooks;
  hooks.create = [&](const Context& ctx) -> Result<int> {
    if (const std::string* id = ctx.value(request_id)) seen = *id;
    return 7;
  };
  Pool<int> pool(std::move(hooks), sized(1));
  auto lease = pool.acquire(ctxpp::with_value(background(), request_id, std::string("r-1")));
  ASSERT_TRUE(lease);
  EXPECT_EQ(**lease, 7);
  EXPECT_EQ(seen, "r-1");
}

TEST(PoolAcquire, FactoryErrorReachesTheAcquirerAndGivesCapacityBack) {
  std::atomic<bool> fail{true};
  PoolHooks<int> hooks;
  hooks.create = [&](const Context&) -> Result<int> {
    if (fail) return std::make_error_code(std::errc::connection_refused);
    return 1;
  };
  Pool<int> pool(std::move(hooks), sized(1));
  auto lease = pool.acquire(background());
  ASSERT_FALSE(lease);
  EXPECT_EQ(lease.error(), std::errc::connection_refused);
  auto stats = pool.stats();
  EXPECT_EQ(stats.size, 0U);
  EXPECT_EQ(stats.create_failures_total, 1U);
  fail = false;
  EXPECT_TRUE(pool.acquire(background()));
}

TEST(PoolAcquire, FactoryExceptionIsRethrownAndGivesCapacityBack) {
  std::atomic<bool> fail{true};
  PoolHooks<int> hooks;
  hooks.create = [&](const Context&) -> Result<int> {
    if (fail) throw std::runtime_error("dns is down");
    return 1;
  };
  Pool<int> pool(std::move(hooks), sized(1));
  try {
    (void)pool.acquire(background());
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "dns is down");
  }
  EXPECT_EQ(pool.stats().size, 0U);
  EXPECT_EQ(pool.stats().create_failures_total, 1U);
  fail = false;
  EXPECT_TRUE(pool.acquire(background()));
}

TEST(PoolAcquire, DiscardedResourceLetsTheNextWaiterCreateOne) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto held = pool.acquire(background());
  ASSERT_TRUE(held);
  int got = 0;
  std::thread waiter([&] {
    auto lease = pool.acquire(background());
    if (lease) got = (*lease)->id();
  });
  ASSERT_TRUE(waiting_is(pool, 1));
  held->discard();  // the connection died
  waiter.join();
  EXPECT_EQ(got, 2);
  EXPECT_EQ(ledger->destroyed.load(), 1);
}

TEST(PoolAcquire, ClosedPoolRejects) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  ASSERT_FALSE(pool.close(background()));
  auto lease = pool.acquire(background());
  ASSERT_FALSE(lease);
  EXPECT_EQ(lease.error(), ctxpp::failure::rejected);
}

// --- leases -------------------------------------------------------------------------------

TEST(PoolLease, MovingTransfersOwnershipAndTheResourceReturnsOnce) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(2));
  auto acquired = pool.acquire(background());
  ASSERT_TRUE(acquired);
  Lease<Conn> a = std::move(*acquired);
  Lease<Conn> b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_TRUE(b);
  b.release();
  b.release();  // idempotent
  EXPECT_FALSE(b);
  const auto stats = pool.stats();
  EXPECT_EQ(stats.idle, 1U);
  EXPECT_EQ(stats.leased, 0U);
  EXPECT_EQ(ledger->recycled.load(), 1);
}

TEST(PoolLease, MoveAssignmentReturnsTheResourceItHeld) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(2));
  auto first = pool.acquire(background());
  auto second = pool.acquire(background());
  ASSERT_TRUE(first && second);
  *first = std::move(*second);
  EXPECT_EQ(pool.stats().idle, 1U);
  EXPECT_EQ(pool.stats().leased, 1U);
}

TEST(PoolLease, DiscardDestroysTheResource) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(2));
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease);
  lease->discard();
  EXPECT_EQ(ledger->destroyed.load(), 1);
  EXPECT_EQ(ledger->recycled.load(), 0);
  const auto stats = pool.stats();
  EXPECT_EQ(stats.size, 0U);
  EXPECT_EQ(stats.destroyed_total, 1U);
}

TEST(PoolLease, UnhealthyOrThrowingRecycleDestroysInsteadOfPooling) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(2));
  {
    auto lease = pool.acquire(background());
    ASSERT_TRUE(lease);
    (*lease)->healthy = false;
  }
  EXPECT_EQ(ledger->destroyed.load(), 1);
  EXPECT_EQ(pool.stats().idle, 0U);

  PoolHooks<int> hooks;
  hooks.create = [](const Context&) -> Result<int> { return 1; };
  hooks.recycle = [](int&) -> bool { throw std::runtime_error("reset failed"); };
  Pool<int> throwing(std::move(hooks), sized(1));
  { auto lease = throwing.acquire(background()); }
  EXPECT_EQ(throwing.stats().idle, 0U);
  EXPECT_EQ(throwing.stats().destroyed_total, 1U);
}

TEST(PoolLease, MaxIdleBoundsTheResourcesKept) {
  auto ledger = std::make_shared<Ledger>();
  PoolOptions options = sized(3);
  options.max_idle = 1;
  Pool<Conn> pool(counting_hooks(ledger), options);
  {
    auto a = pool.acquire(background());
    auto b = pool.acquire(background());
    auto c = pool.acquire(background());
    ASSERT_TRUE(a && b && c);
  }
  EXPECT_EQ(pool.stats().idle, 1U);
  EXPECT_EQ(ledger->destroyed.load(), 2);
}

TEST(PoolLease, OutlivesItsPoolAndDestroysTheResourceWhenReturned) {
  auto ledger = std::make_shared<Ledger>();
  Lease<Conn> kept;
  {
    Pool<Conn> pool(counting_hooks(ledger), sized(2));
    auto lease = pool.acquire(background());
    ASSERT_TRUE(lease);
    kept = std::move(*lease);
    auto idle = pool.acquire(background());  // a second one, returned idle below
    ASSERT_TRUE(idle);
  }
  EXPECT_EQ(ledger->destroyed.load(), 1);  // the idle one, with the pool
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->id(), 1);
  kept.release();
  EXPECT_EQ(ledger->destroyed.load(), 2);
}

// --- bind -----------------------------------------------------------------------------------

TEST(PoolBind, EndOfTheBoundContextInterruptsAndReclaims) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto scope = ctxpp::with_cancel(background());
  auto lease = pool.acquire(scope.ctx);
  ASSERT_TRUE(lease);
  ASSERT_FALSE(lease->bind(scope.ctx));
  scope.cancel();
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  EXPECT_EQ(ledger->interrupted.load(), 1);
  EXPECT_FALSE(*lease);
  auto use = lease->use();
  EXPECT_FALSE(use);
  EXPECT_EQ(use.error(), ctxpp::errc::canceled);
  EXPECT_EQ(pool.stats().revoked_total, 1U);
  lease->release();  // nothing left to return
  EXPECT_EQ(pool.stats().idle, 1U);
  EXPECT_EQ(ledger->recycled.load(), 1);
}

TEST(PoolBind, ReclaimWaitsForTheUseSectionAndInterruptsIt) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto scope = ctxpp::with_cancel(background());
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease);
  ASSERT_FALSE(lease->bind(scope.ctx));
  {
    auto use = lease->use();
    ASSERT_TRUE(use);
    scope.cancel();
    ASSERT_TRUE(eventually([&] { return ledger->interrupted.load() == 1; }));
    // Interrupted, but not taken away while in use.
    EXPECT_EQ(pool.stats().leased, 1U);
    EXPECT_EQ(use->id(), 1);
  }
  EXPECT_EQ(pool.stats().idle, 1U);
  EXPECT_EQ(pool.stats().revoked_total, 1U);
  EXPECT_FALSE(lease->use());
}

TEST(PoolBind, AlreadyEndedContextReclaimsBeforeBindReturns) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease);
  auto scope = ctxpp::with_timeout(background(), -1s);
  EXPECT_EQ(lease->bind(scope.ctx), ctxpp::errc::deadline_exceeded);
  EXPECT_FALSE(*lease);
  EXPECT_EQ(pool.stats().idle, 1U);
}

TEST(PoolBind, ReclaimedResourceGoesToTheNextWaiter) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto scope = ctxpp::with_cancel(background());
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease);
  ASSERT_FALSE(lease->bind(scope.ctx));
  bool served = false;
  std::thread waiter([&] { served = static_cast<bool>(pool.acquire(background())); });
  ASSERT_TRUE(waiting_is(pool, 1));
  scope.cancel();  // the holder forgot its lease; the request's end frees it
  waiter.join();
  EXPECT_TRUE(served);
}

TEST(PoolBind, RebindingReplacesTheContext) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto first = ctxpp::with_cancel(background());
  auto second = ctxpp::with_cancel(background());
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease);
  ASSERT_FALSE(lease->bind(first.ctx));
  ASSERT_FALSE(lease->bind(second.ctx));
  first.cancel();
  EXPECT_TRUE(*lease);  // no longer bound to first
  second.cancel();
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  EXPECT_EQ(ledger->interrupted.load(), 1);
}

TEST(PoolBind, EmptyLeaseCannotBeBound) {
  Lease<int> empty;
  EXPECT_EQ(empty.bind(background()), ctxpp::failure::rejected);
  EXPECT_EQ(empty.use().error(), ctxpp::failure::rejected);
}

// --- idle expiry and lifetime ---------------------------------------------------------------

TEST(PoolExpiry, IdleResourcesAreDestroyedWithoutAnotherAcquire) {
  auto ledger = std::make_shared<Ledger>();
  PoolOptions options = sized(2);
  options.idle_timeout = 20ms;
  Pool<Conn> pool(counting_hooks(ledger), options);
  {
    auto a = pool.acquire(background());
    auto b = pool.acquire(background());
    ASSERT_TRUE(a && b);
  }
  ASSERT_TRUE(eventually([&] { return ledger->destroyed.load() == 2; }));
  const auto stats = pool.stats();
  EXPECT_EQ(stats.idle, 0U);
  EXPECT_EQ(stats.size, 0U);
  EXPECT_EQ(stats.destroyed_total, 2U);
}

TEST(PoolExpiry, ResourcePastMaxLifetimeIsDestroyedOnReturn) {
  auto ledger = std::make_shared<Ledger>();
  PoolOptions options = sized(1);
  options.max_lifetime = 1ns;
  Pool<Conn> pool(counting_hooks(ledger), options);
  { auto lease = pool.acquire(background()); }
  EXPECT_EQ(ledger->destroyed.load(), 1);
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease);
  EXPECT_EQ((*lease)->id(), 2);
}

// --- lingering leases -----------------------------------------------------------------------

struct Reports {
  std::mutex mutex;
  std::vector<ctxpp::LingeringLease> found;
  std::size_t size() {
    std::lock_guard lock(mutex);
    return found.size();
  }
};

TEST(PoolLingering, LeaseOutlivingItsContextIsReportedWithItsAcquireSite) {
  auto ledger = std::make_shared<Ledger>();
  auto reports = std::make_shared<Reports>();
  PoolOptions options = sized(2);
  options.name = "db";
  options.linger_after_context = 10ms;
  options.on_lingering = [reports](const ctxpp::LingeringLease& l) {
    std::lock_guard lock(reports->mutex);
    reports->found.push_back(l);
  };
  Pool<Conn> pool(counting_hooks(ledger), options);
  auto scope = ctxpp::with_cancel(background());
  const auto line = __LINE__ + 1;
  auto lease = pool.acquire(scope.ctx);
  ASSERT_TRUE(lease);
  EXPECT_EQ(pool.stats().lingering, 0U);
  scope.cancel();  // the request ended; the lease was not given back
  ASSERT_TRUE(eventually([&] { return reports->size() == 1; }));
  {
    std::lock_guard lock(reports->mutex);
    const auto& l = reports->found.front();
    EXPECT_EQ(l.pool, "db");
    EXPECT_EQ(l.reason, ctxpp::LingerReason::outlived_context);
    EXPECT_EQ(l.where.line(), static_cast<std::uint_least32_t>(line));
    EXPECT_NE(std::string(l.where.file_name()).find("pool_test.cpp"), std::string::npos);
    ASSERT_TRUE(l.since_context_end.has_value());
    EXPECT_GE(*l.since_context_end, 10ms);
    EXPECT_EQ(l.context_error, ctxpp::errc::canceled);
    EXPECT_FALSE(l.returned);
  }
  EXPECT_EQ(pool.stats().lingering, 1U);
  ASSERT_EQ(pool.lingering().size(), 1U);
  lease->release();  // reported once only
  EXPECT_EQ(reports->size(), 1U);
  EXPECT_EQ(pool.stats().lingered_total, 1U);
  EXPECT_EQ(pool.stats().lingering, 0U);
}

TEST(PoolLingering, LeaseHeldPastMaxHoldIsReported) {
  auto ledger = std::make_shared<Ledger>();
  auto reports = std::make_shared<Reports>();
  PoolOptions options = sized(1);
  options.max_hold = 10ms;
  options.on_lingering = [reports](const ctxpp::LingeringLease& l) {
    std::lock_guard lock(reports->mutex);
    reports->found.push_back(l);
  };
  Pool<Conn> pool(counting_hooks(ledger), options);
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease);
  ASSERT_TRUE(eventually([&] { return reports->size() == 1; }));
  std::lock_guard lock(reports->mutex);
  EXPECT_EQ(reports->found.front().reason, ctxpp::LingerReason::held_too_long);
  EXPECT_GE(reports->found.front().held_for, 10ms);
  EXPECT_FALSE(reports->found.front().since_context_end.has_value());
}

TEST(PoolLingering, LateReturnIsReportedWhenNoTimerFoundItFirst) {
  auto ledger = std::make_shared<Ledger>();
  PoolOptions options = sized(1);
  options.linger_after_context = 0ns;  // any hold past the context's end lingers
  Pool<Conn> pool(counting_hooks(ledger), options);
  auto scope = ctxpp::with_cancel(background());
  auto lease = pool.acquire(scope.ctx);
  ASSERT_TRUE(lease);
  scope.cancel();
  ASSERT_EQ(pool.lingering().size(), 1U);
  lease->release();
  EXPECT_EQ(pool.stats().lingered_total, 1U);
}

TEST(PoolLingering, LeaseReturnedWithItsRequestIsNotReported) {
  auto ledger = std::make_shared<Ledger>();
  std::atomic<int> reported{0};
  PoolOptions options = sized(1);
  options.max_hold = 1h;
  options.on_lingering = [&](const ctxpp::LingeringLease&) { ++reported; };
  Pool<Conn> pool(counting_hooks(ledger), options);
  for (int i = 0; i < 20; ++i) {
    auto scope = ctxpp::with_cancel(background());
    auto lease = pool.acquire(scope.ctx);
    ASSERT_TRUE(lease);
    lease->release();
    scope.cancel();
  }
  EXPECT_EQ(reported.load(), 0);
  EXPECT_EQ(pool.stats().lingered_total, 0U);
}

// --- close ----------------------------------------------------------------------------------

TEST(PoolClose, RejectsWaitersAtOnce) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  auto held = pool.acquire(background());
  ASSERT_TRUE(held);
  std::error_code error;
  std::thread waiter([&] {
    auto lease = pool.acquire(background());
    error = lease ? std::error_code() : lease.error();
  });
  ASSERT_TRUE(waiting_is(pool, 1));
  auto scope = ctxpp::with_timeout(background(), 1ms);
  EXPECT_EQ(pool.close(scope.ctx), ctxpp::errc::deadline_exceeded);  // the lease is out
  waiter.join();
  EXPECT_EQ(error, ctxpp::failure::rejected);
}

TEST(PoolClose, DrainsLeasesAndDestroysEverything) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(2));
  auto held = pool.acquire(background());
  ASSERT_TRUE(held);
  { auto idle = pool.acquire(background()); }
  std::error_code closed = std::make_error_code(std::errc::io_error);
  Gate done;
  std::thread closer([&] {
    closed = pool.close(background());
    done.open();
  });
  ASSERT_TRUE(eventually([&] { return ledger->destroyed.load() == 1; }));  // idle one
  EXPECT_FALSE(done.wait(10ms));
  held->release();
  closer.join();
  EXPECT_FALSE(closed) << ctxpp_test::describe(closed);
  EXPECT_EQ(ledger->destroyed.load(), 2);
  EXPECT_EQ(pool.stats().size, 0U);
  EXPECT_FALSE(pool.close(background()));  // idempotent
}

// --- stats ----------------------------------------------------------------------------------

TEST(PoolStats, HistogramCountsAcquiresThatWaitedOrCreated) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(1));
  { auto created = pool.acquire(background()); }
  { auto idle = pool.acquire(background()); }  // found idle: not counted
  const auto stats = pool.stats();
  EXPECT_EQ(stats.wait_time.count, 1U);
  std::uint64_t sum = 0;
  for (auto n : stats.wait_time.counts) sum += n;
  EXPECT_EQ(sum, 1U);
  EXPECT_GT(stats.wait_time.sum.count(), 0);
}

TEST(PoolStats, ConcurrentUseNeverSharesAResourceAndEndsBalanced) {
  auto ledger = std::make_shared<Ledger>();
  Pool<Conn> pool(counting_hooks(ledger), sized(3));
  std::atomic<int> shared_use{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        auto scope = ctxpp::with_cancel(background());
        if ((i + t) % 7 == 0) scope.cancel();
        auto lease = pool.acquire(scope.ctx);
        if (!lease) continue;
        if ((*lease)->in_use.fetch_add(1) != 0) ++shared_use;
        (*lease)->in_use.fetch_sub(1);
        if (i % 11 == 0) lease->discard();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(shared_use.load(), 0);
  const auto stats = pool.stats();
  EXPECT_EQ(stats.leased, 0U);
  EXPECT_EQ(stats.waiting, 0U);
  EXPECT_LE(stats.size, 3U);
  EXPECT_EQ(stats.created_total - stats.destroyed_total, stats.size);
  EXPECT_EQ(static_cast<std::uint64_t>(ledger->created.load()), stats.created_total);
}

}  // namespace
