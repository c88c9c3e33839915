// The "ctxpp.grpc" category: gRPC status codes by their numbers, and the causes the
// adapter gives the contexts it cancels.
#include "ctxpp/grpc/error.hpp"

#include <string>

namespace ctxpp::grpc {
namespace {

class GrpcCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ctxpp.grpc"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::canceled:
        return "CANCELLED";
      case errc::unknown:
        return "UNKNOWN";
      case errc::invalid_argument:
        return "INVALID_ARGUMENT";
      case errc::deadline_exceeded:
        return "DEADLINE_EXCEEDED";
      case errc::not_found:
        return "NOT_FOUND";
      case errc::already_exists:
        return "ALREADY_EXISTS";
      case errc::permission_denied:
        return "PERMISSION_DENIED";
      case errc::resource_exhausted:
        return "RESOURCE_EXHAUSTED";
      case errc::failed_precondition:
        return "FAILED_PRECONDITION";
      case errc::aborted:
        return "ABORTED";
      case errc::out_of_range:
        return "OUT_OF_RANGE";
      case errc::unimplemented:
        return "UNIMPLEMENTED";
      case errc::internal:
        return "INTERNAL";
      case errc::unavailable:
        return "UNAVAILABLE";
      case errc::data_loss:
        return "DATA_LOSS";
      case errc::unauthenticated:
        return "UNAUTHENTICATED";
      case errc::client_canceled:
        return "the client cancelled the call or went away";
    }
    return "unknown ctxpp.grpc error";
  }

  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<errc>(value)) {
      case errc::canceled:
      case errc::client_canceled:
        return std::errc::operation_canceled;
      case errc::deadline_exceeded:
        return std::errc::timed_out;
      default:
        return {value, *this};
    }
  }
};

}  // namespace

const std::error_category& grpc_category() noexcept {
  static const GrpcCategory category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), grpc_category()}; }

}  // namespace ctxpp::grpc
