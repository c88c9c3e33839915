// ctxpp/http/deadline.hpp: the deadline header grammars, formatting that never grants
// more time, the server's budget (precedence, cap, fallback) and what a client forwards.
#include "ctxpp/http/deadline.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "ctxpp/context.hpp"
#include "ctxpp/errc.hpp"
#include "ctxpp/http/error.hpp"

namespace {

namespace http = ctxpp::http;
using namespace std::chrono_literals;
using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using namespace std::string_view_literals;

struct Accept {
  std::string_view value;
  nanoseconds expected;
};
struct Reject {
  std::string_view value;
  http::errc expected;
};

// Test values built at run time live here: the cases below hold views of them.
const std::string kTooLong = std::string(257, '1');
const std::string kTooLongBlank = std::string(257, ' ');
const std::string kTooLongGrpc = std::string(257, '1') + "S";
const std::string kLongButTrimmed = std::string(250, ' ') + "12" + std::string(4, '\t');
const std::string kLongButTrimmedGrpc = std::string(250, ' ') + "12S" + std::string(3, '\t');

// --- X-Request-Timeout-Ms ------------------------------------------------------------

TEST(ParseRequestTimeout, AcceptsDecimalMillisecondsWithinOws) {
  const std::vector<Accept> cases = {
      {"0", 0ms},
      {"1", 1ms},
      {"250", 250ms},
      {"000250", 250ms},
      {" 250", 250ms},
      {"250\t", 250ms},
      {" \t 250 \t ", 250ms},
      {"9223372036854", http::max_request_timeout},       // the maximum
      {"000009223372036854", http::max_request_timeout},  // 18 digits
      {"999999999999", 999'999'999'999ms},
      {kLongButTrimmed, 12ms},
  };
  for (const Accept& c : cases) {
    auto ms = http::parse_request_timeout(c.value);
    ASSERT_TRUE(ms.has_value()) << "'" << c.value << "': " << ms.error().message();
    EXPECT_EQ(*ms, c.expected) << "'" << c.value << "'";
  }
}

TEST(ParseRequestTimeout, RejectsEverythingElseWithTheReason) {
  const std::vector<Reject> cases = {
      {"", http::errc::empty},
      {" \t ", http::errc::empty},
      {"+5", http::errc::not_a_number},
      {"-5", http::errc::not_a_number},
      {"-0", http::errc::not_a_number},
      {"1 0", http::errc::not_a_number},
      {"1\t0", http::errc::not_a_number},
      {"1.5", http::errc::not_a_number},
      {"1e3", http::errc::not_a_number},
      {"0x10", http::errc::not_a_number},
      {"ten", http::errc::not_a_number},
      {"10ms", http::errc::not_a_number},
      {"\n10", http::errc::not_a_number},  // only SP and HTAB are OWS
      {"10\r", http::errc::not_a_number},
      {"1\0"
       "2"sv,
       http::errc::not_a_number},  // embedded NUL
      {"\xff\xfe", http::errc::not_a_number},
      {"\xd9\xa3", http::errc::not_a_number},            // a non-ASCII digit (Arabic-Indic three)
      {"9223372036855", http::errc::out_of_range},       // max + 1
      {"999999999999999999", http::errc::out_of_range},  // 18 digits, too large
      {"0000000000000000000", http::errc::too_many_digits},  // 19 digits, even if zero
      {"99999999999999999999999", http::errc::too_many_digits},
      {kTooLong, http::errc::too_long},
      {kTooLongBlank, http::errc::too_long},  // size is checked before trimming
  };
  for (const Reject& c : cases) {
    auto ms = http::parse_request_timeout(c.value);
    ASSERT_FALSE(ms.has_value()) << "'" << c.value << "' gave " << ms->count();
    EXPECT_EQ(ms.error(), http::make_error_code(c.expected))
        << "'" << c.value << "': " << ms.error().message();
  }
}

TEST(FormatRequestTimeout, RoundTripsExactlyAndClampsOutOfRangeBudgets) {
  for (milliseconds d : {0ms, 1ms, 999ms, 1000ms, 86'400'000ms, http::max_request_timeout}) {
    const std::string text = http::format_request_timeout(d);
    auto back = http::parse_request_timeout(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(*back, d) << text;
  }
  EXPECT_EQ(http::format_request_timeout(-5ms), "0");
  EXPECT_EQ(http::format_request_timeout(milliseconds::max()), "9223372036854");
  EXPECT_EQ(http::format_request_timeout(250ms), "250");
}

// --- grpc-timeout --------------------------------------------------------------------

TEST(ParseGrpcTimeout, AcceptsEveryUnitUpToEightDigits) {
  const std::vector<Accept> cases = {
      {"1H", 1h},
      {"2M", 2min},
      {"3S", 3s},
      {"4m", 4ms},
      {"5u", 5us},
      {"6n", 6ns},
      {"0n", 0ns},
      {"0H", 0ns},
      {"00000001S", 1s},
      {"99999999n", 99'999'999ns},  // 8 digits
      {"99999999m", 99'999'999ms},
      {"99999999S", 99'999'999s},
      {"99999999M", minutes(99'999'999)},
      {"2562047H", hours(2'562'047)},  // the largest whole-hour nanoseconds value
      {" 1500m\t", 1500ms},
      {kLongButTrimmedGrpc, 12s},
  };
  for (const Accept& c : cases) {
    auto ns = http::parse_grpc_timeout(c.value);
    ASSERT_TRUE(ns.has_value()) << "'" << c.value << "': " << ns.error().message();
    EXPECT_EQ(*ns, c.expected) << "'" << c.value << "'";
  }
}

TEST(ParseGrpcTimeout, SaturatesHoursBeyondNanoseconds) {
  for (std::string_view v : {"2562048H", "99999999H"}) {
    auto ns = http::parse_grpc_timeout(v);
    ASSERT_TRUE(ns.has_value()) << v;
    EXPECT_EQ(*ns, nanoseconds::max()) << v;
  }
}

TEST(ParseGrpcTimeout, RejectsEverythingElseWithTheReason) {
  const std::vector<Reject> cases = {
      {"", http::errc::empty},
      {"\t", http::errc::empty},
      {"100", http::errc::bad_unit},  // no unit
      {"10s", http::errc::bad_unit},  // units are case-sensitive
      {"10h", http::errc::bad_unit},
      {"10U", http::errc::bad_unit},
      {"10N", http::errc::bad_unit},
      {"10ms", http::errc::bad_unit},
      {"10x", http::errc::bad_unit},
      {"10 ", http::errc::bad_unit},  // trimmed: no unit left
      {"S", http::errc::not_a_number},
      {"+5S", http::errc::not_a_number},
      {"-5S", http::errc::not_a_number},
      {"5 S", http::errc::not_a_number},
      {"1.5S", http::errc::not_a_number},
      {"1\0"
       "5S"sv,
       http::errc::not_a_number},
      {"5\0"sv, http::errc::bad_unit},
      {"\xff"
       "5S",
       http::errc::not_a_number},
      {"123456789n", http::errc::too_many_digits},  // 9 digits
      {"000000001S", http::errc::too_many_digits},  // leading zeros count
      {kTooLongGrpc, http::errc::too_long},
  };
  for (const Reject& c : cases) {
    auto ns = http::parse_grpc_timeout(c.value);
    ASSERT_FALSE(ns.has_value()) << "'" << c.value << "' gave " << ns->count();
    EXPECT_EQ(ns.error(), http::make_error_code(c.expected))
        << "'" << c.value << "': " << ns.error().message();
  }
}

TEST(FormatGrpcTimeout, PicksTheFinestUnitThatFitsAndRoundsDown) {
  EXPECT_EQ(http::format_grpc_timeout(0ns), "0n");
  EXPECT_EQ(http::format_grpc_timeout(-1s), "0n");
  EXPECT_EQ(http::format_grpc_timeout(99'999'999ns), "99999999n");
  EXPECT_EQ(http::format_grpc_timeout(100'000'000ns), "100000u");
  EXPECT_EQ(http::format_grpc_timeout(123'456'789ns), "123456u");  // 789 ns dropped
  EXPECT_EQ(http::format_grpc_timeout(1500ms), "1500000u");
  EXPECT_EQ(http::format_grpc_timeout(100s), "100000m");
  EXPECT_EQ(http::format_grpc_timeout(seconds(100'000'000)), "1666666M");
  EXPECT_EQ(http::format_grpc_timeout(nanoseconds::max()), "2562047H");
}

TEST(FormatGrpcTimeout, ParsesBackToNoMoreThanTheBudget) {
  std::uint64_t x = 0x243F6A8885A308D3ULL;  // fixed sequence: reproducible
  std::vector<nanoseconds> budgets = {1ns, 999ns, 1us,   1ms, 1s,         1min,
                                      1h,  100ms, 59min, 25h, 2'562'047h, nanoseconds::max()};
  for (int i = 0; i < 2000; ++i) {
    x ^= x << 13U;
    x ^= x >> 7U;
    x ^= x << 17U;
    budgets.emplace_back(static_cast<std::int64_t>(x >> (1U + (x % 63U))));
  }
  for (nanoseconds d : budgets) {
    const std::string text = http::format_grpc_timeout(d);
    auto back = http::parse_grpc_timeout(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_LE(*back, d) << text;
    EXPECT_LE(text.size(), 9U) << text;
  }
  for (nanoseconds d : std::vector<nanoseconds>{1ns, 1us, 1ms, 1s, 1min, 1h, 5ms}) {
    EXPECT_EQ(*http::parse_grpc_timeout(http::format_grpc_timeout(d)), d);  // whole units: exact
  }
}

// --- the server's budget -------------------------------------------------------------

const http::BudgetPolicy kPolicy{.max = 10s, .fallback = 2s};

http::Budget budget_of(const http::BudgetHeaders& headers,
                       const http::BudgetPolicy& policy = kPolicy) {
  auto b = http::request_budget(headers, policy);
  EXPECT_TRUE(b.has_value()) << b.error().message();
  EXPECT_TRUE(b.header().empty());
  return b.value_or(http::Budget{});
}

TEST(RequestBudget, UsesTheFallbackWithoutHeaders) {
  EXPECT_EQ(budget_of({}), (http::Budget{2s, http::BudgetSource::fallback}));
}

TEST(RequestBudget, UsesEitherHeaderBelowTheCap) {
  EXPECT_EQ(budget_of({.request_timeout_ms = "250"}),
            (http::Budget{250ms, http::BudgetSource::request_timeout_ms}));
  EXPECT_EQ(budget_of({.grpc_timeout = "3S"}),
            (http::Budget{3s, http::BudgetSource::grpc_timeout}));
  EXPECT_EQ(budget_of({.request_timeout_ms = "0"}),
            (http::Budget{0ms, http::BudgetSource::request_timeout_ms}));
}

TEST(RequestBudget, TheSmallerHeaderWinsAndMillisecondsWinATie) {
  EXPECT_EQ(budget_of({.request_timeout_ms = "5000", .grpc_timeout = "1S"}),
            (http::Budget{1s, http::BudgetSource::grpc_timeout}));
  EXPECT_EQ(budget_of({.request_timeout_ms = "500", .grpc_timeout = "1S"}),
            (http::Budget{500ms, http::BudgetSource::request_timeout_ms}));
  EXPECT_EQ(budget_of({.request_timeout_ms = "1000", .grpc_timeout = "1S"}),
            (http::Budget{1s, http::BudgetSource::request_timeout_ms}));
}

TEST(RequestBudget, NeverExceedsTheServerMaximum) {
  EXPECT_EQ(budget_of({.request_timeout_ms = "10001"}),
            (http::Budget{10s, http::BudgetSource::cap}));
  EXPECT_EQ(budget_of({.request_timeout_ms = "10000"}),
            (http::Budget{10s, http::BudgetSource::request_timeout_ms}));
  EXPECT_EQ(budget_of({.grpc_timeout = "99999999H"}), (http::Budget{10s, http::BudgetSource::cap}));
  EXPECT_EQ(budget_of({.request_timeout_ms = "9223372036854", .grpc_timeout = "2M"}),
            (http::Budget{10s, http::BudgetSource::cap}));
  EXPECT_EQ(budget_of({}, {.max = 1s, .fallback = 5s}),
            (http::Budget{1s, http::BudgetSource::cap}));
}

TEST(RequestBudget, NonPositivePolicyValuesMeanNoTime) {
  EXPECT_EQ(budget_of({.request_timeout_ms = "100"}, {.max = -1s, .fallback = 1s}),
            (http::Budget{0s, http::BudgetSource::cap}));
  EXPECT_EQ(budget_of({}, {.max = 1s, .fallback = -1s}),
            (http::Budget{0s, http::BudgetSource::fallback}));
}

TEST(RequestBudget, AnInvalidHeaderIsAnErrorNamingItEvenBesideAValidOne) {
  auto bad_ms = http::request_budget({.request_timeout_ms = "-1", .grpc_timeout = "1S"}, kPolicy);
  ASSERT_FALSE(bad_ms.has_value());
  EXPECT_EQ(bad_ms.error(), http::errc::not_a_number);
  EXPECT_EQ(bad_ms.header(), "X-Request-Timeout-Ms");

  auto bad_grpc =
      http::request_budget({.request_timeout_ms = "100", .grpc_timeout = "1s"}, kPolicy);
  ASSERT_FALSE(bad_grpc.has_value());
  EXPECT_EQ(bad_grpc.error(), http::errc::bad_unit);
  EXPECT_EQ(bad_grpc.header(), "grpc-timeout");
  EXPECT_EQ(http::bad_request_body(bad_grpc.header(), bad_grpc.error()),
            "invalid grpc-timeout header: the value has no unit, or one other than H, M, S, m, "
            "u or n\n");

  // A header that is present but empty is invalid, not absent.
  auto empty = http::request_budget({.request_timeout_ms = ""}, kPolicy);
  EXPECT_EQ(empty.error(), http::errc::empty);
}

TEST(BudgetSource, HasAName) {
  EXPECT_EQ(http::to_string(http::BudgetSource::fallback), "fallback");
  EXPECT_EQ(http::to_string(http::BudgetSource::request_timeout_ms), "X-Request-Timeout-Ms");
  EXPECT_EQ(http::to_string(http::BudgetSource::grpc_timeout), "grpc-timeout");
  EXPECT_EQ(http::to_string(http::BudgetSource::cap), "cap");
}

TEST(RequestContext, EndsWhenTheBudgetIsSpent) {
  const auto before = ctxpp::clock::now();
  auto [ctx, cancel] = http::request_context(ctxpp::background(), {5s, http::BudgetSource::cap});
  ASSERT_TRUE(ctx.deadline().has_value());
  EXPECT_GE(*ctx.deadline(), before + 5s);
  EXPECT_LE(*ctx.deadline(), ctxpp::clock::now() + 5s);
  EXPECT_FALSE(ctx.done());

  auto [zero, cancel_zero] =
      http::request_context(ctxpp::background(), {0s, http::BudgetSource::request_timeout_ms});
  EXPECT_TRUE(zero.done());
  EXPECT_EQ(zero.err(), ctxpp::errc::deadline_exceeded);
}

TEST(RequestContext, NeverOutlivesItsParent) {
  auto [server, stop] = ctxpp::with_timeout(ctxpp::background(), 1s);
  auto [ctx, cancel] = http::request_context(server, {10s, http::BudgetSource::fallback});
  EXPECT_EQ(ctx.deadline(), server.deadline());
  stop();
  EXPECT_EQ(ctx.err(), ctxpp::errc::canceled);
}

// --- what a client forwards ----------------------------------------------------------

TEST(OutgoingDeadline, ForwardsTheRemainderRoundedDownToMilliseconds) {
  auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), 1h);
  const auto deadline = *ctx.deadline();
  const auto out = http::outgoing_deadline(ctx, deadline - 1500ms - 999us);
  EXPECT_EQ(out.action, http::Forward::send);
  EXPECT_EQ(out.remaining, 1500ms);
  EXPECT_EQ(out.request_timeout_ms(), "1500");
  EXPECT_EQ(out.grpc_timeout(), "1500000u");

  const auto later = http::outgoing_deadline(ctx, deadline - 250ms);
  EXPECT_EQ(later.remaining, 250ms);
  EXPECT_EQ(later.request_timeout_ms(), "250");
  EXPECT_EQ(later.grpc_timeout(), "250000u");

  // The real clock: never more than was given.
  const auto now = http::outgoing_deadline(ctx);
  EXPECT_EQ(now.action, http::Forward::send);
  EXPECT_LE(now.remaining, 1h);
  EXPECT_GT(now.remaining, 59min);
}

TEST(OutgoingDeadline, FormattedRemainderNeverGrantsMoreThanIsLeft) {
  auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), 10min);
  const auto deadline = *ctx.deadline();
  for (nanoseconds left :
       std::vector<nanoseconds>{1ms, 1'000'001ns, 123'456'789ns, 599'999'999'999ns}) {
    const auto out = http::outgoing_deadline(ctx, deadline - left);
    ASSERT_EQ(out.action, http::Forward::send);
    EXPECT_LE(*http::parse_request_timeout(out.request_timeout_ms()), left);
    EXPECT_LE(*http::parse_grpc_timeout(out.grpc_timeout()), left);
  }
}

TEST(OutgoingDeadline, SaysDoNotSendWhenLessThanAMillisecondIsLeft) {
  auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), 1h);
  const auto deadline = *ctx.deadline();
  for (auto now : {deadline - 999us, deadline, deadline + 1s}) {
    const auto out = http::outgoing_deadline(ctx, now);
    EXPECT_EQ(out.action, http::Forward::do_not_send);
    EXPECT_EQ(out.remaining, 0ms);
    EXPECT_EQ(out.request_timeout_ms(), "");
    EXPECT_EQ(out.grpc_timeout(), "");
  }
}

