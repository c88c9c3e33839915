// load_result.cpp — percentiles, stats parsing and the JSON form of a run.
#include "load_result.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <unordered_map>

namespace ctxpp_load {

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  p = std::clamp(p, 0.0, 100.0);
  // Nearest rank: the smallest value with at least p % of the values at or below it, so
  // p99 of 100 values is the 99th and never an interpolated value nobody measured.
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  if (rank == 0) rank = 1;
  return values[rank - 1];
}

Summary summarize(const std::vector<double>& values) {
  Summary summary;
  summary.count = values.size();
  if (values.empty()) return summary;
  summary.p50 = percentile(values, 50);
  summary.p99 = percentile(values, 99);
  summary.max = *std::max_element(values.begin(), values.end());
  return summary;
}

namespace {

std::int64_t integer(const nlohmann::json& object, const char* key) {
  auto found = object.find(key);
  if (found == object.end() || !found->is_number()) return 0;
  return found->get<std::int64_t>();
}

double number(const nlohmann::json& object, const char* key, double fallback = 0) {
  auto found = object.find(key);
  if (found == object.end() || !found->is_number()) return fallback;
  return found->get<double>();
}

std::optional<nlohmann::json> parse_object(std::string_view text) {
  auto json = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return std::nullopt;
  return json;
}

nlohmann::json summary_json(const Summary& summary) {
  return {
      {"count", summary.count}, {"p50", summary.p50}, {"p99", summary.p99}, {"max", summary.max}};
}

Summary summary_from(const nlohmann::json& json) {
  Summary summary;
  if (!json.is_object()) return summary;
  summary.count = static_cast<std::uint64_t>(integer(json, "count"));
  summary.p50 = number(json, "p50");
  summary.p99 = number(json, "p99");
  summary.max = number(json, "max");
  return summary;
}

GatewayStats gateway_stats_from(const nlohmann::json& json) {
  GatewayStats stats;
  if (!json.is_object()) return stats;
  if (auto requests = json.find("requests"); requests != json.end() && requests->is_object()) {
    stats.ok = integer(*requests, "ok");
    stats.canceled = integer(*requests, "canceled");
    stats.deadline = integer(*requests, "deadline");
    stats.error = integer(*requests, "error");
  }
  stats.db_inflight = integer(json, "db_inflight");
  stats.upstream_inflight = integer(json, "upstream_inflight");
  stats.pool_leased = integer(json, "pool_leased");
  stats.lingering_leases = integer(json, "lingering_leases");
  if (auto cleanup = json.find("cancel_cleanup_ms"); cleanup != json.end()) {
    stats.cancel_cleanup_ms = summary_from(*cleanup);
  }
  stats.rss_bytes = integer(json, "rss_bytes");
  return stats;
}

nlohmann::json gateway_stats_json(const GatewayStats& stats) {
  return {{"requests",
           {{"ok", stats.ok},
            {"canceled", stats.canceled},
            {"deadline", stats.deadline},
            {"error", stats.error}}},
          {"db_inflight", stats.db_inflight},
          {"upstream_inflight", stats.upstream_inflight},
          {"pool_leased", stats.pool_leased},
          {"lingering_leases", stats.lingering_leases},
          {"cancel_cleanup_ms", summary_json(stats.cancel_cleanup_ms)},
          {"rss_bytes", stats.rss_bytes}};
}

}  // namespace

std::optional<GatewayStats> parse_gateway_stats(std::string_view text) {
  auto json = parse_object(text);
  if (!json) return std::nullopt;
  return gateway_stats_from(*json);
}

std::optional<UpstreamStats> parse_upstream_stats(std::string_view text) {
  auto json = parse_object(text);
  if (!json) return std::nullopt;
  UpstreamStats stats;
  stats.inflight = integer(*json, "inflight");
  stats.completed = integer(*json, "completed");
  stats.cancelled = integer(*json, "cancelled");
  return stats;
}

