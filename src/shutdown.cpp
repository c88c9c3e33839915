// Shutdown: an in-flight counter beside two nested contexts.
//
// The counter and the phase share one mutex, so admit() and run() agree on which
// work was admitted before draining began: run() ends drain_context() while
// holding it, and admit() checks the phase under it.
#include "ctxpp/shutdown.hpp"

#include <algorithm>

#include "tree.hpp"

namespace ctxpp {

struct Shutdown::State {
  Context force_ctx;
  CancelFunc force;
  Context drain_ctx;
  CancelFunc drain;

  mutable std::mutex mutex;
  std::condition_variable changed;
  ShutdownPhase phase = ShutdownPhase::running;
  bool run_started = false;
  std::size_t in_flight = 0;
  std::optional<ShutdownReport> report;

  void finish_one() noexcept {
    std::lock_guard lock(mutex);
    --in_flight;
    changed.notify_all();
  }
};

Shutdown::Shutdown(const Context& parent) : state_(std::make_shared<State>()) {
  auto [force_ctx, force] = with_cancel(parent);
  auto [drain_ctx, drain] = with_cancel(force_ctx);
  state_->force_ctx = std::move(force_ctx);
  state_->force = std::move(force);
  state_->drain_ctx = std::move(drain_ctx);
  state_->drain = std::move(drain);
}

Shutdown::Work& Shutdown::Work::operator=(Work&& other) noexcept {
  if (this != &other) {
    reset();
    state_ = std::move(other.state_);
  }
  return *this;
}

Shutdown::Work::~Work() { reset(); }

void Shutdown::Work::reset() noexcept {
  if (state_ != nullptr) std::exchange(state_, nullptr)->finish_one();
}

const Context& Shutdown::Work::context() const noexcept {
  static const Context never_ending;
  return state_ != nullptr ? state_->force_ctx : never_ending;
}

std::optional<Shutdown::Work> Shutdown::admit() {
  std::lock_guard lock(state_->mutex);
  if (state_->phase != ShutdownPhase::running || state_->drain_ctx.done()) return std::nullopt;
  ++state_->in_flight;
  return Work(state_);
}

const Context& Shutdown::drain_context() const noexcept { return state_->drain_ctx; }
const Context& Shutdown::force_context() const noexcept { return state_->force_ctx; }

ShutdownPhase Shutdown::phase() const noexcept {
  std::lock_guard lock(state_->mutex);
  return state_->phase;
}

std::size_t Shutdown::in_flight() const noexcept {
  std::lock_guard lock(state_->mutex);
  return state_->in_flight;
}

ShutdownReport Shutdown::run(clock::duration grace, clock::duration force_budget) {
  State& state = *state_;
  grace = std::max(grace, clock::duration::zero());
  force_budget = std::max(force_budget, clock::duration::zero());
  std::unique_lock lock(state.mutex);
  if (state.run_started) {
    state.changed.wait(lock, [&] { return state.report.has_value(); });
    return *state.report;
  }
  state.run_started = true;
  ShutdownReport report;
  report.draining_at = clock::now();
  report.in_flight_at_start = state.in_flight;
  state.phase = ShutdownPhase::draining;
  // Ending drain_context only runs its callbacks; a callback that calls admit()
  // would need this mutex, so end it unlocked. admit() checks drain_ctx.done() as
  // well as the phase, and the phase is already draining.
  lock.unlock();
  state.drain();
  lock.lock();
  const auto no_work = [&] { return state.in_flight == 0; };
  if (!state.changed.wait_until(lock, detail::saturating_add(report.draining_at, grace), no_work)) {
    report.finished_gracefully = report.in_flight_at_start - state.in_flight;
    const std::size_t forced_from = state.in_flight;
    state.phase = ShutdownPhase::forcing;
    report.forcing_at = clock::now();
    lock.unlock();
    state.force();  // running work sees its context end (callbacks run here, unlocked)
    lock.lock();
    const bool drained = state.changed.wait_until(
        lock, detail::saturating_add(report.forcing_at, force_budget), no_work);
    report.still_running = state.in_flight;
    report.finished_forced = forced_from - state.in_flight;
    report.outcome = drained ? ShutdownOutcome::forced : ShutdownOutcome::budget_exceeded;
  } else {
    report.forcing_at = report.draining_at;
    report.finished_gracefully = report.in_flight_at_start;
  }
  report.finished_at = clock::now();
  state.phase = ShutdownPhase::finished;
  state.report = report;
  state.changed.notify_all();
  return report;
}

}  // namespace ctxpp
