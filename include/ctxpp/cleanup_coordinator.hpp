// ctxpp/cleanup_coordinator.hpp — release a request's resources in the right order
// without letting one slow close hold up the rest.
// Resources register with a priority and up to two ways to release them: one that
// never blocks (and may say "not now") and one that may block but honours a
// context. When the owning context ends, a coordinator thread (never the
// cancelling thread) releases critical resources first and every non-blocking
// release before any blocking one; each blocking release runs on its own thread of
// a background cleaner with a deadline, so a hanging close delays nobody. The
// outcome of every release — released, failed (exception kept), timed out — lands
// in a report.
// Example:
//   ctxpp::CleanupCoordinator cleanup(ctx);
//   cleanup.add({.name = "db", .priority = ctxpp::Priority::critical,
//                .try_release = [&] { return conn.try_close(); },
//                .release = [&](const ctxpp::Context& c) { conn.close(c); }});
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"

namespace ctxpp {

/// Release order: all critical resources first, background ones last.
enum class Priority { critical = 0, normal = 1, background = 2 };

/// One resource and how to release it. At least one of the two functions must be
/// set. Both are called at most once in total for a successful release: if
/// try_release returns true, release is not called.
struct Resource {
  /// For the report; any text.
  std::string name;
  Priority priority = Priority::normal;
  /// Never blocks. true: released. false: "not now" (then release runs in the
  /// background). Throwing counts as a failed release (release is not tried).
  std::function<bool()> try_release;
  /// May block, but should return soon after its context ends (that context has the
  /// cleaner's deadline and keeps the owner's values). Throwing counts as failed.
  std::function<void(const Context&)> release;
};

/// How one release ended.
enum class ReleaseOutcome {
  released,   ///< try_release said yes, or release returned before the deadline
  late,       ///< release returned, but after the cleaner's deadline
  timed_out,  ///< release had not returned at the deadline; still running alone
  failed,     ///< a release function threw; see CleanupRecord::error
  removed,    ///< unregistered with remove() before cleanup began (not in reports)
};

/// One line of a CleanupReport.
struct CleanupRecord {
  std::string name;
  Priority priority = Priority::normal;
  ReleaseOutcome outcome = ReleaseOutcome::released;
  bool blocking = false;         ///< released by the background cleaner
  clock::time_point finished{};  ///< when it ended (the deadline for timed_out)
  clock::duration took{};        ///< time spent in the release function(s)
  std::exception_ptr error;      ///< for failed: the exception thrown
  std::string error_message;     ///< for failed: its what(), or "unknown exception"
};

/// What happened to every resource when a coordinator cleaned up.
struct CleanupReport {
  clock::time_point started{};           ///< when the coordinator saw the context end
  clock::time_point nonblocking_done{};  ///< when every non-blocking release was done
  clock::time_point finished{};          ///< when the last record settled
  std::vector<CleanupRecord> records;    ///< in the order releases were attempted
  std::size_t count(ReleaseOutcome outcome) const noexcept;
  /// True when every record is released or late.
  bool clean() const noexcept;
};

/// Options of a CleanupCoordinator.
struct CleanupOptions {
  /// Deadline of every blocking release, from the moment cleanup began.
  clock::duration background_timeout = std::chrono::seconds(5);
  /// Runs blocking releases; nullptr means the shared background cleaner, a pool
  /// of at most 256 threads (one per hanging release, so none waits for another).
  Executor* background = nullptr;
  /// Called once with the final report, on the thread that finalised it. Must not
  /// throw.
  std::function<void(const CleanupReport&)> on_report;
};

/// Releases registered resources once its context ends (or it is destroyed).
/// Thread safety: every member from any thread. add() after cleanup began releases
/// the resource at once, by the same rules, and appends to the report.
/// Blocking: add/remove never block on releases. wait() and the destructor block
/// until the report is final (at most background_timeout after cleanup began, plus
/// the time non-blocking releases take).
/// Ordering: the cancelling thread is never delayed: cleanup runs on ctxpp's
/// callback executor, started by an after_func on the context.
/// Ownership: release functions run on other threads: what they capture must outlive
/// them; a timed-out release keeps running after the coordinator is gone and owns
/// only what its std::function holds.
class CleanupCoordinator {
 public:
  /// Errors: std::bad_alloc.
  explicit CleanupCoordinator(const Context& ctx, CleanupOptions options = {});
  CleanupCoordinator(const CleanupCoordinator&) = delete;
  CleanupCoordinator& operator=(const CleanupCoordinator&) = delete;
  /// Starts cleanup if the context has not ended, then waits for the final report.
  ~CleanupCoordinator();

  using Id = std::uint64_t;

  /// Registers resource; returns an id for remove().
  /// Errors: std::invalid_argument if neither function is set; std::bad_alloc.
  Id add(Resource resource);

  /// Unregisters a resource released by its owner in the normal way. True if it was
  /// still registered and cleanup had not started on it (it will never be released
  /// by the coordinator); false otherwise.
  bool remove(Id id) noexcept;

  /// Starts cleanup now, as if the context had ended. Later calls do nothing.
  void cleanup_now() noexcept;

  /// Blocks until cleanup has begun and the report is final; returns it.
  CleanupReport wait() const;

  /// Like wait(), bounded by d; nullopt if the report was not final by then.
  std::optional<CleanupReport> wait_for(clock::duration d) const;

  /// Resources registered and not yet released or removed.
  std::size_t pending() const noexcept;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace ctxpp
