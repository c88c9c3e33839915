// ctxpp/sqlite/error.hpp: SQLite's codes as error codes, primary codes as conditions.
#include "ctxpp/sqlite/error.hpp"

#include <string>
#include <system_error>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "ctxpp/errc.hpp"

namespace {

namespace sq = ctxpp::sqlite;

TEST(SqliteCategory, IsNamedAndSpeaksSqliteErrstr) {
  const std::error_code busy = sq::make_error_code(SQLITE_BUSY);
  EXPECT_STREQ(busy.category().name(), "ctxpp.sqlite");
  EXPECT_EQ(&busy.category(), &sq::sqlite_category());
  EXPECT_EQ(busy.value(), SQLITE_BUSY);
  EXPECT_EQ(busy.message(), std::string(sqlite3_errstr(SQLITE_BUSY)));
  EXPECT_EQ(sq::make_error_code(SQLITE_CONSTRAINT_UNIQUE).message(),
            std::string(sqlite3_errstr(SQLITE_CONSTRAINT_UNIQUE)));
}

TEST(SqliteCategory, ExtendedCodeEqualsItsPrimaryConditionOnly) {
  const std::error_code unique = sq::make_error_code(SQLITE_CONSTRAINT_UNIQUE);
  EXPECT_EQ(unique.value(), SQLITE_CONSTRAINT_UNIQUE);  // the detail is kept
  EXPECT_TRUE(unique == sq::errc::constraint);
  EXPECT_FALSE(unique == sq::errc::busy);
  EXPECT_FALSE(unique == sq::errc::error);
  // An extended condition matches exactly.
  EXPECT_TRUE(unique == static_cast<sq::errc>(SQLITE_CONSTRAINT_UNIQUE));
  EXPECT_FALSE(sq::make_error_code(SQLITE_CONSTRAINT_NOTNULL) ==
               static_cast<sq::errc>(SQLITE_CONSTRAINT_UNIQUE));
}

TEST(SqliteCategory, ContextEndsAndSqliteConditionsNeverMatch) {
  const std::error_code canceled = ctxpp::errc::canceled;
  EXPECT_FALSE(canceled == sq::errc::interrupt);
  EXPECT_FALSE(canceled == sq::errc::abort);
  EXPECT_FALSE(sq::make_error_code(SQLITE_INTERRUPT) == std::errc::operation_canceled);
  // The same number in another category is another error.
  EXPECT_FALSE(std::error_code(SQLITE_BUSY, std::generic_category()) == sq::errc::busy);
}

TEST(SqliteCategory, ConditionsAreOfTheSameCategory) {
  const std::error_condition busy = sq::errc::busy;
  EXPECT_EQ(&busy.category(), &sq::sqlite_category());
  EXPECT_EQ(busy.value(), SQLITE_BUSY);
  EXPECT_EQ(sq::make_error_condition(sq::errc::misuse).value(), SQLITE_MISUSE);
}

}  // namespace
