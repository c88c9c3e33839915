// Tests of ctxpp/errc.hpp: the two outcomes of a context as std::error_code, their
// messages (Go's wording) and their portable conditions.
#include "ctxpp/errc.hpp"

#include <gtest/gtest.h>

#include <string>
#include <system_error>
#include <thread>
#include <type_traits>

namespace {

using ctxpp::context_category;
using ctxpp::errc;
using ctxpp::make_error_code;
using ctxpp::make_error_condition;

TEST(Errc, IsAnErrorCodeEnum) {
  static_assert(std::is_error_code_enum_v<errc>);
  static_assert(!std::is_error_condition_enum_v<errc>);
  const std::error_code ec = errc::canceled;  // implicit, through make_error_code (ADL)
  EXPECT_EQ(ec, make_error_code(errc::canceled));
  EXPECT_TRUE(ec == errc::canceled);
  EXPECT_FALSE(ec == errc::deadline_exceeded);
}

TEST(Errc, ValuesAreFixedAndNonZero) {
  EXPECT_EQ(static_cast<int>(errc::canceled), 1);
  EXPECT_EQ(static_cast<int>(errc::deadline_exceeded), 2);
  EXPECT_TRUE(make_error_code(errc::canceled)) << "an error must convert to true";
  EXPECT_TRUE(make_error_code(errc::deadline_exceeded));
  EXPECT_FALSE(std::error_code{}) << "{} means not done";
}

TEST(Errc, MakeErrorCodeUsesTheContextCategory) {
  const std::error_code canceled = make_error_code(errc::canceled);
  const std::error_code deadline = make_error_code(errc::deadline_exceeded);
  EXPECT_EQ(&canceled.category(), &context_category());
  EXPECT_EQ(&deadline.category(), &context_category());
  EXPECT_EQ(canceled.value(), 1);
  EXPECT_EQ(deadline.value(), 2);
  EXPECT_NE(canceled, deadline);
}

TEST(Errc, CategoryIsNamedCtxppAndIsOneObject) {
  EXPECT_STREQ(context_category().name(), "ctxpp");
  const std::error_category* here = &context_category();
  const std::error_category* there = nullptr;
  std::thread([&] { there = &context_category(); }).join();
  EXPECT_EQ(here, there);
  EXPECT_TRUE(*here != std::generic_category());
  EXPECT_TRUE(*here != std::system_category());
}

TEST(Errc, MessagesUseGosWording) {
  EXPECT_EQ(make_error_code(errc::canceled).message(), "context canceled");
  EXPECT_EQ(make_error_code(errc::deadline_exceeded).message(), "context deadline exceeded");
  EXPECT_EQ(context_category().message(1), "context canceled");
  EXPECT_EQ(context_category().message(2), "context deadline exceeded");
  // An unknown value still yields a message rather than throwing.
  EXPECT_FALSE(context_category().message(99).empty());
}

TEST(Errc, CanceledMapsToOperationCanceled) {
  const std::error_code ec = make_error_code(errc::canceled);
  EXPECT_TRUE(ec == std::errc::operation_canceled);
  EXPECT_FALSE(ec == std::errc::timed_out);
  EXPECT_EQ(ec.default_error_condition(), std::make_error_condition(std::errc::operation_canceled));
  EXPECT_EQ(make_error_condition(errc::canceled),
            std::make_error_condition(std::errc::operation_canceled));
}

TEST(Errc, DeadlineExceededMapsToTimedOut) {
  const std::error_code ec = make_error_code(errc::deadline_exceeded);
  EXPECT_TRUE(ec == std::errc::timed_out);
  EXPECT_FALSE(ec == std::errc::operation_canceled);
  EXPECT_EQ(ec.default_error_condition(), std::make_error_condition(std::errc::timed_out));
  EXPECT_EQ(make_error_condition(errc::deadline_exceeded),
            std::make_error_condition(std::errc::timed_out));
}

TEST(Errc, IsDistinctFromTheGenericCodesItMapsTo) {
  // Equivalent as conditions, but not the same error_code: ctx.err() can be told
  // apart from an OS error with the same meaning.
  EXPECT_NE(make_error_code(errc::canceled), std::make_error_code(std::errc::operation_canceled));
  EXPECT_NE(make_error_code(errc::deadline_exceeded), std::make_error_code(std::errc::timed_out));
}

TEST(Errc, UnknownValuesMapToNoPortableCondition) {
  const std::error_condition unknown = context_category().default_error_condition(99);
  EXPECT_NE(unknown, std::make_error_condition(std::errc::operation_canceled));
  EXPECT_NE(unknown, std::make_error_condition(std::errc::timed_out));
}

TEST(Errc, FunctionsAreNoexcept) {
  static_assert(noexcept(context_category()));
  static_assert(noexcept(make_error_code(errc::canceled)));
  static_assert(noexcept(make_error_condition(errc::canceled)));
  SUCCEED();
}

}  // namespace
