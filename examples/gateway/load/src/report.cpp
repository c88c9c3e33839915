// report.cpp — goals, the plain-text report and the self-contained HTML report.
#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <functional>
#include <sstream>

namespace ctxpp_load {

namespace {

std::string printf_string(const char* format, ...) __attribute__((format(printf, 1, 2)));

std::string printf_string(const char* format, ...) {
  char buffer[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  return buffer;
}

std::string ms_text(double ms) {
  if (ms < 0) return "not drained in 3 s";
  return printf_string("%.1f ms", ms);
}

std::string gauge_text(std::int64_t value) {
  return value < 0 ? std::string("n/a") : std::to_string(value);
}

std::string megabytes(std::int64_t bytes) {
  if (bytes < 0) return "n/a";
  return printf_string("%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

Verdict verdict_of(bool passed) { return passed ? Verdict::pass : Verdict::fail; }

void judge_leases(const RunResult& run, Verdict& verdict, std::string& value) {
  const auto lingering = run.gateway_end.lingering_leases;
  const auto leased = run.after_1s.pool_leased;
  value = printf_string("%lld lingering; %s leased 1 s after the load",
                        static_cast<long long>(lingering), gauge_text(leased).c_str());
  verdict = verdict_of(lingering == 0 && leased <= 0);
}

void judge_drain(const RunResult& run, double scale, Verdict& verdict, std::string& value) {
  const auto& drained = run.drained_after_ms;
  auto within = [scale](double ms) { return ms >= 0 && ms <= kDrainLimitMs * scale; };
  bool passed = within(drained.gateway_upstream_inflight_ms) && within(drained.db_inflight_ms);
  value = "gateway upstream calls " + ms_text(drained.gateway_upstream_inflight_ms) +
          ", DB queries " + ms_text(drained.db_inflight_ms);
  if (run.upstream_observed) {
    passed = passed && within(drained.upstream_inflight_ms);
    value += ", upstream side " + ms_text(drained.upstream_inflight_ms);
  } else {
    value += ", upstream side not observed";
  }
  verdict = verdict_of(passed);
}

void judge_cleanup(const RunResult& run, double scale, Verdict& verdict, std::string& value) {
  const auto& cleanup = run.gateway_end.cancel_cleanup_ms;
  if (cleanup.count == 0) {
    value = "no cancellation measured";
    verdict = Verdict::fail;
    return;
  }
  value = printf_string("p99 %.2f ms (p50 %.2f, max %.2f, %llu cancellations)", cleanup.p99,
                        cleanup.p50, cleanup.max, static_cast<unsigned long long>(cleanup.count));
  verdict = verdict_of(cleanup.p99 <= kCleanupP99LimitMs * scale);
}

}  // namespace

const char* verdict_text(Verdict verdict) {
  switch (verdict) {
    case Verdict::pass:
      return "PASS";
    case Verdict::fail:
      return "FAIL";
    case Verdict::not_judged:
      break;
  }
  return "n/a";
}

std::vector<Goal> evaluate_goals(const Report& report) {
  std::vector<Goal> goals;
  auto add = [&](std::string id, std::string name, std::string limit,
                 const std::function<void(const RunResult&, Verdict&, std::string&)>& judge) {
    Goal goal;
    goal.id = std::move(id);
    goal.name = std::move(name);
    goal.limit = std::move(limit);
    judge(report.correct, goal.correct, goal.correct_value);
    if (report.has_broken) {
      judge(report.broken, goal.broken, goal.broken_value);
    } else {
      goal.broken_value = "not run";
    }
    goals.push_back(std::move(goal));
  };
  add("lingering-leases", "zero lingering leases", "0 lingering, 0 leased 1 s after", judge_leases);
  // Time limits, scaled for instrumented builds (the scale is printed with them).
  const double scale = report.time_goal_scale;
  const std::string scaled = scale == 1 ? "" : printf_string(" (x%g for this build)", scale);
  const auto scaled_judge = [scale](auto judge) {
    return [scale, judge](const RunResult& run, Verdict& verdict, std::string& value) {
      judge(run, scale, verdict, value);
    };
  };
  add("drain", "in-flight upstream calls and DB queries drained after the last client left",
      printf_string("<= %.0f ms, both sides", kDrainLimitMs * scale) + scaled,
      scaled_judge(judge_drain));

  Goal rss;
  rss.id = "rss-flat";
  rss.name = "RSS flat between the small and the large request count";
  rss.limit = printf_string("within +/-%.0f %%", kRssTolerance * 100);
  if (report.rss.measured && report.rss.rss_small_bytes > 0 && report.rss.rss_large_bytes > 0) {
    const double ratio = static_cast<double>(report.rss.rss_large_bytes) /
                         static_cast<double>(report.rss.rss_small_bytes);
    rss.correct_value =
        printf_string("%s after %llu requests, %s after %llu: ratio %.3f",
                      megabytes(report.rss.rss_small_bytes).c_str(),
                      static_cast<unsigned long long>(report.rss.small_requests),
                      megabytes(report.rss.rss_large_bytes).c_str(),
                      static_cast<unsigned long long>(report.rss.large_requests), ratio);
    if (report.rss.judged) {
      rss.correct = verdict_of(std::abs(ratio - 1.0) <= kRssTolerance);
    } else {
      rss.correct_value += " (not judged: --quick is too short for a plateau)";
    }
  } else {
    rss.correct_value = "not measured";
  }
  rss.broken_value = "not measured (correct mode only)";
  goals.push_back(std::move(rss));

  add("cleanup-p99", "cancel to cleanup p99",
      printf_string("<= %.0f ms", kCleanupP99LimitMs * scale) + scaled,
      scaled_judge(judge_cleanup));
  return goals;
}

bool all_goals_pass(const std::vector<Goal>& goals) {
  return std::none_of(goals.begin(), goals.end(),
                      [](const Goal& goal) { return goal.correct == Verdict::fail; });
}

std::string html_escape(const std::string& text) {
  std::string escaped;
  escaped.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        escaped += "&amp;";
        break;
      case '<':
        escaped += "&lt;";
        break;
      case '>':
        escaped += "&gt;";
        break;
      case '"':
        escaped += "&quot;";
        break;
      case '\'':
        escaped += "&#39;";
        break;
      default:
        escaped += c;
    }
  }
  return escaped;
}

namespace {

struct Row {
  std::string name;
  std::function<std::string(const RunResult&)> value;
};

std::vector<Row> metric_rows() {
  auto summary_text = [](const Summary& summary) {
    if (summary.count == 0) return std::string("none");
    return printf_string("p50 %.2f / p99 %.2f / max %.2f ms (n=%llu)", summary.p50, summary.p99,
                         summary.max, static_cast<unsigned long long>(summary.count));
  };
  auto count = [](std::uint64_t n) { return std::to_string(n); };
  return {
      {"requests sent / planned",
       [=](const RunResult& run) {
         return count(run.requests_sent) + " / " + count(run.requests_planned);
       }},
      {"concurrency, seed, mix",
       [](const RunResult& run) {
         return std::to_string(run.concurrency) + ", " + std::to_string(run.seed) + ", " +
                (run.mix.empty() ? std::string("n/a") : run.mix);
       }},
      {"duration, throughput",
       [](const RunResult& run) {
         return printf_string("%.2f s, %.0f req/s", run.duration_s, run.requests_per_second);
       }},
      {"200 ok", [=](const RunResult& run) { return count(run.ok); }},
      {"504 deadline (short-deadline requests sent)",
       [=](const RunResult& run) {
         return count(run.deadline_504) + " (" + count(run.short_deadline_requests) + ")";
       }},
      {"other statuses", [=](const RunResult& run) { return count(run.other_status); }},
      {"clients that hung up (answer came first)",
       [=](const RunResult& run) {
         return count(run.disconnected) + " (" + count(run.disconnected_after_response) + ")";
       }},
      {"transport errors", [=](const RunResult& run) { return count(run.transport_errors); }},
      {"the gateway's own count: ok / canceled / deadline / error",
       [](const RunResult& run) {
         const auto& start = run.gateway_start;
         const auto& end = run.gateway_end;
         return std::to_string(end.ok - start.ok) + " / " +
                std::to_string(end.canceled - start.canceled) + " / " +
                std::to_string(end.deadline - start.deadline) + " / " +
                std::to_string(end.error - start.error);
       }},
      {"latency, normal requests",
       [=](const RunResult& run) { return summary_text(run.latency_normal_ms); }},
      {"latency, /api/orders",
       [=](const RunResult& run) {
         auto found = run.latency_by_endpoint_ms.find("orders");
         return found == run.latency_by_endpoint_ms.end() ? "none" : summary_text(found->second);
       }},
      {"latency, /api/report",
       [=](const RunResult& run) {
         auto found = run.latency_by_endpoint_ms.find("report");
         return found == run.latency_by_endpoint_ms.end() ? "none" : summary_text(found->second);
       }},
      {"latency, /api/checkout",
       [=](const RunResult& run) {
         auto found = run.latency_by_endpoint_ms.find("checkout");
         return found == run.latency_by_endpoint_ms.end() ? "none" : summary_text(found->second);
       }},
      {"cancel to cleanup (gateway)",
       [=](const RunResult& run) { return summary_text(run.gateway_end.cancel_cleanup_ms); }},
      {"lingering leases",
       [](const RunResult& run) { return std::to_string(run.gateway_end.lingering_leases); }},
      {"drained after the last client left: DB / gateway upstream / pool / upstream",
       [](const RunResult& run) {
         const auto& drained = run.drained_after_ms;
         return ms_text(drained.db_inflight_ms) + " / " +
                ms_text(drained.gateway_upstream_inflight_ms) + " / " +
                ms_text(drained.pool_leased_ms) + " / " +
                (run.upstream_observed ? ms_text(drained.upstream_inflight_ms) : "n/a");
       }},
      {"in flight 1 s after the load: DB / gateway upstream / pool / upstream",
       [](const RunResult& run) {
         const auto& after = run.after_1s;
         return gauge_text(after.db_inflight) + " / " +
                gauge_text(after.gateway_upstream_inflight) + " / " +
                gauge_text(after.pool_leased) + " / " + gauge_text(after.upstream_inflight);
       }},
      {"upstream work after the client was gone",
       [=](const RunResult& run) {
         if (!run.upstream_observed) return std::string("not observed");
         return printf_string(
                    "total %.1f ms; %llu of %llu requests > 0; ",
                    run.upstream_work_after_gone_total_ms,
                    static_cast<unsigned long long>(run.upstream_work_after_gone_positive),
                    static_cast<unsigned long long>(run.disconnected)) +
                summary_text(run.upstream_work_after_gone_ms);
       }},
      {"RSS before / after the load",
       [](const RunResult& run) {
         return megabytes(run.rss_start_bytes) + " / " + megabytes(run.rss_end_bytes);
       }},
  };
}

std::string notes_text(const RunResult& run) {
  std::string text;
  for (const auto& note : run.notes) text += (text.empty() ? "" : "; ") + note;
  return text.empty() ? "none" : text;
}

}  // namespace

std::string render_text(const Report& report, const std::vector<Goal>& goals) {
  std::ostringstream out;
  out << "ctxpp gateway load report (" << (report.quick ? "quick, " : "") << "upstream over "
      << report.transport << ")\n\n";
  out << "Goals (judged on the correct run; the broken run is shown for contrast)\n";
  for (const auto& goal : goals) {
    out << "  [" << verdict_text(goal.correct) << "] " << goal.name << " (" << goal.limit << ")\n"
        << "         correct: " << goal.correct_value << "\n"
        << "         broken:  " << goal.broken_value;
    if (goal.broken != Verdict::not_judged) out << "  [would " << verdict_text(goal.broken) << "]";
    out << "\n";
  }
  out << "\n";
  const std::vector<const RunResult*> runs =
      report.has_broken ? std::vector<const RunResult*>{&report.correct, &report.broken}
                        : std::vector<const RunResult*>{&report.correct};
  std::size_t label_width = 0;
  for (const auto* run : runs) label_width = std::max(label_width, run->label.size());
  auto run_line = [&](const RunResult& run, const std::string& value) {
    out << "  " << run.label << std::string(label_width - run.label.size(), ' ') << "  " << value
        << "\n";
  };
  for (const auto& row : metric_rows()) {
    out << row.name << "\n";
    for (const auto* run : runs) run_line(*run, row.value(*run));
  }
  out << "notes\n";
  for (const auto* run : runs) run_line(*run, notes_text(*run));
  out << "\nResult: " << (all_goals_pass(goals) ? "all goals PASS" : "some goals FAIL") << "\n";
  return out.str();
}

namespace {

struct Series {
  std::string css_class;
  std::string legend;
  std::function<double(const Sample&)> value;  // negative: not read at that moment
};

/// 1, 2, 5 x 10^k at or above `value`, so tick labels are round numbers.
double nice_ceiling(double value) {
  if (value <= 0) return 1;
  const double magnitude = std::pow(10.0, std::floor(std::log10(value)));
  for (double step : {1.0, 2.0, 5.0, 10.0}) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

/// An axis from 0 to `max` with ticks every `step`: five or fewer round steps that just
/// cover the data, so a 21 s run gets 0..25 rather than 0..50.
struct Axis {
  double max = 1;
  double step = 1;
};

Axis axis_for(double data_max, double smallest_step) {
  Axis axis;
  axis.step = std::max(nice_ceiling(data_max / 5), smallest_step);
  axis.max = std::max(std::ceil(data_max / axis.step), 1.0) * axis.step;
  return axis;
}

constexpr double kWidth = 560, kHeight = 280;
constexpr double kLeft = 48, kRight = 12, kTop = 52, kBottom = 36;

std::string svg_chart(const std::string& id, const std::string& title, const RunResult& run,
                      const std::vector<Series>& series, Axis x_seconds, Axis y_axis,
                      const std::string& marker = "last client left") {
  const double x_max_ms = x_seconds.max * 1000;
  const double y_max = y_axis.max;
  const double plot_width = kWidth - kLeft - kRight;
  const double plot_height = kHeight - kTop - kBottom;
  auto x_of = [&](double t_ms) { return kLeft + t_ms / x_max_ms * plot_width; };
  auto y_of = [&](double value) { return kTop + plot_height - value / y_max * plot_height; };

  std::ostringstream svg;
  svg << "<svg id=\"" << html_escape(id) << "\" data-run=\"" << html_escape(run.label)
      << "\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth
      << "\" height=\"" << kHeight << "\" viewBox=\"0 0 " << kWidth << ' ' << kHeight
      << "\" role=\"img\" aria-label=\"" << html_escape(title) << "\">\n";
  svg << "<title>" << html_escape(title) << "</title>\n";
  svg << "<text class=\"chart-title\" x=\"" << kLeft << "\" y=\"18\">" << html_escape(title)
      << "</text>\n";
  // Grid and tick labels; the axes have at most a handful of steps each.
  for (double value = 0; value <= y_max + y_axis.step / 2; value += y_axis.step) {
    const double y = y_of(value);
    svg << printf_string(
        "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
        "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
        kLeft, y, kLeft + plot_width, y, kLeft - 6, y + 4, value);
  }
  for (double seconds = 0; seconds <= x_seconds.max + x_seconds.step / 2;
       seconds += x_seconds.step) {
    const double x = x_of(seconds * 1000);
    svg << printf_string(
        "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
        "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
        x, kTop + plot_height, x, kTop + plot_height + 4, x, kTop + plot_height + 16, seconds);
  }
  svg << printf_string(
      "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
      "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
      kLeft, kTop, kLeft, kTop + plot_height, kLeft, kTop + plot_height, kLeft + plot_width,
      kTop + plot_height);
  svg << printf_string(
      "<text class=\"axis-label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">"
      "seconds since the load started</text>\n",
      kLeft + plot_width / 2, kHeight - 4);
  if (run.load_end_t_ms > 0) {
    const double x = x_of(run.load_end_t_ms);
    svg << printf_string(
        "<line class=\"load-end\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
        "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\">%s</text>\n",
        x, kTop - 2, x, kTop + plot_height, x + 3, kTop - 4, html_escape(marker).c_str());
  }
  // The legend is one row between the title and the plot, where no data can hide it.
  double legend_x = kLeft;
  const double legend_y = 34;
  for (const auto& one : series) {
    std::string points;
    for (const auto& sample : run.samples) {
      const auto value = one.value(sample);
      if (value < 0) continue;  // not read at that moment
      points += printf_string("%s%.1f,%.1f", points.empty() ? "" : " ", x_of(sample.t_ms),
                              y_of(std::min(value, y_max)));
    }
    if (!points.empty()) {
      svg << "<polyline class=\"series " << one.css_class << "\" points=\"" << points << "\"/>\n";
    }
    svg << printf_string(
        "<line class=\"series %s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
        "<text class=\"legend\" x=\"%.1f\" y=\"%.1f\">%s</text>\n",
        one.css_class.c_str(), legend_x, legend_y - 4, legend_x + 18, legend_y - 4, legend_x + 22,
        legend_y, html_escape(one.legend).c_str());
    legend_x += 40 + 6.0 * static_cast<double>(one.legend.size());
  }
  svg << "</svg>\n";
  return svg.str();
}

const char* kStyle = R"(
body { font-family: system-ui, sans-serif; margin: 24px; color: #1b1f24; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #c9d1d9; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
#overall { padding: 6px 10px; }
.PASS { color: #fff; background: #1f883d; font-weight: bold; }
.FAIL { color: #fff; background: #cf222e; font-weight: bold; }
.na { color: #57606a; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.chart { border: 1px solid #d0d7de; background: #fff; }
.chart-title { font-size: 13px; font-weight: bold; fill: #1b1f24; }
.grid { stroke: #eaeef2; stroke-width: 1; }
.axis { stroke: #57606a; stroke-width: 1; }
.tick, .legend, .axis-label { font-size: 10px; fill: #57606a; }
.load-end { stroke: #8250df; stroke-width: 1; stroke-dasharray: 4 3; }
polyline.series { fill: none; stroke-width: 1.6; }
.series.db { stroke: #0969da; } .series.pool { stroke: #bf8700; }
.series.gateway-upstream { stroke: #1f883d; } .series.upstream { stroke: #cf222e; }
.series.rss { stroke: #8250df; }
line.series { stroke-width: 3; }
)";

}  // namespace

std::string render_html(const Report& report, const std::vector<Goal>& goals) {
  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
       << "<title>ctxpp gateway load report</title>\n<style>" << kStyle << "</style>\n"
       << "</head>\n<body>\n<h1>ctxpp gateway load report</h1>\n";
  html << "<p>Correct context propagation against <code>--broken-propagation</code>, upstream "
          "over "
       << html_escape(report.transport) << (report.quick ? " (quick run)" : "")
       << ". Goals are judged on the correct run; the broken run is shown for contrast.</p>\n";
  html << "<p id=\"overall\" class=\"" << (all_goals_pass(goals) ? "PASS" : "FAIL") << "\">"
       << (all_goals_pass(goals) ? "All goals PASS" : "Some goals FAIL") << "</p>\n";

  html << "<h2>Goals</h2>\n<table id=\"goals\">\n<tr><th>goal</th><th>limit</th><th>correct</th>"
          "<th>verdict</th><th>broken (contrast)</th><th>would be</th></tr>\n";
  auto verdict_cell = [](Verdict verdict) {
    const char* text = verdict_text(verdict);
    return std::string("<td class=\"") + (verdict == Verdict::not_judged ? "na" : text) + "\">" +
           text + "</td>";
  };
  for (const auto& goal : goals) {
    html << "<tr data-goal=\"" << html_escape(goal.id) << "\"><td>" << html_escape(goal.name)
         << "</td><td>" << html_escape(goal.limit) << "</td><td>" << html_escape(goal.correct_value)
         << "</td>" << verdict_cell(goal.correct) << "<td>" << html_escape(goal.broken_value)
         << "</td>" << verdict_cell(goal.broken) << "</tr>\n";
  }
  html << "</table>\n";

  const std::vector<const RunResult*> runs =
      report.has_broken ? std::vector<const RunResult*>{&report.correct, &report.broken}
                        : std::vector<const RunResult*>{&report.correct};
  // Both runs share each metric's scales so the charts compare at a glance.
  double x_max_ms = 1;
  double db_max = 0, upstream_max = 0;
  for (const auto* run : runs) {
    for (const auto& sample : run->samples) {
      x_max_ms = std::max(x_max_ms, sample.t_ms);
      db_max = std::max({db_max, static_cast<double>(sample.db_inflight),
                         static_cast<double>(sample.pool_leased)});
      upstream_max = std::max({upstream_max, static_cast<double>(sample.gateway_upstream_inflight),
                               static_cast<double>(sample.upstream_inflight)});
    }
  }
  const Axis x_seconds = axis_for(x_max_ms / 1000.0, 0.1);
  const std::vector<Series> db_series = {
      {"db", "DB queries in flight",
       [](const Sample& s) { return static_cast<double>(s.db_inflight); }},
      {"pool", "pool connections leased",
       [](const Sample& s) { return static_cast<double>(s.pool_leased); }}};
  const std::vector<Series> upstream_series = {
      {"gateway-upstream", "upstream calls (gateway)",
       [](const Sample& s) { return static_cast<double>(s.gateway_upstream_inflight); }},
      {"upstream", "requests in the upstream",
       [](const Sample& s) { return static_cast<double>(s.upstream_inflight); }}};

  html << "<h2>In-flight DB queries over time</h2>\n<div class=\"charts\">\n";
  // Ids name the role, not the label, so scripts find them whatever the runs were called.
  const char* roles[] = {"correct", "broken"};
  for (std::size_t index = 0; index < runs.size(); ++index) {
    html << svg_chart(std::string("chart-db-") + roles[index],
                      "DB queries in flight: " + runs[index]->label + " run", *runs[index],
                      db_series, x_seconds, axis_for(db_max, 1));
  }
  html << "</div>\n<h2>In-flight upstream calls over time</h2>\n<div class=\"charts\">\n";
  for (std::size_t index = 0; index < runs.size(); ++index) {
    html << svg_chart(std::string("chart-upstream-") + roles[index],
                      "upstream calls in flight: " + runs[index]->label + " run", *runs[index],
                      upstream_series, x_seconds, axis_for(upstream_max, 1));
  }
  html << "</div>\n";
  if (!report.rss.samples.empty()) {
    // The RSS check's own time line: the reader sees a plateau or a slope, not one ratio.
    RunResult rss_run;
    rss_run.label = "rss";
    rss_run.samples = report.rss.samples;
    rss_run.load_end_t_ms = report.rss.small_end_t_ms;
    double rss_max_mib = 0;
    for (const auto& sample : rss_run.samples) {
      rss_max_mib = std::max(rss_max_mib, static_cast<double>(sample.rss_bytes) / (1 << 20));
    }
    const std::vector<Series> rss_series = {
        {"rss", "gateway RSS (MiB)", [](const Sample& s) {
           return s.rss_bytes < 0 ? -1.0 : static_cast<double>(s.rss_bytes) / (1 << 20);
         }}};
    html << "<h2>Gateway RSS during the RSS check</h2>\n<div class=\"charts\">\n"
         << svg_chart("chart-rss", "gateway RSS, one correct-mode process", rss_run, rss_series,
                      axis_for(rss_run.samples.back().t_ms / 1000.0, 0.1), axis_for(rss_max_mib, 1),
                      "after " + std::to_string(report.rss.small_requests) + " requests")
         << "</div>\n";
  }
  html << "<h2>Summary</h2>\n<table id=\"summary\">\n<tr><th>measure</th>";
  for (const auto* run : runs) html << "<th>" << html_escape(run->label) << "</th>";
  html << "</tr>\n";
  for (const auto& row : metric_rows()) {
    html << "<tr><td>" << html_escape(row.name) << "</td>";
    for (const auto* run : runs) html << "<td>" << html_escape(row.value(*run)) << "</td>";
    html << "</tr>\n";
  }
  html << "<tr><td>notes</td>";
  for (const auto* run : runs) html << "<td>" << html_escape(notes_text(*run)) << "</td>";
  html << "</tr>\n</table>\n";
  html << "</body>\n</html>\n";
  return html.str();
}

}  // namespace ctxpp_load
