// ctxpp/grpc/client_call.hpp — a grpc::ClientContext that follows a ctxpp context.
// The call gets the context's deadline (gRPC sends it to the server as grpc-timeout)
// and is cancelled with TryCancel() the moment the context ends, so a caller's
// deadline and cancellation reach the server; the context's trace goes along as
// traceparent metadata. The registration lives exactly as long as the ClientCall and
// is removed before the grpc::ClientContext is destroyed.
// Example:
//   ctxpp::grpc::ClientCall call(ctx);
//   ::grpc::Status status = stub.Charge(&call.context(), request, &reply);
//   if (std::error_code ec = call.error(status)) return ec;  // ctx.err() if ctx ended
#pragma once

#include <grpcpp/client_context.h>

#include <optional>
#include <system_error>

#include "ctxpp/context.hpp"
#include "ctxpp/scoped_callback.hpp"

namespace ctxpp::grpc {

/// One gRPC client call's grpc::ClientContext, bound to ctx.
/// Deadline: ctx.deadline(), if it has one short of time_point::max(); none otherwise.
/// Cancellation: TryCancel() runs inline in the thread that ends ctx (or in the
/// constructor when ctx is already done: the call then fails with CANCELLED as soon as
/// it starts, without reaching the server).
/// Metadata: "traceparent" for a child span of ctx's TraceContext, when it has one.
/// Thread safety: context() is the grpc::ClientContext; use it as gRPC allows (one
/// call). error() from any thread. Ending ctx from any thread at any time is safe.
/// Blocking: the destructor waits while a TryCancel() started by another thread runs
/// (microseconds); never otherwise.
/// Cost: one registration on ctx (no allocation), a ClientContext, a metadata string.
/// Ownership: keeps a handle to ctx. Not copyable or movable (gRPC keeps the
/// ClientContext's address). Destroy it only after the call finished, as gRPC requires
/// of a ClientContext: for a callback-API call, after its completion callback ran.
/// Errors: std::bad_alloc.
class ClientCall {
 public:
  explicit ClientCall(const Context& ctx);
  ClientCall(const ClientCall&) = delete;
  ClientCall& operator=(const ClientCall&) = delete;
  ~ClientCall() = default;

  /// The grpc::ClientContext to pass to the stub. Add metadata or options before the
  /// call starts; do not change the deadline (set_deadline) or the context would lie.
  ::grpc::ClientContext& context() noexcept { return context_; }

  /// The context this call follows.
  const Context& ctx() const noexcept { return ctx_; }

  /// to_error_code(ctx(), status): {} for OK, ctx.err() when the call ended because
  /// ctx did, else the gRPC code in ctxpp::grpc's category.
  /// Blocking: see to_error_code (only around a deadline, bounded).
  std::error_code error(const ::grpc::Status& status) const noexcept;

 private:
  struct TryCancel {
    ::grpc::ClientContext* context;
    void operator()() const noexcept { context->TryCancel(); }
  };

  Context ctx_;
  ::grpc::ClientContext context_;
  // Declared after context_, so destroyed first: once its destructor returned, no
  // TryCancel() runs or will run on context_ (ScopedCallback waits for a running one).
  std::optional<ScopedCallback<TryCancel>> on_end_;
};

}  // namespace ctxpp::grpc
