// ctxpp/sqlite/statement.hpp: running SQL on a real database file, and stopping it
// when its context ends — from another thread, by a deadline, before it starts, during
// a lock wait — with the connection healthy afterwards.
#include "ctxpp/sqlite/statement.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "ctxpp/context.hpp"
#include "ctxpp/scoped_callback.hpp"
#include "ctxpp/sqlite/connection.hpp"
#include "ctxpp/sqlite/error.hpp"
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
using Clock = std::chrono::steady_clock;

sq::Connection open_file(const TempDir& dir, const char* name = "test.db",
                         const sq::OpenOptions& options = {}) {
  auto conn = sq::open(background(), dir.file(name), options);
  EXPECT_TRUE(conn) << describe(conn.error());
  return conn ? std::move(*conn) : sq::Connection();
}

// The single integer a query returns, or nullopt (with a test failure) if it fails.
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

// The connection is as good as new: nothing unfinalized, no transaction, answers.
void expect_healthy(sq::Connection& conn) {
  EXPECT_EQ(sqlite3_next_stmt(conn.raw(), nullptr), nullptr);
  EXPECT_FALSE(conn.in_transaction());
  EXPECT_EQ(scalar(conn, "SELECT 40 + 2"), 42);
}

// ---------------------------------------------------------------------------------------
// Running SQL

TEST(Execute, ReportsRowsChangedAndZeroForStatementsThatChangeNone) {
  TempDir dir;
  auto conn = open_file(dir);
  auto created = sq::execute(background(), conn, "CREATE TABLE t(x INTEGER)");
  ASSERT_TRUE(created) << describe(created.error());
  EXPECT_EQ(*created, 0);

  auto inserted = sq::execute(background(), conn, "INSERT INTO t VALUES (1), (2), (3)");
  ASSERT_TRUE(inserted) << describe(inserted.error());
  EXPECT_EQ(*inserted, 3);
  EXPECT_EQ(conn.last_insert_rowid(), 3);

  auto updated = sq::execute(background(), conn, "UPDATE t SET x = x + 10 WHERE x > ?", {1});
  ASSERT_TRUE(updated);
  EXPECT_EQ(*updated, 2);

  // sqlite3_changes64 still says 2 here; a statement that changed nothing says 0.
  auto ddl = sq::execute(background(), conn, "CREATE TABLE u(y)");
  ASSERT_TRUE(ddl);
  EXPECT_EQ(*ddl, 0);
  auto select = sq::execute(background(), conn, "SELECT x FROM t");  // rows discarded
  ASSERT_TRUE(select);
  EXPECT_EQ(*select, 0);
  EXPECT_EQ(scalar(conn, "SELECT sum(x) FROM t"), 1 + 12 + 13);
}

TEST(Query, DeliversEveryColumnTypeWithItsName) {
  TempDir dir;
  auto conn = open_file(dir);
  const std::array<std::byte, 3> bytes{std::byte{1}, std::byte{0}, std::byte{255}};
  const std::string owned = "owned";
  int rows = 0;
  auto done = sq::query(
      background(), conn, "SELECT ? AS n, ? AS i, ? AS r, ? AS t, ? AS s, ? AS b, ? AS z",
      {nullptr, 42, 1.5, "text", owned, std::span<const std::byte>(bytes),
       std::string_view("a\0b", 3)},
      [&](const sq::Row& row) {
        ++rows;
        ASSERT_EQ(row.size(), 7);
        EXPECT_EQ(row.name(0), "n");
        EXPECT_EQ(row.name(6), "z");
        EXPECT_EQ(row.type(0), sq::ValueType::null);
        EXPECT_TRUE(row.is_null(0));
        EXPECT_EQ(row.type(1), sq::ValueType::integer);
        EXPECT_EQ(row.integer(1), 42);
        EXPECT_EQ(row.type(2), sq::ValueType::real);
        EXPECT_DOUBLE_EQ(row.real(2), 1.5);
        EXPECT_EQ(row.type(3), sq::ValueType::text);
        EXPECT_EQ(row.text(3), "text");
        EXPECT_EQ(row.text(4), "owned");
        EXPECT_EQ(row.type(5), sq::ValueType::blob);
        const auto blob = row.blob(5);
        ASSERT_EQ(blob.size(), 3U);
        EXPECT_EQ(blob[2], std::byte{255});
        EXPECT_EQ(row.text(6), std::string_view("a\0b", 3));  // length, not NUL, ends text
      });
  ASSERT_TRUE(done) << describe(done.error()) << " " << conn.last_error_message();
  EXPECT_EQ(rows, 1);
}

