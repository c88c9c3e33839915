// ctxpp/sqlite/pool.hpp: SQLite connections in a ctxpp::Pool — a request cancelled
// mid-query gives its connection back healthy, a bound lease is interrupted and
// reclaimed, and what a holder left behind is rolled back or discarded.
#include "ctxpp/sqlite/pool.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "ctxpp/context.hpp"
#include "ctxpp/pool.hpp"
#include "ctxpp/sqlite/connection.hpp"
#include "ctxpp/sqlite/error.hpp"
#include "ctxpp/sqlite/statement.hpp"
#include "sqlite_test_support.hpp"
#include "support/test_support.hpp"

namespace {

namespace sq = ctxpp::sqlite;
using ctxpp::background;
using ctxpp_sqlite_test::CancelWhenOpen;
using ctxpp_sqlite_test::kLongQuery;
using ctxpp_sqlite_test::kPromptBound;
using ctxpp_sqlite_test::StartProbe;
using ctxpp_sqlite_test::TempDir;
using ctxpp_sqlite_test::to_ms;
using ctxpp_test::describe;
using ctxpp_test::eventually;
using Clock = std::chrono::steady_clock;
using SqlitePool = ctxpp::Pool<sq::Connection>;

std::optional<std::int64_t> scalar(sq::Connection& conn, std::string_view sql) {
  std::optional<std::int64_t> value;
  auto done =
      sq::query(background(), conn, sql, [&](const sq::Row& row) { value = row.integer(0); });
  EXPECT_TRUE(done) << describe(done.error()) << " " << conn.last_error_message();
  return value;
}

void must_execute(sq::Connection& conn, std::string_view sql) {
  auto done = sq::execute_script(background(), conn, sql);
  ASSERT_TRUE(done) << describe(done.error()) << " " << conn.last_error_message();
}

std::string describe(const ctxpp::PoolStats& s) {
  return "size=" + std::to_string(s.size) + " idle=" + std::to_string(s.idle) +
         " leased=" + std::to_string(s.leased) + " created=" + std::to_string(s.created_total) +
         " destroyed=" + std::to_string(s.destroyed_total) +
         " revoked=" + std::to_string(s.revoked_total);
}

// ---------------------------------------------------------------------------------------
// The hooks

TEST(PoolHooks, CreateOpensWithTheAcquirersContext) {
  TempDir dir;
  const std::string path = dir.file("app.db");
  auto hooks = sq::pool_hooks(path);
  ASSERT_TRUE(hooks.create && hooks.recycle && hooks.interrupt);
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  cancel();
  auto refused = hooks.create(ctx);
  EXPECT_EQ(refused.error(), ctxpp::errc::canceled) << describe(refused.error());
  EXPECT_FALSE(std::filesystem::exists(path));

  auto made = hooks.create(background());
  ASSERT_TRUE(made) << describe(made.error());
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(PoolHooks, InvalidOptionsThrowWhereThePoolIsMade) {
  EXPECT_THROW(static_cast<void>(sq::pool_hooks("x.db", {.progress_steps = -5})),
               std::invalid_argument);
  EXPECT_THROW(
      static_cast<void>(sq::pool_hooks("x.db", {.busy_timeout = std::chrono::seconds(-1)})),
      std::invalid_argument);
}

TEST(PoolHooks, OpenFailureReachesTheAcquirer) {
  TempDir dir;
  SqlitePool pool(sq::pool_hooks(dir.file("no/such/dir/app.db")), {.max_size = 2});
  auto lease = pool.acquire(background());
  ASSERT_FALSE(lease);
  EXPECT_TRUE(lease.error() == sq::errc::cantopen) << describe(lease.error());
  const ctxpp::PoolStats stats = pool.stats();
  EXPECT_EQ(stats.create_failures_total, 1U);
  EXPECT_EQ(stats.size, 0U) << describe(stats);
}

TEST(Recycle, EmptyConnectionIsNotReusable) {
  sq::Connection empty;
  EXPECT_FALSE(sq::recycle(empty));
}

TEST(Recycle, ClearsAnInterruptAndRollsBackAnOpenTransaction) {
  TempDir dir;
  auto conn = sq::open(background(), dir.file("app.db"));
  ASSERT_TRUE(conn);
  must_execute(*conn, "CREATE TABLE t(x); BEGIN; INSERT INTO t VALUES (1)");
  conn->interrupt();
  ASSERT_TRUE(conn->in_transaction());
  EXPECT_TRUE(sq::recycle(*conn));
  EXPECT_FALSE(conn->interrupted());
  EXPECT_FALSE(conn->in_transaction());
  EXPECT_EQ(scalar(*conn, "SELECT count(*) FROM t"), 0);
}

TEST(Recycle, ConnectionWithAStatementStillUnfinalizedIsNotReusable) {
  TempDir dir;
  auto conn = sq::open(background(), dir.file("app.db"));
  ASSERT_TRUE(conn);
  sqlite3_stmt* kept = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(conn->raw(), "SELECT 1", -1, &kept, nullptr), SQLITE_OK);
  EXPECT_FALSE(sq::recycle(*conn));
  sqlite3_finalize(kept);
  EXPECT_TRUE(sq::recycle(*conn));
}

// ---------------------------------------------------------------------------------------
// In a pool

TEST(Pool, CancelledQueryGivesTheConnectionBackAndItIsReusedHealthy) {
  TempDir dir;
  SqlitePool pool(sq::pool_hooks(dir.file("app.db")), {.max_size = 1});
  sqlite3* first_raw = nullptr;
  StartProbe probe;
  {
    auto [ctx, cancel] = ctxpp::with_cancel(background());
    auto lease = pool.acquire(ctx);
    ASSERT_TRUE(lease) << describe(lease.error());
    sq::Connection& conn = **lease;
    first_raw = conn.raw();
    ASSERT_TRUE(probe.install(conn.raw()));
    CancelWhenOpen canceller(probe.running, cancel);
    auto done = sq::query(ctx, conn, kLongQuery, [](const sq::Row&) {});
    const Clock::time_point returned = Clock::now();
    probe.running.open();
    canceller.join();
    ASSERT_FALSE(done) << "the query ran to its end";
    EXPECT_EQ(done.error(), ctxpp::errc::canceled) << describe(done.error());
    const Clock::duration latency = returned - canceller.cancelled_at();
    std::printf("[ measured ] pooled connection: cancel -> query returned: %.3f ms\n",
                to_ms(latency));
    EXPECT_LT(latency, kPromptBound);
    EXPECT_EQ(pool.stats().leased, 1U);
  }  // the lease goes back here

  ctxpp::PoolStats stats = pool.stats();
  EXPECT_EQ(stats.leased, 0U) << describe(stats);
  EXPECT_EQ(stats.idle, 1U) << describe(stats);
  EXPECT_EQ(stats.destroyed_total, 0U) << describe(stats);

  auto again = pool.acquire(background());
  ASSERT_TRUE(again) << describe(again.error());
  EXPECT_EQ((*again)->raw(), first_raw);  // the same connection, reused
  EXPECT_FALSE((*again)->in_transaction());
  EXPECT_EQ(scalar(**again, "SELECT 40 + 2"), 42);
  again->release();
  stats = pool.stats();
  EXPECT_EQ(stats.leased, 0U) << describe(stats);
  EXPECT_EQ(stats.created_total, 1U) << describe(stats);
}

TEST(Pool, BoundLeaseIsInterruptedAndReclaimedWhenItsContextEnds) {
  TempDir dir;
  SqlitePool pool(sq::pool_hooks(dir.file("app.db")), {.max_size = 1});
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  auto acquired = pool.acquire(background());
  ASSERT_TRUE(acquired) << describe(acquired.error());
  ctxpp::Lease<sq::Connection> lease = std::move(*acquired);
  ASSERT_FALSE(lease.bind(ctx));

  StartProbe probe;
  CancelWhenOpen canceller(probe.running, cancel);
  std::error_code query_error;
  Clock::time_point returned{};
  {
    auto use = lease.use();
    ASSERT_TRUE(use) << describe(use.error());
    ASSERT_TRUE(probe.install(use->raw()));
    // The statement's own context never ends: only the pool's interrupt hook, run
    // when the lease's context ends, can stop it.
    auto done = sq::query(background(), *use, kLongQuery, [](const sq::Row&) {});
    returned = Clock::now();
    query_error = done.error();
  }  // leaving use(): the pool takes the connection back
  probe.running.open();
  canceller.join();

  EXPECT_TRUE(query_error == sq::errc::interrupt) << describe(query_error);
  const Clock::duration latency = returned - canceller.cancelled_at();
  std::printf("[ measured ] bound lease: cancel -> query returned: %.3f ms\n", to_ms(latency));
  EXPECT_LT(latency, kPromptBound);
  ASSERT_TRUE(eventually([&] { return pool.stats().leased == 0; }))
      << describe(pool.stats()) << ctxpp_test::describe_threads();
  EXPECT_FALSE(lease);
  auto after = lease.use();
  EXPECT_FALSE(after);
  EXPECT_EQ(after.error(), ctxpp::errc::canceled) << describe(after.error());
  const ctxpp::PoolStats stats = pool.stats();
  EXPECT_EQ(stats.revoked_total, 1U) << describe(stats);
  EXPECT_EQ(stats.idle, 1U) << describe(stats);

  // The next holder gets it healthy: not interrupted any more.
  auto next = pool.acquire(background());
  ASSERT_TRUE(next) << describe(next.error());
  EXPECT_FALSE((*next)->interrupted());
  EXPECT_EQ(scalar(**next, "SELECT 40 + 2"), 42);
}

TEST(Pool, BoundLeaseEndingBetweenStatementsDoesNotInterruptTheNextHolder) {
  // The interrupt lands while no statement runs; it stays on the connection until the
  // pool recycles it, and never reaches the next lease.
  TempDir dir;
  SqlitePool pool(sq::pool_hooks(dir.file("app.db")), {.max_size = 1});
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  auto lease = pool.acquire(background());
  ASSERT_TRUE(lease);
  ASSERT_FALSE(lease->bind(ctx));
  cancel();
  ASSERT_TRUE(eventually([&] { return pool.stats().leased == 0; })) << describe(pool.stats());
  EXPECT_FALSE(*lease);

  auto next = pool.acquire(background());
  ASSERT_TRUE(next) << describe(next.error());
  EXPECT_FALSE((*next)->interrupted());
  must_execute(**next, "CREATE TABLE t(x); INSERT INTO t VALUES (1)");
  EXPECT_EQ(scalar(**next, "SELECT count(*) FROM t"), 1);
}

TEST(Pool, TransactionTheHolderLeftOpenIsRolledBackOnReturn) {
  TempDir dir;
  SqlitePool pool(sq::pool_hooks(dir.file("app.db")), {.max_size = 1});
  {
    auto lease = pool.acquire(background());
    ASSERT_TRUE(lease);
    must_execute(**lease, "CREATE TABLE t(x); BEGIN; INSERT INTO t VALUES (1)");
    ASSERT_TRUE((*lease)->in_transaction());
  }  // returned mid-transaction
  auto next = pool.acquire(background());
  ASSERT_TRUE(next);
  EXPECT_FALSE((*next)->in_transaction());
  EXPECT_EQ(scalar(**next, "SELECT count(*) FROM t"), 0);
  EXPECT_EQ(pool.stats().destroyed_total, 0U);  // rolled back, not thrown away
}

TEST(Pool, ConnectionWithAStatementStillUnfinalizedIsDiscarded) {
  TempDir dir;
  SqlitePool pool(sq::pool_hooks(dir.file("app.db")), {.max_size = 1});
  sqlite3_stmt* kept = nullptr;
  sqlite3* kept_raw = nullptr;
  {
    auto lease = pool.acquire(background());
    ASSERT_TRUE(lease);
    kept_raw = (*lease)->raw();
    ASSERT_EQ(sqlite3_prepare_v2(kept_raw, "SELECT 1", -1, &kept, nullptr), SQLITE_OK);
  }
  ctxpp::PoolStats stats = pool.stats();
  EXPECT_EQ(stats.destroyed_total, 1U) << describe(stats);
  EXPECT_EQ(stats.idle, 0U) << describe(stats);
  // SQLite frees the closed handle with its last statement (close_v2).
  sqlite3_finalize(kept);

  auto next = pool.acquire(background());
  ASSERT_TRUE(next);
  EXPECT_EQ(scalar(**next, "SELECT 40 + 2"), 42);
  EXPECT_EQ(pool.stats().created_total, 2U);
}

TEST(Pool, BrokenConnectionIsDiscarded) {
  TempDir dir;
  const std::string path = dir.file("junk.db");
  {
    std::ofstream junk(path);
    for (int i = 0; i < 200; ++i) junk << "this is not a database file ";
  }
  SqlitePool pool(sq::pool_hooks(path), {.max_size = 1});
  {
    auto lease = pool.acquire(background());
    ASSERT_TRUE(lease) << describe(lease.error());
    auto done = sq::execute(background(), **lease, "SELECT count(*) FROM sqlite_schema");
    EXPECT_TRUE(done.error() == sq::errc::notadb) << describe(done.error());
  }
  const ctxpp::PoolStats stats = pool.stats();
  EXPECT_EQ(stats.destroyed_total, 1U) << describe(stats);
  EXPECT_EQ(stats.idle, 0U) << describe(stats);
  EXPECT_EQ(stats.leased, 0U) << describe(stats);
}

TEST(Pool, EmptiedConnectionIsDiscarded) {
  TempDir dir;
  SqlitePool pool(sq::pool_hooks(dir.file("app.db")), {.max_size = 1});
  sq::Connection taken;
  {
    auto lease = pool.acquire(background());
    ASSERT_TRUE(lease);
    taken = std::move(**lease);  // the holder walked off with the handle
  }
  EXPECT_EQ(pool.stats().destroyed_total, 1U) << describe(pool.stats());
  EXPECT_TRUE(taken);
}

}  // namespace
