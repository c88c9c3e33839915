// examples/gateway/gateway/gateway.hpp — the reference API gateway: every request runs
// under one context that ends when its client disconnects or its deadline passes, and
// everything the request started (the SQLite query on the pool, the upstream calls,
// the background work) stops with it and is released before the handler returns.
// With broken_propagation, one middleware re-roots each request on background() to
// attach the user, as services in the field do by mistake: the work then runs on
// after its client left, which the demo measures side by side.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "ctxpp/asio/http_server.hpp"
#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "ctxpp/result.hpp"
#include "service.hpp"

namespace gateway {

/// Charges and refunds for POST /api/checkout. By default the gateway uses the HTTP
/// upstream's /payment endpoints; a gRPC backend replaces them.
/// Both functions run on handler threads, concurrently; they must stop when ctx ends
/// and return ctx.err() then.
struct PaymentBackend {
  std::function<ctxpp::Result<std::string>(const ctxpp::Context& ctx, std::string_view order_id,
                                           std::int64_t amount_cents, int delay_ms,
                                           std::string_view request_id)>
      charge;
  std::function<std::error_code(const ctxpp::Context& ctx, std::string_view payment_id,
                                std::string_view request_id)>
      refund;
};

struct GatewayOptions {
  HostPort listen{"127.0.0.1", 0};
  std::string db_path;  ///< SQLite file; created and seeded when it has no orders table
  HostPort upstream;    ///< the HTTP upstream
  std::optional<PaymentBackend> payments;  ///< e.g. gRPC; nullopt: the HTTP upstream
  bool broken_propagation = false;
  std::size_t handler_threads = 128;
  std::size_t task_threads = 256;  ///< the TaskGroups' executor
  std::size_t db_connections = 16;
  std::size_t upstream_connections = 128;
  std::chrono::milliseconds max_request_timeout{30'000};
  std::chrono::milliseconds default_request_timeout{10'000};
  std::chrono::milliseconds read_timeout{10'000};
  std::size_t header_limit = 8 * 1024;
};

/// What /debug/stats reports; see docs/gateway.md.
struct GatewayStats {
  std::uint64_t ok = 0, canceled = 0, deadline = 0, error = 0;
  std::int64_t requests_in_flight = 0;
  std::int64_t db_in_flight = 0;
  std::int64_t upstream_in_flight = 0;
  std::int64_t background_in_flight = 0;
  std::size_t pool_leased = 0;
  std::uint64_t lingering_leases = 0;
  std::uint64_t checkouts_committed = 0;
  LatencyHistogram::Summary cancel_cleanup_ms;
  std::uint64_t rss_bytes = 0;
};

/// Thread safety: start() and stop() from the owning thread; the rest from any.
/// Ownership: owns the HTTP server, the pools, the executors and the metrics
/// (an observer registered for its lifetime).
class Gateway {
 public:
  /// Opens (and seeds) the database. Errors: std::runtime_error naming what failed.
  explicit Gateway(GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  /// Listens. Errors: the bind error.
  std::error_code start();
  std::uint16_t port() const noexcept;
  /// Drains for up to drain_for, cancels what still runs, closes the pools.
  /// Blocking: until every handler returned.
  void stop(std::chrono::milliseconds drain_for);

  GatewayStats stats() const;

  /// The HTTP handler (public for tests that call it without sockets).
  ctxpp::asio::Response handle(const ctxpp::Context& ctx, const ctxpp::asio::Request& request);

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace gateway
