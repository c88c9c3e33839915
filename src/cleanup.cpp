// Deferred cleanup: the process-wide cleanup failure handler and cleanup_context.
#include "ctxpp/cleanup.hpp"

#include <atomic>
#include <cstdio>

namespace ctxpp {
namespace {

std::atomic<CleanupFailureHandler> failure_handler{nullptr};
std::atomic<std::size_t> failures_total{0};

void default_failure_handler(const CleanupFailure& failure) {
  std::fprintf(stderr, "ctxpp: cleanup at %s:%u (%s) threw: %s\n", failure.where.file_name(),
               static_cast<unsigned>(failure.where.line()), failure.where.function_name(),
               failure.message.c_str());
}

}  // namespace

CleanupFailureHandler set_cleanup_failure_handler(CleanupFailureHandler handler) noexcept {
  return failure_handler.exchange(handler, std::memory_order_acq_rel);
}

std::size_t cleanup_failures_total() noexcept {
  return failures_total.load(std::memory_order_relaxed);
}

namespace detail {

void report_cleanup_failure(SourceLocation where) noexcept {
  failures_total.fetch_add(1, std::memory_order_relaxed);
  CleanupFailure failure;
  failure.where = where;
  failure.exception = std::current_exception();
  try {
    try {
      throw;
    } catch (const std::exception& e) {
      failure.message = e.what();
    } catch (...) {
      failure.message = "unknown exception";
    }
  } catch (...) {
    // Out of memory for the message: report without it.
  }
  CleanupFailureHandler handler = failure_handler.load(std::memory_order_acquire);
  (handler != nullptr ? handler : &default_failure_handler)(failure);
}

}  // namespace detail

WithCancel<Context, CancelFunc> cleanup_context(const Context& ctx, clock::duration budget) {
  return with_timeout_cause(without_cancel(ctx), budget, make_error_code(failure::budget_exceeded));
}

}  // namespace ctxpp
