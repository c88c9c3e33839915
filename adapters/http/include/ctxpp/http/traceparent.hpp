// ctxpp/http/traceparent.hpp — the W3C Trace Context traceparent header.
// Parses and formats "00-<trace-id>-<parent-id>-<flags>", makes the child a service
// sends downstream (same trace, a new parent-id for its own span), and carries it in a
// context, so every call made under a request's context can forward the request's
// trace without passing it by hand. Parsing is strict for version 00 and follows the
// specification's forward-compatibility rule for later versions.
// Example (namespace http = ctxpp::http):
//   auto incoming = http::parse_traceparent(req.header("traceparent"));
//   auto rctx = http::with_traceparent(ctx, incoming ? http::child_of(*incoming)
//                                                    : http::new_trace(true));
//   ...
//   if (auto tp = http::traceparent(rctx))
//     upstream.set_header("traceparent", http::format_traceparent(http::child_of(*tp)));
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ctxpp/context.hpp"
#include "ctxpp/http/error.hpp"
#include "ctxpp/result.hpp"

namespace ctxpp::http {

/// The header name, as sent (match it case-insensitively).
inline constexpr std::string_view traceparent_header = "traceparent";

/// A parsed traceparent. Formatting always writes version 00 (the only one this
/// library knows), as the specification asks of a service that forwards a later one.
/// Thread safety: a plain value. Cost: 25 bytes, trivially copyable.
struct TraceParent {
  std::array<std::uint8_t, 16> trace_id{};  ///< the whole trace; never all zero when valid
  std::array<std::uint8_t, 8> parent_id{};  ///< the caller's span; never all zero when valid
  std::uint8_t flags = 0;                   ///< trace-flags; bit 0 is "sampled"

  bool sampled() const noexcept { return (flags & 0x01U) != 0U; }
  friend bool operator==(const TraceParent&, const TraceParent&) = default;
};

/// Parses a traceparent value (OWS around it is trimmed). Grammar, per W3C Trace
/// Context level 1 (HEX = "0".."9" / "a".."f", lowercase only):
///   value     = version "-" trace-id "-" parent-id "-" flags [ "-" *OCTET ]
///   version   = 2HEX, not "ff"
///   trace-id  = 32HEX, not all "0"
///   parent-id = 16HEX, not all "0"
///   flags     = 2HEX
/// Version 00 must end right after flags (exactly 55 characters). A later version may
/// continue with "-" and fields this library does not know, which are ignored.
/// Thread safety: pure. Blocking: never. Cost: O(length), no allocation.
/// Errors: errc::too_long (above max_header_value_size), empty, bad_format (length,
/// dashes, a version-00 value with more fields), bad_hex (a non-hex or uppercase digit),
/// bad_version (ff), zero_id.
Result<TraceParent> parse_traceparent(std::string_view value) noexcept;

/// "00-<32 hex>-<16 hex>-<2 hex>", lowercase, 55 characters. For a value parsed from a
/// version-00 header, the exact text that was parsed (OWS trimmed).
/// Thread safety: pure. Cost: one 55-byte string (one allocation). Errors: std::bad_alloc.
std::string format_traceparent(const TraceParent& tp);

/// A child for a downstream call: the same trace-id and flags, parent_id as its
/// parent-id (the span this service records for the call). An all-zero parent_id is
/// replaced by a random one, since it would make the header invalid.
/// Thread safety: pure. Cost: none.
TraceParent child_of(const TraceParent& parent,
                     const std::array<std::uint8_t, 8>& parent_id) noexcept;

/// child_of with a random, non-zero parent-id from a per-thread generator seeded once
/// from std::random_device. Unique with overwhelming probability; not a secret.
/// Thread safety: any thread (the generator is thread-local).
/// Cost: a few nanoseconds; the first call on a thread reads std::random_device.
TraceParent child_of(const TraceParent& parent) noexcept;

/// A new trace for a request that came without a (valid) traceparent: random
/// trace-id and parent-id, flags 01 if sampled, else 00.
/// Thread safety and cost: as child_of(parent).
TraceParent new_trace(bool sampled) noexcept;

/// A child context carrying tp; traceparent() on it or a descendant returns it (unless
/// a nearer with_traceparent replaced it). Never cancellable by itself.
/// Cost: one allocation (a with_value node). Errors: std::bad_alloc.
Context with_traceparent(const Context& parent, const TraceParent& tp);

/// The traceparent carried by ctx, if any.
/// Thread safety: any thread. Cost: O(depth of ctx), no lock, no allocation.
std::optional<TraceParent> traceparent(const Context& ctx) noexcept;

}  // namespace ctxpp::http
