// ctxpp/asio/http_server.hpp — a small HTTP/1.1 server on Beast whose request contexts
// end the moment the client goes away.
// Each request gets a context, a child of the server's context, and a handler runs it
// on a thread of its own pool (handlers may block on ctxpp calls; the I/O threads never
// do). While the handler runs, the connection stays watched: a close or reset by the
// client cancels the request's context with cause errc::client_disconnected, typically
// within a millisecond. stop(ctx) stops accepting, lets requests in flight finish until
// ctx ends, then cancels the rest with cause errc::server_stopped.
// Example:
//   ctxpp::asio::HttpServer server([](const ctxpp::Context& ctx, const ctxpp::asio::Request& req) {
//     ctxpp::asio::Response res{::boost::beast::http::status::ok, req.version()};
//     res.body() = slow_lookup(ctx, req.target());   // stops when the client leaves
//     return res;
//   });
//   if (auto ec = server.start()) return ec;
//   ... server.port() ...
//   server.stop(ctxpp::with_timeout(ctxpp::background(), std::chrono::seconds(5)).ctx);
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <system_error>

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"

namespace ctxpp::asio {

using Request = ::boost::beast::http::request<::boost::beast::http::string_body>;
using Response = ::boost::beast::http::response<::boost::beast::http::string_body>;

/// Answers one request. ctx ends when the client disconnects (cause
/// errc::client_disconnected), when the server stops (errc::server_stopped) or, at the
/// latest, once the response has been written. Runs on a handler thread and may block.
/// The server sets keep-alive and Content-Length on the response it returns. A
/// response to a request whose client has gone is dropped. An exception gives a 500.
using Handler = std::function<Response(const Context& ctx, const Request& request)>;

/// Limits and threads of an HttpServer. Every duration must be positive.
struct HttpServerOptions {
  std::string address = "127.0.0.1";       ///< numeric IPv4 or IPv6 address to listen on
  std::uint16_t port = 0;                  ///< 0: a free port, see HttpServer::port()
  std::size_t io_threads = 1;              ///< threads running the sockets (never blocked)
  std::size_t handler_threads = 16;        ///< the handlers' own ThreadPool, if no executor given
  Executor* handler_executor = nullptr;    ///< runs handlers instead; must outlive the server
  std::size_t header_limit = 8 * 1024;     ///< request line + headers; beyond: 431 and close
  std::uint64_t body_limit = 1024 * 1024;  ///< request body; beyond: 413 and close
  /// Time to receive a whole request, counted from when the server starts reading it
  /// (for a kept-alive connection: from the end of the previous response, so it is
  /// also the idle timeout); beyond it the connection is closed (slowloris).
  std::chrono::steady_clock::duration read_timeout = std::chrono::seconds(10);
  std::chrono::steady_clock::duration write_timeout = std::chrono::seconds(10);
  /// After stop(ctx) cancels the requests still running: how long their handlers get
  /// to return and have their responses written before the connections are closed.
  std::chrono::steady_clock::duration stop_grace = std::chrono::seconds(1);
};

/// Counters of an HttpServer, read at one moment each (not one consistent snapshot).
struct HttpServerStats {
  std::uint64_t connections = 0;             ///< accepted so far
  std::uint64_t requests = 0;                ///< fully read and handed to the handler
  std::uint64_t in_flight = 0;               ///< handed over, response not yet written
  std::uint64_t canceled_by_disconnect = 0;  ///< contexts ended by a client going away
  std::uint64_t rejected = 0;                ///< answered 400, 413 or 431 by the server
  std::uint64_t timed_out = 0;               ///< connections closed by read_timeout
};

/// A listening HTTP/1.1 server: keep-alive, pipelining (requests answered in order),
/// header and body limits, read and write timeouts.
/// Thread safety: start(), stop() and the destructor from one owning thread (not from
/// a handler); port(), stats() and context() from any thread.
/// Ownership: not copyable or movable; owns its sockets, I/O threads and (unless an
/// executor is given) the handler pool. Keep-alive caveat: a client that half-closes
/// its side (shutdown(SHUT_WR)) after sending a request counts as disconnected.
class HttpServer {
 public:
  /// Errors: std::invalid_argument for an empty handler, zero threads or a
  /// non-positive duration. Cost: no socket or thread until start().
  explicit HttpServer(Handler handler, HttpServerOptions options = {});
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// stop() with a context that has already ended (requests are cancelled at once).
  /// Blocking: until every handler has returned.
  ~HttpServer();

  /// Binds, listens and starts the I/O threads. Errors: the bind or listen error (the
  /// server is then left stopped); errc::invalid_argument for a bad address or a second
  /// call. Blocking: no. Cost: io_threads threads.
  std::error_code start();

  /// The port listened on (the chosen one when options.port was 0); 0 before start().
  std::uint16_t port() const noexcept;

  /// Stops accepting, closes idle connections, lets requests in flight finish until
  /// drain ends (their contexts stay live), then cancels the remaining ones with cause
  /// errc::server_stopped, waits stop_grace for their responses, closes every
  /// connection and joins the I/O threads. Later calls do nothing.
  /// Blocking: up to drain's end + stop_grace, then until every running handler has
  /// returned (a handler that ignores its context delays this).
  void stop(const Context& drain);

  /// Counters. Cost: a few relaxed loads.
  HttpServerStats stats() const noexcept;

  /// The server-wide context: the parent of every request's context; ends when stop()
  /// cancels. Cost: a copy.
  Context context() const noexcept;

  struct State;  // shared with connections; defined in the source

 private:
  std::shared_ptr<State> state_;
};

}  // namespace ctxpp::asio
