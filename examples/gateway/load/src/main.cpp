// ctxpp-load — load generator and report for the ctxpp gateway example.
// Modes: run (load one running gateway), demo (start the servers, run correct and broken
// propagation, check RSS, write the report), render (re-render a report.json).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "demo.hpp"
#include "load_run.hpp"
#include "report.hpp"

namespace {

using namespace ctxpp_load;

constexpr const char* kUsage = R"(usage:
  ctxpp-load run --gateway HOST:PORT [--upstream HOST:PORT] --out result.json [options]
  ctxpp-load demo --gateway-bin PATH --upstream-bin PATH --out DIR [options]
  ctxpp-load render (--in report.json | --synthetic) --out DIR
  ctxpp-load --help

run: a bounded closed-loop load on a running gateway; writes one run's result as JSON.
  --gateway HOST:PORT       the gateway (required)
  --upstream HOST:PORT      the upstream, to watch its in-flight count and its request log
  --requests N              requests to send (default 10000)
  --concurrency C           client threads (default 32)
  --seed S                  the request mix and parameters come from the seed (default 1)
  --duration-limit-s T      stop taking new requests after T seconds (default 60)
  --label NAME              the run's name in the result (default run)
  --mix LIST                weights, e.g. orders=70,report=10,checkout=5,disconnect=10,deadline=5
                            (the default; names left out keep their default)
  --id-base N               request ids are N+1, N+2, ... (default 0)
  --out FILE                where to write the result JSON (required)
  exit: 0 measured, 2 setup error (gateway unreachable, bad flags, unwritable output)

demo: start ctxpp-upstream and ctxpp-gateway (fresh processes per run, port 0), run the
load with correct propagation and with --broken-propagation, check that RSS stays flat
on one correct gateway, stop the servers (SIGTERM, SIGKILL after 5 s), print the report
and write DIR/report.txt, DIR/report.json, DIR/report.html (server logs in DIR/logs/).
  --gateway-bin PATH        ctxpp-gateway (required)
  --upstream-bin PATH       ctxpp-upstream (required)
  --out DIR                 output directory (required; created)
  --requests N              requests per run (default 15000; --quick 1500)
  --concurrency C           client threads (default 32; --quick 16)
  --seed S                  (default 1)
  --duration-limit-s T      time limit per run (default 20; --quick 5)
  --rss-requests-small N    RSS is read after N requests ... (default 10000; --quick 1000)
  --rss-requests-large N    ... and again after N in total, same process (default 100000;
                            --quick 4000; time limits 12 s and 40 s, --quick 3 s and 5 s)
  --no-rss                  skip the RSS check (its goal then reads n/a)
  --mix LIST                as for run
  --grpc                    the gateway reaches the upstream over gRPC (--grpc-upstream)
  --time-goal-scale F       multiply the time goals (100 ms drain, 5 ms p99) by F, 1..100,
                            for sanitizer and debug builds (default 1)
  --quick                   small sizes for tests (about 10 s); the RSS goal is shown but
                            not judged, too few requests for a plateau
  goals, judged on the correct run: zero lingering leases; upstream calls and DB queries
  drained <= 100 ms after the last client left (gateway and upstream); RSS within +/-5 %
  between the small and large counts; cancel-to-cleanup p99 <= 5 ms
  exit: 0 all goals pass, 1 a goal failed, 2 setup error

render: write report.txt and report.html (and report.json) into DIR from a demo's
report.json, or from made-up results with --synthetic (tests, layout work).
  exit: 0 written, 2 unreadable input or unwritable output
)";

struct Arguments {
  std::map<std::string, std::string> values;
  std::set<std::string> flags;
};

