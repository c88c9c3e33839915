// The "ctxpp.postgres" error category.
#include "ctxpp/postgres/error.hpp"

#include <string>

namespace ctxpp::postgres {
namespace {

class PostgresCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ctxpp.postgres"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::connection_failed:
        return "could not connect to the PostgreSQL server";
      case errc::query_failed:
        return "the PostgreSQL server reported an error for the statement";
      case errc::broken_connection:
        return "the PostgreSQL connection is broken";
      case errc::protocol:
        return "unexpected reply from PostgreSQL (unsupported result or connection state)";
      case errc::not_connected:
        return "no PostgreSQL connection (empty or moved-from Connection)";
      case errc::interrupted:
        return "the statement was cancelled by a cancel request";
    }
    return "unknown ctxpp.postgres error " + std::to_string(value);
  }

  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<errc>(value)) {
      case errc::interrupted:
        return std::errc::operation_canceled;
      case errc::broken_connection:
        return std::errc::connection_reset;
      case errc::not_connected:
        return std::errc::not_connected;
      case errc::connection_failed:
      case errc::query_failed:
      case errc::protocol:
        break;
    }
    return {value, *this};
  }
};

}  // namespace

const std::error_category& postgres_category() noexcept {
  static const PostgresCategory category;
  return category;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), postgres_category()};
}

}  // namespace ctxpp::postgres
