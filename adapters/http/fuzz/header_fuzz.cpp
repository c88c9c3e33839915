// Fuzz target for the ctxpp::http header parsers: arbitrary bytes go to every parser
// and to the server's budget decision, and each success must satisfy the invariants
// the headers promise. Built as ctxpp-http-fuzz with clang's libFuzzer, and replayed
// over fuzz/corpus/ by an ordinary test in every build (replay_main.cpp).
//
// Invariants checked:
//  1. A rejection carries a non-empty code of the "ctxpp.http" category with a message.
//  2. Durations are never negative; milliseconds never exceed max_request_timeout.
//  3. Formatting a parsed duration and parsing it again gives the same milliseconds, and
//     gRPC durations that are the same or smaller (never more time downstream).
//  4. A traceparent formats to a value that parses to the same struct; a version-00
//     value formats back to exactly the text that was parsed (OWS trimmed).
//  5. A budget is never negative and never above the policy's max.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

#include "ctxpp/http/deadline.hpp"
#include "ctxpp/http/error.hpp"
#include "ctxpp/http/traceparent.hpp"

namespace {

namespace http = ctxpp::http;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

[[noreturn]] void fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "ctxpp-http-fuzz: invariant broken: %s (input of %zu bytes)\n", what,
               input.size());
  std::abort();
}

void check(bool ok, const char* what, std::string_view input) {
  if (!ok) fail(what, input);
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

void check_error(std::error_code ec, std::string_view input) {
  check(static_cast<bool>(ec), "a rejection has an empty error code", input);
  check(ec.category() == http::http_category(), "a rejection of another category", input);
  check(!ec.message().empty(), "a rejection without a message", input);
  check(!http::bad_request_body("h", ec).empty(), "an empty 400 body", input);
}

void fuzz_request_timeout(std::string_view input) {
  auto ms = http::parse_request_timeout(input);
  if (!ms) return check_error(ms.error(), input);
  check(*ms >= milliseconds::zero() && *ms <= http::max_request_timeout,
        "X-Request-Timeout-Ms out of bounds", input);
  auto again = http::parse_request_timeout(http::format_request_timeout(*ms));
  check(again.has_value() && *again == *ms, "X-Request-Timeout-Ms does not round-trip", input);
}

void fuzz_grpc_timeout(std::string_view input) {
  auto ns = http::parse_grpc_timeout(input);
  if (!ns) return check_error(ns.error(), input);
  check(*ns >= nanoseconds::zero(), "negative grpc-timeout", input);
  const std::string text = http::format_grpc_timeout(*ns);
  check(text.size() <= 9, "grpc-timeout formats to more than 8 digits", input);
  auto again = http::parse_grpc_timeout(text);
  check(again.has_value() && *again <= *ns, "grpc-timeout round trip grants more time", input);
}

void fuzz_traceparent(std::string_view input) {
  auto tp = http::parse_traceparent(input);
  if (!tp) return check_error(tp.error(), input);
  const std::string text = http::format_traceparent(*tp);
  auto again = http::parse_traceparent(text);
  check(again.has_value() && *again == *tp, "traceparent does not round-trip", input);
  const std::string_view trimmed = trim(input);
  if (trimmed.substr(0, 3) == "00-") {
    check(text == trimmed, "version-00 traceparent does not format back exactly", input);
  }
  const http::TraceParent child = http::child_of(*tp);
  check(child.trace_id == tp->trace_id && child.flags == tp->flags, "child changed the trace",
        input);
  check(http::parse_traceparent(http::format_traceparent(child)).has_value(),
        "child does not parse", input);
}

void fuzz_budget(std::string_view input) {
  // Two headers, split at the first newline (a byte no HTTP field value may contain).
  const std::size_t split = input.find('\n');
  http::BudgetHeaders headers;
  headers.request_timeout_ms = input.substr(0, split);
  if (split != std::string_view::npos) headers.grpc_timeout = input.substr(split + 1);
  const http::BudgetPolicy policy{.max = std::chrono::seconds(30),
                                  .fallback = std::chrono::seconds(5)};
  auto budget = http::request_budget(headers, policy);
  if (!budget) {
    check(!budget.header().empty(), "a rejected budget names no header", input);
    return check_error(budget.error(), input);
  }
  check(budget->value >= ctxpp::clock::duration::zero() && budget->value <= policy.max,
        "budget out of bounds", input);
}

// Formatting arbitrary durations (the first 8 bytes, if any) must give parseable text.
void fuzz_format(std::string_view input) {
  if (input.size() < sizeof(std::int64_t)) return;
  std::int64_t raw = 0;
  std::memcpy(&raw, input.data(), sizeof raw);
  const nanoseconds ns(raw);
  auto grpc = http::parse_grpc_timeout(http::format_grpc_timeout(ns));
  check(grpc.has_value(), "formatted grpc-timeout does not parse", input);
  check(*grpc <= (ns < nanoseconds::zero() ? nanoseconds::zero() : ns),
        "formatted grpc-timeout grants more time", input);
  const milliseconds ms(raw);
  auto request = http::parse_request_timeout(http::format_request_timeout(ms));
  check(request.has_value(), "formatted X-Request-Timeout-Ms does not parse", input);
  check(*request <= (ms < milliseconds::zero() ? milliseconds::zero() : ms),
        "formatted X-Request-Timeout-Ms grants more time", input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): bytes as characters
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  fuzz_request_timeout(input);
  fuzz_grpc_timeout(input);
  fuzz_traceparent(input);
  fuzz_budget(input);
  fuzz_format(input);
  return 0;
}
