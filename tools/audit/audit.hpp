// ctxpp-audit — the data shared by the analysis, the driver and the reports.
// Plain values only (no clang types), so that the report and config code compile
// without the clang headers.
#pragma once

#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace ctxpp::audit {

enum class Severity { note = 0, warning = 1, error = 2 };

std::string_view severity_name(Severity s) noexcept;
std::optional<Severity> parse_severity(std::string_view text) noexcept;

enum class Rule {
  unchecked_context,
  broken_chain,
  lost_cancel,
  blocking_call,
  missing_context,
  loop_without_check
};

inline constexpr std::size_t kRuleCount = 6;

struct RuleInfo {
  Rule rule;
  std::string_view id;     // CTX001...
  std::string_view name;   // unchecked-context...
  std::string_view brief;  // one line, for SARIF shortDescription and --list-rules
  Severity severity;       // default severity
};

/// The six rules, in id order. Cost: none (static table).
const std::array<RuleInfo, kRuleCount>& rules() noexcept;
const RuleInfo& rule_info(Rule r) noexcept;
std::optional<Rule> parse_rule_id(std::string_view id) noexcept;

/// What a .ctxpp-audit.json adds to the built-in knowledge. Read-only once loaded, so
/// any number of threads may share one.
struct Config {
  std::string path;                               // empty: built-in defaults only
  std::vector<std::string> context_types;         // qualified names, besides ctxpp::Context
  std::vector<std::string> blocking_functions;    // qualified names (see name_matches)
  std::vector<std::string> cancellable_wrappers;  // like ctxpp::call_blocking
  std::array<std::optional<Severity>, kRuleCount> severity{};  // per-rule override
  std::array<bool, kRuleCount> disabled{};
};

/// Loads and validates a config file. Errors: returns false with `error` set to a
/// message naming the problem (unreadable file, bad JSON with its position, unknown
/// key, wrong type, unknown rule or severity). Thread safety: reentrant.
bool load_config(const std::string& path, Config& out, std::string& error);

/// The nearest .ctxpp-audit.json in the directory of `file` or above; empty if none.
/// Cost: one stat per directory level.
std::string find_config_for(const std::string& file);

/// True when `qualified` (e.g. "std::this_thread::sleep_for") is named by `pattern`:
/// equal, or ending in "::" + pattern; a pattern starting with "::" matches only the
/// global namespace ("::read" matches read() but not Socket::read()).
bool name_matches(std::string_view qualified, std::string_view pattern) noexcept;

struct Location {
  std::string file;  // absolute, normalised
  unsigned line = 0;
  unsigned column = 0;

  friend auto operator<=>(const Location&, const Location&) = default;
};

struct Finding {
  Rule rule{};
  Severity severity = Severity::warning;
  Location where;
  std::string message;
  std::string function;      // qualified name of the enclosing function
  std::string function_key;  // call-graph key of the enclosing function
};

enum class ContextUse { checks, passes_only, ignores };
std::string_view context_use_name(ContextUse u) noexcept;

/// A function that takes a context, for the inventory.
struct FunctionEntry {
  std::string key;
  std::string name;
  Location where;
  ContextUse use = ContextUse::ignores;
};

/// A place that acquires something that must be given back.
struct ResourceEntry {
  std::string kind;  // file, socket, thread, sqlite, postgres, pool, memory, ...
  std::string call;  // what acquires it: fopen, new, std::thread, ...
  Location where;
  std::string function;
  bool scope_bound = false;  // released by a destructor or a guard, not by hand
};

/// What one translation unit yields. Merged by the driver after the parallel run.
struct TuResult {
  std::string file;
  bool failed = false;
  std::string error;  // first compiler error when failed
  std::vector<Finding> findings;
  std::vector<FunctionEntry> functions;
  std::vector<ResourceEntry> resources;
  std::map<std::string, std::string> function_names;         // key -> qualified name
  std::map<std::string, Location> function_locations;        // key -> where defined
  std::set<std::pair<std::string, std::string>> call_edges;  // caller key, callee key
};

/// Everything, merged and deduplicated (a header seen by several translation units
/// counts once), in a deterministic order.
struct AuditResult {
  std::size_t files = 0;
  std::vector<std::pair<std::string, std::string>> failures;  // file, message
  std::vector<Finding> findings;
  std::vector<FunctionEntry> functions;
  std::vector<ResourceEntry> resources;
  std::map<std::string, std::string> function_names;
  std::map<std::string, Location> function_locations;
  std::map<std::string, std::set<std::string>> callers;  // callee key -> caller keys
};

/// Merges per-file results; the order of `parts` does not change the result.
AuditResult merge_results(std::vector<TuResult> parts);

enum class Format { text, json, sarif };

/// Writes findings (or, with inventory, the inventory report) to `out`.
/// Cost: O(findings log findings); reach is a BFS per listed function.
void write_report(const AuditResult& result, Format format, bool inventory, std::string& out);

/// How many transitive callers reach `key` in the merged call graph.
std::size_t reach_of(const AuditResult& result, const std::string& key);

}  // namespace ctxpp::audit
