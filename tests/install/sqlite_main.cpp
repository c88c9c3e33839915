// Consumer of an installed ctxpp::sqlite: opens an in-memory database through a pool.
#include <ctxpp/pool.hpp>
#include <ctxpp/sqlite/pool.hpp>
#include <ctxpp/sqlite/statement.hpp>

#include <cstdio>

int main() {
  ctxpp::Pool<ctxpp::sqlite::Connection> pool(ctxpp::sqlite::pool_hooks(":memory:"),
                                              {.max_size = 1});
  auto lease = pool.acquire(ctxpp::background());
  if (!lease) return 1;
  auto changes = ctxpp::sqlite::execute(ctxpp::background(), **lease, "CREATE TABLE t(x)");
  if (!changes) return 1;
  std::puts("ctxpp::sqlite consumer ok");
  return 0;
}
