// What a Connection shares with SQLite's hooks and with the statement functions.
//
// Invariants (cited as [Sn] below):
//  S1. A ConnectionState lives on the heap from open() until close: SQLite's progress
//      and busy handlers hold its address, so moving a Connection never moves it.
//  S2. active is written and read only on the thread running a statement of this
//      connection (the hooks run inside sqlite3_step on that thread): a plain pointer.
//      It points at the context of the innermost ctxpp::sqlite call under way, and is
//      nullptr outside one, so statements run directly on raw() ignore contexts.
//  S3. interrupted is the only field written by other threads (Connection::interrupt);
//      it carries no other data, so relaxed accesses suffice: a reader needs to see
//      the flag eventually, and sqlite3_interrupt, issued right after the store, stops
//      a statement already past its checks.
#pragma once

#include <atomic>
#include <string>

#include <sqlite3.h>

#include "ctxpp/context.hpp"
#include "ctxpp/sqlite/connection.hpp"

namespace ctxpp::sqlite::detail {

struct ConnectionState {
  sqlite3* db = nullptr;
  const Context* active = nullptr;       // [S2]
  std::atomic<bool> interrupted{false};  // [S3]
  // Set when a call failed with a code that says the connection or its file cannot
  // be trusted (I/O error, corruption, not a database): a pool discards it.
  bool broken = false;
  // Why the last call through ctxpp::sqlite failed with a SQLite code, captured at
  // once (a rollback after it would overwrite sqlite3_errmsg); "" otherwise.
  std::string last_error;
  clock::duration busy_timeout{};
  clock::time_point busy_since{};  // when the current lock wait began
};

struct ConnectionAccess {
  static ConnectionState* state(const Connection& conn) noexcept { return conn.state_.get(); }
  static Connection adopt(std::unique_ptr<ConnectionState> state) noexcept {
    return Connection(std::move(state));
  }
};

// Makes ctx the context of the calls on state's connection for its lifetime, and
// restores the enclosing call's context (a query run from a row callback) after.
class ActiveContext {
 public:
  ActiveContext(ConnectionState& state, const Context& ctx) noexcept
      : state_(state), previous_(state.active) {
    state_.active = &ctx;
  }
  ActiveContext(const ActiveContext&) = delete;
  ActiveContext& operator=(const ActiveContext&) = delete;
  ~ActiveContext() { state_.active = previous_; }

 private:
  ConnectionState& state_;
  const Context* previous_;
};

// Throws std::invalid_argument naming the first invalid field.
void validate(const OpenOptions& options);

// Whether a failure with this result code means the connection should not be reused.
inline bool breaks_connection(int result_code) noexcept {
  switch (result_code & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
      return true;
    default:
      return false;
  }
}

}  // namespace ctxpp::sqlite::detail