std::optional<std::vector<UpstreamRequest>> parse_upstream_requests(std::string_view text) {
  auto json = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (json.is_discarded() || !json.is_array()) return std::nullopt;
  std::vector<UpstreamRequest> requests;
  requests.reserve(json.size());
  for (const auto& entry : json) {
    if (!entry.is_object()) continue;
    UpstreamRequest request;
    if (auto id = entry.find("id"); id != entry.end()) {
      // The contract says a string; accept a number too rather than drop the entry.
      request.id = id->is_string() ? id->get<std::string>() : id->dump();
    }
    request.start_ns = integer(entry, "start_ns");
    request.end_ns = integer(entry, "end_ns");
    if (auto outcome = entry.find("outcome"); outcome != entry.end() && outcome->is_string()) {
      request.outcome = outcome->get<std::string>();
    }
    requests.push_back(std::move(request));
  }
  return requests;
}

std::vector<double> upstream_work_after_gone_ms(const std::vector<Disconnect>& disconnects,
                                                const std::vector<UpstreamRequest>& requests) {
  // One gateway request may make several upstream calls with the same id (checkout makes
  // three): the upstream was busy for it until the last of them ended.
  std::unordered_map<std::string, std::int64_t> last_end_ns;
  for (const auto& request : requests) {
    auto& end = last_end_ns[request.id];
    end = std::max(end, request.end_ns);
  }
  std::vector<double> after;
  after.reserve(disconnects.size());
  for (const auto& disconnect : disconnects) {
    auto found = last_end_ns.find(disconnect.id);
    double ms = 0;
    if (found != last_end_ns.end() && found->second > disconnect.close_ns) {
      ms = static_cast<double>(found->second - disconnect.close_ns) / 1e6;
    }
    after.push_back(ms);
  }
  return after;
}

nlohmann::json to_json(const RunResult& result) {
  nlohmann::json latency_by_endpoint = nlohmann::json::object();
  for (const auto& [endpoint, summary] : result.latency_by_endpoint_ms) {
    latency_by_endpoint[endpoint] = summary_json(summary);
  }
  nlohmann::json samples = nlohmann::json::array();
  for (const auto& sample : result.samples) {
    samples.push_back({sample.t_ms, sample.db_inflight, sample.gateway_upstream_inflight,
                       sample.upstream_inflight, sample.pool_leased, sample.rss_bytes});
  }
  return {
      {"label", result.label},
      {"requests_planned", result.requests_planned},
      {"requests_sent", result.requests_sent},
      {"concurrency", result.concurrency},
      {"seed", result.seed},
      {"mix", result.mix},
      {"duration_s", result.duration_s},
      {"requests_per_second", result.requests_per_second},
      {"upstream_observed", result.upstream_observed},
      {"outcomes",
       {{"ok", result.ok},
        {"deadline_504", result.deadline_504},
        {"other_status", result.other_status},
        {"disconnected", result.disconnected},
        {"disconnected_after_response", result.disconnected_after_response},
        {"transport_errors", result.transport_errors},
        {"short_deadline_requests", result.short_deadline_requests},
        {"status_counts", result.status_counts}}},
      {"latency_normal_ms", summary_json(result.latency_normal_ms)},
      {"latency_by_endpoint_ms", latency_by_endpoint},
      {"gateway_start", gateway_stats_json(result.gateway_start)},
      {"gateway_end", gateway_stats_json(result.gateway_end)},
      {"cancel_cleanup_ms", summary_json(result.gateway_end.cancel_cleanup_ms)},
      {"lingering_leases", result.gateway_end.lingering_leases},
      {"rss_start_bytes", result.rss_start_bytes},
      {"rss_end_bytes", result.rss_end_bytes},
      {"drained_after_ms",
       {{"db_inflight", result.drained_after_ms.db_inflight_ms},
        {"gateway_upstream_inflight", result.drained_after_ms.gateway_upstream_inflight_ms},
        {"pool_leased", result.drained_after_ms.pool_leased_ms},
        {"upstream_inflight", result.drained_after_ms.upstream_inflight_ms}}},
      {"after_1s",
       {{"db_inflight", result.after_1s.db_inflight},
        {"gateway_upstream_inflight", result.after_1s.gateway_upstream_inflight},
        {"pool_leased", result.after_1s.pool_leased},
        {"upstream_inflight", result.after_1s.upstream_inflight}}},
      {"upstream_work_after_client_gone_ms",
       {{"total", result.upstream_work_after_gone_total_ms},
        {"positive", result.upstream_work_after_gone_positive},
        {"matched", result.upstream_requests_matched},
        {"summary", summary_json(result.upstream_work_after_gone_ms)}}},
      {"load_end_t_ms", result.load_end_t_ms},
      {"samples_columns",
       {"t_ms", "db_inflight", "gateway_upstream_inflight", "upstream_inflight", "pool_leased",
        "rss_bytes"}},
      {"samples", samples},
      {"notes", result.notes},
  };
}

