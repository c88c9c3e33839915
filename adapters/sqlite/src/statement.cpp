// execute, query, execute_script: one statement loop, three ways of feeding it.
//
// A call stops its statement by three means, because each alone has a hole [S-rules
// of connection_state.hpp apply]:
//  C1. ctx.done() before every sqlite3_step: catches an end that came before the
//      statement started or between two rows, when no interrupt could reach it.
//  C2. a ScopedCallback calls sqlite3_interrupt from the cancelling thread: stops a
//      step already running, at once. It is lost if it lands while no statement of the
//      connection is running (SQLite 3.40 clears it when the next statement starts).
//  C3. the progress handler (connection.cpp) checks ctx every progress_steps VM steps:
//      catches an end that C2 lost in the window between C1 and the step.
// Order of undoing, which the scopes in run_call() encode:
//  U1. the statement is finalized first (its implicit transaction ends with it);
//  U2. then the ScopedCallback is deregistered, which waits for an interrupt running on
//      another thread, so no interrupt can land after U3 has begun;
//  U3. last, a transaction the call opened is rolled back if the call failed.
#include "ctxpp/sqlite/statement.hpp"

#include <climits>
#include <memory>
#include <string>

#include "ctxpp/scoped_callback.hpp"
#include "connection_state.hpp"