/// Errors: false and a message on an unknown option or a missing value.
bool parse_arguments(int argc, char** argv, int first, const std::set<std::string>& value_options,
                     const std::set<std::string>& flag_options, Arguments& arguments,
                     std::string& error) {
  for (int index = first; index < argc; ++index) {
    std::string argument = argv[index];
    if (!argument.starts_with("--")) {
      error = "unexpected argument " + argument;
      return false;
    }
    std::string name = argument.substr(2);
    std::optional<std::string> value;
    if (const auto equals = name.find('='); equals != std::string::npos) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
    }
    if (flag_options.contains(name) && !value) {
      arguments.flags.insert(name);
    } else if (value_options.contains(name)) {
      if (!value) {
        if (index + 1 >= argc) {
          error = "--" + name + " needs a value";
          return false;
        }
        value = argv[++index];
      }
      arguments.values[name] = *value;
    } else {
      error = "unknown option --" + name;
      return false;
    }
  }
  return true;
}

bool read_number(const Arguments& arguments, const std::string& name, std::uint64_t& out,
                 std::string& error) {
  auto found = arguments.values.find(name);
  if (found == arguments.values.end()) return true;
  char* end = nullptr;
  const auto value = std::strtoull(found->second.c_str(), &end, 10);
  if (found->second.empty() || *end != '\0') {
    error = "--" + name + ": not a whole number: " + found->second;
    return false;
  }
  out = value;
  return true;
}

bool read_seconds(const Arguments& arguments, const std::string& name, double& out,
                  std::string& error) {
  auto found = arguments.values.find(name);
  if (found == arguments.values.end()) return true;
  char* end = nullptr;
  const double value = std::strtod(found->second.c_str(), &end);
  if (found->second.empty() || *end != '\0' || value <= 0) {
    error = "--" + name + ": not a positive number: " + found->second;
    return false;
  }
  out = value;
  return true;
}

bool read_mix(const Arguments& arguments, Mix& mix, std::string& error) {
  auto found = arguments.values.find("mix");
  if (found == arguments.values.end()) return true;
  auto parsed = parse_mix(found->second);
  if (!parsed) {
    error =
        "--mix: expected name=weight,... with names orders, report, checkout, disconnect, "
        "deadline: " +
        found->second;
    return false;
  }
  mix = *parsed;
  return true;
}

int setup_error(const std::string& message) {
  std::cerr << "ctxpp-load: " << message << "\n(see ctxpp-load --help)\n";
  return 2;
}

int run_mode(int argc, char** argv) {
  Arguments arguments;
  std::string error;
  if (!parse_arguments(argc, argv, 2,
                       {"gateway", "upstream", "requests", "concurrency", "seed",
                        "duration-limit-s", "label", "mix", "id-base", "out"},
                       {}, arguments, error)) {
    return setup_error(error);
  }
  RunConfig config;
  if (!arguments.values.contains("gateway") || !arguments.values.contains("out")) {
    return setup_error("run needs --gateway and --out");
  }
  auto gateway = parse_endpoint(arguments.values["gateway"]);
  if (!gateway) return setup_error("--gateway: expected HOST:PORT");
  config.gateway = *gateway;
  if (arguments.values.contains("upstream")) {
    config.upstream = parse_endpoint(arguments.values["upstream"]);
    if (!config.upstream) return setup_error("--upstream: expected HOST:PORT");
  }
  if (arguments.values.contains("label")) config.label = arguments.values["label"];
  if (!read_number(arguments, "requests", config.requests, error) ||
      !read_number(arguments, "concurrency", config.concurrency, error) ||
      !read_number(arguments, "seed", config.seed, error) ||
      !read_number(arguments, "id-base", config.id_base, error) ||
      !read_seconds(arguments, "duration-limit-s", config.duration_limit_s, error) ||
      !read_mix(arguments, config.mix, error)) {
    return setup_error(error);
  }
  if (config.concurrency == 0 || config.concurrency > 1024) {
    return setup_error("--concurrency: 1..1024");
  }
  auto result = run_load(config, error);
  if (!result) return setup_error(error);
  std::ofstream out(arguments.values["out"], std::ios::trunc);
  out << to_json(*result).dump(1) << "\n";
  out.close();
  if (!out) return setup_error(arguments.values["out"] + ": cannot write");
  Report report;
  report.correct = std::move(*result);
  std::cout << render_text(report, evaluate_goals(report));
  return 0;
}