TEST(Query, ColumnOutsideTheRowReadsAsNull) {
  TempDir dir;
  auto conn = open_file(dir);
  bool seen = false;
  auto done = sq::query(background(), conn, "SELECT 7", [&](const sq::Row& row) {
    seen = true;
    EXPECT_EQ(row.type(1), sq::ValueType::null);
    EXPECT_EQ(row.type(-1), sq::ValueType::null);
    EXPECT_EQ(row.integer(1), 0);
    EXPECT_EQ(row.real(5), 0.0);
    EXPECT_TRUE(row.text(1).empty());
    EXPECT_TRUE(row.blob(1).empty());
    EXPECT_TRUE(row.name(1).empty());
  });
  ASSERT_TRUE(done);
  EXPECT_TRUE(seen);
}

TEST(Params, BoolAndSmallUnsignedBindAsIntegersAndNamedOnesBindInOrderOfAppearance) {
  TempDir dir;
  auto conn = open_file(dir);
  std::vector<std::int64_t> values;
  const std::vector<sq::Param> params{true, 7U};  // :b is parameter 1, :a parameter 2
  auto done = sq::query(background(), conn, "SELECT :b, :a, :b", params, [&](const sq::Row& row) {
    for (int i = 0; i < row.size(); ++i) values.push_back(row.integer(i));
  });
  ASSERT_TRUE(done) << describe(done.error()) << " " << conn.last_error_message();
  EXPECT_EQ(values, (std::vector<std::int64_t>{1, 7, 1}));
}

TEST(Params, CountDifferentFromTheStatementsIsRangeWithAReason) {
  TempDir dir;
  auto conn = open_file(dir);
  auto too_few = sq::execute(background(), conn, "SELECT ?, ?", {1});
  ASSERT_FALSE(too_few);
  EXPECT_TRUE(too_few.error() == sq::errc::range) << describe(too_few.error());
  EXPECT_EQ(conn.last_error_message(), "1 parameters given, the statement has 2");
  auto too_many = sq::execute(background(), conn, "SELECT 1", {1});
  EXPECT_TRUE(too_many.error() == sq::errc::range) << describe(too_many.error());
  expect_healthy(conn);
  EXPECT_EQ(conn.last_error_message(), "");  // cleared by the successful call
}

TEST(Query, CallbackReturningFalseStopsTheQuerySuccessfully) {
  TempDir dir;
  auto conn = open_file(dir);
  int rows = 0;
  auto done = sq::query(background(), conn,
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                        "SELECT x FROM c",  // endless: only stopping ends it
                        [&](const sq::Row& row) {
                          ++rows;
                          return row.integer(0) < 5;
                        });
  ASSERT_TRUE(done) << describe(done.error());
  EXPECT_EQ(rows, 5);
  expect_healthy(conn);
}

TEST(Query, ExceptionFromCallbackPropagatesAndFinalizesTheStatement) {
  TempDir dir;
  auto conn = open_file(dir);
  EXPECT_THROW(static_cast<void>(sq::query(
                   background(), conn, "SELECT 1 UNION ALL SELECT 2",
                   [](const sq::Row&) -> void { throw std::runtime_error("row rejected"); })),
               std::runtime_error);
  expect_healthy(conn);
}

