// ctxpp/trace_context.hpp — the W3C trace identity a context carries across services.
// A context carries at most one TraceContext (the nearest one wins, like any value).
// Observers read it when a context is created under observation, so the spans a
// trace export writes for this service join the spans other services wrote for the
// same trace; adapters (ctxpp/http/traceparent.hpp) read and write it on the wire.
// Example:
//   auto rctx = ctxpp::with_trace_context(ctx, incoming);
//   if (const ctxpp::TraceContext* tc = ctxpp::trace_context(rctx)) forward(*tc);
#pragma once

#include <array>
#include <cstdint>

#include "ctxpp/context.hpp"

namespace ctxpp {

/// W3C Trace Context identity: trace-id, the caller's span id (parent-id) and flags.
/// Thread safety: a plain value. Cost: 25 bytes, trivially copyable.
struct TraceContext {
  std::array<std::uint8_t, 16> trace_id{};  ///< the whole trace; never all zero when valid
  /// The span this context's work belongs to: trace exports write it as the span id.
  /// Store the incoming header's child (ctxpp::http::child_of) to give this service a
  /// span of its own under the caller's; never all zero when valid.
  std::array<std::uint8_t, 8> parent_id{};
  std::uint8_t flags = 0;  ///< trace-flags; bit 0 is "sampled"

  bool sampled() const noexcept { return (flags & 0x01U) != 0U; }
  friend bool operator==(const TraceContext&, const TraceContext&) = default;
};

/// A child context carrying trace; never cancellable by itself (a value context).
/// Thread safety: any thread. Cost: one allocation. Errors: std::bad_alloc.
Context with_trace_context(const Context& parent, const TraceContext& trace);

/// The trace identity ctx carries, or nullptr. Valid while ctx (or a copy) lives.
/// Thread safety: any thread. Cost: O(depth of ctx), no lock, no allocation.
const TraceContext* trace_context(const Context& ctx) noexcept;

}  // namespace ctxpp
