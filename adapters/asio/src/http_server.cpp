// HttpServer: one strand per connection; the handler runs on a pool while the
// connection's socket stays watched for the client going away.
#include "ctxpp/asio/http_server.hpp"

#include <sys/socket.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ctxpp/asio/error.hpp"
#include "ctxpp/scoped_callback.hpp"

namespace ctxpp::asio {

namespace net = ::boost::asio;
namespace beast = ::boost::beast;
namespace http = ::boost::beast::http;
using tcp = ::boost::asio::ip::tcp;

class Connection;

struct HttpServer::State {
  State(Handler h, HttpServerOptions o)
      : handler(std::move(h)),
        options(std::move(o)),
        acceptor(net::make_strand(io)),
        retry_timer(acceptor.get_executor()) {
    if (options.handler_executor != nullptr) {
      handlers = options.handler_executor;
    } else {
      own_pool = std::make_unique<ThreadPool>(options.handler_threads);
      handlers = own_pool.get();
    }
    auto root = with_cancel_cause(background());
    server_ctx = std::move(root.ctx);
    server_cancel = std::move(root.cancel);
  }

  void accept();
  void request_started() { in_flight.fetch_add(1, std::memory_order_relaxed); }
  void request_ended() {
    if (in_flight.fetch_sub(1, std::memory_order_acq_rel) == 1) notify();
  }
  void handler_ended() {
    if (handlers_running.fetch_sub(1, std::memory_order_acq_rel) == 1) notify();
  }
  void notify() {
    std::lock_guard lock(mutex);
    changed.notify_all();
  }
  template <class Pred>
  bool wait_until(Pred pred, std::optional<clock::time_point> until = std::nullopt) {
    std::unique_lock lock(mutex);
    if (!until) {
      changed.wait(lock, pred);
      return true;
    }
    return changed.wait_until(lock, *until, pred);
  }
  // Calls f(connection) on each live connection's strand.
  template <class F>
  void for_each_connection(F f);

  const Handler handler;
  const HttpServerOptions options;
  // Before io: connections destroyed with io's queued handlers unregister here.
  std::mutex connections_mutex;
  std::uint64_t next_connection = 0;
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> live;
  // Destroyed last: queued handlers (holding connections) go with it, after the pool
  // below has finished every task that could post one.
  net::io_context io;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  tcp::acceptor acceptor;
  net::steady_timer retry_timer;  // re-accepts after an accept error (EMFILE)
  std::vector<std::thread> threads;
  std::unique_ptr<ThreadPool> own_pool;
  Executor* handlers = nullptr;
  Context server_ctx;
  CancelCauseFunc server_cancel;
  bool started = false;  // owner thread only
  bool stopped = false;  // owner thread only
  std::atomic<bool> stopping{false};
  std::atomic<std::uint16_t> port{0};

  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> in_flight{0};
  std::atomic<std::uint64_t> canceled_by_disconnect{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> timed_out{0};
  std::atomic<std::uint64_t> handlers_running{0};

  std::mutex mutex;
  std::condition_variable changed;  // in_flight or handlers_running reached 0
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(HttpServer::State& server, tcp::socket socket)
      : server_(server), executor_(socket.get_executor()), stream_(std::move(socket)) {}

  ~Connection() {
    std::lock_guard lock(server_.connections_mutex);
    server_.live.erase(id_);
  }

  void start() {
    {
      std::lock_guard lock(server_.connections_mutex);
      id_ = server_.next_connection++;
      server_.live.emplace(id_, weak_from_this());
    }
    net::post(executor_, [self = shared_from_this()] { self->read_request(); });
  }

  // On the strand. force: also connections whose handler is running.
  void on_stop(bool force) {
    if (force || !in_request_) close();
  }

  const net::any_io_executor& executor() const noexcept { return executor_; }

 private:
  void read_request() {
    if (closed_) return;
    if (server_.stopping.load(std::memory_order_acquire)) return close();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
        server_.options.header_limit, std::numeric_limits<std::uint32_t>::max())));
    parser_->body_limit(server_.options.body_limit);
    stream_.expires_after(server_.options.read_timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (closed_) return;
    if (ec == beast::error::timeout) {
      server_.timed_out.fetch_add(1, std::memory_order_relaxed);
      return close();
    }
    if (ec == http::error::header_limit)
      return reject(http::status::request_header_fields_too_large);
    if (ec == http::error::body_limit) return reject(http::status::payload_too_large);
    if (ec && ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return reject(http::status::bad_request);
    }
    if (ec) return close();  // end of stream, reset, closed by stop()
    handle(std::make_shared<Request>(parser_->release()));
  }

