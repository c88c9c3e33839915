// ctxpp/sqlite/statement.hpp — run SQL on a Connection until it is done or ctx ends.
// execute(), query() and execute_script() check the context before every step, and
// while a statement runs the connection's progress handler checks it every few VM
// steps and a scoped callback calls sqlite3_interrupt from the cancelling thread: a
// statement stops within about progress_steps VM steps of the context's end, however
// long it would have run, and the call returns the context's error (never
// SQLITE_INTERRUPT). The statement is finalized and the connection is ready for the
// next call; a transaction the call itself opened is rolled back.
// Example:
//   auto rows = ctxpp::sqlite::query(ctx, conn, "SELECT id, name FROM users WHERE age > ?",
//                                    {30}, [&](const ctxpp::sqlite::Row& row) {
//                                      names.emplace_back(row.text(1));
//                                    });
//   if (!rows) return rows.error();   // ctx's error, or a SQLite code (errc::error...)
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <sqlite3.h>

#include "ctxpp/context.hpp"
#include "ctxpp/result.hpp"
#include "ctxpp/sqlite/connection.hpp"
#include "ctxpp/sqlite/error.hpp"

namespace ctxpp::sqlite {

/// SQLite's storage classes, for parameters and columns.
enum class ValueType { null, integer, real, text, blob };

/// One statement parameter: NULL, an integer, a real, text or a blob. Text and blobs
/// are views: the characters must outlive the call they are passed to (a temporary
/// std::string in the argument list does).
/// Thread safety: immutable. Cost: 40 bytes, no allocation. Ownership: borrows.
class Param {
 public:
  /// NULL.
  constexpr Param(std::nullptr_t = nullptr) noexcept {}  // NOLINT(google-explicit-constructor)

  /// An integer. Types that may not fit SQLite's signed 64 bits (unsigned 64-bit)
  /// do not compile: convert them explicitly. bool binds 0 or 1.
  // clang-format off
  template <std::integral I>
    requires(std::is_signed_v<I> || sizeof(I) < sizeof(std::int64_t))
  constexpr Param(I value) noexcept  // NOLINT(google-explicit-constructor)
      : type_(ValueType::integer), integer_(static_cast<std::int64_t>(value)) {}
  // clang-format on

  /// A real.
  template <std::floating_point F>
  constexpr Param(F value) noexcept  // NOLINT(google-explicit-constructor)
      : type_(ValueType::real), real_(static_cast<double>(value)) {}

  /// UTF-8 text; a null pointer binds NULL.
  constexpr Param(const char* text) noexcept  // NOLINT(google-explicit-constructor)
      : type_(text != nullptr ? ValueType::text : ValueType::null),
        data_(text),
        size_(text != nullptr ? std::char_traits<char>::length(text) : 0) {}
  constexpr Param(std::string_view text) noexcept  // NOLINT(google-explicit-constructor)
      : type_(ValueType::text), data_(text.data()), size_(text.size()) {}
  Param(const std::string& text) noexcept  // NOLINT(google-explicit-constructor)
      : type_(ValueType::text), data_(text.data()), size_(text.size()) {}

  /// A blob (an empty one is a zero-length blob, not NULL).
  constexpr Param(std::span<const std::byte> blob) noexcept  // NOLINT
      : type_(ValueType::blob), data_(blob.data()), size_(blob.size()) {}

  ValueType type() const noexcept { return type_; }
  /// The value for its type; 0, 0.0 or empty for another type.
  std::int64_t integer() const noexcept { return type_ == ValueType::integer ? integer_ : 0; }
  double real() const noexcept { return type_ == ValueType::real ? real_ : 0.0; }
  std::string_view text() const noexcept {
    if (type_ != ValueType::text) return {};
    return {static_cast<const char*>(data_), size_};
  }
  std::span<const std::byte> blob() const noexcept {
    if (type_ != ValueType::blob) return {};
    return {static_cast<const std::byte*>(data_), size_};
  }

 private:
  ValueType type_ = ValueType::null;
  std::int64_t integer_ = 0;
  double real_ = 0.0;
  const void* data_ = nullptr;
  std::size_t size_ = 0;
};

/// The parameters of one statement, bound in order to ?1..?N (and to :name, @name,
/// $name parameters in order of first appearance). A view: pass a braced list
/// (`{42, "bob", nullptr}`), a std::vector<Param> or a span; what it views must
/// outlive the call.
/// Thread safety: immutable. Cost: two words. Ownership: borrows.
class Params {
 public:
  constexpr Params() noexcept = default;
  /// TRICKY: the list's array lives until the end of the full expression, like any
  /// braced list: pass it straight to a call, never keep such a Params in a variable.
  constexpr Params(std::initializer_list<Param> list) noexcept  // NOLINT
      : data_(std::data(list)), size_(list.size()) {}
  constexpr Params(std::span<const Param> list) noexcept  // NOLINT
      : data_(list.data()), size_(list.size()) {}
  Params(const std::vector<Param>& list) noexcept  // NOLINT
      : data_(list.data()), size_(list.size()) {}

  const Param* begin() const noexcept { return data_; }
  const Param* end() const noexcept { return data_ + size_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const Param& operator[](std::size_t i) const noexcept { return data_[i]; }

 private:
  const Param* data_ = nullptr;
  std::size_t size_ = 0;
};

namespace detail {
struct RowAccess;
}  // namespace detail

/// The current row of a query, as its row callback sees it. Columns are numbered from
/// 0. Reading a column as another type converts it by SQLite's rules (text "12" reads
/// as integer 12, NULL as 0 or ""). A column index outside [0, size()) reads as NULL.
/// Thread safety: the callback's thread only. Ownership: a view of the statement,
/// valid only inside the callback; a text() or blob() view stays valid until the
/// callback returns or the same column is read as another type. Not copyable.
/// Cost: each accessor is one SQLite call, no allocation.
class Row {
 public:
  Row(const Row&) = delete;
  Row& operator=(const Row&) = delete;

