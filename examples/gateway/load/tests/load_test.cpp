// Unit tests of ctxpp-load's pure parts: percentiles, stats parsing, the upstream
// work-after-gone accounting, goal evaluation and the HTML report.
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "http_client.hpp"
#include "load_result.hpp"
#include "load_run.hpp"
#include "report.hpp"

namespace ctxpp_load {
namespace {

TEST(Percentile, UsesNearestRankSoEveryValueWasMeasured) {
  std::vector<double> values;
  for (int i = 100; i >= 1; --i) values.push_back(i);  // unsorted on purpose
  EXPECT_EQ(percentile(values, 50), 50);
  EXPECT_EQ(percentile(values, 99), 99);
  EXPECT_EQ(percentile(values, 100), 100);
  EXPECT_EQ(percentile(values, 0), 1);
  EXPECT_EQ(percentile({7.5}, 99), 7.5);
}

TEST(Percentile, OfNothingIsZero) {
  EXPECT_EQ(percentile({}, 50), 0);
  const Summary summary = summarize({});
  EXPECT_EQ(summary.count, 0u);
  EXPECT_EQ(summary.max, 0);
}

TEST(Percentile, P99OfFewValuesIsTheLargest) {
  const Summary summary = summarize({3, 1, 2});
  EXPECT_EQ(summary.count, 3u);
  EXPECT_EQ(summary.p50, 2);
  EXPECT_EQ(summary.p99, 3);
  EXPECT_EQ(summary.max, 3);
}

TEST(GatewayStats, ParsesTheDebugStatsDocument) {
  const auto stats = parse_gateway_stats(R"({"requests":{"ok":10,"canceled":2,"deadline":3,
    "error":1},"db_inflight":4,"upstream_inflight":5,"pool_leased":6,"lingering_leases":0,
    "cancel_cleanup_ms":{"count":5,"p50":0.25,"p99":1.5,"max":2},"rss_bytes":123456})");
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->ok, 10);
  EXPECT_EQ(stats->canceled, 2);
  EXPECT_EQ(stats->deadline, 3);
  EXPECT_EQ(stats->error, 1);
  EXPECT_EQ(stats->db_inflight, 4);
  EXPECT_EQ(stats->upstream_inflight, 5);
  EXPECT_EQ(stats->pool_leased, 6);
  EXPECT_EQ(stats->cancel_cleanup_ms.count, 5u);
  EXPECT_DOUBLE_EQ(stats->cancel_cleanup_ms.p50, 0.25);
  EXPECT_DOUBLE_EQ(stats->cancel_cleanup_ms.p99, 1.5);
  EXPECT_EQ(stats->rss_bytes, 123456);
}

TEST(GatewayStats, MissingFieldsReadAsZeroAndGarbageIsRejected) {
  const auto partial = parse_gateway_stats(R"({"db_inflight":2,"extra":"ignored"})");
  ASSERT_TRUE(partial);
  EXPECT_EQ(partial->db_inflight, 2);
  EXPECT_EQ(partial->lingering_leases, 0);
  EXPECT_FALSE(parse_gateway_stats("not json"));
  EXPECT_FALSE(parse_gateway_stats("[1,2]"));
  EXPECT_FALSE(parse_gateway_stats(""));
}

TEST(UpstreamStats, ParsesStatsAndRequestLog) {
  const auto stats = parse_upstream_stats(R"({"inflight":3,"completed":40,"cancelled":2})");
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->inflight, 3);
  EXPECT_EQ(stats->completed, 40);
  EXPECT_EQ(stats->cancelled, 2);
  const auto requests = parse_upstream_requests(
      R"([{"id":"7","start_ns":100,"end_ns":900,"outcome":"cancelled"},{"id":8,"start_ns":1,"end_ns":2,"outcome":"completed"}])");
  ASSERT_TRUE(requests);
  ASSERT_EQ(requests->size(), 2u);
  EXPECT_EQ((*requests)[0].id, "7");
  EXPECT_EQ((*requests)[0].end_ns, 900);
  EXPECT_EQ((*requests)[0].outcome, "cancelled");
  EXPECT_EQ((*requests)[1].id, "8");
  EXPECT_FALSE(parse_upstream_requests(R"({"id":"7"})"));
}

