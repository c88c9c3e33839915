// demo.cpp — orchestration; every server lives in a ServerProcess so any early return
// stops and reaps it.
#include "demo.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "report.hpp"
#include "server_process.hpp"

namespace ctxpp_load {

namespace {

constexpr auto kStartTimeout = std::chrono::seconds(20);

void progress(const std::string& text) { std::cerr << "[ctxpp-load] " << text << std::endl; }

struct Servers {
  ServerProcess upstream;
  ServerProcess gateway;
  Endpoint upstream_endpoint;
  Endpoint gateway_endpoint;

  /// Gateway first, so nothing is left calling an upstream that is already gone.
  void stop(RunResult* result) {
    const std::string gateway_end = gateway.stop();
    const bool gateway_clean = gateway.stopped_cleanly();
    const std::string upstream_end = upstream.stop();
    if (result == nullptr) return;
    if (!gateway_end.empty() && !gateway_clean) {
      result->notes.push_back("gateway did not stop cleanly on SIGTERM: " + gateway_end);
    }
    if (!upstream_end.empty() && !upstream.stopped_cleanly()) {
      result->notes.push_back("upstream did not stop cleanly on SIGTERM: " + upstream_end);
    }
  }
};

/// The last lines of a server's log, for a setup error that says why without a search.
std::string log_tail(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  // Bounded: a log is read once, keeping the last three lines.
  for (std::string line; lines.size() < 100'000 && std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > 3) lines.erase(lines.begin());
  }
  std::string tail;
  for (const auto& line : lines) tail += "\n    " + line;
  return "; log " + path.string() + (tail.empty() ? " (empty)" : ":" + tail);
}

bool start_servers(const DemoConfig& config, const std::string& label, bool broken,
                   const std::filesystem::path& scratch, Servers& servers, std::string& error) {
  const auto logs = std::filesystem::path(config.out_dir) / "logs";
  std::vector<std::string> upstream_argv = {config.upstream_binary, "--listen", "127.0.0.1:0"};
  std::vector<std::string> upstream_prefixes = {"ctxpp-upstream listening on "};
  if (config.grpc) {
    upstream_argv.insert(upstream_argv.end(), {"--grpc-listen", "127.0.0.1:0"});
    upstream_prefixes.push_back("ctxpp-upstream grpc listening on ");
  }
  if (!servers.upstream.start(upstream_argv, (logs / ("upstream-" + label + ".log")).string(),
                              error)) {
    error = "upstream: " + error;
    return false;
  }
  auto upstream_lines = servers.upstream.wait_for_lines(upstream_prefixes, kStartTimeout, error);
  if (!upstream_lines) {
    servers.upstream.stop();
    error = "upstream: " + error + log_tail(logs / ("upstream-" + label + ".log"));
    return false;
  }
  auto upstream_endpoint = parse_endpoint(upstream_lines->at(0));
  if (!upstream_endpoint) {
    error = "upstream announced an unreadable address: " + upstream_lines->at(0);
    return false;
  }
  servers.upstream_endpoint = *upstream_endpoint;

  std::vector<std::string> gateway_argv = {config.gateway_binary,
                                           "--listen",
                                           "127.0.0.1:0",
                                           "--db",
                                           (scratch / (label + ".sqlite")).string(),
                                           "--upstream",
                                           "http://" + upstream_endpoint->text()};
  if (config.grpc)
    gateway_argv.insert(gateway_argv.end(), {"--grpc-upstream", upstream_lines->at(1)});
  if (broken) gateway_argv.push_back("--broken-propagation");
  if (!servers.gateway.start(gateway_argv, (logs / ("gateway-" + label + ".log")).string(),
                             error)) {
    error = "gateway: " + error;
    return false;
  }
  auto gateway_lines =
      servers.gateway.wait_for_lines({"ctxpp-gateway listening on "}, kStartTimeout, error);
  if (!gateway_lines) {
    servers.gateway.stop();
    error = "gateway: " + error + log_tail(logs / ("gateway-" + label + ".log"));
    return false;
  }
  auto gateway_endpoint = parse_endpoint(gateway_lines->at(0));
  if (!gateway_endpoint) {
    error = "gateway announced an unreadable address: " + gateway_lines->at(0);
    return false;
  }
  servers.gateway_endpoint = *gateway_endpoint;
  return true;
}

RunConfig run_config(const DemoConfig& config, const Servers& servers, const std::string& label) {
  RunConfig run;
  run.gateway = servers.gateway_endpoint;
  run.upstream = servers.upstream_endpoint;
  run.requests = config.requests;
  run.concurrency = config.concurrency;
  run.seed = config.seed;
  run.duration_limit_s = config.duration_limit_s;
  run.label = label;
  run.mix = config.mix;
  return run;
}

/// One measured run on fresh servers. Returns false on a setup error.
bool measured_run(const DemoConfig& config, const std::string& label, bool broken,
                  const std::filesystem::path& scratch, RunResult& result, std::string& error) {
  progress(label + " run: starting servers");
  Servers servers;
  if (!start_servers(config, label, broken, scratch, servers, error)) return false;
  progress(label + " run: gateway " + servers.gateway_endpoint.text() + ", upstream " +
           servers.upstream_endpoint.text() + ", " + std::to_string(config.requests) + " requests");
  auto measured = run_load(run_config(config, servers, label), error);
  if (!measured) return false;
  result = std::move(*measured);
  servers.stop(&result);
  progress(label + " run: done in " + std::to_string(result.duration_s) + " s");
  return true;
}

bool rss_check(const DemoConfig& config, const std::filesystem::path& scratch, RssCheck& rss,
               std::string& error) {
  progress("RSS check: starting servers");
  Servers servers;
  if (!start_servers(config, "rss", false, scratch, servers, error)) return false;
  RunConfig small = run_config(config, servers, "rss-small");
  small.requests = config.rss_requests_small;
  small.duration_limit_s = config.rss_small_limit_s;
  small.fetch_upstream_requests = false;
  auto first = run_load(small, error);
  if (!first) return false;
  rss.small_requests = first->requests_sent;
  rss.rss_small_bytes = first->rss_end_bytes;
  for (const auto& sample : first->samples) {
    rss.samples.push_back({.t_ms = sample.t_ms, .rss_bytes = sample.rss_bytes});
  }
  // The second part's clock starts at its own load; the gap between the two (drain, the
  // one-second read) is short next to the parts, so one sampling step stands for it.
  rss.small_end_t_ms = rss.samples.empty() ? 0 : rss.samples.back().t_ms + 25;
  progress("RSS check: " + std::to_string(rss.small_requests) + " requests done");

  RunConfig large = small;
  large.label = "rss-large";
  large.id_base = first->requests_sent;
  large.requests = config.rss_requests_large > first->requests_sent
                       ? config.rss_requests_large - first->requests_sent
                       : 0;
  large.duration_limit_s = config.rss_large_limit_s;
  auto second = run_load(large, error);
  if (!second) return false;
  rss.large_requests = rss.small_requests + second->requests_sent;
  for (const auto& sample : second->samples) {
    rss.samples.push_back(
        {.t_ms = rss.small_end_t_ms + sample.t_ms, .rss_bytes = sample.rss_bytes});
  }
  rss.rss_large_bytes = second->rss_end_bytes;
  rss.measured = true;
  rss.judged = !config.quick;
  progress("RSS check: " + std::to_string(rss.large_requests) + " requests done");
  servers.stop(nullptr);
  return true;
}

bool write_file(const std::filesystem::path& path, const std::string& text, std::string& error) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    error = path.string() + ": cannot write";
    return false;
  }
  return true;
}

}  // namespace

