// Tests of ctxpp/postgres/pool.hpp under mass cancellation: hundreds of pooled
// connections cancelled at once leave nothing busy on the server and no lease out.
// A binary of its own so that CTest runs it alone (RUN_SERIAL): its burst of cancel
// requests keeps the server's postmaster busy for seconds, which would distort the
// latency other tests measure.
#include "ctxpp/postgres/pool.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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
using ctxpp_postgres_test::kTsan;
using ctxpp_postgres_test::PostgresPool;
using ctxpp_postgres_test::ServerTest;
using Clock = std::chrono::steady_clock;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// The acceptance test: 200 requests each hold a pooled connection running
// SELECT pg_sleep(10); their shared parent context is cancelled; afterwards no server
// backend is busy and no lease is out, and every connection is back, healthy.
TEST_F(PostgresPool, TwoHundredCanceledQueriesLeaveNoBusyBackendsAndNoLeases) {
  constexpr int kRequests = 200;
  PoolOptions options;
  options.max_size = kRequests;
  options.name = "postgres-mass-cancel";
  Pool<Connection> pool(pool_hooks(conninfo()), options);
  auto parent = ctxpp::with_cancel(background());
  const ctxpp::Context parent_ctx = parent.ctx;

  std::mutex mutex;
  std::map<std::string, int> outcomes;  // error message -> count
  std::vector<std::thread> requests;
  requests.reserve(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    requests.emplace_back([&pool, &mutex, &outcomes, parent_ctx] {
      std::string outcome;
      auto lease = pool.acquire(parent_ctx);
      if (!lease) {
        outcome = "acquire: " + lease.error().message();
      } else if (std::error_code bound = lease->bind(parent_ctx)) {
        outcome = "bind: " + bound.message();
      } else if (auto use = lease->use()) {
        auto rows = query(parent_ctx, *use, "SELECT pg_sleep(10)");
        outcome = rows ? "completed" : rows.error().message();
        if (!rows && rows.error() != ctxpp::errc::canceled)
          outcome += ": " + use->last_error_message();
      } else {
        outcome = "use: " + use.error().message();
      }
      const std::lock_guard lock(mutex);
      ++outcomes[outcome];
    });
  }

  const bool all_running =
      eventually([&] { return active_sleeps() == kRequests; }, kTsan ? 90s : 45s);
  const int running = active_sleeps();
  const auto canceled_at = Clock::now();
  parent.cancel();
  for (auto& request : requests) request.join();
  const auto joined = Clock::now();

  ASSERT_TRUE(all_running) << running << " of " << kRequests << " statements were running";
  const bool none_busy = eventually([&] { return active_sleeps() == 0; }, 10s);
  const bool none_leased = eventually([&] { return pool.stats().leased == 0; }, 10s);
  const auto settled = Clock::now();
  const ctxpp::PoolStats stats = pool.stats();
  std::printf(
      "%d requests cancelled: all returned %.0f ms after cancel, server and pool "
      "settled after %.0f ms; idle %zu, destroyed %llu, revoked %llu\n",
      kRequests, ms(joined - canceled_at), ms(settled - canceled_at), stats.idle,
      static_cast<unsigned long long>(stats.destroyed_total),
      static_cast<unsigned long long>(stats.revoked_total));

  EXPECT_EQ(outcomes["context canceled"], kRequests) << [&] {
    std::string all;
    for (const auto& [what, count] : outcomes) all += std::to_string(count) + " x " + what + "\n";
    return all;
  }();
  EXPECT_TRUE(none_busy) << active_sleeps() << " backends still run pg_sleep";
  EXPECT_TRUE(none_leased) << pool.stats().leased << " leases still out";
  EXPECT_EQ(stats.created_total, static_cast<std::uint64_t>(kRequests));
  EXPECT_EQ(stats.destroyed_total, 0U);  // every connection was drained and kept
  EXPECT_EQ(stats.idle, static_cast<std::size_t>(kRequests));
}

}  // namespace
