// ctxpp/http/deadline.hpp — deadlines across HTTP hops, for any HTTP library.
// A server reads the caller's budget from X-Request-Timeout-Ms or gRPC's grpc-timeout,
// caps it with its own maximum and runs the request under a context that ends when
// the budget is spent; a client forwards what is left of its context's budget, rounded
// down, so a downstream service never believes it has more time than its caller. The
// parsers are pure functions over the header text: no allocation, no locale, no
// exceptions, bounded input (max_header_value_size). Grammar: docs/adapters/http.md.
// Example (server, then client; namespace http = ctxpp::http):
//   auto budget = http::request_budget({.request_timeout_ms = req.header("X-Request-Timeout-Ms"),
//                                       .grpc_timeout = req.header("grpc-timeout")},
//                                      {.max = 10s, .fallback = 5s});
//   if (!budget) return reply(400, http::bad_request_body(budget.header(), budget.error()));
//   auto [ctx, cancel] = http::request_context(server_ctx, *budget);
//   ...
//   auto out = http::outgoing_deadline(ctx);
//   if (out.action == http::Forward::do_not_send) return fail_fast(ctx.err());
//   if (out.action == http::Forward::send)
//     upstream.set_header("X-Request-Timeout-Ms", out.request_timeout_ms());
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "ctxpp/context.hpp"
#include "ctxpp/http/error.hpp"
#include "ctxpp/result.hpp"

namespace ctxpp::http {

/// The header names, as sent. HTTP field names are case-insensitive: match them so.
inline constexpr std::string_view request_timeout_header = "X-Request-Timeout-Ms";
inline constexpr std::string_view grpc_timeout_header = "grpc-timeout";

/// The largest X-Request-Timeout-Ms accepted: about 292 years, the most that fits a
/// std::chrono::nanoseconds, so every accepted value converts without overflow.
inline constexpr std::chrono::milliseconds max_request_timeout{9'223'372'036'854};

/// At most this many digits in X-Request-Timeout-Ms (leading zeros count).
inline constexpr std::size_t max_request_timeout_digits = 18;

/// Parses an X-Request-Timeout-Ms value: the caller's remaining budget in milliseconds.
/// Grammar (OWS as in RFC 9110: spaces and horizontal tabs only):
///   value = OWS 1*18DIGIT OWS        ; DIGIT = "0".."9", at most max_header_value_size bytes
/// and the number must not exceed max_request_timeout. Leading zeros are allowed; "0"
/// is valid and means no time is left. Signs ("+5", "-5"), inner whitespace ("1 0"),
/// decimal points, exponents, NUL and any other byte are rejected.
/// Thread safety: pure. Blocking: never. Cost: O(length), no allocation.
/// Errors: errc::too_long, empty, not_a_number, too_many_digits, out_of_range.
Result<std::chrono::milliseconds> parse_request_timeout(std::string_view value) noexcept;

/// Parses a grpc-timeout value (gRPC over HTTP/2: TimeoutValue TimeoutUnit).
/// Grammar:
///   value = OWS 1*8DIGIT unit OWS
///   unit  = "H" / "M" / "S" / "m" / "u" / "n"   ; hours minutes seconds milli micro nano
/// Units are case-sensitive ("M" is minutes, "m" milliseconds). "0n" is valid (no time
/// left). Values beyond what std::chrono::nanoseconds holds (above 2562047H) saturate
/// to nanoseconds::max(): the grammar allows them and they mean "practically unbounded";
/// the server's cap applies anyway.
/// Thread safety: pure. Blocking: never. Cost: O(length), no allocation.
/// Errors: errc::too_long, empty, not_a_number (no digits, or a non-digit before the
/// unit), too_many_digits, bad_unit (missing or unknown unit).
Result<std::chrono::nanoseconds> parse_grpc_timeout(std::string_view value) noexcept;

/// A budget as an X-Request-Timeout-Ms value: decimal milliseconds, no sign, no
/// whitespace. Negative budgets give "0"; budgets above max_request_timeout give its
/// value. Round trip: parse_request_timeout(format_request_timeout(d)) == d for every d
/// the parser accepts.
/// Thread safety: pure. Cost: one string of at most 13 characters (small-string
/// buffer on libstdc++ and libc++: no allocation in practice). Errors: std::bad_alloc.
std::string format_request_timeout(std::chrono::milliseconds budget);

/// A budget as a grpc-timeout value: the finest unit (n, u, m, S, M, H) in which it
/// fits 8 digits, rounded down, so it never grants more than budget (the largest
/// nanoseconds value is 2562047H). Negative budgets give "0n". Round trip: parsing the result
/// gives a duration <= budget, and equal to it when budget is a whole number of the
/// chosen unit.
/// Thread safety: pure. Cost: one string of at most 9 characters (no allocation in
/// practice). Errors: std::bad_alloc.
std::string format_grpc_timeout(std::chrono::nanoseconds budget);

/// The incoming header values of a request; std::nullopt for a header that is absent.
/// Ownership: views into the caller's request; read during request_budget() only.
struct BudgetHeaders {
  std::optional<std::string_view> request_timeout_ms{};  ///< X-Request-Timeout-Ms
  std::optional<std::string_view> grpc_timeout{};        ///< grpc-timeout
};

/// A server's limits for request budgets.
struct BudgetPolicy {
  /// No request runs longer than this, whatever its caller asks.
  clock::duration max = std::chrono::seconds(30);
  /// The budget of a request that sent no deadline header (itself capped by max).
  clock::duration fallback = std::chrono::seconds(10);
};

/// Where a request's budget came from.
enum class BudgetSource : unsigned char {
  fallback,            ///< no deadline header: BudgetPolicy::fallback
  request_timeout_ms,  ///< the X-Request-Timeout-Ms header
  grpc_timeout,        ///< the grpc-timeout header
  cap,                 ///< the caller asked for more than BudgetPolicy::max (or the
                       ///< fallback exceeds it): max
};

/// "fallback", "X-Request-Timeout-Ms", "grpc-timeout" or "cap", for logs and metrics.
/// Thread safety: pure. Cost: none (static strings).
std::string_view to_string(BudgetSource source) noexcept;

/// A request's budget and which source decided it.
struct Budget {
  clock::duration value{};  ///< never negative
  BudgetSource source = BudgetSource::fallback;
  friend bool operator==(const Budget&, const Budget&) = default;
};

/// What request_budget() returns: a Budget, or the error of the first invalid header
/// and that header's name (for bad_request_body()).
class [[nodiscard]] BudgetResult : public Result<Budget> {
 public:
  using Result<Budget>::Result;
  BudgetResult(std::error_code error, std::string_view header) noexcept
      : Result<Budget>(error), header_(header) {}