TEST(OutgoingDeadline, SaysDoNotSendOnceTheContextEnded) {
  auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), 1h);
  cancel();
  EXPECT_EQ(http::outgoing_deadline(ctx).action, http::Forward::do_not_send);

  auto [plain, cancel_plain] = ctxpp::with_cancel(ctxpp::background());  // no deadline
  cancel_plain();
  EXPECT_EQ(http::outgoing_deadline(plain).action, http::Forward::do_not_send);

  auto [expired, cancel_expired] = ctxpp::with_timeout(ctxpp::background(), 0s);
  EXPECT_EQ(http::outgoing_deadline(expired).action, http::Forward::do_not_send);
}

TEST(OutgoingDeadline, SendsNoHeaderWithoutADeadline) {
  for (const ctxpp::Context& ctx : {ctxpp::background(), ctxpp::Context{}}) {
    const auto out = http::outgoing_deadline(ctx);
    EXPECT_EQ(out.action, http::Forward::no_deadline);
    EXPECT_EQ(out.remaining, 0ms);
    EXPECT_EQ(out.request_timeout_ms(), "");
  }
  auto [child, cancel] = ctxpp::with_cancel(ctxpp::background());
  EXPECT_EQ(http::outgoing_deadline(child).action, http::Forward::no_deadline);
}

