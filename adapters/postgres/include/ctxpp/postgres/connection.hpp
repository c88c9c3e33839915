// ctxpp/postgres/connection.hpp — a libpq connection that connects under a context.
// connect(ctx, conninfo) drives libpq's non-blocking connect (PQconnectStart and
// PQconnectPoll) while also watching ctx's done_fd(), so a connect to a slow or
// silent server stops the moment ctx ends. The Connection owns the PGconn (PQfinish
// on destruction) and a cancel handle prepared once, so a statement running on it
// can be cancelled server-side from any thread (request_cancel()). Statements run
// with ctxpp::postgres::query() (query.hpp).
// Example:
//   auto conn = ctxpp::postgres::connect(ctx, "host=127.0.0.1 dbname=app");
//   if (!conn) return conn.error();  // ctx's err(), or errc::connection_failed
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ctxpp/context.hpp"
#include "ctxpp/postgres/error.hpp"
#include "ctxpp/result.hpp"

namespace ctxpp::postgres {

namespace detail {
struct ConnectionState;
struct ConnectionAccess;
}  // namespace detail

/// One PostgreSQL connection: owns a PGconn, its prepared cancel handle and the
/// server's last error. Move-only.
/// Thread safety: one thread at a time uses a Connection (query(), broken(), the
/// error accessors, raw()), except request_cancel(), interrupt() and interrupted(),
/// which any thread may call at any time while the connection is neither moved nor
/// destroyed.
/// Ownership: PQfinish on destruction; a moved-from or default-constructed
/// Connection is empty (operator bool false, query() fails with not_connected).
/// Cost: besides libpq's, one eventfd per connection (to wake a query() on
/// interrupt()) and one small allocation.
class Connection {
 public:
  /// An empty connection. Cost: none.
  Connection() noexcept;

  /// Takes ownership of conn, a PGconn the caller connected itself (PQconnectdb,
  /// ...), and prepares it as connect() does: non-blocking mode, notices dropped
  /// (set your own with PQsetNoticeProcessor on raw() afterwards), a cancel handle.
  /// nullptr gives an empty connection; a conn whose status is bad gives a broken
  /// one. Errors: std::bad_alloc (conn is then finished, not leaked).
  static Connection adopt(PGconn* conn);

  Connection(Connection&& other) noexcept;
  /// Finishes the connection held before, then takes other's.
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Closes the connection (PQfinish: a Terminate message, then close()).
  /// Blocking: no longer than a send() on a non-blocking socket. A statement the
  /// server is still running when the socket closes runs on until it ends or next
  /// notices the client is gone: query() cancels before it gives a connection up.
  ~Connection();

  /// True if this holds a PGconn (healthy or broken). Cost: one load.
  explicit operator bool() const noexcept;

  /// True if the connection cannot run statements any more: the server closed it,
  /// the socket failed, a cancelled statement could not be drained in time, or the
  /// protocol state is unknown; also for an empty connection. Discard it (a pool's
  /// recycle hook does). Cost: a load and PQstatus().
  bool broken() const noexcept;

  /// Marks the connection broken for good (e.g. after misusing raw()).
  void mark_broken() noexcept;

  /// The libpq handle, or nullptr. Ownership: stays with the Connection; do not
  /// PQfinish it. Switching it back to blocking mode or leaving a command in
  /// progress makes the next query() fail with errc::protocol.
  PGconn* raw() const noexcept;

