#include "service.hpp"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <system_error>

namespace gateway {

namespace http = ::boost::beast::http;

ctxpp::Result<HostPort> parse_host_port(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  const auto port = parse_bounded(text.substr(colon + 1), 0, 65535);
  if (!port) return std::make_error_code(std::errc::invalid_argument);
  return HostPort{std::string(text.substr(0, colon)), static_cast<std::uint16_t>(*port)};
}

ctxpp::Result<HostPort> parse_http_url(std::string_view url) {
  constexpr std::string_view scheme = "http://";
  if (!url.starts_with(scheme)) return std::make_error_code(std::errc::invalid_argument);
  url.remove_prefix(scheme.size());
  if (url.ends_with('/')) url.remove_suffix(1);
  return parse_host_port(url);
}

std::string_view path_of(std::string_view target) noexcept {
  return target.substr(0, target.find('?'));
}

std::optional<std::string_view> query_value(std::string_view target,
                                            std::string_view name) noexcept {
  const auto question = target.find('?');
  if (question == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(question + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const auto equals = pair.find('=');
    if (pair.substr(0, equals) == name) {
      return equals == std::string_view::npos ? std::string_view{} : pair.substr(equals + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::optional<std::int64_t> parse_bounded(std::string_view text, std::int64_t min,
                                          std::int64_t max) noexcept {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value < min || value > max) return std::nullopt;
  return value;
}

ctxpp::asio::Response make_response(const ctxpp::asio::Request& request, http::status status,
                                    std::string body, std::string_view content_type) {
  ctxpp::asio::Response response{status, request.version()};
  response.set(http::field::content_type, content_type);
  response.set(http::field::cache_control, "no-store");
  response.body() = std::move(body);
  return response;
}

ctxpp::asio::Response error_response(const ctxpp::asio::Request& request, http::status status,
                                     std::string_view message) {
  return make_response(request, status, "{\"error\":" + json_quote(message) + "}\n");
}

std::string json_quote(std::string_view text) {
  // Bytes that are not UTF-8 (a header can hold anything) become U+FFFD, not an error.
  return nlohmann::json(std::string(text))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::uint64_t resident_bytes() noexcept {
  std::FILE* file = std::fopen("/proc/self/statm", "r");
  if (file == nullptr) return 0;
  unsigned long long total_pages = 0;
  unsigned long long resident_pages = 0;
  const int read = std::fscanf(file, "%llu %llu", &total_pages, &resident_pages);
  std::fclose(file);
  if (read != 2) return 0;
  return resident_pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {
sigset_t termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}
}  // namespace

void block_termination_signals() {
  const sigset_t set = termination_signals();
  if (const int error = pthread_sigmask(SIG_BLOCK, &set, nullptr); error != 0) {
    throw std::system_error(error, std::generic_category(), "pthread_sigmask");
  }
}

int wait_for_termination() {
  const sigset_t set = termination_signals();
  int signal = 0;
  while (sigwait(&set, &signal) != 0) {
  }
  return signal;
}

void LatencyHistogram::add(double milliseconds) {
  std::size_t index = 0;
  if (milliseconds > kSmallest) {
    const double position = std::log(milliseconds / kSmallest) / std::log(kGrowth);
    index = std::min<std::size_t>(kBuckets, 1 + static_cast<std::size_t>(position));
  }
  std::lock_guard lock(mutex_);
  ++counts_[index];
  ++count_;
  max_ = std::max(max_, milliseconds);
}

double LatencyHistogram::quantile(double fraction) const {
  // Nearest rank: the bucket holding the ceil(fraction * count)-th smallest sample,
  // reported as its upper bound (never above the largest sample seen).
  const auto rank = static_cast<std::uint64_t>(std::ceil(fraction * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (std::size_t index = 0; index <= kBuckets; ++index) {
    seen += counts_[index];
    if (seen >= std::max<std::uint64_t>(rank, 1)) {
      return std::min(max_, kSmallest * std::pow(kGrowth, static_cast<double>(index)));
    }
  }
  return max_;
}

LatencyHistogram::Summary LatencyHistogram::summary() const {
  std::lock_guard lock(mutex_);
  Summary summary;
  summary.count = count_;
  if (count_ == 0) return summary;
  summary.p50 = quantile(0.50);
  summary.p99 = quantile(0.99);
  summary.max = max_;
  return summary;
}

}  // namespace gateway
