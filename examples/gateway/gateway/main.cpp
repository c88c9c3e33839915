// ctxpp-gateway — the reference API gateway (see gateway.hpp and docs/gateway.md).
//   ctxpp-gateway --listen 127.0.0.1:PORT --db FILE --upstream http://127.0.0.1:PORT2
//                 [--grpc-upstream 127.0.0.1:PORT3] [--broken-propagation]
//                 [--read-timeout-ms N] [--max-timeout-ms N] [--db-connections N]
// Prints "ctxpp-gateway listening on HOST:PORT" once ready; SIGTERM or SIGINT drains
// requests for up to two seconds, cancels the rest and exits 0.
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include "gateway.hpp"
#include "service.hpp"

#ifdef CTXPP_GATEWAY_GRPC
#include "payment_backend.hpp"
#endif

namespace {

constexpr const char* kUsage =
    "usage: ctxpp-gateway --listen HOST:PORT --db FILE --upstream http://HOST:PORT\n"
    "                     [--grpc-upstream HOST:PORT] [--broken-propagation]\n"
    "                     [--read-timeout-ms N] [--max-timeout-ms N] [--db-connections N]\n"
    "  --listen              where to listen (port 0: any free port, printed on start)\n"
    "  --db                  SQLite file; created and seeded with 1000 orders if new\n"
    "  --upstream            the HTTP upstream (ctxpp-upstream)\n"
    "  --grpc-upstream       take payments over gRPC from this address instead\n"
    "  --broken-propagation  re-root every request on background() (the field's bug)\n"
    "  --read-timeout-ms     time to receive a whole request (default 10000)\n"
    "  --max-timeout-ms      cap on a request's X-Request-Timeout-Ms (default 30000)\n"
    "  --db-connections      SQLite pool size (default 16)\n";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "ctxpp-gateway: %s\n%s", message.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // glibc gives threads up to 8 malloc arenas per core, each keeping its own high-water
  // mark: a server whose requests hop between a hundred pool threads then creeps up in
  // resident memory for a long while without leaking anything. Two arenas keep the
  // footprint flat at no measurable cost here (MALLOC_ARENA_MAX in the environment
  // still wins, as glibc reads it first).
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
  gateway::block_termination_signals();
  gateway::GatewayOptions options;
  std::string listen;
  std::string upstream;
  std::string grpc_upstream;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--broken-propagation") {
      options.broken_propagation = true;
      continue;
    }
    if (i + 1 >= argc) return usage_error("missing value after " + std::string(arg));
    const std::string_view value = argv[++i];
    const auto milliseconds = [&](std::chrono::milliseconds& out) {
      const auto parsed = gateway::parse_bounded(value, 1, 3'600'000);
      if (parsed) out = std::chrono::milliseconds(*parsed);
      return parsed.has_value();
    };
    if (arg == "--listen") {
      listen = value;
    } else if (arg == "--db") {
      options.db_path = value;
    } else if (arg == "--upstream") {
      upstream = value;
    } else if (arg == "--grpc-upstream") {
      grpc_upstream = value;
    } else if (arg == "--read-timeout-ms") {
      if (!milliseconds(options.read_timeout)) return usage_error("--read-timeout-ms: 1..3600000");
    } else if (arg == "--max-timeout-ms") {
      if (!milliseconds(options.max_request_timeout)) {
        return usage_error("--max-timeout-ms: 1..3600000");
      }
    } else if (arg == "--db-connections") {
      const auto parsed = gateway::parse_bounded(value, 1, 256);
      if (!parsed) return usage_error("--db-connections: 1..256");
      options.db_connections = static_cast<std::size_t>(*parsed);
    } else {
      return usage_error("unknown argument " + std::string(arg));
    }
  }
  const auto listen_address = gateway::parse_host_port(listen);
  if (!listen_address) return usage_error("--listen: expected HOST:PORT, got '" + listen + "'");
  options.listen = *listen_address;
  if (options.db_path.empty()) return usage_error("--db is required");
  const auto upstream_address = gateway::parse_http_url(upstream);
  if (!upstream_address) {
    return usage_error("--upstream: expected http://HOST:PORT, got '" + upstream + "'");
  }
  options.upstream = *upstream_address;

  try {
#ifdef CTXPP_GATEWAY_GRPC
    std::unique_ptr<gateway::GrpcPayments> grpc_payments;
    if (!grpc_upstream.empty()) {
      const auto address = gateway::parse_host_port(grpc_upstream);
      if (!address) return usage_error("--grpc-upstream: expected HOST:PORT");
      grpc_payments = std::make_unique<gateway::GrpcPayments>(*address);
      options.payments = grpc_payments->backend();
    }
#else
    if (!grpc_upstream.empty()) return usage_error("--grpc-upstream: built without gRPC");
#endif
    gateway::Gateway server(options);
    if (const auto error = server.start()) {
      std::fprintf(stderr, "ctxpp-gateway: cannot listen on %s: %s\n", listen.c_str(),
                   error.message().c_str());
      return 1;
    }
    std::printf("ctxpp-gateway listening on %s:%u\n", options.listen.host.c_str(),
                static_cast<unsigned>(server.port()));
    std::fflush(stdout);
    gateway::wait_for_termination();
    server.stop(std::chrono::seconds(2));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "ctxpp-gateway: %s\n", error.what());
    return 1;
  }
  return 0;
}
