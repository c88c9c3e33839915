// ctxpp-upstream — the slow upstream service of the reference gateway, over HTTP and
// (when built with the gRPC adapter) gRPC. See upstream.hpp for the endpoints.
//   ctxpp-upstream --listen 127.0.0.1:0 [--grpc-listen 127.0.0.1:0] [--threads N]
// Prints "ctxpp-upstream listening on HOST:PORT" (and "ctxpp-upstream grpc listening
// on HOST:PORT") once ready; SIGTERM or SIGINT stops it.
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include "ctxpp/asio/http_server.hpp"
#include "ctxpp/context.hpp"
#include "service.hpp"
#include "upstream.hpp"

#ifdef CTXPP_GATEWAY_GRPC
#include "payment_upstream.hpp"
#endif

namespace {

constexpr const char* kUsage =
    "usage: ctxpp-upstream --listen HOST:PORT [--grpc-listen HOST:PORT] [--threads N]\n";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "ctxpp-upstream: %s\n%s", message.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  gateway::block_termination_signals();
  std::string listen;
  std::string grpc_listen;
  std::size_t threads = 256;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (!has_value) return usage_error("missing value after " + std::string(arg));
    if (arg == "--listen") {
      listen = argv[++i];
    } else if (arg == "--grpc-listen") {
      grpc_listen = argv[++i];
    } else if (arg == "--threads") {
      const auto parsed = gateway::parse_bounded(argv[++i], 1, 4096);
      if (!parsed) return usage_error("--threads: a number in 1..4096");
      threads = static_cast<std::size_t>(*parsed);
    } else {
      return usage_error("unknown argument " + std::string(arg));
    }
  }
  const auto address = gateway::parse_host_port(listen);
  if (!address) return usage_error("--listen: expected HOST:PORT, got '" + listen + "'");

  gateway::UpstreamLedger ledger;
  gateway::UpstreamService service(ledger);
  try {
#ifdef CTXPP_GATEWAY_GRPC
    std::unique_ptr<gateway::PaymentUpstream> payments;
    if (!grpc_listen.empty()) {
      const auto grpc_address = gateway::parse_host_port(grpc_listen);
      if (!grpc_address) return usage_error("--grpc-listen: expected HOST:PORT");
      payments = std::make_unique<gateway::PaymentUpstream>(*grpc_address);
      service.grpc_payments_open = [&payments] { return payments->payments_open(); };
      service.grpc_in_flight = [&payments] { return payments->in_flight(); };
      service.grpc_records = [&payments] { return payments->records(); };
      std::printf("ctxpp-upstream grpc listening on %s:%u\n", grpc_address->host.c_str(),
                  static_cast<unsigned>(payments->port()));
    }
#else
    if (!grpc_listen.empty()) return usage_error("--grpc-listen: built without gRPC");
#endif
    ctxpp::asio::HttpServerOptions options;
    options.address = address->host;
    options.port = address->port;
    options.handler_threads = threads;
    ctxpp::asio::HttpServer server(
        [&service](const ctxpp::Context& ctx, const ctxpp::asio::Request& request) {
          return service.handle(ctx, request);
        },
        options);
    if (const auto error = server.start()) {
      std::fprintf(stderr, "ctxpp-upstream: cannot listen on %s: %s\n", listen.c_str(),
                   error.message().c_str());
      return 1;
    }
    std::printf("ctxpp-upstream listening on %s:%u\n", address->host.c_str(),
                static_cast<unsigned>(server.port()));
    std::fflush(stdout);
    gateway::wait_for_termination();
    auto [drain, release] = ctxpp::with_timeout(ctxpp::background(), std::chrono::seconds(1));
    server.stop(drain);
    release();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "ctxpp-upstream: %s\n", error.what());
    return 1;
  }
  return 0;
}
