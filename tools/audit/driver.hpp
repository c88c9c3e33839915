// ctxpp-audit — running the analysis over a compilation database, in parallel.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "audit.hpp"

namespace ctxpp::audit {

struct DriverOptions {
  std::string build_dir;                     // holds compile_commands.json
  std::vector<std::string> files;            // empty: every file of the database
  unsigned jobs = 1;                         // worker threads, each parsing whole files
  std::string config_path;                   // empty: .ctxpp-audit.json found upward
  std::vector<std::string> extra_args;       // appended to every compile command
  std::optional<std::string> header_filter;  // regex; unset: every non-system header
};

/// Parses and analyses every requested file, `jobs` files at a time, and merges the
/// results. A file that fails to parse (or has no compile command) is listed in
/// AuditResult::failures and the others are still analysed.
/// Errors: returns false with `error` set when nothing can be audited at all (no
/// compilation database, a bad config file, a bad header filter).
/// Blocking: returns when every file is done. Thread safety: one call at a time.
bool run_audit(const DriverOptions& options, AuditResult& result, std::string& error);

}  // namespace ctxpp::audit
