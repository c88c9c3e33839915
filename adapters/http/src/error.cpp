// The "ctxpp.http" category: why a deadline or trace header was rejected, in words a
// client can act on.
#include "ctxpp/http/error.hpp"

#include <string>

namespace ctxpp::http {
namespace {

class HttpCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ctxpp.http"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::too_long:
        return "the value is longer than " + std::to_string(max_header_value_size) + " bytes";
      case errc::empty:
        return "the value is empty";
      case errc::not_a_number:
        return "the value is not a decimal number (only the digits 0-9 are allowed)";
      case errc::too_many_digits:
        return "the value has more digits than allowed";
      case errc::out_of_range:
        return "the value is larger than the maximum accepted";
      case errc::bad_unit:
        return "the value has no unit, or one other than H, M, S, m, u or n";
      case errc::bad_format:
        return "the value is not of the form version-traceid-parentid-flags";
      case errc::bad_hex:
        return "a field is not lowercase hexadecimal";
      case errc::bad_version:
        return "version ff is not allowed";
      case errc::zero_id:
        return "the trace-id or parent-id is all zeros";
    }
    return "unknown ctxpp.http error";
  }
};

}  // namespace

const std::error_category& http_category() noexcept {
  static const HttpCategory category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), http_category()}; }

std::string bad_request_body(std::string_view header, std::error_code ec) {
  std::string body = "invalid ";
  body += header;
  body += " header: ";
  body += ec.message();
  body += '\n';
  return body;
}

}  // namespace ctxpp::http
