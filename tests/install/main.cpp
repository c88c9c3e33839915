// Package-test consumer: a deadline fires and reports deadline_exceeded.
#include <ctxpp/context.hpp>

#include <chrono>
#include <cstdio>

int main() {
  auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), std::chrono::milliseconds(1));
  const bool done = ctx.wait_for(std::chrono::seconds(30));
  const bool ok = done && ctx.err() == ctxpp::errc::deadline_exceeded;
  cancel();
  std::printf("ctxpp consumer: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
