#include "ctxpp/debug.hpp"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "ctxpp/current.hpp"
#include "ctxpp/observe.hpp"
#include "ctxpp/pool.hpp"
#include "ctxpp/testing.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::FindingKind;

// Each test runs with the detectors on and starts from no findings.
class Detectors : public ::testing::Test {
 protected:
  void SetUp() override {
    ctxpp::DebugOptions options;
    options.mode = ctxpp::DebugMode::all;
    options.linger_bound = 20ms;
    ctxpp::set_debug(options);
    (void)ctxpp::take_debug_findings();
  }
  void TearDown() override {
    ctxpp::set_debug({});
    (void)ctxpp::take_debug_findings();
  }
  static std::vector<ctxpp::Finding> of(FindingKind kind) {
    std::vector<ctxpp::Finding> out;
    for (auto& f : ctxpp::debug_findings()) {
      if (f.kind == kind) out.push_back(f);
    }
    return out;
  }
};

// --- lost cancel -----------------------------------------------------------------------

TEST_F(Detectors, LostCancelIsReportedWithTheCreationSite) {
  ctxpp::Context kept;
  const unsigned line = __LINE__ + 2;
  {
    auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
    kept = ctx;  // the context lives on; nobody can cancel it any more
  }
  const auto found = of(FindingKind::lost_cancel);
  ASSERT_EQ(found.size(), 1U);
  EXPECT_EQ(found[0].where.line(), line);
  EXPECT_NE(found[0].message.find("no deadline"), std::string::npos) << found[0].message;
  EXPECT_EQ(found[0].context_id, ctxpp::context_id(kept));
}

TEST_F(Detectors, LostCancelIsSilentWhenTheContextWasCancelled) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  ctxpp::CancelFunc copy = cancel;  // copies count as handles
  cancel();
  EXPECT_TRUE(of(FindingKind::lost_cancel).empty());
}

TEST_F(Detectors, LostCancelWaitsForTheLastHandle) {
  ctxpp::CancelFunc survivor;
  {
    auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
    survivor = cancel;
  }
  EXPECT_TRUE(of(FindingKind::lost_cancel).empty()) << "a copy still lives";
  survivor = ctxpp::CancelFunc();
  EXPECT_EQ(of(FindingKind::lost_cancel).size(), 1U);
}

TEST_F(Detectors, LostCancelIgnoresANearDeadline) {
  { auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), 100ms); }
  { auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), 1h); }
  const auto found = of(FindingKind::lost_cancel);
  ASSERT_EQ(found.size(), 1U) << "only the one whose deadline is far away";
  EXPECT_NE(found[0].message.find("s away"), std::string::npos) << found[0].message;
}

// --- lingering -------------------------------------------------------------------------

TEST_F(Detectors, LingeringContextIsReportedAfterTheBound) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::with_name(ctxpp::background(), "job"));
  cancel();
  const ctxpp::Context kept = ctx;  // kept after its end: the leak
  EXPECT_TRUE(of(FindingKind::lingering_context).empty()) << "not before the bound";
  std::this_thread::sleep_for(40ms);
  const auto found = of(FindingKind::lingering_context);
  ASSERT_GE(found.size(), 1U);
  const bool job = std::any_of(found.begin(), found.end(),
                               [](const ctxpp::Finding& f) { return f.name == "job"; });
  EXPECT_TRUE(job);
  EXPECT_EQ(of(FindingKind::lingering_context).size(), found.size()) << "reported once";
}

TEST_F(Detectors, ContextsDroppedAfterTheirEndDoNotLinger) {
  {
    auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
    cancel();
  }
  std::this_thread::sleep_for(40ms);
  EXPECT_TRUE(of(FindingKind::lingering_context).empty());
}

