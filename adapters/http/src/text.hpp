// Private helpers shared by the header parsers: the size guard, OWS trimming and
// character classes. Plain ASCII tests, never <cctype>: those depend on the locale
// and are undefined for negative char values, and a header may hold any byte.
#pragma once

#include <string_view>

#include "ctxpp/http/error.hpp"

namespace ctxpp::http::detail {

constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Lowercase only: traceparent forbids "A".."F".
constexpr bool is_lower_hex(char c) noexcept { return is_digit(c) || (c >= 'a' && c <= 'f'); }

constexpr unsigned hex_value(char c) noexcept {
  return is_digit(c) ? static_cast<unsigned>(c - '0') : static_cast<unsigned>(c - 'a' + 10);
}

// RFC 9110 field values exclude leading and trailing whitespace (OWS); a server's
// HTTP library may or may not have stripped it already.
constexpr std::string_view trim_ows(std::string_view v) noexcept {
  while (!v.empty() && is_ows(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_ows(v.back())) v.remove_suffix(1);
  return v;
}

// The guard every parser runs first: the size of the raw value bounds all later work,
// then OWS is trimmed. Returns {} and sets v to the trimmed value, or the error.
inline std::error_code guard_and_trim(std::string_view& v) noexcept {
  if (v.size() > max_header_value_size) return errc::too_long;
  v = trim_ows(v);
  if (v.empty()) return errc::empty;
  return {};
}

}  // namespace ctxpp::http::detail
