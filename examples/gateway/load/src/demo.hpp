// demo.hpp — the whole demonstration: servers up, correct and broken runs, the RSS
// check, servers down, and the report in three forms.
#pragma once

#include <cstdint>
#include <string>

#include "load_run.hpp"

namespace ctxpp_load {

struct DemoConfig {
  std::string gateway_binary;
  std::string upstream_binary;
  std::string out_dir;
  std::uint64_t requests = 15000;
  std::uint64_t concurrency = 32;
  std::uint64_t seed = 1;
  double duration_limit_s = 20;
  std::uint64_t rss_requests_small = 10000;
  std::uint64_t rss_requests_large = 100000;
  double rss_small_limit_s = 12;
  double rss_large_limit_s = 40;
  bool skip_rss = false;
  bool grpc = false;
  bool quick = false;
  /// Multiplies the time goals (drain, cancel-to-cleanup p99): for builds that are slow
  /// on purpose (sanitizers, debug), never for the figures a report is judged by.
  double time_goal_scale = 1;
  Mix mix;
};

/// Sets --quick's sizes (a ~10 s run for tests); flags given explicitly override them.
void apply_quick_defaults(DemoConfig& config);

/// Returns the process exit code: 0 all goals pass, 1 a goal failed, 2 setup error.
/// Blocking: the runs' time limits plus server start and stop (20 s and 5 s at most each).
[[nodiscard]] int run_demo(const DemoConfig& config);

/// Writes DIR/report.txt, DIR/report.html and DIR/report.json; prints the text to stdout.
/// Errors: false and `error` when a file cannot be written.
[[nodiscard]] bool write_report(const Report& report, const std::string& out_dir, bool print,
                                std::string& error);

}  // namespace ctxpp_load
