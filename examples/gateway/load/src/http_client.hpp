// http_client.hpp — a minimal HTTP/1.1 client on raw POSIX sockets.
// The load generator needs exact control over when a client goes away (an RST at a
// chosen moment, its steady_clock time recorded), which a full client library hides.
// Every wait is bounded by a deadline; nothing here throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ctxpp_load {

using Clock = std::chrono::steady_clock;

/// A numeric IPv4 address and port.
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string text() const { return host + ":" + std::to_string(port); }
};

/// Parses "127.0.0.1:8080" or "http://127.0.0.1:8080[/]"; nullopt when malformed.
[[nodiscard]] std::optional<Endpoint> parse_endpoint(std::string_view text);

/// Nanoseconds on CLOCK_MONOTONIC, the clock the servers stamp their records with.
std::int64_t monotonic_ns();

struct HttpResponse {
  int status = 0;
  std::string body;
  bool keep_alive = true;
};

/// Parses one complete response from `buffer`. Returns the response and how many bytes
/// it used, or nullopt while more bytes are needed. `eof` says the peer has closed, which
/// ends a body without a length. Errors: sets `error` (and returns nullopt) on bad syntax.
[[nodiscard]] std::optional<std::pair<HttpResponse, std::size_t>> parse_response(
    std::string_view buffer, bool eof, std::string& error);

/// Serializes a request; `headers` are extra "Name: value" pairs.
std::string build_request(std::string_view method, std::string_view target,
                          const std::vector<std::pair<std::string, std::string>>& headers,
                          std::string_view body, bool keep_alive);

/// One connection, reused for keep-alive requests and reopened when the server closed it.
/// Ownership: owns its socket; not copyable. Thread safety: one thread at a time.
class HttpConnection {
 public:
  explicit HttpConnection(Endpoint endpoint) : endpoint_(std::move(endpoint)) {}
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;
  ~HttpConnection() { close(); }

  /// Sends `request` and reads the whole response. A request on a reused connection that
  /// fails before any response byte arrived is retried once on a fresh one (the server may
  /// have closed an idle connection). Blocking: until `deadline` at most.
  [[nodiscard]] std::optional<HttpResponse> exchange(const std::string& request,
                                                     Clock::time_point deadline,
                                                     std::string& error);

  /// Opens a fresh connection and sends `request` without reading: the caller decides
  /// when to hang up. Blocking: until `deadline` at most.
  [[nodiscard]] bool open_and_send(const std::string& request, Clock::time_point deadline,
                                   std::string& error);

  /// Waits up to `timeout` for the first response byte; true when one arrived.
  bool wait_readable(std::chrono::milliseconds timeout);

  /// Hangs up with an RST (SO_LINGER 0) so the server sees the client gone at once rather
  /// than a half-close it might not notice until it writes. Returns the close's ns.
  std::int64_t reset();

  void close();

 private:
  bool connect(Clock::time_point deadline, std::string& error);
  bool send_all(std::string_view data, Clock::time_point deadline, std::string& error);
  std::optional<HttpResponse> read_response(Clock::time_point deadline, std::string& error,
                                            bool& got_bytes);

  Endpoint endpoint_;
  int fd_ = -1;
  std::string buffer_;
};

/// GET `target` on a connection; the body when the status is 200, nullopt otherwise.
[[nodiscard]] std::optional<std::string> http_get(HttpConnection& connection,
                                                  const std::string& target,
                                                  std::chrono::milliseconds timeout,
                                                  std::string& error);

}  // namespace ctxpp_load
