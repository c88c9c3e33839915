// Tests of ctxpp/postgres/error.hpp: the "ctxpp.postgres" category.
#include "ctxpp/postgres/error.hpp"

#include <gtest/gtest.h>

#include <string>
#include <system_error>

#include "ctxpp/errc.hpp"

namespace {

using ctxpp::postgres::errc;

TEST(PostgresErrc, CategoryIsNamedAndEveryCodeHasItsOwnMessage) {
  EXPECT_STREQ(ctxpp::postgres::postgres_category().name(), "ctxpp.postgres");
  const errc all[] = {errc::connection_failed, errc::query_failed,  errc::broken_connection,
                      errc::protocol,          errc::not_connected, errc::interrupted};
  for (errc e : all) {
    const std::error_code ec = e;  // implicit: is_error_code_enum
    EXPECT_EQ(&ec.category(), &ctxpp::postgres::postgres_category());
    EXPECT_FALSE(ec.message().empty());
    EXPECT_EQ(ec.message().find("unknown"), std::string::npos) << ec.message();
    for (errc other : all) {
      if (other != e) {
        EXPECT_NE(ec.message(), std::error_code(other).message());
      }
    }
  }
  EXPECT_NE(std::error_code(static_cast<errc>(99)).message().find("unknown"), std::string::npos);
}

TEST(PostgresErrc, MapsToPortableConditionsWhereOneFits) {
  EXPECT_EQ(std::error_code(errc::interrupted), std::errc::operation_canceled);
  EXPECT_EQ(std::error_code(errc::broken_connection), std::errc::connection_reset);
  EXPECT_EQ(std::error_code(errc::not_connected), std::errc::not_connected);
  EXPECT_NE(std::error_code(errc::query_failed), std::errc::operation_canceled);
  // Never equal to a context's own endings: those are reported with ctxpp::errc.
  EXPECT_NE(std::error_code(errc::interrupted), ctxpp::errc::canceled);
}

}  // namespace
