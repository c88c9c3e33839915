// HttpServer against real clients on 127.0.0.1: disconnects cancel the handler's
// context, pipelining does not, stop() drains and cancels, limits and timeouts close
// bad clients while the server stays up.
#include "ctxpp/asio/http_server.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "ctxpp/asio/error.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
// Contexts are unpacked into plain variables, not structured bindings, because
// clang 14 cannot capture a structured binding in a lambda.
using ctxpp_test::describe;
namespace http = ::boost::beast::http;
using Clock = std::chrono::steady_clock;

// A blocking POSIX client socket with bounded reads.
class Client {
 public:
  explicit Client(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() { close(); }

  bool connected() const { return connected_; }

  bool send(const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Reads until `responses` complete responses (Content-Length bodies) have arrived,
  // EOF, or bound; returns what was read.
  std::string read_responses(int responses, Clock::duration bound = 10s) {
    const auto until = Clock::now() + bound;
    while (count_complete() < responses && !eof_) {
      if (!read_some(until)) break;
    }
    return data_;
  }

  // Reads until EOF or bound; true on EOF (or reset).
  bool wait_eof(Clock::duration bound) {
    const auto until = Clock::now() + bound;
    while (!eof_) {
      if (!read_some(until)) break;
    }
    return eof_;
  }

  // Closes with a reset (RST) instead of an orderly FIN.
  void reset() {
    linger option{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &option, sizeof option);
    close();
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  bool read_some(Clock::time_point until) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left <= 0ms) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    data_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  int count_complete() const {
    int count = 0;
    std::size_t at = 0;
    while (true) {
      const auto end = data_.find("\r\n\r\n", at);
      if (end == std::string::npos) return count;
      std::size_t length = 0;
      const auto cl = data_.find("Content-Length: ", at);
      if (cl != std::string::npos && cl < end) length = std::stoul(data_.substr(cl + 16));
      if (data_.size() < end + 4 + length) return count;
      ++count;
      at = end + 4 + length;
    }
  }

  int fd_;
  bool connected_ = false;
  bool eof_ = false;
  std::string data_;
};

std::string get(const std::string& target, bool close = false) {
  return "GET " + target + " HTTP/1.1\r\nHost: test\r\n" + (close ? "Connection: close\r\n" : "") +
         "\r\n";
}

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

ctxpp::asio::Response ok(const ctxpp::asio::Request& request, std::string body) {
  ctxpp::asio::Response response{http::status::ok, request.version()};
  response.body() = std::move(body);
  return response;
}

ctxpp::Context ended_context() {
  auto ended = ctxpp::with_cancel(ctxpp::background());
  ended.cancel();
  return ended.ctx;
}

// What a slow handler saw: when its context ended, and why.
struct Observed {
  ctxpp_test::Gate entered;
  ctxpp_test::Gate finished;
  std::mutex mutex;
  std::error_code cause;
  Clock::time_point ended_at;
};

// Waits up to 20 s for its context (far beyond any test's bound), records the cause.
ctxpp::asio::Handler slow_handler(Observed& seen) {
  return [&seen](const ctxpp::Context& ctx, const ctxpp::asio::Request& request) {
    seen.entered.open();
    const bool ended = ctx.wait_for(20s);
    {
      std::lock_guard lock(seen.mutex);
      seen.ended_at = Clock::now();
      seen.cause = ended ? ctx.cause() : std::error_code();
    }
    seen.finished.open();
    return ok(request, "late\n");
  };
}

TEST(HttpServer, KeepAliveServesTwoRequestsOnOneConnection) {
  ctxpp::asio::HttpServer server([](const ctxpp::Context&, const ctxpp::asio::Request& request) {
    return ok(request, "hello " + std::string(request.target()) + "\n");
  });
  ASSERT_FALSE(server.start());
  ASSERT_NE(server.port(), 0);
  Client client(server.port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send(get("/one")));
  std::string got = client.read_responses(1);
  EXPECT_NE(got.find("HTTP/1.1 200 OK"), std::string::npos) << got;
  EXPECT_NE(got.find("hello /one"), std::string::npos) << got;
  ASSERT_TRUE(client.send(get("/two")));
  got = client.read_responses(2);
  EXPECT_NE(got.find("hello /two"), std::string::npos) << got;
  EXPECT_EQ(server.stats().connections, 1U);
  EXPECT_EQ(server.stats().requests, 2U);
  EXPECT_TRUE(ctxpp_test::eventually([&] { return server.stats().in_flight == 0; }));
  server.stop(ended_context());
}

TEST(HttpServer, ClientDisconnectCancelsTheHandlersContext) {
  Observed seen;
  ctxpp::asio::HttpServer server(slow_handler(seen));
  ASSERT_FALSE(server.start());
  Client client(server.port());
  ASSERT_TRUE(client.send(get("/slow")));
  ASSERT_TRUE(seen.entered.wait(10s));
  const auto closed_at = Clock::now();
  client.close();
  ASSERT_TRUE(seen.finished.wait(10s));
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.cause, ctxpp::asio::errc::client_disconnected) << describe(seen.cause);
  const auto latency = seen.ended_at - closed_at;
  std::printf("disconnect -> context end: %.3f ms\n",
              std::chrono::duration<double, std::milli>(latency).count());
  EXPECT_LT(latency, 2s);
  EXPECT_TRUE(ctxpp_test::eventually([&] { return server.stats().in_flight == 0; }));
  EXPECT_EQ(server.stats().canceled_by_disconnect, 1U);
  server.stop(ended_context());
}

TEST(HttpServer, ResetByTheClientCountsAsDisconnect) {
  Observed seen;
  ctxpp::asio::HttpServer server(slow_handler(seen));
  ASSERT_FALSE(server.start());
  Client client(server.port());
  ASSERT_TRUE(client.send(get("/slow")));
  ASSERT_TRUE(seen.entered.wait(10s));
  client.reset();
  ASSERT_TRUE(seen.finished.wait(10s));
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.cause, ctxpp::asio::errc::client_disconnected) << describe(seen.cause);
  server.stop(ended_context());
}

