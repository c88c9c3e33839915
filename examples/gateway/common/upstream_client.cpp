#include "upstream_client.hpp"

#include <sys/socket.h>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <stdexcept>

#include "ctxpp/errc.hpp"
#include "ctxpp/http/deadline.hpp"
#include "ctxpp/scoped_callback.hpp"

namespace gateway {

namespace http = ::boost::beast::http;
namespace net = ::boost::asio;

namespace {

// A pooled connection the upstream closed while it sat idle reads as EOF at once.
bool peer_closed(int fd) noexcept {
  char byte = 0;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || n > 0;  // EOF, or bytes nobody asked for: not reusable either way
}

bool stale_connection_error(const ::boost::system::error_code& ec) noexcept {
  return ec == http::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe;
}

ctxpp::PoolOptions pool_options(std::size_t max_connections) {
  if (max_connections == 0) throw std::invalid_argument("UpstreamClient: max_connections 0");
  ctxpp::PoolOptions options;
  options.name = "upstream";
  options.max_size = max_connections;
  // Below the upstream's own idle timeout, so the pool drops a connection first.
  options.idle_timeout = std::chrono::seconds(4);
  return options;
}

}  // namespace

UpstreamClient::UpstreamClient(std::string host, std::uint16_t port, std::size_t max_connections)
    : host_(std::move(host)),
      endpoint_(net::ip::make_address(host_), port),
      pool_(ctxpp::PoolHooks<UpstreamConnection>{
                .create = [this](const ctxpp::Context& ctx) { return connect(ctx); },
                .recycle =
                    [](UpstreamConnection& connection) {
                      return connection.socket.is_open() &&
                             !peer_closed(connection.socket.native_handle());
                    },
                .interrupt = {}},
            pool_options(max_connections)) {}

UpstreamClient::~UpstreamClient() = default;

ctxpp::Result<UpstreamConnection> UpstreamClient::connect(const ctxpp::Context& ctx) {
  if (ctx.done()) return ctx.err();
  UpstreamConnection connection{net::ip::tcp::socket(io_), {}, 0};
  ::boost::system::error_code ec;
  connection.socket.open(endpoint_.protocol(), ec);
  if (!ec) {
    // Unblocks a connect that hangs (a full backlog) when the caller gives up.
    ctxpp::ScopedCallback stop_connect(ctx, [&connection]() noexcept {
      ::shutdown(connection.socket.native_handle(), SHUT_RDWR);
    });
    connection.socket.connect(endpoint_, ec);
  }
  if (ctx.done()) return ctx.err();
  if (ec) return std::error_code(ec);
  connection.socket.set_option(net::ip::tcp::no_delay(true), ec);
  return connection;
}

ctxpp::Result<UpstreamReply> UpstreamClient::call(const ctxpp::Context& ctx, http::verb method,
                                                  std::string_view target, std::string_view body,
                                                  std::string_view request_id) {
  const ctxpp::http::OutgoingDeadline deadline = ctxpp::http::outgoing_deadline(ctx);
  if (deadline.action == ctxpp::http::Forward::do_not_send) {
    return ctx.err() ? ctx.err() : make_error_code(ctxpp::errc::deadline_exceeded);
  }
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  struct Leave {
    std::atomic<std::int64_t>& counter;
    ~Leave() { counter.fetch_sub(1, std::memory_order_relaxed); }
  } leave{in_flight_};

  http::request<http::string_body> request{method, target, 11};
  request.set(http::field::host, host_);
  request.set("X-Request-Id", request_id);
  if (deadline.action == ctxpp::http::Forward::send) {
    request.set(ctxpp::http::request_timeout_header, deadline.request_timeout_ms());
  }
  if (!body.empty()) request.set(http::field::content_type, "application/json");
  request.body() = std::string(body);
  request.keep_alive(true);
  request.prepare_payload();

  for (int attempt = 0;; ++attempt) {
    auto lease = pool_.acquire(ctx);
    if (!lease) return lease.error();
    UpstreamConnection& connection = **lease;
    const bool reused = connection.requests > 0;
    ::boost::system::error_code ec;
    http::response<http::string_body> response;
    {
      // The cancelling thread shuts the socket down: the blocked write or read below
      // returns at once, and the upstream reads EOF, which ends its request context.
      ctxpp::ScopedCallback interrupt(ctx, [&connection]() noexcept {
        ::shutdown(connection.socket.native_handle(), SHUT_RDWR);
      });
      http::write(connection.socket, request, ec);
      if (!ec) http::read(connection.socket, connection.buffer, response, ec);
    }
    if (ctx.done()) {
      lease->discard();
      return ctx.err();
    }
    if (ec) {
      lease->discard();
      if (reused && attempt == 0 && stale_connection_error(ec)) continue;
      return std::error_code(ec);
    }
    ++connection.requests;
    if (!response.keep_alive()) lease->discard();
    return UpstreamReply{response.result_int(), std::move(response.body())};
  }
}

}  // namespace gateway
