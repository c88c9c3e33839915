// examples/patterns/handler.cpp — one request context reaching a database, an upstream
// service and background work.
// handle(ctx, request) bounds the request with a timeout and hands that context to all
// it starts: a SQLite query runs through ctxpp::call_blocking with sqlite3_interrupt as
// its interrupt; the upstream call's blocking read on a 127.0.0.1 socket is unblocked by
// a ScopedCallback that shuts the socket down; background work runs in a TaskGroup that
// cannot outlive the request. Three requests — served, client gone mid-way, deadline
// passed — and after each the program checks that every part stopped.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include <ctxpp/blocking.hpp>
#include <ctxpp/cleanup.hpp>
#include <ctxpp/context.hpp>
#include <ctxpp/group.hpp>
#include <ctxpp/result.hpp>
#include <ctxpp/scoped_callback.hpp>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = ctxpp::clock;
using pattern_support::expect;
using pattern_support::Milestone;
using pattern_support::verdict;

std::error_code errno_error() { return {errno, std::system_category()}; }

// SQLite's result codes as std::error_code, for errors that are not the context's.
class SqliteCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "sqlite"; }
  std::string message(int code) const override { return sqlite3_errstr(code); }
};

std::error_code sqlite_error(int code) {
  static const SqliteCategory category;
  return {code, category};
}

// When a part of the handler stopped, for the checks.
class StopTime {
 public:
  void mark() { at_.store(Clock::now().time_since_epoch().count()); }
  bool marked() const { return at_.load() != 0; }
  // Milliseconds from since to the mark.
  double after(Clock::time_point since) const {
    const Clock::time_point at{Clock::duration(at_.load())};
    return std::chrono::duration<double, std::milli>(at - since).count();
  }

 private:
  std::atomic<Clock::rep> at_{0};
};

// --- the database -------------------------------------------------------------------------

constexpr const char* kOrdersSql = "SELECT coalesce(sum(quantity), 0) FROM orders WHERE sku = ?1";
// A report over a billion generated rows: minutes of work, the kind a client gives up on.
constexpr const char* kReportSql =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) "
    "SELECT count(*) FROM n WHERE i % 7 = length(?1)";

struct QueryValue {
  int code = SQLITE_OK;
  std::int64_t value = 0;
};

// What the checks need to know about one query. Shared with the worker: a call that
// was abandoned would outlive the handler.
struct QueryProbe {
  Milestone started;  // the statement is about to run
  std::atomic<bool> running{false};
  std::atomic<int> code{SQLITE_OK};  // what sqlite3_step returned last
  StopTime stopped;
};

int stop_if_done(void* ctx) { return static_cast<const ctxpp::Context*>(ctx)->done() ? 1 : 0; }

// Runs on a worker of the blocking pool.
QueryValue run_query(const ctxpp::Context& ctx, sqlite3* db, const char* sql,
                     const std::string& sku, QueryProbe& probe) {
  probe.running = true;
  auto not_running = ctxpp::defer([&probe] {
    probe.stopped.mark();
    probe.running = false;
  });
  // The deferred half of the hybrid. sqlite3_interrupt does nothing while no statement
  // runs, so a cancel that lands between here and the first sqlite3_step would be lost:
  // the progress handler looks at the context (one load) every 10 000 VM instructions.
  sqlite3_progress_handler(db, 10000, &stop_if_done, const_cast<ctxpp::Context*>(&ctx));
  auto unhook = ctxpp::defer([db] { sqlite3_progress_handler(db, 0, nullptr, nullptr); });

  sqlite3_stmt* statement = nullptr;
  int code = sqlite3_prepare_v2(db, sql, -1, &statement, nullptr);
  auto finalize = ctxpp::defer([statement] { sqlite3_finalize(statement); });
  if (code == SQLITE_OK) code = sqlite3_bind_text(statement, 1, sku.c_str(), -1, SQLITE_TRANSIENT);
  if (code != SQLITE_OK) {
    probe.code = code;
    return {code, 0};
  }
  probe.started.reach();
  QueryValue result;
  while ((code = sqlite3_step(statement)) == SQLITE_ROW) {
    result.value += sqlite3_column_int64(statement, 0);
  }
  probe.code = code;
  result.code = code == SQLITE_DONE ? SQLITE_OK : code;
  return result;
}

