// ctxpp/grpc/error.hpp — gRPC outcomes as std::error_code, in the "ctxpp.grpc" category.
// A call that failed for a reason of its own (the server said NOT_FOUND, the channel
// is UNAVAILABLE) is reported with the gRPC status code as the value, so callers test
// `ec == ctxpp::grpc::errc::unavailable` without including gRPC. A server call's
// context that ended because the client cancelled or went away carries
// errc::client_canceled as its cause() (its err() stays ctxpp::errc::canceled).
// Example:
//   if (ctx.cause() == ctxpp::grpc::errc::client_canceled) return;  // nobody to answer
#pragma once

#include <system_error>

namespace ctxpp::grpc {

/// Values 1–16 are gRPC's status codes (grpc::StatusCode, same numbers); values from
/// 100 are the adapter's own causes. Zero (OK) is never used: success is an empty code.
enum class errc : int {
  canceled = 1,  ///< CANCELLED, when not caused by the caller's own context
  unknown = 2,
  invalid_argument = 3,
  deadline_exceeded = 4,  ///< DEADLINE_EXCEEDED, when not the caller's own deadline
  not_found = 5,
  already_exists = 6,
  permission_denied = 7,
  resource_exhausted = 8,
  failed_precondition = 9,
  aborted = 10,
  out_of_range = 11,
  unimplemented = 12,
  internal = 13,
  unavailable = 14,
  data_loss = 15,
  unauthenticated = 16,
  client_canceled = 100,  ///< the client cancelled the call or went away (OnCancel)
};

/// The category of errc: name() "ctxpp.grpc"; message() the gRPC code's name in
/// upper case ("UNAVAILABLE") or one line for an adapter cause; "unknown ctxpp.grpc
/// error" otherwise. Equivalent conditions: canceled and client_canceled match
/// std::errc::operation_canceled, deadline_exceeded matches std::errc::timed_out.
/// Thread safety: any thread. Cost: a function-local static, no allocation.
const std::error_category& grpc_category() noexcept;

/// Wraps an errc into a std::error_code of grpc_category().
/// Thread safety: any thread. Cost: none beyond the category lookup.
std::error_code make_error_code(errc e) noexcept;

}  // namespace ctxpp::grpc

template <>
struct std::is_error_code_enum<ctxpp::grpc::errc> : std::true_type {};
