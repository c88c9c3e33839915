#include "gateway.hpp"

#include <sqlite3.h>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "ctxpp/cleanup.hpp"
#include "ctxpp/errc.hpp"
#include "ctxpp/group.hpp"
#include "ctxpp/http/deadline.hpp"
#include "ctxpp/http/error.hpp"
#include "ctxpp/observe.hpp"
#include "ctxpp/pool.hpp"
#include "ctxpp/prometheus/observer.hpp"
#include "ctxpp/scoped_callback.hpp"
#include "ctxpp/sqlite/connection.hpp"
#include "ctxpp/sqlite/pool.hpp"
#include "ctxpp/sqlite/statement.hpp"
#include "upstream_client.hpp"

namespace gateway {

namespace http = ::boost::beast::http;
using ctxpp::asio::Request;
using ctxpp::asio::Response;
using Connection = ctxpp::sqlite::Connection;

namespace {

constexpr int kOrders = 1000;

// The user a request runs for, attached by the authentication middleware.
const ctxpp::Key<std::string> user_key{"user"};

// Counts one party in flight for the scope of a call.
class InFlight {
 public:
  // Ends a count that was started elsewhere (before a hand-off to another thread).
  class Adopt {
   public:
    explicit Adopt(std::atomic<std::int64_t>& counter) noexcept : counter_(counter) {}
    ~Adopt() { counter_.fetch_sub(1, std::memory_order_release); }
    Adopt(const Adopt&) = delete;
    Adopt& operator=(const Adopt&) = delete;

   private:
    std::atomic<std::int64_t>& counter_;
  };