// The database layer's entry point: cancellable although SQLite knows no contexts.
ctxpp::BlockingResult<QueryValue> query(const ctxpp::Context& ctx, sqlite3* db, const char* sql,
                                        std::string sku, std::shared_ptr<QueryProbe> probe) {
  return ctxpp::call_blocking(
      ctx,
      // By value: an abandoned call runs on alone and must own what it uses. The
      // connection is the exception: main closes it only once no call is abandoned.
      [ctx, db, sql, sku = std::move(sku), probe] { return run_query(ctx, db, sql, sku, *probe); },
      // Called from the cancelling side while the statement runs; SQLite allows that
      // from any thread. The statement then fails with SQLITE_INTERRUPT at its next step.
      [db]() noexcept { sqlite3_interrupt(db); },
      ctxpp::BlockingOptions{.name = "orders query", .interrupt_grace = 50ms});
}

sqlite3* open_database() {
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(":memory:", &db, flags, nullptr) != SQLITE_OK ||
      sqlite3_exec(db,
                   "CREATE TABLE orders(sku TEXT, quantity INTEGER);"
                   "INSERT INTO orders VALUES ('sku-42', 3), ('sku-42', 4), ('sku-7', 1);",
                   nullptr, nullptr, nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "sqlite: %s\n", db != nullptr ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return nullptr;
  }
  return db;
}

// --- the upstream service -------------------------------------------------------------------

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  return address;
}

