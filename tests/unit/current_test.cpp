#include "ctxpp/current.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace {

TEST(Current, IsBackgroundWithoutAScope) {
  EXPECT_EQ(ctxpp::current(), ctxpp::background());
  EXPECT_EQ(ctxpp::current_scope(), nullptr);
}

TEST(Current, ScopesNestAndRestore) {
  auto [outer, cancel_outer] = ctxpp::with_cancel(ctxpp::background());
  auto [inner, cancel_inner] = ctxpp::with_cancel(outer);
  {
    const unsigned line = __LINE__ + 1;
    ctxpp::ContextScope a(outer);
    EXPECT_EQ(ctxpp::current(), outer);
    EXPECT_EQ(ctxpp::current_scope()->where().line(), line);
    {
      ctxpp::ContextScope b(inner);
      EXPECT_EQ(ctxpp::current(), inner);
    }
    EXPECT_EQ(ctxpp::current(), outer);
  }
  EXPECT_EQ(ctxpp::current(), ctxpp::background());
}

TEST(Current, IsPerThread) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  ctxpp::ContextScope scope(ctx);
  bool other_sees_background = false;
  std::thread([&] { other_sees_background = ctxpp::current() == ctxpp::background(); }).join();
  EXPECT_TRUE(other_sees_background);
}

TEST(Current, ScopeKeepsItsContextAlive) {
  std::optional<ctxpp::ContextScope> scope;
  {
    auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
    scope.emplace(ctx);
    cancel();
  }
  EXPECT_TRUE(ctxpp::current().done()) << "the scope's copy outlives the caller's";
  scope.reset();
}

TEST(Current, DetachedScopeIsBackgroundAndMarked) {
  auto [ctx, cancel] = ctxpp::with_cancel(ctxpp::background());
  ctxpp::ContextScope scope(ctx);
  {
    const ctxpp::DetachedScope detached;
    EXPECT_EQ(ctxpp::current(), ctxpp::background());
    ASSERT_NE(ctxpp::current_scope(), nullptr);
    EXPECT_TRUE(ctxpp::current_scope()->detached());
  }
  EXPECT_FALSE(ctxpp::current_scope()->detached());
}

}  // namespace
