// ctxpp/postgres/pool.hpp — PostgreSQL connections in a ctxpp::Pool.
// pool_hooks(conninfo) tells a ctxpp::Pool<Connection> how to connect (with the
// acquirer's context, so a waiting request never outlives its own connect), how to
// take a connection back (broken ones are destroyed, a transaction left open is
// rolled back, or the connection destroyed if that fails) and how to interrupt one
// whose bound lease's context ended (a server-side cancel of the running statement).
// Example:
//   ctxpp::Pool<ctxpp::postgres::Connection> pool(ctxpp::postgres::pool_hooks(conninfo),
//                                                 {.max_size = 16, .name = "db"});
//   auto lease = pool.acquire(ctx);
//   if (!lease) return lease.error();
//   auto rows = ctxpp::postgres::query(ctx, **lease, "SELECT 1");
#pragma once

#include <chrono>
#include <string>

#include "ctxpp/context.hpp"
#include "ctxpp/pool.hpp"
#include "ctxpp/postgres/connection.hpp"

namespace ctxpp::postgres {

/// Makes a connection fit for the next user: true if it is healthy and idle (no
/// transaction open), rolling back a transaction left open or failed first. Clears
/// a Connection::interrupt() first.
/// false for an empty or broken connection, one still busy with a statement, or
/// one whose ROLLBACK failed or took longer than rollback_budget (the connection
/// is then marked broken). Session state other than the transaction (SET values,
/// temporary tables, prepared statements, LISTEN) is kept.
/// Thread safety: as query() (the holder's thread). Blocking: only when a
/// transaction is open, for one ROLLBACK round trip, rollback_budget at most.
/// Errors: none beyond false; the server's text is in conn.last_error_message().
bool reset(Connection& conn, clock::duration rollback_budget = std::chrono::seconds(1));

/// The hooks of a Pool<Connection> on the server conninfo names.
/// - create: connect(ctx, conninfo) with the acquirer's context; a failure reaches
///   that acquire() as errc::connection_failed (or the context's error).
/// - recycle: reset(conn, rollback_budget); false destroys the connection.
/// - interrupt: conn.interrupt(): the running statement is cancelled server-side
///   (PQcancel blocks 10–20 ms on a local server, which is why the pool runs the
///   hook on its callback executor and never in the cancelling thread), and later
///   statements on the lease are refused until recycle. The statement returns
///   errc::interrupted, or its own context's error when that context ended too
///   (the usual case: a lease bound to the request's context, queries run with it).
/// Thread safety: the hooks may run on any threads at once, on different
/// connections. Ownership: each hook holds its own copy of conninfo.
/// Errors: std::bad_alloc.
PoolHooks<Connection> pool_hooks(std::string conninfo,
                                 clock::duration rollback_budget = std::chrono::seconds(1));

}  // namespace ctxpp::postgres
