// payment_service.hpp — the gateway example's upstream payment service (gRPC).
// Charge does delay_ms of work on the call's context: it stops the moment the client
// cancels, goes away or passes its deadline (CANCELLED / DEADLINE_EXCEEDED), which is
// what the gateway demonstrates. Counters and a record of the last calls are readable
// from any thread, for the server to expose as JSON.
// Example:
//   ctxpp::ThreadPool pool(64);
//   ctxpp::gateway::PaymentService service(lifetime, pool);
//   builder.RegisterService(&service);
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "payment.grpc.pb.h"

namespace ctxpp::gateway {

/// One finished call, as the service saw it.
struct PaymentCall {
  std::string method;         ///< "Charge" or "Refund"
  std::string request_id;     ///< the "x-request-id" metadata; empty when absent
  std::int64_t start_ns = 0;  ///< std::chrono::steady_clock, nanoseconds since its epoch
  std::int64_t end_ns = 0;    ///< when the work stopped (same clock)
  std::string outcome;        ///< "ok", "canceled", "deadline_exceeded", "not_found", ...
};

/// The Payment service on gRPC's callback API (ctxpp::grpc::UnaryReactor).
/// Thread safety: every member may be called from any thread at once.
/// Ownership: lifetime is the parent of every call's context (end it to stop all calls
/// at once); executor runs the calls and must outlive the grpc::Server they arrive on.
/// Not copyable or movable (gRPC keeps its address).
class PaymentService final : public Payment::CallbackService {
 public:
  /// history: how many finished calls recent_calls() keeps (the oldest go first).
  PaymentService(const Context& lifetime, Executor& executor, std::size_t history = 256);

  /// Charge: INVALID_ARGUMENT unless amount_cents > 0 and delay_ms >= 0; then waits
  /// delay_ms on the call's context; CANCELLED or DEADLINE_EXCEEDED if it ended first,
  /// else the payment id: "pay-<x-request-id>", or "pay-<n>" without one. Occupies one executor
  /// thread while it waits.
  ::grpc::ServerUnaryReactor* Charge(::grpc::CallbackServerContext* server_context,
                                     const ChargeRequest* request, ChargeReply* reply) override;

  /// Refund: NOT_FOUND unless payment_id was charged and not refunded yet; a charge of
  /// that id arriving later is then void (its caller gave up on it and undid it).
  ::grpc::ServerUnaryReactor* Refund(::grpc::CallbackServerContext* server_context,
                                     const RefundRequest* request, RefundReply* reply) override;

  /// Calls started and not finished. Cost: one load.
  std::int64_t in_flight() const noexcept;
  /// Calls finished with OK.
  std::int64_t completed() const noexcept;
  /// Calls stopped because their context ended (client cancel or gone, deadline,
  /// lifetime ended).
  std::int64_t canceled() const noexcept;
  /// Calls finished with another error (invalid argument, unknown payment).
  std::int64_t failed() const noexcept;

  /// Payments charged and not refunded. Cost: a mutex section.
  std::int64_t open_payments() const;

  /// The last finished calls, oldest first. Cost: a copy under a mutex.
  std::vector<PaymentCall> recent_calls() const;

  /// {"in_flight":..,"completed":..,"canceled":..,"failed":..,"calls":[{..},..]}
  /// Cost: recent_calls() and one string. Errors: std::bad_alloc.
  std::string stats_json() const;

 private:
  void finish(PaymentCall call, const ::grpc::Status& status);

  Context lifetime_;
  Executor& executor_;
  const std::size_t history_;
  mutable std::mutex mutex_;
  std::int64_t in_flight_ = 0;
  std::int64_t completed_ = 0;
  std::int64_t canceled_ = 0;
  std::int64_t failed_ = 0;
  std::int64_t next_payment_ = 1;
  std::set<std::string> charged_;
  std::set<std::string> refunded_early_;  // refunds that arrived before their charge
  std::deque<PaymentCall> recent_;
};

}  // namespace ctxpp::gateway