RunResult run_result_from_json(const nlohmann::json& json) {
  RunResult result;
  result.label = json.at("label").get<std::string>();
  result.requests_planned = json.value("requests_planned", std::uint64_t{0});
  result.requests_sent = json.value("requests_sent", std::uint64_t{0});
  result.concurrency = json.value("concurrency", std::uint64_t{0});
  result.seed = json.value("seed", std::uint64_t{0});
  result.mix = json.value("mix", std::string());
  result.duration_s = json.value("duration_s", 0.0);
  result.requests_per_second = json.value("requests_per_second", 0.0);
  result.upstream_observed = json.value("upstream_observed", false);
  const auto& outcomes = json.at("outcomes");
  result.ok = outcomes.value("ok", std::uint64_t{0});
  result.deadline_504 = outcomes.value("deadline_504", std::uint64_t{0});
  result.other_status = outcomes.value("other_status", std::uint64_t{0});
  result.disconnected = outcomes.value("disconnected", std::uint64_t{0});
  result.disconnected_after_response =
      outcomes.value("disconnected_after_response", std::uint64_t{0});
  result.transport_errors = outcomes.value("transport_errors", std::uint64_t{0});
  result.short_deadline_requests = outcomes.value("short_deadline_requests", std::uint64_t{0});
  if (outcomes.contains("status_counts")) {
    result.status_counts = outcomes.at("status_counts").get<std::map<std::string, std::uint64_t>>();
  }
  result.latency_normal_ms = summary_from(json.value("latency_normal_ms", nlohmann::json{}));
  // A named copy: items() of a temporary would dangle inside the loop.
  const auto latency_by_endpoint = json.value("latency_by_endpoint_ms", nlohmann::json::object());
  for (const auto& [endpoint, summary] : latency_by_endpoint.items()) {
    result.latency_by_endpoint_ms[endpoint] = summary_from(summary);
  }
  result.gateway_start = gateway_stats_from(json.value("gateway_start", nlohmann::json{}));
  result.gateway_end = gateway_stats_from(json.value("gateway_end", nlohmann::json{}));
  result.rss_start_bytes = json.value("rss_start_bytes", std::int64_t{-1});
  result.rss_end_bytes = json.value("rss_end_bytes", std::int64_t{-1});
  const auto drained = json.value("drained_after_ms", nlohmann::json::object());
  result.drained_after_ms.db_inflight_ms = number(drained, "db_inflight", -1);
  result.drained_after_ms.gateway_upstream_inflight_ms =
      number(drained, "gateway_upstream_inflight", -1);
  result.drained_after_ms.pool_leased_ms = number(drained, "pool_leased", -1);
  result.drained_after_ms.upstream_inflight_ms = number(drained, "upstream_inflight", -1);
  const auto after = json.value("after_1s", nlohmann::json::object());
  result.after_1s.db_inflight = after.value("db_inflight", std::int64_t{-1});
  result.after_1s.gateway_upstream_inflight =
      after.value("gateway_upstream_inflight", std::int64_t{-1});
  result.after_1s.pool_leased = after.value("pool_leased", std::int64_t{-1});
  result.after_1s.upstream_inflight = after.value("upstream_inflight", std::int64_t{-1});
  const auto gone = json.value("upstream_work_after_client_gone_ms", nlohmann::json::object());
  result.upstream_work_after_gone_total_ms = number(gone, "total");
  result.upstream_work_after_gone_positive = static_cast<std::uint64_t>(integer(gone, "positive"));
  result.upstream_requests_matched = static_cast<std::uint64_t>(integer(gone, "matched"));
  result.upstream_work_after_gone_ms = summary_from(gone.value("summary", nlohmann::json{}));
  result.load_end_t_ms = json.value("load_end_t_ms", 0.0);
  const auto samples = json.value("samples", nlohmann::json::array());
  for (const auto& row : samples) {
    if (!row.is_array() || row.size() < 6) continue;
    Sample sample;
    sample.t_ms = row[0].get<double>();
    sample.db_inflight = row[1].get<std::int64_t>();
    sample.gateway_upstream_inflight = row[2].get<std::int64_t>();
    sample.upstream_inflight = row[3].get<std::int64_t>();
    sample.pool_leased = row[4].get<std::int64_t>();
    sample.rss_bytes = row[5].get<std::int64_t>();
    result.samples.push_back(sample);
  }
  result.notes = json.value("notes", std::vector<std::string>{});
  return result;
}