TEST(OutgoingDeadline, ANeverFiringDeadlineForwardsTheLargestValue) {
  auto [ctx, cancel] = ctxpp::with_deadline(ctxpp::background(), ctxpp::clock::time_point::max());
  const auto out = http::outgoing_deadline(ctx);
  EXPECT_EQ(out.action, http::Forward::send);
  EXPECT_EQ(out.remaining, http::max_request_timeout);
  EXPECT_EQ(out.request_timeout_ms(), "9223372036854");
  EXPECT_TRUE(http::parse_grpc_timeout(out.grpc_timeout()).has_value());
  // A clock reading before the epoch must not overflow the subtraction.
  const auto early = http::outgoing_deadline(ctx, ctxpp::clock::time_point(-1h));
  EXPECT_EQ(early.remaining, http::max_request_timeout);
}

TEST(OutgoingDeadline, ServerToClientKeepsTheSmallerBudget) {
  // A request that arrived with 800 ms, forwarded by a server capped at 10 s.
  auto budget = http::request_budget({.request_timeout_ms = "800"}, kPolicy);
  ASSERT_TRUE(budget.has_value());
  auto [ctx, cancel] = http::request_context(ctxpp::background(), *budget);
  const auto out = http::outgoing_deadline(ctx);
  ASSERT_EQ(out.action, http::Forward::send);
  EXPECT_LE(out.remaining, 800ms);
  auto downstream = http::request_budget({.request_timeout_ms = out.request_timeout_ms()}, kPolicy);
  ASSERT_TRUE(downstream.has_value());
  EXPECT_LE(downstream->value, 800ms);
}

}  // namespace
