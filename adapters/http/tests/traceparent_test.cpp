// ctxpp/http/traceparent.hpp: W3C traceparent parsing (version 00 and later), exact
// formatting, children for downstream calls, and carrying it in a context.
#include "ctxpp/http/traceparent.hpp"

#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ctxpp/context.hpp"
#include "ctxpp/http/error.hpp"

namespace {

namespace http = ctxpp::http;
using namespace std::string_view_literals;

constexpr std::string_view kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

constexpr std::array<std::uint8_t, 16> kTraceId = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                                   0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
constexpr std::array<std::uint8_t, 8> kParentId = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};

struct Reject {
  std::string_view value;
  http::errc expected;
};

// 257 bytes: a later version may be long, but not longer than the guard.
const std::string kTooLong = "cc" + std::string(kValid.substr(2)) + "-" + std::string(201, 'a');
const std::string kLongest = "cc" + std::string(kValid.substr(2)) + "-" + std::string(200, 'a');

TEST(ParseTraceparent, ReadsAVersion00Value) {
  auto tp = http::parse_traceparent(kValid);
  ASSERT_TRUE(tp.has_value()) << tp.error().message();
  EXPECT_EQ(tp->trace_id, kTraceId);
  EXPECT_EQ(tp->parent_id, kParentId);
  EXPECT_EQ(tp->flags, 0x01);
  EXPECT_TRUE(tp->sampled());

  auto unsampled =
      http::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(unsampled.has_value());
  EXPECT_FALSE(unsampled->sampled());
  // Unknown flags are kept, not rejected.
  auto flags = http::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe");
  ASSERT_TRUE(flags.has_value());
  EXPECT_EQ(flags->flags, 0xfe);
  EXPECT_FALSE(flags->sampled());
  // OWS around the value is trimmed.
  auto spaced = http::parse_traceparent(" \t" + std::string(kValid) + " ");
  ASSERT_TRUE(spaced.has_value());
  EXPECT_EQ(*spaced, *tp);
}

TEST(ParseTraceparent, ReadsTheVersion00PrefixOfALaterVersion) {
  for (std::string_view v : {
           "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"sv,
           "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"sv,
           "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds"sv,
           "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"sv,
           std::string_view(kLongest),
       }) {
    auto tp = http::parse_traceparent(v);
    ASSERT_TRUE(tp.has_value()) << v << ": " << tp.error().message();
    EXPECT_EQ(tp->trace_id, kTraceId) << v;
    EXPECT_EQ(tp->parent_id, kParentId) << v;
    EXPECT_EQ(tp->flags, 0x01) << v;
    // Forwarded as version 00, the only one known here.
    EXPECT_EQ(http::format_traceparent(*tp), kValid) << v;
  }
}