// A stand-in for another service, on 127.0.0.1 only: reads "PRICE <sku> <delay-ms>\n"
// and answers "1299\n" after the delay, one connection at a time. A caller that hangs
// up first is noticed at once (its socket turns readable). It waits on its context's
// done_fd beside its sockets, so stop() ends it without a timeout or a poll interval.
class UpstreamServer {
 public:
  explicit UpstreamServer(const ctxpp::Context& parent) : life_(ctxpp::with_cancel(parent)) {
    std::error_code ec;
    done_fd_ = life_.ctx.done_fd(ec);
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address = loopback(0);
    socklen_t length = sizeof address;
    if (ec || listener_ < 0 ||
        ::bind(listener_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 16) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      if (!ec) ec = errno_error();
      if (listener_ >= 0) ::close(listener_);
      throw std::system_error(ec, "upstream server");
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  UpstreamServer(const UpstreamServer&) = delete;
  UpstreamServer& operator=(const UpstreamServer&) = delete;
  ~UpstreamServer() { stop(); }

  std::uint16_t port() const { return port_; }

  void stop() {
    life_.cancel();
    if (thread_.joinable()) thread_.join();
    if (listener_ >= 0) ::close(listener_);
    listener_ = -1;
  }

  // Until count connections have ended (answered or hung up on); false after limit.
  bool wait_for_ended(int count, Clock::duration limit) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return answered_ + hung_up_ >= count; });
  }
  int answered() const {
    std::lock_guard lock(mutex_);
    return answered_;
  }
  int hung_up() const {
    std::lock_guard lock(mutex_);
    return hung_up_;
  }

 private:
  enum class Input { ready, timeout, stopped };

  // Waits until fd is readable or timeout_ms has passed (-1: no limit); stopped once
  // the server's context has ended.
  Input wait_for_input(int fd, int timeout_ms) const {
    pollfd fds[2] = {{fd, POLLIN, 0}, {done_fd_, POLLIN, 0}};
    int ready = 0;
    while ((ready = ::poll(fds, 2, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (ready < 0 || fds[1].revents != 0) return Input::stopped;
    return ready == 0 ? Input::timeout : Input::ready;
  }

  void serve() {
    while (wait_for_input(listener_, -1) == Input::ready) {
      const int connection = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (connection < 0) continue;
      answer(connection);
      ::close(connection);
    }
  }

  void answer(int connection) {
    std::string request;
    char buffer[64];
    while (request.find('\n') == std::string::npos) {
      if (wait_for_input(connection, -1) != Input::ready) return;
      const ssize_t n = ::read(connection, buffer, sizeof buffer);
      if (n <= 0) return count(hung_up_);
      request.append(buffer, static_cast<std::size_t>(n));
    }
    int delay_ms = 0;
    (void)std::sscanf(request.c_str(), "PRICE %*s %d", &delay_ms);
    switch (wait_for_input(connection, delay_ms)) {
      case Input::timeout:  // the answer is ready
        (void)::send(connection, "1299\n", 5, MSG_NOSIGNAL);
        return count(answered_);
      case Input::ready:  // readable before we answered: end of file, the caller is gone
        return count(hung_up_);
      case Input::stopped:
        return;
    }
  }

  void count(int& counter) {
    std::lock_guard lock(mutex_);
    ++counter;
    changed_.notify_all();
  }

  ctxpp::WithCancel<ctxpp::Context, ctxpp::CancelFunc> life_;
  int done_fd_ = -1;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  int answered_ = 0;
  int hung_up_ = 0;
};

// --- what the handler uses -------------------------------------------------------------------

struct Services {
  sqlite3* db = nullptr;
  std::uint16_t upstream_port = 0;
  std::shared_ptr<QueryProbe> query_probe = std::make_shared<QueryProbe>();
  std::atomic<int> upstream_connections{0};
  StopTime upstream_stopped;
  std::atomic<int> background_running{0};
  std::atomic<int> background_completed{0};
  StopTime background_stopped;
};

// Asks the upstream service for sku's price; it answers after delay_ms.
ctxpp::Result<std::string> fetch_price(const ctxpp::Context& ctx, Services& services,
                                       const std::string& sku, int delay_ms) {
  if (ctx.done()) return ctx.err();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error();
  auto close_socket = ctxpp::defer([fd] { ::close(fd); });
  const sockaddr_in address = loopback(services.upstream_port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return errno_error();
  }
  services.upstream_connections.fetch_add(1);
  // From here the end of ctx — client gone, deadline — unblocks the calls below at once.
  // Registered only now: shutdown() does nothing to a socket that is not yet connected
  // (a local connect does not block; for a remote host, connect non-blocking and poll
  // ctx.done_fd() beside the socket). Declared after close_socket, so it is deregistered
  // before the descriptor is closed and can never shut down a reused one.
  ctxpp::ScopedCallback hang_up(ctx, [fd]() noexcept { ::shutdown(fd, SHUT_RDWR); });

  const std::string request = "PRICE " + sku + " " + std::to_string(delay_ms) + "\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) < 0 && !ctx.done()) {
    return errno_error();
  }
  std::string reply;
  char buffer[64];
  ssize_t n = 0;
  while (reply.find('\n') == std::string::npos && (n = ::read(fd, buffer, sizeof buffer)) > 0) {
    reply.append(buffer, static_cast<std::size_t>(n));
  }
  const std::error_code read_error = n < 0 ? errno_error() : std::error_code();
  services.upstream_stopped.mark();
  // The final check: a short read may be our own shutdown, and the context's end
  // explains it better than the symptom.
  if (ctx.done()) return ctx.err();
  if (read_error) return read_error;
  if (reply.find('\n') == std::string::npos)
    return std::make_error_code(std::errc::connection_aborted);
  return reply.substr(0, reply.find('\n'));
}

// Work the request starts beside its reply (say, refreshing the user's recommendations),
// in slices; ctx.wait_for stands for a slice's work and returns at once when ctx ends.
std::error_code refresh_recommendations(const ctxpp::Context& ctx, Services& services, int slices) {
  services.background_running.fetch_add(1);
  auto leave = ctxpp::defer([&services] {
    services.background_stopped.mark();
    services.background_running.fetch_sub(1);
  });
  for (int slice = 0; slice < slices; ++slice) {
    if (ctx.wait_for(10ms)) return ctx.err();
  }
  services.background_completed.fetch_add(1);
  return {};
}

// --- the handler -------------------------------------------------------------------------------

struct Request {
  std::string sku;
  bool report = false;  // the slow query
  int upstream_delay_ms = 5;
  int background_slices = 10;  // of 10 ms each
  Clock::duration budget = 2s;
};

struct Response {
  std::error_code error;
  std::int64_t quantity = 0;
  std::string price;
};

Response handle(const ctxpp::Context& ctx, const Request& request, Services& services) {
  // One budget for all the work below, never longer than the caller allows.
  auto scope = ctxpp::with_timeout(ctx, request.budget);
  const ctxpp::Context& request_ctx = scope.ctx;
  Response response;

  // The upstream call and the background work run beside the query. The group owns
  // them: they get a child of request_ctx, and are joined before handle returns,
  // whichever way it returns, so nothing started here outlives the request.
  ctxpp::TaskGroup group(request_ctx);
  group.spawn([&](const ctxpp::Context& task_ctx) -> std::error_code {
    ctxpp::Result<std::string> price =
        fetch_price(task_ctx, services, request.sku, request.upstream_delay_ms);
    if (!price) return price.error();
    response.price = std::move(*price);
    return {};
  });
  group.spawn([&](const ctxpp::Context& task_ctx) {
    return refresh_recommendations(task_ctx, services, request.background_slices);
  });

  const ctxpp::BlockingResult<QueryValue> rows =
      query(request_ctx, services.db, request.report ? kReportSql : kOrdersSql, request.sku,
            services.query_probe);
  const std::error_code tasks_error = group.wait();

  // If the request's context ended, that is the answer, whatever symptom each part saw
  // (an interrupted statement, a socket shut down under a read).
  if (request_ctx.done()) {
    response.error = request_ctx.err();
  } else if (!rows) {
    response.error = rows.error();
  } else if (rows->code != SQLITE_OK) {
    response.error = sqlite_error(rows->code);
  } else {
    response.error = tasks_error;
    response.quantity = rows->value;
  }
  scope.cancel();  // releases the deadline's timer now rather than when it fires
  return response;
}

// --- three requests ---------------------------------------------------------------------------

// The guarantees after every request, whatever its outcome.
void expect_nothing_running(Services& services, UpstreamServer& upstream) {
  expect(!services.query_probe->running.load(), "the SQLite query is not running");
  expect(ctxpp::abandoned_call_count() == 0, "no blocking call was abandoned");
  expect(services.background_running.load() == 0, "no background task outlived the group");
  expect(upstream.wait_for_ended(services.upstream_connections.load(), 5s),
         "the upstream service saw every call end");
}

}  // namespace

