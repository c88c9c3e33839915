// ctxpp-audit — rule table and configuration files.
#include "audit.hpp"

#include <llvm/Support/Error.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/JSON.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/Path.h>

namespace ctxpp::audit {

namespace {

constexpr std::array<RuleInfo, kRuleCount> kRules{{
    {Rule::unchecked_context, "CTX001", "unchecked-context",
     "A function takes a context but never reads it, passes it on or captures it.",
     Severity::warning},
    {Rule::broken_chain, "CTX002", "broken-chain",
     "background() or todo() is called where a context is in scope: cancellation is cut off.",
     Severity::warning},
    {Rule::lost_cancel, "CTX003", "lost-cancel",
     "The cancel function of a with_* context is discarded or never used.", Severity::warning},
    {Rule::blocking_call, "CTX004", "blocking-call",
     "A blocking call that cannot see the context, in a function that has one.", Severity::warning},
    {Rule::missing_context, "CTX005", "missing-context",
     "An externally visible function blocks, or starts from a fresh root, without taking a "
     "context.",
     Severity::note},
    {Rule::loop_without_check, "CTX006", "loop-without-check",
     "An unbounded or blocking loop, in a function that has a context, never checks it.",
     Severity::warning},
}};

}  // namespace

std::string_view severity_name(Severity s) noexcept {
  switch (s) {
    case Severity::note:
      return "note";
    case Severity::warning:
      return "warning";
    case Severity::error:
      return "error";
  }
  return "warning";
}

std::optional<Severity> parse_severity(std::string_view text) noexcept {
  if (text == "note") return Severity::note;
  if (text == "warning") return Severity::warning;
  if (text == "error") return Severity::error;
  return std::nullopt;
}

std::string_view context_use_name(ContextUse u) noexcept {
  switch (u) {
    case ContextUse::checks:
      return "checks";
    case ContextUse::passes_only:
      return "passes-only";
    case ContextUse::ignores:
      return "ignores";
  }
  return "ignores";
}

const std::array<RuleInfo, kRuleCount>& rules() noexcept { return kRules; }

const RuleInfo& rule_info(Rule r) noexcept { return kRules[static_cast<std::size_t>(r)]; }

std::optional<Rule> parse_rule_id(std::string_view id) noexcept {
  for (const auto& info : kRules) {
    if (info.id == id || info.name == id) return info.rule;
  }
  return std::nullopt;
}

bool name_matches(std::string_view qualified, std::string_view pattern) noexcept {
  if (pattern.starts_with("::")) return qualified == pattern.substr(2);
  if (qualified == pattern) return true;
  return qualified.size() > pattern.size() + 2 && qualified.ends_with(pattern) &&
         qualified.substr(qualified.size() - pattern.size() - 2, 2) == "::";
}

std::string find_config_for(const std::string& file) {
  llvm::SmallString<256> dir(file);
  llvm::sys::fs::make_absolute(dir);
  llvm::sys::path::remove_filename(dir);
  while (!dir.empty()) {
    llvm::SmallString<256> candidate(dir);
    llvm::sys::path::append(candidate, ".ctxpp-audit.json");
    if (llvm::sys::fs::is_regular_file(candidate)) return std::string(candidate);
    const std::string parent(llvm::sys::path::parent_path(dir));
    if (parent == dir.str()) break;
    dir = parent;
  }
  return {};
}

namespace {

bool read_string_list(const llvm::json::Value& value, const std::string& key,
                      std::vector<std::string>& out, std::string& error) {
  const auto* array = value.getAsArray();
  if (array == nullptr) {
    error = "\"" + key + "\" must be an array of strings";
    return false;
  }
  for (const auto& item : *array) {
    auto text = item.getAsString();
    if (!text || text->empty()) {
      error = "\"" + key + "\" must hold non-empty strings";
      return false;
    }
    out.emplace_back(*text);
  }
  return true;
}

}  // namespace

bool load_config(const std::string& path, Config& out, std::string& error) {
  out = Config{};
  out.path = path;
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer) {
    error = path + ": cannot read: " + buffer.getError().message();
    return false;
  }
  auto parsed = llvm::json::parse((*buffer)->getBuffer());
  if (!parsed) {
    error = path + ": invalid JSON: " + llvm::toString(parsed.takeError());
    return false;
  }
  const auto* root = parsed->getAsObject();
  if (root == nullptr) {
    error = path + ": the top level must be an object";
    return false;
  }
  std::string problem;
  for (const auto& [key_ref, value] : *root) {
    const std::string key = key_ref.str();
    if (key == "context_types") {
      if (!read_string_list(value, key, out.context_types, problem)) break;
    } else if (key == "blocking_functions") {
      if (!read_string_list(value, key, out.blocking_functions, problem)) break;
    } else if (key == "cancellable_wrappers") {
      if (!read_string_list(value, key, out.cancellable_wrappers, problem)) break;
    } else if (key == "disable") {
      std::vector<std::string> ids;
      if (!read_string_list(value, key, ids, problem)) break;
      for (const auto& id : ids) {
        auto rule = parse_rule_id(id);
        if (!rule) {
          problem = "\"disable\": unknown rule \"" + id + "\" (CTX001...CTX006)";
          break;
        }
        out.disabled[static_cast<std::size_t>(*rule)] = true;
      }
      if (!problem.empty()) break;
    } else if (key == "severity") {
      const auto* map = value.getAsObject();
      if (map == nullptr) {
        problem = "\"severity\" must be an object such as {\"CTX005\": \"warning\"}";
        break;
      }
      for (const auto& [id_ref, level] : *map) {
        auto rule = parse_rule_id(id_ref.str());
        if (!rule) {
          problem = "\"severity\": unknown rule \"" + id_ref.str() + "\" (CTX001...CTX006)";
          break;
        }
        auto text = level.getAsString();
        auto severity = text ? parse_severity(*text) : std::nullopt;
        if (!severity) {
          problem = "\"severity\": \"" + id_ref.str() + "\" must be \"note\", \"warning\" or " +
                    "\"error\"";
          break;
        }
        out.severity[static_cast<std::size_t>(*rule)] = severity;
      }
      if (!problem.empty()) break;
    } else if (key.starts_with("//") || key == "$schema") {
      // Comments and a schema reference are allowed.
    } else {
      problem = "unknown key \"" + key +
                "\" (known: context_types, blocking_functions, cancellable_wrappers, severity, "
                "disable)";
      break;
    }
  }
  if (!problem.empty()) {
    error = path + ": " + problem;
    return false;
  }
  return true;
}

}  // namespace ctxpp::audit
