#include "upstream.hpp"

#include <array>
#include <chrono>

#include "ctxpp/http/deadline.hpp"
#include "ctxpp/http/error.hpp"
#include "service.hpp"

namespace gateway {

namespace http = ::boost::beast::http;

void UpstreamLedger::finished(UpstreamRecord record) {
  (record.cancelled ? cancelled_ : completed_).fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mutex_);
    if (records_.size() == max_records_) records_.pop_front();
    records_.push_back(std::move(record));
  }
  // After the record: a reader that sees in_flight 0 also sees every record.
  in_flight_.fetch_sub(1, std::memory_order_release);
}

std::string UpstreamLedger::stats_json(std::int64_t reservations_open, std::int64_t payments_open,
                                       std::int64_t other_in_flight) const {
  return "{\"inflight\":" +
         std::to_string(in_flight_.load(std::memory_order_acquire) + other_in_flight) +
         ",\"completed\":" + std::to_string(completed_.load(std::memory_order_relaxed)) +
         ",\"cancelled\":" + std::to_string(cancelled_.load(std::memory_order_relaxed)) +
         ",\"reservations_open\":" + std::to_string(reservations_open) +
         ",\"payments_open\":" + std::to_string(payments_open) + "}\n";
}

std::string UpstreamLedger::requests_json(const std::vector<UpstreamRecord>& other_records) const {
  std::string out = "[";
  std::lock_guard lock(mutex_);
  out.reserve((records_.size() + other_records.size()) * 96 + 4);
  bool first = true;
  const auto append = [&](const UpstreamRecord& record) {
    if (!first) out += ",\n";
    first = false;
    out += "{\"id\":" + json_quote(record.id) + ",\"path\":" + json_quote(record.path) +
           ",\"start_ns\":" + std::to_string(record.start_ns) +
           ",\"end_ns\":" + std::to_string(record.end_ns) + ",\"outcome\":\"" +
           (record.cancelled ? "cancelled" : "completed") + "\"}";
  };
  for (const UpstreamRecord& record : records_) append(record);
  for (const UpstreamRecord& record : other_records) append(record);
  out += "]\n";
  return out;
}

std::string UpstreamLedger::metrics_text(std::int64_t reservations_open,
                                         std::int64_t payments_open) const {
  std::string out;
  out += "# HELP upstream_inflight Requests being worked on.\n# TYPE upstream_inflight gauge\n";
  out += "upstream_inflight " + std::to_string(in_flight()) + "\n";
  out += "# HELP upstream_requests_total Finished requests by outcome.\n";
  out += "# TYPE upstream_requests_total counter\n";
  out += "upstream_requests_total{outcome=\"completed\"} " +
         std::to_string(completed_.load(std::memory_order_relaxed)) + "\n";
  out += "upstream_requests_total{outcome=\"cancelled\"} " +
         std::to_string(cancelled_.load(std::memory_order_relaxed)) + "\n";
  out += "# HELP upstream_reservations_open Inventory reserved and not released.\n";
  out += "# TYPE upstream_reservations_open gauge\n";
  out += "upstream_reservations_open " + std::to_string(reservations_open) + "\n";
  out += "# HELP upstream_payments_open Payments charged and not refunded.\n";
  out += "# TYPE upstream_payments_open gauge\n";
  out += "upstream_payments_open " + std::to_string(payments_open) + "\n";
  return out;
}

std::int64_t UpstreamService::payments_open() const {
  std::int64_t open = 0;
  {
    std::lock_guard lock(mutex_);
    open = static_cast<std::int64_t>(payments_.size());
  }
  return open + (grpc_payments_open ? grpc_payments_open() : 0);
}

std::int64_t UpstreamService::reservations_open() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::int64_t>(reservations_.size());
}

