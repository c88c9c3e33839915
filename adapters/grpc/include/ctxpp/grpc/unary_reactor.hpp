// ctxpp/grpc/unary_reactor.hpp — a callback-API unary method as a function of a context.
// UnaryReactor::start() runs a handler on an Executor with the call's context
// (ctxpp/grpc/server_call.hpp: deadline, client cancel, trace) and Finish()es the call
// with the handler's status. The reactor deletes itself in OnDone(), which gRPC calls
// once, after Finish(): whether OnCancel() came first or Finish() won the race, every
// resource (context nodes, timer entry, the handler and its captures) is released there.
// Example (a service method of a CallbackService):
//   ::grpc::ServerUnaryReactor* Charge(::grpc::CallbackServerContext* server_context,
//                                      const ChargeRequest* request,
//                                      ChargeReply* reply) override {
//     return ctxpp::grpc::UnaryReactor::start(lifetime_, server_context, pool_,
//         [request, reply](const ctxpp::Context& ctx) {
//           if (ctx.wait_for(std::chrono::milliseconds(request->delay_ms())))
//             return ctxpp::grpc::to_status(ctx.err());  // client gone or deadline
//           reply->set_payment_id("p-1");
//           return ::grpc::Status::OK;
//         });
//   }
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <functional>

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "ctxpp/grpc/server_call.hpp"

namespace ctxpp::grpc {

/// A ServerUnaryReactor that runs one handler with the call's context.
/// Thread safety: gRPC drives it; nothing of it is for the caller after start().
/// Ownership: owns itself; gRPC owns the pointer start() returns until OnDone().
class UnaryReactor final : public ::grpc::ServerUnaryReactor {
 public:
  /// The work of one call: reads the request, writes the reply (both valid until it
  /// returns), returns the status to finish with. It should return soon after ctx
  /// ends (to_status(ctx.err()) is the usual answer then); the client no longer
  /// waits. It runs once, on executor (inside start() with an inline executor: then
  /// only the deadline or parent can end ctx meanwhile, since gRPC delivers OnCancel()
  /// only after start() returned).
  /// Errors: an exception escaping it finishes the call with UNKNOWN and its what().
  using Handler = std::function<::grpc::Status(const Context& ctx)>;

  /// Creates the reactor for server_context (ctx derived from parent, see ServerCall)
  /// and hands handler to executor. Return its result from the service method.
  /// Blocking: never (the executor queues). Cost: one allocation for the reactor, the
  /// ServerCall's nodes, one executor task.
  /// Ownership: executor must outlive every call started on it (a ThreadPool destroyed
  /// after the grpc::Server was shut down does). handler is destroyed in OnDone().
  /// Errors: if executor refuses the task, the call finishes at once with UNAVAILABLE;
  /// std::bad_alloc from creating the reactor propagates (gRPC then fails the call).
  static ::grpc::ServerUnaryReactor* start(const Context& parent,
                                           ::grpc::CallbackServerContext* server_context,
                                           Executor& executor, Handler handler);

  /// start() on ctxpp::default_executor().
  static ::grpc::ServerUnaryReactor* start(const Context& parent,
                                           ::grpc::CallbackServerContext* server_context,
                                           Handler handler);

  /// gRPC: the client cancelled, its deadline passed or it went away. Ends ctx with
  /// cause client_canceled; the handler is expected to notice and return.
  void OnCancel() override;

  /// gRPC: the call is over (after Finish()). Deletes the reactor, which ends ctx if
  /// it has not ended yet and releases the handler.
  void OnDone() override;

 private:
  UnaryReactor(const Context& parent, ::grpc::CallbackServerContext* server_context,
               Handler handler);
  ~UnaryReactor() override = default;
  void run() noexcept;

  ServerCall call_;
  Handler handler_;
  // Written (release) by start() and at the end of run() and OnCancel(); read
  // (acquire) by OnCancel() and OnDone(): see unary_reactor.cpp.
  std::atomic<int> reactions_{0};
};

}  // namespace ctxpp::grpc
