// Tests of ctxpp/observers.hpp: the JSON object of every event kind (all fields set,
// all empty), string escaping and UTF-8 repair, JSON lines written whole from many
// threads, and the trace export's phases, tracks, times and bound. The sinks are fed
// hand-built events through on_event, and once end to end through add_observer; the
// schema itself is checked by the observe.schema test
// (tests/tools/check_observability.py).
#include "ctxpp/observers.hpp"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <ostream>
#include <sstream>
#include <streambuf>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/errc.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::Event;
using ctxpp::EventKind;

// --- a small strict JSON reader, enough to check what the observers write -------

struct Json {
  enum class Type { null, boolean, number, string, array, object };
  Type type = Type::null;
  bool boolean = false;
  std::string text;  // the number's literal text, or the decoded string
  std::vector<Json> items;
  // An object's members in order of appearance (two vectors: a pair would need Json
  // complete here).
  std::vector<std::string> keys;
  std::vector<Json> values;

  bool is_null() const { return type == Type::null; }
  bool has(std::string_view key) const {
    for (const auto& k : keys) {
      if (k == key) return true;
    }
    return false;
  }
  const Json& operator[](std::string_view key) const {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) return values[i];
    }
    ADD_FAILURE() << "no member " << key;
    static const Json missing;
    return missing;
  }
  const std::string& str() const {
    EXPECT_EQ(type, Type::string);
    return text;
  }
  double number() const {
    EXPECT_EQ(type, Type::number);
    return std::strtod(text.c_str(), nullptr);
  }
  std::uint64_t uint() const {
    EXPECT_EQ(type, Type::number);
    return std::strtoull(text.c_str(), nullptr, 10);
  }
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  // The whole input must be exactly one value (surrounded by whitespace).
  bool parse(Json& out) {
    skip_ws();
    if (!value(out)) return false;
    skip_ws();
    return i_ == s_.size();
  }

 private:
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  bool value(Json& out) {
    if (i_ >= s_.size()) return false;
    switch (s_[i_]) {
      case 'n':
        out.type = Json::Type::null;
        return literal("null");
      case 't':
        out.type = Json::Type::boolean;
        out.boolean = true;
        return literal("true");
      case 'f':
        out.type = Json::Type::boolean;
        return literal("false");
      case '"':
        out.type = Json::Type::string;
        return string(out.text);
      case '[':
        out.type = Json::Type::array;
        return array(out);
      case '{':
        out.type = Json::Type::object;
        return object(out);
      default:
        out.type = Json::Type::number;
        return number(out.text);
    }
  }
  bool digits() {
    const std::size_t start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > start;
  }
  bool number(std::string& out) {
    const std::size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ < s_.size() && s_[i_] == '0') {
      ++i_;
    } else if (!digits()) {
      return false;
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digits()) return false;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) return false;
    }
    out = std::string(s_.substr(start, i_ - start));
    return true;
  }
  bool hex4(unsigned& out) {
    if (i_ + 4 > s_.size()) return false;
    out = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      out <<= 4U;
      if (c >= '0' && c <= '9') {
        out |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        out |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        out |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  }
  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80U) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800U) {
      out += static_cast<char>(0xC0U | (cp >> 6U));
      out += static_cast<char>(0x80U | (cp & 0x3FU));
    } else if (cp < 0x10000U) {
      out += static_cast<char>(0xE0U | (cp >> 12U));
      out += static_cast<char>(0x80U | ((cp >> 6U) & 0x3FU));
      out += static_cast<char>(0x80U | (cp & 0x3FU));
    } else {
      out += static_cast<char>(0xF0U | (cp >> 18U));
      out += static_cast<char>(0x80U | ((cp >> 12U) & 0x3FU));
      out += static_cast<char>(0x80U | ((cp >> 6U) & 0x3FU));
      out += static_cast<char>(0x80U | (cp & 0x3FU));
    }
  }
  bool string(std::string& out) {
    ++i_;  // the opening quote
    out.clear();
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20U) return false;  // raw control characters are not allowed
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (i_ >= s_.size()) return false;
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800U && cp <= 0xDBFFU) {
            unsigned low = 0;
            if (!literal("\\u") || !hex4(low) || low < 0xDC00U || low > 0xDFFFU) return false;
            cp = 0x10000U + ((cp - 0xD800U) << 10U) + (low - 0xDC00U);
          } else if (cp >= 0xDC00U && cp <= 0xDFFFU) {
            return false;
          }
          put_utf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool array(Json& out) {
    ++i_;
    skip_ws();
    if (i_ < s_.size() && s_[i_] == ']') {
      ++i_;
      return true;
    }
    while (true) {
      skip_ws();
      Json item;
      if (!value(item)) return false;
      out.items.push_back(std::move(item));
      skip_ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == ']') {
        ++i_;
        return true;
      }
      if (s_[i_++] != ',') return false;
    }
  }
  bool object(Json& out) {
    ++i_;
    skip_ws();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return true;
    }
    while (true) {
      skip_ws();
      std::string key;
      if (i_ >= s_.size() || s_[i_] != '"' || !string(key)) return false;
      skip_ws();
      if (i_ >= s_.size() || s_[i_++] != ':') return false;
      skip_ws();
      Json item;
      if (!value(item)) return false;
      if (out.has(key)) return false;  // duplicate keys would hide a field
      out.keys.push_back(std::move(key));
      out.values.push_back(std::move(item));
      skip_ws();
      if (i_ >= s_.size()) return false;
      if (s_[i_] == '}') {
        ++i_;
        return true;
      }
      if (s_[i_++] != ',') return false;
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

Json parse(std::string_view text) {
  Json out;
  EXPECT_TRUE(JsonReader(text).parse(out)) << "not valid JSON: " << text;
  return out;
}

// --- events -----------------------------------------------------------------------

constexpr std::array all_kinds{
    EventKind::created,        EventKind::canceled,           EventKind::propagated,
    EventKind::observed,       EventKind::component_signal,   EventKind::component_cleanup,
    EventKind::cleanup_report, EventKind::blocking_abandoned, EventKind::lease_lingering,
    EventKind::finding,
};

constexpr std::array<std::string_view, 10> kind_names{
    "created",          "canceled",          "propagated",     "observed",
    "component_signal", "component_cleanup", "cleanup_report", "blocking_abandoned",
    "lease_lingering",  "finding",
};

ctxpp::TraceContext sample_trace() {
  ctxpp::TraceContext trace;
  for (std::size_t i = 0; i < trace.trace_id.size(); ++i) {
    trace.trace_id[i] = static_cast<std::uint8_t>(0xF0U + i);
  }
  for (std::size_t i = 0; i < trace.parent_id.size(); ++i) {
    trace.parent_id[i] = static_cast<std::uint8_t>(0x0AU + i);
  }
  trace.flags = 1;
  return trace;
}

const ctxpp::TraceContext trace_identity = sample_trace();

constexpr ctxpp::SourceLocation where_site =
    ctxpp::SourceLocation::current("svc/handler.cpp", 42, "handle");
constexpr ctxpp::SourceLocation other_site =
    ctxpp::SourceLocation::current("svc/scope.cpp", 7, "scope");

Event full_event(EventKind kind) {
  Event e;
  e.kind = kind;
  e.time = ctxpp::event_epoch() + 2'500'700ns;
  e.context_id = 12;
  e.parent_id = 11;
  e.origin_id = 10;
  e.name = "request";
  e.component = "db";
  e.error = ctxpp::errc::deadline_exceeded;
  e.cause = std::make_error_code(std::errc::connection_reset);
  e.where = where_site;
  e.other_where = other_site;
  e.delay = 1'234'567ns;
  e.thread = 0xFFFF'FFFF'FFFF'FFFFULL;
  e.detail = "one line";
  e.trace = &trace_identity;
  return e;
}

const std::vector<std::string_view> schema_keys{
    "event", "ts_us", "context",     "parent",   "origin", "name",   "component", "error",
    "cause", "where", "other_where", "delay_us", "thread", "detail", "trace_id",  "span_id",
};

void expect_schema_keys(const Json& line) {
  ASSERT_EQ(line.type, Json::Type::object);
  ASSERT_EQ(line.keys.size(), schema_keys.size());
  for (std::size_t i = 0; i < schema_keys.size(); ++i) {
    EXPECT_EQ(line.keys[i], schema_keys[i]) << "fields are written in a stable order";
  }
}

// --- to_json ----------------------------------------------------------------------

TEST(ToJson, EveryKindWithEveryField) {
  for (std::size_t k = 0; k < all_kinds.size(); ++k) {
    SCOPED_TRACE(kind_names[k]);
    const std::string text = ctxpp::to_json(full_event(all_kinds[k]));
    EXPECT_EQ(text.find('\n'), std::string::npos);
    const Json line = parse(text);
    expect_schema_keys(line);
    EXPECT_EQ(line["event"].str(), kind_names[k]);
    EXPECT_EQ(line["ts_us"].text, "2500") << "whole microseconds, truncated";
    EXPECT_EQ(line["context"].uint(), 12U);
    EXPECT_EQ(line["parent"].uint(), 11U);
    EXPECT_EQ(line["origin"].uint(), 10U);
    EXPECT_EQ(line["name"].str(), "request");
    EXPECT_EQ(line["component"].str(), "db");
    EXPECT_EQ(line["error"]["category"].str(), "ctxpp");
    EXPECT_EQ(line["error"]["value"].text, "2");
    EXPECT_EQ(line["error"]["message"].str(), "context deadline exceeded");
    EXPECT_EQ(line["cause"]["category"].str(), "generic");
    EXPECT_EQ(line["cause"]["value"].text,
              std::to_string(static_cast<int>(std::errc::connection_reset)));
    EXPECT_EQ(line["cause"]["message"].str(),
              std::make_error_code(std::errc::connection_reset).message());
    EXPECT_EQ(line["where"]["file"].str(), "svc/handler.cpp");
    EXPECT_EQ(line["where"]["line"].text, "42");
    EXPECT_EQ(line["where"]["function"].str(), "handle");
    EXPECT_EQ(line["other_where"]["file"].str(), "svc/scope.cpp");
    EXPECT_EQ(line["other_where"]["line"].text, "7");
    EXPECT_EQ(line["delay_us"].text, "1234.567");
    EXPECT_EQ(line["thread"].text, "18446744073709551615");
    EXPECT_EQ(line["detail"].str(), "one line");
    EXPECT_EQ(line["trace_id"].str(), "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    EXPECT_EQ(line["span_id"].str(), "0a0b0c0d0e0f1011");
  }
}

TEST(ToJson, EmptyFieldsAreNullOrEmptyNeverMissing) {
  for (std::size_t k = 0; k < all_kinds.size(); ++k) {
    SCOPED_TRACE(kind_names[k]);
    Event e;
    e.kind = all_kinds[k];
    e.time = ctxpp::event_epoch();
    const Json line = parse(ctxpp::to_json(e));
    expect_schema_keys(line);
    EXPECT_EQ(line["event"].str(), kind_names[k]);
    EXPECT_EQ(line["ts_us"].text, "0");
    EXPECT_EQ(line["context"].text, "0");
    EXPECT_EQ(line["parent"].text, "0");
    EXPECT_EQ(line["origin"].text, "0");
    EXPECT_EQ(line["name"].str(), "");
    EXPECT_EQ(line["component"].str(), "");
    EXPECT_TRUE(line["error"].is_null());
    EXPECT_TRUE(line["cause"].is_null());
    EXPECT_TRUE(line["where"].is_null());
    EXPECT_TRUE(line["other_where"].is_null());
    EXPECT_EQ(line["delay_us"].number(), 0.0);
    EXPECT_EQ(line["thread"].text, "0");
    EXPECT_EQ(line["detail"].str(), "");
    EXPECT_TRUE(line["trace_id"].is_null());
    EXPECT_TRUE(line["span_id"].is_null());
  }
}

TEST(ToJson, TimesCountFromTheEventEpoch) {
  Event e;
  e.time = ctxpp::event_epoch() + 3s + 999ns;
  e.delay = 5ns;
  Json line = parse(ctxpp::to_json(e));
  EXPECT_EQ(line["ts_us"].text, "3000000");
  EXPECT_EQ(line["delay_us"].text, "0.005");

  e.time = ctxpp::event_epoch() - 1500ns;  // an event stamped before the epoch
  e.delay = -2us;
  line = parse(ctxpp::to_json(e));
  EXPECT_EQ(line["ts_us"].text, "-1");
  EXPECT_EQ(line["delay_us"].text, "-2.000");

  e.delay = std::chrono::nanoseconds::min();
  EXPECT_EQ(parse(ctxpp::to_json(e))["delay_us"].text, "-9223372036854775.808");

  EXPECT_LE(ctxpp::event_epoch(), ctxpp::clock::now());
  EXPECT_EQ(ctxpp::event_epoch(), ctxpp::event_epoch()) << "fixed once per process";
}

TEST(ToJson, EscapesQuotesBackslashesAndControlCharacters) {
  Event e;
  const std::string name =
      std::string("a\"b\\c/d\n\r\t\b\f") + '\x01' + '\x1f' + '\x7f' + '\0' + "end";
  e.name = name;
  const std::string text = ctxpp::to_json(e);
  EXPECT_NE(text.find(R"("name":"a\"b\\c/d\n\r\t\b\f\u0001\u001f\u007f\u0000end")"),
            std::string::npos)
      << text;
  EXPECT_EQ(parse(text)["name"].str(), name) << "the string reads back exactly";
}

TEST(ToJson, PassesUtf8ThroughAndRepairsInvalidBytes) {
  Event e;
  const std::string valid = "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80 \xE2\x80\xA8";
  e.name = valid;
  std::string text = ctxpp::to_json(e);
  EXPECT_NE(text.find("\"name\":\"" + valid + "\""), std::string::npos) << "UTF-8 is written as is";
  EXPECT_EQ(parse(text)["name"].str(), valid);

  const std::vector<std::pair<std::string, std::string>> invalid{
      {"\xFF", "\\ufffd"},                                   // never valid
      {"x\xC3", "x\\ufffd"},                                 // truncated at the end
      {"\xC3x", "\\ufffdx"},                                 // lead without continuation
      {"\xC0\xAF", "\\ufffd\\ufffd"},                        // overlong '/'
      {"\xE0\x80\xAF", "\\ufffd\\ufffd\\ufffd"},             // overlong, three bytes
      {"\xED\xA0\x80", "\\ufffd\\ufffd\\ufffd"},             // a UTF-16 surrogate
      {"\xF4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"},  // above U+10FFFF
      {"\x80", "\\ufffd"},                                   // a lone continuation
  };
  for (const auto& [bytes, escaped] : invalid) {
    e.component = bytes;
    text = ctxpp::to_json(e);
    EXPECT_NE(text.find("\"component\":\"" + escaped + "\""), std::string::npos) << text;
    parse(text);
  }
}

TEST(ToJson, OtherCategoriesAndZeroTraceIds) {
  Event e;
  e.error = ctxpp::errc::canceled;
  e.cause = std::make_error_code(std::errc::timed_out);
  ctxpp::TraceContext zero;  // all-zero ids are invalid in W3C Trace Context
  e.trace = &zero;
  const Json line = parse(ctxpp::to_json(e));
  EXPECT_EQ(line["error"]["message"].str(), "context canceled");
  EXPECT_EQ(line["cause"]["category"].str(), "generic");
  EXPECT_TRUE(line["trace_id"].is_null());
  EXPECT_TRUE(line["span_id"].is_null());
}

// --- JsonLinesObserver ---------------------------------------------------------------

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(JsonLinesObserver, WritesOneParsableLinePerEvent) {
  std::ostringstream out;
  ctxpp::JsonLinesObserver observer(out);
  for (const EventKind kind : all_kinds) observer.on_event(full_event(kind));
  Event empty;
  observer.on_event(empty);
  EXPECT_EQ(observer.written(), all_kinds.size() + 1);
  EXPECT_EQ(observer.dropped(), 0U);
  const std::string text = out.str();
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const auto lines = split_lines(text);
  ASSERT_EQ(lines.size(), all_kinds.size() + 1);
  for (std::size_t i = 0; i < all_kinds.size(); ++i) {
    EXPECT_EQ(lines[i], ctxpp::to_json(full_event(all_kinds[i])));
    expect_schema_keys(parse(lines[i]));
  }
}

TEST(JsonLinesObserver, AFailedStreamDropsAndCounts) {
  std::ostringstream out;
  ctxpp::JsonLinesObserver observer(out);
  observer.on_event(full_event(EventKind::canceled));
  out.setstate(std::ios::badbit);
  observer.on_event(full_event(EventKind::canceled));
  observer.on_event(full_event(EventKind::propagated));
  EXPECT_EQ(observer.written(), 1U);
  EXPECT_EQ(observer.dropped(), 2U);
}

// A stream buffer that refuses every byte, as a full disk or a closed pipe does.
class RefusingBuffer final : public std::streambuf {
 protected:
  int_type overflow(int_type) override { return traits_type::eof(); }
};

TEST(JsonLinesObserver, AThrowingStreamDropsWithoutThrowing) {
  RefusingBuffer buffer;
  std::ostream out(&buffer);
  out.exceptions(std::ios::badbit);
  ctxpp::JsonLinesObserver observer(out);
  observer.on_event(full_event(EventKind::canceled));  // noexcept: a throw would terminate
  observer.on_event(full_event(EventKind::canceled));
  EXPECT_EQ(observer.written(), 0U);
  EXPECT_EQ(observer.dropped(), 2U);
}

TEST(JsonLinesObserver, LinesFromManyThreadsNeverInterleave) {
  std::ostringstream out;
  ctxpp::JsonLinesObserver observer(out);
  constexpr int threads = 4;
  constexpr int per_thread = 250;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&observer, t] {
      const std::string name(static_cast<std::size_t>(100 + t), static_cast<char>('a' + t));
      for (int i = 0; i < per_thread; ++i) {
        Event e = full_event(all_kinds[static_cast<std::size_t>(i) % all_kinds.size()]);
        e.name = name;
        e.context_id = static_cast<std::uint64_t>(t);
        observer.on_event(e);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  const auto lines = split_lines(out.str());
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(threads * per_thread));
  EXPECT_EQ(observer.written(), lines.size());
  std::map<std::uint64_t, int> per_context;
  for (const auto& line : lines) {
    const Json json = parse(line);
    const std::uint64_t t = json["context"].uint();
    EXPECT_EQ(json["name"].str(),
              std::string(static_cast<std::size_t>(100 + t), static_cast<char>('a' + t)));
    ++per_context[t];
  }
  for (int t = 0; t < threads; ++t)
    EXPECT_EQ(per_context[static_cast<std::uint64_t>(t)], per_thread);
}

// --- TraceEventObserver ----------------------------------------------------------------

Event at(EventKind kind, std::chrono::nanoseconds since_epoch, std::uint64_t context,
         std::uint64_t origin, std::string_view name, std::string_view component = {},
         std::chrono::nanoseconds delay = {}) {
  Event e;
  e.kind = kind;
  e.time = ctxpp::event_epoch() + since_epoch;
  e.context_id = context;
  e.parent_id = context > 1 ? context - 1 : 0;
  e.origin_id = origin;
  e.name = name;
  e.component = component;
  e.delay = delay;
  return e;
}

std::vector<const Json*> with_phase(const Json& trace, std::string_view ph) {
  std::vector<const Json*> out;
  for (const Json& e : trace["traceEvents"].items) {
    if (e["ph"].str() == ph) out.push_back(&e);
  }
  return out;
}

std::map<std::uint64_t, std::string> thread_names(const Json& trace) {
  std::map<std::uint64_t, std::string> out;
  for (const Json* e : with_phase(trace, "M")) {
    if ((*e)["name"].str() == "thread_name") out[(*e)["tid"].uint()] = (*e)["args"]["name"].str();
  }
  return out;
}

TEST(TraceEventObserver, ARequestTreeBecomesOneTrack) {
  ctxpp::TraceEventObserver observer(100, "checkout \"svc\"");
  Event cancel = at(EventKind::canceled, 1ms, 7, 0, "request");
  cancel.error = ctxpp::errc::canceled;
  cancel.cause = std::make_error_code(std::errc::connection_reset);
  cancel.where = where_site;
  cancel.trace = &trace_identity;
  observer.on_event(at(EventKind::created, 0ms, 7, 0, "request"));  // not kept
  observer.on_event(cancel);
  observer.on_event(at(EventKind::propagated, 1ms + 10us, 8, 7, "", "", 10us));
  observer.on_event(at(EventKind::component_signal, 1ms + 20us, 8, 7, "request", "db", 20us));
  observer.on_event(at(EventKind::component_cleanup, 1ms + 320us, 8, 7, "request", "db", 300us));
  observer.on_event(at(EventKind::observed, 1ms + 5us, 9, 7, "request", "", 5us));
  observer.on_event(at(EventKind::finding, 3ms, 20, 0, "", "pool"));
  EXPECT_EQ(observer.size(), 6U);
  EXPECT_EQ(observer.dropped(), 0U);

  const std::string text = observer.to_json();
  const Json trace = parse(text);
  EXPECT_EQ(trace["displayTimeUnit"].str(), "ms");
  const auto names = thread_names(trace);
  const std::map<std::uint64_t, std::string> expected_names{{7, "request #7"}, {20, "#20"}};
  EXPECT_EQ(names, expected_names) << "one track per origin, none for the lanes";
  const Json& process = *with_phase(trace, "M").front();
  EXPECT_EQ(process["name"].str(), "process_name");
  EXPECT_EQ(process["args"]["name"].str(), "checkout \"svc\"");

  const auto instants = with_phase(trace, "i");
  ASSERT_EQ(instants.size(), 2U);
  const Json& c = *instants[0];
  EXPECT_EQ(c["name"].str(), "cancel request");
  EXPECT_EQ(c["s"].str(), "t");
  EXPECT_EQ(c["ts"].text, "1000.000");
  EXPECT_EQ(c["tid"].uint(), 7U);
  EXPECT_EQ(c["args"]["context_id"].uint(), 7U);
  EXPECT_EQ(c["args"]["error"].str(), "context canceled");
  EXPECT_EQ(c["args"]["cause"].str(), std::make_error_code(std::errc::connection_reset).message());
  EXPECT_EQ(c["args"]["where"].str(), "svc/handler.cpp:42");
  EXPECT_EQ(c["args"]["trace_id"].str(), "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
  EXPECT_EQ(c["args"]["span_id"].str(), "0a0b0c0d0e0f1011");
  EXPECT_EQ((*instants[1])["name"].str(), "finding pool");
  EXPECT_EQ((*instants[1])["tid"].uint(), 20U) << "no origin: the context's own track";

  // Spans start where the cancel was and are sorted by start, longest first.
  const auto spans = with_phase(trace, "X");
  ASSERT_EQ(spans.size(), 4U);
  const std::vector<std::tuple<std::string, std::string, std::string>> expected{
      {"signal db", "1000.000", "20.000"},
      {"propagate #8", "1000.000", "10.000"},
      {"observe request", "1000.000", "5.000"},
      {"cleanup db", "1020.000", "300.000"},
  };
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& [name, ts, dur] = expected[i];
    EXPECT_EQ((*spans[i])["name"].str(), name);
    EXPECT_EQ((*spans[i])["ts"].text, ts) << name;
    EXPECT_EQ((*spans[i])["dur"].text, dur) << name;
    EXPECT_EQ((*spans[i])["tid"].uint(), 7U) << name;
    EXPECT_EQ((*spans[i])["args"]["origin_id"].uint(), 7U) << name;
  }
  EXPECT_EQ((*spans[0])["args"]["component"].str(), "db");
  EXPECT_FALSE((*spans[1])["args"].has("component")) << "args carry only what is set";
}

// Viewers drop spans that cross another span of their track: a cleanup that starts
// inside a longer signal span and outlives it goes to an extra lane of its origin.
TEST(TraceEventObserver, CrossingSpansGoToAnExtraLane) {
  ctxpp::TraceEventObserver observer;
  observer.on_event(at(EventKind::canceled, 1ms, 3, 0, "request"));
  observer.on_event(at(EventKind::component_signal, 1ms + 20us, 4, 3, "request", "db", 20us));
  observer.on_event(at(EventKind::component_signal, 1ms + 30us, 5, 3, "request", "cache", 30us));
  observer.on_event(at(EventKind::component_cleanup, 1ms + 320us, 4, 3, "request", "db", 300us));
  observer.on_event(at(EventKind::component_cleanup, 1ms + 100us, 5, 3, "request", "cache", 70us));
  observer.on_event(at(EventKind::canceled, 5ms, 9, 0, "other"));
  const Json trace = parse(observer.to_json());
  std::map<std::string, std::uint64_t> tid_of;
  for (const Json* e : with_phase(trace, "X")) tid_of[(*e)["name"].str()] = (*e)["tid"].uint();
  EXPECT_EQ(tid_of["signal db"], 3U);
  EXPECT_EQ(tid_of["signal cache"], 3U);
  EXPECT_EQ(tid_of["cleanup cache"], 3U) << "starts when signal cache ends: nests";
  const std::uint64_t lane = tid_of["cleanup db"];
  EXPECT_NE(lane, 3U) << "crosses signal cache";
  EXPECT_NE(lane, 9U) << "a lane never takes a real origin's track";
  const auto names = thread_names(trace);
  ASSERT_TRUE(names.count(lane));
  EXPECT_EQ(names.at(lane), "request #3 (2)");
  EXPECT_EQ(names.at(3), "request #3");
  EXPECT_EQ(names.at(9), "other #9");

  // Every track's spans nest.
  std::map<std::uint64_t, std::vector<std::pair<double, double>>> open;
  for (const Json* e : with_phase(trace, "X")) {
    auto& stack = open[(*e)["tid"].uint()];
    const double start = (*e)["ts"].number();
    const double end = start + (*e)["dur"].number();
    while (!stack.empty() && stack.back().second <= start) stack.pop_back();
    if (!stack.empty()) {
      EXPECT_LE(end, stack.back().second) << (*e)["name"].str() << " crosses";
    }
    stack.emplace_back(start, end);
  }
}

TEST(TraceEventObserver, AnEventWithoutOriginJoinsItsContextsOriginTrack) {
  ctxpp::TraceEventObserver observer;
  observer.on_event(at(EventKind::canceled, 1ms, 3, 3, "request"));  // its own origin
  observer.on_event(at(EventKind::component_signal, 1ms + 20us, 4, 3, "request", "db", 20us));
  observer.on_event(at(EventKind::component_cleanup, 2ms, 4, 0, "request", "db", 980us));
  observer.on_event(at(EventKind::finding, 3ms, 8, 0, "", "pool"));  // no origin anywhere
  const Json trace = parse(observer.to_json());
  std::map<std::string, std::uint64_t> tid_of;
  for (const Json& e : trace["traceEvents"].items) {
    if (e["ph"].str() != "M") tid_of[e["name"].str()] = e["tid"].uint();
  }
  EXPECT_EQ(tid_of["cancel request"], 3U);
  EXPECT_EQ(tid_of["signal db"], 3U);
  EXPECT_EQ(tid_of["cleanup db"], 3U);
  EXPECT_EQ(tid_of["finding pool"], 8U);
  const auto names = thread_names(trace);
  EXPECT_EQ(names.size(), 2U);
  EXPECT_EQ(names.at(3), "request #3");
}

TEST(TraceEventObserver, EveryKindIsValidJson) {
  ctxpp::TraceEventObserver observer;
  for (const EventKind kind : all_kinds) {
    observer.on_event(full_event(kind));
    Event empty;
    empty.kind = kind;
    empty.time = ctxpp::event_epoch();
    observer.on_event(empty);
  }
  EXPECT_EQ(observer.size(), 2 * (all_kinds.size() - 1)) << "created is not kept";
  const Json trace = parse(observer.to_json());
  EXPECT_EQ(with_phase(trace, "X").size(), 8U);
  EXPECT_EQ(with_phase(trace, "i").size(), 10U);
}

TEST(TraceEventObserver, EmptyIsValid) {
  const ctxpp::TraceEventObserver observer;
  const Json trace = parse(observer.to_json());
  ASSERT_EQ(trace["traceEvents"].items.size(), 1U);
  EXPECT_EQ(trace["traceEvents"].items[0]["name"].str(), "process_name");
}

TEST(TraceEventObserver, DropsBeyondMaxEventsAndClearResets) {
  ctxpp::TraceEventObserver observer(3);
  for (int i = 0; i < 5; ++i) {
    observer.on_event(at(EventKind::canceled, std::chrono::milliseconds(i), 1, 0, "r"));
  }
  EXPECT_EQ(observer.size(), 3U);
  EXPECT_EQ(observer.dropped(), 2U);
  EXPECT_EQ(with_phase(parse(observer.to_json()), "i").size(), 3U);
  observer.clear();
  EXPECT_EQ(observer.size(), 0U);
  EXPECT_EQ(observer.dropped(), 0U);
  observer.on_event(at(EventKind::canceled, 0ms, 1, 0, "r"));
  EXPECT_EQ(observer.size(), 1U);
}

TEST(TraceEventObserver, ConcurrentEventsAreAllKeptOrCounted) {
  ctxpp::TraceEventObserver observer(1000);
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&observer, t] {
      for (int i = 0; i < 400; ++i) {
        observer.on_event(at(EventKind::propagated, std::chrono::microseconds(i),
                             static_cast<std::uint64_t>(100 + t), 1, "req", "", 1us));
      }
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(observer.size(), 1000U);
  EXPECT_EQ(observer.dropped(), 600U);
  EXPECT_EQ(with_phase(parse(observer.to_json()), "X").size(), 1000U);
}

// --- end to end: the core's events through both sinks --------------------------------

TEST(ObserversEndToEnd, ARootCancelReachesBothSinksWithMatchingIds) {
  std::ostringstream out;
  auto lines = std::make_shared<ctxpp::JsonLinesObserver>(out);
  auto trace = std::make_shared<ctxpp::TraceEventObserver>();
  std::uint64_t root_id = 0;
  std::uint64_t request_id = 0;
  std::uint64_t child_id = 0;
  {
    ctxpp::ObserverRegistration r1 = ctxpp::add_observer(lines);
    ctxpp::ObserverRegistration r2 = ctxpp::add_observer(trace);
    auto [root, cancel] = ctxpp::with_cancel(ctxpp::background());
    const ctxpp::Context request = ctxpp::with_name(root, "request");
    auto [child, child_cancel] = ctxpp::with_cancel(request);
    root_id = ctxpp::context_id(root);
    request_id = ctxpp::context_id(request);
    child_id = ctxpp::context_id(child);
    {
      ctxpp::ComponentScope scope(child, "db");
      cancel();
      std::this_thread::sleep_for(1ms);  // the component's cleanup takes a while
    }
  }
  ASSERT_NE(root_id, 0U);
  ASSERT_NE(request_id, 0U);
  ASSERT_NE(child_id, 0U);
  EXPECT_EQ(lines->dropped(), 0U);

  std::vector<Json> events;
  for (const auto& line : split_lines(out.str())) events.push_back(parse(line));
  EXPECT_EQ(events.size(), lines->written());
  const auto first = [&](std::string_view kind, std::uint64_t context) -> const Json* {
    for (const Json& e : events) {
      if (e["event"].str() == kind && e["context"].uint() == context) return &e;
    }
    ADD_FAILURE() << "no " << kind << " line for context " << context << " in\n" << out.str();
    return nullptr;
  };

  const Json* canceled = first("canceled", root_id);
  ASSERT_NE(canceled, nullptr);
  EXPECT_EQ((*canceled)["error"]["message"].str(), "context canceled");
  EXPECT_FALSE((*canceled)["where"].is_null()) << "the cancel call's site";

  for (const std::uint64_t id : {request_id, child_id}) {
    const Json* propagated = first("propagated", id);
    ASSERT_NE(propagated, nullptr);
    EXPECT_EQ((*propagated)["origin"].uint(), root_id);
    EXPECT_EQ((*propagated)["name"].str(), "request");
  }
  EXPECT_EQ((*first("propagated", child_id))["parent"].uint(), request_id);

  const Json* signal = first("component_signal", child_id);
  const Json* cleanup = first("component_cleanup", child_id);
  ASSERT_NE(signal, nullptr);
  ASSERT_NE(cleanup, nullptr);
  EXPECT_EQ((*signal)["origin"].uint(), root_id);
  for (const Json* e : {signal, cleanup}) {
    EXPECT_EQ((*e)["component"].str(), "db");
    EXPECT_EQ((*e)["name"].str(), "request");
  }
  EXPECT_GE((*cleanup)["delay_us"].number(), 1000.0) << "from the signal to the scope's end";

  // The trace: everything on the root's track (the cleanup too, though its event may
  // carry no origin), the cleanup span as long as the line says.
  // A span that crosses another goes to a lane of the root's track, "#<id> (2)".
  const Json exported = parse(trace->to_json());
  const auto names = thread_names(exported);
  ASSERT_TRUE(names.count(root_id));
  const std::string root_track = names.at(root_id);
  const auto on_root_track = [&](std::uint64_t tid) {
    if (!names.count(tid)) return false;
    const std::string& name = names.at(tid);
    return name == root_track || name.rfind(root_track + " (", 0) == 0;
  };
  std::map<std::string, const Json*> slices;
  for (const Json& e : exported["traceEvents"].items) {
    if (e["ph"].str() != "M" && on_root_track(e["tid"].uint())) slices[e["name"].str()] = &e;
  }
  ASSERT_TRUE(slices.count("signal db")) << trace->to_json();
  ASSERT_TRUE(slices.count("cleanup db"));
  ASSERT_TRUE(slices.count("propagate request"));
  EXPECT_EQ((*slices["cleanup db"])["args"]["context_id"].uint(), child_id);
  EXPECT_EQ((*slices["cleanup db"])["dur"].text, (*cleanup)["delay_us"].text);
  bool cancel_instant = false;
  for (const Json* e : with_phase(exported, "i")) {
    cancel_instant = cancel_instant || ((*e)["args"]["context_id"].uint() == root_id &&
                                        (*e)["args"]["event"].str() == "canceled");
  }
  EXPECT_TRUE(cancel_instant);
}

}  // namespace
