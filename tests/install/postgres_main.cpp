// Consumer of an installed ctxpp::postgres: builds a pool and sees a connect failure
// reported through it (no server needed).
#include <ctxpp/pool.hpp>
#include <ctxpp/postgres/pool.hpp>
#include <ctxpp/postgres/query.hpp>

#include <cstdio>

int main() {
  ctxpp::Pool<ctxpp::postgres::Connection> pool(ctxpp::postgres::pool_hooks("no_such_option=1"),
                                                {.max_size = 1});
  auto lease = pool.acquire(ctxpp::background());
  if (lease || lease.error() != ctxpp::postgres::errc::connection_failed) return 1;
  std::printf("ctxpp::postgres consumer ok (%s)\n", lease.error().message().c_str());
  return 0;
}
