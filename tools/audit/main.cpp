// ctxpp-audit — command line. Options are parsed by hand: clang's CommonOptionsParser
// insists on source files and cannot audit a whole database.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>

#include "audit.hpp"
#include "driver.hpp"

#ifndef CTXPP_AUDIT_VERSION
#define CTXPP_AUDIT_VERSION "0"
#endif

namespace {

using namespace ctxpp::audit;

constexpr std::string_view kUsage =
    R"(usage: ctxpp-audit -p BUILD_DIR [options] [files...]

Audits the use of ctxpp contexts in the files of BUILD_DIR/compile_commands.json
(all of them when no file is named).

  -p DIR                 build directory holding compile_commands.json (required)
  -j N, --jobs=N         files audited in parallel (default: number of CPUs)
  --config=FILE          use FILE instead of the nearest .ctxpp-audit.json
  --format=FMT           text (default), json or sarif
  --fail-on=LEVEL        exit 1 on findings at or above note|warning|error
                         (default: warning)
  --inventory            report the inventory: context use per function,
                         resource allocation points, prioritized fix list
  --header-filter=REGEX  report findings in headers matching REGEX only
                         (default: every header outside the system headers)
  --extra-arg=ARG        append ARG to every compile command
  --list-rules           print the rules and exit
  --version, --help

Exit status: 0 clean, 1 findings at or above --fail-on, 2 usage, configuration or
parse errors. Rules and formats: docs/audit/README.md.
)";

int usage_error(const std::string& message) {
  std::cerr << "ctxpp-audit: error: " << message << "\n"
            << "run 'ctxpp-audit --help' for usage\n";
  return 2;
}

// Accepts "--name=value", "--name value" and, for one-letter names, "-nvalue".
bool take_value(int argc, char** argv, int& i, std::string_view name, std::string& value,
                bool& missing) {
  const std::string_view arg = argv[i];
  missing = false;
  if (arg == name) {
    if (i + 1 >= argc) {
      missing = true;
      return true;
    }
    value = argv[++i];
    return true;
  }
  if (arg.starts_with(name) && arg.size() > name.size()) {
    if (arg[name.size()] == '=') {
      value = std::string(arg.substr(name.size() + 1));
      return true;
    }
    if (name.size() == 2) {
      value = std::string(arg.substr(2));
      return true;
    }
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  DriverOptions options;
  options.jobs = std::max(1u, std::thread::hardware_concurrency());
  Format format = Format::text;
  Severity fail_on = Severity::warning;
  bool inventory = false;
  bool have_build_dir = false;

  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    std::string value;
    bool missing = false;
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--version") {
      std::cout << "ctxpp-audit " << CTXPP_AUDIT_VERSION << "\n";
      return 0;
    }
    if (arg == "--list-rules") {
      for (const auto& info : rules()) {
        std::cout << info.id << "  " << info.name << "  (" << severity_name(info.severity) << ")  "
                  << info.brief << "\n";
      }
      return 0;
    }
    if (arg == "--inventory") {
      inventory = true;
      continue;
    }
    if (take_value(argc, argv, i, "-p", value, missing)) {
      if (missing) return usage_error("-p needs a build directory");
      options.build_dir = value;
      have_build_dir = true;
    } else if (take_value(argc, argv, i, "-j", value, missing) ||
               take_value(argc, argv, i, "--jobs", value, missing)) {
      char* end = nullptr;
      const long n = missing ? 0 : std::strtol(value.c_str(), &end, 10);
      if (missing || end == value.c_str() || *end != '\0' || n < 1 || n > 256) {
        return usage_error("-j needs a number of jobs between 1 and 256");
      }
      options.jobs = static_cast<unsigned>(n);
    } else if (take_value(argc, argv, i, "--config", value, missing)) {
      if (missing || value.empty()) return usage_error("--config needs a file");
      options.config_path = value;
    } else if (take_value(argc, argv, i, "--format", value, missing)) {
      if (value == "text") {
        format = Format::text;
      } else if (value == "json") {
        format = Format::json;
      } else if (value == "sarif") {
        format = Format::sarif;
      } else {
        return usage_error("--format must be text, json or sarif");
      }
    } else if (take_value(argc, argv, i, "--fail-on", value, missing)) {
      auto level = parse_severity(value);
      if (!level) return usage_error("--fail-on must be note, warning or error");
      fail_on = *level;
    } else if (take_value(argc, argv, i, "--header-filter", value, missing)) {
      if (missing) return usage_error("--header-filter needs a regular expression");
      options.header_filter = value;
    } else if (take_value(argc, argv, i, "--extra-arg", value, missing)) {
      if (missing) return usage_error("--extra-arg needs an argument");
      options.extra_args.push_back(value);
    } else if (arg.starts_with("-") && arg.size() > 1) {
      return usage_error("unknown option '" + std::string(arg) + "'");
    } else {
      options.files.emplace_back(arg);
    }
  }
  if (!have_build_dir) return usage_error("-p BUILD_DIR is required");
  if (inventory && format == Format::sarif) {
    return usage_error("--inventory is written as text or json, not sarif");
  }

  AuditResult result;
  std::string error;
  if (!run_audit(options, result, error)) {
    std::cerr << "ctxpp-audit: error: " << error << "\n";
    return 2;
  }

  std::string out;
  write_report(result, format, inventory, out);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);

  for (const auto& [file, message] : result.failures) {
    std::cerr << "ctxpp-audit: error: " << file << ": " << message << "\n";
  }
  std::size_t failing = 0;
  std::size_t counts[3] = {0, 0, 0};
  for (const Finding& f : result.findings) {
    ++counts[static_cast<int>(f.severity)];
    if (f.severity >= fail_on) ++failing;
  }
  std::cerr << "ctxpp-audit: " << result.files << " files, " << result.failures.size()
            << " failed, " << result.findings.size() << " findings (" << counts[2] << " errors, "
            << counts[1] << " warnings, " << counts[0] << " notes)\n";
  if (!result.failures.empty()) return 2;
  if (!inventory && failing > 0) return 1;
  return 0;
}
