// ctxpp/http/error.hpp — why a deadline or trace header was rejected.
// Every parser in ctxpp::http reports a malformed header as a std::error_code in the
// "ctxpp.http" category; its message() says what was wrong in words a client can act
// on, and bad_request_body() turns it into the text of a 400 response. Parsing never
// throws and never reads past the value it was given.
// Example:
//   auto budget = ctxpp::http::request_budget(headers, policy);
//   if (!budget) return reply(400, ctxpp::http::bad_request_body(budget.header(), budget.error()));
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>

namespace ctxpp::http {

/// Values longer than this many bytes (whitespace included) are rejected with
/// errc::too_long before they are looked at, whatever the header.
inline constexpr std::size_t max_header_value_size = 256;

/// What was wrong with a header value. Zero is never used: an empty error_code means
/// the value was accepted.
enum class errc : int {
  too_long = 1,     ///< longer than max_header_value_size bytes (checked before anything else)
  empty,            ///< nothing but optional whitespace
  not_a_number,     ///< a character other than a digit where digits are required (a sign,
                    ///< an inner space, a NUL, any other byte), or no digits at all
  too_many_digits,  ///< more digits than the grammar allows (18 for milliseconds, 8 for gRPC)
  out_of_range,     ///< X-Request-Timeout-Ms above max_request_timeout
  bad_unit,         ///< grpc-timeout without a unit, or with one other than H M S m u n
  bad_format,       ///< traceparent: wrong length, a missing dash, or a field of the wrong size
  bad_hex,          ///< traceparent: a field that is not lowercase hexadecimal
  bad_version,      ///< traceparent: version ff, which the specification forbids
  zero_id,          ///< traceparent: an all-zero trace-id or parent-id
};

/// The category of errc: name() "ctxpp.http"; message() one line saying what was wrong
/// ("the value has more digits than allowed"), "unknown ctxpp.http error" otherwise.
/// Thread safety: any thread. Cost: a function-local static, no allocation.
const std::error_category& http_category() noexcept;

/// Wraps an errc into a std::error_code of http_category().
/// Thread safety: any thread. Cost: none beyond the category lookup.
std::error_code make_error_code(errc e) noexcept;

/// The body of a 400 response for a rejected header: "invalid <header> header: <what was
/// wrong>\n", e.g. "invalid X-Request-Timeout-Ms header: the value is not a decimal
/// number\n". Plain ASCII text; the offending value itself is never echoed, so a
/// client cannot make the server reflect arbitrary bytes.
/// Thread safety: any thread. Cost: one short string. Ownership: the caller owns it.
/// Errors: std::bad_alloc. An ec of another category gives its own message().
std::string bad_request_body(std::string_view header, std::error_code ec);

}  // namespace ctxpp::http

template <>
struct std::is_error_code_enum<ctxpp::http::errc> : std::true_type {};