  /// The name of the rejected header (request_timeout_header or grpc_timeout_header);
  /// empty when there is a value. Ownership: a static string.
  std::string_view header() const noexcept { return header_; }

 private:
  std::string_view header_;
};

/// The budget for an incoming request. Each header present is parsed (an invalid one
/// is an error even when the other is valid: the caller sent garbage, answer 400);
/// the smaller of the two wins (X-Request-Timeout-Ms on a tie); then the result is
/// capped by policy.max. With neither header, policy.fallback, capped by policy.max.
/// A non-positive policy.max or fallback counts as zero. A zero budget is valid: the
/// request's context is done at once, and the server should answer 504 without work.
/// Thread safety: pure. Blocking: never. Cost: O(header length), no allocation.
/// Errors: the parsers' errc, with header() naming the rejected header
/// (X-Request-Timeout-Ms is checked first).
BudgetResult request_budget(const BudgetHeaders& headers, const BudgetPolicy& policy) noexcept;

/// The request's context: with_timeout(parent, budget.value). It also ends with
/// parent (the server's shutdown context, a connection's context), and never
/// outlives a deadline parent already has.
/// Thread safety: as with_timeout. Cost: one allocation and a timer entry.
/// Ownership: as with_timeout; call the cancel function when the request is answered.
/// Errors: std::bad_alloc.
WithCancel<Context, CancelFunc> request_context(const Context& parent, const Budget& budget);

/// What a client should do about a downstream call made under a context.
enum class Forward : unsigned char {
  no_deadline,  ///< the context has no deadline and has not ended: send no timeout header
  send,         ///< send, with request_timeout_ms() and/or grpc_timeout() as headers
  do_not_send,  ///< the context has ended or less than 1 ms is left: fail the call now
                ///< (with ctx.err(), or errc::deadline_exceeded if it is not set yet)
};

/// The deadline a client forwards downstream.
struct OutgoingDeadline {
  Forward action = Forward::no_deadline;
  /// What is left, rounded down to whole milliseconds; zero unless action == send.
  std::chrono::milliseconds remaining{0};

  /// remaining as an X-Request-Timeout-Ms value; "" unless action == send.
  /// Cost: a short string (no allocation in practice). Errors: std::bad_alloc.
  std::string request_timeout_ms() const;
  /// remaining as a grpc-timeout value; "" unless action == send.
  std::string grpc_timeout() const;
};

/// The remaining budget of ctx, to forward: deadline - now, rounded down to
/// milliseconds (never up: the downstream must give up no later than we do). A
/// context that has ended, or has less than 1 ms left, gives Forward::do_not_send; one
/// without a deadline, Forward::no_deadline. A deadline that never fires
/// (time_point::max()) forwards max_request_timeout.
/// Thread safety: any thread; ctx may end concurrently (then either answer may come
/// back: a call sent with a budget is stopped by the downstream's own deadline).
/// Blocking: never. Cost: one acquire load, a walk to the nearest deadline, a clock read.
OutgoingDeadline outgoing_deadline(const Context& ctx) noexcept;

/// outgoing_deadline at a given instant instead of clock::now() (for tests and for a
/// caller that already read the clock).
OutgoingDeadline outgoing_deadline(const Context& ctx, clock::time_point now) noexcept;

}  // namespace ctxpp::http