TEST(HttpServer, PipelinedRequestIsNotADisconnect) {
  std::atomic<int> canceled{0};
  ctxpp::asio::HttpServer server(
      [&](const ctxpp::Context& ctx, const ctxpp::asio::Request& request) {
        if (request.target() == "/first") {
          // Long enough for the second request's bytes to reach the watched socket.
          if (ctx.wait_for(300ms)) canceled.fetch_add(1);
        }
        return ok(request, "body of " + std::string(request.target()) + "\n");
      });
  ASSERT_FALSE(server.start());
  Client client(server.port());
  ASSERT_TRUE(client.send(get("/first") + get("/second")));
  const std::string got = client.read_responses(2);
  EXPECT_EQ(count_of(got, "HTTP/1.1 200 OK"), 2) << got;
  const auto first = got.find("body of /first");
  const auto second = got.find("body of /second");
  EXPECT_NE(first, std::string::npos) << got;
  EXPECT_NE(second, std::string::npos) << got;
  EXPECT_LT(first, second) << "responses out of order: " << got;
  EXPECT_EQ(canceled.load(), 0);
  EXPECT_EQ(server.stats().canceled_by_disconnect, 0U);
  server.stop(ended_context());
}

TEST(HttpServer, StopCancelsRequestsInFlightWithServerStopped) {
  Observed seen;
  ctxpp::asio::HttpServer server(slow_handler(seen));
  ASSERT_FALSE(server.start());
  Client client(server.port());
  ASSERT_TRUE(client.send(get("/slow")));
  ASSERT_TRUE(seen.entered.wait(10s));
  const auto start = Clock::now();
  server.stop(ended_context());
  EXPECT_LT(Clock::now() - start, 5s);
  ASSERT_TRUE(seen.finished.wait(10s));
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.cause, ctxpp::asio::errc::server_stopped) << describe(seen.cause);
  EXPECT_TRUE(server.context().done());
  // The cancelled handler's answer still goes out, with Connection: close.
  const std::string got = client.read_responses(1, 5s);
  EXPECT_NE(got.find("late"), std::string::npos) << got;
  EXPECT_TRUE(client.wait_eof(5s));
}

