// The ready-made observers: JSON lines and the Chrome trace-event export.
// Both are written by hand (the core depends on the standard library only); every
// string goes through one escaping routine that also repairs invalid UTF-8, since
// names, error messages and file paths come from user code and the C library.
#include "ctxpp/observers.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "observe_internal.hpp"

#if __has_include(<unistd.h>)
#include <unistd.h>
#define CTXPP_OBSERVERS_HAVE_GETPID 1
#endif

namespace ctxpp {
namespace {

// Fixed during static initialisation, so that the epoch is the start of the process
// rather than the first export; function-local so that use from another
// translation unit's static initialiser still sees it set.
const clock::time_point& epoch_storage() noexcept {
  static const clock::time_point epoch = clock::now();
  return epoch;
}
[[maybe_unused]] const clock::time_point& epoch_at_start = epoch_storage();

// Length of the well-formed UTF-8 sequence at the start of s (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or 0 if it is not one.
std::size_t utf8_sequence_length(std::string_view s) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto continuation = [&](std::size_t i) {
    return i < s.size() && (byte(i) & 0xC0U) == 0x80U;
  };
  const unsigned char lead = byte(0);
  if (lead >= 0xC2U && lead <= 0xDFU) return continuation(1) ? 2 : 0;
  if (lead >= 0xE0U && lead <= 0xEFU) {
    if (!continuation(1) || !continuation(2)) return 0;
    if (lead == 0xE0U && byte(1) < 0xA0U) return 0;  // overlong
    if (lead == 0xEDU && byte(1) > 0x9FU) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (lead >= 0xF0U && lead <= 0xF4U) {
    if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
    if (lead == 0xF0U && byte(1) < 0x90U) return 0;  // overlong
    if (lead == 0xF4U && byte(1) > 0x8FU) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

void append_string(std::string& out, std::string_view s) {
  static constexpr std::string_view hex = "0123456789abcdef";
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80U) {
      const std::size_t length = utf8_sequence_length(s.substr(i));
      if (length == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.substr(i, length));
        i += length;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20U || c == 0x7FU) {
          out += "\\u00";
          out += hex[c >> 4U];
          out += hex[c & 0x0FU];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

template <typename Integer>
void append_integer(std::string& out, Integer value) {
  std::array<char, 24> buffer{};
  const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  out.append(buffer.data(), result.ptr);
}

// Nanoseconds as microseconds with three decimals ("12.345"), exact and independent
// of the locale and of floating-point formatting.
void append_microseconds(std::string& out, std::chrono::nanoseconds ns) {
  const std::int64_t count = ns.count();
  // Unsigned, so that the most negative count has a magnitude too.
  std::uint64_t magnitude = static_cast<std::uint64_t>(count);
  if (count < 0) {
    out += '-';
    magnitude = 0 - magnitude;
  }
  append_integer(out, magnitude / 1000);
  out += '.';
  const auto fraction = static_cast<int>(magnitude % 1000);
  out += static_cast<char>('0' + fraction / 100);
  out += static_cast<char>('0' + fraction / 10 % 10);
  out += static_cast<char>('0' + fraction % 10);
}

std::chrono::nanoseconds since_epoch(clock::time_point time) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time - epoch_storage());
}

bool has_location(const SourceLocation& where) noexcept {
  const char* file = where.file_name();
  return (file != nullptr && *file != '\0') || where.line() != 0;
}

std::string_view c_string(const char* s) noexcept { return s == nullptr ? "" : s; }

void append_location(std::string& out, const SourceLocation& where) {
  if (!has_location(where)) {
    out += "null";
    return;
  }
  out += "{\"file\":";
  append_string(out, c_string(where.file_name()));
  out += ",\"line\":";
  append_integer(out, where.line());
  out += ",\"function\":";
  append_string(out, c_string(where.function_name()));
  out += '}';
}

void append_error(std::string& out, const std::error_code& ec) {
  if (!ec) {
    out += "null";
    return;
  }
  out += "{\"category\":";
  append_string(out, c_string(ec.category().name()));
  out += ",\"value\":";
  append_integer(out, ec.value());
  out += ",\"message\":";
  append_string(out, ec.message());
  out += '}';
}

template <std::size_t N>
bool all_zero(const std::array<std::uint8_t, N>& bytes) noexcept {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

template <std::size_t N>
std::string to_hex(const std::array<std::uint8_t, N>& bytes) {
  static constexpr std::string_view hex = "0123456789abcdef";
  std::string out;
  out.reserve(2 * N);
  for (const std::uint8_t b : bytes) {
    out += hex[b >> 4U];
    out += hex[b & 0x0FU];
  }
  return out;
}

// The W3C rules make an all-zero trace-id or span id invalid: such an identity is
// written as absent rather than as a joinable id.
std::optional<std::pair<std::string, std::string>> trace_ids(const TraceContext* trace) {
  if (trace == nullptr || all_zero(trace->trace_id) || all_zero(trace->parent_id)) {
    return std::nullopt;
  }
  return std::pair{to_hex(trace->trace_id), to_hex(trace->parent_id)};
}

std::string location_text(const SourceLocation& where) {
  std::string out(c_string(where.file_name()));
  out += ':';
  append_integer(out, where.line());
  return out;
}

// An Event whose views are copied: the event's own views die with on_event.
struct StoredEvent {
  EventKind kind = EventKind::created;
  clock::time_point time{};
  std::uint64_t context_id = 0;
  std::uint64_t parent_id = 0;
  std::uint64_t origin_id = 0;
  std::string name;
  std::string component;
  std::error_code error;
  std::error_code cause;
  SourceLocation where;
  SourceLocation other_where;
  clock::duration delay{};
  std::uint64_t thread = 0;
  std::string detail;
  std::optional<TraceContext> trace;
};

}  // namespace

clock::time_point event_epoch() noexcept { return epoch_storage(); }

std::string to_json(const Event& event) {
  std::string out;
  out.reserve(384);
  out += "{\"event\":";
  append_string(out, ctxpp::to_string(event.kind));
  out += ",\"ts_us\":";
  append_integer(out, since_epoch(event.time).count() / 1000);
  out += ",\"context\":";
  append_integer(out, event.context_id);
  out += ",\"parent\":";
  append_integer(out, event.parent_id);
  out += ",\"origin\":";
  append_integer(out, event.origin_id);
  out += ",\"name\":";
  append_string(out, event.name);
  out += ",\"component\":";
  append_string(out, event.component);
  out += ",\"error\":";
  append_error(out, event.error);
  out += ",\"cause\":";
  append_error(out, event.cause);
  out += ",\"where\":";
  append_location(out, event.where);
  out += ",\"other_where\":";
  append_location(out, event.other_where);
  out += ",\"delay_us\":";
  append_microseconds(out, std::chrono::duration_cast<std::chrono::nanoseconds>(event.delay));
  out += ",\"thread\":";
  append_integer(out, event.thread);
  out += ",\"detail\":";
  append_string(out, event.detail);
  const auto ids = trace_ids(event.trace);
  out += ",\"trace_id\":";
  if (ids) {
    append_string(out, ids->first);
  } else {
    out += "null";
  }
  out += ",\"span_id\":";
  if (ids) {
    append_string(out, ids->second);
  } else {
    out += "null";
  }
  out += '}';
  return out;
}

// ---------------------------------------------------------------------------------
// JsonLinesObserver

JsonLinesObserver::JsonLinesObserver(std::ostream& out) noexcept : out_(&out) {}

void JsonLinesObserver::on_event(const Event& event) noexcept {
  std::string line;
  try {
    line = to_json(event);
    line += '\n';
  } catch (...) {
    const std::lock_guard lock(mutex_);
    ++dropped_;
    return;
  }
  const std::lock_guard lock(mutex_);
  try {
    if (out_->good()) {
      out_->write(line.data(), static_cast<std::streamsize>(line.size()));
      out_->flush();
    }
  } catch (...) {
    // A stream with exceptions() set reports through the throw; its state is set too.
  }
  if (out_->good()) {
    ++written_;
  } else {
    ++dropped_;
  }
}

std::size_t JsonLinesObserver::written() const noexcept {
  const std::lock_guard lock(mutex_);
  return written_;
}

std::size_t JsonLinesObserver::dropped() const noexcept {
  const std::lock_guard lock(mutex_);
  return dropped_;
}

// ---------------------------------------------------------------------------------
// TraceEventObserver

// The private TraceEventObserver::Stored is this, so that the helpers below (which
// are not members) can read it.
struct TraceEventObserver::Stored : StoredEvent {};

namespace {

enum class Phase { instant, complete };

Phase phase_of(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::propagated:
    case EventKind::observed:
    case EventKind::component_signal:
    case EventKind::component_cleanup:
      return Phase::complete;
    default:
      return Phase::instant;
  }
}

// "<name>", or "#<id>" for a context without one.
std::string context_label(const StoredEvent& e) {
  if (!e.name.empty()) return e.name;
  if (e.context_id == 0) return "untracked";
  std::string out = "#";
  append_integer(out, e.context_id);
  return out;
}

std::string component_label(const StoredEvent& e) {
  return e.component.empty() ? context_label(e) : e.component;
}

std::string slice_name(const StoredEvent& e) {
  switch (e.kind) {
    case EventKind::canceled:
      return "cancel " + context_label(e);
    case EventKind::propagated:
      return "propagate " + context_label(e);
    case EventKind::observed:
      return "observe " + component_label(e);
    case EventKind::component_signal:
      return "signal " + component_label(e);
    case EventKind::component_cleanup:
      return "cleanup " + component_label(e);
    case EventKind::cleanup_report:
      return "cleanup report " + component_label(e);
    case EventKind::blocking_abandoned:
      return "abandoned " + component_label(e);
    case EventKind::lease_lingering:
      return "lingering lease " + component_label(e);
    case EventKind::finding:
      return "finding " + component_label(e);
    case EventKind::created:
      break;
  }
  return "created " + context_label(e);
}

void append_field(std::string& out, std::string_view key, std::string_view value) {
  out += ',';
  append_string(out, key);
  out += ':';
  append_string(out, value);
}

void append_uint_field(std::string& out, std::string_view key, std::uint64_t value) {
  out += ',';
  append_string(out, key);
  out += ':';
  append_integer(out, value);
}

// Only what is set: the trace file is meant for reading in a viewer.
void append_args(std::string& out, const StoredEvent& e) {
  out += "\"args\":{\"event\":";
  append_string(out, ctxpp::to_string(e.kind));
  append_uint_field(out, "context_id", e.context_id);
  append_uint_field(out, "parent_id", e.parent_id);
  append_uint_field(out, "origin_id", e.origin_id);
  if (!e.name.empty()) append_field(out, "name", e.name);
  if (!e.component.empty()) append_field(out, "component", e.component);
  if (e.error) append_field(out, "error", e.error.message());
  if (e.cause) append_field(out, "cause", e.cause.message());
  if (has_location(e.where)) append_field(out, "where", location_text(e.where));
  if (has_location(e.other_where)) append_field(out, "other_where", location_text(e.other_where));
  out += ",\"delay_us\":";
  append_microseconds(out, std::chrono::duration_cast<std::chrono::nanoseconds>(e.delay));
  append_uint_field(out, "thread", e.thread);
  if (!e.detail.empty()) append_field(out, "detail", e.detail);
  if (const auto ids = trace_ids(e.trace ? &*e.trace : nullptr)) {
    append_field(out, "trace_id", ids->first);
    append_field(out, "span_id", ids->second);
  }
  out += '}';
}

struct Slice {
  std::chrono::nanoseconds ts;
  std::chrono::nanoseconds dur;  // meaningful for complete events only
  const StoredEvent* event;
  std::uint64_t track;  // the origin's id, or the context's own when it has none
  std::uint64_t tid;    // track, or one of its extra lanes
};

// One track of an origin; open_ends holds the ends of the spans open on it at the
// current time, innermost last.
struct Lane {
  std::uint64_t tid;
  std::vector<std::chrono::nanoseconds> open_ends;
};

// Start time first; on a tie the longer span first, so that spans starting together
// (all the propagations of one cancel) nest as the legacy viewers expect.
bool slice_before(const Slice& a, const Slice& b) noexcept {
  if (a.ts != b.ts) return a.ts < b.ts;
  return a.dur > b.dur;
}

}  // namespace

TraceEventObserver::TraceEventObserver(std::size_t max_events, std::string process_name)
    : max_events_(max_events), process_name_(std::move(process_name)) {}

TraceEventObserver::~TraceEventObserver() = default;

void TraceEventObserver::on_event(const Event& event) noexcept {
  if (event.kind == EventKind::created) return;
  {
    const std::lock_guard lock(mutex_);
    if (events_.size() >= max_events_) {
      ++dropped_;
      return;
    }
  }
  try {
    StoredEvent stored{
        .kind = event.kind,
        .time = event.time,
        .context_id = event.context_id,
        .parent_id = event.parent_id,
        .origin_id = event.origin_id,
        .name = std::string(event.name),
        .component = std::string(event.component),
        .error = event.error,
        .cause = event.cause,
        .where = event.where,
        .other_where = event.other_where,
        .delay = event.delay,
        .thread = event.thread,
        .detail = std::string(event.detail),
        .trace = event.trace != nullptr ? std::optional(*event.trace) : std::nullopt};
    const std::lock_guard lock(mutex_);
    // Checked again: another thread may have filled the last place meanwhile.
    if (events_.size() >= max_events_) {
      ++dropped_;
      return;
    }
    events_.push_back(Stored{std::move(stored)});
  } catch (...) {
    const std::lock_guard lock(mutex_);
    ++dropped_;
  }
}

std::string TraceEventObserver::to_json() const {
  std::vector<Stored> events;
  {
    const std::lock_guard lock(mutex_);
    events = events_;
  }

  // An event without an origin about a context whose end has one (a component's
  // cleanup, reported after the cancellation finished) belongs to that origin's track.
  std::unordered_map<std::uint64_t, std::uint64_t> origin_of;
  for (const Stored& e : events) {
    if (e.origin_id != 0 && e.context_id != 0) origin_of.try_emplace(e.context_id, e.origin_id);
  }
  const auto track_of = [&](const StoredEvent& e) {
    if (e.origin_id != 0) return e.origin_id;
    const auto it = origin_of.find(e.context_id);
    return it != origin_of.end() ? it->second : e.context_id;
  };

  std::vector<Slice> slices;
  slices.reserve(events.size());
  // Track names: the origin's own cancel names its track; otherwise the first event
  // about the track's context, otherwise the bare id.
  std::map<std::uint64_t, std::string> track_names;
  for (const Stored& e : events) {
    const auto ts = since_epoch(e.time);
    const auto delay = std::max(std::chrono::duration_cast<std::chrono::nanoseconds>(e.delay),
                                std::chrono::nanoseconds{0});
    const std::uint64_t track = track_of(e);
    if (phase_of(e.kind) == Phase::complete) {
      slices.push_back({ts - delay, delay, &e, track, 0});
    } else {
      slices.push_back({ts, std::chrono::nanoseconds{0}, &e, track, 0});
    }
    if (e.context_id != track) {
      track_names.try_emplace(track);
      continue;
    }
    std::string label = e.name.empty() ? std::string() : e.name + " ";
    label += '#';
    append_integer(label, track);
    auto [it, inserted] = track_names.try_emplace(track, label);
    if (!inserted && (it->second.empty() || e.kind == EventKind::canceled)) it->second = label;
  }
  std::stable_sort(slices.begin(), slices.end(), slice_before);

  // Viewers require the spans of one track to nest (Perfetto drops crossing ones).
  // Spans from one cancel all start together and nest; a cleanup starts later and may
  // cross another span, so it goes to the first of the origin's extra lanes where
  // it nests, a lane being a track of its own placed under the origin's.
  std::map<std::uint64_t, std::vector<Lane>> lanes;
  std::uint64_t next_lane_tid = track_names.empty() ? 1 : track_names.rbegin()->first + 1;
  for (Slice& slice : slices) {
    const std::uint64_t track = slice.track;
    auto& origin_lanes = lanes[track];
    if (origin_lanes.empty()) origin_lanes.push_back({track, {}});
    const auto end = slice.ts + slice.dur;
    const bool span = phase_of(slice.event->kind) == Phase::complete;
    Lane* chosen = nullptr;
    for (Lane& lane : origin_lanes) {
      while (!lane.open_ends.empty() && lane.open_ends.back() <= slice.ts)
        lane.open_ends.pop_back();
      if (chosen == nullptr && (lane.open_ends.empty() || end <= lane.open_ends.back())) {
        chosen = &lane;
      }
    }
    if (chosen == nullptr) {
      origin_lanes.push_back({next_lane_tid++, {}});
      chosen = &origin_lanes.back();
    }
    if (span) chosen->open_ends.push_back(end);
    slice.tid = chosen->tid;
  }

  std::uint64_t pid = 1;
#ifdef CTXPP_OBSERVERS_HAVE_GETPID
  pid = static_cast<std::uint64_t>(::getpid());
#endif

  std::string out;
  out.reserve(128 + 160 * track_names.size() + 320 * slices.size());
  out += "{\"traceEvents\":[\n";
  out += "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":";
  append_integer(out, pid);
  out += ",\"tid\":0,\"args\":{\"name\":";
  append_string(out, process_name_);
  out += "}}";
  const auto metadata = [&](std::uint64_t tid, std::string_view what) {
    out += ",\n{\"name\":";
    append_string(out, what);
    out += ",\"ph\":\"M\",\"pid\":";
    append_integer(out, pid);
    out += ",\"tid\":";
    append_integer(out, tid);
    out += ",\"args\":{";
  };
  std::int64_t sort_index = 0;
  for (const auto& [track, label] : track_names) {
    std::string name;
    if (track == 0) {
      name = "untracked";
    } else if (label.empty()) {
      name = "#";
      append_integer(name, track);
    } else {
      name = label;
    }
    const auto& origin_lanes = lanes[track];
    for (std::size_t i = 0; i < origin_lanes.size(); ++i) {
      std::string lane_name = name;
      if (i > 0) {
        lane_name += " (";
        append_integer(lane_name, i + 1);
        lane_name += ')';
      }
      metadata(origin_lanes[i].tid, "thread_name");
      out += "\"name\":";
      append_string(out, lane_name);
      out += "}}";
      metadata(origin_lanes[i].tid, "thread_sort_index");
      out += "\"sort_index\":";
      append_integer(out, sort_index++);
      out += "}}";
    }
  }
  for (const Slice& slice : slices) {
    const StoredEvent& e = *slice.event;
    out += ",\n{\"name\":";
    append_string(out, slice_name(e));
    out += ",\"cat\":\"ctxpp\",\"ph\":";
    if (phase_of(e.kind) == Phase::complete) {
      out += "\"X\",\"dur\":";
      append_microseconds(out, slice.dur);
    } else {
      out += "\"i\",\"s\":\"t\"";
    }
    out += ",\"ts\":";
    append_microseconds(out, slice.ts);
    out += ",\"pid\":";
    append_integer(out, pid);
    out += ",\"tid\":";
    append_integer(out, slice.tid);
    out += ',';
    append_args(out, e);
    out += '}';
  }
  out += "\n],\"displayTimeUnit\":\"ms\"}\n";
  return out;
}

std::size_t TraceEventObserver::size() const noexcept {
  const std::lock_guard lock(mutex_);
  return events_.size();
}

std::size_t TraceEventObserver::dropped() const noexcept {
  const std::lock_guard lock(mutex_);
  return dropped_;
}

void TraceEventObserver::clear() noexcept {
  const std::lock_guard lock(mutex_);
  events_.clear();
  dropped_ = 0;
}

void detail::append_json_string(std::string& out, std::string_view text) {
  append_string(out, text);
}

}  // namespace ctxpp