TEST(Query, CallbackMayRunStatementsOnTheSameConnection) {
  TempDir dir;
  auto conn = open_file(dir);
  must_execute(conn,
               "CREATE TABLE src(x); INSERT INTO src VALUES (1), (2), (3); CREATE TABLE dst(y)");
  auto scope = ctxpp::with_cancel(background());  // a lambda below uses ctx: no binding
  const ctxpp::Context& ctx = scope.ctx;
  auto done = sq::query(ctx, conn, "SELECT x FROM src ORDER BY x", [&](const sq::Row& row) {
    auto copied = sq::execute(ctx, conn, "INSERT INTO dst VALUES (? * 10)", {row.integer(0)});
    EXPECT_TRUE(copied) << describe(copied.error()) << " " << conn.last_error_message();
  });
  ASSERT_TRUE(done) << describe(done.error());
  EXPECT_EQ(scalar(conn, "SELECT sum(y) FROM dst"), 60);
}

// ---------------------------------------------------------------------------------------
// SQLite's failures, with clear codes

TEST(Execute, SyntaxErrorIsErrcErrorWithSqlitesText) {
  TempDir dir;
  auto conn = open_file(dir);
  auto done = sq::execute(background(), conn, "SELEKT 1");
  ASSERT_FALSE(done);
  EXPECT_TRUE(done.error() == sq::errc::error) << describe(done.error());
  EXPECT_EQ(&done.error().category(), &sq::sqlite_category());
  EXPECT_NE(conn.last_error_message().find("syntax error"), std::string::npos)
      << conn.last_error_message();

  auto missing = sq::query(background(), conn, "SELECT * FROM nowhere", [](const sq::Row&) {});
  EXPECT_TRUE(missing.error() == sq::errc::error) << describe(missing.error());
  EXPECT_EQ(conn.last_error_message(), "no such table: nowhere");
  expect_healthy(conn);
}

TEST(Execute, ConstraintViolationKeepsTheExtendedCodeAndMatchesItsPrimary) {
  TempDir dir;
  auto conn = open_file(dir);
  must_execute(conn, "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)");
  ASSERT_TRUE(sq::execute(background(), conn, "INSERT INTO t(name) VALUES (?)", {"ann"}));
  auto duplicate = sq::execute(background(), conn, "INSERT INTO t(name) VALUES (?)", {"ann"});
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().value(), SQLITE_CONSTRAINT_UNIQUE) << describe(duplicate.error());
  EXPECT_TRUE(duplicate.error() == sq::errc::constraint);
  auto null_name = sq::execute(background(), conn, "INSERT INTO t(name) VALUES (?)", {nullptr});
  EXPECT_EQ(null_name.error().value(), SQLITE_CONSTRAINT_NOTNULL) << describe(null_name.error());
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM t"), 1);
}

TEST(Execute, TwoStatementsAreMisuseAndNeitherRuns) {
  TempDir dir;
  auto conn = open_file(dir);
  must_execute(conn, "CREATE TABLE t(x)");
  auto done = sq::execute(background(), conn, "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)");
  ASSERT_FALSE(done);
  EXPECT_TRUE(done.error() == sq::errc::misuse) << describe(done.error());
  EXPECT_EQ(conn.last_error_message(), "the SQL holds more than one statement: use execute_script");
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM t"), 0);
  // A trailing semicolon, spaces or a comment are not a statement.
  EXPECT_TRUE(sq::execute(background(), conn, "INSERT INTO t VALUES (1);  -- done\n"));
  EXPECT_TRUE(sq::execute(background(), conn, "-- nothing at all"));
}

TEST(Execute, EmptyConnectionIsMisuse) {
  sq::Connection empty;
  auto done = sq::execute(background(), empty, "SELECT 1");
  ASSERT_FALSE(done);
  EXPECT_TRUE(done.error() == sq::errc::misuse) << describe(done.error());
  auto rows = sq::query(background(), empty, "SELECT 1", [](const sq::Row&) {});
  EXPECT_TRUE(rows.error() == sq::errc::misuse);
  EXPECT_TRUE(sq::execute_script(background(), empty, "SELECT 1").error() == sq::errc::misuse);
}

