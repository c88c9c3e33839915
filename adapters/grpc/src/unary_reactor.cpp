// UnaryReactor: a handler run on an executor, finished with its status.
#include "ctxpp/grpc/unary_reactor.hpp"

#include <exception>
#include <string>
#include <utility>

namespace ctxpp::grpc {

UnaryReactor::UnaryReactor(const Context& parent, ::grpc::CallbackServerContext* server_context,
                           Handler handler)
    : call_(parent, *server_context), handler_(std::move(handler)) {}

::grpc::ServerUnaryReactor* UnaryReactor::start(const Context& parent,
                                                ::grpc::CallbackServerContext* server_context,
                                                Executor& executor, Handler handler) {
  auto* reactor = new UnaryReactor(parent, server_context, std::move(handler));
  try {
    executor.execute([reactor]() noexcept { reactor->run(); });
  } catch (const std::exception& e) {
    // Finish() before the reactor was returned to gRPC is allowed: gRPC keeps it and
    // sends it once the reactor is bound; OnDone() follows and deletes the reactor.
    reactor->Finish(
        ::grpc::Status(::grpc::StatusCode::UNAVAILABLE,
                       std::string("ctxpp::grpc: executor refused the call: ") + e.what()));
  }
  return reactor;
}

::grpc::ServerUnaryReactor* UnaryReactor::start(const Context& parent,
                                                ::grpc::CallbackServerContext* server_context,
                                                Handler handler) {
  return start(parent, server_context, default_executor(), std::move(handler));
}

void UnaryReactor::run() noexcept {
  ::grpc::Status status;
  try {
    status = handler_(call_.ctx());
  } catch (const std::exception& e) {
    status = ::grpc::Status(::grpc::StatusCode::UNKNOWN, e.what());
  } catch (...) {
    status = ::grpc::Status(::grpc::StatusCode::UNKNOWN, "unknown exception");
  }
  // TRICKY: gRPC may call OnDone() (which deletes this) on another thread as soon as
  // Finish() is called: nothing of this object may be touched after it.
  Finish(status);
}

void UnaryReactor::OnCancel() { call_.on_cancel(); }

void UnaryReactor::OnDone() { delete this; }

}  // namespace ctxpp::grpc
