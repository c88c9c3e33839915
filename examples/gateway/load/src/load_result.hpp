// load_result.hpp — what one load run measured, and the pure helpers that compute it.
// Kept free of sockets and processes so the numbers, the stats parsing and the JSON
// round trip are unit-tested without servers. Times are milliseconds unless a name ends
// in _ns (steady_clock nanoseconds, comparable across processes on Linux).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ctxpp_load {

/// Percentile of `values` by the nearest-rank method (p in [0, 100]); 0 when empty.
/// Cost: sorts a copy, O(n log n).
[[nodiscard]] double percentile(std::vector<double> values, double p);

/// Count, p50, p99 and max of a set of values (milliseconds).
struct Summary {
  std::uint64_t count = 0;
  double p50 = 0;
  double p99 = 0;
  double max = 0;
};
[[nodiscard]] Summary summarize(const std::vector<double>& values);

/// The gateway's GET /debug/stats.
struct GatewayStats {
  std::int64_t ok = 0, canceled = 0, deadline = 0, error = 0;
  std::int64_t db_inflight = 0, upstream_inflight = 0, pool_leased = 0, lingering_leases = 0;
  Summary cancel_cleanup_ms;
  std::int64_t rss_bytes = 0;
};

/// The upstream's GET /debug/stats.
struct UpstreamStats {
  std::int64_t inflight = 0, completed = 0, cancelled = 0;
};

/// One entry of the upstream's GET /debug/requests.
struct UpstreamRequest {
  std::string id;
  std::int64_t start_ns = 0, end_ns = 0;
  std::string outcome;
};

/// Errors: nullopt when the text is not a JSON object; missing fields read as 0 so a
/// server that adds fields or leaves one out still yields the rest.
[[nodiscard]] std::optional<GatewayStats> parse_gateway_stats(std::string_view text);
[[nodiscard]] std::optional<UpstreamStats> parse_upstream_stats(std::string_view text);
[[nodiscard]] std::optional<std::vector<UpstreamRequest>> parse_upstream_requests(
    std::string_view text);

/// A client that hung up mid-request: its X-Request-Id and when it closed the socket.
struct Disconnect {
  std::string id;
  std::int64_t close_ns = 0;
};

/// For each disconnected request, how long the upstream kept working on it after the
/// client was gone: max(0, last upstream end_ns - close_ns), in ms. A request the
/// upstream never saw counts 0.
[[nodiscard]] std::vector<double> upstream_work_after_gone_ms(
    const std::vector<Disconnect>& disconnects, const std::vector<UpstreamRequest>& requests);

/// One sampler reading; -1 where the side was not polled or did not answer.
struct Sample {
  double t_ms = 0;  // since the load started
  std::int64_t db_inflight = -1;
  std::int64_t gateway_upstream_inflight = -1;
  std::int64_t upstream_inflight = -1;
  std::int64_t pool_leased = -1;
  std::int64_t rss_bytes = -1;
};

/// When each in-flight gauge reached zero for good after the last client left; -1 when it
/// was still non-zero at the cap (or never read).
struct Drain {
  double db_inflight_ms = -1;
  double gateway_upstream_inflight_ms = -1;
  double pool_leased_ms = -1;
  double upstream_inflight_ms = -1;
};

/// The gauges read one second after the load ended; -1 when not read.
struct AfterLoad {
  std::int64_t db_inflight = -1;
  std::int64_t gateway_upstream_inflight = -1;
  std::int64_t pool_leased = -1;
  std::int64_t upstream_inflight = -1;
};

/// Everything a `run` measured.
struct RunResult {
  std::string label;
  std::uint64_t requests_planned = 0;
  std::uint64_t requests_sent = 0;
  std::uint64_t concurrency = 0;
  std::uint64_t seed = 0;
  std::string mix;        // the weights, as --mix takes them
  double duration_s = 0;  // first request to last client finished
  double requests_per_second = 0;
  bool upstream_observed = false;  // --upstream given and answering

  // Outcomes seen by the clients.
  std::uint64_t ok = 0;
  std::uint64_t deadline_504 = 0;
  std::uint64_t other_status = 0;
  std::uint64_t disconnected = 0;
  std::uint64_t disconnected_after_response = 0;  // the answer beat the hang-up
  std::uint64_t transport_errors = 0;
  std::uint64_t short_deadline_requests = 0;
  std::map<std::string, std::uint64_t> status_counts;  // "200" -> n

  Summary latency_normal_ms;  // orders + report + checkout
  std::map<std::string, Summary> latency_by_endpoint_ms;

  GatewayStats gateway_start;  // before the load
  GatewayStats gateway_end;    // after the drain (cleanup histogram, lingering leases)
  std::int64_t rss_start_bytes = -1;
  std::int64_t rss_end_bytes = -1;

  Drain drained_after_ms;
  AfterLoad after_1s;
  Summary upstream_work_after_gone_ms;
  double upstream_work_after_gone_total_ms = 0;
  std::uint64_t upstream_work_after_gone_positive = 0;
  std::uint64_t upstream_requests_matched = 0;  // disconnects the upstream saw at all

  std::vector<Sample> samples;
  double load_end_t_ms = 0;        // sample time at which the last client left
  std::vector<std::string> notes;  // anything that went wrong while measuring
};

nlohmann::json to_json(const RunResult& result);
/// Errors: throws nlohmann::json::exception on a document of the wrong shape.
[[nodiscard]] RunResult run_result_from_json(const nlohmann::json& json);

/// The RSS flatness check: one correct-mode gateway, RSS after a small and a large total.
struct RssCheck {
  bool measured = false;
  std::uint64_t small_requests = 0, large_requests = 0;  // totals reached
  std::int64_t rss_small_bytes = -1, rss_large_bytes = -1;
  bool judged = true;  // false for --quick: too few requests to judge a plateau
  /// The gateway's RSS through both parts, on one time line; only t_ms and rss_bytes set.
  std::vector<Sample> samples;
  double small_end_t_ms = 0;  // where the small part ended on that time line
};

/// Both runs, the RSS check, and how the demo was set up.
struct Report {
  RunResult correct;
  RunResult broken;
  bool has_broken = false;
  RssCheck rss;
  bool quick = false;
  double time_goal_scale = 1;      // the time goals' limits are multiplied by this
  std::string transport = "http";  // "http" or "grpc": how the gateway reached the upstream
};

nlohmann::json to_json(const Report& report);
[[nodiscard]] Report report_from_json(const nlohmann::json& json);

/// Plausible made-up results (a correct run that passes, a broken run that does not), for
/// the renderer's tests and for looking at the layout without servers.
[[nodiscard]] Report synthetic_report();

}  // namespace ctxpp_load