int demo_mode(int argc, char** argv) {
  Arguments arguments;
  std::string error;
  if (!parse_arguments(argc, argv, 2,
                       {"gateway-bin", "upstream-bin", "out", "requests", "concurrency", "seed",
                        "duration-limit-s", "rss-requests-small", "rss-requests-large", "mix",
                        "time-goal-scale"},
                       {"grpc", "quick", "no-rss"}, arguments, error)) {
    return setup_error(error);
  }
  DemoConfig config;
  if (!arguments.values.contains("gateway-bin") || !arguments.values.contains("upstream-bin") ||
      !arguments.values.contains("out")) {
    return setup_error("demo needs --gateway-bin, --upstream-bin and --out");
  }
  config.gateway_binary = std::filesystem::absolute(arguments.values["gateway-bin"]).string();
  config.upstream_binary = std::filesystem::absolute(arguments.values["upstream-bin"]).string();
  config.out_dir = arguments.values["out"];
  config.quick = arguments.flags.contains("quick");
  config.grpc = arguments.flags.contains("grpc");
  config.skip_rss = arguments.flags.contains("no-rss");
  if (config.quick) apply_quick_defaults(config);
  if (!read_number(arguments, "requests", config.requests, error) ||
      !read_number(arguments, "concurrency", config.concurrency, error) ||
      !read_number(arguments, "seed", config.seed, error) ||
      !read_number(arguments, "rss-requests-small", config.rss_requests_small, error) ||
      !read_number(arguments, "rss-requests-large", config.rss_requests_large, error) ||
      !read_seconds(arguments, "duration-limit-s", config.duration_limit_s, error) ||
      !read_mix(arguments, config.mix, error)) {
    return setup_error(error);
  }
  if (arguments.values.contains("time-goal-scale")) {
    const std::string& text = arguments.values["time-goal-scale"];
    char* end = nullptr;
    config.time_goal_scale = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || *end != '\0' || !(config.time_goal_scale >= 1) ||
        config.time_goal_scale > 100) {
      return setup_error("--time-goal-scale: a number in 1..100, got '" + text + "'");
    }
  }
  if (config.concurrency == 0 || config.concurrency > 1024) {
    return setup_error("--concurrency: 1..1024");
  }
  if (config.rss_requests_large < config.rss_requests_small) {
    return setup_error("--rss-requests-large must not be below --rss-requests-small");
  }
  return run_demo(config);
}

int render_mode(int argc, char** argv) {
  Arguments arguments;
  std::string error;
  if (!parse_arguments(argc, argv, 2, {"in", "out"}, {"synthetic"}, arguments, error)) {
    return setup_error(error);
  }
  if (!arguments.values.contains("out") ||
      arguments.values.contains("in") == arguments.flags.contains("synthetic")) {
    return setup_error("render needs --out and one of --in FILE or --synthetic");
  }
  Report report;
  if (arguments.flags.contains("synthetic")) {
    report = synthetic_report();
  } else {
    std::ifstream in(arguments.values["in"]);
    if (!in) return setup_error(arguments.values["in"] + ": cannot read");
    try {
      report = report_from_json(nlohmann::json::parse(in));
    } catch (const nlohmann::json::exception& failure) {
      return setup_error(arguments.values["in"] + ": " + failure.what());
    }
  }
  std::error_code filesystem_error;
  std::filesystem::create_directories(arguments.values["out"], filesystem_error);
  if (filesystem_error)
    return setup_error(arguments.values["out"] + ": " + filesystem_error.message());
  if (!write_report(report, arguments.values["out"], false, error)) return setup_error(error);
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--help" || mode == "-h" || mode == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (mode == "run") return run_mode(argc, argv);
  if (mode == "demo") return demo_mode(argc, argv);
  if (mode == "render") return render_mode(argc, argv);
  std::cerr << kUsage;
  return 2;
} catch (const std::exception& failure) {
  // Caught so the stack unwinds: every ServerProcess on it stops and reaps its server.
  std::cerr << "ctxpp-load: " << failure.what() << "\n";
  return 2;
}
