// Tests of ctxpp/postgres/pool.hpp: PostgreSQL connections in a ctxpp::Pool —
// connect with the acquirer's context, roll back on return, discard broken
// connections, interrupt bound leases. Hundreds of requests cancelled at once:
// pool_mass_cancel_test.cpp.
#include "ctxpp/postgres/pool.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "ctxpp/context.hpp"
#include "ctxpp/pool.hpp"
#include "ctxpp/postgres/query.hpp"
#include "postgres_test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::Pool;
using ctxpp::PoolOptions;
using ctxpp::postgres::Connection;
using ctxpp::postgres::pool_hooks;
using ctxpp::postgres::query;
using ctxpp_postgres_test::kLongBound;
using ctxpp_postgres_test::PostgresPool;
using ctxpp_postgres_test::ServerTest;
using ctxpp_postgres_test::SilentServer;
using Clock = std::chrono::steady_clock;
namespace pg = ctxpp::postgres;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

PoolOptions options_of(std::size_t max_size) {
  PoolOptions options;
  options.max_size = max_size;
  options.name = "postgres-test";
  return options;
}

TEST(PostgresPoolHooks, CreateConnectsWithTheAcquirersContext) {
  SilentServer silent;
  Pool<Connection> pool(pool_hooks(silent.conninfo()), options_of(2));
  auto timed = ctxpp::with_timeout(background(), 100ms);
  const auto start = Clock::now();
  auto lease = pool.acquire(timed.ctx);
  ASSERT_FALSE(lease);
  EXPECT_EQ(lease.error(), ctxpp::errc::deadline_exceeded);
  EXPECT_LT(ms(Clock::now() - start), 5000.0);
  EXPECT_EQ(pool.stats().size, 0U);  // the capacity was given back
}

TEST(PostgresPoolHooks, ConnectFailureReachesTheAcquirer) {
  Pool<Connection> pool(pool_hooks("no_such_option=1"), options_of(2));
  auto lease = pool.acquire(background());
  ASSERT_FALSE(lease);
  EXPECT_EQ(lease.error(), pg::errc::connection_failed);
  EXPECT_EQ(pool.stats().size, 0U);
}

TEST(PostgresPoolHooks, ResetRefusesEmptyConnections) {
  Connection empty;
  EXPECT_FALSE(pg::reset(empty));
}

TEST_F(PostgresPool, ReturnedConnectionIsReusedWithItsTransactionRolledBack) {
  const std::string table = tag() + "_rows";
  ASSERT_TRUE(query(background(), observer_, "CREATE TABLE " + table + " (x int)"))
      << observer_.last_error_message();
  Pool<Connection> pool(pool_hooks(conninfo()), options_of(1));
  int pid = 0;
  {
    auto lease = pool.acquire(background());
    ASSERT_TRUE(lease) << lease.error().message();
    pid = (*lease)->backend_pid();
    ASSERT_TRUE(query(background(), **lease, "BEGIN"));
    ASSERT_TRUE(query(background(), **lease, "INSERT INTO " + table + " VALUES (1)"));
  }  // returned with the transaction open
  {
    auto lease = pool.acquire(background());
    ASSERT_TRUE(lease) << lease.error().message();
    EXPECT_EQ((*lease)->backend_pid(), pid);  // reused, not replaced
    EXPECT_EQ(PQtransactionStatus((*lease)->raw()), PQTRANS_IDLE);
    auto count = query(background(), **lease, "SELECT count(*) FROM " + table);
    ASSERT_TRUE(count) << (*lease)->last_error_message();
    EXPECT_EQ(count->value(0, 0), "0");
    // A failed transaction is rolled back too.
    ASSERT_TRUE(query(background(), **lease, "BEGIN"));
    EXPECT_FALSE(query(background(), **lease, "SELECT * FROM ctxpp_no_such_table"));
    EXPECT_EQ(PQtransactionStatus((*lease)->raw()), PQTRANS_INERROR);
  }
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease) << lease.error().message();
  EXPECT_EQ((*lease)->backend_pid(), pid);
  EXPECT_EQ(PQtransactionStatus((*lease)->raw()), PQTRANS_IDLE);
  EXPECT_EQ(pool.stats().created_total, 1U);
  EXPECT_EQ(pool.stats().destroyed_total, 0U);
  EXPECT_TRUE(query(background(), observer_, "DROP TABLE " + table));
}

