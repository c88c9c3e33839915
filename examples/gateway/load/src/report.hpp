// report.hpp — judge a demo's results against the goals and write them as text and HTML.
// The HTML is one self-contained file (inline CSS, static inline SVG, no script, no
// network) so it opens anywhere and a headless browser's DOM dump shows the charts.
// Chart ids: chart-db-correct, chart-db-broken, chart-upstream-correct,
// chart-upstream-broken, and chart-rss when the RSS check ran; each holds one
// <polyline class="series ..."> per gauge.
#pragma once

#include <string>
#include <vector>

#include "load_result.hpp"

namespace ctxpp_load {

/// The limits the correct run must meet.
inline constexpr double kDrainLimitMs = 100;
inline constexpr double kRssTolerance = 0.05;
inline constexpr double kCleanupP99LimitMs = 5;

enum class Verdict { pass, fail, not_judged };

/// One goal: its name, the limit in words, and how each run fared.
struct Goal {
  std::string id;  // stable, for scripts: lingering-leases, drain, rss-flat, cleanup-p99
  std::string name;
  std::string limit;
  Verdict correct = Verdict::not_judged;
  std::string correct_value;
  Verdict broken = Verdict::not_judged;  // shown for contrast; expected to fail
  std::string broken_value;
};

/// Cost: O(samples) at most; pure.
[[nodiscard]] std::vector<Goal> evaluate_goals(const Report& report);

/// True when no judged goal of the correct run failed.
[[nodiscard]] bool all_goals_pass(const std::vector<Goal>& goals);

const char* verdict_text(Verdict verdict);

std::string render_text(const Report& report, const std::vector<Goal>& goals);
std::string render_html(const Report& report, const std::vector<Goal>& goals);

/// Text made safe for HTML element content and attribute values.
std::string html_escape(const std::string& text);

}  // namespace ctxpp_load
