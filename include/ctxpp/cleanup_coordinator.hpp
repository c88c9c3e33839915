// ctxpp/cleanup_coordinator.hpp — release a request's resources in the right order
// without letting one slow close hold up the rest.
// Resources register with a priority and up to two ways to release them: one that
// never blocks (and may say "not now") and one that may block but honours a
// context. When the owning context ends, a thread of ctxpp's callback executor
// (never the cancelling thread) calls every try_release, critical first, then
// hands each remaining release, critical first, to a background cleaner as a task
// of its own with a deadline, so a hanging close delays nobody. The outcome of
// every release — released, late, failed (exception kept), timed out — lands in a
// report, delivered once, at the latest at the deadline.
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
/// set. Each is called at most once; release only if try_release is unset or said
/// "not now". Both run on threads of the coordinator's choosing (see
/// CleanupCoordinator), never with a lock of the coordinator held, and are
/// destroyed once they have run (or once the resource is removed).
struct Resource {
  /// For the report; any text.
  std::string name{};
  Priority priority = Priority::normal;
  /// Never blocks. true: released. false: "not now" (then release runs in the
  /// background; with no release set, the record is failed with the message
  /// "try_release declined and no release function is set" and no exception).
  /// Throwing counts as a failed release (release is not tried).
  std::function<bool()> try_release{};
  /// May block, but should return soon after its context ends. That context keeps
  /// the owner's values, is not ended by the owner's end, and ends at the cleaner's
  /// deadline with errc::deadline_exceeded and cause failure::budget_exceeded (it
  /// may also end with errc::canceled once the report is final and every release has
  /// returned: nobody uses it then). Throwing counts as failed.
  std::function<void(const Context&)> release{};
};

/// How one release ended.
enum class ReleaseOutcome {
  released,   ///< try_release said yes, or release returned by the deadline
  late,       ///< release returned after the deadline, before the report was final
  timed_out,  ///< release had not returned when the report became final (at or
              ///< just after the deadline); it is still running (or queued) alone
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
  clock::duration took{};        ///< time spent in the release function(s); for
                                 ///< timed_out, counted up to the deadline
  std::exception_ptr error;      ///< for failed: the exception thrown
  std::string error_message;     ///< for failed: its what(), or "unknown exception"
                                 ///< (or why nothing was thrown, see Resource)
};

/// What happened to every resource when a coordinator cleaned up.
/// Thread safety: a plain value; wait() and on_report hand out a final report,
/// which never changes afterwards.
struct CleanupReport {
  clock::time_point started{};  ///< when cleanup began (the context was seen ended)
  /// When the try_release of every resource registered at the start had returned
  /// (before any blocking release was dispatched).
  clock::time_point nonblocking_done{};
  /// When the last record settled (a timed_out one settles at the deadline); never
  /// before nonblocking_done.
  clock::time_point finished{};
  /// The resources registered when cleanup began, in release order (critical,
  /// normal, background; registration order within a class), then those added
  /// during cleanup, in the order add() took them.
  std::vector<CleanupRecord> records;
  /// Records with that outcome. Cost: O(records).
  std::size_t count(ReleaseOutcome outcome) const noexcept;
  /// True when every record is released or late. Cost: O(records).
  bool clean() const noexcept;
};

/// Options of a CleanupCoordinator.
struct CleanupOptions {
  /// Deadline of every blocking release, from the moment cleanup began. Negative
  /// counts as zero; a huge value saturates (a deadline that never fires).
  clock::duration background_timeout = std::chrono::seconds(5);
  /// Runs blocking releases, one task each; nullptr means the shared background
  /// cleaner, a process-wide pool of at most 256 threads that is never destroyed
  /// (one thread per blocking release, so none waits for another; beyond 256
  /// running at once, the rest queue in FIFO order). A pool passed here must
  /// outlive every release it was given, timed-out ones included.
  Executor* background = nullptr;
  /// Called once with the final report, on the thread that finalised it (a
  /// callback-executor thread, a background thread whose release returned last, or
  /// a thread in wait() or the destructor that reached the deadline). Runs before
  /// wait() returns to anyone else; may call wait() (returns the report at once)
  /// and may destroy the coordinator. Must not throw (std::terminate).
  std::function<void(const CleanupReport&)> on_report{};
};

