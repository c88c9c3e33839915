// bench/instruction_loop.cpp — a fixed number of W3 (create a cancellable child of a
// live cancellable parent, cancel it) or W4 (the same with a 1 h timeout) iterations,
// for bench/instructions.sh to count instructions with callgrind: a measure that
// machine noise does not move, to compare two revisions of the hot paths.
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "ctxpp/context.hpp"

int main(int argc, char** argv) {
  const bool timeout = argc > 1 && std::strcmp(argv[1], "W4") == 0;
  const long iterations = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 200000;
  auto parent = ctxpp::with_cancel(ctxpp::background());
  long done = 0;
  for (long i = 0; i < iterations; ++i) {
    auto child = timeout ? ctxpp::with_timeout(parent.ctx, std::chrono::hours(1))
                         : ctxpp::with_cancel(parent.ctx);
    child.cancel();
    done += child.ctx.done() ? 1 : 0;
  }
  parent.cancel();
  return done == iterations ? 0 : 1;
}