TEST(ExecuteScript, RunsEveryStatementInOrder) {
  TempDir dir;
  auto conn = open_file(dir);
  auto done = sq::execute_script(background(), conn,
                                 "CREATE TABLE t(x);\n"
                                 "-- a comment between statements\n"
                                 "INSERT INTO t VALUES (1);;\n"
                                 "INSERT INTO t SELECT x + 1 FROM t;\n");
  ASSERT_TRUE(done) << describe(done.error()) << " " << conn.last_error_message();
  EXPECT_EQ(scalar(conn, "SELECT sum(x) FROM t"), 3);
  auto with_param = sq::execute_script(background(), conn, "INSERT INTO t VALUES (?)");
  EXPECT_TRUE(with_param.error() == sq::errc::range) << describe(with_param.error());
}

TEST(ExecuteScript, FailureRollsBackTheTransactionTheScriptOpened) {
  TempDir dir;
  auto conn = open_file(dir);
  must_execute(conn, "CREATE TABLE t(x)");
  auto done = sq::execute_script(
      background(), conn,
      "BEGIN; INSERT INTO t VALUES (1); INSERT INTO nowhere VALUES (2); COMMIT;");
  ASSERT_FALSE(done);
  EXPECT_TRUE(done.error() == sq::errc::error) << describe(done.error());
  // The reason survives the rollback that followed it.
  EXPECT_EQ(conn.last_error_message(), "no such table: nowhere");
  EXPECT_FALSE(conn.in_transaction());
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM t"), 0);
}

TEST(ExecuteScript, SuccessfulBeginIsLeftOpenForTheCaller) {
  TempDir dir;
  auto conn = open_file(dir);
  must_execute(conn, "CREATE TABLE t(x); BEGIN; INSERT INTO t VALUES (1)");
  EXPECT_TRUE(conn.in_transaction());
  must_execute(conn, "COMMIT");
  EXPECT_FALSE(conn.in_transaction());
}

// ---------------------------------------------------------------------------------------
// Cancellation

TEST(Cancel, LongQueryCancelledFromAnotherThreadStopsPromptlyAndTheConnectionIsReused) {
  TempDir dir;
  auto conn = open_file(dir);
  StartProbe probe;
  ASSERT_TRUE(probe.install(conn.raw()));
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  CancelWhenOpen canceller(probe.running, cancel);

  std::optional<std::int64_t> count;
  const Clock::time_point started = Clock::now();
  auto done = sq::query(ctx, conn, kLongQuery, [&](const sq::Row& row) { count = row.integer(0); });
  const Clock::time_point returned = Clock::now();
  probe.running.open();  // in case the query never started
  canceller.join();

  ASSERT_FALSE(done) << "the query ran to its end in " << to_ms(returned - started) << " ms";
  EXPECT_EQ(done.error(), ctxpp::errc::canceled) << describe(done.error());
  EXPECT_FALSE(count.has_value());
  EXPECT_EQ(probe.calls.load(), 1);
  EXPECT_EQ(conn.last_error_message(), "");  // the cause is the context, not SQLite
  const Clock::duration latency = returned - canceller.cancelled_at();
  std::printf("[ measured ] cancel -> query returned: %.3f ms\n", to_ms(latency));
  RecordProperty(
      "cancel_to_return_us",
      std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(latency).count()));
  EXPECT_LT(latency, kPromptBound) << to_ms(latency) << " ms";
  expect_healthy(conn);
}

TEST(Deadline, StopsALongQueryWithDeadlineExceeded) {
  TempDir dir;
  auto conn = open_file(dir);
  StartProbe probe;
  ASSERT_TRUE(probe.install(conn.raw()));
  auto [ctx, cancel] = ctxpp::with_timeout(background(), std::chrono::milliseconds(50));
  const Clock::time_point started = Clock::now();
  auto done = sq::query(ctx, conn, kLongQuery, [](const sq::Row&) {});
  const Clock::duration took = Clock::now() - started;
  ASSERT_FALSE(done) << "ran to its end in " << to_ms(took) << " ms";
  EXPECT_EQ(done.error(), ctxpp::errc::deadline_exceeded) << describe(done.error());
  EXPECT_TRUE(done.error() == std::errc::timed_out);
  EXPECT_EQ(probe.calls.load(), 1);
  std::printf("[ measured ] 50 ms deadline -> query returned after %.3f ms\n", to_ms(took));
  EXPECT_LT(took, std::chrono::milliseconds(50) + kPromptBound);
  expect_healthy(conn);
}