  void handle(std::shared_ptr<Request> request) {
    server_.requests.fetch_add(1, std::memory_order_relaxed);
    server_.request_started();
    in_request_ = true;
    keep_alive_ = request->keep_alive();
    version_ = request->version();
    auto child = with_cancel_cause(server_.server_ctx);
    request_ctx_ = child.ctx;
    request_cancel_ = std::move(child.cancel);
    stream_.expires_never();
    watch();

    server_.handlers_running.fetch_add(1, std::memory_order_relaxed);
    try {
      server_.handlers->execute(
          [self = shared_from_this(), ctx = std::move(child.ctx), request = std::move(request)] {
            auto response = std::make_shared<Response>(self->run_handler(ctx, *request));
            HttpServer::State& server = self->server_;
            net::post(self->executor_,
                      [self, response] { self->on_handler_done(std::move(*response)); });
            server.handler_ended();
          });
    } catch (...) {
      server_.handler_ended();
      on_handler_done(simple_response(http::status::service_unavailable, "server overloaded\n"));
    }
  }

  Response run_handler(const Context& ctx, const Request& request) noexcept {
    try {
      return server_.handler(ctx, request);
    } catch (...) {
      try {
        return simple_response(http::status::internal_server_error, "internal error\n");
      } catch (...) {
        return Response();
      }
    }
  }

  Response simple_response(http::status status, const char* body) const {
    Response response{status, version_ == 0 ? 11U : version_};
    response.set(http::field::content_type, "text/plain");
    response.body() = body;
    return response;
  }

  // Keeps a read readiness wait pending while the handler runs: EOF or an error
  // means the client is gone; bytes are the next pipelined request, read ahead
  // into the parse buffer (so they neither look like a disconnect nor keep the wait
  // firing) up to the request limits.
  void watch() {
    watching_ = true;
    const std::uint64_t generation = ++watch_generation_;
    stream_.socket().async_wait(tcp::socket::wait_read,
                                [self = shared_from_this(), generation](beast::error_code ec) {
                                  self->on_readable(generation, ec);
                                });
  }

  void on_readable(std::uint64_t generation, beast::error_code ec) {
    if (ec || !watching_ || generation != watch_generation_ || closed_) return;
    const std::uint64_t limit64 = server_.options.header_limit + server_.options.body_limit;
    const std::size_t limit = static_cast<std::size_t>(
        std::min<std::uint64_t>(limit64, std::numeric_limits<std::size_t>::max() / 2));
    if (buffer_.size() >= limit) {
      watching_ = false;  // a client this far ahead is served first, watched later
      return;
    }
    const std::size_t room = std::min<std::size_t>(limit - buffer_.size(), 16 * 1024);
    auto space = buffer_.prepare(room);
    const ssize_t n =
        ::recv(stream_.socket().native_handle(), space.data(), space.size(), MSG_DONTWAIT);
    if (n > 0) {
      buffer_.commit(static_cast<std::size_t>(n));
      return watch();
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return watch();
    // n == 0: orderly close; otherwise ECONNRESET, EPIPE, ...: the client is gone.
    watching_ = false;
    disconnected_ = true;
    server_.canceled_by_disconnect.fetch_add(1, std::memory_order_relaxed);
    request_cancel_(make_error_code(errc::client_disconnected));
    close();
  }

  void on_handler_done(Response response) {
    watching_ = false;
    ++watch_generation_;
    if (closed_ || disconnected_) return end_request();
    beast::error_code ignored;
    stream_.socket().cancel(ignored);  // the readiness wait
    const bool keep_alive = keep_alive_ && !server_.stopping.load(std::memory_order_acquire);
    response_ = std::make_shared<Response>(std::move(response));
    response_->keep_alive(keep_alive);
    response_->prepare_payload();
    write(keep_alive);
  }

  void reject(http::status status) {
    server_.rejected.fetch_add(1, std::memory_order_relaxed);
    const char* body = status == http::status::request_header_fields_too_large
                           ? "request header fields too large\n"
                       : status == http::status::payload_too_large ? "payload too large\n"
                                                                   : "bad request\n";
    response_ = std::make_shared<Response>(simple_response(status, body));
    response_->keep_alive(false);
    response_->prepare_payload();
    write(false);
  }

  void write(bool keep_alive) {
    stream_.expires_after(server_.options.write_timeout);
    http::async_write(stream_, *response_,
                      [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                        self->on_write(ec, keep_alive);
                      });
  }

  void on_write(beast::error_code ec, bool keep_alive) {
    response_.reset();
    end_request();
    if (closed_) return;
    if (ec) return close();
    if (keep_alive) return read_request();
    linger();
  }

  void end_request() {
    if (!in_request_) return;
    in_request_ = false;
    request_cancel_({});  // the request is over: release what hangs on its context
    request_cancel_ = CancelCauseFunc();
    request_ctx_ = Context();
    server_.request_ended();
  }

  // Closing with unread request bytes would send a reset that can destroy the
  // response in the client's buffers: half-close, then read and discard for a while.
  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::milliseconds(500));
    drain();
  }

  void drain() {
    stream_.async_read_some(net::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > 64 * 1024) return self->close();
                              self->drain();
                            });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    watching_ = false;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  HttpServer::State& server_;
  const net::any_io_executor executor_;  // the connection's strand
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Response> response_;
  Context request_ctx_;
  CancelCauseFunc request_cancel_;
  std::uint64_t id_ = 0;
  std::uint64_t watch_generation_ = 0;
  std::size_t drained_ = 0;
  unsigned version_ = 11;
  bool watching_ = false;
  bool in_request_ = false;
  bool keep_alive_ = false;
  bool disconnected_ = false;
  bool closed_ = false;
  std::array<char, 4096> discard_{};
};

