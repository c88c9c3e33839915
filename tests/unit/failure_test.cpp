#include "ctxpp/failure.hpp"

#include <gtest/gtest.h>

#include <iterator>
#include <set>
#include <string>
#include <system_error>

#include "ctxpp/errc.hpp"

namespace {

using ctxpp::failure;

TEST(Failure, CodesBelongToTheFailureCategory) {
  const std::error_code ec = failure::budget_exceeded;
  EXPECT_EQ(&ec.category(), &ctxpp::failure_category());
  EXPECT_STREQ(ec.category().name(), "ctxpp.failure");
  EXPECT_EQ(ec.value(), 3);
  EXPECT_TRUE(static_cast<bool>(ec)) << "zero is never used: every failure is an error";
}

TEST(Failure, EveryCodeHasItsOwnMessage) {
  const failure all[] = {failure::exception, failure::not_joined,    failure::budget_exceeded,
                         failure::abandoned, failure::abandon_limit, failure::rejected};
  std::set<std::string> messages;
  for (failure f : all) {
    const std::string message = ctxpp::make_error_code(f).message();
    EXPECT_FALSE(message.empty());
    EXPECT_EQ(message.find("unknown"), std::string::npos) << message;
    messages.insert(message);
  }
  EXPECT_EQ(messages.size(), std::size(all));
  EXPECT_NE(std::error_code(99, ctxpp::failure_category()).message().find("unknown"),
            std::string::npos);
}

TEST(Failure, NeverEqualsAContextEnding) {
  // A failure is what went wrong around a context, never how it ended.
  EXPECT_NE(std::error_code(failure::exception), std::error_code(ctxpp::errc::canceled));
  EXPECT_NE(std::error_code(failure::abandon_limit),
            std::error_code(ctxpp::errc::deadline_exceeded));
  EXPECT_FALSE(std::error_code(failure::budget_exceeded) == std::errc::timed_out);
}

}  // namespace