void apply_quick_defaults(DemoConfig& config) {
  config.requests = 1500;
  config.concurrency = 16;
  config.duration_limit_s = 5;
  config.rss_requests_small = 1000;
  config.rss_requests_large = 4000;
  config.rss_small_limit_s = 3;
  config.rss_large_limit_s = 5;
}

bool write_report(const Report& report, const std::string& out_dir, bool print,
                  std::string& error) {
  const auto goals = evaluate_goals(report);
  const std::string text = render_text(report, goals);
  if (print) std::cout << text << std::flush;
  const std::filesystem::path dir(out_dir);
  return write_file(dir / "report.txt", text, error) &&
         write_file(dir / "report.json", to_json(report).dump(1) + "\n", error) &&
         write_file(dir / "report.html", render_html(report, goals), error);
}

int run_demo(const DemoConfig& config) {
  std::error_code filesystem_error;
  std::filesystem::create_directories(std::filesystem::path(config.out_dir) / "logs",
                                      filesystem_error);
  if (filesystem_error) {
    std::cerr << "ctxpp-load: " << config.out_dir << ": " << filesystem_error.message() << "\n";
    return 2;
  }
  for (const auto* binary : {&config.gateway_binary, &config.upstream_binary}) {
    if (::access(binary->c_str(), X_OK) != 0) {
      std::cerr << "ctxpp-load: " << *binary << " is not an executable file\n";
      return 2;
    }
  }
  std::string scratch_template =
      (std::filesystem::temp_directory_path() / "ctxpp-load-XXXXXX").string();
  if (::mkdtemp(scratch_template.data()) == nullptr) {
    std::cerr << "ctxpp-load: cannot create a scratch directory for the databases\n";
    return 2;
  }
  const std::filesystem::path scratch(scratch_template);
  struct RemoveScratch {
    std::filesystem::path path;
    ~RemoveScratch() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } remove_scratch{scratch};

  Report report;
  report.quick = config.quick;
  report.time_goal_scale = config.time_goal_scale;
  report.transport = config.grpc ? "grpc" : "http";
  std::string error;
  if (!measured_run(config, "correct", false, scratch, report.correct, error)) {
    std::cerr << "ctxpp-load: correct run: " << error << "\n";
    return 2;
  }
  if (!measured_run(config, "broken", true, scratch, report.broken, error)) {
    std::cerr << "ctxpp-load: broken run: " << error << "\n";
    return 2;
  }
  report.has_broken = true;
  if (!config.skip_rss && !rss_check(config, scratch, report.rss, error)) {
    std::cerr << "ctxpp-load: RSS check: " << error << "\n";
    return 2;
  }
  if (!write_report(report, config.out_dir, true, error)) {
    std::cerr << "ctxpp-load: " << error << "\n";
    return 2;
  }
  std::cerr << "[ctxpp-load] wrote " << config.out_dir << "/report.{txt,json,html}\n";
  return all_goals_pass(evaluate_goals(report)) ? 0 : 1;
}

}  // namespace ctxpp_load
