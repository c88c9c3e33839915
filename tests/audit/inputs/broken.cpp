// Does not compile: the audit reports it and goes on with the other files.
#include <ctxpp/context.hpp>

int broken(const ctxpp::Context& ctx) { return ctx.done() + not_declared_anywhere; }
