// Consumer of an installed ctxpp::http: decides a request's budget from its headers
// and forwards the rest of it.
#include <ctxpp/context.hpp>
#include <ctxpp/http/deadline.hpp>
#include <ctxpp/http/traceparent.hpp>

#include <chrono>
#include <cstdio>

int main() {
  auto budget = ctxpp::http::request_budget({.request_timeout_ms = "1500", .grpc_timeout = {}},
                                            {.max = std::chrono::seconds(10)});
  if (!budget || budget->value != std::chrono::milliseconds(1500)) return 1;
  auto [ctx, cancel] = ctxpp::http::request_context(ctxpp::background(), *budget);
  const auto out = ctxpp::http::outgoing_deadline(ctx);
  if (out.action != ctxpp::http::Forward::send || out.remaining > budget->value) return 1;
  const auto tp = ctxpp::http::new_trace(true);
  if (!ctxpp::http::parse_traceparent(ctxpp::http::format_traceparent(tp))) return 1;
  std::puts("ctxpp::http consumer ok");
  return 0;
}
