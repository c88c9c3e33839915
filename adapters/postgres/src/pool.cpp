// The hooks that put PostgreSQL connections in a ctxpp::Pool.
#include "ctxpp/postgres/pool.hpp"

#include <utility>

#include "ctxpp/current.hpp"
#include "ctxpp/postgres/query.hpp"

namespace ctxpp::postgres {

bool reset(Connection& conn, clock::duration rollback_budget) {
  if (!conn || conn.broken()) return false;
  // The pool calls recycle after a bound lease's interrupt, never during it.
  conn.clear_interrupt();
  switch (PQtransactionStatus(conn.raw())) {
    case PQTRANS_IDLE:
      return true;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR: {
      // A budget of its own: the lease's context has often ended by now (that is
      // how a statement gets cancelled inside a transaction), and a rollback must
      // still happen before anyone else gets the connection.
      const DetachedScope detached;  // deliberately not the request's context
      auto [ctx, cancel] = with_timeout(background(), rollback_budget);
      const Result<QueryResult> rolled_back = query(ctx, conn, "ROLLBACK");
      cancel();
      if (!rolled_back || conn.broken() || PQtransactionStatus(conn.raw()) != PQTRANS_IDLE) {
        conn.mark_broken();
        return false;
      }
      return true;
    }
    case PQTRANS_ACTIVE:   // a command still in progress (left through raw())
    case PQTRANS_UNKNOWN:  // the connection is bad
      break;
  }
  return false;
}

PoolHooks<Connection> pool_hooks(std::string conninfo, clock::duration rollback_budget) {
  PoolHooks<Connection> hooks;
  hooks.create = [conninfo = std::move(conninfo)](const Context& ctx) {
    return connect(ctx, conninfo);
  };
  hooks.recycle = [rollback_budget](Connection& conn) { return reset(conn, rollback_budget); };
  hooks.interrupt = [](Connection& conn) { conn.interrupt(); };
  return hooks;
}

}  // namespace ctxpp::postgres
