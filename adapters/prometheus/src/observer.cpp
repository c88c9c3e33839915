// MetricsObserver: ctxpp events counted into prometheus-cpp families. The families
// and their series live in the user's registry; this keeps only pointers to the
// series it made, found by label values under one mutex so that the cardinality
// bounds are checked and enforced in the same step.
#include "ctxpp/prometheus/observer.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include "ctxpp/blocking.hpp"
#include "ctxpp/errc.hpp"

namespace ctxpp::prometheus {
namespace {

double seconds(clock::duration d) noexcept { return std::chrono::duration<double>(d).count(); }

std::string_view component_of(const Event& event) noexcept {
  return event.component.empty() ? event.name : event.component;
}

}  // namespace

const std::vector<double>& propagation_buckets() {
  static const std::vector<double> buckets{
      1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3,
      2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,  0.2,  0.5,  1.0,
  };
  return buckets;
}

const std::vector<double>& cleanup_buckets() {
  static const std::vector<double> buckets{
      1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2,
      0.1,  0.2,  0.5,  1.0,  2.0,  5.0,  10.0, 20.0, 30.0,
  };
  return buckets;
}

std::string cause_label(const std::error_code& cause) {
  if (!cause) return {};
  if (cause.category() == context_category()) {
    if (cause == errc::canceled) return "canceled";
    if (cause == errc::deadline_exceeded) return "deadline_exceeded";
  }
  return std::string(cause.category().name()) + ":" + std::to_string(cause.value());
}

struct MetricsObserver::Impl {
  std::shared_ptr<::prometheus::Registry> registry;
  MetricsOptions options;
  ::prometheus::Family<::prometheus::Counter>* cancellations = nullptr;
  ::prometheus::Histogram* propagation = nullptr;
  ::prometheus::Family<::prometheus::Histogram>* cleanup = nullptr;
  ::prometheus::Gauge* contexts_live = nullptr;
  ::prometheus::Gauge* abandoned_calls = nullptr;
  // Made up front, one per kind: the kinds are few and fixed, and a series that
  // exists from the start reads as 0 rather than as absent.
  std::array<::prometheus::Counter*, event_kind_count> events{};

  std::mutex mutex;  // guards the maps and sets below
  std::set<std::string, std::less<>> components;
  std::set<std::string, std::less<>> causes;
  std::map<std::pair<std::string, std::string>, ::prometheus::Counter*> cancellation_series;
  std::map<std::string, ::prometheus::Histogram*, std::less<>> cleanup_series;

  std::atomic<std::size_t> overflowed{0};
  std::atomic<std::size_t> failed{0};

  // The value itself if already admitted or if there is room; else "other".
  // Called with mutex held.
  std::string admit(std::set<std::string, std::less<>>& admitted, std::size_t bound,
                    std::string_view value) {
    if (admitted.find(value) != admitted.end()) return std::string(value);
    if (admitted.size() < bound) return *admitted.emplace(value).first;
    overflowed.fetch_add(1, std::memory_order_relaxed);
    return overflow_label;
  }

  ::prometheus::Counter& cancellation(std::string_view cause, std::string_view component) {
    const std::lock_guard lock(mutex);
    std::pair key{admit(causes, options.max_causes, cause),
                  admit(components, options.max_components, component)};
    auto it = cancellation_series.find(key);
    if (it == cancellation_series.end()) {
      auto& counter = cancellations->Add({{"cause", key.first}, {"component", key.second}});
      it = cancellation_series.emplace(std::move(key), &counter).first;
    }
    return *it->second;
  }

  ::prometheus::Histogram& cleanup_of(std::string_view component) {
    const std::lock_guard lock(mutex);
    std::string value = admit(components, options.max_components, component);
    auto it = cleanup_series.find(value);
    if (it == cleanup_series.end()) {
      auto& histogram = cleanup->Add({{"component", value}}, cleanup_buckets());
      it = cleanup_series.emplace(std::move(value), &histogram).first;
    }
    return *it->second;
  }
};

MetricsObserver::MetricsObserver(std::shared_ptr<::prometheus::Registry> registry,
                                 MetricsOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (!registry) throw std::invalid_argument("ctxpp::prometheus::MetricsObserver: null registry");
  Impl& m = *impl_;
  m.registry = std::move(registry);
  m.options = options;
  ::prometheus::Registry& r = *m.registry;
  m.cancellations = &::prometheus::BuildCounter()
                         .Name("ctxpp_cancellations_total")
                         .Help(
                             "Contexts that ended by themselves (cancel, deadline, stop), by "
                             "cause and component")
                         .Register(r);
  m.propagation = &::prometheus::BuildHistogram()
                       .Name("ctxpp_propagation_seconds")
                       .Help(
                           "Time from a cancellation to each descendant, party and component "
                           "seeing it")
                       .Register(r)
                       .Add({}, propagation_buckets());
  m.cleanup = &::prometheus::BuildHistogram()
                   .Name("ctxpp_cleanup_seconds")
                   .Help(
                       "Time from a component seeing its context end to its cleanup being "
                       "done, by component")
                   .Register(r);
  m.contexts_live = &::prometheus::BuildGauge()
                         .Name("ctxpp_contexts_live")
                         .Help("Tracked contexts alive now")
                         .Register(r)
                         .Add({});
  m.abandoned_calls = &::prometheus::BuildGauge()
                           .Name("ctxpp_abandoned_calls")
                           .Help("Blocking calls given up on by call_blocking and still running")
                           .Register(r)
                           .Add({});
  auto& events = ::prometheus::BuildCounter()
                     .Name("ctxpp_events_total")
                     .Help("ctxpp observation events, by kind")
                     .Register(r);
  for (std::size_t k = 0; k < event_kind_count; ++k) {
    m.events[k] =
        &events.Add({{"event", std::string(ctxpp::to_string(static_cast<EventKind>(k)))}});
  }
  refresh();
}

MetricsObserver::~MetricsObserver() = default;

void MetricsObserver::on_event(const Event& event) noexcept {
  Impl& m = *impl_;
  try {
    const auto k = static_cast<std::size_t>(event.kind);
    if (k < event_kind_count) m.events[k]->Increment();
    switch (event.kind) {
      case EventKind::canceled:
        m.cancellation(cause_label(event.cause ? event.cause : event.error), component_of(event))
            .Increment();
        break;
      case EventKind::propagated:
      case EventKind::observed:
      case EventKind::component_signal:
        m.propagation->Observe(seconds(event.delay));
        break;
      case EventKind::component_cleanup:
        m.cleanup_of(component_of(event)).Observe(seconds(event.delay));
        break;
      default:
        break;
    }
  } catch (...) {
    m.failed.fetch_add(1, std::memory_order_relaxed);
  }
  refresh();
}

void MetricsObserver::refresh() const noexcept {
  impl_->contexts_live->Set(static_cast<double>(live_tracked_contexts()));
  impl_->abandoned_calls->Set(static_cast<double>(abandoned_call_count()));
}

std::vector<::prometheus::MetricFamily> MetricsObserver::Collect() const {
  refresh();
  return impl_->registry->Collect();
}

std::size_t MetricsObserver::overflowed() const noexcept {
  return impl_->overflowed.load(std::memory_order_relaxed);
}

std::size_t MetricsObserver::failed() const noexcept {
  return impl_->failed.load(std::memory_order_relaxed);
}

}  // namespace ctxpp::prometheus
