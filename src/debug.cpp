// Debug mode: the switch, the findings list, the environment variable and the
// report at exit. The detectors themselves sit where the mistakes happen
// (observe.cpp: lost cancel, broken chain, lingering contexts and scopes;
// pool.cpp: lingering leases).
#include "ctxpp/debug.hpp"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <stdexcept>

#include "observe_internal.hpp"

namespace ctxpp {
namespace detail {
namespace {

std::atomic<std::uint32_t> g_debug_flags{0};  // kObserveLeaks | kObserveChains
std::atomic<clock::rep> g_linger_bound{
    std::chrono::duration_cast<clock::duration>(std::chrono::seconds(1)).count()};
std::atomic<clock::rep> g_lost_cancel_min_remaining{
    std::chrono::duration_cast<clock::duration>(std::chrono::seconds(10)).count()};

std::mutex g_findings_mutex;
std::vector<Finding>& findings() {
  static auto* list = new std::vector<Finding>();  // never freed: used at exit
  return *list;
}

std::uint32_t flags_of(DebugMode mode) noexcept {
  std::uint32_t flags = 0;
  if (has(mode, DebugMode::leaks)) flags |= kObserveLeaks;
  if (has(mode, DebugMode::chains)) flags |= kObserveChains;
  return flags;
}

void report_at_exit() {
  const std::vector<Finding> found = debug_findings();
  if (found.empty()) return;
  write_debug_report(std::cerr);
}

// CTXPP_DEBUG is read once, before main, in the first translation unit of the
// library that every program links (context.cpp calls this through its initialiser).
struct EnvironmentSwitch {
  EnvironmentSwitch() {
    const char* spec = std::getenv("CTXPP_DEBUG");
    if (spec == nullptr || *spec == '\0') return;
    // Word by word, so the known words still apply when one is unknown.
    DebugMode mode = DebugMode::none;
    std::string unknown;
    std::string_view rest(spec);
    while (!rest.empty()) {
      const std::size_t end = rest.find_first_of(", ");
      DebugMode one = DebugMode::none;
      std::string word_unknown;
      if (!parse_debug_mode(rest.substr(0, end), one, &word_unknown)) {
        mode = mode | one;
      } else if (unknown.empty()) {
        unknown = std::move(word_unknown);
      }
      if (end == std::string_view::npos) break;
      rest.remove_prefix(end + 1);
    }
    if (!unknown.empty()) {
      std::fprintf(stderr,
                   "ctxpp: CTXPP_DEBUG: unknown word '%s' (known: leaks, chains, all, none); "
                   "the known words are used\n",
                   unknown.c_str());
    }
    if (mode == DebugMode::none) return;
    DebugOptions options;
    options.mode = mode;
    set_debug(options);
    std::atexit(report_at_exit);
  }
};

}  // namespace

void read_debug_environment() {
  static const EnvironmentSwitch once;
  (void)once;
}

std::uint32_t debug_flags() noexcept { return g_debug_flags.load(std::memory_order_relaxed); }

clock::duration linger_bound() noexcept {
  return clock::duration(g_linger_bound.load(std::memory_order_relaxed));
}

clock::duration lost_cancel_min_remaining() noexcept {
  return clock::duration(g_lost_cancel_min_remaining.load(std::memory_order_relaxed));
}

void add_finding(Finding finding) noexcept {
  try {
    if (has_observers()) {
      RecordedEvent recorded;
      recorded.event.kind = EventKind::finding;
      recorded.event.time = clock::now();
      recorded.event.context_id = finding.context_id;
      recorded.event.where = finding.where;
      recorded.event.other_where = finding.other_where;
      recorded.event.delay = finding.age;
      recorded.name = finding.name;
      recorded.component.assign(to_string(finding.kind));
      recorded.detail = finding.message;
      emit_recorded(recorded);
    }
    std::lock_guard lock(g_findings_mutex);
    findings().push_back(std::move(finding));
  } catch (...) {  // out of memory: the finding is lost, the program goes on
  }
}

}  // namespace detail

void set_debug(const DebugOptions& options) {
  if (options.linger_bound < clock::duration::zero()) {
    throw std::invalid_argument("ctxpp::set_debug: linger_bound is negative");
  }
  if (options.lost_cancel_min_remaining < clock::duration::zero()) {
    throw std::invalid_argument("ctxpp::set_debug: lost_cancel_min_remaining is negative");
  }
  detail::g_linger_bound.store(options.linger_bound.count(), std::memory_order_relaxed);
  detail::g_lost_cancel_min_remaining.store(options.lost_cancel_min_remaining.count(),
                                            std::memory_order_relaxed);
  detail::g_debug_flags.store(detail::flags_of(options.mode), std::memory_order_relaxed);
  detail::recompute_observe_flags();
}

DebugOptions debug_options() {
  DebugOptions options;
  const std::uint32_t flags = detail::debug_flags();
  if ((flags & detail::kObserveLeaks) != 0U) options.mode = options.mode | DebugMode::leaks;
  if ((flags & detail::kObserveChains) != 0U) options.mode = options.mode | DebugMode::chains;
  options.linger_bound = detail::linger_bound();
  options.lost_cancel_min_remaining = detail::lost_cancel_min_remaining();
  return options;
}

std::error_code parse_debug_mode(std::string_view spec, DebugMode& mode, std::string* unknown) {
  DebugMode parsed = DebugMode::none;
  while (!spec.empty()) {
    const std::size_t end = spec.find_first_of(", ");
    const std::string_view word = spec.substr(0, end);
    if (word == "leaks") {
      parsed = parsed | DebugMode::leaks;
    } else if (word == "chains") {
      parsed = parsed | DebugMode::chains;
    } else if (word == "all") {
      parsed = parsed | DebugMode::all;
    } else if (word != "none" && !word.empty()) {
      if (unknown != nullptr) unknown->assign(word);
      return std::make_error_code(std::errc::invalid_argument);
    }
    if (end == std::string_view::npos) break;
    spec.remove_prefix(end + 1);
  }
  mode = parsed;
  return {};
}

std::string_view to_string(FindingKind kind) noexcept {
  switch (kind) {
    case FindingKind::lost_cancel:
      return "lost_cancel";
    case FindingKind::lingering_context:
      return "lingering_context";
    case FindingKind::lingering_lease:
      return "lingering_lease";
    case FindingKind::lingering_scope:
      return "lingering_scope";
    case FindingKind::broken_chain:
      return "broken_chain";
  }
  return "unknown";
}

std::vector<Finding> debug_findings() {
  if ((detail::debug_flags() & detail::kObserveLeaks) != 0U) {
    const clock::time_point now = clock::now();
    detail::sweep_lingering_contexts(now);
    detail::sweep_lingering_scopes(now);
  }
  std::lock_guard lock(detail::g_findings_mutex);
  return detail::findings();
}

std::vector<Finding> take_debug_findings() {
  std::vector<Finding> taken = debug_findings();
  std::lock_guard lock(detail::g_findings_mutex);
  // Findings added between the copy and now stay for the next call.
  auto& list = detail::findings();
  list.erase(list.begin(),
             list.begin() + static_cast<std::ptrdiff_t>(std::min(taken.size(), list.size())));
  return taken;
}

void write_debug_report(std::ostream& out) {
  const std::vector<Finding> found = debug_findings();
  out << "ctxpp debug report: " << found.size() << (found.size() == 1 ? " finding" : " findings")
      << '\n';
  for (const Finding& finding : found) {
    out << "  [" << to_string(finding.kind) << "] " << finding.message << '\n';
  }
  out.flush();
}

void report_finding(Finding finding) { detail::add_finding(std::move(finding)); }

}  // namespace ctxpp