template <class F>
void HttpServer::State::for_each_connection(F f) {
  std::vector<std::shared_ptr<Connection>> all;
  {
    std::lock_guard lock(connections_mutex);
    for (auto& [id, weak] : live) {
      if (auto connection = weak.lock()) all.push_back(std::move(connection));
    }
  }
  for (auto& connection : all) {
    net::post(connection->executor(), [connection, f] { f(*connection); });
  }
}

void HttpServer::State::accept() {
  acceptor.async_accept(net::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
    if (stopping.load(std::memory_order_acquire) || !acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors or memory: try again shortly rather than spin.
      retry_timer.expires_after(std::chrono::milliseconds(50));
      retry_timer.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec) accept();
      });
      return;
    }
    connections.fetch_add(1, std::memory_order_relaxed);
    std::make_shared<Connection>(*this, std::move(socket))->start();
    accept();
  });
}

HttpServer::HttpServer(Handler handler, HttpServerOptions options) {
  if (!handler) throw std::invalid_argument("HttpServer: empty handler");
  if (options.io_threads == 0) throw std::invalid_argument("HttpServer: io_threads is 0");
  if (options.handler_executor == nullptr && options.handler_threads == 0) {
    throw std::invalid_argument("HttpServer: handler_threads is 0");
  }
  const auto zero = std::chrono::steady_clock::duration::zero();
  if (options.read_timeout <= zero || options.write_timeout <= zero || options.stop_grace <= zero) {
    throw std::invalid_argument("HttpServer: timeouts must be positive");
  }
  state_ = std::make_shared<State>(std::move(handler), std::move(options));
}

HttpServer::~HttpServer() {
  auto ended = with_cancel(background());
  ended.cancel();
  stop(ended.ctx);
}

std::error_code HttpServer::start() {
  State& s = *state_;
  if (s.started) return std::make_error_code(std::errc::invalid_argument);
  s.started = true;
  beast::error_code ec;
  const auto address = net::ip::make_address(s.options.address, ec);
  if (ec) return std::make_error_code(std::errc::invalid_argument);
  const tcp::endpoint endpoint(address, s.options.port);
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    beast::error_code ignored;
    s.acceptor.close(ignored);
    s.stopped = true;
    return ec;
  }
  s.port.store(s.acceptor.local_endpoint().port(), std::memory_order_release);
  s.work.emplace(s.io.get_executor());
  s.accept();
  try {
    for (std::size_t i = 0; i < s.options.io_threads; ++i) {
      s.threads.emplace_back([&io = s.io] { io.run(); });
    }
  } catch (const std::system_error& e) {
    auto ended = with_cancel(background());
    ended.cancel();
    stop(ended.ctx);
    return e.code();
  }
  return {};
}

std::uint16_t HttpServer::port() const noexcept {
  return state_->port.load(std::memory_order_acquire);
}

void HttpServer::stop(const Context& drain) {
  State& s = *state_;
  if (s.stopped) return;
  s.stopped = true;
  if (!s.started) {
    s.server_cancel(make_error_code(errc::server_stopped));
    return;
  }
  s.stopping.store(true, std::memory_order_release);
  net::post(s.acceptor.get_executor(), [&s] {
    beast::error_code ignored;
    s.acceptor.close(ignored);
    s.retry_timer.cancel();
  });
  s.for_each_connection([](Connection& c) { c.on_stop(false); });

  {
    // Created outside the lock: it runs inline when drain has already ended.
    ScopedCallback wake(drain, [&s]() noexcept { s.notify(); });
    s.wait_until([&] { return s.in_flight.load() == 0 || drain.done(); });
  }
  s.server_cancel(make_error_code(errc::server_stopped));
  s.wait_until([&] { return s.in_flight.load() == 0; }, clock::now() + s.options.stop_grace);
  s.for_each_connection([](Connection& c) { c.on_stop(true); });
  // Handlers that ignore their context hold the server here: their tasks refer to it.
  s.wait_until([&] { return s.handlers_running.load() == 0; });
  s.work.reset();
  for (auto& thread : s.threads) thread.join();
  s.threads.clear();
}

HttpServerStats HttpServer::stats() const noexcept {
  const State& s = *state_;
  HttpServerStats out;
  out.connections = s.connections.load(std::memory_order_relaxed);
  out.requests = s.requests.load(std::memory_order_relaxed);
  out.in_flight = s.in_flight.load(std::memory_order_relaxed);
  out.canceled_by_disconnect = s.canceled_by_disconnect.load(std::memory_order_relaxed);
  out.rejected = s.rejected.load(std::memory_order_relaxed);
  out.timed_out = s.timed_out.load(std::memory_order_relaxed);
  return out;
}

Context HttpServer::context() const noexcept { return state_->server_ctx; }

}  // namespace ctxpp::asio