TEST(HttpServer, StopLetsRequestsInFlightFinishWhileDrainIsLive) {
  std::atomic<bool> canceled{false};
  ctxpp_test::Gate entered;
  ctxpp::asio::HttpServer server(
      [&](const ctxpp::Context& ctx, const ctxpp::asio::Request& request) {
        entered.open();
        if (ctx.wait_for(150ms)) canceled = true;
        return ok(request, "finished\n");
      });
  ASSERT_FALSE(server.start());
  Client client(server.port());
  ASSERT_TRUE(client.send(get("/drain")));
  ASSERT_TRUE(entered.wait(10s));
  auto made = ctxpp::with_timeout(ctxpp::background(), 10s);
  const ctxpp::Context drain = made.ctx;
  const auto cancel = made.cancel;
  const auto start = Clock::now();
  server.stop(drain);
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_FALSE(canceled.load());
  const std::string got = client.read_responses(1, 5s);
  EXPECT_NE(got.find("finished"), std::string::npos) << got;
  EXPECT_NE(got.find("Connection: close"), std::string::npos) << got;
  Client late(server.port());
  EXPECT_FALSE(late.connected() && late.send(get("/x")) && !late.wait_eof(5s));
}

TEST(HttpServer, OversizedHeaderGets431AndTheServerStaysUp) {
  ctxpp::asio::HttpServerOptions options;
  options.header_limit = 1024;
  ctxpp::asio::HttpServer server(
      [](const ctxpp::Context&, const ctxpp::asio::Request& request) {
        return ok(request, "fine\n");
      },
      options);
  ASSERT_FALSE(server.start());
  {
    Client client(server.port());
    ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + std::string(8000, 'a') +
                            "\r\n\r\n"));
    const std::string got = client.read_responses(1);
    EXPECT_EQ(got.rfind("HTTP/1.1 431", 0), 0U) << got.substr(0, 200);
    EXPECT_TRUE(client.wait_eof(5s));
  }
  Client next(server.port());
  ASSERT_TRUE(next.send(get("/", true)));
  const std::string got = next.read_responses(1);
  EXPECT_NE(got.find("fine"), std::string::npos) << got;
  EXPECT_EQ(server.stats().rejected, 1U);
  server.stop(ended_context());
}

TEST(HttpServer, OversizedBodyGets413) {
  ctxpp::asio::HttpServerOptions options;
  options.body_limit = 100;
  ctxpp::asio::HttpServer server(
      [](const ctxpp::Context&, const ctxpp::asio::Request& request) {
        return ok(request, "fine\n");
      },
      options);
  ASSERT_FALSE(server.start());
  Client client(server.port());
  ASSERT_TRUE(client.send("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n" +
                          std::string(1000, 'b')));
  const std::string got = client.read_responses(1);
  EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0U) << got.substr(0, 200);
  server.stop(ended_context());
}

TEST(HttpServer, PartialRequestIsClosedAfterTheReadTimeout) {
  ctxpp::asio::HttpServerOptions options;
  options.read_timeout = 200ms;
  std::atomic<int> handled{0};
  ctxpp::asio::HttpServer server(
      [&](const ctxpp::Context&, const ctxpp::asio::Request& request) {
        handled.fetch_add(1);
        return ok(request, "fine\n");
      },
      options);
  ASSERT_FALSE(server.start());
  Client client(server.port());
  const auto start = Clock::now();
  ASSERT_TRUE(client.send("GET /slowloris HTTP/1.1\r\nHost: te"));
  EXPECT_TRUE(client.wait_eof(10s));
  const auto took = Clock::now() - start;
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(handled.load(), 0);
  EXPECT_TRUE(ctxpp_test::eventually([&] { return server.stats().timed_out == 1; }, 5s));
  server.stop(ended_context());
}

TEST(HttpServer, HandlerExceptionGives500) {
  ctxpp::asio::HttpServer server(
      [](const ctxpp::Context&, const ctxpp::asio::Request&) -> ctxpp::asio::Response {
        throw std::runtime_error("boom");
      });
  ASSERT_FALSE(server.start());
  Client client(server.port());
  ASSERT_TRUE(client.send(get("/", true)));
  const std::string got = client.read_responses(1);
  EXPECT_EQ(got.rfind("HTTP/1.1 500", 0), 0U) << got;
}

TEST(HttpServer, BadAddressAndSecondStartAreErrors) {
  ctxpp::asio::HttpServerOptions options;
  options.address = "not an address";
  ctxpp::asio::HttpServer bad(
      [](const ctxpp::Context&, const ctxpp::asio::Request& r) { return ok(r, ""); }, options);
  EXPECT_EQ(bad.start(), std::errc::invalid_argument);
  ctxpp::asio::HttpServer good(
      [](const ctxpp::Context&, const ctxpp::asio::Request& r) { return ok(r, ""); });
  ASSERT_FALSE(good.start());
  EXPECT_EQ(good.start(), std::errc::invalid_argument);
}

}  // namespace
