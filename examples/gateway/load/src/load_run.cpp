// load_run.cpp — client threads, the sampler, the drain watch and the final accounting.
#include "load_run.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

namespace ctxpp_load {

namespace {

using std::chrono::milliseconds;

enum class Kind { orders, report, checkout, disconnect, deadline };

/// splitmix64: a well-mixed 64-bit stream from any seed, cheap enough per request.
struct Random {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [low, high].
  std::uint64_t between(std::uint64_t low, std::uint64_t high) {
    return low + next() % (high - low + 1);
  }
  double unit() { return static_cast<double>(next() >> 11) / 9007199254740992.0; }
};

Kind pick(const Mix& mix, Random& random) {
  const double total = mix.orders + mix.report + mix.checkout + mix.disconnect + mix.deadline;
  double point = random.unit() * total;
  if ((point -= mix.orders) < 0) return Kind::orders;
  if ((point -= mix.report) < 0) return Kind::report;
  if ((point -= mix.checkout) < 0) return Kind::checkout;
  if ((point -= mix.disconnect) < 0) return Kind::disconnect;
  return Kind::deadline;
}

double elapsed_ms(Clock::time_point since, Clock::time_point now = Clock::now()) {
  return std::chrono::duration<double, std::milli>(now - since).count();
}

/// What one client thread saw; merged after the threads joined so the hot loop shares
/// nothing but the request counter.
struct ClientTally {
  std::uint64_t sent = 0, ok = 0, deadline_504 = 0, other_status = 0, disconnected = 0,
                disconnected_after_response = 0, transport_errors = 0, short_deadline = 0;
  std::map<std::string, std::uint64_t> status_counts;
  std::vector<double> orders_ms, report_ms, checkout_ms;
  std::vector<Disconnect> disconnects;
  std::string first_error;
};

std::string checkout_body(Random& random) {
  return "{\"order_id\":\"" + std::to_string(random.between(1, 1000)) +
         "\",\"amount_cents\":" + std::to_string(random.between(100, 20000)) + "}";
}

void count_status(ClientTally& tally, int status) {
  ++tally.status_counts[std::to_string(status)];
  if (status == 200) {
    ++tally.ok;
  } else if (status == 504) {
    ++tally.deadline_504;
  } else {
    ++tally.other_status;
  }
}

void run_client(const RunConfig& config, std::atomic<std::uint64_t>& next_number,
                Clock::time_point stop_at, ClientTally& tally) {
  HttpConnection keep_alive(config.gateway);
  // Bounded by the request count and the time limit.
  while (Clock::now() < stop_at) {
    const std::uint64_t number = next_number.fetch_add(1, std::memory_order_relaxed);
    if (number >= config.requests) break;
    ++tally.sent;
    Random random{config.seed * 0x100000001b3ULL + number};
    const Kind kind = pick(config.mix, random);
    const std::string id = std::to_string(config.id_base + number + 1);
    std::vector<std::pair<std::string, std::string>> headers = {{"X-Request-Id", id}};
    std::string error;

    if (kind == Kind::disconnect) {
      // Slow enough that the hang-up lands mid-request: DB and upstream both take longer
      // than the 40 ms the client waits at most.
      std::string request;
      if (random.between(0, 1) == 0) {
        const std::string target = "/api/report?db_ms=" + std::to_string(random.between(150, 400)) +
                                   "&upstream_ms=" + std::to_string(random.between(150, 400));
        request = build_request("GET", target, headers, {}, false);
      } else {
        request = build_request("POST", "/api/checkout", headers, checkout_body(random), false);
      }
      const milliseconds wait(random.between(5, 40));
      HttpConnection doomed(config.gateway);
      if (!doomed.open_and_send(request, Clock::now() + milliseconds(2000), error)) {
        ++tally.transport_errors;
        if (tally.first_error.empty()) tally.first_error = error;
        continue;
      }
      const bool answered = doomed.wait_readable(wait);
      const std::int64_t close_ns = doomed.reset();
      ++tally.disconnected;
      if (answered) ++tally.disconnected_after_response;
      tally.disconnects.push_back({id, close_ns});
      continue;
    }

    std::string target;
    std::string body;
    std::string method = "GET";
    std::vector<double>* latencies = nullptr;
    switch (kind) {
      case Kind::orders:
        target = "/api/orders/" + std::to_string(random.between(1, 1000));
        latencies = &tally.orders_ms;
        break;
      case Kind::report:
        target = "/api/report?db_ms=" + std::to_string(random.between(20, 60)) +
                 "&upstream_ms=" + std::to_string(random.between(20, 80));
        latencies = &tally.report_ms;
        break;
      case Kind::checkout:
        method = "POST";
        target = "/api/checkout";
        body = checkout_body(random);
        latencies = &tally.checkout_ms;
        break;
      case Kind::deadline:
        target = "/api/report?db_ms=" + std::to_string(random.between(100, 200)) +
                 "&upstream_ms=" + std::to_string(random.between(100, 200));
        headers.emplace_back("X-Request-Timeout-Ms", std::to_string(random.between(10, 30)));
        ++tally.short_deadline;
        break;
      case Kind::disconnect:
        break;
    }
    const auto started = Clock::now();
    auto response = keep_alive.exchange(build_request(method, target, headers, body, true),
                                        started + milliseconds(10'000), error);
    if (!response) {
      ++tally.transport_errors;
      if (tally.first_error.empty()) tally.first_error = target + ": " + error;
      continue;
    }
    count_status(tally, response->status);
    if (latencies != nullptr && response->status == 200) {
      latencies->push_back(elapsed_ms(started));
    }
  }
}

/// Both sides' /debug/stats at one moment; missing parts stay empty.
struct Reading {
  std::optional<GatewayStats> gateway;
  std::optional<UpstreamStats> upstream;
};

class StatsReader {
 public:
  explicit StatsReader(const RunConfig& config) : gateway_(config.gateway) {
    if (config.upstream) upstream_.emplace(*config.upstream);
  }

  Reading read(milliseconds timeout) {
    Reading reading;
    std::string error;
    if (auto body = http_get(gateway_, "/debug/stats", timeout, error)) {
      reading.gateway = parse_gateway_stats(*body);
      if (!reading.gateway) gateway_error_ = "not the stats JSON: " + body->substr(0, 80);
    } else {
      gateway_error_ = error;
    }
    if (upstream_) {
      if (auto body = http_get(*upstream_, "/debug/stats", timeout, error)) {
        reading.upstream = parse_upstream_stats(*body);
      }
    }
    return reading;
  }

  /// Why the last gateway read failed.
  const std::string& gateway_error() const { return gateway_error_; }

 private:
  HttpConnection gateway_;
  std::string gateway_error_;
  std::optional<HttpConnection> upstream_;
};

Sample sample_of(const Reading& reading, double t_ms) {
  Sample sample;
  sample.t_ms = t_ms;
  if (reading.gateway) {
    sample.db_inflight = reading.gateway->db_inflight;
    sample.gateway_upstream_inflight = reading.gateway->upstream_inflight;
    sample.pool_leased = reading.gateway->pool_leased;
    sample.rss_bytes = reading.gateway->rss_bytes;
  }
  if (reading.upstream) sample.upstream_inflight = reading.upstream->inflight;
  return sample;
}

/// Tracks when one gauge went to zero for good: a later non-zero reading undoes it.
struct DrainWatch {
  double drained_ms = -1;
  bool seen = false;
  void observe(std::int64_t value, double t_ms) {
    if (value < 0) return;
    seen = true;
    if (value != 0) {
      drained_ms = -1;
    } else if (drained_ms < 0) {
      drained_ms = t_ms;
    }
  }
  bool done(bool required) const { return !required || drained_ms >= 0; }
};

}  // namespace

std::optional<Mix> parse_mix(std::string_view text) {
  Mix mix;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const auto item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    const auto equals = item.find('=');
    if (equals == std::string_view::npos) return std::nullopt;
    const auto name = item.substr(0, equals);
    const auto value_text = item.substr(equals + 1);
    double value = 0;
    auto [end, failure] =
        std::from_chars(value_text.data(), value_text.data() + value_text.size(), value);
    if (failure != std::errc{} || end != value_text.data() + value_text.size() || value < 0) {
      return std::nullopt;
    }
    if (name == "orders") {
      mix.orders = value;
    } else if (name == "report") {
      mix.report = value;
    } else if (name == "checkout") {
      mix.checkout = value;
    } else if (name == "disconnect") {
      mix.disconnect = value;
    } else if (name == "deadline") {
      mix.deadline = value;
    } else {
      return std::nullopt;
    }
  }
  if (mix.orders + mix.report + mix.checkout + mix.disconnect + mix.deadline <= 0) {
    return std::nullopt;
  }
  return mix;
}

std::string mix_text(const Mix& mix) {
  char text[160];
  std::snprintf(text, sizeof text, "orders=%g,report=%g,checkout=%g,disconnect=%g,deadline=%g",
                mix.orders, mix.report, mix.checkout, mix.disconnect, mix.deadline);
  return text;
}

std::optional<RunResult> run_load(const RunConfig& config, std::string& error) {
  RunResult result;
  result.label = config.label;
  result.requests_planned = config.requests;
  result.concurrency = config.concurrency;
  result.seed = config.seed;
  result.mix = mix_text(config.mix);

  StatsReader before(config);
  const Reading start_reading = before.read(milliseconds(3000));
  if (!start_reading.gateway) {
    error = "gateway " + config.gateway.text() + ": GET /debug/stats: " + before.gateway_error();
    return std::nullopt;
  }
  result.gateway_start = *start_reading.gateway;
  result.rss_start_bytes = start_reading.gateway->rss_bytes;
  result.upstream_observed = start_reading.upstream.has_value();
  if (config.upstream && !result.upstream_observed) {
    result.notes.push_back("upstream " + config.upstream->text() + " /debug/stats did not answer");
  }

  const auto load_start = Clock::now();
  const auto stop_at =
      load_start + std::chrono::duration_cast<Clock::duration>(
                       std::chrono::duration<double>(std::max(config.duration_limit_s, 0.1)));

  // The sampler runs through the load, the drain and the one-second wait, so the charts
  // show the tail; it is bounded by the flag and by a sample count.
  std::atomic<bool> sampling{true};
  std::mutex samples_mutex;
  std::vector<Sample> samples;
  std::thread sampler([&] {
    StatsReader reader(config);
    auto next = Clock::now();
    constexpr std::size_t kMaxSamples = 100'000;
    for (std::size_t taken = 0; taken < kMaxSamples && sampling.load(); ++taken) {
      const Reading reading = reader.read(milliseconds(500));
      {
        std::lock_guard lock(samples_mutex);
        samples.push_back(sample_of(reading, elapsed_ms(load_start)));
      }
      next += milliseconds(25);
      const auto now = Clock::now();
      if (next < now) next = now;
      std::this_thread::sleep_until(next);
    }
  });

  std::atomic<std::uint64_t> next_number{0};
  std::vector<ClientTally> tallies(std::max<std::uint64_t>(config.concurrency, 1));
  {
    std::vector<std::thread> clients;
    clients.reserve(tallies.size());
    for (auto& tally : tallies) {
      clients.emplace_back([&config, &next_number, stop_at, &tally] {
        run_client(config, next_number, stop_at, tally);
      });
    }
    for (auto& client : clients) client.join();
  }
  const auto load_end = Clock::now();
  result.load_end_t_ms = elapsed_ms(load_start, load_end);
  result.duration_s = result.load_end_t_ms / 1000.0;

  // Drain: every 5 ms until all gauges are zero, for 3 s at most.
  StatsReader after(config);
  DrainWatch db, gateway_upstream, pool, upstream;
  for (int poll = 0; poll < 600 && Clock::now() - load_end < std::chrono::seconds(3); ++poll) {
    const Reading reading = after.read(milliseconds(500));
    const double t_ms = elapsed_ms(load_end);
    if (reading.gateway) {
      db.observe(reading.gateway->db_inflight, t_ms);
      gateway_upstream.observe(reading.gateway->upstream_inflight, t_ms);
      pool.observe(reading.gateway->pool_leased, t_ms);
    }
    if (reading.upstream) upstream.observe(reading.upstream->inflight, t_ms);
    if (db.done(true) && gateway_upstream.done(true) && pool.done(true) &&
        upstream.done(result.upstream_observed)) {
      break;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  result.drained_after_ms = {db.drained_ms, gateway_upstream.drained_ms, pool.drained_ms,
                             upstream.drained_ms};

  std::this_thread::sleep_until(load_end + std::chrono::seconds(1));
  const Reading final_reading = after.read(milliseconds(3000));
  if (final_reading.gateway) {
    result.gateway_end = *final_reading.gateway;
    result.rss_end_bytes = final_reading.gateway->rss_bytes;
    result.after_1s.db_inflight = final_reading.gateway->db_inflight;
    result.after_1s.gateway_upstream_inflight = final_reading.gateway->upstream_inflight;
    result.after_1s.pool_leased = final_reading.gateway->pool_leased;
  } else {
    result.notes.push_back("gateway /debug/stats did not answer 1 s after the load");
  }
  if (final_reading.upstream) result.after_1s.upstream_inflight = final_reading.upstream->inflight;
  sampling = false;
  sampler.join();
  result.samples = std::move(samples);

  ClientTally total;
  std::vector<double> normal_ms;
  for (auto& tally : tallies) {
    total.sent += tally.sent;
    total.ok += tally.ok;
    total.deadline_504 += tally.deadline_504;
    total.other_status += tally.other_status;
    total.disconnected += tally.disconnected;
    total.disconnected_after_response += tally.disconnected_after_response;
    total.transport_errors += tally.transport_errors;
    total.short_deadline += tally.short_deadline;
    for (const auto& [status, count] : tally.status_counts) total.status_counts[status] += count;
    total.orders_ms.insert(total.orders_ms.end(), tally.orders_ms.begin(), tally.orders_ms.end());
    total.report_ms.insert(total.report_ms.end(), tally.report_ms.begin(), tally.report_ms.end());
    total.checkout_ms.insert(total.checkout_ms.end(), tally.checkout_ms.begin(),
                             tally.checkout_ms.end());
    total.disconnects.insert(total.disconnects.end(), tally.disconnects.begin(),
                             tally.disconnects.end());
    if (total.first_error.empty()) total.first_error = tally.first_error;
  }
  result.requests_sent = total.sent;
  result.ok = total.ok;
  result.deadline_504 = total.deadline_504;
  result.other_status = total.other_status;
  result.disconnected = total.disconnected;
  result.disconnected_after_response = total.disconnected_after_response;
  result.transport_errors = total.transport_errors;
  result.short_deadline_requests = total.short_deadline;
  result.status_counts = total.status_counts;
  result.requests_per_second =
      result.duration_s > 0 ? static_cast<double>(total.sent) / result.duration_s : 0;
  if (!total.first_error.empty()) {
    result.notes.push_back("first transport error: " + total.first_error);
  }
  if (total.sent < config.requests) {
    result.notes.push_back("time limit reached after " + std::to_string(total.sent) + " of " +
                           std::to_string(config.requests) + " requests");
  }
  normal_ms = total.orders_ms;
  normal_ms.insert(normal_ms.end(), total.report_ms.begin(), total.report_ms.end());
  normal_ms.insert(normal_ms.end(), total.checkout_ms.begin(), total.checkout_ms.end());
  result.latency_normal_ms = summarize(normal_ms);
  result.latency_by_endpoint_ms["orders"] = summarize(total.orders_ms);
  result.latency_by_endpoint_ms["report"] = summarize(total.report_ms);
  result.latency_by_endpoint_ms["checkout"] = summarize(total.checkout_ms);

  if (config.upstream && config.fetch_upstream_requests) {
    HttpConnection upstream_connection(*config.upstream);
    std::string fetch_error;
    auto body = http_get(upstream_connection, "/debug/requests", milliseconds(10'000), fetch_error);
    auto requests = body ? parse_upstream_requests(*body) : std::nullopt;
    if (requests) {
      const auto after_gone = upstream_work_after_gone_ms(total.disconnects, *requests);
      result.upstream_work_after_gone_ms = summarize(after_gone);
      for (double ms : after_gone) {
        result.upstream_work_after_gone_total_ms += ms;
        if (ms > 0) ++result.upstream_work_after_gone_positive;
      }
      std::unordered_set<std::string> seen;
      for (const auto& request : *requests) seen.insert(request.id);
      for (const auto& disconnect : total.disconnects) {
        if (seen.contains(disconnect.id)) ++result.upstream_requests_matched;
      }
    } else {
      result.notes.push_back("upstream /debug/requests unavailable: " +
                             (fetch_error.empty() ? std::string("not a JSON array") : fetch_error));
    }
  }
  return result;
}

}  // namespace ctxpp_load