namespace ctxpp::sqlite {

namespace detail {
struct RowAccess {
  static Row make(sqlite3_stmt* statement) noexcept { return Row(statement); }
};
}  // namespace detail

// ---------------------------------------------------------------------------------------
// Row

int Row::size() const noexcept { return sqlite3_column_count(statement_); }

bool Row::in_range(int column) const noexcept {
  return column >= 0 && column < sqlite3_column_count(statement_);
}

ValueType Row::type(int column) const noexcept {
  if (!in_range(column)) return ValueType::null;
  switch (sqlite3_column_type(statement_, column)) {
    case SQLITE_INTEGER:
      return ValueType::integer;
    case SQLITE_FLOAT:
      return ValueType::real;
    case SQLITE_TEXT:
      return ValueType::text;
    case SQLITE_BLOB:
      return ValueType::blob;
    default:
      return ValueType::null;
  }
}

std::int64_t Row::integer(int column) const noexcept {
  return in_range(column) ? sqlite3_column_int64(statement_, column) : 0;
}

double Row::real(int column) const noexcept {
  return in_range(column) ? sqlite3_column_double(statement_, column) : 0.0;
}

std::string_view Row::text(int column) const noexcept {
  if (!in_range(column)) return {};
  // column_text first, then column_bytes: that order never converts twice.
  const unsigned char* text = sqlite3_column_text(statement_, column);
  if (text == nullptr) return {};
  const int size = sqlite3_column_bytes(statement_, column);
  return {reinterpret_cast<const char*>(text), static_cast<std::size_t>(size)};
}

std::span<const std::byte> Row::blob(int column) const noexcept {
  if (!in_range(column)) return {};
  const void* blob = sqlite3_column_blob(statement_, column);
  if (blob == nullptr) return {};
  const int size = sqlite3_column_bytes(statement_, column);
  return {static_cast<const std::byte*>(blob), static_cast<std::size_t>(size)};
}

std::string_view Row::name(int column) const noexcept {
  if (!in_range(column)) return {};
  const char* name = sqlite3_column_name(statement_, column);
  return name != nullptr ? std::string_view(name) : std::string_view();
}

// ---------------------------------------------------------------------------------------
// The statement loop

namespace {

using detail::ConnectionState;

struct Finalize {
  void operator()(sqlite3_stmt* statement) const noexcept { sqlite3_finalize(statement); }
};
using Statement = std::unique_ptr<sqlite3_stmt, Finalize>;

// A failure the adapter itself detects, with its reason kept for last_error_message().
std::error_code own_failure(ConnectionState& state, int code, std::string reason) {
  state.last_error = std::move(reason);
  return make_error_code(code);
}

// A failure SQLite reported. An interrupt, or a lock wait given up, while ctx has
// ended is ctx's end, not SQLite's failure: report the cause, not the symptom; after
// Connection::interrupt() it is that interrupt.
std::error_code sqlite_failure(const Context& ctx, ConnectionState& state, int rc) {
  const int primary = rc & 0xff;
  if (primary == SQLITE_INTERRUPT || primary == SQLITE_BUSY) {
    if (ctx.done()) return ctx.err();
    if (state.interrupted.load(std::memory_order_relaxed)) {  // [S3]
      return own_failure(state, SQLITE_INTERRUPT, "the connection was interrupted");
    }
  }
  state.last_error = sqlite3_errmsg(state.db);
  if (detail::breaks_connection(rc)) state.broken = true;
  return make_error_code(rc);
}

// [C1] What stops a call before its next step.
std::error_code check_before_step(const Context& ctx, ConnectionState& state) {
  if (ctx.done()) return ctx.err();
  if (state.interrupted.load(std::memory_order_relaxed)) {  // [S3]
    return own_failure(state, SQLITE_INTERRUPT, "the connection was interrupted");
  }
  return {};
}

// Steps statement to its end, handing each row to sink (if any).
std::error_code step_all(const Context& ctx, ConnectionState& state, sqlite3_stmt* statement,
                         const detail::RowSink* sink) {
  for (;;) {
    if (auto stop = check_before_step(ctx, state)) return stop;
    // ctxpp-audit: ignore CTX004 — the connection's progress handler interrupts it [C1]
    const int rc = sqlite3_step(statement);
    if (rc == SQLITE_DONE) return {};
    if (rc != SQLITE_ROW) return sqlite_failure(ctx, state, rc);
    if (sink != nullptr) {
      const Row row = detail::RowAccess::make(statement);
      if (!sink->call(sink->target, row)) return {};
    }
  }
}

std::error_code bind_all(ConnectionState& state, sqlite3_stmt* statement, Params params) {
  const int expected = sqlite3_bind_parameter_count(statement);
  if (params.size() != static_cast<std::size_t>(expected)) {
    return own_failure(state, SQLITE_RANGE,
                       std::to_string(params.size()) + " parameters given, the statement has " +
                           std::to_string(expected));
  }
  int index = 1;
  for (const Param& param : params) {
    int rc = SQLITE_OK;
    switch (param.type()) {
      case ValueType::null:
        rc = sqlite3_bind_null(statement, index);
        break;
      case ValueType::integer:
        rc = sqlite3_bind_int64(statement, index, param.integer());
        break;
      case ValueType::real:
        rc = sqlite3_bind_double(statement, index, param.real());
        break;
      case ValueType::text: {
        // SQLITE_STATIC: the caller's characters outlive the call (Params' contract).
        const std::string_view text = param.text();
        rc = sqlite3_bind_text64(statement, index, text.data() != nullptr ? text.data() : "",
                                 text.size(), SQLITE_STATIC, SQLITE_UTF8);
        break;
      }
      case ValueType::blob: {
        const std::span<const std::byte> blob = param.blob();
        rc = blob.empty()
                 ? sqlite3_bind_zeroblob(statement, index, 0)
                 : sqlite3_bind_blob64(statement, index, blob.data(), blob.size(), SQLITE_STATIC);
        break;
      }
    }
    if (rc != SQLITE_OK) {
      state.last_error = sqlite3_errmsg(state.db);
      return make_error_code(rc);
    }
    ++index;
  }
  return {};
}

// Whether [tail, end) holds no further statement: only spaces, semicolons or
// comments. The common tails (nothing, ";") are decided without SQLite.
bool holds_no_statement(sqlite3* db, const char* tail, const char* end) {
  const char* p = tail;
  while (p != end && (*p == ';' || *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) ++p;
  if (p == end) return true;
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db, p, static_cast<int>(end - p), 0, &raw, nullptr);
  Statement next(raw);
  return rc == SQLITE_OK && next == nullptr;
}

// Prepares, binds and runs the single statement in sql. changes, if given, receives
// the rows it changed.
std::error_code run_one(const Context& ctx, ConnectionState& state, std::string_view sql,
                        Params params, const detail::RowSink* sink, std::int64_t* changes) {
  if (sql.size() > static_cast<std::size_t>(INT_MAX)) {
    return own_failure(state, SQLITE_TOOBIG, "the SQL text is longer than INT_MAX bytes");
  }
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  const int rc =
      sqlite3_prepare_v3(state.db, sql.data(), static_cast<int>(sql.size()), 0, &raw, &tail);
  Statement statement(raw);  // [U1]
  if (rc != SQLITE_OK) return sqlite_failure(ctx, state, rc);
  if (!holds_no_statement(state.db, tail, sql.data() + sql.size())) {
    return own_failure(state, SQLITE_MISUSE,
                       "the SQL holds more than one statement: use execute_script");
  }
  if (statement == nullptr) {  // only comments or spaces
    if (!params.empty()) {
      return own_failure(state, SQLITE_RANGE,
                         std::to_string(params.size()) + " parameters given, the SQL is empty");
    }
    if (changes != nullptr) *changes = 0;
    return {};
  }
  if (auto error = bind_all(state, statement.get(), params)) return error;
  const std::int64_t total_before = sqlite3_total_changes64(state.db);
  if (auto error = step_all(ctx, state, statement.get(), sink)) return error;
  if (changes != nullptr) {
    // sqlite3_changes64 keeps the count of the last INSERT/UPDATE/DELETE: a statement
    // that changed nothing (DDL, SELECT) must not report an earlier one's.
    *changes = sqlite3_total_changes64(state.db) != total_before ? sqlite3_changes64(state.db) : 0;
  }
  return {};
}

std::error_code run_script(const Context& ctx, ConnectionState& state, std::string_view sql) {
  if (sql.size() > static_cast<std::size_t>(INT_MAX)) {
    return own_failure(state, SQLITE_TOOBIG, "the SQL text is longer than INT_MAX bytes");
  }
  const char* next = sql.data();
  const char* const end = sql.data() + sql.size();
  while (next != end) {
    if (auto stop = check_before_step(ctx, state)) return stop;
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    const int rc = sqlite3_prepare_v3(state.db, next, static_cast<int>(end - next), 0, &raw, &tail);
    Statement statement(raw);  // [U1]
    if (rc != SQLITE_OK) return sqlite_failure(ctx, state, rc);
    if (tail == nullptr || tail == next) break;  // nothing consumed: only spaces left
    next = tail;
    if (statement == nullptr) continue;  // a comment or an empty statement
    if (sqlite3_bind_parameter_count(statement.get()) != 0) {
      return own_failure(state, SQLITE_RANGE, "a script takes no parameters: use execute");
    }
    if (auto error = step_all(ctx, state, statement.get(), nullptr)) return error;
  }
  return {};
}

// Rolls back, when destroyed after a failure, a transaction that the call opened
// [U3]: the connection was outside a transaction when the call began and is inside
// one now.
class RollbackOpenedTransaction {
 public:
  explicit RollbackOpenedTransaction(ConnectionState& state) noexcept
      : state_(state), was_outside_(sqlite3_get_autocommit(state.db) != 0) {}
  RollbackOpenedTransaction(const RollbackOpenedTransaction&) = delete;
  RollbackOpenedTransaction& operator=(const RollbackOpenedTransaction&) = delete;
  ~RollbackOpenedTransaction() {
    if (succeeded_ || !was_outside_ || sqlite3_get_autocommit(state_.db) != 0) return;
    // No context is active here (the call's is gone, and an enclosing call's must not
    // stop this): the rollback runs to its end. It is short: it only drops the journal.
    const Context* enclosing = state_.active;
    state_.active = nullptr;
    sqlite3_exec(state_.db, "ROLLBACK", nullptr, nullptr, nullptr);
    state_.active = enclosing;
  }
  void succeeded() noexcept { succeeded_ = true; }

