// ctxpp-audit — merging per-file results, and the text, JSON and SARIF reports.
#include <llvm/Support/FormatVariadic.h>
#include <llvm/Support/JSON.h>
#include <llvm/Support/raw_ostream.h>

#include <algorithm>
#include <deque>
#include <tuple>

#include "audit.hpp"

#ifndef CTXPP_AUDIT_VERSION
#define CTXPP_AUDIT_VERSION "0"
#endif
#ifndef CTXPP_AUDIT_HELP_BASE
#define CTXPP_AUDIT_HELP_BASE "docs/audit/"
#endif

namespace ctxpp::audit {

namespace {

auto finding_key(const Finding& f) { return std::tie(f.where, f.rule); }

int weight(Severity s) {
  switch (s) {
    case Severity::note:
      return 1;
    case Severity::warning:
      return 3;
    case Severity::error:
      return 9;
  }
  return 1;
}

std::string percent(std::size_t part, std::size_t whole) {
  if (whole == 0) return "0.0";
  return llvm::formatv("{0:f1}", 100.0 * static_cast<double>(part) / static_cast<double>(whole))
      .str();
}

std::string file_uri(const std::string& path) {
  std::string uri = "file://";
  for (const char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
      uri += c;
    } else {
      uri += llvm::formatv("%{0:X2}", static_cast<unsigned>(u)).str();
    }
  }
  return uri;
}

std::string help_uri(std::string_view id) {
  return std::string(CTXPP_AUDIT_HELP_BASE) + std::string(id) + ".md";
}

struct FixItem {
  std::string key;
  std::string name;
  Location where;
  std::set<std::string> rules;
  std::size_t findings = 0;
  Severity worst = Severity::note;
  int severity_sum = 0;
  std::size_t reach = 0;
  long score = 0;
};

std::vector<FixItem> fix_list(const AuditResult& r) {
  std::map<std::string, FixItem> items;
  for (const Finding& f : r.findings) {
    FixItem& item = items[f.function_key];
    item.key = f.function_key;
    item.name = f.function;
    if (auto it = r.function_locations.find(f.function_key); it != r.function_locations.end()) {
      item.where = it->second;
    } else {
      item.where = f.where;
    }
    item.rules.emplace(rule_info(f.rule).id);
    ++item.findings;
    item.worst = std::max(item.worst, f.severity);
    item.severity_sum += weight(f.severity);
  }
  std::vector<FixItem> list;
  for (auto& [key, item] : items) {
    item.reach = reach_of(r, key);
    item.score = static_cast<long>(item.severity_sum) * static_cast<long>(1 + item.reach);
    list.push_back(std::move(item));
  }
  std::sort(list.begin(), list.end(), [](const FixItem& a, const FixItem& b) {
    return std::tie(b.score, b.worst, b.reach, a.where, a.name) <
           std::tie(a.score, a.worst, a.reach, b.where, b.name);
  });
  return list;
}

std::array<std::size_t, 3> use_counts(const AuditResult& r) {
  std::array<std::size_t, 3> n{};
  for (const FunctionEntry& f : r.functions) ++n[static_cast<std::size_t>(f.use)];
  return n;
}

llvm::json::Object location_json(const Location& l) {
  return llvm::json::Object{{"file", l.file}, {"line", l.line}, {"column", l.column}};
}

llvm::json::Value inventory_json(const AuditResult& r) {
  llvm::json::Array functions;
  for (const FunctionEntry& f : r.functions) {
    llvm::json::Object o = location_json(f.where);
    o["name"] = f.name;
    o["use"] = std::string(context_use_name(f.use));
    functions.push_back(std::move(o));
  }
  const auto n = use_counts(r);
  const std::size_t total = r.functions.size();
  llvm::json::Object totals{
      {"functions", total},
      {"checks", n[0]},
      {"passes-only", n[1]},
      {"ignores", n[2]},
      {"checks_percent", std::stod(percent(n[0], total))},
      {"passes_only_percent", std::stod(percent(n[1], total))},
      {"ignores_percent", std::stod(percent(n[2], total))},
  };
  llvm::json::Array resources;
  std::size_t bound = 0;
  for (const ResourceEntry& e : r.resources) {
    llvm::json::Object o = location_json(e.where);
    o["kind"] = e.kind;
    o["call"] = e.call;
    o["function"] = e.function;
    o["release"] = e.scope_bound ? "scope-bound" : "manual";
    bound += e.scope_bound ? 1 : 0;
    resources.push_back(std::move(o));
  }
  llvm::json::Array fixes;
  std::size_t rank = 0;
  for (const FixItem& item : fix_list(r)) {
    llvm::json::Object o = location_json(item.where);
    o["rank"] = ++rank;
    o["function"] = item.name;
    o["severity"] = std::string(severity_name(item.worst));
    o["findings"] = item.findings;
    o["reach"] = item.reach;
    o["score"] = item.score;
    llvm::json::Array rules;
    for (const auto& id : item.rules) rules.push_back(id);
    o["rules"] = std::move(rules);
    fixes.push_back(std::move(o));
  }
  return llvm::json::Object{
      {"functions", std::move(functions)},
      {"totals", std::move(totals)},
      {"resources", std::move(resources)},
      {"resource_totals", llvm::json::Object{{"total", r.resources.size()},
                                             {"scope-bound", bound},
                                             {"manual", r.resources.size() - bound}}},
      {"fix_list", std::move(fixes)},
  };
}

void write_json(const AuditResult& r, bool inventory, llvm::raw_ostream& os) {
  llvm::json::Array findings;
  std::map<std::string, std::size_t> by_rule;
  for (const auto& info : rules()) by_rule[std::string(info.id)] = 0;
  for (const Finding& f : r.findings) {
    const RuleInfo& info = rule_info(f.rule);
    llvm::json::Object o = location_json(f.where);
    o["rule"] = std::string(info.id);
    o["name"] = std::string(info.name);
    o["severity"] = std::string(severity_name(f.severity));
    o["message"] = f.message;
    o["function"] = f.function;
    findings.push_back(std::move(o));
    ++by_rule[std::string(info.id)];
  }
  llvm::json::Array errors;
  for (const auto& [file, message] : r.failures) {
    errors.push_back(llvm::json::Object{{"file", file}, {"message", message}});
  }
  llvm::json::Object counts;
  for (const auto& [id, count] : by_rule) counts[id] = count;
  llvm::json::Object root{
      {"tool", "ctxpp-audit"},
      {"version", CTXPP_AUDIT_VERSION},
      {"findings", std::move(findings)},
      {"errors", std::move(errors)},
      {"summary", llvm::json::Object{{"files", r.files},
                                     {"failed", r.failures.size()},
                                     {"findings", r.findings.size()},
                                     {"by_rule", std::move(counts)}}},
  };
  if (inventory) root["inventory"] = inventory_json(r);
  os << llvm::formatv("{0:2}", llvm::json::Value(std::move(root))) << "\n";
}

void write_sarif(const AuditResult& r, llvm::raw_ostream& os) {
  llvm::json::Array rule_list;
  for (const auto& info : rules()) {
    rule_list.push_back(llvm::json::Object{
        {"id", std::string(info.id)},
        {"name", std::string(info.name)},
        {"shortDescription", llvm::json::Object{{"text", std::string(info.brief)}}},
        {"helpUri", help_uri(info.id)},
        {"defaultConfiguration",
         llvm::json::Object{{"level", std::string(severity_name(info.severity))}}},
    });
  }
  llvm::json::Array results;
  for (const Finding& f : r.findings) {
    results.push_back(llvm::json::Object{
        {"ruleId", std::string(rule_info(f.rule).id)},
        {"ruleIndex", static_cast<int>(f.rule)},
        {"level", std::string(severity_name(f.severity))},
        {"message", llvm::json::Object{{"text", f.message}}},
        {"locations",
         llvm::json::Array{llvm::json::Object{
             {"physicalLocation",
              llvm::json::Object{
                  {"artifactLocation", llvm::json::Object{{"uri", file_uri(f.where.file)}}},
                  {"region", llvm::json::Object{{"startLine", f.where.line},
                                                {"startColumn", f.where.column}}}}}}}},
    });
  }
  llvm::json::Array notifications;
  for (const auto& [file, message] : r.failures) {
    notifications.push_back(llvm::json::Object{
        {"level", "error"},
        {"message", llvm::json::Object{{"text", file + ": " + message}}},
    });
  }
  llvm::json::Object run{
      {"tool", llvm::json::Object{{"driver",
                                   llvm::json::Object{
                                       {"name", "ctxpp-audit"},
                                       {"version", CTXPP_AUDIT_VERSION},
                                       {"rules", std::move(rule_list)},
                                   }}}},
      {"results", std::move(results)},
      {"invocations", llvm::json::Array{llvm::json::Object{
                          {"executionSuccessful", r.failures.empty()},
                          {"toolExecutionNotifications", std::move(notifications)},
                      }}},
  };
  llvm::json::Object root{
      {"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
      {"version", "2.1.0"},
      {"runs", llvm::json::Array{std::move(run)}},
  };
  os << llvm::formatv("{0:2}", llvm::json::Value(std::move(root))) << "\n";
}

std::string where_text(const Location& l) {
  return l.file + ":" + std::to_string(l.line) + ":" + std::to_string(l.column);
}

void write_text(const AuditResult& r, llvm::raw_ostream& os) {
  for (const Finding& f : r.findings) {
    os << where_text(f.where) << ": " << severity_name(f.severity) << ": " << f.message << " ["
       << rule_info(f.rule).id << "]\n";
  }
}

void write_inventory_text(const AuditResult& r, llvm::raw_ostream& os) {
  const auto n = use_counts(r);
  const std::size_t total = r.functions.size();
  os << "== Functions taking a context: " << total << "\n";
  os << llvm::formatv("  checks       {0,5}  {1,5}%\n", n[0], percent(n[0], total));
  os << llvm::formatv("  passes-only  {0,5}  {1,5}%\n", n[1], percent(n[1], total));
  os << llvm::formatv("  ignores      {0,5}  {1,5}%\n", n[2], percent(n[2], total));
  for (const FunctionEntry& f : r.functions) {
    os << where_text(f.where) << ": " << context_use_name(f.use) << ": " << f.name << "\n";
  }
  std::size_t bound = 0;
  for (const ResourceEntry& e : r.resources) bound += e.scope_bound ? 1 : 0;
  os << "\n== Resource allocation points: " << r.resources.size() << " (" << bound
     << " scope-bound, " << r.resources.size() - bound << " manual)\n";
  for (const ResourceEntry& e : r.resources) {
    os << where_text(e.where) << ": " << (e.scope_bound ? "scope-bound" : "manual") << ": "
       << e.kind << " from " << e.call << " in " << e.function << "\n";
  }
  const auto fixes = fix_list(r);
  os << "\n== Fix list: " << fixes.size()
     << " functions, by score = severity weight (note 1, warning 3, error 9) x (1 + reach)\n";
  std::size_t rank = 0;
  for (const FixItem& item : fixes) {
    std::string ids;
    for (const auto& id : item.rules) ids += (ids.empty() ? "" : ",") + id;
    os << llvm::formatv("{0,3}. score {1,4}  reach {2,3}  {3,-7}  {4}  {5}  ({6})\n", ++rank,
                        item.score, item.reach, severity_name(item.worst), item.name,
                        where_text(item.where), ids);
  }
}

}  // namespace

AuditResult merge_results(std::vector<TuResult> parts) {
  std::sort(parts.begin(), parts.end(),
            [](const TuResult& a, const TuResult& b) { return a.file < b.file; });
  AuditResult r;
  r.files = parts.size();
  std::map<std::string, FunctionEntry> functions;
  std::map<std::tuple<Location, std::string>, ResourceEntry> resources;
  for (TuResult& part : parts) {
    if (part.failed) {
      r.failures.emplace_back(part.file, part.error);
      continue;
    }
    for (Finding& f : part.findings) r.findings.push_back(std::move(f));
    for (FunctionEntry& f : part.functions) functions.emplace(f.key, std::move(f));
    for (ResourceEntry& e : part.resources) {
      resources.emplace(std::make_tuple(e.where, e.call), std::move(e));
    }
    r.function_names.merge(part.function_names);
    r.function_locations.merge(part.function_locations);
    for (const auto& [caller, callee] : part.call_edges) {
      if (caller != callee) r.callers[callee].insert(caller);
    }
  }
  std::sort(r.findings.begin(), r.findings.end(),
            [](const Finding& a, const Finding& b) { return finding_key(a) < finding_key(b); });
  r.findings.erase(std::unique(r.findings.begin(), r.findings.end(),
                               [](const Finding& a, const Finding& b) {
                                 return finding_key(a) == finding_key(b);
                               }),
                   r.findings.end());
  for (auto& [key, f] : functions) r.functions.push_back(std::move(f));
  std::sort(r.functions.begin(), r.functions.end(),
            [](const FunctionEntry& a, const FunctionEntry& b) {
              return std::tie(a.where, a.name) < std::tie(b.where, b.name);
            });
  for (auto& [key, e] : resources) r.resources.push_back(std::move(e));
  return r;
}

std::size_t reach_of(const AuditResult& result, const std::string& key) {
  std::set<std::string> seen{key};
  std::deque<std::string> queue{key};
  while (!queue.empty()) {
    const std::string current = std::move(queue.front());
    queue.pop_front();
    auto it = result.callers.find(current);
    if (it == result.callers.end()) continue;
    for (const std::string& caller : it->second) {
      if (seen.insert(caller).second) queue.push_back(caller);
    }
  }
  return seen.size() - 1;
}

void write_report(const AuditResult& result, Format format, bool inventory, std::string& out) {
  llvm::raw_string_ostream os(out);
  switch (format) {
    case Format::json:
      write_json(result, inventory, os);
      break;
    case Format::sarif:
      write_sarif(result, os);
      break;
    case Format::text:
      if (inventory) {
        write_inventory_text(result, os);
      } else {
        write_text(result, os);
      }
      break;
  }
  os.flush();
}

}  // namespace ctxpp::audit
