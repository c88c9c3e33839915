// payment_client.hpp — the gateway's calls to the payment service, under a context.
// Each call carries ctx's deadline (as grpc-timeout) and is cancelled the moment ctx
// ends, so the payment service stops its work too; the gateway's request id travels
// as "x-request-id" metadata and ctx's trace as traceparent.
// Example:
//   ctxpp::Result<std::string> id = ctxpp::gateway::charge(ctx, *stub, "o-1", 1200, 50, rid);
//   if (!id) return id.error();  // ctxpp::errc::canceled / deadline_exceeded, or a gRPC code
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ctxpp/context.hpp"
#include "ctxpp/result.hpp"
#include "payment.grpc.pb.h"

namespace ctxpp::gateway {

/// Payment.Charge: the new payment id.
/// Thread safety: any thread (a Stub may be shared). Blocking: until the answer, or
/// until ctx ends (then at once: the call is cancelled).
/// Errors: ctx.err() when ctx ended (canceled, deadline_exceeded); otherwise the gRPC
/// code in ctxpp::grpc's category (unavailable, invalid_argument, ...).
Result<std::string> charge(const Context& ctx, Payment::Stub& stub, std::string_view order_id,
                           std::int64_t amount_cents, std::int32_t delay_ms,
                           std::string_view request_id);

/// Payment.Refund. Blocking and errors as charge(); not_found for an unknown id.
Result<void> refund(const Context& ctx, Payment::Stub& stub, std::string_view payment_id,
                    std::string_view request_id);

}  // namespace ctxpp::gateway
