// ctxpp/prometheus/observer.hpp — ctxpp's events as Prometheus metrics
// (prometheus-cpp core): how often contexts are cancelled and why, how long
// cancellation takes to reach each party, how long each component takes to clean
// up, and how many contexts and abandoned blocking calls are alive.
// Metrics (names fixed; docs/adapters/prometheus.md):
//   ctxpp_cancellations_total{cause,component}  counter
//   ctxpp_propagation_seconds                   histogram, 1 µs .. 1 s
//   ctxpp_cleanup_seconds{component}            histogram, 100 µs .. 30 s
//   ctxpp_contexts_live                         gauge
//   ctxpp_abandoned_calls                       gauge
//   ctxpp_events_total{event}                   counter, one series per EventKind
// Example (no HTTP server needed: serve the text from your own endpoint):
//   auto registry = std::make_shared<::prometheus::Registry>();
//   auto metrics = std::make_shared<ctxpp::prometheus::MetricsObserver>(registry);
//   auto registration = ctxpp::add_observer(metrics);
//   ...
//   std::string body = ::prometheus::TextSerializer().Serialize(metrics->Collect());
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include "ctxpp/observe.hpp"

namespace ctxpp::prometheus {

/// Bounds on label cardinality: a label value first seen when the bound is reached
/// is replaced by "other", so a bug that names contexts after user input cannot
/// grow the registry without end. Values already admitted keep their own series.
struct MetricsOptions {
  /// Distinct component label values (shared by ctxpp_cancellations_total and
  /// ctxpp_cleanup_seconds).
  std::size_t max_components = 64;
  /// Distinct cause label values of ctxpp_cancellations_total.
  std::size_t max_causes = 16;
};

/// The label value written for "other" when a bound is reached.
inline constexpr const char* overflow_label = "other";

/// Upper bounds (seconds) of ctxpp_propagation_seconds: 1 µs to 1 s, 1-2-5 per decade.
const std::vector<double>& propagation_buckets();
/// Upper bounds (seconds) of ctxpp_cleanup_seconds: 100 µs to 30 s, 1-2-5 per decade.
const std::vector<double>& cleanup_buckets();

/// The cause label of a cancellation: "canceled" or "deadline_exceeded" for ctxpp's
/// own category, "<category name>:<value>" for any other error, "" for none.
/// Thread safety: pure. Errors: std::bad_alloc.
std::string cause_label(const std::error_code& cause);

/// Turns events into the metrics above, registered in registry at construction.
/// Scrape with Collect(): it brings the two gauges up to date and returns every
/// family of the registry (so register this object, not the registry, with a
/// prometheus::Exposer; or serialise Collect() with prometheus::TextSerializer).
/// Label rules: cause = cause_label(event.cause), or of event.error when the cause is
/// empty; component = event.component, or event.name when that is empty.
/// Thread safety: any thread; on_event and Collect may run concurrently.
/// Cost per event: one mutex section with a map lookup (and a string built for the
/// key), then a counter increment or a histogram observation.
/// Ownership: shares registry. Errors: on_event never throws (a failed update is
/// counted in failed()); the constructor throws what prometheus-cpp throws when a
/// name is taken by a metric of another type, and std::invalid_argument when
/// registry is null.
class MetricsObserver final : public Observer, public ::prometheus::Collectable {
 public:
  explicit MetricsObserver(std::shared_ptr<::prometheus::Registry> registry,
                           MetricsOptions options = {});
  ~MetricsObserver() override;
  MetricsObserver(const MetricsObserver&) = delete;
  MetricsObserver& operator=(const MetricsObserver&) = delete;

  void on_event(const Event& event) noexcept override;

  /// Sets ctxpp_contexts_live (live_tracked_contexts()) and ctxpp_abandoned_calls
  /// (abandoned_call_count()) now. Collect() calls it; every event does too.
  /// Cost: two loads and two atomic stores.
  void refresh() const noexcept;

  /// refresh(), then everything the registry holds. Errors: std::bad_alloc.
  std::vector<::prometheus::MetricFamily> Collect() const override;

  /// Events whose label value went to "other" because of a bound.
  std::size_t overflowed() const noexcept;
  /// Events that could not be counted (allocation failure).
  std::size_t failed() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ctxpp::prometheus
