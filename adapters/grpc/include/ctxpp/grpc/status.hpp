// ctxpp/grpc/status.hpp — a finished call's grpc::Status as std::error_code, and back.
// A client reports what really ended its call: when CANCELLED or DEADLINE_EXCEEDED
// came from its own context (cancelled, or its deadline passed), the error is that
// context's err() (ctxpp::errc::canceled / deadline_exceeded), exactly as for any other
// cancellable operation; any other failure is the gRPC code in ctxpp::grpc's category.
// A server returns its context's err() (or any error code) as the matching status.
// Example:
//   ::grpc::Status status = stub.Charge(&call.context(), request, &reply);
//   if (std::error_code ec = ctxpp::grpc::to_error_code(ctx, status)) return ec;
//   ...
//   return ctxpp::grpc::to_status(ctx.err());  // CANCELLED or DEADLINE_EXCEEDED
#pragma once

#include <grpcpp/support/status.h>

#include <string_view>
#include <system_error>

#include "ctxpp/context.hpp"
#include "ctxpp/grpc/error.hpp"

namespace ctxpp::grpc {

/// {} for OK. CANCELLED or DEADLINE_EXCEEDED while ctx is done (or, for
/// DEADLINE_EXCEEDED, when ctx's own deadline is at most 50 ms away): ctx.err().
/// Anything else: the status code in grpc_category() (the status message is not kept).
/// gRPC carries ctx's deadline through other clocks and a rounded grpc-timeout, so it
/// may report it before ctx's timer ends ctx (by microseconds normally, by tens of
/// milliseconds on a loaded instrumented build); then this waits for ctx to end, so
/// that the answer does not depend on that race.
/// Thread safety: any thread. Blocking: only in that case, until ctx's timer fires (at
/// most one second past its deadline). Cost: two loads when ctx is not involved.
std::error_code to_error_code(const Context& ctx, const ::grpc::Status& status) noexcept;

/// The status code alone: {} for OK, else the code in grpc_category().
/// Thread safety: any thread. Blocking: never. Cost: none.
std::error_code to_error_code(const ::grpc::Status& status) noexcept;

/// The status a server returns for ec: OK for {}; CANCELLED for ctxpp::errc::canceled
/// (and anything equivalent to std::errc::operation_canceled, client_canceled
/// included); DEADLINE_EXCEEDED for ctxpp::errc::deadline_exceeded (and anything
/// equivalent to std::errc::timed_out); a grpc_category() code as itself; UNKNOWN for
/// anything else. The message is message if given, else ec.message().
/// Thread safety: any thread. Blocking: never. Cost: one string.
/// Errors: std::bad_alloc.
::grpc::Status to_status(std::error_code ec, std::string_view message = {});

}  // namespace ctxpp::grpc
