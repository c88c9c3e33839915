// Tests of ctxpp/prometheus/observer.hpp: synthetic events fed to on_event, the
// registry serialised with prometheus::TextSerializer, and the exposition text
// checked for the exact metric names, labels, counts and buckets.
#include "ctxpp/prometheus/observer.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <prometheus/metric_type.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "ctxpp/blocking.hpp"
#include "ctxpp/errc.hpp"
#include "ctxpp/observe.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::Event;
using ctxpp::EventKind;
using ctxpp::prometheus::MetricsObserver;

Event event(EventKind kind, std::string_view name = {}, std::string_view component = {},
            std::chrono::nanoseconds delay = {}) {
  Event e;
  e.kind = kind;
  e.time = ctxpp::clock::now();
  e.context_id = 1;
  e.name = name;
  e.component = component;
  e.delay = delay;
  return e;
}

Event canceled(std::error_code cause, std::string_view name, std::string_view component = {}) {
  Event e = event(EventKind::canceled, name, component);
  e.error = cause == ctxpp::errc::deadline_exceeded ? cause : ctxpp::errc::canceled;
  e.cause = cause;
  return e;
}

std::string scrape(const MetricsObserver& observer) {
  return ::prometheus::TextSerializer().Serialize(observer.Collect());
}

// The value of the sample written exactly as `series` ("name{labels}"), or "" when
// the text has no such sample.
std::string sample(const std::string& text, std::string_view series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return line.substr(series.size() + 1);
    }
  }
  return {};
}

class Metrics : public ::testing::Test {
 protected:
  std::shared_ptr<::prometheus::Registry> registry = std::make_shared<::prometheus::Registry>();
  MetricsObserver observer{registry};
};

TEST_F(Metrics, RegistersExactlyTheDocumentedFamilies) {
  // prometheus-cpp leaves out a family with no series yet: the labelled ones appear
  // with their first event.
  std::set<std::string> before;
  for (const auto& family : observer.Collect()) before.insert(family.name);
  EXPECT_EQ(before, (std::set<std::string>{"ctxpp_propagation_seconds", "ctxpp_contexts_live",
                                           "ctxpp_abandoned_calls", "ctxpp_events_total"}));
  observer.on_event(canceled(ctxpp::errc::canceled, "request"));
  observer.on_event(event(EventKind::component_cleanup, "request", "db", 1ms));

  std::map<std::string, ::prometheus::MetricType> families;
  for (const auto& family : registry->Collect()) families[family.name] = family.type;
  const std::map<std::string, ::prometheus::MetricType> expected{
      {"ctxpp_cancellations_total", ::prometheus::MetricType::Counter},
      {"ctxpp_propagation_seconds", ::prometheus::MetricType::Histogram},
      {"ctxpp_cleanup_seconds", ::prometheus::MetricType::Histogram},
      {"ctxpp_contexts_live", ::prometheus::MetricType::Gauge},
      {"ctxpp_abandoned_calls", ::prometheus::MetricType::Gauge},
      {"ctxpp_events_total", ::prometheus::MetricType::Counter},
  };
  EXPECT_EQ(families, expected);
  const std::string text = scrape(observer);
  EXPECT_NE(text.find("# TYPE ctxpp_cancellations_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE ctxpp_propagation_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("# TYPE ctxpp_cleanup_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("# TYPE ctxpp_contexts_live gauge"), std::string::npos);
  EXPECT_NE(text.find("# TYPE ctxpp_abandoned_calls gauge"), std::string::npos);
  EXPECT_EQ(sample(text, "ctxpp_propagation_seconds_count"), "0");
  for (const char* kind :
       {"created", "canceled", "propagated", "observed", "component_signal", "component_cleanup",
        "cleanup_report", "blocking_abandoned", "lease_lingering", "finding"}) {
    EXPECT_FALSE(sample(text, std::string("ctxpp_events_total{event=\"") + kind + "\"}").empty())
        << kind << " is counted from the start";
  }
}

TEST_F(Metrics, CountsCancellationsByCauseAndComponent) {
  observer.on_event(canceled(ctxpp::errc::canceled, "request", "db"));
  observer.on_event(canceled(ctxpp::errc::canceled, "request", "db"));
  observer.on_event(canceled(ctxpp::errc::deadline_exceeded, "request"));  // name stands in
  observer.on_event(canceled(std::make_error_code(std::errc::connection_reset), "", "http"));
  Event no_cause = canceled({}, "job");  // cause() empty: err() gives the label
  observer.on_event(no_cause);
  observer.on_event(canceled(ctxpp::errc::canceled, ""));
  observer.on_event(event(EventKind::propagated, "request", "db", 1us));  // not a cancellation

  const std::string text = scrape(observer);
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="canceled",component="db"})"), "2")
      << text;
  EXPECT_EQ(
      sample(text, R"(ctxpp_cancellations_total{cause="deadline_exceeded",component="request"})"),
      "1");
  const std::string reset =
      "generic:" + std::to_string(static_cast<int>(std::errc::connection_reset));
  EXPECT_EQ(sample(text, "ctxpp_cancellations_total{cause=\"" + reset + "\",component=\"http\"}"),
            "1");
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="canceled",component="job"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="canceled",component=""})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_events_total{event="canceled"})"), "6");
  EXPECT_EQ(sample(text, R"(ctxpp_events_total{event="propagated"})"), "1");
}

