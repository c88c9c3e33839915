// Deadline headers: parsing X-Request-Timeout-Ms and grpc-timeout, formatting the
// budget a client forwards, and the server's budget decision.
//
// Invariants:
//  1. Parsers look at no more than max_header_value_size bytes and never allocate;
//     the size guard runs before any other check (text.hpp).
//  2. Every accepted value converts to nanoseconds without overflow: milliseconds are
//     bounded by max_request_timeout, gRPC values saturate.
//  3. Formatting rounds down, so a parsed formatted budget is never larger than the
//     budget given: a downstream never gets more time than its caller has.
#include "ctxpp/http/deadline.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "text.hpp"

namespace ctxpp::http {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// 8 digits at most: the gRPC protocol's TimeoutValue = 1*8DIGIT.
constexpr std::size_t kGrpcMaxDigits = 8;
constexpr std::int64_t kGrpcMaxValue = 99'999'999;

struct Unit {
  char symbol;
  std::int64_t nanos;
};

// Finest first: format_grpc_timeout picks the first that fits.
constexpr std::array<Unit, 6> kGrpcUnits{{
    {'n', 1},
    {'u', 1'000},
    {'m', 1'000'000},
    {'S', 1'000'000'000},
    {'M', 60'000'000'000},
    {'H', 3'600'000'000'000},
}};

constexpr const Unit* find_unit(char symbol) noexcept {
  for (const Unit& unit : kGrpcUnits) {
    if (unit.symbol == symbol) return &unit;
  }
  return nullptr;
}

// Digits only, at most max_digits of them (checked before accumulating, so the
// caller's bound keeps the sum inside std::int64_t: 18 digits < 2^63).
std::error_code parse_digits(std::string_view digits, std::size_t max_digits,
                             std::int64_t& out) noexcept {
  if (digits.empty()) return errc::not_a_number;
  for (char c : digits) {
    if (!detail::is_digit(c)) return errc::not_a_number;
  }
  if (digits.size() > max_digits) return errc::too_many_digits;
  std::int64_t value = 0;
  for (char c : digits) value = value * 10 + (c - '0');
  out = value;
  return {};
}

// Invariant 2 is stated for nanoseconds, the steady_clock period of libstdc++ and libc++.
static_assert(std::is_same_v<clock::duration, nanoseconds>,
              "ctxpp::http assumes clock::duration is std::chrono::nanoseconds");

}  // namespace

Result<milliseconds> parse_request_timeout(std::string_view value) noexcept {
  if (std::error_code ec = detail::guard_and_trim(value)) return ec;
  std::int64_t ms = 0;
  if (std::error_code ec = parse_digits(value, max_request_timeout_digits, ms)) return ec;
  if (ms > max_request_timeout.count()) return make_error_code(errc::out_of_range);
  return milliseconds(ms);
}

Result<nanoseconds> parse_grpc_timeout(std::string_view value) noexcept {
  if (std::error_code ec = detail::guard_and_trim(value)) return ec;
  const Unit* unit = find_unit(value.back());
  if (unit == nullptr) return make_error_code(errc::bad_unit);
  value.remove_suffix(1);
  std::int64_t amount = 0;
  if (std::error_code ec = parse_digits(value, kGrpcMaxDigits, amount)) return ec;
  // 99999999H does not fit in nanoseconds: saturate (see the header).
  if (amount > std::numeric_limits<std::int64_t>::max() / unit->nanos) return nanoseconds::max();
  return nanoseconds(amount * unit->nanos);
}

std::string format_request_timeout(milliseconds budget) {
  if (budget < milliseconds::zero()) budget = milliseconds::zero();
  if (budget > max_request_timeout) budget = max_request_timeout;
  return std::to_string(budget.count());
}

std::string format_grpc_timeout(nanoseconds budget) {
  if (budget <= nanoseconds::zero()) return "0n";
  const std::int64_t ns = budget.count();
  for (const Unit& unit : kGrpcUnits) {
    const std::int64_t amount = ns / unit.nanos;  // rounds toward zero: down, as ns > 0
    if (amount <= kGrpcMaxValue) return std::to_string(amount) + unit.symbol;
  }
  // Unreachable with 64-bit nanoseconds (the largest is 2562047H); kept so the
  // function stays total if the representation changes.
  return std::to_string(kGrpcMaxValue) + 'H';
}

std::string_view to_string(BudgetSource source) noexcept {
  switch (source) {
    case BudgetSource::fallback:
      return "fallback";
    case BudgetSource::request_timeout_ms:
      return request_timeout_header;
    case BudgetSource::grpc_timeout:
      return grpc_timeout_header;
    case BudgetSource::cap:
      return "cap";
  }
  return "unknown";
}

BudgetResult request_budget(const BudgetHeaders& headers, const BudgetPolicy& policy) noexcept {
  const clock::duration max = std::max(policy.max, clock::duration::zero());
  const clock::duration fallback = std::max(policy.fallback, clock::duration::zero());

  std::optional<Budget> asked;
  if (headers.request_timeout_ms) {
    auto ms = parse_request_timeout(*headers.request_timeout_ms);
    if (!ms) return {ms.error(), request_timeout_header};
    asked = Budget{clock::duration(*ms), BudgetSource::request_timeout_ms};
  }
  if (headers.grpc_timeout) {
    auto ns = parse_grpc_timeout(*headers.grpc_timeout);
    if (!ns) return {ns.error(), grpc_timeout_header};
    const clock::duration d = *ns;
    // Strictly smaller: X-Request-Timeout-Ms wins a tie.
    if (!asked || d < asked->value) asked = Budget{d, BudgetSource::grpc_timeout};
  }
  if (!asked) asked = Budget{fallback, BudgetSource::fallback};
  if (asked->value > max) asked = Budget{max, BudgetSource::cap};
  return *asked;
}

WithCancel<Context, CancelFunc> request_context(const Context& parent, const Budget& budget) {
  return with_timeout(parent, budget.value);
}

std::string OutgoingDeadline::request_timeout_ms() const {
  if (action != Forward::send) return {};
  return format_request_timeout(remaining);
}

std::string OutgoingDeadline::grpc_timeout() const {
  if (action != Forward::send) return {};
  return format_grpc_timeout(remaining);
}

OutgoingDeadline outgoing_deadline(const Context& ctx) noexcept {
  return outgoing_deadline(ctx, clock::now());
}

OutgoingDeadline outgoing_deadline(const Context& ctx, clock::time_point now) noexcept {
  if (ctx.done()) return {Forward::do_not_send, milliseconds::zero()};
  const std::optional<clock::time_point> deadline = ctx.deadline();
  if (!deadline) return {Forward::no_deadline, milliseconds::zero()};
  if (*deadline <= now) return {Forward::do_not_send, milliseconds::zero()};
  // A deadline that never fires is not "292 years minus the uptime": say the most.
  if (*deadline == clock::time_point::max()) return {Forward::send, max_request_timeout};
  // deadline - now without overflow: time_point::max() minus an early (or negative)
  // now would not fit; such a deadline is "practically never" anyway.
  using Rep = clock::duration::rep;
  const Rep d = deadline->time_since_epoch().count();
  const Rep n = now.time_since_epoch().count();
  const clock::duration left = (n < 0 && d > std::numeric_limits<Rep>::max() + n)
                                   ? clock::duration::max()
                                   : clock::duration(d - n);
  // duration_cast truncates toward zero, which is down for a positive duration.
  milliseconds ms = std::chrono::duration_cast<milliseconds>(left);
  if (ms < milliseconds(1)) return {Forward::do_not_send, milliseconds::zero()};
  if (ms > max_request_timeout) ms = max_request_timeout;
  return {Forward::send, ms};
}

}  // namespace ctxpp::http
