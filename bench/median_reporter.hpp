// bench/median_reporter.hpp — the reporter shared by the suites that carry their own
// std baselines (group_bench.cpp, pool_bench.cpp): it keeps Google Benchmark's console
// table and remembers each benchmark's median over repetitions (time and counters), so
// that main() can print one row per pair, ctxpp beside its baseline, with the ratio
// baseline / ctxpp (above 1 means ctxpp is faster; every figure is lower-is-better).
// Benchmarks are keyed by the name given to ->Name() or RegisterBenchmark, without the
// "/repeats:N/threads:N" suffixes. Only "median" aggregates are kept: register each
// benchmark with ->Repetitions(n), n >= 2.
#pragma once

#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace ctxpp_bench {

class MedianReporter : public benchmark::ConsoleReporter {
 public:
  MedianReporter() : ConsoleReporter(OO_Tabular) {}  // no colour codes: the output is parsed

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median") {
        const std::string& name = run.run_name.function_name;
        medians[name] = run.GetAdjustedRealTime();
        for (const auto& [counter, value] : run.counters) counter_medians[name][counter] = value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  /// The median time per iteration, in the benchmark's time unit (ns unless set).
  std::optional<double> median(const std::string& name) const {
    const auto it = medians.find(name);
    if (it == medians.end()) return std::nullopt;
    return it->second;
  }

  /// The median of a user counter over repetitions.
  std::optional<double> counter(const std::string& name, const std::string& counter) const {
    const auto it = counter_medians.find(name);
    if (it == counter_medians.end()) return std::nullopt;
    const auto found = it->second.find(counter);
    if (found == it->second.end()) return std::nullopt;
    return found->second;
  }

  std::map<std::string, double> medians;
  std::map<std::string, std::map<std::string, double>> counter_medians;
};

/// Prints the head of the ratio table.
inline void print_ratio_header() {
  std::printf(
      "\n| ctxpp              | baseline         |  ctxpp (ns)  | baseline (ns) | ratio | per\n");
  std::printf("|---|---|---|---|---|---|\n");
}

/// Prints one row of the ratio table; nothing when either figure is missing.
inline void print_ratio_row(const char* ours, const char* baseline, std::optional<double> a,
                            std::optional<double> b, const char* what) {
  if (!a || !b) return;
  std::printf("| %-18s | %-16s | %12.0f | %12.0f | %6.2f | %s\n", ours, baseline, *a, *b, *b / *a,
              what);
}

/// The row of two benchmarks' median times.
inline void print_ratio_row(const MedianReporter& reporter, const char* ours, const char* baseline,
                            const char* what) {
  print_ratio_row(ours, baseline, reporter.median(ours), reporter.median(baseline), what);
}

}  // namespace ctxpp_bench
