// load_run.hpp — one bounded, closed-loop load run against a running gateway.
// `concurrency` client threads take request numbers from a shared counter until
// `requests` are taken or `duration_limit_s` has passed. Each number's kind and
// parameters come from (seed, number) alone, so a seed gives the same mix however the
// threads interleave. A sampler polls /debug/stats while the load runs; afterwards the
// run measures how fast the servers drained and how long the upstream kept working for
// clients that had hung up.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "http_client.hpp"
#include "load_result.hpp"

namespace ctxpp_load {

/// Weights of the request kinds (any non-negative numbers; they need not sum to 100).
struct Mix {
  double orders = 70;      // GET /api/orders/{id}, keep-alive
  double report = 10;      // GET /api/report?db_ms=20..60&upstream_ms=20..80, keep-alive
  double checkout = 5;     // POST /api/checkout, keep-alive
  double disconnect = 10;  // a slow report or checkout, then an RST after 5..40 ms
  double deadline = 5;     // a slow report with X-Request-Timeout-Ms 10..30: expect 504
};

/// Parses "orders=70,report=10,checkout=5,disconnect=10,deadline=5" (any subset; the
/// rest keep their defaults). Errors: nullopt on an unknown name or a bad number.
[[nodiscard]] std::optional<Mix> parse_mix(std::string_view text);

/// The form parse_mix reads.
std::string mix_text(const Mix& mix);

struct RunConfig {
  Endpoint gateway;
  std::optional<Endpoint> upstream;
  std::uint64_t requests = 10000;
  std::uint64_t concurrency = 32;
  std::uint64_t seed = 1;
  double duration_limit_s = 60;
  std::string label = "run";
  Mix mix;
  std::uint64_t id_base = 0;  // request ids are id_base + 1, id_base + 2, ...
  bool fetch_upstream_requests = true;
};

/// Runs the load and measures. Blocking: duration_limit_s plus at most 10 s for requests
/// already sent, 3 s of drain, the one-second read and a 10 s fetch of the request log. Errors: a
/// gateway that cannot be reached before the load is reported through `error` and an empty
/// optional.
[[nodiscard]] std::optional<RunResult> run_load(const RunConfig& config, std::string& error);

}  // namespace ctxpp_load
