#include "ctxpp/trace_context.hpp"

#include <gtest/gtest.h>

namespace {

TEST(TraceContext, NearestOneWinsAndChildrenInherit) {
  EXPECT_EQ(ctxpp::trace_context(ctxpp::background()), nullptr);
  ctxpp::TraceContext first;
  first.trace_id[15] = 1;
  first.flags = 1;
  ctxpp::TraceContext second = first;
  second.parent_id[7] = 2;
  const ctxpp::Context a = ctxpp::with_trace_context(ctxpp::background(), first);
  auto [child, cancel] = ctxpp::with_cancel(a);
  ASSERT_NE(ctxpp::trace_context(child), nullptr);
  EXPECT_EQ(*ctxpp::trace_context(child), first);
  EXPECT_TRUE(ctxpp::trace_context(child)->sampled());
  const ctxpp::Context b = ctxpp::with_trace_context(child, second);
  EXPECT_EQ(*ctxpp::trace_context(b), second);
  EXPECT_EQ(*ctxpp::trace_context(child), first);
  cancel();
}

}  // namespace
