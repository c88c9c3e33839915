// ctxpp/sqlite/error.hpp — SQLite's result codes as std::error_code.
// Everything in ctxpp::sqlite reports failure as a std::error_code: the context's
// err() when the context ended (errc::canceled, errc::deadline_exceeded — never
// SQLITE_INTERRUPT), otherwise SQLite's extended result code in the "ctxpp.sqlite"
// category, whose message is sqlite3_errstr's. ctxpp::sqlite::errc names the primary
// codes as portable conditions: an extended code (SQLITE_CONSTRAINT_UNIQUE) compares
// equal to its primary one (errc::constraint).
// Example:
//   auto changes = ctxpp::sqlite::execute(ctx, conn, "INSERT INTO t VALUES (?)", {42});
//   if (changes.error() == ctxpp::sqlite::errc::constraint) return duplicate();
#pragma once

#include <system_error>

#include <sqlite3.h>

namespace ctxpp::sqlite {

/// SQLite's primary result codes, as error conditions of sqlite_category(). An error
/// code of that category equals a condition when its value is the condition's value or
/// an extended code of it (value & 0xff). Any other SQLite code may be cast in too.
enum class errc : int {
  error = SQLITE_ERROR,            ///< SQL error or missing database (syntax, no such table)
  internal = SQLITE_INTERNAL,      ///< a bug in SQLite
  perm = SQLITE_PERM,              ///< access permission denied
  abort = SQLITE_ABORT,            ///< a callback requested an abort
  busy = SQLITE_BUSY,              ///< the database file is locked (busy_timeout passed)
  locked = SQLITE_LOCKED,          ///< a table in the database is locked
  nomem = SQLITE_NOMEM,            ///< out of memory
  readonly = SQLITE_READONLY,      ///< attempt to write a read-only database
  interrupt = SQLITE_INTERRUPT,    ///< Connection::interrupt() (never a context's end)
  ioerr = SQLITE_IOERR,            ///< disk I/O error
  corrupt = SQLITE_CORRUPT,        ///< the database disk image is malformed
  full = SQLITE_FULL,              ///< the database or disk is full
  cantopen = SQLITE_CANTOPEN,      ///< unable to open the database file
  protocol = SQLITE_PROTOCOL,      ///< locking protocol error
  schema = SQLITE_SCHEMA,          ///< the schema changed
  toobig = SQLITE_TOOBIG,          ///< string or blob too big
  constraint = SQLITE_CONSTRAINT,  ///< a constraint failed (unique, not null, foreign key…)
  mismatch = SQLITE_MISMATCH,      ///< data type mismatch
  misuse = SQLITE_MISUSE,          ///< library misuse (an empty connection, two statements)
  range = SQLITE_RANGE,            ///< parameter count or index out of range
  notadb = SQLITE_NOTADB,          ///< the file is not a database
};

/// The category of SQLite result codes: name() "ctxpp.sqlite", message() from
/// sqlite3_errstr (the primary code's text for most extended codes).
/// Thread safety: any thread. Cost: a function-local static, no allocation.
const std::error_category& sqlite_category() noexcept;

/// Wraps a SQLite result code (primary or extended, never SQLITE_OK) into an error
/// code of sqlite_category(). Thread safety: any thread. Cost: none beyond the
/// category lookup.
std::error_code make_error_code(int result_code) noexcept;

/// The condition for a primary code, to compare error codes with:
/// `ec == ctxpp::sqlite::errc::busy`.
std::error_condition make_error_condition(errc e) noexcept;

}  // namespace ctxpp::sqlite

template <>
struct std::is_error_condition_enum<ctxpp::sqlite::errc> : std::true_type {};
