// examples/gateway/common/upstream_client.hpp — a blocking HTTP/1.1 client for the
// gateway's upstream calls that stops the moment its context ends.
// Keep-alive connections come from a ctxpp::Pool; a call forwards the context's
// remaining budget in X-Request-Timeout-Ms (the upstream stops no later than we do)
// and, when the context ends mid-call, shuts the socket down from the cancelling
// thread, so the blocked read returns at once and the upstream sees its client go
// (its own request context ends). A connection that saw a cancel is discarded.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/verb.hpp>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "ctxpp/context.hpp"
#include "ctxpp/pool.hpp"
#include "ctxpp/result.hpp"

namespace gateway {

struct UpstreamReply {
  unsigned status = 0;
  std::string body;
};

/// One keep-alive connection to the upstream.
struct UpstreamConnection {
  ::boost::asio::ip::tcp::socket socket;
  ::boost::beast::flat_buffer buffer;
  std::uint64_t requests = 0;  ///< answered on this connection so far
};

/// Thread safety: call() from any number of threads. Blocking: call() until the
/// reply, an error, or the context's end. Ownership: owns its connections; destroy
/// after every call returned.
class UpstreamClient {
 public:
  /// Errors: std::invalid_argument for max_connections 0.
  UpstreamClient(std::string host, std::uint16_t port, std::size_t max_connections);
  UpstreamClient(const UpstreamClient&) = delete;
  UpstreamClient& operator=(const UpstreamClient&) = delete;
  ~UpstreamClient();

  /// Sends method target with body (JSON) and X-Request-Id: request_id, and reads the
  /// reply. Errors: ctx.err() when ctx ended before or during the call (also when
  /// less than 1 ms of its budget is left: nothing is sent); the socket's error
  /// otherwise (a reused connection the upstream had closed is retried once on a
  /// fresh one). Any HTTP status is a reply, not an error.
  ctxpp::Result<UpstreamReply> call(const ctxpp::Context& ctx, ::boost::beast::http::verb method,
                                    std::string_view target, std::string_view body,
                                    std::string_view request_id);

  /// Calls running right now. Cost: a relaxed load.
  std::int64_t in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }

 private:
  ctxpp::Result<UpstreamConnection> connect(const ctxpp::Context& ctx);

  ::boost::asio::io_context io_;  // never run: the sockets are used synchronously
  std::string host_;
  ::boost::asio::ip::tcp::endpoint endpoint_;
  std::atomic<std::int64_t> in_flight_{0};
  ctxpp::Pool<UpstreamConnection> pool_;
};

}  // namespace gateway
