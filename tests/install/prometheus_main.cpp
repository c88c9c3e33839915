// Consumer of an installed ctxpp::prometheus: counts a cancellation and serialises
// the registry as a scrape would.
#include <ctxpp/errc.hpp>
#include <ctxpp/observe.hpp>
#include <ctxpp/prometheus/observer.hpp>

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <cstdio>
#include <memory>
#include <string>

int main() {
  auto registry = std::make_shared<::prometheus::Registry>();
  ctxpp::prometheus::MetricsObserver metrics(registry);
  ctxpp::Event event;
  event.kind = ctxpp::EventKind::canceled;
  event.error = ctxpp::errc::canceled;
  event.cause = ctxpp::errc::canceled;
  event.component = "consumer";
  metrics.on_event(event);
  const std::string text = ::prometheus::TextSerializer().Serialize(metrics.Collect());
  if (text.find("ctxpp_cancellations_total{cause=\"canceled\",component=\"consumer\"} 1") ==
      std::string::npos) {
    std::fputs(text.c_str(), stderr);
    return 1;
  }
  std::puts("ctxpp::prometheus consumer ok");
  return 0;
}