TEST_F(Detectors, ComponentThatDoesNotFinishItsCleanupLingers) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  {
    ctxpp::ComponentScope scope(ctx, "uploader");
    cancel();
    std::this_thread::sleep_for(40ms);
    const auto found = of(FindingKind::lingering_scope);
    ASSERT_EQ(found.size(), 1U);
    EXPECT_EQ(found[0].name, "uploader");
  }
  EXPECT_EQ(of(FindingKind::lingering_scope).size(), 1U) << "not reported again at its end";
}

TEST_F(Detectors, ComponentThatCleansUpInTimeIsSilent) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  {
    ctxpp::ComponentScope scope(ctx, "cache");
    cancel();
  }
  std::this_thread::sleep_for(40ms);
  EXPECT_TRUE(of(FindingKind::lingering_scope).empty());
}

TEST_F(Detectors, LeaseKeptAfterItsContextEndedIsReported) {
  ctxpp::PoolOptions options;
  options.max_size = 1;
  options.name = "db";
  options.linger_after_context = 10ms;
  ctxpp::Pool<int> pool({.create = [](const ctxpp::Context&) { return ctxpp::Result<int>(1); }},
                        options);
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  auto lease = pool.acquire(ctx);
  ASSERT_TRUE(lease);
  cancel();
  ASSERT_TRUE(ctxpp_test::eventually([] { return !of(FindingKind::lingering_lease).empty(); }));
  const auto found = of(FindingKind::lingering_lease);
  EXPECT_EQ(found[0].name, "db");
  EXPECT_NE(found[0].message.find("debug_test.cpp"), std::string::npos) << found[0].message;
}

// --- broken chain ------------------------------------------------------------------------

TEST_F(Detectors, BackgroundInsideARequestIsABrokenChainWithBothSites) {
  auto [request, cancel] = ctxpp::with_cancel(ctxpp::with_name(ctxpp::background(), "request"));
  const unsigned scope_line = __LINE__ + 1;
  ctxpp::ContextScope scope(request);
  const unsigned line = __LINE__ + 1;
  auto [user_ctx, cancel_user] = ctxpp::with_cancel(ctxpp::background());  // the bug
  const auto found = of(FindingKind::broken_chain);
  ASSERT_EQ(found.size(), 1U) << "background() and the context made from it: one report";
  EXPECT_EQ(found[0].where.line(), line);
  EXPECT_EQ(found[0].other_where.line(), scope_line);
  EXPECT_EQ(found[0].name, "request");
  EXPECT_NE(found[0].message.find("background()"), std::string::npos);
  cancel();
}

TEST_F(Detectors, TodoAndDefaultConstructedParentsAreBrokenChainsToo) {
  auto [request, cancel] = ctxpp::with_cancel(ctxpp::background());
  ctxpp::ContextScope scope(request);
  (void)ctxpp::todo();
  auto [a, cancel_a] = ctxpp::with_cancel(ctxpp::Context{});
  EXPECT_EQ(of(FindingKind::broken_chain).size(), 2U);
  cancel();
}

TEST_F(Detectors, DerivingFromCurrentIsSilent) {
  auto [request, cancel] = ctxpp::with_cancel(ctxpp::background());
  ctxpp::ContextScope scope(request);
  auto [child, cancel_child] = ctxpp::with_timeout(ctxpp::current(), 1s);
  const ctxpp::Context detached = ctxpp::without_cancel(ctxpp::current());
  auto [under_detached, cancel_detached] = ctxpp::with_cancel(detached);
  cancel_child();
  cancel_detached();
  cancel();
  EXPECT_TRUE(of(FindingKind::broken_chain).empty());
}

TEST_F(Detectors, DetachedScopeAllowsADeliberateRoot) {
  auto [request, cancel] = ctxpp::with_cancel(ctxpp::background());
  ctxpp::ContextScope scope(request);
  {
    const ctxpp::DetachedScope detached;
    EXPECT_EQ(ctxpp::current(), ctxpp::background());
    auto [timer, cancel_timer] = ctxpp::with_timeout(ctxpp::background(), 1s);
    cancel_timer();
  }
  EXPECT_EQ(ctxpp::current(), request);
  EXPECT_TRUE(of(FindingKind::broken_chain).empty());
  cancel();
}