TEST(UpstreamWorkAfterGone, CountsFromTheHangUpToTheLastUpstreamCallOfThatRequest) {
  const std::vector<UpstreamRequest> requests = {
      {"1", 0, 5'000'000, "completed"},   // ended before the hang-up: 0
      {"2", 0, 13'000'000, "completed"},  // three calls for one checkout: the last counts
      {"2", 0, 30'000'000, "completed"},
      {"2", 0, 20'000'000, "cancelled"},
  };
  const std::vector<Disconnect> disconnects = {
      {"1", 10'000'000}, {"2", 10'000'000}, {"3", 10'000'000}};  // 3: never reached upstream
  const auto after = upstream_work_after_gone_ms(disconnects, requests);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_DOUBLE_EQ(after[0], 0);
  EXPECT_DOUBLE_EQ(after[1], 20);
  EXPECT_DOUBLE_EQ(after[2], 0);
}

TEST(RunResultJson, RoundTripsEveryReportedNumber) {
  const Report original = synthetic_report();
  const Report copy = report_from_json(nlohmann::json::parse(to_json(original).dump()));
  EXPECT_EQ(to_json(copy), to_json(original));
  EXPECT_TRUE(copy.has_broken);
  EXPECT_EQ(copy.correct.samples.size(), original.correct.samples.size());
  EXPECT_EQ(copy.broken.gateway_end.lingering_leases, 3);
}

TEST(Mix, ParsesWeightsAndRejectsUnknownNames) {
  const auto mix = parse_mix("orders=50,disconnect=50");
  ASSERT_TRUE(mix);
  EXPECT_EQ(mix->orders, 50);
  EXPECT_EQ(mix->disconnect, 50);
  EXPECT_EQ(mix->report, 10);  // left out: default
  EXPECT_FALSE(parse_mix("order=5"));
  EXPECT_FALSE(parse_mix("orders=-1"));
  EXPECT_FALSE(parse_mix("orders=x"));
  EXPECT_FALSE(parse_mix("orders=0,report=0,checkout=0,disconnect=0,deadline=0"));
  const auto round_trip = parse_mix(mix_text(*mix));
  ASSERT_TRUE(round_trip);
  EXPECT_EQ(mix_text(*round_trip), "orders=50,report=10,checkout=5,disconnect=50,deadline=5");
}

TEST(HttpResponse, ParsesContentLengthChunkedAndClose) {
  std::string error;
  auto sized = parse_response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiEXTRA", false, error);
  ASSERT_TRUE(sized);
  EXPECT_EQ(sized->first.status, 200);
  EXPECT_EQ(sized->first.body, "hi");
  EXPECT_EQ(sized->second, 40u);
  EXPECT_TRUE(sized->first.keep_alive);

  auto chunked = parse_response(
      "HTTP/1.1 504 Gateway Timeout\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
      false, error);
  ASSERT_TRUE(chunked);
  EXPECT_EQ(chunked->first.status, 504);
  EXPECT_EQ(chunked->first.body, "abcde");
  EXPECT_FALSE(chunked->first.keep_alive);

  EXPECT_FALSE(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", false, error));
  EXPECT_TRUE(error.empty());
  EXPECT_FALSE(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true, error));
  EXPECT_FALSE(error.empty());
}

TEST(Endpoint, AcceptsHostPortAndHttpUrls) {
  auto plain = parse_endpoint("127.0.0.1:8080");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->port, 8080);
  auto url = parse_endpoint("http://127.0.0.1:9/");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->text(), "127.0.0.1:9");
  EXPECT_FALSE(parse_endpoint("localhost:80"));
  EXPECT_FALSE(parse_endpoint("127.0.0.1"));
  EXPECT_FALSE(parse_endpoint("127.0.0.1:70000"));
}

const Goal& goal_named(const std::vector<Goal>& goals, const std::string& id) {
  for (const auto& goal : goals) {
    if (goal.id == id) return goal;
  }
  throw std::runtime_error("no goal " + id);
}

TEST(Goals, SyntheticCorrectRunPassesAndBrokenRunWouldFail) {
  const auto goals = evaluate_goals(synthetic_report());
  ASSERT_EQ(goals.size(), 4u);
  for (const auto& goal : goals) EXPECT_EQ(goal.correct, Verdict::pass) << goal.id;
  EXPECT_TRUE(all_goals_pass(goals));
  EXPECT_EQ(goal_named(goals, "cleanup-p99").broken, Verdict::fail);
  EXPECT_EQ(goal_named(goals, "drain").broken, Verdict::fail);
  EXPECT_EQ(goal_named(goals, "lingering-leases").broken, Verdict::fail);
}