  /// The number of columns.
  int size() const noexcept;
  /// The column's storage class in this row.
  ValueType type(int column) const noexcept;
  bool is_null(int column) const noexcept { return type(column) == ValueType::null; }
  std::int64_t integer(int column) const noexcept;
  double real(int column) const noexcept;
  /// UTF-8 text; "" for NULL.
  std::string_view text(int column) const noexcept;
  std::span<const std::byte> blob(int column) const noexcept;
  /// The column's name (its AS alias if any); "" out of range.
  std::string_view name(int column) const noexcept;
  /// The statement, for SQLite calls this view does not wrap. Do not step, reset or
  /// finalize it.
  sqlite3_stmt* raw() const noexcept { return statement_; }

 private:
  friend struct detail::RowAccess;
  explicit Row(sqlite3_stmt* statement) noexcept : statement_(statement) {}
  bool in_range(int column) const noexcept;
  sqlite3_stmt* statement_;
};

/// What a query's row callback may be: called with each row, returning nothing or
/// something convertible to bool (false stops the query early, successfully).
template <class F>
concept RowCallback = std::invocable<F&, const Row&> &&
    (std::is_void_v<std::invoke_result_t<F&, const Row&>> ||
     std::convertible_to<std::invoke_result_t<F&, const Row&>, bool>);

namespace detail {
// A row callback without its type: call returns false to stop. May throw.
struct RowSink {
  void* target = nullptr;
  bool (*call)(void* target, const Row& row) = nullptr;
};
Result<void> run_query(const Context& ctx, Connection& conn, std::string_view sql, Params params,
                       RowSink sink);
}  // namespace detail

/// Runs one SQL statement with params, discarding any rows it returns, and returns
/// how many rows it inserted, updated or deleted (sqlite3_changes64; 0 for other
/// statements).
/// Cancellation: ctx is checked before each step; while the statement runs, ctx's end
/// interrupts it from the cancelling thread (sqlite3_interrupt) and the progress
/// handler stops it within OpenOptions::progress_steps VM steps, even if the end came
/// too early for the interrupt; a wait for another connection's lock ends too.
/// Transactions: if the connection was outside a transaction and the call fails, no
/// transaction is left open (SQLite rolls back its statement; a BEGIN the call ran is
/// rolled back). Inside the caller's explicit transaction SQLite decides: an
/// interrupted or failed write rolls the whole transaction back (in_transaction()
/// turns false), an interrupted read leaves it open. Either way ROLLBACK, with a
/// context that has not ended, before using the connection for something else.
/// Blocking: until the statement is done, ctx ends, or a lock wait passes
/// OpenOptions::busy_timeout.
/// Cost: prepares the statement (no statement cache); one callback registration on
/// ctx (none for a context that cannot end); one acquire load per step.
/// Errors: ctx.err() if ctx ended before the call (nothing runs) or stopped the
/// statement (also when the statement, ending, reports a lock wait given up);
/// errc::interrupt after Connection::interrupt(); errc::misuse on an empty connection
/// or when sql holds more than one statement; errc::range when params.size() differs
/// from the statement's parameter count; SQLite's code otherwise (errc::error for a
/// syntax error or missing table, errc::constraint, errc::busy...), with the text in
/// conn.last_error_message(). An empty sql (only comments) does nothing.
/// Thread safety: conn is used by this thread only for the duration.
Result<std::int64_t> execute(const Context& ctx, Connection& conn, std::string_view sql,
                             Params params = {});

/// Runs one SQL statement with params and calls on_row with each row it returns, in
/// order, on the calling thread. on_row may return bool: false stops the query (a
/// success). An exception thrown by on_row ends the statement as a failure would and
/// propagates to the caller. on_row may run other statements on conn.
/// Cancellation, transactions, blocking, errors: as execute(). A context that ends
/// while on_row runs stops the query before its next row.
/// Cost: as execute(), plus one indirect call per row; no allocation per row.
/// Ownership: on_row is called by reference during the call, never copied or kept.
template <RowCallback F>
Result<void> query(const Context& ctx, Connection& conn, std::string_view sql, Params params,
                   F&& on_row) {
  detail::RowSink sink;
  sink.target = const_cast<void*>(static_cast<const void*>(std::addressof(on_row)));
  sink.call = [](void* target, const Row& row) -> bool {
    auto& f = *static_cast<std::remove_reference_t<F>*>(target);
    if constexpr (std::is_void_v<std::invoke_result_t<F&, const Row&>>) {
      f(row);
      return true;
    } else {
      return static_cast<bool>(f(row));
    }
  };
  return detail::run_query(ctx, conn, sql, params, sink);
}

/// query() for a statement without parameters.
template <RowCallback F>
Result<void> query(const Context& ctx, Connection& conn, std::string_view sql, F&& on_row) {
  return query(ctx, conn, sql, Params{}, std::forward<F>(on_row));
}

/// Runs every statement of sql in order (a schema, a migration), discarding rows;
/// stops at the first failure. No parameters.
/// Cancellation and transactions: as execute(), checked before each statement too;
/// a script that opens its own transaction (BEGIN; ...; COMMIT) and fails or is
/// stopped before its COMMIT leaves nothing behind: that transaction is rolled back.
/// Blocking, cost, errors: as execute(), per statement; errc::misuse on an empty
/// connection.
Result<void> execute_script(const Context& ctx, Connection& conn, std::string_view sql);

}  // namespace ctxpp::sqlite
