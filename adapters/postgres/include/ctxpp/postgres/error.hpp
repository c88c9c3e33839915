// ctxpp/postgres/error.hpp — what can go wrong talking to PostgreSQL, as std::error_code.
// A context that ends is reported with its own err() (errc::canceled or
// errc::deadline_exceeded), never with what the server said about the cancelled
// statement; these codes cover everything else: the server refused the connection
// or the statement, the connection broke, libpq answered something unexpected. The
// server's own text and SQLSTATE stay on the Connection (last_error_message()).
// Example:
//   auto rows = ctxpp::postgres::query(ctx, conn, "SELECT 1");
//   if (rows.error() == ctxpp::postgres::errc::query_failed) log(conn.last_error_message());
#pragma once

#include <system_error>

namespace ctxpp::postgres {

/// Why a PostgreSQL operation failed, when it was not because its context ended.
/// Zero is never used.
enum class errc {
  connection_failed = 1,  ///< connect(): the server could not be reached or refused us
  query_failed = 2,       ///< the server reported an error for the statement (see SQLSTATE)
  broken_connection = 3,  ///< the connection is lost or unusable; discard it
  protocol = 4,       ///< libpq or the server answered something query() cannot handle (COPY, ...)
  not_connected = 5,  ///< the Connection is empty (default-constructed or moved from)
  interrupted = 6,    ///< a cancel request stopped the statement although its context
                      ///< did not end: Connection::request_cancel() from another
                      ///< thread (a bound pool lease's context ended), an administrator's
                      ///< pg_cancel_backend(), or the server's statement_timeout (57014)
};

/// The category of errc; name() is "ctxpp.postgres". interrupted is equivalent to
/// std::errc::operation_canceled, broken_connection to std::errc::connection_reset,
/// not_connected to std::errc::not_connected. Thread safety: any thread.
/// Cost: a function-local static, no allocation.
const std::error_category& postgres_category() noexcept;

/// Wraps an errc into a std::error_code of postgres_category().
std::error_code make_error_code(errc e) noexcept;

}  // namespace ctxpp::postgres

template <>
struct std::is_error_code_enum<ctxpp::postgres::errc> : std::true_type {};