TEST_F(Metrics, PropagationDelaysFillTheHistogram) {
  observer.on_event(event(EventKind::propagated, "r", "", 1us));  // on a bound: le is inclusive
  observer.on_event(event(EventKind::observed, "r", "", 3us));
  observer.on_event(event(EventKind::component_signal, "r", "db", 700ms));
  observer.on_event(event(EventKind::propagated, "r", "", 2s));            // beyond the last bound
  observer.on_event(event(EventKind::component_cleanup, "r", "db", 1ms));  // not propagation
  const std::string text = scrape(observer);
  EXPECT_EQ(sample(text, "ctxpp_propagation_seconds_count"), "4") << text;
  EXPECT_EQ(sample(text, R"(ctxpp_propagation_seconds_bucket{le="1e-06"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_propagation_seconds_bucket{le="2e-06"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_propagation_seconds_bucket{le="5e-06"})"), "2");
  EXPECT_EQ(sample(text, R"(ctxpp_propagation_seconds_bucket{le="0.5"})"), "2");
  EXPECT_EQ(sample(text, R"(ctxpp_propagation_seconds_bucket{le="1"})"), "3");
  EXPECT_EQ(sample(text, R"(ctxpp_propagation_seconds_bucket{le="+Inf"})"), "4");
  EXPECT_NEAR(std::stod(sample(text, "ctxpp_propagation_seconds_sum")), 2.700004, 1e-9);
}

TEST_F(Metrics, CleanupDurationsByComponent) {
  observer.on_event(event(EventKind::component_cleanup, "request", "db", 100us));
  observer.on_event(event(EventKind::component_cleanup, "request", "db", 40s));
  observer.on_event(event(EventKind::component_cleanup, "request", "", 3ms));
  const std::string text = scrape(observer);
  EXPECT_EQ(sample(text, R"(ctxpp_cleanup_seconds_count{component="db"})"), "2") << text;
  EXPECT_EQ(sample(text, R"(ctxpp_cleanup_seconds_bucket{component="db",le="0.0001"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_cleanup_seconds_bucket{component="db",le="30"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_cleanup_seconds_bucket{component="db",le="+Inf"})"), "2");
  EXPECT_EQ(sample(text, R"(ctxpp_cleanup_seconds_count{component="request"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_cleanup_seconds_bucket{component="request",le="0.002"})"), "0");
  EXPECT_EQ(sample(text, R"(ctxpp_cleanup_seconds_bucket{component="request",le="0.005"})"), "1");
}

TEST(MetricsBuckets, SpanTheDocumentedRanges) {
  const auto& propagation = ctxpp::prometheus::propagation_buckets();
  ASSERT_FALSE(propagation.empty());
  EXPECT_EQ(propagation.front(), 1e-6);
  EXPECT_EQ(propagation.back(), 1.0);
  const auto& cleanup = ctxpp::prometheus::cleanup_buckets();
  ASSERT_FALSE(cleanup.empty());
  EXPECT_EQ(cleanup.front(), 1e-4);
  EXPECT_EQ(cleanup.back(), 30.0);
  for (const auto* buckets : {&propagation, &cleanup}) {
    for (std::size_t i = 1; i < buckets->size(); ++i) {
      EXPECT_GT((*buckets)[i], (*buckets)[i - 1]);
      EXPECT_LE((*buckets)[i] / (*buckets)[i - 1], 2.5 + 1e-9) << "exponential, at most 2.5x apart";
    }
  }
}

TEST_F(Metrics, GaugesAreReadAtScrapeTime) {
  const std::size_t before = ctxpp::live_tracked_contexts();
  std::string text = scrape(observer);
  EXPECT_EQ(sample(text, "ctxpp_contexts_live"), std::to_string(before));
  EXPECT_EQ(sample(text, "ctxpp_abandoned_calls"), std::to_string(ctxpp::abandoned_call_count()));
  {
    // Named contexts are always tracked; no event reaches this observer (it is not
    // added), so only the scrape itself can bring the gauge up to date.
    const ctxpp::Context a = ctxpp::with_name(ctxpp::background(), "a");
    const ctxpp::Context b = ctxpp::with_name(a, "b");
    text = scrape(observer);
    EXPECT_EQ(sample(text, "ctxpp_contexts_live"), std::to_string(before + 2)) << text;
  }
  text = scrape(observer);
  EXPECT_EQ(sample(text, "ctxpp_contexts_live"), std::to_string(before));
}

