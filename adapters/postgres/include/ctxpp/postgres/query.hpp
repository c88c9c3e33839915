// ctxpp/postgres/query.hpp — run one statement under a context, cancelled server-side.
// query(ctx, conn, sql, params) sends the statement with libpq's asynchronous API
// and waits on the connection's socket and ctx's done_fd() at once. If ctx ends
// first, the server is asked to cancel the statement (PQcancel), the connection is
// drained of what the server still sends, and query() returns ctx.err(): the
// connection is then ready for the next statement. A connection that cannot be
// drained within a bound is marked broken() instead, so it is never reused half-way.
// Example:
//   auto [ctx, cancel] = ctxpp::with_timeout(request, std::chrono::milliseconds(200));
//   auto rows = ctxpp::postgres::query(ctx, conn, "SELECT name FROM users WHERE id = $1",
//                                      {std::to_string(id)});
//   if (!rows) return rows.error();       // deadline_exceeded, query_failed, ...
//   for (int r = 0; r < rows->rows(); ++r) use(rows->value(r, 0));
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

#include "ctxpp/context.hpp"
#include "ctxpp/postgres/connection.hpp"
#include "ctxpp/postgres/error.hpp"
#include "ctxpp/result.hpp"

namespace ctxpp::postgres {

/// One statement parameter in text form ($1, $2, ...); std::nullopt is SQL NULL.
using Param = std::optional<std::string_view>;

/// The parameters of a statement: a view of Param values, built from a braced list
/// (`{"42", std::nullopt}`) or from any contiguous range of Param (a vector, an
/// array). Ownership: views the caller's values, which must outlive the query()
/// call (a braced list's do). Cost: two words.
class Params {
 public:
  Params() noexcept = default;
  Params(std::initializer_list<Param> list) noexcept  // NOLINT(google-explicit-constructor)
      : values_(list.begin(), list.size()) {}
  // clang-format off
  template <class Range>
    requires std::convertible_to<const Range&, std::span<const Param>>
  Params(const Range& range) noexcept  // NOLINT(google-explicit-constructor)
      : values_(std::span<const Param>(range)) {}
  // clang-format on

  std::span<const Param> values() const noexcept { return values_; }

 private:
  std::span<const Param> values_;
};

/// How query() behaves when its context ends. Every field has a working default.
struct QueryOptions {
  /// Once the first cancel request is delivered, how long query() reads what the
  /// server still sends (the cancelled statement's error, or its result if it
  /// finished first) before it gives the connection up as broken. Zero or
  /// negative: given up at once (unless the statement had already finished).
  clock::duration drain_timeout = std::chrono::seconds(1);
  /// While draining, a cancel request is sent again after this long without an
  /// answer: the server drops a request that arrives before it has read the
  /// statement, so the first one can miss a statement sent just before ctx ended.
  /// Values below 1 ms count as 1 ms.
  clock::duration cancel_retry_interval = std::chrono::milliseconds(100);
};

/// The result of a statement: rows of text values. Owns its PGresult (PQclear on
/// destruction); independent of the connection once returned. Move-only.
/// Thread safety: const members may be called from any thread at once.
/// Cost: every accessor is O(1) and allocation-free.
/// Errors: an out-of-range row or column reads as SQL NULL (value() empty,
/// is_null() true); on an empty (moved-from) result rows() and columns() are 0.
class QueryResult {
 public:
  QueryResult() noexcept = default;
  /// Takes ownership of result (may be nullptr).
  explicit QueryResult(PGresult* result) noexcept : result_(result) {}
  QueryResult(QueryResult&& other) noexcept : result_(std::exchange(other.result_, nullptr)) {}
  QueryResult& operator=(QueryResult&& other) noexcept {
    QueryResult(std::move(other)).swap(*this);
    return *this;
  }
  QueryResult(const QueryResult&) = delete;
  QueryResult& operator=(const QueryResult&) = delete;
  ~QueryResult() {
    if (result_ != nullptr) PQclear(result_);
  }
  void swap(QueryResult& other) noexcept { std::swap(result_, other.result_); }

  /// Rows returned (0 for statements that return none).
  int rows() const noexcept;
  /// Columns of each row.
  int columns() const noexcept;
  /// The column's name ("?column?" for an unnamed expression); empty when out of range.
  std::string_view column_name(int column) const noexcept;
  /// The index of the column called name, or -1.
  int column_index(std::string_view name) const noexcept;
  /// The column's type OID (pg_type.oid; 23 is int4, 25 text), 0 when out of range.
  unsigned column_type(int column) const noexcept;
  /// The value in PostgreSQL's text form; empty for NULL (tell the two apart with
  /// is_null()). Ownership: valid while this QueryResult lives.
  std::string_view value(int row, int column) const noexcept;
  /// True for SQL NULL (and out of range).
  bool is_null(int row, int column) const noexcept;
  /// Rows inserted, updated, deleted, selected, ... as the command tag says
  /// (PQcmdTuples); 0 for commands without a count.
  std::uint64_t affected_rows() const noexcept;
  /// The command tag ("SELECT 1", "INSERT 0 3", "BEGIN").
  std::string_view command_tag() const noexcept;
  /// The libpq result, or nullptr. Ownership: stays with this object.
  PGresult* raw() const noexcept { return result_; }

 private:
  PGresult* result_ = nullptr;
};

/// Runs one SQL statement (no semicolon-separated lists: the extended protocol
/// takes one) with text parameters, and returns its rows.
/// When ctx ends before the result has arrived: the server is asked to cancel the
/// statement (PQcancel on this thread), what it still sends is read and dropped
/// for at most options.drain_timeout, and ctx.err() is returned; the connection
/// stays usable if it was drained and is marked broken() otherwise. A statement
/// that completed anyway before the cancel reached the server is reported as
/// ctx.err() as well: its effects stand (in autocommit mode they are committed;
/// inside a transaction a rollback undoes them).
/// Inside a transaction, a cancelled statement leaves the transaction failed: roll
/// it back (reset() in pool.hpp does so for pooled connections).
/// Blocking: until the result, or ctx's end plus the cancel (10–20 ms on a local
/// server) and the drain (a round trip; options.drain_timeout at most).
/// Thread safety: one statement at a time per connection (see Connection);
/// request_cancel() or interrupt() from another thread stops it with
/// errc::interrupted (after interrupt(), the same cancel-and-drain as for ctx).
/// Errors: ctx's err() (without sending anything if ctx had already ended);
/// errc::query_failed when the server rejected the statement, with the text and
/// SQLSTATE in conn.last_error_message() / last_sqlstate() (the connection stays
/// usable), or libpq refused to send it (more than 65535 parameters: nothing sent);
/// errc::interrupted for a cancel that did not come from ctx (SQLSTATE 57014), or after
/// conn.interrupt() (nothing sent until clear_interrupt()); errc::broken_connection when the
/// connection is or becomes unusable (nothing is sent on one already broken); errc::not_connected
/// on an empty connection; errc::protocol for results query() does not handle (COPY: the connection
/// is marked broken) or a connection left busy through raw(). std::bad_alloc is thrown. Cost: the
/// statement and its parameters are copied once into one buffer (libpq wants NUL-terminated
/// strings); a done_fd() of ctx (made on first use); poll().
Result<QueryResult> query(const Context& ctx, Connection& conn, std::string_view sql,
                          Params params = {}, const QueryOptions& options = {});

}  // namespace ctxpp::postgres
