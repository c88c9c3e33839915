#include "payment_backend.hpp"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "payment_client.hpp"

namespace gateway {

GrpcPayments::GrpcPayments(const HostPort& address)
    : stub_(ctxpp::gateway::Payment::NewStub(
          ::grpc::CreateChannel(address.host + ":" + std::to_string(address.port),
                                ::grpc::InsecureChannelCredentials()))) {}

PaymentBackend GrpcPayments::backend() {
  PaymentBackend backend;
  backend.charge = [this](const ctxpp::Context& ctx, std::string_view order_id,
                          std::int64_t amount_cents, int delay_ms,
                          std::string_view request_id) -> ctxpp::Result<std::string> {
    return ctxpp::gateway::charge(ctx, *stub_, order_id, amount_cents, delay_ms, request_id);
  };
  backend.refund = [this](const ctxpp::Context& ctx, std::string_view payment_id,
                          std::string_view request_id) -> std::error_code {
    // A charge whose answer never arrived is known by the request id alone.
    const std::string id =
        payment_id.empty() ? "pay-" + std::string(request_id) : std::string(payment_id);
    const auto refunded = ctxpp::gateway::refund(ctx, *stub_, id, request_id);
    return refunded ? std::error_code{} : refunded.error();
  };
  return backend;
}

}  // namespace gateway
