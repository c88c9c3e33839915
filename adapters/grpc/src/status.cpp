// grpc::Status <-> std::error_code.
#include "ctxpp/grpc/status.hpp"

#include <chrono>
#include <string>

namespace ctxpp::grpc {

namespace {
// How far apart gRPC's view of a deadline and ctx's timer may fire.
constexpr std::chrono::milliseconds kDeadlineSkew{50};
}  // namespace

std::error_code to_error_code(const Context& ctx, const ::grpc::Status& status) noexcept {
  const ::grpc::StatusCode code = status.error_code();
  if (code == ::grpc::StatusCode::OK) return {};
  if (code == ::grpc::StatusCode::CANCELLED || code == ::grpc::StatusCode::DEADLINE_EXCEEDED) {
    if (ctx.done()) return ctx.err();
    // gRPC's deadline is ctx's, converted to gRPC's clocks (system, then its own
    // monotonic one, and to the server as a rounded grpc-timeout): its alarm and ctx's
    // timer fire independently, so the status can arrive before ctx ends — by tens of
    // milliseconds on a loaded, instrumented build. A DEADLINE_EXCEEDED that close to
    // ctx's deadline is ctx's: wait for ctx to end (bounded, so that a stopped timer
    // thread cannot hang a caller). One further off is the server's own.
    const std::optional<clock::time_point> deadline = ctx.deadline();
    if (code == ::grpc::StatusCode::DEADLINE_EXCEEDED && deadline &&
        *deadline <= clock::now() + kDeadlineSkew) {
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
