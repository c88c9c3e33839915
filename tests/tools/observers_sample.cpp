// Writes what the ready-made observers produce for every event kind, once with
// every field set and once with every field empty, so that a script can check it
// against docs/observability.schema.json (tests/tools/check_observability.py).
//   observers_sample           JSON lines on stdout
//   observers_sample --trace   the trace export of the same events on stdout
#include "ctxpp/observers.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string_view>
#include <system_error>

#include "ctxpp/errc.hpp"

namespace {

constexpr std::array kinds{
    ctxpp::EventKind::created,          ctxpp::EventKind::canceled,
    ctxpp::EventKind::propagated,       ctxpp::EventKind::observed,
    ctxpp::EventKind::component_signal, ctxpp::EventKind::component_cleanup,
    ctxpp::EventKind::cleanup_report,   ctxpp::EventKind::blocking_abandoned,
    ctxpp::EventKind::lease_lingering,  ctxpp::EventKind::finding,
};

void feed(ctxpp::Observer& observer) {
  using namespace std::chrono_literals;
  ctxpp::TraceContext trace;
  for (std::size_t i = 0; i < trace.trace_id.size(); ++i)
    trace.trace_id[i] = static_cast<std::uint8_t>(0xA0 + i);
  for (std::size_t i = 0; i < trace.parent_id.size(); ++i)
    trace.parent_id[i] = static_cast<std::uint8_t>(0x10 + i);
  trace.flags = 1;
  const auto start = ctxpp::event_epoch() + 5ms;
  std::uint64_t id = 1;
  for (const ctxpp::EventKind kind : kinds) {
    ctxpp::Event full;
    full.kind = kind;
    full.time = start + std::chrono::microseconds(100 * id);
    full.context_id = id + 1;
    full.parent_id = id;
    full.origin_id = 1;
    full.name = "request \"quoted\" \\ tab\t caf\xC3\xA9 \xFF";
    full.component = "db.pool";
    full.error = ctxpp::errc::canceled;
    full.cause = std::make_error_code(std::errc::connection_reset);
    full.where = ctxpp::SourceLocation::current();
    full.other_where = ctxpp::SourceLocation::current();
    full.delay = 1234567ns;
    full.thread = 0xFFFF'FFFF'FFFF'FFFFULL;
    full.detail = "line one\nline two";
    full.trace = &trace;
    observer.on_event(full);

    ctxpp::Event empty;
    empty.kind = kind;
    observer.on_event(empty);
    ++id;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool trace = argc > 1 && std::string_view(argv[1]) == "--trace";
  if (trace) {
    ctxpp::TraceEventObserver observer;
    feed(observer);
    std::cout << observer.to_json();
  } else {
    ctxpp::JsonLinesObserver observer(std::cout);
    feed(observer);
    if (observer.dropped() != 0) {
      std::fprintf(stderr, "%zu events dropped\n", observer.dropped());
      return 1;
    }
  }
  return std::cout.good() ? 0 : 1;
}
