// ctxpp/observers.hpp — ready-made observers (ctxpp/observe.hpp): JSON lines and a
// Chrome trace-event export (opens in Perfetto and chrome://tracing).
// Example:
//   std::ofstream log("ctxpp-events.jsonl");
//   auto json = std::make_shared<ctxpp::JsonLinesObserver>(log);
//   auto trace = std::make_shared<ctxpp::TraceEventObserver>();
//   auto r1 = ctxpp::add_observer(json), r2 = ctxpp::add_observer(trace);
//   ... serve ...
//   std::ofstream("trace.json") << trace->to_json();
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ctxpp/observe.hpp"

namespace ctxpp {

/// Writes one JSON object per event, one per line, flushed per line. The schema is
/// docs/observability.md ("JSON lines") and docs/observability.schema.json.
/// Thread safety: any thread (lines never interleave). Blocking: writes under a
/// mutex. Ownership: out must outlive the observer. Errors: a failed stream stays
/// failed; events are then dropped and counted in dropped().
class JsonLinesObserver final : public Observer {
 public:
  explicit JsonLinesObserver(std::ostream& out) noexcept;
  void on_event(const Event& event) noexcept override;
  std::size_t written() const noexcept;
  std::size_t dropped() const noexcept;

 private:
  mutable std::mutex mutex_;
  std::ostream* out_;
  std::size_t written_ = 0;
  std::size_t dropped_ = 0;
};

/// The JSON object JsonLinesObserver writes for event (no newline). Every field is
/// always present (null when empty); strings are escaped, and bytes that are not
/// valid UTF-8 become U+FFFD, so every line parses as JSON.
/// Thread safety: pure. Errors: std::bad_alloc, or what the error categories'
/// message() throws.
std::string to_json(const Event& event);

/// The instant "ts_us" (JSON lines) and "ts" (trace export) count from: fixed once
/// per process, when the library is initialised, so that both exports of one run
/// share one time line. Thread safety: any thread. Cost: a load.
clock::time_point event_epoch() noexcept;

/// Keeps events (up to a bound) and writes them in Chrome trace-event format:
/// each origin (a context that ended by itself) is a track; its cancellation is an
/// instant, each descendant's and each component's propagation delay a span from the
/// cancel to the moment it saw the end, each component's cleanup a span from the
/// signal to "cleanup done". Spans carry the W3C trace-id and span id of the
/// context, so traces of several services can be joined by trace-id.
/// `created` events are not kept (the live view shows the tree); every other kind is.
/// Thread safety: any thread. Cost: one vector append under a mutex per event, plus
/// copies of the event's strings. Errors: beyond max_events, events are dropped and
/// counted (as are events whose copy fails to allocate).
class TraceEventObserver final : public Observer {
 public:
  explicit TraceEventObserver(std::size_t max_events = 1'000'000,
                              std::string process_name = "ctxpp");
  ~TraceEventObserver() override;
  void on_event(const Event& event) noexcept override;
  /// {"traceEvents":[...],"displayTimeUnit":"ms"}, events sorted by time. Copies
  /// the kept events under the mutex and formats them outside it, so on_event is
  /// not held up for the formatting. Errors: std::bad_alloc.
  std::string to_json() const;
  /// Events kept now (at most max_events).
  std::size_t size() const noexcept;
  /// Events refused since construction or the last clear().
  std::size_t dropped() const noexcept;
  /// Forgets the kept events and resets dropped().
  void clear() noexcept;

 private:
  struct Stored;
  mutable std::mutex mutex_;
  std::size_t max_events_;
  std::string process_name_;
  std::vector<Stored> events_;
  std::size_t dropped_ = 0;
};

}  // namespace ctxpp