  /// Asks the server to cancel the statement running now on this connection
  /// (PQcancel, with the handle prepared at connect). Returns true if a statement
  /// was running and a cancel request was delivered (now, or earlier by another
  /// call for the same statement) or is being delivered by a concurrent call (this
  /// call then returns at once); false when no statement runs, the connection is
  /// empty, or the request could not be delivered. Once the server handles it, the
  /// statement's query() returns errc::interrupted (or its context's error if that
  /// context ended meanwhile).
  /// Never hits the next statement: a cancel that races the end of the statement
  /// it was aimed at is either handled by the server before the next statement is
  /// sent, or not at all (see the generation rule in src/connection.cpp).
  /// Thread safety: any thread, concurrently with query() and with itself.
  /// Blocking: PQcancel opens a connection to the server and waits for it to take
  /// the request: 10–20 ms on a local server, a network round trip plus connection
  /// setup on a remote one, longer while the server's postmaster is flooded with
  /// cancel requests (it forks for each). Never waits for another thread's request.
  /// Never call it on an event-loop thread or inline in a cancelling thread (a pool
  /// runs interrupt() on its callback executor). query() cancels by itself when its
  /// own context ends: this is for other threads.
  /// Errors: none reported beyond false; the failure text is not kept.
  bool request_cancel() noexcept;

  /// Stops this connection's work for good, until clear_interrupt(): the statement
  /// running now is cancelled server-side (as request_cancel()), and every later
  /// query() fails with errc::interrupted without sending anything. Unlike a bare
  /// request_cancel(), it cannot be lost: if it lands between two statements the
  /// next one is refused, and a running query() is woken and cancels (and retries
  /// the cancel) by itself, so a request the server dropped because it had not read
  /// the statement yet is repeated. What a pool's interrupt hook calls when a bound
  /// lease's context ends (pool_hooks() in pool.hpp); the recycle hook clears it.
  /// Thread safety: any thread, as request_cancel(). Blocking: as request_cancel()
  /// when a statement runs; a mutex section and a write() otherwise.
  /// Errors: none; a no-op on an empty connection.
  void interrupt() noexcept;

  /// True from interrupt() until clear_interrupt(). Thread safety: any thread.
  /// Cost: one acquire load.
  bool interrupted() const noexcept;

  /// Lets statements run again after interrupt(). Thread safety: the holder's
  /// thread, not concurrently with interrupt() (a pool orders its recycle after
  /// the interrupt). Cost: a mutex section and a read().
  void clear_interrupt() noexcept;

  /// The server's (or libpq's) message for the last failure of connect() or
  /// query() on this connection, without the trailing newline; empty after a
  /// success. Ownership: valid until the next query() on this connection.
  const std::string& last_error_message() const noexcept;

  /// The SQLSTATE of the last failed statement ("42P01", "57014", ...), or empty
  /// when the last failure carried none (connection errors) or there was none.
  const std::string& last_sqlstate() const noexcept;

  /// The server process id serving this connection (pg_stat_activity.pid), 0 when
  /// empty. Cost: one call into libpq, no I/O.
  int backend_pid() const noexcept;

 private:
  friend struct detail::ConnectionAccess;
  explicit Connection(std::unique_ptr<detail::ConnectionState> state) noexcept;
  std::unique_ptr<detail::ConnectionState> state_;
};

/// Connects to the server described by conninfo (a libpq connection string or
/// URI), giving up as soon as ctx ends.
/// Blocking: until connected, refused, or ctx ended. libpq resolves host names
/// synchronously inside the connect steps: use hostaddr (or an IP in host) where
/// a DNS stall must not outlast the context. connect_timeout in conninfo is not
/// applied by libpq's non-blocking connect: give ctx a deadline instead.
/// Errors: ctx's err() if it ended first (also when it had ended before the call:
/// then nothing is attempted); errc::connection_failed with libpq's text in
/// *error_message when not nullptr (unreachable, authentication, no such
/// database, bad conninfo); std::bad_alloc is thrown.
/// Cost: a socket, a server backend process, a few round trips, an eventfd, one
/// allocation for the Connection's state.
Result<Connection> connect(const Context& ctx, std::string_view conninfo,
                           std::string* error_message = nullptr);

namespace detail {
// Test hooks (not API): the connection's statement generation (odd while a
// statement runs; see src/connection.cpp) and the generation the last delivered
// cancel request was aimed at. Any thread.
std::uint64_t statement_generation(const Connection& conn) noexcept;
std::uint64_t last_canceled_generation(const Connection& conn) noexcept;
}  // namespace detail

}  // namespace ctxpp::postgres
