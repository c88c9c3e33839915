// ctxpp/sqlite/connection.hpp — a SQLite connection whose statements follow a context.
// Connection owns one sqlite3 handle and installs the two hooks that make the
// statements run through ctxpp::sqlite (statement.hpp) stop when their context ends:
// a progress handler that checks the context every few VM steps, and a busy handler
// that waits for a lock only as long as the context lives. open() honours the
// caller's context too. Close is RAII (sqlite3_close_v2); moving keeps the hooks valid.
// Example:
//   auto conn = ctxpp::sqlite::open(ctx, "app.db", {.busy_timeout = std::chrono::seconds(2)});
//   if (!conn) return conn.error();   // ctx's error, or errc::cantopen, ...
//   auto changes = ctxpp::sqlite::execute(ctx, *conn, "DELETE FROM sessions");
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <sqlite3.h>

#include "ctxpp/context.hpp"
#include "ctxpp/result.hpp"
#include "ctxpp/sqlite/error.hpp"

namespace ctxpp::sqlite {

/// How open() opens and sets up a connection. Every field has a working default.
struct OpenOptions {
  /// sqlite3_open_v2 flags. Add SQLITE_OPEN_URI for "file:" names,
  /// SQLITE_OPEN_READONLY instead of READWRITE|CREATE to read only.
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  /// How long a statement waits for a lock another connection holds before it fails
  /// with errc::busy; the wait also ends, with the context's error, the moment the
  /// statement's context ends. Zero: fail at once. Must not be negative.
  clock::duration busy_timeout = std::chrono::seconds(5);
  /// Switch the database to write-ahead logging (PRAGMA journal_mode=WAL): readers and
  /// one writer no longer block each other. The mode is stored in the file. A database
  /// that cannot use WAL (":memory:") keeps its mode silently (SQLite's rule).
  bool wal = false;
  /// PRAGMA foreign_keys=ON for this connection (SQLite's default is off).
  bool foreign_keys = false;
  /// How many SQLite VM steps run between two checks of the statement's context: the
  /// bound on how late a statement notices a context whose interrupt it missed. About
  /// 0.1 ms at the default; each check is one acquire load. Must be > 0.
  int progress_steps = 1000;
};

class Connection;

/// Opens (creating if flags allow) the database at path and sets the connection up
/// as options say; ctx bounds the set-up statements (WAL switch) and their lock waits.
/// Blocking: on the file system; with wal, up to busy_timeout for a lock, less if ctx
/// ends. Cost: sqlite3_open_v2 plus one statement per enabled pragma.
/// Errors: ctx.err() when ctx had ended before the call (nothing is opened) or ended
/// during set-up; errc::cantopen (no such directory, permissions, a missing file
/// without SQLITE_OPEN_CREATE), errc::nomem, errc::busy, ... A file that is not a
/// database opens and then fails on first use with errc::notadb. Throws
/// std::invalid_argument naming the field for a negative busy_timeout or
/// progress_steps <= 0; std::bad_alloc.
/// Thread safety: any thread; the connection returned is used by one thread at a time.
/// Ownership: the returned Connection owns the handle; nothing else keeps it.
Result<Connection> open(const Context& ctx, const std::string& path,
                        const OpenOptions& options = {});

namespace detail {
struct ConnectionState;
struct ConnectionAccess;
}  // namespace detail

/// Owns one sqlite3 connection. Move-only; a default-constructed, moved-from or
/// closed Connection is empty: raw() is nullptr and the statement functions fail with
/// errc::misuse.
/// Thread safety: one thread at a time runs statements or calls members, except
/// interrupt(), which any thread may call at any time while the Connection lives.
/// Ownership: the sqlite3 handle is closed with sqlite3_close_v2 by the destructor,
/// close() or a move assignment; statements left unfinalized on raw() keep SQLite's
/// side of it alive until they are finalized (SQLite's rule).
class Connection {
 public:
  /// An empty connection.
  Connection() noexcept;
  Connection(Connection&& other) noexcept;
  /// Closes what this connection held, then takes other's.
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  /// Holds an open handle. Cost: one load.
  explicit operator bool() const noexcept { return db_ != nullptr; }

  /// The handle, for SQLite calls this adapter does not wrap; nullptr when empty.
  /// Ownership: stays with the Connection: do not close it. Do not replace its
  /// progress or busy handler: they are how statements notice their context.
  /// Statements run directly on it are not tied to any context.
  sqlite3* raw() const noexcept { return db_; }

  /// Why the most recent ctxpp::sqlite call on this connection failed with a SQLite
  /// code: sqlite3_errmsg taken at the failure (a rollback after it does not erase
  /// it), e.g. "no such table: users", or the adapter's own reason for errc::misuse
  /// and errc::range. "" after a call that succeeded or ended with its context's
  /// error, and when empty. For statements run on raw(), ask sqlite3_errmsg.
  /// Cost: copies the text (allocation).
  std::string last_error_message() const;

  /// The rowid of the most recent successful INSERT on this connection; 0 if none
  /// (or empty). Cost: one call, no allocation.
  std::int64_t last_insert_rowid() const noexcept;

  /// Whether a transaction is open (BEGIN without COMMIT or ROLLBACK yet); false
  /// when empty. Cost: one call (sqlite3_get_autocommit).
  bool in_transaction() const noexcept;

  /// Stops the statement running on this connection now (sqlite3_interrupt), and
  /// makes every statement started through ctxpp::sqlite from now on fail with
  /// errc::interrupt before it runs, until clear_interrupt(): unlike a bare
  /// sqlite3_interrupt, an interrupt that lands between two statements is not lost.
  /// A pool's interrupt hook calls it; the pool's recycle hook clears it.
  /// Thread safety: any thread, at any time while the Connection is alive (not
  /// concurrently with its destruction, move or close()). Blocking: never.
  /// Cost: one atomic store and sqlite3_interrupt. No-op when empty.
  void interrupt() noexcept;

  /// True from interrupt() until clear_interrupt(). Thread safety: any thread.
  bool interrupted() const noexcept;

  /// Lets statements run again after interrupt(). Thread safety: the owning thread.
  void clear_interrupt() noexcept;

  /// Closes the handle now (sqlite3_close_v2); the connection becomes empty.
  /// Idempotent. Blocking: may write a WAL checkpoint (the last connection to a WAL
  /// database).
  void close() noexcept;

 private:
  friend struct detail::ConnectionAccess;
  explicit Connection(std::unique_ptr<detail::ConnectionState> state) noexcept;

  // Heap-allocated so that the pointer SQLite's hooks hold survives moves.
  std::unique_ptr<detail::ConnectionState> state_;
  sqlite3* db_ = nullptr;  // == state_->db, kept here for an inline raw()
};

}  // namespace ctxpp::sqlite