TEST_F(PostgresPool, ConnectionKilledMidLeaseIsDiscardedAndReplaced) {
  Pool<Connection> pool(pool_hooks(conninfo()), options_of(1));
  int pid = 0;
  {
    auto lease = pool.acquire(background());
    ASSERT_TRUE(lease) << lease.error().message();
    pid = (*lease)->backend_pid();
    bool terminated = false;
    std::thread killer([&] {
      if (eventually([&] { return active_sleeps() == 1; })) {
        auto done = query(background(), observer_, "SELECT pg_terminate_backend($1)",
                          {std::to_string(pid)});
        terminated = done && done->value(0, 0) == "t";
      }
    });
    auto rows = query(background(), **lease, "SELECT pg_sleep(10)");
    killer.join();
    ASSERT_TRUE(terminated) << observer_.last_error_message();
    EXPECT_EQ(rows.error(), pg::errc::broken_connection);
    EXPECT_TRUE((*lease)->broken());
  }  // returned as is: the recycle hook refuses it
  EXPECT_EQ(pool.stats().destroyed_total, 1U);
  EXPECT_EQ(pool.stats().size, 0U);

  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease) << lease.error().message();
  EXPECT_NE((*lease)->backend_pid(), pid);
  auto one = query(background(), **lease, "SELECT 1");
  EXPECT_TRUE(one) << (*lease)->last_error_message();
  EXPECT_EQ(pool.stats().created_total, 2U);
}

// A lease bound to a context that ends while its holder runs a statement with a
// different context: the interrupt hook cancels the statement server-side and the
// pool takes the connection back, healthy, as soon as the use() section ends.
TEST_F(PostgresPool, BoundLeaseIsInterruptedAndReclaimedWhenItsContextEnds) {
  Pool<Connection> pool(pool_hooks(conninfo()), options_of(1));
  auto request = ctxpp::with_cancel(background());
  const ctxpp::CancelFunc cancel = request.cancel;
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease) << lease.error().message();
  ASSERT_FALSE(lease->bind(request.ctx));
  const int pid = (*lease)->backend_pid();

  std::thread canceller([&, cancel] {
    (void)eventually([&] { return active_sleeps() == 1; });
    cancel();
  });
  {
    auto use = lease->use();
    ASSERT_TRUE(use) << use.error().message();
    auto rows = query(background(), *use, "SELECT pg_sleep(10)");
    canceller.join();
    EXPECT_EQ(rows.error(), pg::errc::interrupted);
    EXPECT_FALSE(use->broken()) << use->last_error_message();
  }
  EXPECT_EQ(active_sleeps(), 0);
  EXPECT_TRUE(eventually([&] { return pool.stats().leased == 0; }, kLongBound));
  auto after = lease->use();
  EXPECT_FALSE(after);
  EXPECT_EQ(after.error(), ctxpp::errc::canceled);
  EXPECT_EQ(pool.stats().revoked_total, 1U);

  auto next = pool.acquire(background());
  ASSERT_TRUE(next) << next.error().message();
  EXPECT_EQ((*next)->backend_pid(), pid);  // reused
  EXPECT_FALSE((*next)->interrupted());    // cleared by the recycle hook
  EXPECT_TRUE(query(background(), **next, "SELECT 1")) << (*next)->last_error_message();
}

TEST_F(PostgresPool, BoundLeaseInterruptBetweenStatementsRefusesTheNextOne) {
  Pool<Connection> pool(pool_hooks(conninfo()), options_of(1));
  auto request = ctxpp::with_cancel(background());
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease) << lease.error().message();
  ASSERT_FALSE(lease->bind(request.ctx));
  {
    auto use = lease->use();
    ASSERT_TRUE(use);
    request.cancel();  // nothing runs now
    // The hook runs on the callback executor: poll the connection's own state.
    ASSERT_TRUE(eventually([&] { return use->interrupted(); }, kLongBound));
    const auto generation = pg::detail::statement_generation(*use);
    auto rows = query(background(), *use, "SELECT pg_sleep(10)");
    EXPECT_EQ(rows.error(), pg::errc::interrupted);
    EXPECT_EQ(pg::detail::statement_generation(*use), generation);  // never sent
  }
  EXPECT_TRUE(eventually([&] { return pool.stats().leased == 0; }, kLongBound));
  EXPECT_EQ(pool.stats().destroyed_total, 0U);
}

}  // namespace