TEST(Cancel, ContextEndedBeforeTheCallRunsNothing) {
  TempDir dir;
  auto conn = open_file(dir);
  must_execute(conn, "CREATE TABLE t(x)");
  StartProbe probe;
  ASSERT_TRUE(probe.install(conn.raw()));
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  cancel();

  auto inserted = sq::execute(ctx, conn, "INSERT INTO t VALUES (started())");
  EXPECT_EQ(inserted.error(), ctxpp::errc::canceled) << describe(inserted.error());
  auto rows = sq::query(ctx, conn, kLongQuery, [](const sq::Row&) {});
  EXPECT_EQ(rows.error(), ctxpp::errc::canceled) << describe(rows.error());
  auto script = sq::execute_script(ctx, conn, "INSERT INTO t VALUES (started())");
  EXPECT_EQ(script.error(), ctxpp::errc::canceled) << describe(script.error());
  EXPECT_EQ(probe.calls.load(), 0);
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM t"), 0);
  expect_healthy(conn);
}

TEST(Cancel, EndThatArrivesBeforeTheFirstStepIsNotLost) {
  // The authorizer runs while the statement is being prepared, after the call checked
  // its context and registered its interrupt: cancelling there sends sqlite3_interrupt
  // while no statement runs, which SQLite 3.40 forgets when the statement starts. Only
  // the check before the step stops it before it runs.
  TempDir dir;
  auto conn = open_file(dir);
  StartProbe probe;
  ASSERT_TRUE(probe.install(conn.raw()));
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  struct Authorizer {
    ctxpp::CancelFunc cancel;
    int calls = 0;
  } authorizer{cancel};
  sqlite3_set_authorizer(
      conn.raw(),
      [](void* arg, int, const char*, const char*, const char*, const char*) {
        auto* self = static_cast<Authorizer*>(arg);
        if (self->calls++ == 0) self->cancel();
        return SQLITE_OK;
      },
      &authorizer);

  auto done = sq::query(ctx, conn, kLongQuery, [](const sq::Row&) {});
  sqlite3_set_authorizer(conn.raw(), nullptr, nullptr);
  EXPECT_GT(authorizer.calls, 0);
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error(), ctxpp::errc::canceled) << describe(done.error());
  EXPECT_EQ(probe.calls.load(), 0) << "the statement started running";
  expect_healthy(conn);
}

// Holds the cancelling thread inside the context's callbacks.
struct HoldCanceller {
  ctxpp_test::HoldGate* gate;
  void operator()() const noexcept { gate->hold(); }
};

TEST(Cancel, ProgressHandlerStopsAStatementThatNoInterruptReaches) {
  // A context runs its callbacks newest first. The callback registered by started(),
  // while the statement runs, is newer than the call's interrupt callback: it runs
  // first and holds the cancelling thread, so no sqlite3_interrupt is sent while it
  // holds. The context is done all the same; the progress handler must stop the query.
  TempDir dir;
  auto conn = open_file(dir);
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  ctxpp_test::HoldGate hold;
  struct Setup {
    const ctxpp::Context* ctx;
    ctxpp_test::HoldGate* hold;
    std::optional<ctxpp::ScopedCallback<HoldCanceller>> blocker;
  } setup{&ctx, &hold, std::nullopt};
  StartProbe probe;
  probe.user = &setup;
  probe.on_first = [](StartProbe& self) {
    auto* s = static_cast<Setup*>(self.user);
    s->blocker.emplace(*s->ctx, HoldCanceller{s->hold});
  };
  ASSERT_TRUE(probe.install(conn.raw()));
  CancelWhenOpen canceller(probe.running, cancel);

  auto done = sq::query(ctx, conn, kLongQuery, [](const sq::Row&) {});
  const Clock::time_point returned = Clock::now();
  const bool held = hold.wait_entered(std::chrono::seconds(0));
  hold.release();
  probe.running.open();
  canceller.join();
  setup.blocker.reset();

  ASSERT_FALSE(done) << "the query ran to its end";
  EXPECT_EQ(done.error(), ctxpp::errc::canceled) << describe(done.error());
  EXPECT_TRUE(held) << "the query returned before the cancelling thread was held";
  const Clock::duration latency = returned - canceller.cancelled_at();
  std::printf("[ measured ] cancel -> return by the progress handler alone: %.3f ms\n",
              to_ms(latency));
  EXPECT_LT(latency, kPromptBound);
  expect_healthy(conn);
}

