// Tests of ctxpp/postgres/connection.hpp: connect under a context, ownership, and
// cancel requests that never reach the next statement.
#include "ctxpp/postgres/connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/postgres/query.hpp"
#include "postgres_test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::postgres::connect;
using ctxpp::postgres::Connection;
using ctxpp::postgres::query;
using ctxpp_postgres_test::kLongBound;
using ctxpp_postgres_test::kTsan;
using ctxpp_postgres_test::ServerTest;
using ctxpp_postgres_test::SilentServer;
using Clock = std::chrono::steady_clock;

TEST(PostgresConnect, EndedContextAttemptsNothing) {
  SilentServer silent;
  auto canceled = ctxpp::with_cancel(background());
  canceled.cancel();
  std::string message = "untouched";
  auto conn = connect(canceled.ctx, silent.conninfo(), &message);
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error(), ctxpp::errc::canceled);
  EXPECT_FALSE(silent.has_pending_connection());
  EXPECT_EQ(message, "untouched");
}

TEST(PostgresConnect, DeadlineStopsConnectToSilentServer) {
  SilentServer silent;
  auto timed = ctxpp::with_timeout(background(), 100ms);
  const auto start = Clock::now();
  auto conn = connect(timed.ctx, silent.conninfo());
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error(), ctxpp::errc::deadline_exceeded);
  EXPECT_TRUE(silent.has_pending_connection());  // it did get as far as the server
  EXPECT_LT(elapsed, 5s);
}

TEST(PostgresConnect, CancelFromAnotherThreadStopsConnect) {
  SilentServer silent;
  auto canceled = ctxpp::with_cancel(background());
  const ctxpp::CancelFunc cancel = canceled.cancel;
  std::thread canceller([&silent, cancel] {
    // Polls the listener (local state) until libpq's connection has arrived.
    const auto end = Clock::now() + kLongBound;
    while (!silent.has_pending_connection() && Clock::now() < end) {
      std::this_thread::sleep_for(1ms);
    }
    cancel();
  });
  auto conn = connect(canceled.ctx, silent.conninfo());
  canceller.join();
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error(), ctxpp::errc::canceled);
}

TEST(PostgresConnect, RejectsMalformedConninfoWithLibpqMessage) {
  std::string message;
  auto conn = connect(background(), "no_such_option=1", &message);
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error(), ctxpp::postgres::errc::connection_failed);
  EXPECT_NE(message.find("no_such_option"), std::string::npos) << message;
}

TEST(PostgresConnection, EmptyConnectionIsBrokenAndRefusesStatements) {
  Connection conn;
  EXPECT_FALSE(conn);
  EXPECT_TRUE(conn.broken());
  EXPECT_EQ(conn.raw(), nullptr);
  EXPECT_EQ(conn.backend_pid(), 0);
  EXPECT_FALSE(conn.request_cancel());
  conn.interrupt();  // defined on an empty connection: nothing happens
  EXPECT_FALSE(conn.interrupted());
  conn.clear_interrupt();
  EXPECT_TRUE(conn.last_error_message().empty());
  auto rows = query(background(), conn, "SELECT 1");
  EXPECT_EQ(rows.error(), ctxpp::postgres::errc::not_connected);
  conn.mark_broken();  // defined on an empty connection: nothing happens
  EXPECT_FALSE(Connection::adopt(nullptr));
}

class PostgresConnectServer : public ServerTest {};

TEST_F(PostgresConnectServer, ConnectsAndReportsItsBackend) {
  auto conn = connect(background(), conninfo());
  ASSERT_TRUE(conn) << conn.error().message();
  EXPECT_TRUE(*conn);
  EXPECT_FALSE(conn->broken());
  EXPECT_NE(conn->raw(), nullptr);
  EXPECT_GT(conn->backend_pid(), 0);
  auto pid = query(background(), *conn, "SELECT pg_backend_pid()");
  ASSERT_TRUE(pid) << conn->last_error_message();
  EXPECT_EQ(pid->value(0, 0), std::to_string(conn->backend_pid()));
}

TEST_F(PostgresConnectServer, ReportsServerRefusalWithItsMessage) {
  std::string message;
  auto conn = connect(background(), conninfo() + " dbname=ctxpp_no_such_db", &message);
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error(), ctxpp::postgres::errc::connection_failed);
  EXPECT_NE(message.find("ctxpp_no_such_db"), std::string::npos) << message;
}