// A real request tree, cancelled, through add_observer.
TEST(MetricsEndToEnd, ACancelledRequestIsCountedAndTimed) {
  auto registry = std::make_shared<::prometheus::Registry>();
  auto metrics = std::make_shared<MetricsObserver>(registry);
  {
    ctxpp::ObserverRegistration registration = ctxpp::add_observer(metrics);
    auto [root, cancel] = ctxpp::with_cancel(ctxpp::background());
    const ctxpp::Context request = ctxpp::with_name(root, "request");
    auto [child, child_cancel] = ctxpp::with_cancel(request);
    {
      ctxpp::ComponentScope scope(child, "db");
      cancel();
    }
  }
  const std::string text = scrape(*metrics);
  // The root has no name and no component: its component label is empty.
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="canceled",component=""})"), "1")
      << text;
  EXPECT_EQ(sample(text, R"(ctxpp_cleanup_seconds_count{component="db"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_events_total{event="component_signal"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_events_total{event="component_cleanup"})"), "1");
  const std::string propagated = sample(text, R"(ctxpp_events_total{event="propagated"})");
  const std::string observed = sample(text, R"(ctxpp_events_total{event="observed"})");
  ASSERT_FALSE(propagated.empty());
  EXPECT_GE(std::stoi(propagated), 2) << "the named context and the child";
  EXPECT_EQ(sample(text, "ctxpp_propagation_seconds_count"),
            std::to_string(std::stoi(propagated) + std::stoi(observed) + 1));
}

TEST(MetricsBounds, LabelValuesBeyondTheBoundBecomeOther) {
  auto registry = std::make_shared<::prometheus::Registry>();
  MetricsObserver observer(registry, {.max_components = 2, .max_causes = 1});
  observer.on_event(canceled(ctxpp::errc::canceled, "", "a"));
  observer.on_event(canceled(ctxpp::errc::canceled, "", "b"));
  observer.on_event(canceled(ctxpp::errc::canceled, "", "c"));           // third component
  observer.on_event(canceled(ctxpp::errc::deadline_exceeded, "", "a"));  // second cause
  observer.on_event(event(EventKind::component_cleanup, "", "d", 1ms));  // shares the bound
  observer.on_event(event(EventKind::component_cleanup, "", "b", 1ms));  // admitted already
  EXPECT_EQ(observer.overflowed(), 3U);
  const std::string text = scrape(observer);
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="canceled",component="a"})"), "1")
      << text;
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="canceled",component="b"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="canceled",component="other"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="other",component="a"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_cleanup_seconds_count{component="other"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_cleanup_seconds_count{component="b"})"), "1");
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="canceled",component="c"})"), "");
}

TEST(MetricsBounds, ManyThreadsCountEveryEvent) {
  auto registry = std::make_shared<::prometheus::Registry>();
  MetricsObserver observer(registry);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&observer, t] {
      const std::string component = "c" + std::to_string(t % 2);
      for (int i = 0; i < 1000; ++i) {
        observer.on_event(canceled(ctxpp::errc::canceled, "", component));
        observer.on_event(event(EventKind::propagated, "", "", 10us));
        if (i % 100 == 0) (void)observer.Collect();  // scrapes race with events
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const std::string text = scrape(observer);
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="canceled",component="c0"})"), "2000");
  EXPECT_EQ(sample(text, R"(ctxpp_cancellations_total{cause="canceled",component="c1"})"), "2000");
  EXPECT_EQ(sample(text, "ctxpp_propagation_seconds_count"), "4000");
  EXPECT_EQ(observer.failed(), 0U);
}

TEST(MetricsObserverConstruction, RejectsANullRegistry) {
  EXPECT_THROW(MetricsObserver(nullptr), std::invalid_argument);
}

TEST(MetricsObserverConstruction, TwoObserversShareOneRegistry) {
  // prometheus::Registry merges families of the same name by default.
  auto registry = std::make_shared<::prometheus::Registry>();
  MetricsObserver first(registry);
  MetricsObserver second(registry);
  first.on_event(canceled(ctxpp::errc::canceled, "", "x"));
  second.on_event(canceled(ctxpp::errc::canceled, "", "x"));
  EXPECT_EQ(sample(scrape(first), R"(ctxpp_cancellations_total{cause="canceled",component="x"})"),
            "2");
}

TEST(CauseLabel, NamesCtxppCausesAndQualifiesOthers) {
  using ctxpp::prometheus::cause_label;
  EXPECT_EQ(cause_label(ctxpp::errc::canceled), "canceled");
  EXPECT_EQ(cause_label(ctxpp::errc::deadline_exceeded), "deadline_exceeded");
  EXPECT_EQ(cause_label(std::make_error_code(std::errc::timed_out)),
            "generic:" + std::to_string(static_cast<int>(std::errc::timed_out)));
  EXPECT_EQ(cause_label(std::error_code(5, std::system_category())), "system:5");
  EXPECT_EQ(cause_label({}), "");
}

}  // namespace
