// ctxpp/grpc/server_call.hpp — the context of one gRPC server call.
// A ServerCall derives a context from a parent (the server's lifetime context, say)
// with the call's deadline, and ends it with cause errc::client_canceled when gRPC
// reports that the client cancelled, passed its deadline or went away. With the
// callback API that report is ServerUnaryReactor::OnCancel(), which arrives 1–2 ms
// after the fact, or never when the reactor's Finish() won the race: so the context
// also ends when the ServerCall is destroyed (in OnDone()), whichever comes first.
// The sync API has no notification: poll_cancel() asks IsCancelled() when convenient.
// Example (a reactor of your own; ctxpp/grpc/unary_reactor.hpp does this for you):
//   class Reactor : public ::grpc::ServerUnaryReactor {
//     ctxpp::grpc::ServerCall call_;
//     void OnCancel() override { call_.on_cancel(); }
//     void OnDone() override { delete this; }  // ends call_.ctx() if still running
//   };
#pragma once

#include <grpcpp/server_context.h>

#include "ctxpp/context.hpp"

namespace ctxpp::grpc {

/// The context of one server call: ctx() ends (first wins)
/// - with ctxpp::errc::deadline_exceeded at the call's deadline (none if infinite);
/// - when parent ends, with parent's err() and cause();
/// - with errc::canceled and cause ctxpp::grpc::errc::client_canceled on on_cancel(),
///   or on a poll_cancel() that finds the call cancelled;
/// - with errc::canceled when the ServerCall is destroyed (the call is over).
/// When the client sent a valid "traceparent", ctx() carries a child of it as its
/// TraceContext (ctxpp/trace_context.hpp), so this call's work has its own span.
/// Thread safety: ctx() and on_cancel() from any thread at once; poll_cancel() where
/// gRPC allows IsCancelled() (sync and callback API: any time before the call is done).
/// Blocking: on_cancel() and the destructor run the ScopedCallbacks registered on ctx()
/// inline, and return after ctx() and its descendants are done.
/// Cost: two or three context nodes (one allocation each), one shared-timer entry
/// when the call has a deadline; the metadata lookup is O(number of entries).
/// Ownership: keeps server_context's address for poll_cancel(): destroy the ServerCall
/// before gRPC releases the call (in OnDone() at the latest, or before a sync handler
/// returns). ctx() may be copied and outlive the ServerCall; it is then done.
/// Errors: std::bad_alloc.
class ServerCall {
 public:
  ServerCall(const Context& parent, const ::grpc::ServerContextBase& server_context);
  ServerCall(const ServerCall&) = delete;
  ServerCall& operator=(const ServerCall&) = delete;
  /// Ends ctx() with errc::canceled unless it already ended.
  ~ServerCall();

  /// The call's context. Cost: none.
  const Context& ctx() const noexcept { return ctx_; }

  /// The client cancelled, passed its deadline or went away: ends ctx() with cause
  /// errc::client_canceled unless it already ended. Call it from OnCancel().
  /// Repeat calls do nothing. Blocking: see the class.
  void on_cancel() noexcept;

  /// For the sync API: if gRPC says the call was cancelled, on_cancel(). Returns
  /// ctx().done(). Cost: one IsCancelled() (a lock inside gRPC) when not done yet.
  bool poll_cancel() noexcept;

 private:
  const ::grpc::ServerContextBase* server_context_;
  CancelFunc end_deadline_;  // the deadline node's timer, released at destruction
  CancelCauseFunc cancel_;
  Context ctx_;
};

}  // namespace ctxpp::grpc