int main() {
  auto server = ctxpp::with_cancel(ctxpp::background());  // the process; ends at exit
  sqlite3* db = open_database();
  if (db == nullptr) return 1;
  UpstreamServer upstream(server.ctx);
  Services services;
  services.db = db;
  services.upstream_port = upstream.port();

  std::printf("1. a request that is served\n");
  {
    auto client = ctxpp::with_cancel_cause(server.ctx);
    const Response response = handle(client.ctx,
                                     {.sku = "sku-42",
                                      .report = false,
                                      .upstream_delay_ms = 5,
                                      .background_slices = 10,
                                      .budget = 2s},
                                     services);
    std::printf("  %s: quantity %lld, price %s, background work %s\n",
                response.error ? response.error.message().c_str() : "ok",
                static_cast<long long>(response.quantity), response.price.c_str(),
                services.background_completed.load() == 1 ? "done" : "NOT done");
    expect(!response.error, "the request succeeded");
    expect(response.quantity == 7 && response.price == "1299", "the reply is complete");
    expect(services.background_completed.load() == 1, "the background work completed");
    expect_nothing_running(services, upstream);
    client.cancel({});  // the request is over: release its context now
  }

  std::printf("2. a request whose client hangs up during the report\n");
  {
    auto client = ctxpp::with_cancel_cause(server.ctx);
    services.query_probe = std::make_shared<QueryProbe>();
    Clock::time_point hung_up_at{};
    std::thread client_side([&, probe = services.query_probe] {
      if (!probe->started.wait_for(5s)) return;
      std::this_thread::sleep_for(30ms);  // the client waits a moment, then gives up
      hung_up_at = Clock::now();
      client.cancel(std::make_error_code(std::errc::connection_reset));
    });
    const Response response = handle(client.ctx,
                                     {.sku = "sku-42",
                                      .report = true,
                                      .upstream_delay_ms = 10000,
                                      .background_slices = 500,
                                      .budget = 5s},
                                     services);
    const Clock::time_point returned_at = Clock::now();
    client_side.join();
    const double returned_ms =
        std::chrono::duration<double, std::milli>(returned_at - hung_up_at).count();
    std::printf(
        "  %s (cause: %s) %.2f ms after the hang-up; stopped after: query %.2f ms, "
        "upstream read %.2f ms, background %.2f ms\n",
        response.error.message().c_str(), client.ctx.cause().message().c_str(), returned_ms,
        services.query_probe->stopped.after(hung_up_at),
        services.upstream_stopped.after(hung_up_at), services.background_stopped.after(hung_up_at));
    expect(response.error == ctxpp::errc::canceled, "the handler returns errc::canceled");
    expect(hung_up_at != Clock::time_point{} && returned_ms < 500, "the handler returned promptly");
    expect(services.query_probe->code.load() == SQLITE_INTERRUPT,
           "the SQLite query was interrupted");
    expect(services.query_probe->stopped.after(hung_up_at) < 500, "the query stopped promptly");
    expect(services.upstream_stopped.after(hung_up_at) < 500,
           "the upstream read returned promptly");
    expect(services.background_stopped.after(hung_up_at) < 500,
           "the background work stopped promptly");
    expect(services.background_completed.load() == 1, "the background work did not complete");
    expect_nothing_running(services, upstream);
  }

  std::printf("3. a request whose deadline passes while the upstream service thinks\n");
  {
    auto client = ctxpp::with_cancel_cause(server.ctx);
    services.query_probe = std::make_shared<QueryProbe>();
    const Clock::time_point started_at = Clock::now();
    const Response response = handle(client.ctx,
                                     {.sku = "sku-42",
                                      .report = false,
                                      .upstream_delay_ms = 10000,
                                      .background_slices = 500,
                                      .budget = 80ms},
                                     services);
    const double took_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - started_at).count();
    std::printf("  %s after %.2f ms (budget 80 ms)\n", response.error.message().c_str(), took_ms);
    expect(response.error == ctxpp::errc::deadline_exceeded,
           "the handler returns errc::deadline_exceeded");
    expect(took_ms < 80 + 500, "the handler returned promptly after its deadline");
    expect(services.background_completed.load() == 1, "the background work did not complete");
    expect_nothing_running(services, upstream);
    client.cancel({});  // the request is over: release its context now
  }

  upstream.stop();
  std::printf("upstream: %d answered, %d callers hung up\n", upstream.answered(),
              upstream.hung_up());
  // One answer (request 1); every other call it saw was hung up on, none left waiting.
  expect(upstream.answered() == 1 && upstream.hung_up() == services.upstream_connections.load() - 1,
         "upstream answered the served request and saw the other calls hang up");
  server.cancel();
  // An abandoned query would still use the connection: leave it open then (failed anyway).
  if (ctxpp::abandoned_call_count() == 0) sqlite3_close(db);
  return verdict("handler pattern");
}
