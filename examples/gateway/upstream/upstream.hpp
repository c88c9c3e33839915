// examples/gateway/upstream/upstream.hpp — the slow upstream service the gateway calls:
// every work endpoint waits the time it is asked to (?ms=N) under its request's
// context, so it stops the moment its client (the gateway) goes away or the budget
// the client forwarded runs out; it counts what is in flight and records when each
// request started and ended, which is how the load test proves that work stopped.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "ctxpp/asio/http_server.hpp"

namespace gateway {

/// One finished request, as /debug/requests lists it.
struct UpstreamRecord {
  std::string id;    ///< the caller's X-Request-Id
  std::string path;  ///< e.g. "/work", "/payment/charge"
  std::int64_t start_ns = 0;
  std::int64_t end_ns = 0;  ///< steady clock, nanoseconds (CLOCK_MONOTONIC)
  bool cancelled = false;   ///< stopped by its context before the work was done
};

/// The counters and records of the upstream; the gRPC payment service reports into
/// the same ones, so /debug/stats covers both protocols.
/// Thread safety: every member from any thread.
class UpstreamLedger {
 public:
  explicit UpstreamLedger(std::size_t max_records = 200'000) : max_records_(max_records) {}

  void started() noexcept { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  /// Ends one started request. Cost: a mutex section; the oldest record goes when full.
  void finished(UpstreamRecord record);

  std::int64_t in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }
  /// other_in_flight and other_records: the gRPC side's, reported together.
  std::string stats_json(std::int64_t reservations_open, std::int64_t payments_open,
                         std::int64_t other_in_flight) const;
  std::string requests_json(const std::vector<UpstreamRecord>& other_records) const;
  std::string metrics_text(std::int64_t reservations_open, std::int64_t payments_open) const;

 private:
  const std::size_t max_records_;
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::int64_t> completed_{0};
  std::atomic<std::int64_t> cancelled_{0};
  mutable std::mutex mutex_;
  std::deque<UpstreamRecord> records_;
};

/// The HTTP side: GET /work?ms=N, POST /inventory/reserve|release, /payment/charge|refund,
/// /notify (each ?ms=N, default 0, at most 600000), GET /healthz, /metrics,
/// /debug/stats, /debug/requests.
class UpstreamService {
 public:
  explicit UpstreamService(UpstreamLedger& ledger) : ledger_(ledger) {}
  ctxpp::asio::Response handle(const ctxpp::Context& ctx, const ctxpp::asio::Request& request);

  /// The gRPC side, when there is one: its open payments, calls in flight and
  /// finished calls are reported with the HTTP side's. Set before serving.
  std::function<std::int64_t()> grpc_payments_open;
  std::function<std::int64_t()> grpc_in_flight;
  std::function<std::vector<UpstreamRecord>()> grpc_records;

 private:
  ctxpp::asio::Response work(const ctxpp::Context& ctx, const ctxpp::asio::Request& request,
                             std::string_view path);
  std::int64_t payments_open() const;

  UpstreamLedger& ledger_;
  // Keyed by the caller's request id, so undoing a step twice, or undoing one that
  // never took effect, changes nothing.
  std::int64_t reservations_open() const;
  void apply(std::string_view path, const std::string& request_id);

  mutable std::mutex mutex_;
  std::set<std::string> reservations_;
  std::set<std::string> payments_;
  std::set<std::string> voided_reservations_;
  std::set<std::string> voided_payments_;
};

}  // namespace gateway
