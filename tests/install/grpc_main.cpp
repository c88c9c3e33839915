// Consumer of an installed ctxpp::grpc: a ClientContext made from a context carries its
// deadline, and a context's end maps to the matching gRPC status and back.
#include <ctxpp/context.hpp>
#include <ctxpp/grpc/client_call.hpp>
#include <ctxpp/grpc/error.hpp>
#include <ctxpp/grpc/status.hpp>

#include <chrono>
#include <cstdio>

int main() {
  auto deadline = ctxpp::with_timeout(ctxpp::background(), std::chrono::seconds(30));
  ctxpp::grpc::ClientCall call(deadline.ctx);
  if (call.context().deadline() == std::chrono::system_clock::time_point::max()) return 1;
  deadline.cancel();
  const ::grpc::Status status = ctxpp::grpc::to_status(deadline.ctx.err());
  if (status.error_code() != ::grpc::StatusCode::CANCELLED) return 1;
  if (call.error(status) != ctxpp::errc::canceled) return 1;
  if (ctxpp::grpc::to_error_code(::grpc::Status(::grpc::StatusCode::UNAVAILABLE, "")) !=
      ctxpp::grpc::errc::unavailable) {
    return 1;
  }
  std::puts("ctxpp::grpc consumer ok");
  return 0;
}
