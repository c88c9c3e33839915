// ServerCall: a server call's deadline, cancellation and trace as a context.
#include "ctxpp/grpc/server_call.hpp"

#include <chrono>
#include <string_view>

#include "ctxpp/grpc/error.hpp"
#include "ctxpp/http/traceparent.hpp"

namespace ctxpp::grpc {
namespace {

// A deadline further away than this is no deadline (and converting it could overflow).
constexpr auto kNoDeadlineBeyond = std::chrono::hours(24 * 365 * 100);

// The call's deadline on ctxpp's steady clock; nullopt when it is infinite.
std::optional<clock::time_point> steady_deadline(const ::grpc::ServerContextBase& server_context) {
  const std::chrono::system_clock::time_point deadline = server_context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return std::nullopt;
  const auto left = deadline - std::chrono::system_clock::now();
  if (left >= kNoDeadlineBeyond) return std::nullopt;
  return clock::now() + std::chrono::duration_cast<clock::duration>(left);
}

}  // namespace

ServerCall::ServerCall(const Context& parent, const ::grpc::ServerContextBase& server_context)
    : server_context_(&server_context) {
  Context base = parent;
  if (const std::optional<clock::time_point> deadline = steady_deadline(server_context)) {
    auto timed = with_deadline(parent, *deadline);
    base = std::move(timed.ctx);
    end_deadline_ = std::move(timed.cancel);
  }
  auto cancellable = with_cancel_cause(base);
  cancel_ = std::move(cancellable.cancel);
  ctx_ = std::move(cancellable.ctx);

  const auto& metadata = server_context.client_metadata();
  const auto found = metadata.find(
      ::grpc::string_ref(http::traceparent_header.data(), http::traceparent_header.size()));
  if (found != metadata.end()) {
    const std::string_view value(found->second.data(), found->second.size());
    if (auto incoming = http::parse_traceparent(value)) {
      ctx_ = http::with_traceparent(ctx_, http::child_of(*incoming));
    }
  }
}

ServerCall::~ServerCall() {
  cancel_(std::error_code{});
  end_deadline_();
}

void ServerCall::on_cancel() noexcept { cancel_(errc::client_canceled); }

bool ServerCall::poll_cancel() noexcept {
  if (!ctx_.done() && server_context_->IsCancelled()) on_cancel();
  return ctx_.done();
}

}  // namespace ctxpp::grpc
