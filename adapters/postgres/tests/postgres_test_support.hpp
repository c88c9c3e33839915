// What the PostgreSQL adapter's tests share: the server CTest started (or why there
// is none: the test then skips with that reason), connection strings tagged per
// test so that pg_stat_activity can be read per test while other tests run, and
// bounded polling of server state (the only waiting these tests do).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>

#include "ctxpp/context.hpp"
#include "ctxpp/postgres/connection.hpp"
#include "ctxpp/postgres/query.hpp"
#include "support/test_support.hpp"

namespace ctxpp_postgres_test {

using ctxpp_test::kTsan;

// A bound that only a bug can reach.
inline constexpr std::chrono::seconds kLongBound{30};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The server's conninfo, or empty with *reason set.
inline std::string server_conninfo(std::string* reason) {
  const char* dir = std::getenv("CTXPP_POSTGRES_DIR");
  if (dir == nullptr || *dir == '\0') {
    *reason = "CTXPP_POSTGRES_DIR is not set: run through ctest, which starts the server";
    return {};
  }
  const std::string base(dir);
  std::string conninfo = read_file(base + "/conninfo");
  if (!conninfo.empty()) return conninfo;
  const std::string unavailable = read_file(base + "/unavailable");
  *reason = unavailable.empty()
                ? "no PostgreSQL test server in " + base + " (postgres.server.start did not run?)"
                : "PostgreSQL test server unavailable: " + unavailable;
  return {};
}

// A test that needs the server: skipped, with the reason, when there is none.
class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason;
    base_ = server_conninfo(&reason);
    if (base_.empty()) GTEST_SKIP() << reason;
    static int counter = 0;
    tag_ = "ctxpp_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
  }

  // The conninfo of connections whose activity this test inspects.
  std::string conninfo() const { return base_ + " application_name=" + tag_; }
  // The conninfo of an observer, not counted by active_statements().
  std::string observer_conninfo() const { return base_ + " application_name=" + tag_ + "_obs"; }
  const std::string& tag() const { return tag_; }

  // A connection for this test (fails the test if it cannot connect).
  ctxpp::postgres::Connection connect_or_fail(const std::string& info) const {
    std::string message;
    auto conn = ctxpp::postgres::connect(ctxpp::background(), info, &message);
    EXPECT_TRUE(conn) << conn.error().message() << ": " << message;
    return conn ? std::move(*conn) : ctxpp::postgres::Connection();
  }

  // Statements of this test's connections the server is running now whose text
  // contains pattern; -1 if the observer's query failed.
  static int active_statements(ctxpp::postgres::Connection& observer, const std::string& tag,
                               const std::string& pattern) {
    auto rows = ctxpp::postgres::query(
        ctxpp::background(), observer,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'"
        " AND strpos(query, $2) > 0",
        {tag, pattern});
    if (!rows || rows->rows() != 1) return -1;
    return std::stoi(std::string(rows->value(0, 0)));
  }

  // Polls condition (every few ms, no other waiting) until true or bound passed.
  static bool eventually(const std::function<bool()>& condition,
                         std::chrono::steady_clock::duration bound = kLongBound) {
    const auto end = std::chrono::steady_clock::now() + bound;
    while (!condition()) {
      if (std::chrono::steady_clock::now() >= end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling server state
    }
    return true;
  }

 private:
  std::string base_;
  std::string tag_;
};

// A TCP listener on 127.0.0.1 that never accepts: the kernel completes the
// handshake, then nothing ever answers, like a server that hangs.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 8) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    port_ = ntohs(addr.sin_port);
  }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;
  ~SilentServer() {
    if (fd_ >= 0) ::close(fd_);
  }
  std::string conninfo() const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " user=nobody dbname=none";
  }
  // True if a connection is waiting in the accept queue.
  bool has_pending_connection() const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A server test with a second connection that watches the server's activity.
class PostgresPool : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped()) return;
    observer_ = connect_or_fail(observer_conninfo());
    ASSERT_TRUE(observer_);
  }
  int active_sleeps() { return active_statements(observer_, tag(), "pg_sleep"); }
  ctxpp::postgres::Connection observer_;
};

}  // namespace ctxpp_postgres_test