void UpstreamService::apply(std::string_view path, const std::string& request_id) {
  // An undo can overtake the step it undoes (the caller gave up on the step just as it
  // went through here): undoing an unknown id leaves a tombstone that voids the step
  // when it lands.
  const auto record = [&](std::set<std::string>& open, std::set<std::string>& voided) {
    if (voided.erase(request_id) == 0) open.insert(request_id);
  };
  const auto undo = [&](std::set<std::string>& open, std::set<std::string>& voided) {
    if (open.erase(request_id) == 0) voided.insert(request_id);
  };
  std::lock_guard lock(mutex_);
  if (path == "/inventory/reserve") record(reservations_, voided_reservations_);
  if (path == "/inventory/release") undo(reservations_, voided_reservations_);
  if (path == "/payment/charge") record(payments_, voided_payments_);
  if (path == "/payment/refund") undo(payments_, voided_payments_);
}

ctxpp::asio::Response UpstreamService::handle(const ctxpp::Context& ctx,
                                              const ctxpp::asio::Request& request) {
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = path_of(target);
  if (path == "/healthz") return make_response(request, http::status::ok, "ok\n", "text/plain");
  if (path == "/metrics") {
    return make_response(request, http::status::ok,
                         ledger_.metrics_text(reservations_open(), payments_open()),
                         "text/plain; version=0.0.4");
  }
  if (path == "/debug/stats") {
    return make_response(request, http::status::ok,
                         ledger_.stats_json(reservations_open(), payments_open(),
                                            grpc_in_flight ? grpc_in_flight() : 0));
  }
  if (path == "/debug/requests") {
    return make_response(
        request, http::status::ok,
        ledger_.requests_json(grpc_records ? grpc_records() : std::vector<UpstreamRecord>{}));
  }
  static constexpr std::array<std::string_view, 6> kWorkPaths = {
      "/work",           "/inventory/reserve", "/inventory/release",
      "/payment/charge", "/payment/refund",    "/notify"};
  for (const std::string_view known : kWorkPaths) {
    if (path == known) return work(ctx, request, known);
  }
  return error_response(request, http::status::not_found, "no such endpoint");
}

ctxpp::asio::Response UpstreamService::work(const ctxpp::Context& ctx,
                                            const ctxpp::asio::Request& request,
                                            std::string_view path) {
  const std::string_view target(request.target().data(), request.target().size());
  std::int64_t milliseconds = 0;
  if (const auto text = query_value(target, "ms")) {
    const auto parsed = parse_bounded(*text, 0, 600'000);
    if (!parsed) return error_response(request, http::status::bad_request, "ms: 0..600000");
    milliseconds = *parsed;
  }
  const auto header = [&](std::string_view name) -> std::optional<std::string_view> {
    const auto found = request.find(name);
    if (found == request.end()) return std::nullopt;
    return std::string_view(found->value().data(), found->value().size());
  };
  const auto budget = ctxpp::http::request_budget(
      {.request_timeout_ms = header(ctxpp::http::request_timeout_header), .grpc_timeout = {}},
      {.max = std::chrono::minutes(10), .fallback = std::chrono::minutes(10)});
  if (!budget) {
    return make_response(request, http::status::bad_request,
                         ctxpp::http::bad_request_body(budget.header(), budget.error()));
  }
  auto [work_ctx, release] = ctxpp::http::request_context(ctx, *budget);

  UpstreamRecord record;
  record.id = std::string(header("X-Request-Id").value_or(""));
  record.path = std::string(path);
  record.start_ns = steady_ns();
  ledger_.started();
  // The work: a wait that ends early when the caller goes away or its budget runs out.
  const bool stopped = work_ctx.wait_for(std::chrono::milliseconds(milliseconds));
  if (!stopped) apply(path, record.id);
  record.end_ns = steady_ns();
  record.cancelled = stopped;
  ledger_.finished(std::move(record));
  release();
  if (stopped) {
    const bool deadline = work_ctx.err() == ctxpp::errc::deadline_exceeded;
    return error_response(
        request, deadline ? http::status::gateway_timeout : http::status::service_unavailable,
        deadline ? "deadline exceeded" : "canceled");
  }
  return make_response(request, http::status::ok,
                       "{\"worked_ms\":" + std::to_string(milliseconds) + "}\n");
}

}  // namespace gateway
