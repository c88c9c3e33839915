// The "ctxpp.asio" category: the causes the adapter gives the contexts it cancels.
#include "ctxpp/asio/error.hpp"

#include <string>

namespace ctxpp::asio {
namespace {

class AsioCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ctxpp.asio"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::client_disconnected:
        return "the client closed the connection";
      case errc::server_stopped:
        return "the server stopped";
      case errc::asio_cancellation:
        return "an Asio cancellation signal was emitted";
    }
    return "unknown ctxpp.asio error";
  }
};

}  // namespace

const std::error_category& asio_category() noexcept {
  static const AsioCategory category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), asio_category()}; }

}  // namespace ctxpp::asio