TEST(Goals, EachLimitFailsJustPastIt) {
  Report report = synthetic_report();
  report.correct.gateway_end.cancel_cleanup_ms.p99 = kCleanupP99LimitMs + 0.01;
  report.correct.drained_after_ms.upstream_inflight_ms = kDrainLimitMs + 1;
  report.correct.gateway_end.lingering_leases = 1;
  report.rss.rss_large_bytes = static_cast<std::int64_t>(report.rss.rss_small_bytes * 1.06);
  const auto goals = evaluate_goals(report);
  for (const auto& goal : goals) EXPECT_EQ(goal.correct, Verdict::fail) << goal.id;
  EXPECT_FALSE(all_goals_pass(goals));
}

TEST(Goals, NotDrainedAndNoCancellationsFail) {
  Report report = synthetic_report();
  report.correct.drained_after_ms.db_inflight_ms = -1;
  report.correct.gateway_end.cancel_cleanup_ms = {};
  const auto goals = evaluate_goals(report);
  EXPECT_EQ(goal_named(goals, "drain").correct, Verdict::fail);
  EXPECT_EQ(goal_named(goals, "cleanup-p99").correct, Verdict::fail);
}

TEST(Goals, UnjudgedRssNeverFailsTheRun) {
  Report report = synthetic_report();
  report.rss.judged = false;
  report.rss.rss_large_bytes = report.rss.rss_small_bytes * 2;
  auto goals = evaluate_goals(report);
  EXPECT_EQ(goal_named(goals, "rss-flat").correct, Verdict::not_judged);
  EXPECT_TRUE(all_goals_pass(goals));
  report.rss = {};
  goals = evaluate_goals(report);
  EXPECT_EQ(goal_named(goals, "rss-flat").correct, Verdict::not_judged);
}

TEST(Goals, UpstreamSideIsOnlyJudgedWhenObserved) {
  Report report = synthetic_report();
  report.correct.upstream_observed = false;
  report.correct.drained_after_ms.upstream_inflight_ms = -1;
  EXPECT_EQ(goal_named(evaluate_goals(report), "drain").correct, Verdict::pass);
}

TEST(Html, IsOneWellFormedDocumentWithAllFourCharts) {
  const Report report = synthetic_report();
  const std::string html = render_html(report, evaluate_goals(report));
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  for (const char* id :
       {"chart-db-correct", "chart-db-broken", "chart-upstream-correct", "chart-upstream-broken"}) {
    const auto at = html.find(std::string("id=\"") + id + "\"");
    ASSERT_NE(at, std::string::npos) << id;
    const auto end = html.find("</svg>", at);
    const std::string svg = html.substr(at, end - at);
    const std::regex polyline(
        R"re(<polyline class="series [a-z-]+" points="([0-9.]+,[0-9.]+ )+[0-9.]+,[0-9.]+"/>)re");
    EXPECT_TRUE(std::regex_search(svg, polyline)) << id;
  }
  // Balanced: every opened svg, table and polyline-bearing chart closes.
  auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (auto at = html.find(needle); at != std::string::npos; at = html.find(needle, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<svg "), 5u);  // and the RSS check's chart
  EXPECT_EQ(count("</svg>"), 5u);
  EXPECT_NE(html.find("id=\"chart-rss\""), std::string::npos);
  EXPECT_EQ(count("<table"), count("</table>"));
  EXPECT_EQ(count("<tr"), count("</tr>"));
  // Self-contained: nothing fetched from anywhere.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
}

TEST(Html, EscapesTextFromTheResults) {
  Report report = synthetic_report();
  report.correct.label = "a<b>&\"c\"";
  report.correct.notes = {"<script>alert(1)</script>"};
  const std::string html = render_html(report, evaluate_goals(report));
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("a&lt;b&gt;&amp;&quot;c&quot;"), std::string::npos);
  // The chart ids stay the roles whatever the label.
  EXPECT_NE(html.find("id=\"chart-db-correct\""), std::string::npos);
  EXPECT_EQ(html_escape("'"), "&#39;");
}

TEST(Html, ShowsVerdictsAndTheCorrectRunAlone) {
  Report report = synthetic_report();
  report.has_broken = false;
  const auto goals = evaluate_goals(report);
  const std::string html = render_html(report, goals);
  EXPECT_NE(html.find("id=\"chart-db-correct\""), std::string::npos);
  EXPECT_EQ(html.find("id=\"chart-db-broken\""), std::string::npos);
  EXPECT_NE(html.find(">PASS<"), std::string::npos);
  const std::string text = render_text(report, goals);
  EXPECT_NE(text.find("[PASS] cancel to cleanup p99"), std::string::npos);
}

}  // namespace
}  // namespace ctxpp_load
