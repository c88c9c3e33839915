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
  // Publishes the constructed reactor to OnCancel() (see OnDone()).
  reactor->reactions_.store(0, std::memory_order_release);
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
  reactions_.fetch_add(1, std::memory_order_release);
  Finish(status);
}

void UnaryReactor::OnCancel() {
  (void)reactions_.load(std::memory_order_acquire);
  call_.on_cancel();
  reactions_.fetch_add(1, std::memory_order_release);
}

// gRPC calls OnCancel() only after start() returned the reactor, and OnDone() after
// Finish() and after OnCancel() returned, so the reactor is no longer used when it is
// deleted here; but gRPC's own synchronisation is invisible to ThreadSanitizer where
// gRPC is not instrumented (Debian's is not). The acquire loads read the store in
// start() or a later increment (increments are read-modify-writes, so they continue
// its release sequence), which states that order in the program itself: construction
// happens before OnCancel(), and what run() and OnCancel() did happens before the
// delete. Cost: one atomic store or increment per reaction and one load per call.
void UnaryReactor::OnDone() {
  (void)reactions_.load(std::memory_order_acquire);
  delete this;
}

}  // namespace ctxpp::grpc
