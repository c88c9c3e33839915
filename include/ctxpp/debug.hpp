// ctxpp/debug.hpp — run-time detection of cancellation mistakes.
// Switched on by API (set_debug) or by the environment when the program starts:
//   CTXPP_DEBUG=leaks,chains      (also: all, none; unknown words are reported on
//                                  stderr and ignored)
// leaks:  lost cancel — every cancel handle of a context destroyed while it is live,
//         with no deadline or one far away (the run-time twin of Go's vet lostcancel);
//         lingering — contexts, pool leases and component scopes still alive longer
//         than a bound after their context ended.
// chains: broken chain — background(), todo(), or a context created from a
//         default-constructed one, while the thread has a current() context
//         (ctxpp/current.hpp): cancellation is cut off there.
// Findings are kept until taken, emitted as `finding` events to observers, and,
// when switched on by the environment, printed to stderr at exit.
// Cost: off, nothing beyond one relaxed load per context created or cancelled. On,
// every context created gets a record (as when observing, ctxpp/observe.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/source_location.hpp"

namespace ctxpp {

/// Detector groups (bit set).
enum class DebugMode : unsigned { none = 0, leaks = 1, chains = 2, all = 3 };
constexpr DebugMode operator|(DebugMode a, DebugMode b) noexcept {
  return static_cast<DebugMode>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr bool has(DebugMode set, DebugMode mode) noexcept {
  return (static_cast<unsigned>(set) & static_cast<unsigned>(mode)) != 0U;
}

struct DebugOptions {
  DebugMode mode = DebugMode::none;
  /// Lost cancel is reported only for contexts without a deadline or with one at
  /// least this far from the moment the last cancel handle went.
  clock::duration lost_cancel_min_remaining = std::chrono::seconds(10);
  /// Lingering: alive this long after the context ended.
  clock::duration linger_bound = std::chrono::seconds(1);
};

/// Switches the detectors. Contexts created before keep the mode they were created
/// under (lost cancel needs counting from creation on).
/// Thread safety: any thread. Errors: std::invalid_argument for a negative duration.
void set_debug(const DebugOptions& options);
DebugOptions debug_options();

/// Parses "leaks,chains" / "all" / "none" / "" (commas or spaces between words).
/// Errors: std::errc::invalid_argument for an unknown word (message names it in
/// *unknown if given); the mode is then left unchanged.
std::error_code parse_debug_mode(std::string_view spec, DebugMode& mode,
                                 std::string* unknown = nullptr);

enum class FindingKind : std::uint8_t {
  lost_cancel,
  lingering_context,
  lingering_lease,
  lingering_scope,
  broken_chain,
};
/// "lost_cancel", "lingering_context", ...
std::string_view to_string(FindingKind kind) noexcept;

/// One mistake found while the program ran.
struct Finding {
  FindingKind kind = FindingKind::lost_cancel;
  std::string message;         ///< one line, with the sites
  SourceLocation where;        ///< the context's creation site, the background() call, ...
  SourceLocation other_where;  ///< broken chain: where the current context's scope opened
  std::uint64_t context_id = 0;
  std::string name;       ///< context, pool or component name, if any
  clock::duration age{};  ///< lingering: time since the context ended
};

/// Findings so far (the lingering sweep runs first), without taking them.
/// Thread safety: any thread. Cost: O(tracked contexts and scopes).
std::vector<Finding> debug_findings();
/// The same, and forgets them.
std::vector<Finding> take_debug_findings();
/// Writes "ctxpp debug report: N findings" and one line per finding.
void write_debug_report(std::ostream& out);

/// Records a finding from outside the core (pools, adapters): kept, and emitted.
/// Thread safety: any thread. Errors: std::bad_alloc.
void report_finding(Finding finding);

}  // namespace ctxpp
