// The "ctxpp.sqlite" category: SQLite's extended result codes as error codes, its
// primary codes as the conditions they compare equal to.
#include "ctxpp/sqlite/error.hpp"

#include <string>

namespace ctxpp::sqlite {
namespace {

class SqliteCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ctxpp.sqlite"; }

  std::string message(int value) const override {
    // sqlite3_errstr returns static text for any value, "unknown error" if unknown.
    return sqlite3_errstr(value);
  }

  // An extended code carries its primary code in its low byte (SQLite's encoding),
  // so SQLITE_CONSTRAINT_UNIQUE (2067) is errc::constraint (19).
  bool equivalent(const std::error_code& code, int condition) const noexcept override {
    if (code.category() != *this) return false;
    return code.value() == condition || (code.value() & 0xff) == condition;
  }
};

}  // namespace

const std::error_category& sqlite_category() noexcept {
  static const SqliteCategory category;
  return category;
}

std::error_code make_error_code(int result_code) noexcept {
  return {result_code, sqlite_category()};
}

std::error_condition make_error_condition(errc e) noexcept {
  return {static_cast<int>(e), sqlite_category()};
}

}  // namespace ctxpp::sqlite
