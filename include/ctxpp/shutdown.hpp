// ctxpp/shutdown.hpp — two-phase shutdown: drain gracefully, then force, then report.
// A server that stops should first stop taking work and let what runs finish, and
// only after a grace period cancel what is left — and it must say which of those
// happened. Shutdown does that as one primitive: admit() counts running work;
// run(grace, force_budget) ends drain_context() (stop accepting), waits for the
// work to finish, ends force_context() (cancel the rest) when the grace has passed,
// waits at most force_budget more, and returns a report whose outcome is graceful,
// forced, or budget_exceeded (work still running), never silent.
// Example:
//   ctxpp::Shutdown shutdown(ctxpp::background());
//   // per request:   auto work = shutdown.admit(); if (!work) return reply_503();
//   //                handle(work->context());
//   // on SIGTERM:    auto report = shutdown.run(10s, 2s);
#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>

#include "ctxpp/context.hpp"

namespace ctxpp {

/// Where a Shutdown is. Phases only move forward.
enum class ShutdownPhase {
  running,   ///< accepting work
  draining,  ///< drain_context() ended: no new work; running work may finish
  forcing,   ///< force_context() ended: running work is being cancelled
  finished,  ///< run() returned (whatever the outcome)
};

/// How a shutdown ended.
enum class ShutdownOutcome {
  graceful,         ///< all work finished within the grace period
  forced,           ///< work had to be cancelled, and all of it ended within the budget
  budget_exceeded,  ///< work was still running when the force budget ran out
};

/// What run() observed. Times are ctxpp::clock points.
struct ShutdownReport {
  ShutdownOutcome outcome = ShutdownOutcome::graceful;
  clock::time_point draining_at{};  ///< run() began
  clock::time_point forcing_at{};   ///< the forced phase began (draining_at if never)
  clock::time_point finished_at{};  ///< run() returned
  std::size_t in_flight_at_start = 0;
  std::size_t finished_gracefully = 0;  ///< ended during the grace period
  std::size_t finished_forced = 0;      ///< ended after forcing began
  std::size_t still_running = 0;        ///< running when run() returned
};

/// Two-phase shutdown of a component.
/// Thread safety: every member from any thread. run() may be called once; later or
/// concurrent calls wait for the first and return its report.
/// Ownership: Work tokens share the state, so a token may outlive the Shutdown.
class Shutdown {
 public:
  struct State;

  /// One unit of admitted, running work. Ends (counts as finished) when destroyed
  /// or reset. Move-only.
  class [[nodiscard]] Work {
   public:
    Work(Work&& other) noexcept = default;
    Work& operator=(Work&& other) noexcept;
    Work(const Work&) = delete;
    Work& operator=(const Work&) = delete;
    ~Work();
    /// The context the work must honour: ends when forcing begins (or the parent
    /// ends).
    const Context& context() const noexcept;
    /// Finishes the work now.
    void reset() noexcept;

   private:
    friend class Shutdown;
    explicit Work(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
    std::shared_ptr<State> state_;
  };

  /// force_context() is a child of parent; drain_context() a child of that (so
  /// forcing, or parent ending, also ends draining).
  /// Errors: std::bad_alloc.
  explicit Shutdown(const Context& parent);

  /// Admits one unit of work, or nullopt once draining has begun.
  /// Cost: a mutex section. Errors: std::bad_alloc.
  std::optional<Work> admit();

  /// Ends when draining begins: listeners stop accepting.
  const Context& drain_context() const noexcept;
  /// Ends when forcing begins: running work must stop.
  const Context& force_context() const noexcept;

  ShutdownPhase phase() const noexcept;

  /// Work admitted and not yet finished.
  std::size_t in_flight() const noexcept;

  /// Runs both phases, as described above. A zero grace forces at once.
  /// Blocking: at most grace + force_budget (plus scheduling).
  /// Errors: negative durations count as zero.
  ShutdownReport run(clock::duration grace, clock::duration force_budget);

 private:
  std::shared_ptr<State> state_;
};

}  // namespace ctxpp
