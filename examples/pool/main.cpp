// A pool of SQLite connections shared by requests that end early, and what the pool
// does about each way a request can leave its connection behind:
//   1. requests whose deadline passes mid-query: each query stops, each connection
//      comes back healthy and is reused;
//   2. a handler that stashes its lease in a long-lived cache: the lease is bound to
//      the request, so the request's end interrupts it and takes the connection back;
//   3. the same mistake without bind(): the pool reports the lingering lease with the
//      file and line that acquired it.
// Each guarantee is checked; the exit status says whether all held.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/group.hpp"
#include "ctxpp/pool.hpp"
#include "ctxpp/sqlite/pool.hpp"
#include "ctxpp/sqlite/statement.hpp"

namespace {

using namespace std::chrono_literals;
using Connection = ctxpp::sqlite::Connection;

int failures = 0;

void check(bool ok, const char* what) {
  std::printf("  [%s] %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) ++failures;
}

// A query that runs for minutes unless stopped: a recursive count to 10^10.
constexpr const char* kSlowQuery =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) "
    "SELECT count(*) FROM n";

std::error_code slow_report(const ctxpp::Context& ctx, ctxpp::Pool<Connection>& pool) {
  auto lease = pool.acquire(ctx);
  if (!lease) return lease.error();
  return ctxpp::sqlite::execute(ctx, **lease, kSlowQuery).error();
}

// The mistake: the lease outlives the handler in a cache nobody clears.
std::mutex cache_mutex;
std::vector<ctxpp::Lease<Connection>> cache;

std::error_code leaky_handler(const ctxpp::Context& ctx, ctxpp::Pool<Connection>& pool, bool bind) {
  auto lease = pool.acquire(ctx);
  if (!lease) return lease.error();
  if (bind) (void)lease->bind(ctx);
  std::lock_guard lock(cache_mutex);
  cache.push_back(std::move(*lease));
  return {};
}

}  // namespace

int main() {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("ctxpp-example-pool-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string db = (dir / "orders.db").string();

  std::mutex report_mutex;
  std::condition_variable reported;
  std::vector<ctxpp::LingeringLease> reports;
  ctxpp::PoolOptions options;
  options.name = "db";
  options.max_size = 2;
  options.linger_after_context = 50ms;
  options.on_lingering = [&](const ctxpp::LingeringLease& l) {
    std::lock_guard lock(report_mutex);
    reports.push_back(l);
    reported.notify_all();
  };
  {
    ctxpp::Pool<Connection> pool(ctxpp::sqlite::pool_hooks(db), options);

    std::printf("1. eight requests, 50 ms deadlines, slow queries, two connections\n");
    {
      std::mutex mutex;
      std::vector<std::error_code> outcomes;
      ctxpp::TaskGroup group(ctxpp::background());
      for (int i = 0; i < 8; ++i) {
        group.spawn([&] {
          auto request = ctxpp::with_timeout(ctxpp::background(), 50ms);
          const std::error_code outcome = slow_report(request.ctx, pool);
          request.cancel();
          std::lock_guard lock(mutex);
          outcomes.push_back(outcome);
        });
      }
      (void)group.wait();
      int deadline = 0;
      for (const auto& e : outcomes) deadline += e == ctxpp::errc::deadline_exceeded ? 1 : 0;
      const auto stats = pool.stats();
      std::printf("  deadline_exceeded: %d of 8; created %llu connections; leased now %zu\n",
                  deadline, static_cast<unsigned long long>(stats.created_total), stats.leased);
      check(deadline == 8, "every request ended with its deadline");
      check(stats.leased == 0, "no connection is still leased");
      check(stats.created_total <= 2 && stats.destroyed_total == 0,
            "the interrupted connections came back healthy and were reused");
    }

    std::printf("2. a handler caches its lease, bound to the request\n");
    {
      auto request = ctxpp::with_cancel(ctxpp::background());
      check(!leaky_handler(request.ctx, pool, true), "the handler ran");
      request.cancel();  // the client went away
      // ctxpp-audit: ignore CTX003 — the leases below hold next.ctx to the end of the block
      auto next = ctxpp::with_timeout(ctxpp::background(), 5s);
      auto lease = pool.acquire(next.ctx);  // both connections must be free again
      auto other = pool.acquire(next.ctx);
      check(lease && other, "the request's end gave its connection back");
      check(pool.stats().revoked_total == 1, "the pool counted one reclaimed lease");
    }

    std::printf("3. the same handler without bind()\n");
    {
      auto request = ctxpp::with_cancel(ctxpp::background());
      check(!leaky_handler(request.ctx, pool, false), "the handler ran");
      request.cancel();
      std::unique_lock lock(report_mutex);
      reported.wait_for(lock, 10s, [&] { return !reports.empty(); });
      check(reports.size() == 1, "the lingering lease was reported once");
      if (!reports.empty()) {
        const auto& l = reports.front();
        std::printf(
            "  lease of '%s' acquired at %s:%u, held %lld ms, %lld ms after its "
            "request ended (%s)\n",
            l.pool.c_str(), l.where.file_name(), static_cast<unsigned>(l.where.line()),
            static_cast<long long>(
                std::chrono::duration_cast<std::chrono::milliseconds>(l.held_for).count()),
            static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       l.since_context_end.value_or(0ms))
                                       .count()),
            l.context_error.message().c_str());
        check(std::string(l.where.function_name()).find("leaky_handler") != std::string::npos,
              "the report names the function that acquired it");
      }
    }
    std::lock_guard lock(cache_mutex);
    cache.clear();
    auto closing = ctxpp::with_timeout(ctxpp::background(), 5s);
    check(!pool.close(closing.ctx), "close() drained the pool");
    closing.cancel();
  }
  std::filesystem::remove_all(dir);
  std::printf("%s\n", failures == 0 ? "all guarantees held" : "SOME GUARANTEES FAILED");
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