TEST(Cancel, EndWhileTheRowCallbackRunsStopsBeforeTheNextRow) {
  TempDir dir;
  auto conn = open_file(dir);
  auto scope = ctxpp::with_cancel(background());  // a lambda below cancels: no binding
  const ctxpp::CancelFunc& cancel = scope.cancel;
  int rows = 0;
  auto done = sq::query(scope.ctx, conn,
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                        "SELECT x FROM c",
                        [&](const sq::Row&) {
                          if (++rows == 3) cancel();
                        });
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error(), ctxpp::errc::canceled) << describe(done.error());
  EXPECT_EQ(rows, 3);
  expect_healthy(conn);
}

TEST(Cancel, ScriptStoppedBeforeItsCommitLeavesNoTransactionOpen) {
  TempDir dir;
  auto conn = open_file(dir);
  must_execute(conn, "CREATE TABLE t(x)");
  StartProbe probe;
  ASSERT_TRUE(probe.install(conn.raw()));
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  CancelWhenOpen canceller(probe.running, cancel);
  // The long statement is a read: SQLite itself would leave the script's transaction
  // open after interrupting it.
  const std::string script =
      "BEGIN; INSERT INTO t VALUES (1); " + std::string(kLongQuery) + "; COMMIT;";
  auto done = sq::execute_script(ctx, conn, script);
  probe.running.open();
  canceller.join();
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error(), ctxpp::errc::canceled) << describe(done.error());
  EXPECT_FALSE(conn.in_transaction());
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM t"), 0);
  expect_healthy(conn);
}

// The callers' explicit transaction: SQLite's rules, as statement.hpp documents them.
TEST(Transaction, InterruptedWriteRollsBackTheCallersWholeTransaction) {
  TempDir dir;
  auto conn = open_file(dir);
  must_execute(conn, "CREATE TABLE t(x); BEGIN; INSERT INTO t VALUES (-1)");
  StartProbe probe;
  ASSERT_TRUE(probe.install(conn.raw()));
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  CancelWhenOpen canceller(probe.running, cancel);
  auto done = sq::execute(ctx, conn,
                          "INSERT INTO t SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT started() "
                          "UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) SELECT x FROM c)");
  probe.running.open();
  canceller.join();
  ASSERT_FALSE(done) << "the insert ran to its end";
  EXPECT_EQ(done.error(), ctxpp::errc::canceled) << describe(done.error());
  EXPECT_FALSE(conn.in_transaction());
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM t"), 0);  // the row inserted before too
}

TEST(Transaction, InterruptedReadLeavesTheCallersTransactionOpen) {
  TempDir dir;
  auto conn = open_file(dir);
  must_execute(conn, "CREATE TABLE t(x); BEGIN; INSERT INTO t VALUES (1)");
  StartProbe probe;
  ASSERT_TRUE(probe.install(conn.raw()));
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  CancelWhenOpen canceller(probe.running, cancel);
  auto done = sq::query(ctx, conn, kLongQuery, [](const sq::Row&) {});
  probe.running.open();
  canceller.join();
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error(), ctxpp::errc::canceled) << describe(done.error());
  EXPECT_TRUE(conn.in_transaction());
  must_execute(conn, "COMMIT");
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM t"), 1);
}

// ---------------------------------------------------------------------------------------
// Lock waits

