// traceparent: W3C Trace Context level 1, version 00, with the specification's rule
// for later versions (read the version-00 prefix, require a dash or the end after it).
#include "ctxpp/http/traceparent.hpp"

#include "ctxpp/trace_context.hpp"

#include <chrono>
#include <cstddef>
#include <random>
#include <thread>

#include "text.hpp"

namespace ctxpp::http {
namespace {

// Field offsets in "vv-<32>-<16>-ff".
constexpr std::size_t kTraceIdAt = 3;
constexpr std::size_t kParentIdAt = 36;
constexpr std::size_t kFlagsAt = 53;
constexpr std::size_t kVersion00Size = 55;

bool all_lower_hex(std::string_view field) noexcept {
  for (char c : field) {
    if (!detail::is_lower_hex(c)) return false;
  }
  return true;
}

// field must be all_lower_hex and out.size() * 2 characters long.
template <std::size_t N>
void decode(std::string_view field, std::array<std::uint8_t, N>& out) noexcept {
  for (std::size_t i = 0; i < N; ++i) {
    out[i] = static_cast<std::uint8_t>((detail::hex_value(field[2 * i]) << 4U) |
                                       detail::hex_value(field[2 * i + 1]));
  }
}

template <std::size_t N>
bool all_zero(const std::array<std::uint8_t, N>& id) noexcept {
  for (std::uint8_t b : id) {
    if (b != 0) return false;
  }
  return true;
}

template <std::size_t N>
void encode(const std::array<std::uint8_t, N>& id, std::string& out) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  for (std::uint8_t b : id) {
    out += kDigits[b >> 4U];
    out += kDigits[b & 0x0FU];
  }
}

// Span ids need uniqueness, not secrecy: a per-thread SplitMix64 sequence, seeded once
// from std::random_device mixed with the clock and the thread, so a platform whose
// random_device fails (it may throw) still gets distinct streams per thread.
class IdSource {
 public:
  IdSource() noexcept {
    std::uint64_t seed =
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    seed ^= std::hash<std::thread::id>{}(std::this_thread::get_id()) * 0x9E3779B97F4A7C15ULL;
    try {
      std::random_device device;
      seed ^= (static_cast<std::uint64_t>(device()) << 32U) ^ device();
    } catch (...) {  // NOLINT(bugprone-empty-catch): the clock and thread mix still differ
    }
    state_ = seed;
  }

  std::uint64_t next() noexcept {
    state_ += 0x9E3779B97F4A7C15ULL;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31U);
  }

  // Random bytes, never all zero (an all-zero id is invalid).
  template <std::size_t N>
  std::array<std::uint8_t, N> id() noexcept {
    std::array<std::uint8_t, N> out{};
    do {
      for (std::size_t i = 0; i < N; i += 8) {
        std::uint64_t word = next();
        for (std::size_t j = i; j < i + 8 && j < N; ++j, word >>= 8U) {
          out[j] = static_cast<std::uint8_t>(word);
        }
      }
    } while (all_zero(out));
    return out;
  }

 private:
  std::uint64_t state_ = 0;
};

IdSource& ids() noexcept {
  thread_local IdSource source;
  return source;
}

}  // namespace

Result<TraceParent> parse_traceparent(std::string_view value) noexcept {
  if (std::error_code ec = detail::guard_and_trim(value)) return ec;
  if (value.size() < kVersion00Size) return make_error_code(errc::bad_format);
  if (value[2] != '-' || value[kParentIdAt - 1] != '-' || value[kFlagsAt - 1] != '-') {
    return make_error_code(errc::bad_format);
  }
  const std::string_view version = value.substr(0, 2);
  const std::string_view trace_id = value.substr(kTraceIdAt, 32);
  const std::string_view parent_id = value.substr(kParentIdAt, 16);
  const std::string_view flags = value.substr(kFlagsAt, 2);
  if (!all_lower_hex(version) || !all_lower_hex(trace_id) || !all_lower_hex(parent_id) ||
      !all_lower_hex(flags)) {
    return make_error_code(errc::bad_hex);
  }
  if (version == "ff") return make_error_code(errc::bad_version);
  if (value.size() > kVersion00Size) {
    // Version 00 has exactly four fields; a later one may add fields after a dash.
    if (version == "00" || value[kVersion00Size] != '-') return make_error_code(errc::bad_format);
  }
  TraceParent tp;
  decode(trace_id, tp.trace_id);
  decode(parent_id, tp.parent_id);
  std::array<std::uint8_t, 1> flag_byte{};
  decode(flags, flag_byte);
  tp.flags = flag_byte[0];
  if (all_zero(tp.trace_id) || all_zero(tp.parent_id)) return make_error_code(errc::zero_id);
  return tp;
}

std::string format_traceparent(const TraceParent& tp) {
  std::string out;
  out.reserve(kVersion00Size);
  out += "00-";
  encode(tp.trace_id, out);
  out += '-';
  encode(tp.parent_id, out);
  out += '-';
  encode(std::array<std::uint8_t, 1>{tp.flags}, out);
  return out;
}

TraceParent child_of(const TraceParent& parent,
                     const std::array<std::uint8_t, 8>& parent_id) noexcept {
  TraceParent child = parent;
  child.parent_id = all_zero(parent_id) ? ids().id<8>() : parent_id;
  return child;
}

TraceParent child_of(const TraceParent& parent) noexcept { return child_of(parent, ids().id<8>()); }

TraceParent new_trace(bool sampled) noexcept {
  TraceParent tp;
  tp.trace_id = ids().id<16>();
  tp.parent_id = ids().id<8>();
  tp.flags = sampled ? 0x01U : 0x00U;
  return tp;
}

// Carried as the core's TraceContext, so observers (ctxpp/observe.hpp) put this
// service's spans in the caller's trace.
Context with_traceparent(const Context& parent, const TraceParent& tp) {
  return with_trace_context(parent, TraceContext{tp.trace_id, tp.parent_id, tp.flags});
}

std::optional<TraceParent> traceparent(const Context& ctx) noexcept {
  const TraceContext* trace = trace_context(ctx);
  if (trace == nullptr) return std::nullopt;
  TraceParent tp;
  tp.trace_id = trace->trace_id;
  tp.parent_id = trace->parent_id;
  tp.flags = trace->flags;
  return tp;
}

}  // namespace ctxpp::http
