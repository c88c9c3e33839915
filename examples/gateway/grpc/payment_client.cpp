// charge() and refund(): blocking Payment calls that follow their context.
#include "payment_client.hpp"

#include "ctxpp/grpc/client_call.hpp"

namespace ctxpp::gateway {
namespace {

void add_request_id(grpc::ClientCall& call, std::string_view request_id) {
  if (!request_id.empty()) call.context().AddMetadata("x-request-id", std::string(request_id));
}

}  // namespace

Result<std::string> charge(const Context& ctx, Payment::Stub& stub, std::string_view order_id,
                           std::int64_t amount_cents, std::int32_t delay_ms,
                           std::string_view request_id) {
  grpc::ClientCall call(ctx);
  add_request_id(call, request_id);
  ChargeRequest request;
  request.set_order_id(std::string(order_id));
  request.set_amount_cents(amount_cents);
  request.set_delay_ms(delay_ms);
  ChargeReply reply;
  const ::grpc::Status status = stub.Charge(&call.context(), request, &reply);
  if (std::error_code ec = call.error(status)) return ec;
  return std::move(*reply.mutable_payment_id());
}

Result<void> refund(const Context& ctx, Payment::Stub& stub, std::string_view payment_id,
                    std::string_view request_id) {
  grpc::ClientCall call(ctx);
  add_request_id(call, request_id);
  RefundRequest request;
  request.set_payment_id(std::string(payment_id));
  RefundReply reply;
  const ::grpc::Status status = stub.Refund(&call.context(), request, &reply);
  return call.error(status);
}

}  // namespace ctxpp::gateway