TEST(Busy, LockWaitEndsWhenTheContextEndsLongBeforeBusyTimeout) {
  TempDir dir;
  auto holder = open_file(dir);
  must_execute(holder, "CREATE TABLE t(x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)");
  sq::OpenOptions patient;
  patient.busy_timeout = std::chrono::seconds(60);
  auto waiter = open_file(dir, "test.db", patient);

  auto [ctx, cancel] = ctxpp::with_timeout(background(), std::chrono::milliseconds(100));
  const Clock::time_point started = Clock::now();
  auto done = sq::execute(ctx, waiter, "INSERT INTO t VALUES (2)");
  const Clock::duration took = Clock::now() - started;
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error(), ctxpp::errc::deadline_exceeded) << describe(done.error());
  std::printf("[ measured ] 100 ms deadline -> lock wait returned after %.3f ms\n", to_ms(took));
  EXPECT_LT(took, std::chrono::milliseconds(100) + kPromptBound);
  EXPECT_FALSE(waiter.in_transaction());

  must_execute(holder, "COMMIT");
  EXPECT_TRUE(sq::execute(background(), waiter, "INSERT INTO t VALUES (2)"));
  EXPECT_EQ(scalar(waiter, "SELECT count(*) FROM t"), 2);
}

TEST(Busy, LockWaitGivesUpWithBusyAfterBusyTimeout) {
  TempDir dir;
  auto holder = open_file(dir);
  must_execute(holder, "CREATE TABLE t(x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)");
  sq::OpenOptions brief;
  brief.busy_timeout = std::chrono::milliseconds(30);
  auto waiter = open_file(dir, "test.db", brief);
  const Clock::time_point started = Clock::now();
  auto done = sq::execute(background(), waiter, "INSERT INTO t VALUES (2)");
  const Clock::duration took = Clock::now() - started;
  ASSERT_FALSE(done);
  EXPECT_TRUE(done.error() == sq::errc::busy) << describe(done.error());
  EXPECT_EQ(waiter.last_error_message(), "database is locked");
  EXPECT_GE(took, std::chrono::milliseconds(30));

  sq::OpenOptions impatient;
  impatient.busy_timeout = ctxpp::clock::duration::zero();
  auto at_once = open_file(dir, "test.db", impatient);
  EXPECT_TRUE(sq::execute(background(), at_once, "INSERT INTO t VALUES (3)").error() ==
              sq::errc::busy);
}

// ---------------------------------------------------------------------------------------
// Connection::interrupt

TEST(Interrupt, StopsTheRunningStatementWithErrcInterruptWhileItsContextLives) {
  TempDir dir;
  auto conn = open_file(dir);
  StartProbe probe;
  ASSERT_TRUE(probe.install(conn.raw()));
  std::thread interrupter([&] {
    if (probe.running.wait()) conn.interrupt();
  });
  auto done = sq::query(background(), conn, kLongQuery, [](const sq::Row&) {});
  probe.running.open();
  interrupter.join();
  ASSERT_FALSE(done);
  EXPECT_TRUE(done.error() == sq::errc::interrupt) << describe(done.error());
  EXPECT_TRUE(conn.interrupted());
  conn.clear_interrupt();
  expect_healthy(conn);
}

TEST(Interrupt, IsNotLostBetweenStatementsAndHoldsUntilCleared) {
  TempDir dir;
  auto conn = open_file(dir);
  must_execute(conn, "CREATE TABLE t(x)");
  conn.interrupt();  // no statement runs: a bare sqlite3_interrupt would be forgotten
  auto first = sq::execute(background(), conn, "INSERT INTO t VALUES (1)");
  EXPECT_TRUE(first.error() == sq::errc::interrupt) << describe(first.error());
  EXPECT_EQ(conn.last_error_message(), "the connection was interrupted");
  auto second = sq::execute(background(), conn, "INSERT INTO t VALUES (2)");
  EXPECT_TRUE(second.error() == sq::errc::interrupt) << describe(second.error());
  conn.clear_interrupt();
  EXPECT_FALSE(conn.interrupted());
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM t"), 0);
}

}  // namespace
