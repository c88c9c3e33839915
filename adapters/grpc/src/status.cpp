// grpc::Status <-> std::error_code.
#include "ctxpp/grpc/status.hpp"

#include <chrono>
#include <string>

namespace ctxpp::grpc {

std::error_code to_error_code(const Context& ctx, const ::grpc::Status& status) noexcept {
  const ::grpc::StatusCode code = status.error_code();
  if (code == ::grpc::StatusCode::OK) return {};
  if (code == ::grpc::StatusCode::CANCELLED || code == ::grpc::StatusCode::DEADLINE_EXCEEDED) {
    if (ctx.done()) return ctx.err();
    // gRPC's deadline is ctx's, converted to gRPC's clock: its alarm and ctx's timer
    // fire independently, so the status can arrive just before ctx ends. A deadline
    // that has passed will end ctx within the timer's latency: wait for it (bounded,
    // so that a stopped timer thread cannot hang a caller).
    const std::optional<clock::time_point> deadline = ctx.deadline();
    if (code == ::grpc::StatusCode::DEADLINE_EXCEEDED && deadline &&
        *deadline <= clock::now() + std::chrono::milliseconds(5)) {
      if (ctx.wait_until(*deadline + std::chrono::seconds(1))) return ctx.err();
    }
  }
  return to_error_code(status);
}

std::error_code to_error_code(const ::grpc::Status& status) noexcept {
  if (status.ok()) return {};
  return {static_cast<int>(status.error_code()), grpc_category()};
}

::grpc::Status to_status(std::error_code ec, std::string_view message) {
  if (!ec) return ::grpc::Status::OK;
  ::grpc::StatusCode code = ::grpc::StatusCode::UNKNOWN;
  if (ec.category() == grpc_category() && ec.value() >= 1 && ec.value() <= 16) {
    code = static_cast<::grpc::StatusCode>(ec.value());
  } else if (ec == std::errc::operation_canceled) {
    code = ::grpc::StatusCode::CANCELLED;
  } else if (ec == std::errc::timed_out) {
    code = ::grpc::StatusCode::DEADLINE_EXCEEDED;
  }
  return {code, message.empty() ? ec.message() : std::string(message)};
}

}  // namespace ctxpp::grpc
