// The pool hooks: open with the acquirer's context, interrupt stickily, recycle.
#include "ctxpp/sqlite/pool.hpp"

#include <utility>

#include "connection_state.hpp"

namespace ctxpp::sqlite {

bool recycle(Connection& conn) noexcept {
  const detail::ConnectionState* state = detail::ConnectionAccess::state(conn);
  if (state == nullptr || state->broken) return false;
  sqlite3* db = conn.raw();
  // Our own statements are always finalized when a call returns; one still here
  // belongs to a holder who may still use it.
  if (sqlite3_next_stmt(db, nullptr) != nullptr) return false;
  conn.clear_interrupt();
  if (sqlite3_get_autocommit(db) == 0) {
    // No context is active outside a call, so nothing stops this rollback.
    if (sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr) != SQLITE_OK) return false;
    if (sqlite3_get_autocommit(db) == 0) return false;
  }
  return true;
}

PoolHooks<Connection> pool_hooks(std::string path, OpenOptions options) {
  // At once, where the pool is made, rather than at every acquire.
  detail::validate(options);
  PoolHooks<Connection> hooks;
  hooks.create = [path = std::move(path), options](const Context& ctx) {
    return open(ctx, path, options);
  };
  hooks.recycle = [](Connection& conn) { return recycle(conn); };
  hooks.interrupt = [](Connection& conn) { conn.interrupt(); };
  return hooks;
}

}  // namespace ctxpp::sqlite