 private:
  ConnectionState& state_;
  const bool was_outside_;
  bool succeeded_ = false;
};

// The frame of every call: the checks before it, the active context, the interrupt
// callback, and the undoing in the order U1-U3 (body finalizes its own statements).
template <class Body>
std::error_code run_call(const Context& ctx, Connection& conn, Body&& body) {
  ConnectionState* state = detail::ConnectionAccess::state(conn);
  if (state == nullptr) return make_error_code(SQLITE_MISUSE);
  state->last_error.clear();
  if (auto stop = check_before_step(ctx, *state)) return stop;

  RollbackOpenedTransaction rollback(*state);  // [U3]
  std::error_code error;
  {
    detail::ActiveContext active(*state, ctx);  // [S2]
    sqlite3* db = state->db;
    // [C2] Runs in the cancelling thread (or right here if ctx ends meanwhile: the
    // check before the first step then stops the call).
    ScopedCallback interrupt_on_end(ctx, [db]() noexcept { sqlite3_interrupt(db); });
    error = std::forward<Body>(body)(*state);
  }  // [U2]
  if (!error) rollback.succeeded();
  return error;
}

}  // namespace

namespace detail {

Result<void> run_query(const Context& ctx, Connection& conn, std::string_view sql, Params params,
                       RowSink sink) {
  const std::error_code error = run_call(ctx, conn, [&](ConnectionState& state) {
    return run_one(ctx, state, sql, params, &sink, nullptr);
  });
  if (error) return error;
  return {};
}

}  // namespace detail

Result<std::int64_t> execute(const Context& ctx, Connection& conn, std::string_view sql,
                             Params params) {
  std::int64_t changes = 0;
  const std::error_code error = run_call(ctx, conn, [&](ConnectionState& state) {
    return run_one(ctx, state, sql, params, nullptr, &changes);
  });
  if (error) return error;
  return changes;
}

Result<void> execute_script(const Context& ctx, Connection& conn, std::string_view sql) {
  const std::error_code error =
      run_call(ctx, conn, [&](ConnectionState& state) { return run_script(ctx, state, sql); });
  if (error) return error;
  return {};
}

}  // namespace ctxpp::sqlite
