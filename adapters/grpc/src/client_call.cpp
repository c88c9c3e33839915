// ClientCall: ctx's deadline, cancellation and trace onto a grpc::ClientContext.
#include "ctxpp/grpc/client_call.hpp"

#include <chrono>

#include "ctxpp/grpc/status.hpp"
#include "ctxpp/http/traceparent.hpp"
#include "ctxpp/trace_context.hpp"

namespace ctxpp::grpc {
namespace {

// Beyond this, a deadline is as good as none: gRPC would send an absurd grpc-timeout
// (it caps at 99999999 hours anyway), and the conversion below could overflow.
constexpr auto kNoDeadlineBeyond = std::chrono::hours(24 * 365 * 100);

}  // namespace

ClientCall::ClientCall(const Context& ctx) : ctx_(ctx) {
  if (const std::optional<clock::time_point> deadline = ctx_.deadline()) {
    // gRPC takes system_clock deadlines; ctx's is steady: carry the time left over.
    const clock::duration left = *deadline - clock::now();
    if (*deadline != clock::time_point::max() && left < kNoDeadlineBeyond) {
      context_.set_deadline(std::chrono::system_clock::now() +
                            std::chrono::duration_cast<std::chrono::system_clock::duration>(left));
    }
  }
  if (auto tp = http::traceparent(ctx_)) {
    context_.AddMetadata(std::string(http::traceparent_header),
                         http::format_traceparent(http::child_of(*tp)));
  }
  // Last, so that an already-done ctx cancels a context that is complete otherwise.
  on_end_.emplace(ctx_, TryCancel{&context_});
}

std::error_code ClientCall::error(const ::grpc::Status& status) const noexcept {
  return to_error_code(ctx_, status);
}

}  // namespace ctxpp::grpc