nlohmann::json to_json(const Report& report) {
  nlohmann::json rss_samples = nlohmann::json::array();
  for (const auto& sample : report.rss.samples) {
    rss_samples.push_back({sample.t_ms, sample.rss_bytes});
  }
  nlohmann::json json = {
      {"quick", report.quick},
      {"time_goal_scale", report.time_goal_scale},
      {"transport", report.transport},
      {"correct", to_json(report.correct)},
      {"rss_check",
       {{"measured", report.rss.measured},
        {"judged", report.rss.judged},
        {"small_requests", report.rss.small_requests},
        {"large_requests", report.rss.large_requests},
        {"rss_small_bytes", report.rss.rss_small_bytes},
        {"rss_large_bytes", report.rss.rss_large_bytes},
        {"small_end_t_ms", report.rss.small_end_t_ms},
        {"samples", rss_samples}}},
  };
  if (report.has_broken) json["broken"] = to_json(report.broken);
  return json;
}

Report report_from_json(const nlohmann::json& json) {
  Report report;
  report.quick = json.value("quick", false);
  report.time_goal_scale = json.value("time_goal_scale", 1.0);
  report.transport = json.value("transport", std::string("http"));
  report.correct = run_result_from_json(json.at("correct"));
  if (json.contains("broken")) {
    report.broken = run_result_from_json(json.at("broken"));
    report.has_broken = true;
  }
  const auto rss = json.value("rss_check", nlohmann::json::object());
  report.rss.measured = rss.value("measured", false);
  report.rss.judged = rss.value("judged", true);
  report.rss.small_requests = rss.value("small_requests", std::uint64_t{0});
  report.rss.large_requests = rss.value("large_requests", std::uint64_t{0});
  report.rss.rss_small_bytes = rss.value("rss_small_bytes", std::int64_t{-1});
  report.rss.rss_large_bytes = rss.value("rss_large_bytes", std::int64_t{-1});
  report.rss.small_end_t_ms = rss.value("small_end_t_ms", 0.0);
  const auto rss_samples = rss.value("samples", nlohmann::json::array());
  for (const auto& row : rss_samples) {
    if (!row.is_array() || row.size() < 2) continue;
    Sample sample;
    sample.t_ms = row[0].get<double>();
    sample.rss_bytes = row[1].get<std::int64_t>();
    report.rss.samples.push_back(sample);
  }
  return report;
}

