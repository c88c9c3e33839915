// ctxpp/sqlite/pool.hpp — the hooks that let ctxpp::Pool hold SQLite connections.
// pool_hooks() opens connections with the acquirer's context, interrupts a bound
// lease's statement when its context ends, and on return rolls back what a holder
// left open and discards a connection that cannot be trusted, so a request that was
// cancelled mid-query hands the next one a healthy connection.
// Example:
//   ctxpp::Pool<ctxpp::sqlite::Connection> pool(ctxpp::sqlite::pool_hooks("app.db"),
//                                               {.max_size = 4});
//   auto lease = pool.acquire(ctx);
//   if (!lease) return lease.error();
//   auto rows = ctxpp::sqlite::query(ctx, **lease, "SELECT ...", on_row);
#pragma once

#include <string>

#include "ctxpp/pool.hpp"
#include "ctxpp/sqlite/connection.hpp"

namespace ctxpp::sqlite {

/// Makes a connection returned to a pool ready for its next holder, and says whether
/// it may be reused: false for an empty connection, one with statements still
/// unfinalized (a holder kept a sqlite3_stmt of raw(): reusing it would share it),
/// one whose calls failed with errc::ioerr, corrupt, notadb or cantopen, or one
/// whose open transaction cannot be rolled back. Otherwise clears interrupt() and
/// rolls back a transaction left open (BEGIN without COMMIT), then returns true.
/// Thread safety: conn is not in use by anyone else (the pool's recycle contract).
/// Blocking: the rollback, if any (short: it drops the journal).
/// Errors: none beyond the answer; never throws.
bool recycle(Connection& conn) noexcept;

/// The hooks for a ctxpp::Pool<Connection> of connections to path:
/// - create: open(ctx, path, options) with the acquirer's context, so acquire()
///   returns ctx's error, or SQLite's (errc::cantopen...), when opening fails;
/// - recycle: recycle() above;
/// - interrupt: Connection::interrupt(): the statement running on a bound lease's
///   connection stops at once, and one about to start does not run (the connection
///   stays interrupted until recycle), so the pool reclaims it promptly. A statement
///   stopped that way whose own context has not ended fails with errc::interrupt.
/// Errors: throws std::invalid_argument naming the field for invalid options (as
/// open() would, but at once, where the pool is made); std::bad_alloc.
/// Ownership: the hooks keep copies of path and options.
/// Cost: what open() costs, per connection created.
PoolHooks<Connection> pool_hooks(std::string path, OpenOptions options = {});

}  // namespace ctxpp::sqlite
