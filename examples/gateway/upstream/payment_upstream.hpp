// examples/gateway/upstream/payment_upstream.hpp — the upstream's gRPC side: the
// Payment service on its own port. The HTTP side reports its counts and calls with its
// own, so /debug/stats and /debug/requests cover both protocols.
#pragma once

#include <grpcpp/server.h>

#include <cstdint>
#include <memory>

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "payment_service.hpp"
#include "service.hpp"
#include "upstream.hpp"

namespace gateway {

/// Thread safety: the accessors from any thread. Ownership: owns the gRPC server, the
/// service and its executor; the destructor ends every call's context, then shuts the
/// server down. Errors: the constructor throws std::runtime_error if it cannot listen.
class PaymentUpstream {
 public:
  explicit PaymentUpstream(const HostPort& listen);
  ~PaymentUpstream();
  PaymentUpstream(const PaymentUpstream&) = delete;
  PaymentUpstream& operator=(const PaymentUpstream&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// Payments charged and not refunded.
  std::int64_t payments_open() const { return service_->open_payments(); }
  /// Calls in progress.
  std::int64_t in_flight() const noexcept { return service_->in_flight(); }
  /// The finished calls as ledger records (for /debug/requests).
  std::vector<UpstreamRecord> records() const;

 private:
  ctxpp::WithCancel<ctxpp::Context, ctxpp::CancelFunc> lifetime_;
  ctxpp::ThreadPool executor_{256};
  std::unique_ptr<ctxpp::gateway::PaymentService> service_;
  std::unique_ptr<::grpc::Server> server_;
  std::uint16_t port_ = 0;
};

}  // namespace gateway