TEST(ParseTraceparent, RejectsMalformedValuesWithTheReason) {
  const std::vector<Reject> cases = {
      {"", http::errc::empty},
      {"  ", http::errc::empty},
      {kTooLong, http::errc::too_long},
      // length and layout
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", http::errc::bad_format},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", http::errc::bad_format},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00", http::errc::bad_format},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-010", http::errc::bad_format},
      {"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", http::errc::bad_format},
      {"00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01", http::errc::bad_format},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b701-", http::errc::bad_format},
      {"000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", http::errc::bad_format},
      {"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", http::errc::bad_format},
      {"4bf92f3577b34da6a3ce929d0e0e4736", http::errc::bad_format},
      // hex digits: lowercase only
      {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", http::errc::bad_hex},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", http::errc::bad_hex},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", http::errc::bad_hex},
      {"0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", http::errc::bad_hex},
      {"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", http::errc::bad_hex},
      {"00-4bf92f3577b34da6a3ce929d0e0e473 -00f067aa0ba902b7-01", http::errc::bad_hex},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b\0-01"sv, http::errc::bad_hex},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-\xff\xff", http::errc::bad_hex},
      // version ff and all-zero ids
      {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", http::errc::bad_version},
      {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", http::errc::zero_id},
      {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", http::errc::zero_id},
  };
  for (const Reject& c : cases) {
    auto tp = http::parse_traceparent(c.value);
    ASSERT_FALSE(tp.has_value()) << "'" << c.value << "'";
    EXPECT_EQ(tp.error(), http::make_error_code(c.expected))
        << "'" << c.value << "': " << tp.error().message();
  }
}

TEST(FormatTraceparent, WritesVersion00AndRoundTripsExactly) {
  for (std::string_view v : {kValid, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"sv,
                             "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-ff"sv,
                             "00-00000000000000000000000000000001-0000000000000001-09"sv}) {
    auto tp = http::parse_traceparent(v);
    ASSERT_TRUE(tp.has_value()) << v;
    EXPECT_EQ(http::format_traceparent(*tp), v);
    EXPECT_EQ(*http::parse_traceparent(http::format_traceparent(*tp)), *tp);
  }
  http::TraceParent made;
  made.trace_id = kTraceId;
  made.parent_id = kParentId;
  made.flags = 1;
  EXPECT_EQ(http::format_traceparent(made), kValid);
}

TEST(ChildOf, KeepsTraceAndFlagsAndTakesTheGivenParentId) {
  const http::TraceParent parent = *http::parse_traceparent(kValid);
  const std::array<std::uint8_t, 8> span = {1, 2, 3, 4, 5, 6, 7, 8};
  const http::TraceParent child = http::child_of(parent, span);
  EXPECT_EQ(child.trace_id, parent.trace_id);
  EXPECT_EQ(child.flags, parent.flags);
  EXPECT_EQ(child.parent_id, span);
  EXPECT_EQ(http::format_traceparent(child),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01");
  // An all-zero parent-id would be invalid: a random one is used instead.
  const http::TraceParent fixed = http::child_of(parent, std::array<std::uint8_t, 8>{});
  EXPECT_NE(fixed.parent_id, (std::array<std::uint8_t, 8>{}));
  EXPECT_TRUE(http::parse_traceparent(http::format_traceparent(fixed)).has_value());
}

TEST(ChildOf, MakesDistinctValidParentIdsOnEveryThread) {
  const http::TraceParent parent = *http::parse_traceparent(kValid);
  std::set<std::array<std::uint8_t, 8>> seen;
  for (int i = 0; i < 1000; ++i) {
    const http::TraceParent child = http::child_of(parent);
    EXPECT_EQ(child.trace_id, parent.trace_id);
    EXPECT_EQ(child.flags, parent.flags);
    EXPECT_NE(child.parent_id, parent.parent_id);
    EXPECT_TRUE(http::parse_traceparent(http::format_traceparent(child)).has_value());
    seen.insert(child.parent_id);
  }
  EXPECT_EQ(seen.size(), 1000U);
  // Another thread has its own generator: its ids differ from this thread's.
  std::vector<std::array<std::uint8_t, 8>> other;
  std::thread([&] {
    for (int i = 0; i < 100; ++i) other.push_back(http::child_of(parent).parent_id);
  }).join();
  for (const auto& id : other) EXPECT_EQ(seen.count(id), 0U);
}

TEST(NewTrace, IsValidRandomAndSampledAsAsked) {
  const http::TraceParent a = http::new_trace(true);
  const http::TraceParent b = http::new_trace(false);
  EXPECT_TRUE(a.sampled());
  EXPECT_EQ(a.flags, 0x01);
  EXPECT_FALSE(b.sampled());
  EXPECT_EQ(b.flags, 0x00);
  EXPECT_NE(a.trace_id, b.trace_id);
  for (const http::TraceParent& tp : {a, b}) {
    auto back = http::parse_traceparent(http::format_traceparent(tp));
    ASSERT_TRUE(back.has_value()) << back.error().message();
    EXPECT_EQ(*back, tp);
  }
}

TEST(WithTraceparent, IsCarriedToDescendantsAndReplacedByANearerOne) {
  EXPECT_FALSE(http::traceparent(ctxpp::background()).has_value());
  EXPECT_FALSE(http::traceparent(ctxpp::Context{}).has_value());

  const http::TraceParent tp = *http::parse_traceparent(kValid);
  const ctxpp::Context ctx = http::with_traceparent(ctxpp::background(), tp);
  ASSERT_TRUE(http::traceparent(ctx).has_value());
  EXPECT_EQ(*http::traceparent(ctx), tp);

  auto [child, cancel] = ctxpp::with_timeout(ctx, std::chrono::seconds(5));
  EXPECT_EQ(http::traceparent(child), tp);
  EXPECT_FALSE(child.done());

  const http::TraceParent next = http::child_of(tp);
  const ctxpp::Context nested = http::with_traceparent(child, next);
  EXPECT_EQ(http::traceparent(nested), next);
  EXPECT_EQ(http::traceparent(child), tp);  // the outer one is unchanged

  // Carrying it changes nothing about cancellation: the parent's end reaches it.
  cancel();
  EXPECT_TRUE(nested.done());
  EXPECT_EQ(http::traceparent(nested), next);
}

}  // namespace
