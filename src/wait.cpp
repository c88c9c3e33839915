// Blocking waits: on a context's state word (done, propagated) and on a
// callback's completion. Linux futexes on the 32-bit words themselves, so a
// waiter costs no allocation and a cancel with no waiter costs no syscall (the
// kWaiters bit tells the canceller whether to wake).
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

#include "tree.hpp"

namespace ctxpp {
namespace detail {

void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                const clock::time_point* abs_deadline) noexcept {
  timespec ts{};
  const timespec* timeout = nullptr;
  if (abs_deadline != nullptr) {
    // steady_clock is CLOCK_MONOTONIC on Linux; FUTEX_WAIT_BITSET takes an
    // absolute CLOCK_MONOTONIC time, so repeated spurious wake-ups never
    // stretch the total wait.
    const auto since_epoch = abs_deadline->time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    ts.tv_sec = static_cast<time_t>(secs.count());
    ts.tv_nsec = static_cast<long>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
    timeout = &ts;
  }
  // The futex word is the atomic's object representation (lock-free 32-bit).
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_BITSET_PRIVATE, expected,
          timeout, nullptr, FUTEX_BITSET_MATCH_ANY);
}

void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}

bool wait_state(SignalNode* node, std::uint32_t bits, const clock::time_point* deadline) noexcept {
  int spins = 0;
  for (;;) {
    std::uint32_t state = node->state_.load(std::memory_order_acquire);
    if ((state & bits) != 0U) return true;
    if (deadline != nullptr && clock::now() >= *deadline) return false;
    if ((state & kLocked) != 0U) {
      // Held for a few instructions [context.cpp invariant 1]; the waiters bit
      // can only be set while the lock is free [invariant 2].
      if (++spins > 64) std::this_thread::yield();
      continue;
    }
    if ((state & kWaiters) == 0U) {
      if (!node->state_.compare_exchange_weak(state, state | kWaiters, std::memory_order_acq_rel,
                                              std::memory_order_acquire)) {
        continue;
      }
      state |= kWaiters;
    }
    futex_wait(&node->state_, state, deadline);
  }
}

void mark_callback_done(CallbackBase* callback) noexcept {
  // Release: the callback's effects happen-before the deregistering thread's
  // return from wait_callback_done.
  if (callback->completed_.exchange(kCallbackDone, std::memory_order_acq_rel) == kCallbackWaited) {
    futex_wake_all(&callback->completed_);
  }
}

void wait_callback_done(CallbackBase* callback) noexcept {
  int spins = 0;
  for (;;) {
    std::uint32_t value = callback->completed_.load(std::memory_order_acquire);
    if (value == kCallbackDone) return;
    if (++spins < 128) {
      std::this_thread::yield();
      continue;
    }
    if (value == kCallbackRunning && !callback->completed_.compare_exchange_weak(
                                         value, kCallbackWaited, std::memory_order_acq_rel)) {
      continue;
    }
    futex_wait(&callback->completed_, kCallbackWaited, nullptr);
  }
}

}  // namespace detail

void Context::wait() const noexcept {
  if (signal_ == nullptr) {
    // Never ends: block forever without burning CPU.
    std::atomic<std::uint32_t> never{0};
    for (;;) detail::futex_wait(&never, 0, nullptr);
  }
  detail::wait_state(signal_, detail::kDone, nullptr);
}

bool Context::wait_until(clock::time_point t) const noexcept {
  if (signal_ == nullptr) {
    std::atomic<std::uint32_t> never{0};
    while (clock::now() < t) detail::futex_wait(&never, 0, &t);
    return false;
  }
  return detail::wait_state(signal_, detail::kDone, &t);
}

bool Context::wait_for(clock::duration d) const noexcept {
  if (d <= clock::duration::zero()) return done();
  return wait_until(detail::saturating_add(clock::now(), d));
}

}  // namespace ctxpp
