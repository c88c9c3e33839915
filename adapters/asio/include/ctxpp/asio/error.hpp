// ctxpp/asio/error.hpp — why the Asio adapter ended a context.
// A context the adapter cancels carries one of these as its cause() (its err() stays
// ctxpp::errc::canceled), so a handler or a log can tell a client that went away from
// a server that is shutting down or an Asio cancellation that reached a context.
// Example:
//   if (ctx.cause() == ctxpp::asio::errc::client_disconnected) return;  // nobody to answer
#pragma once

#include <system_error>

namespace ctxpp::asio {

/// Why the adapter cancelled a context. Zero is never used.
enum class errc : int {
  client_disconnected = 1,  ///< the HTTP client closed or reset its connection mid-request
  server_stopped = 2,       ///< HttpServer::stop() gave up draining and cancelled the request
  asio_cancellation = 3,    ///< an Asio cancellation signal reached a context_from() context
};

/// The category of errc: name() "ctxpp.asio"; message() one line per value ("the client
/// closed the connection"), "unknown ctxpp.asio error" otherwise.
/// Thread safety: any thread. Cost: a function-local static, no allocation.
const std::error_category& asio_category() noexcept;

/// Wraps an errc into a std::error_code of asio_category().
/// Thread safety: any thread. Cost: none beyond the category lookup.
std::error_code make_error_code(errc e) noexcept;

}  // namespace ctxpp::asio

template <>
struct std::is_error_code_enum<ctxpp::asio::errc> : std::true_type {};
