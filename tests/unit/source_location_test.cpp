#include "ctxpp/source_location.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

ctxpp::SourceLocation where_called(ctxpp::SourceLocation where = ctxpp::SourceLocation::current()) {
  return where;
}

TEST(SourceLocation, AsADefaultArgumentNamesTheCaller) {
  const unsigned line = __LINE__ + 1;
  const ctxpp::SourceLocation where = where_called();
  EXPECT_EQ(where.line(), line);
  EXPECT_NE(std::string(where.file_name()).find("source_location_test.cpp"), std::string::npos);
  EXPECT_NE(std::string(where.function_name()).find("TestBody"), std::string::npos);
}

TEST(SourceLocation, DefaultConstructedIsEmptyNotNull) {
  constexpr ctxpp::SourceLocation none;
  EXPECT_STREQ(none.file_name(), "");
  EXPECT_STREQ(none.function_name(), "");
  EXPECT_EQ(none.line(), 0U);
}

}  // namespace