TEST_F(Detectors, NoScopeMeansNoChainToBreak) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  cancel();
  EXPECT_TRUE(of(FindingKind::broken_chain).empty());
}

// --- switching, parsing, reporting -------------------------------------------------------

TEST(DebugMode, OffReportsNothing) {
  ctxpp::set_debug({});
  (void)ctxpp::take_debug_findings();
  auto [request, cancel] = ctxpp::with_cancel(ctxpp::background());
  ctxpp::ContextScope scope(request);
  { auto [lost, lost_cancel] = ctxpp::with_cancel(ctxpp::background()); }
  EXPECT_TRUE(ctxpp::debug_findings().empty());
  cancel();
}

TEST(DebugMode, ParsesTheEnvironmentSyntax) {
  ctxpp::DebugMode mode = ctxpp::DebugMode::none;
  EXPECT_FALSE(ctxpp::parse_debug_mode("leaks,chains", mode));
  EXPECT_EQ(mode, ctxpp::DebugMode::all);
  EXPECT_FALSE(ctxpp::parse_debug_mode("chains", mode));
  EXPECT_EQ(mode, ctxpp::DebugMode::chains);
  EXPECT_FALSE(ctxpp::parse_debug_mode("", mode));
  EXPECT_EQ(mode, ctxpp::DebugMode::none);
  EXPECT_FALSE(ctxpp::parse_debug_mode("all", mode));
  EXPECT_EQ(mode, ctxpp::DebugMode::all);
  std::string unknown;
  EXPECT_EQ(ctxpp::parse_debug_mode("leaks, lol", mode, &unknown), std::errc::invalid_argument);
  EXPECT_EQ(unknown, "lol");
  EXPECT_EQ(mode, ctxpp::DebugMode::all) << "left unchanged on error";
}

TEST(DebugMode, RejectsNegativeBounds) {
  ctxpp::DebugOptions options;
  options.linger_bound = -1ms;
  EXPECT_THROW(ctxpp::set_debug(options), std::invalid_argument);
  options = {};
  options.lost_cancel_min_remaining = -1s;
  EXPECT_THROW(ctxpp::set_debug(options), std::invalid_argument);
}

TEST_F(Detectors, ReportListsEveryFindingOnItsOwnLine) {
  { auto [lost, lost_cancel] = ctxpp::with_cancel(ctxpp::background()); }
  ctxpp::Finding seeded;
  seeded.kind = FindingKind::lingering_lease;
  seeded.message = "seeded";
  ctxpp::report_finding(seeded);
  std::ostringstream out;
  ctxpp::write_debug_report(out);
  EXPECT_NE(out.str().find("ctxpp debug report: 2 findings"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("[lost_cancel]"), std::string::npos);
  EXPECT_NE(out.str().find("[lingering_lease] seeded"), std::string::npos);
  EXPECT_EQ(ctxpp::take_debug_findings().size(), 2U);
  EXPECT_TRUE(ctxpp::debug_findings().empty());
}

// --- the test helper -------------------------------------------------------------------

TEST(TestingHelper, FailsTheTestOnAFinding) {
  ctxpp::DebugOptions options;
  options.mode = ctxpp::DebugMode::leaks;
  ctxpp::set_debug(options);
  (void)ctxpp::take_debug_findings();
  { auto [lost, lost_cancel] = ctxpp::with_cancel(ctxpp::background()); }
  EXPECT_NONFATAL_FAILURE(ctxpp::testing::expect_no_findings(), "ctxpp lost_cancel");
  ctxpp::set_debug({});
}

class CleanHandler : public ctxpp::testing::NoFindingsTest {};

TEST_F(CleanHandler, PassesWhenNothingIsFound) {
  auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), 1h);
  ctxpp::ComponentScope scope(ctx, "handler");
  cancel();
  EXPECT_EQ(ctxpp::testing::expect_no_findings(), 0U);
}

}  // namespace