/// Releases registered resources once its context ends (or it is destroyed).
///
/// Order: when cleanup begins, every try_release runs (critical, then normal, then
/// background; registration order within a class) on one thread, and only then is
/// each remaining release dispatched, critical first, as its own task of the
/// background executor (handed out from one task there, so that starting threads
/// for them never holds up ctxpp's callback executor). So every try_release has
/// returned before any blocking release starts, and a critical blocking release
/// waits for the other classes' try_release calls (which never block) but for no
/// blocking release.
///
/// When the report is final: cleanup has begun, the try_release calls of the
/// resources registered then are over and their blocking releases handed to the
/// background executor, no add() is between its try_release and its dispatch, and
/// every blocking release has either returned or
/// the deadline (cleanup start + background_timeout) has passed; the ones still
/// running are recorded timed_out. It does not wait for them. The final report
/// never changes: on_report gets it once, wait() returns it.
///
/// add() after cleanup began releases the resource at once in the calling thread
/// (try_release inline; release as a background task with the same deadline, even
/// if already passed) and appends its record to the report, provided the report is
/// not final yet. Once it is final, add() still releases the resource by the same
/// rules, with a fresh budget of background_timeout from the add, but its outcome is
/// in no report (failures there are caught and dropped): add before the owner's end
/// is seen, or keep the coordinator's lifetime within the request's, to have every
/// release reported.
///
/// Thread safety: every member from any thread, concurrently with cleanup.
/// Blocking: add/remove/pending never block on a release (add runs try_release
/// inline once cleanup began). wait() and the destructor block until the report is
/// final: at most background_timeout after cleanup began, plus the time the
/// try_release calls take.
/// Ordering: the cancelling thread is never delayed: cleanup runs on ctxpp's
/// callback executor, started by an after_func on the context (at once, still on
/// the executor, if the context has already ended when the coordinator is made).
/// A context that can never end (background()) starts cleanup only through
/// cleanup_now() or the destructor.
/// Ownership: release functions run on other threads: what they capture must
/// outlive them; a timed-out release keeps running after the coordinator is gone
/// and owns only what its std::function holds (the coordinator's shared state is
/// kept alive for it). A release function must not wait for, destroy or
/// cleanup_now() its own coordinator from inside try_release (that call would wait
/// for itself); from inside release it waits until the deadline.
/// Cost: add() is one allocation (a map node), the functions, and a record made
/// ahead (so that cleanup touches no fresh memory); cleanup makes two contexts and
/// one after_func, then one executor task to hand out the blocking releases and one
/// per blocking release.
class CleanupCoordinator {
 public:
  /// Watches ctx with an after_func; keeps a handle to ctx (and so its values).
  /// Errors: std::bad_alloc.
  explicit CleanupCoordinator(const Context& ctx, CleanupOptions options = {});
  CleanupCoordinator(const CleanupCoordinator&) = delete;
  CleanupCoordinator& operator=(const CleanupCoordinator&) = delete;
  /// Starts cleanup if it has not begun (as cleanup_now()), then waits for the final
  /// report; see Blocking above. Timed-out releases are not waited for.
  ~CleanupCoordinator();

  using Id = std::uint64_t;

  /// Registers resource; returns an id for remove() (ids are never reused). After
  /// cleanup began, releases it at once instead (see the class comment).
  /// Errors: std::invalid_argument if neither function is set; std::bad_alloc
  /// (nothing is registered or released then).
  Id add(Resource resource);

  /// Unregisters a resource released by its owner in the normal way. True if it was
  /// still registered and cleanup had not begun (it will never be released by the
  /// coordinator, and is in no report); false otherwise: an unknown id, a second
  /// remove, or any call once cleanup began (every resource is then being
  /// released). Its functions are destroyed before it returns, unlocked.
  bool remove(Id id) noexcept;

  /// Commits: unregisters every resource at once, as one decision. True if cleanup
  /// had not begun (the coordinator will release none of them; later add()s are
  /// registered as usual); false if it had (nothing changes: every resource is being
  /// released, as the report will say). Unlike a series of remove() calls, cleanup
  /// cannot begin half-way through. Functions are destroyed before it returns,
  /// unlocked. Cost: O(registered resources).
  bool dismiss() noexcept;

  /// Starts cleanup now, as if the context had ended, in the calling thread: the
  /// try_release calls run here and blocking releases are dispatched before it
  /// returns (it may deliver the report too). Does nothing if cleanup has begun;
  /// if the context ended but its after_func has not started yet, this call does
  /// the work and the after_func does nothing.
  void cleanup_now() noexcept;

  /// Blocks until cleanup has begun and the report is final and delivered to
  /// on_report; returns a copy. Blocking: forever if cleanup never begins.
  /// Errors: std::bad_alloc (copying the report).
  CleanupReport wait() const;

  /// Like wait(), bounded by d; nullopt if the report was not final by then.
  std::optional<CleanupReport> wait_for(clock::duration d) const;

  /// Resources registered and not yet removed or done with: those waiting for
  /// cleanup plus those whose release function is still running or queued
  /// (timed-out ones included). 0 once every release function has returned.
  /// Cost: a mutex section.
  std::size_t pending() const noexcept;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace ctxpp
