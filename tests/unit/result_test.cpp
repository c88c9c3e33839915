// Tests of ctxpp/result.hpp: a value or the error that explains its absence.
#include "ctxpp/result.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include "ctxpp/errc.hpp"
#include "ctxpp/failure.hpp"

namespace {

using ctxpp::BadResultAccess;
using ctxpp::Result;

std::error_code canceled() { return ctxpp::make_error_code(ctxpp::errc::canceled); }

TEST(Result, HoldsAValueAndReportsNoError) {
  Result<int> r = 42;
  EXPECT_TRUE(r.has_value());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_FALSE(r.error());
  EXPECT_EQ(r.value(), 42);
  EXPECT_EQ(*r, 42);
}

TEST(Result, HoldsAnErrorAndNoValue) {
  Result<int> r = canceled();
  EXPECT_FALSE(r.has_value());
  EXPECT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.error(), ctxpp::errc::canceled);
  EXPECT_EQ(r.error(), std::errc::operation_canceled) << "maps to the portable condition";
}

TEST(Result, OperatorBoolIsExplicitAndTracksHasValue) {
  static_assert(!std::is_convertible_v<Result<int>, bool>, "no implicit conversion to bool");
  static_assert(std::is_constructible_v<bool, Result<int>>, "explicit conversion to bool");
  const Result<std::string> good = std::string("x");
  const Result<std::string> bad = std::make_error_code(std::errc::io_error);
  EXPECT_TRUE(good);
  EXPECT_FALSE(bad);
  if (bad) ADD_FAILURE() << "a Result holding an error must test false";
}

TEST(Result, ValueThrowsBadResultAccessCarryingTheError) {
  Result<int> r = ctxpp::make_error_code(ctxpp::failure::rejected);
  try {
    (void)r.value();
    ADD_FAILURE() << "value() on an error must throw";
  } catch (const BadResultAccess& e) {
    EXPECT_EQ(e.code(), ctxpp::failure::rejected);
  }
  const Result<int>& cr = r;
  EXPECT_THROW((void)cr.value(), BadResultAccess);
  EXPECT_THROW((void)std::move(r).value(), BadResultAccess);
}

TEST(Result, BadResultAccessIsASystemError) {
  static_assert(std::is_base_of_v<std::system_error, BadResultAccess>);
  Result<std::string> r = canceled();
  try {
    (void)r.value();
    ADD_FAILURE() << "value() on an error must throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), ctxpp::errc::canceled);
  }
}

TEST(Result, ValueOrReturnsTheValueOrTheFallback) {
  const Result<int> good = 7;
  const Result<int> bad = canceled();
  EXPECT_EQ(good.value_or(-1), 7);
  EXPECT_EQ(bad.value_or(-1), -1);
  const Result<std::string> text = canceled();
  EXPECT_EQ(text.value_or("fallback"), "fallback") << "the fallback converts to T";
}

TEST(Result, MoveOnlyValueCanBeMovedOut) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r.value(), 5);
  std::unique_ptr<int> taken = std::move(r).value();
  ASSERT_NE(taken, nullptr);
  EXPECT_EQ(*taken, 5);
}

TEST(Result, ArrowAndStarReachTheValue) {
  Result<std::string> r = std::string("hello");
  EXPECT_EQ(r->size(), 5U);
  (*r).append("!");
  EXPECT_EQ(r.value(), "hello!");
  const Result<std::string>& cr = r;
  EXPECT_EQ(cr->size(), 6U);
  EXPECT_EQ(*cr, "hello!");
}

TEST(ResultVoid, DefaultIsSuccess) {
  Result<void> r;
  EXPECT_TRUE(r.has_value());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_FALSE(r.error());
  EXPECT_NO_THROW(r.value());
}

TEST(ResultVoid, ErrorIsFailureAndValueThrowsItsError) {
  Result<void> r = ctxpp::make_error_code(ctxpp::errc::deadline_exceeded);
  EXPECT_FALSE(r.has_value());
  EXPECT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.error(), ctxpp::errc::deadline_exceeded);
  try {
    r.value();
    ADD_FAILURE() << "value() on an error must throw";
  } catch (const BadResultAccess& e) {
    EXPECT_EQ(e.code(), ctxpp::errc::deadline_exceeded);
  }
}

}  // namespace