TEST_F(PostgresConnectServer, MoveTransfersOwnershipAndLeavesSourceEmpty) {
  Connection first = connect_or_fail(conninfo());
  const int pid = first.backend_pid();
  Connection second(std::move(first));
  EXPECT_FALSE(first);  // NOLINT(bugprone-use-after-move): moved-from is defined
  EXPECT_EQ(second.backend_pid(), pid);
  Connection third;
  third = std::move(second);
  EXPECT_EQ(third.backend_pid(), pid);
  auto rows = query(background(), third, "SELECT 1");
  EXPECT_TRUE(rows) << third.last_error_message();
}

TEST_F(PostgresConnectServer, AdoptTakesOverAConnectionMadeElsewhere) {
  PGconn* raw = PQconnectdb(conninfo().c_str());
  ASSERT_EQ(PQstatus(raw), CONNECTION_OK) << PQerrorMessage(raw);
  Connection conn = Connection::adopt(raw);
  EXPECT_EQ(conn.raw(), raw);
  EXPECT_EQ(PQisnonblocking(raw), 1);
  auto rows = query(background(), conn, "SELECT 'adopted'");
  ASSERT_TRUE(rows) << conn.last_error_message();
  EXPECT_EQ(rows->value(0, 0), "adopted");
}

TEST_F(PostgresConnectServer, RequestCancelBetweenStatementsIsDropped) {
  Connection conn = connect_or_fail(conninfo());
  EXPECT_FALSE(conn.request_cancel());  // nothing runs: nothing is sent
  EXPECT_EQ(ctxpp::postgres::detail::last_canceled_generation(conn), 0U);
  auto rows = query(background(), conn, "SELECT pg_sleep(0.05)");
  EXPECT_TRUE(rows) << conn.last_error_message();
  EXPECT_FALSE(conn.request_cancel());
  EXPECT_EQ(ctxpp::postgres::detail::statement_generation(conn) % 2, 0U);
}

// The generation rule: a cancel request aimed at statement N that is still
// travelling when N finishes must never cancel N+1. A canceller aims one request
// at whatever runs, then leaves the next statements alone; the holder runs 2 ms
// statements back to back, so nearly every request is still in flight when its
// statement finishes, and would land in a later one. Every statement that was
// cancelled must have been aimed at.
TEST_F(PostgresConnectServer, LateCancelNeverHitsTheNextStatement) {
  Connection conn = connect_or_fail(conninfo());
  ASSERT_TRUE(conn);
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::set<std::uint64_t> aimed;
  std::thread canceller([&] {
    while (!stop.load()) {
      if (!conn.request_cancel()) {
        std::this_thread::yield();
        continue;
      }
      const std::uint64_t generation = ctxpp::postgres::detail::last_canceled_generation(conn);
      {
        const std::lock_guard lock(mutex);
        aimed.insert(generation);
      }
      // Three statements untouched: only a late request could cancel them.
      const auto end = Clock::now() + kLongBound;
      while (!stop.load() && ctxpp::postgres::detail::statement_generation(conn) < generation + 6 &&
             Clock::now() < end) {
        std::this_thread::yield();
      }
    }
  });

  const std::size_t wanted = kTsan ? 15 : 30;
  const auto budget = Clock::now() + (kTsan ? 20s : 8s);
  std::vector<std::uint64_t> cancelled;
  int statements = 0;
  for (;;) {
    {
      const std::lock_guard lock(mutex);
      if (aimed.size() >= wanted) break;
    }
    if (Clock::now() >= budget) break;
    const std::uint64_t generation = ctxpp::postgres::detail::statement_generation(conn) + 1;
    // Busy on the server most of the time (a cancel arriving then is not lost), and
    // short next to a cancel request's ~10 ms.
    auto rows = query(background(), conn, "SELECT pg_sleep(0.002)");
    ++statements;
    if (!rows) {
      ASSERT_EQ(rows.error(), ctxpp::postgres::errc::interrupted) << conn.last_error_message();
      cancelled.push_back(generation);
    }
  }
  stop.store(true);
  canceller.join();

  const std::lock_guard lock(mutex);
  std::printf("%d statements, %zu cancel requests, %zu statements cancelled\n", statements,
              aimed.size(), cancelled.size());
  EXPECT_GE(aimed.size(), 5U) << "the race was hardly exercised";
  for (std::uint64_t generation : cancelled) {
    EXPECT_EQ(aimed.count(generation), 1U)
        << "statement " << generation << " was cancelled by a request aimed at another one";
  }
  EXPECT_FALSE(conn.broken());
}

}  // namespace
