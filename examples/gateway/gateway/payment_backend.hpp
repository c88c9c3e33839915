// examples/gateway/gateway/payment_backend.hpp — payments over gRPC for POST
// /api/checkout: a channel to the upstream's Payment service, with the request's
// context crossing the boundary (deadline as grpc-timeout, cancellation as a cancelled
// call, the request id as metadata).
#pragma once

#include <memory>

#include "gateway.hpp"
#include "payment.grpc.pb.h"
#include "service.hpp"

namespace gateway {

/// Thread safety: backend()'s functions from any number of threads. Ownership: owns the
/// channel; must outlive the Gateway that uses backend().
class GrpcPayments {
 public:
  explicit GrpcPayments(const HostPort& address);
  PaymentBackend backend();

 private:
  std::unique_ptr<ctxpp::gateway::Payment::Stub> stub_;
};

}  // namespace gateway