  explicit InFlight(std::atomic<std::int64_t>& counter) noexcept : counter_(counter) {
    counter_.fetch_add(1, std::memory_order_relaxed);
  }
  ~InFlight() { counter_.fetch_sub(1, std::memory_order_release); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  std::atomic<std::int64_t>& counter_;
};

// SQL function pause_ms(n): waits n milliseconds on the context of the query running
// on this thread (current(), set by the db component's scope), standing in for a
// query that waits on disk or locks. Ends early with SQLITE_INTERRUPT when that
// context ends, as a real slow query is stopped by sqlite3_interrupt.
void pause_ms(sqlite3_context* sql, int /*argc*/, sqlite3_value** argv) {
  const auto milliseconds = std::clamp<sqlite3_int64>(sqlite3_value_int64(argv[0]), 0, 600'000);
  if (ctxpp::current().wait_for(std::chrono::milliseconds(milliseconds))) {
    sqlite3_result_error_code(sql, SQLITE_INTERRUPT);
    return;
  }
  sqlite3_result_int64(sql, milliseconds);
}

ctxpp::PoolHooks<Connection> database_hooks(const std::string& path) {
  ctxpp::sqlite::OpenOptions open;
  open.wal = true;
  open.busy_timeout = std::chrono::seconds(5);
  auto hooks = ctxpp::sqlite::pool_hooks(path, open);
  hooks.create =
      [create = std::move(hooks.create)](const ctxpp::Context& ctx) -> ctxpp::Result<Connection> {
    auto connection = create(ctx);
    if (!connection) return connection;
    const int rc = sqlite3_create_function_v2(connection->raw(), "pause_ms", 1, SQLITE_UTF8,
                                              nullptr, &pause_ms, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return ctxpp::sqlite::make_error_code(rc);
    return connection;
  };
  return hooks;
}

void seed_database(const std::string& path) {
  // Startup runs before any request exists: a root of its own is right here.
  auto [ctx, release] = ctxpp::with_timeout(ctxpp::background(), std::chrono::seconds(30));
  auto connection = ctxpp::sqlite::open(ctx, path, {.wal = true});
  if (!connection) {
    throw std::runtime_error("cannot open " + path + ": " + connection.error().message());
  }
  const auto seeded = ctxpp::sqlite::execute_script(ctx, *connection, R"sql(
    CREATE TABLE IF NOT EXISTS orders (
      id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total_cents INTEGER NOT NULL,
      status TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS checkouts (
      id INTEGER PRIMARY KEY, order_id TEXT NOT NULL, payment_id TEXT NOT NULL,
      amount_cents INTEGER NOT NULL, request_id TEXT NOT NULL);
    INSERT INTO orders (id, customer, total_cents, status)
      WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
      SELECT i, 'customer-' || (i % 97), 100 + (i * 37) % 9900,
             CASE i % 3 WHEN 0 THEN 'shipped' WHEN 1 THEN 'paid' ELSE 'open' END
      FROM n WHERE NOT EXISTS (SELECT 1 FROM orders);
  )sql");
  release();
  if (!seeded) {
    throw std::runtime_error("cannot seed " + path + ": " + seeded.error().message() + " (" +
                             connection->last_error_message() + ")");
  }
  static_assert(kOrders == 1000, "the seed script inserts 1000 orders");
}

std::string_view header_value(const Request& request, std::string_view name) {
  const auto found = request.find(name);
  if (found == request.end()) return {};
  return {found->value().data(), found->value().size()};
}

std::optional<std::string_view> optional_header(const Request& request, std::string_view name) {
  const auto found = request.find(name);
  if (found == request.end()) return std::nullopt;
  return std::string_view(found->value().data(), found->value().size());
}

// An upstream reply as an outcome: 200 is success; 504 is the deadline the upstream
// enforced on the budget we forwarded; anything else is a bad gateway.
std::error_code reply_error(const ctxpp::Result<UpstreamReply>& reply) {
  if (!reply) return reply.error();
  if (reply->status == 200) return {};
  if (reply->status == 504) return make_error_code(ctxpp::errc::deadline_exceeded);
  return std::make_error_code(std::errc::bad_message);
}

}  // namespace

struct Gateway::State {
  explicit State(GatewayOptions options_in);

  Response serve_api(const ctxpp::Context& ctx, const Request& request);
  ctxpp::Context attach_user(const ctxpp::Context& ctx, const Request& request) const;
  Response route(const ctxpp::Context& ctx, const Request& request, const std::string& request_id);
  Response order(const ctxpp::Context& ctx, const Request& request, std::string_view id_text);
  Response report(const ctxpp::Context& ctx, const Request& request, const std::string& request_id);
  Response checkout(const ctxpp::Context& ctx, const Request& request,
                    const std::string& request_id);
  Response failure(const Request& request, const ctxpp::Context& ctx, std::error_code error) const;
  template <class F>
  std::error_code with_database(const ctxpp::Context& ctx, F&& use);
  Response metrics_page(const Request& request);
  Response contexts_page(const Request& request) const;
  Response stats_page(const Request& request) const;

  GatewayOptions options;
  std::shared_ptr<::prometheus::Registry> registry = std::make_shared<::prometheus::Registry>();
  std::shared_ptr<ctxpp::prometheus::MetricsObserver> metrics;
  ctxpp::ObserverRegistration observation;
  ::prometheus::Family<::prometheus::Counter>& requests_family;
  ::prometheus::Counter& requests_ok;
  ::prometheus::Counter& requests_canceled;
  ::prometheus::Counter& requests_deadline;
  ::prometheus::Counter& requests_error;
  ::prometheus::Gauge& requests_gauge;
  ::prometheus::Gauge& upstream_gauge;
  ::prometheus::Gauge& database_gauge;
  ::prometheus::Gauge& leased_gauge;
  ::prometheus::Gauge& lingered_gauge;
  ::prometheus::Gauge& resident_gauge;
  ::prometheus::Histogram& cleanup_histogram;

  ctxpp::ThreadPool tasks;
  ctxpp::Pool<Connection> database;
  UpstreamClient upstream;
  PaymentBackend payments;
  std::int64_t upstream_in_flight() const noexcept {
    return upstream.in_flight() + other_upstream_in_flight.load(std::memory_order_acquire);
  }

  std::atomic<std::int64_t> requests_in_flight{0};        // API handlers running
  std::atomic<std::int64_t> other_upstream_in_flight{0};  // gRPC payment calls
  std::atomic<std::int64_t> database_in_flight{0};
  std::atomic<std::int64_t> background_in_flight{0};
  std::atomic<std::uint64_t> checkouts_committed{0};
  std::atomic<std::uint64_t> next_request_id{1};
  LatencyHistogram cancel_cleanup;
  // Compensating calls of failed or abandoned checkouts; joined by stop(). Its tasks
  // never fail, so none cancels another.
  ctxpp::TaskGroup compensations{ctxpp::background(), tasks};
  std::unique_ptr<ctxpp::asio::HttpServer> server;
};

namespace {
ctxpp::PoolOptions database_pool_options(std::size_t connections) {
  ctxpp::PoolOptions options;
  options.name = "db";
  options.max_size = connections;
  options.linger_after_context = std::chrono::seconds(1);
  return options;
}

::prometheus::Gauge& add_gauge(::prometheus::Registry& registry, const std::string& name,
                               const std::string& help, const ::prometheus::Labels& labels = {}) {
  return ::prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(labels);
}
}  // namespace

Gateway::State::State(GatewayOptions options_in)
    : options(std::move(options_in)),
      metrics(std::make_shared<ctxpp::prometheus::MetricsObserver>(registry)),
      observation(ctxpp::add_observer(metrics)),
      requests_family(::prometheus::BuildCounter()
                          .Name("gateway_requests_total")
                          .Help("API requests answered or abandoned, by outcome")
                          .Register(*registry)),
      requests_ok(requests_family.Add({{"outcome", "ok"}})),
      requests_canceled(requests_family.Add({{"outcome", "canceled"}})),
      requests_deadline(requests_family.Add({{"outcome", "deadline"}})),
      requests_error(requests_family.Add({{"outcome", "error"}})),
      requests_gauge(
          add_gauge(*registry, "gateway_requests_inflight", "API requests being handled")),
      upstream_gauge(add_gauge(*registry, "gateway_upstream_inflight", "Upstream calls in flight")),
      database_gauge(
          add_gauge(*registry, "gateway_db_queries_inflight", "Database queries in flight")),
      leased_gauge(add_gauge(*registry, "ctxpp_pool_leased", "Pool resources held by leases",
                             {{"pool", "db"}})),
      lingered_gauge(add_gauge(*registry, "ctxpp_pool_lingered", "Leases reported lingering so far",
                               {{"pool", "db"}})),
      resident_gauge(
          add_gauge(*registry, "process_resident_memory_bytes", "Resident memory size in bytes")),
      cleanup_histogram(
          ::prometheus::BuildHistogram()
              .Name("gateway_cancel_cleanup_seconds")
              .Help("From a request's context ending (client gone, deadline) to all its work "
                    "released")
              .Register(*registry)
              .Add({}, ::prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002, 0.005, 0.01,
                                                                 0.05, 0.1, 0.5, 1, 5})),
      tasks(options.task_threads),
      database(database_hooks(options.db_path), database_pool_options(options.db_connections)),
      upstream(options.upstream.host, options.upstream.port, options.upstream_connections) {
  if (options.payments) {
    // Calls to another upstream count as upstream calls in flight, as HTTP ones do.
    payments.charge = [this, charge = options.payments->charge](
                          const ctxpp::Context& ctx, std::string_view order_id,
                          std::int64_t amount_cents, int delay_ms,
                          std::string_view request_id) -> ctxpp::Result<std::string> {
      const InFlight in_flight(other_upstream_in_flight);
      return charge(ctx, order_id, amount_cents, delay_ms, request_id);
    };
    payments.refund = [this, refund = options.payments->refund](
                          const ctxpp::Context& ctx, std::string_view payment_id,
                          std::string_view request_id) -> std::error_code {
      const InFlight in_flight(other_upstream_in_flight);
      return refund(ctx, payment_id, request_id);
    };
  } else {
    payments.charge = [this](const ctxpp::Context& ctx, std::string_view /*order_id*/,
                             std::int64_t /*amount_cents*/, int delay_ms,
                             std::string_view request_id) -> ctxpp::Result<std::string> {
      const auto reply =
          upstream.call(ctx, http::verb::post, "/payment/charge?ms=" + std::to_string(delay_ms),
                        "{}", request_id);
      if (const auto error = reply_error(reply)) return error;
      return "pay-" + std::string(request_id);
    };
    payments.refund = [this](const ctxpp::Context& ctx, std::string_view /*payment_id*/,
                             std::string_view request_id) -> std::error_code {
      return reply_error(upstream.call(ctx, http::verb::post, "/payment/refund", "{}", request_id));
    };
  }
}

Gateway::Gateway(GatewayOptions options) {
  if (options.db_path.empty()) throw std::invalid_argument("the database path is empty");
  seed_database(options.db_path);
  state_ = std::make_unique<State>(std::move(options));
  ctxpp::asio::HttpServerOptions server_options;
  server_options.address = state_->options.listen.host;
  server_options.port = state_->options.listen.port;
  server_options.handler_threads = state_->options.handler_threads;
  server_options.read_timeout = state_->options.read_timeout;
  server_options.header_limit = state_->options.header_limit;
  server_options.body_limit = 64 * 1024;
  state_->server = std::make_unique<ctxpp::asio::HttpServer>(
      [this](const ctxpp::Context& ctx, const Request& request) { return handle(ctx, request); },
      server_options);
}

Gateway::~Gateway() {
  if (state_) stop(std::chrono::milliseconds(0));
}

std::error_code Gateway::start() { return state_->server->start(); }

std::uint16_t Gateway::port() const noexcept { return state_->server->port(); }

void Gateway::stop(std::chrono::milliseconds drain_for) {
  if (!state_->server) return;
  {
    // Shutdown outlives every request: its budget is a root of its own.
    auto [drain, release] = ctxpp::with_timeout(ctxpp::background(), drain_for);
    state_->server->stop(drain);
    release();
  }
  state_->server.reset();
  (void)state_->compensations.wait();  // each within its own 2 s budget
  auto [closing, release] = ctxpp::with_timeout(ctxpp::background(), std::chrono::seconds(2));
  (void)state_->database.close(closing);
  release();
}

GatewayStats Gateway::stats() const {
  const State& s = *state_;
  GatewayStats stats;
  stats.ok = static_cast<std::uint64_t>(s.requests_ok.Value());
  stats.canceled = static_cast<std::uint64_t>(s.requests_canceled.Value());
  stats.deadline = static_cast<std::uint64_t>(s.requests_deadline.Value());
  stats.error = static_cast<std::uint64_t>(s.requests_error.Value());
  stats.db_in_flight = s.database_in_flight.load(std::memory_order_acquire);
  stats.upstream_in_flight = s.upstream_in_flight();
  stats.requests_in_flight = s.requests_in_flight.load(std::memory_order_acquire);
  stats.background_in_flight = s.background_in_flight.load(std::memory_order_acquire);
  const ctxpp::PoolStats pool = s.database.stats();
  stats.pool_leased = pool.leased;
  stats.lingering_leases = pool.lingered_total;
  stats.checkouts_committed = s.checkouts_committed.load(std::memory_order_relaxed);
  stats.cancel_cleanup_ms = s.cancel_cleanup.summary();
  stats.rss_bytes = resident_bytes();
  return stats;
}

Response Gateway::handle(const ctxpp::Context& ctx, const Request& request) {
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = path_of(target);
  if (path == "/healthz") return make_response(request, http::status::ok, "ok\n", "text/plain");
  if (path == "/metrics") return state_->metrics_page(request);
  if (path == "/debug/stats") return state_->stats_page(request);
  if (path == "/debug/contexts") return state_->contexts_page(request);
  return state_->serve_api(ctx, request);
}

Response Gateway::State::serve_api(const ctxpp::Context& ctx, const Request& request) {
  std::string request_id(header_value(request, "X-Request-Id"));
  if (request_id.empty() || request_id.size() > 64) {
    request_id = "gw-" + std::to_string(next_request_id.fetch_add(1, std::memory_order_relaxed));
  }
  // The deadline middleware: the caller's budget, capped by ours; garbage is a 400.
  const auto budget = ctxpp::http::request_budget(
      {.request_timeout_ms = optional_header(request, ctxpp::http::request_timeout_header),
       .grpc_timeout = optional_header(request, ctxpp::http::grpc_timeout_header)},
      {.max = options.max_request_timeout, .fallback = options.default_request_timeout});
  if (!budget) {
    requests_error.Increment();
    return make_response(request, http::status::bad_request,
                         ctxpp::http::bad_request_body(budget.header(), budget.error()));
  }
  const InFlight in_flight(requests_in_flight);
  auto [deadline_ctx, finish] = ctxpp::http::request_context(ctx, *budget);
  const ctxpp::Context request_ctx = ctxpp::with_name(deadline_ctx, "request");

  // When the request's context ends before the work is done, the clock starts: the
  // time until every part of the work has let go is the cancel→cleanup latency.
  std::atomic<std::int64_t> ended_ns{0};
  Response response;
  {
    ctxpp::ScopedCallback on_end(request_ctx, [&ended_ns]() noexcept {
      ended_ns.store(steady_ns(), std::memory_order_relaxed);
    });
    const ctxpp::Context work_ctx = attach_user(request_ctx, request);
    response = route(work_ctx, request, request_id);
  }
  const std::int64_t finished_ns = steady_ns();
  const std::int64_t ended = ended_ns.load(std::memory_order_relaxed);
  if (ended != 0) {
    const double seconds =
        static_cast<double>(std::max<std::int64_t>(finished_ns - ended, 0)) / 1e9;
    cancel_cleanup.add(seconds * 1e3);
    cleanup_histogram.Observe(seconds);
  }
  // A 504 is a deadline even when the upstream, holding the budget we forwarded
  // rounded down, gave up a moment before our own timer fired.
  if (request_ctx.err() == ctxpp::errc::deadline_exceeded ||
      response.result() == http::status::gateway_timeout) {
    requests_deadline.Increment();
  } else if (request_ctx.done()) {
    requests_canceled.Increment();  // the client left, or the server is stopping
  } else if (response.result_int() < 400) {
    requests_ok.Increment();
  } else {
    requests_error.Increment();
  }
  finish();
  return response;
}

ctxpp::Context Gateway::State::attach_user(const ctxpp::Context& ctx,
                                           const Request& request) const {
  std::string user(header_value(request, "X-User"));
  if (user.empty()) user = "anonymous";
  if (options.broken_propagation) {
    // The bug found in the field: the user is hung on a fresh root, so from here on
    // the request's cancellation and deadline are lost.
    // ctxpp-audit: ignore CTX002 (the demo's deliberate bug)
    const ctxpp::Context fresh_root = ctxpp::background();
    return ctxpp::with_value(fresh_root, user_key, std::move(user));
  }
  return ctxpp::with_value(ctx, user_key, std::move(user));
}

Response Gateway::State::route(const ctxpp::Context& ctx, const Request& request,
                               const std::string& request_id) {
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = path_of(target);
  constexpr std::string_view orders_prefix = "/api/orders/";
  if (path.starts_with(orders_prefix)) {
    if (request.method() != http::verb::get) {
      return error_response(request, http::status::method_not_allowed, "use GET");
    }
    return order(ctx, request, path.substr(orders_prefix.size()));
  }
  if (path == "/api/report") {
    if (request.method() != http::verb::get) {
      return error_response(request, http::status::method_not_allowed, "use GET");
    }
    return report(ctx, request, request_id);
  }
  if (path == "/api/checkout") {
    if (request.method() != http::verb::post) {
      return error_response(request, http::status::method_not_allowed, "use POST");
    }
    return checkout(ctx, request, request_id);
  }
  return error_response(request, http::status::not_found, "no such endpoint");
}

template <class F>
std::error_code Gateway::State::with_database(const ctxpp::Context& ctx, F&& use) {
  ctxpp::ComponentScope component(ctx, "db");
  auto lease = database.acquire(ctx);
  if (!lease) return lease.error();
  // Bound: if this request's context ends and the lease is still held a second later,
  // the pool reports it with this line and takes the connection back.
  if (const auto error = lease->bind(ctx)) return error;
  auto connection = lease->use();
  if (!connection) return connection.error();
  const InFlight in_flight(database_in_flight);
  return use(*connection);
}

Response Gateway::State::failure(const Request& request, const ctxpp::Context& ctx,
                                 std::error_code error) const {
  if (ctx.err() == ctxpp::errc::deadline_exceeded || error == ctxpp::errc::deadline_exceeded) {
    return error_response(request, http::status::gateway_timeout, "deadline exceeded");
  }
  if (ctx.done()) {
    // Nobody reads this: the client left (or the server is stopping).
    return error_response(request, http::status::service_unavailable, "canceled");
  }
  if (error == std::errc::bad_message) {
    return error_response(request, http::status::bad_gateway, "the upstream failed");
  }
  return error_response(request, http::status::internal_server_error, error.message());
}

Response Gateway::State::order(const ctxpp::Context& ctx, const Request& request,
                               std::string_view id_text) {
  const auto id = parse_bounded(id_text, 1, INT64_C(999'999'999'999));
  if (!id) return error_response(request, http::status::bad_request, "order id: a positive number");
  std::string body;
  const auto error = with_database(ctx, [&](Connection& connection) {
    return ctxpp::sqlite::query(ctx, connection,
                                "SELECT id, customer, total_cents, status FROM orders WHERE id = ?",
                                {*id},
                                [&](const ctxpp::sqlite::Row& row) {
                                  body = "{\"id\":" + std::to_string(row.integer(0)) +
                                         ",\"customer\":" + json_quote(row.text(1)) +
                                         ",\"total_cents\":" + std::to_string(row.integer(2)) +
                                         ",\"status\":" + json_quote(row.text(3)) + "}\n";
                                })
        .error();
  });
  if (error) return failure(request, ctx, error);
  if (body.empty()) return error_response(request, http::status::not_found, "no such order");
  return make_response(request, http::status::ok, std::move(body));
}

Response Gateway::State::report(const ctxpp::Context& ctx, const Request& request,
                                const std::string& request_id) {
  const std::string_view target(request.target().data(), request.target().size());
  std::int64_t milliseconds[2] = {0, 0};
  const std::string_view names[2] = {"db_ms", "upstream_ms"};
  for (int i = 0; i < 2; ++i) {
    const auto text = query_value(target, names[i]);
    if (!text) continue;
    const auto parsed = parse_bounded(*text, 0, 600'000);
    if (!parsed) {
      return error_response(request, http::status::bad_request,
                            std::string(names[i]) + ": a number of milliseconds, 0..600000");
    }
    milliseconds[i] = *parsed;
  }
  const std::int64_t database_ms = milliseconds[0];
  const std::int64_t upstream_ms = milliseconds[1];
  std::int64_t order_count = 0;
  std::int64_t revenue_cents = 0;

  // Three parts at once under one group: the first to fail cancels the others, and
  // wait() returns only when all three have let go of what they hold.
  ctxpp::TaskGroup group(ctx, tasks);
  group.spawn([&](const ctxpp::Context& task_ctx) {
    return with_database(task_ctx, [&](Connection& connection) {
      return ctxpp::sqlite::query(task_ctx, connection,
                                  "SELECT pause_ms(?), (SELECT count(*) FROM orders), "
                                  "(SELECT sum(total_cents) FROM orders)",
                                  {database_ms},
                                  [&](const ctxpp::sqlite::Row& row) {
                                    order_count = row.integer(1);
                                    revenue_cents = row.integer(2);
                                  })
          .error();
    });
  });
  group.spawn([&](const ctxpp::Context& task_ctx) {
    ctxpp::ComponentScope component(task_ctx, "upstream");
    return reply_error(upstream.call(task_ctx, http::verb::get,
                                     "/work?ms=" + std::to_string(upstream_ms), "", request_id));
  });
  group.spawn([&](const ctxpp::Context& task_ctx) -> std::error_code {
    // Background work (rendering, cache warming) that must not outlive the request.
    ctxpp::ComponentScope component(task_ctx, "background");
    const InFlight in_flight(background_in_flight);
    if (task_ctx.wait_for(std::chrono::milliseconds((database_ms + upstream_ms) / 2))) {
      return task_ctx.err();
    }
    return {};
  });
  if (const auto error = group.wait()) return failure(request, ctx, error);
  return make_response(request, http::status::ok,
                       "{\"orders\":" + std::to_string(order_count) +
                           ",\"revenue_cents\":" + std::to_string(revenue_cents) +
                           ",\"db_ms\":" + std::to_string(database_ms) +
                           ",\"upstream_ms\":" + std::to_string(upstream_ms) + "}\n");
}

Response Gateway::State::checkout(const ctxpp::Context& ctx, const Request& request,
                                  const std::string& request_id) {
  const auto body = nlohmann::json::parse(request.body(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return error_response(request, http::status::bad_request, "body: a JSON object");
  }
  const auto order_field = body.find("order_id");
  const auto amount_field = body.find("amount_cents");
  if (order_field == body.end() || !order_field->is_string() ||
      order_field->get_ref<const std::string&>().empty() ||
      order_field->get_ref<const std::string&>().size() > 64) {
    return error_response(request, http::status::bad_request, "order_id: a string of 1..64 bytes");
  }
  if (amount_field == body.end() || !amount_field->is_number_integer() ||
      amount_field->get<std::int64_t>() < 1 || amount_field->get<std::int64_t>() > 1'000'000'000) {
    return error_response(request, http::status::bad_request,
                          "amount_cents: an integer in 1..1000000000");
  }
  const std::string order_id = order_field->get<std::string>();
  const std::int64_t amount_cents = amount_field->get<std::int64_t>();
  const std::string_view target(request.target().data(), request.target().size());
  int step_ms = 20;
  if (const auto text = query_value(target, "step_ms")) {
    const auto parsed = parse_bounded(*text, 0, 60'000);
    if (!parsed) return error_response(request, http::status::bad_request, "step_ms: 0..60000");
    step_ms = static_cast<int>(*parsed);
  }
  const std::string delay = "?ms=" + std::to_string(step_ms);

  // inventory → payment → notification → record, one context. Each step that was
  // attempted is undone if a later one fails or the request is abandoned; the
  // upstream keys reservations and payments by request id, so undoing is idempotent.
  bool reserve_attempted = false;
  bool charge_attempted = false;
  std::string payment_id;
  std::error_code error;
  {
    ctxpp::ComponentScope component(ctx, "inventory");
    reserve_attempted = true;
    error = reply_error(
        upstream.call(ctx, http::verb::post, "/inventory/reserve" + delay, "{}", request_id));
  }
  if (!error) {
    ctxpp::ComponentScope component(ctx, "payment");
    charge_attempted = true;
    auto charged = payments.charge(ctx, order_id, amount_cents, step_ms, request_id);
    if (charged) {
      payment_id = std::move(*charged);
    } else {
      error = charged.error();
    }
  }
  if (!error) {
    ctxpp::ComponentScope component(ctx, "notify");
    error = reply_error(upstream.call(ctx, http::verb::post, "/notify" + delay, "{}", request_id));
  }
  if (!error) {
    error = with_database(ctx, [&](Connection& connection) {
      return ctxpp::sqlite::execute(ctx, connection,
                                    "INSERT INTO checkouts (order_id, payment_id, amount_cents, "
                                    "request_id) VALUES (?, ?, ?, ?)",
                                    {order_id, payment_id, amount_cents, request_id})
          .error();
    });
  }
  if (error) {
    // Undo what was done, after the handler has let go: the client is gone or gets its
    // error now, and the compensating calls run as the gateway's own tasks, on a
    // context the request's end does not stop, with a budget of their own.
    auto [cleanup, release] = ctxpp::cleanup_context(ctx, std::chrono::seconds(2));
    requests_in_flight.fetch_add(1, std::memory_order_relaxed);
    compensations.spawn([this, cleanup = cleanup, release = std::move(release), request_id,
                         payment_id, charge_attempted, reserve_attempted]() mutable {
      {
        const InFlight::Adopt in_flight(requests_in_flight);
        ctxpp::ComponentScope component(cleanup, "checkout-undo");
        if (charge_attempted) (void)payments.refund(cleanup, payment_id, request_id);
        if (reserve_attempted) {
          (void)upstream.call(cleanup, http::verb::post, "/inventory/release", "{}", request_id);
        }
      }
      release();
    });
    return failure(request, ctx, error);
  }
  checkouts_committed.fetch_add(1, std::memory_order_relaxed);
  return make_response(request, http::status::ok,
                       "{\"order_id\":" + json_quote(order_id) +
                           ",\"payment_id\":" + json_quote(payment_id) + "}\n");
}

Response Gateway::State::metrics_page(const Request& request) {
  const ctxpp::PoolStats pool = database.stats();
  upstream_gauge.Set(static_cast<double>(upstream_in_flight()));
  requests_gauge.Set(static_cast<double>(requests_in_flight.load(std::memory_order_acquire)));
  database_gauge.Set(static_cast<double>(database_in_flight.load(std::memory_order_acquire)));
  leased_gauge.Set(static_cast<double>(pool.leased));
  lingered_gauge.Set(static_cast<double>(pool.lingered_total));
  resident_gauge.Set(static_cast<double>(resident_bytes()));
  return make_response(request, http::status::ok,
                       ::prometheus::TextSerializer().Serialize(metrics->Collect()),
                       "text/plain; version=0.0.4");
}

Response Gateway::State::stats_page(const Request& request) const {
  const State& s = *this;
  const ctxpp::PoolStats pool = s.database.stats();
  const LatencyHistogram::Summary cleanup = s.cancel_cleanup.summary();
  const auto number = [](double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3f", value);
    return std::string(text);
  };
  std::string body =
      "{\"requests\":{\"ok\":" + std::to_string(static_cast<std::uint64_t>(s.requests_ok.Value())) +
      ",\"canceled\":" + std::to_string(static_cast<std::uint64_t>(s.requests_canceled.Value())) +
      ",\"deadline\":" + std::to_string(static_cast<std::uint64_t>(s.requests_deadline.Value())) +
      ",\"error\":" + std::to_string(static_cast<std::uint64_t>(s.requests_error.Value())) + "}";
  body +=
      ",\"db_inflight\":" + std::to_string(s.database_in_flight.load(std::memory_order_acquire));
  body += ",\"upstream_inflight\":" + std::to_string(s.upstream_in_flight());
  body += ",\"requests_inflight\":" +
          std::to_string(s.requests_in_flight.load(std::memory_order_acquire));
  body += ",\"background_inflight\":" +
          std::to_string(s.background_in_flight.load(std::memory_order_acquire));
  body += ",\"pool_leased\":" + std::to_string(pool.leased);
  body += ",\"lingering_leases\":" + std::to_string(pool.lingered_total);
  body += ",\"checkouts_committed\":" +
          std::to_string(s.checkouts_committed.load(std::memory_order_relaxed));
  body += ",\"cancel_cleanup_ms\":{\"count\":" + std::to_string(cleanup.count) +
          ",\"p50\":" + number(cleanup.p50) + ",\"p99\":" + number(cleanup.p99) +
          ",\"max\":" + number(cleanup.max) + "}";
  body += ",\"rss_bytes\":" + std::to_string(resident_bytes()) + "}\n";
  return make_response(request, http::status::ok, std::move(body));
}

Response Gateway::State::contexts_page(const Request& request) const {
  const std::string_view accept = header_value(request, "Accept");
  if (accept.find("text/html") == std::string_view::npos) {
    return make_response(request, http::status::ok, ctxpp::render_context_tree_json());
  }
  // A page without scripts or external assets: the tree as nested indentation.
  const std::vector<ctxpp::ContextInfo> tree = ctxpp::context_tree();
  std::unordered_map<std::uint64_t, int> depth;
  std::string rows;
  const auto escape = [](std::string_view text) {
    std::string out;
    for (const char c : text) {
      switch (c) {
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '&':
          out += "&amp;";
          break;
        case '"':
          out += "&quot;";
          break;
        default:
          out.push_back(c);
      }
    }
    return out;
  };
  for (const ctxpp::ContextInfo& info : tree) {
    const auto parent = depth.find(info.parent_id);
    const int level = parent == depth.end() ? 0 : parent->second + 1;
    depth[info.id] = level;
    const auto age_ms = std::chrono::duration_cast<std::chrono::milliseconds>(info.age).count();
    const std::string state = !info.done ? "live" : info.error.message();
    rows += "<tr class=\"" + std::string(info.done ? "done" : "live") +
            "\"><td style=\"padding-left:" + std::to_string(8 + level * 18) + "px\">" +
            escape(info.name.empty() ? "-" : info.name) + "</td><td>" + std::to_string(info.id) +
            "</td><td>" + std::to_string(age_ms) + " ms</td><td>" + escape(state) + "</td><td>" +
            escape(info.cause ? info.cause.message() : "") + "</td><td>" +
            escape(std::string(info.created_at.file_name())) + ":" +
            std::to_string(info.created_at.line()) + "</td></tr>\n";
  }
  std::string page =
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ctxpp-gateway contexts</title>"
      "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
      "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;font-size:14px}"
      "tr.done td{color:#999}</style></head><body><h1>Live contexts</h1><p id=\"count\">" +
      std::to_string(tree.size()) +
      " tracked contexts</p><table id=\"contexts\"><tr><th>name</th><th>id</th><th>age</th>"
      "<th>state</th><th>cause</th><th>created at</th></tr>\n" +
      rows + "</table></body></html>\n";
  return make_response(request, http::status::ok, std::move(page), "text/html; charset=utf-8");
}

}  // namespace gateway
