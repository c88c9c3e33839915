// examples/gateway/common/service.hpp — what the gateway and the upstream server share:
// command-line addresses, query parameters, responses, the process's resident memory,
// termination signals and a bounded latency sample.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ctxpp/asio/http_server.hpp"
#include "ctxpp/result.hpp"

namespace gateway {

/// host:port as given on a command line ("127.0.0.1:0"). Errors: invalid_argument
/// for a missing colon, an empty host, or a port that is not a number in 0..65535.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
ctxpp::Result<HostPort> parse_host_port(std::string_view text);

/// "http://host:port" (a trailing '/' allowed) as HostPort; the same errors.
ctxpp::Result<HostPort> parse_http_url(std::string_view url);

/// The path of a request target, without its query.
std::string_view path_of(std::string_view target) noexcept;

/// The value of name in target's query ("?a=1&b=2"), undecoded; nullopt if absent.
std::optional<std::string_view> query_value(std::string_view target,
                                            std::string_view name) noexcept;

/// A whole decimal number in [min, max], or nullopt (empty, sign, garbage, overflow).
std::optional<std::int64_t> parse_bounded(std::string_view text, std::int64_t min,
                                          std::int64_t max) noexcept;

/// A response with body and content type, matching the request's HTTP version.
ctxpp::asio::Response make_response(const ctxpp::asio::Request& request,
                                    ::boost::beast::http::status status, std::string body,
                                    std::string_view content_type = "application/json");

/// {"error":"<message>"} with status.
ctxpp::asio::Response error_response(const ctxpp::asio::Request& request,
                                     ::boost::beast::http::status status, std::string_view message);

/// The string as a JSON string literal, quotes included; invalid UTF-8 becomes U+FFFD.
std::string json_quote(std::string_view text);

/// Resident set size of this process in bytes (/proc/self/statm), 0 if unreadable.
std::uint64_t resident_bytes() noexcept;

/// std::chrono::steady_clock now in nanoseconds: CLOCK_MONOTONIC, the same clock in
/// every process of the machine, so the load generator can compare instants.
std::int64_t steady_ns() noexcept;

/// Blocks SIGTERM and SIGINT in the calling thread and in every thread it starts
/// later; call first thing in main. wait_for_termination() then returns the signal
/// once one arrives.
void block_termination_signals();
int wait_for_termination();

/// Percentiles of latencies (milliseconds) in fixed memory, however many are added:
/// counts in buckets 1 % wide from 1 µs to about 3 minutes, so a quantile is exact to
/// within 1 % (the maximum is exact). A service that keeps every sample grows with its
/// traffic, which is what the gateway's memory check would rightly flag.
/// Thread safety: any thread (one mutex). Cost: add is a logarithm and an increment;
/// summary walks the buckets.
class LatencyHistogram {
 public:
  struct Summary {
    std::uint64_t count = 0;
    double p50 = 0;
    double p99 = 0;
    double max = 0;
  };

  void add(double milliseconds);
  Summary summary() const;

 private:
  static constexpr double kSmallest = 0.001;  // ms; bucket 0 holds everything below
  static constexpr double kGrowth = 1.01;
  static constexpr std::size_t kBuckets = 1920;  // 0.001 ms * 1.01^1920 ≈ 200 s
  double quantile(double fraction) const;        // with mutex_ held

  mutable std::mutex mutex_;
  std::vector<std::uint64_t> counts_ = std::vector<std::uint64_t>(kBuckets + 1, 0);
  std::uint64_t count_ = 0;
  double max_ = 0;
};

}  // namespace gateway