namespace {

RunResult synthetic_run(const std::string& label, bool broken) {
  RunResult run;
  run.label = label;
  run.requests_planned = run.requests_sent = 20000;
  run.concurrency = 32;
  run.seed = 1;
  run.mix = "orders=70,report=10,checkout=5,disconnect=10,deadline=5";
  run.duration_s = 6.5;
  run.requests_per_second = 3076.9;
  run.upstream_observed = true;
  run.ok = 16900;
  run.deadline_504 = 1000;
  run.disconnected = 2000;
  run.short_deadline_requests = 1000;
  run.status_counts = {{"200", 16900}, {"504", 1000}};
  run.latency_normal_ms = {16900, 1.2, 71.0, 95.0};
  run.latency_by_endpoint_ms = {{"orders", {14000, 0.8, 3.1, 9.0}},
                                {"report", {2000, 62.0, 84.0, 95.0}},
                                {"checkout", {900, 61.0, 70.0, 80.0}}};
  run.gateway_end.ok = 16900;
  run.gateway_end.canceled = 2000;
  run.gateway_end.deadline = 1000;
  run.gateway_end.cancel_cleanup_ms =
      broken ? Summary{3000, 60.0, 240.0, 310.0} : Summary{3000, 0.4, 2.1, 4.0};
  run.gateway_end.lingering_leases = broken ? 3 : 0;
  run.rss_start_bytes = 12 << 20;
  run.rss_end_bytes = broken ? 40 << 20 : 14 << 20;
  run.gateway_end.rss_bytes = run.rss_end_bytes;
  run.drained_after_ms = broken ? Drain{240, 310, 250, 320} : Drain{0, 0, 0, 5};
  run.after_1s = broken ? AfterLoad{0, 0, 0, 0} : AfterLoad{0, 0, 0, 0};
  run.upstream_work_after_gone_ms =
      broken ? Summary{2000, 90.0, 280.0, 300.0} : Summary{2000, 0.0, 0.6, 1.1};
  run.upstream_work_after_gone_total_ms = broken ? 190000.0 : 12.0;
  run.upstream_work_after_gone_positive = broken ? 1990 : 30;
  run.upstream_requests_matched = 1800;
  for (int step = 0; step <= 300; ++step) {
    Sample sample;
    sample.t_ms = step * 25.0;
    const bool loaded = sample.t_ms < 6500;
    const double wave = 6.0 + 4.0 * std::sin(step / 7.0);
    sample.db_inflight = loaded ? static_cast<std::int64_t>(wave) : 0;
    sample.gateway_upstream_inflight =
        loaded ? static_cast<std::int64_t>(wave * (broken ? 2.5 : 1.2)) : 0;
    sample.upstream_inflight = sample.gateway_upstream_inflight;
    if (broken && !loaded && sample.t_ms < 6800) sample.upstream_inflight = 9;
    sample.pool_leased = sample.db_inflight;
    sample.rss_bytes = run.rss_start_bytes;
    run.samples.push_back(sample);
  }
  run.load_end_t_ms = 6500;
  if (broken) run.notes.push_back("synthetic <broken> run: \"numbers\" made up & escaped");
  return run;
}

}  // namespace

Report synthetic_report() {
  Report report;
  report.correct = synthetic_run("correct", false);
  report.broken = synthetic_run("broken", true);
  report.has_broken = true;
  report.rss = {true, 10000, 100000, 30 << 20, 31 << 20, true, {}, 0};
  for (int step = 0; step <= 400; ++step) {
    Sample sample;
    sample.t_ms = step * 100.0;
    // Grows while warming up, then a plateau: what a flat RSS looks like.
    sample.rss_bytes =
        static_cast<std::int64_t>((31.0 - 20.0 * std::exp(-step / 20.0)) * (1 << 20));
    report.rss.samples.push_back(sample);
  }
  report.rss.small_end_t_ms = 4000;
  return report;
}

}  // namespace ctxpp_load
