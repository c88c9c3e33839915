// ctxpp/pool.hpp — a resource pool whose waiting, leasing and returning all follow
// the request's context, so cancellation never stops at the pool.
// acquire(ctx) hands out an idle resource, creates one while the pool is below
// max_size, or waits in FIFO order — and stops waiting the moment ctx ends. A Lease
// returns its resource when destroyed; after lease.bind(ctx) it is also taken back
// when ctx ends: the adapter's interrupt hook stops what the resource is doing and
// the pool reclaims it as soon as no use() section holds it. Leases held long after
// their context ended, or longer than a bound, are reported with where they were
// acquired: the leak this pool exists to end is connections that outlive requests.
// Example:
//   ctxpp::Pool<Connection> pool({.create = [](const ctxpp::Context& c) { return connect(c); }},
//                                {.max_size = 8});
//   auto lease = pool.acquire(ctx);
//   if (!lease) return lease.error();          // ctx ended, pool closed, or connect failed
//   lease->query("...");                       // returned to the pool at scope exit
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/failure.hpp"
#include "ctxpp/result.hpp"
#include "ctxpp/source_location.hpp"

namespace ctxpp {

/// Why a lease is reported as lingering.
enum class LingerReason {
  outlived_context,  ///< still held linger_after_context after its acquire context ended
  held_too_long,     ///< held longer than PoolOptions::max_hold
};

/// One lingering lease, as reported by Pool::lingering() and PoolOptions::on_lingering.
struct LingeringLease {
  std::string pool;      ///< PoolOptions::name
  SourceLocation where;  ///< the acquire() call site
  LingerReason reason = LingerReason::outlived_context;
  clock::duration held_for{};  ///< from acquire until now (or until it was returned)
  /// How long after its acquire context ended; empty if that context has not ended.
  std::optional<clock::duration> since_context_end;
  std::error_code context_error;  ///< the acquire context's err(), if it ended
  bool returned = false;          ///< found when it was finally returned
};

/// Wait times of acquire() calls that had to wait (or create), in fixed buckets.
struct PoolWaitHistogram {
  /// Upper bounds (inclusive) of the buckets; the last bucket has none.
  static constexpr std::array<std::chrono::nanoseconds, 7> kBounds{
      std::chrono::microseconds(1), std::chrono::microseconds(10), std::chrono::microseconds(100),
      std::chrono::milliseconds(1), std::chrono::milliseconds(10), std::chrono::milliseconds(100),
      std::chrono::seconds(1)};
  std::array<std::uint64_t, kBounds.size() + 1> counts{};
  std::uint64_t count = 0;  ///< sum of counts
  clock::duration sum{};    ///< total time waited
};

/// A consistent snapshot of a pool (taken under its lock).
struct PoolStats {
  std::size_t size = 0;                     ///< resources that exist or are being created
  std::size_t idle = 0;                     ///< waiting in the pool
  std::size_t leased = 0;                   ///< held by leases
  std::size_t creating = 0;                 ///< being created by acquire() calls
  std::size_t waiting = 0;                  ///< acquire() calls waiting in line
  std::size_t lingering = 0;                ///< leases that count as lingering now
  std::uint64_t acquired_total = 0;         ///< leases handed out
  std::uint64_t created_total = 0;          ///< resources created
  std::uint64_t destroyed_total = 0;        ///< resources destroyed
  std::uint64_t create_failures_total = 0;  ///< factory errors and exceptions
  std::uint64_t canceled_waits_total = 0;   ///< acquire() calls ended by their context
  std::uint64_t revoked_total = 0;          ///< bound leases taken back when their context ended
  std::uint64_t lingered_total = 0;         ///< leases reported lingering (each once)
  PoolWaitHistogram wait_time;              ///< acquire() calls that did not find an idle one
};

/// How a pool behaves. Every field has a working default but max_size must be > 0.
struct PoolOptions {
  /// Most resources alive at once (idle + leased + being created). Must be > 0.
  std::size_t max_size = 16;
  /// Most idle resources kept; extra returned ones are destroyed. 0 means max_size.
  std::size_t max_idle = 0;
  /// An idle resource unused this long is destroyed (by a timer, not only on the next
  /// acquire). Zero: never. Must not be negative.
  clock::duration idle_timeout = clock::duration::zero();
  /// A resource older than this is destroyed when next returned or found idle. Zero:
  /// never. Must not be negative.
  clock::duration max_lifetime = clock::duration::zero();
  /// A lease still held this long after its acquire context ended is lingering. Must
  /// not be negative.
  clock::duration linger_after_context = std::chrono::seconds(1);
  /// A lease held longer than this is lingering, whatever its context. Zero: no bound.
  clock::duration max_hold = clock::duration::zero();
  /// Called once per lingering lease, on a thread of ctxpp's callback executor (found
  /// by a timer) or on the thread that returns or inspects the pool. Must not throw
  /// (an exception is dropped) and must not call back into the pool's lease.
  std::function<void(const LingeringLease&)> on_lingering{};
  /// For reports; any text.
  std::string name = "pool";
};

/// What a pool needs to know about its resources. Only create is required.
/// Every function may be called on any thread, never with the pool's lock held.
template <class T>
struct PoolHooks {
  /// Makes a resource; ctx is the acquirer's context (honour it when connecting).
  /// An error or an exception reaches that acquire() call: nothing is swallowed.
  std::function<Result<T>(const Context&)> create{};
  /// On return: make the resource ready for the next lease (reset, roll back) and say
  /// whether it is healthy. false (or an exception): it is destroyed instead.
  std::function<bool(T&)> recycle{};
  /// When a bound lease's context ends, from a thread of ctxpp's callback executor:
  /// stop whatever the resource is doing (sqlite3_interrupt, PQcancel, shutdown()).
  /// Runs while the holder may be using the resource: must be safe against that. It
  /// may also land between two operations, when nothing runs: make it stick until
  /// recycle (a flag the next operation checks), or the next operation runs on.
  /// Ordering: at most once per lease, always before that lease's recycle, never at
  /// the same time as it, and never after the resource went back to the pool.
  std::function<void(T&)> interrupt{};
};

namespace detail {

// The type-erased heart of a pool; Pool<T> supplies what depends on T.
struct PoolSlot;
class PoolCore;
struct PoolBinding;

// Pointers to the slot a lease holds and to its pool, kept alive by the lease.
struct LeaseHandle {
  std::shared_ptr<PoolCore> core;
  PoolSlot* slot = nullptr;
  std::shared_ptr<PoolBinding> binding;  // set by bind()
};

class PoolCore : public std::enable_shared_from_this<PoolCore> {
 public:
  explicit PoolCore(PoolOptions options);
  virtual ~PoolCore();
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  // Result<LeaseHandle>: an error, or a slot now leased to the caller.
  Result<LeaseHandle> acquire(const Context& ctx, SourceLocation where);
  void release(LeaseHandle& handle, bool discard) noexcept;
  std::error_code bind(LeaseHandle& handle, const Context& ctx);
  std::error_code close(const Context& ctx);
  void close_now() noexcept;
  PoolStats stats() const;
  std::vector<LingeringLease> lingering() const;
  const PoolOptions& options() const noexcept { return options_; }

  // What the typed pool provides.
  virtual PoolSlot* create_slot(const Context& ctx, std::error_code& error) = 0;  // may throw
  virtual bool recycle_slot(PoolSlot* slot) noexcept = 0;
  virtual void interrupt_slot(PoolSlot* slot) noexcept = 0;
  virtual bool has_interrupt() const noexcept = 0;
  virtual void destroy_slot(PoolSlot* slot) noexcept = 0;

 private:
  struct State;
  PoolOptions options_;
  std::unique_ptr<State> state_;
  friend struct PoolAccess;
};

// A use() section's hold on a bound lease's slot.
void* enter_use(const LeaseHandle& handle, std::error_code& error) noexcept;
void leave_use(const LeaseHandle& handle) noexcept;
void* slot_resource(const PoolSlot* slot) noexcept;  // the T inside, as void*

}  // namespace detail

template <class T>
class Pool;

/// A resource on loan from a Pool. Move-only; returns the resource when destroyed.
/// Thread safety: one lease is used by one thread at a time, except that bind()'s
/// reclaim runs on its own; a use() section is the way to touch a bound lease.
/// Ownership: keeps the pool's shared state alive, so a lease may outlive its Pool
/// (its resource is then destroyed when it is returned).
template <class T>
class [[nodiscard]] Lease {
 public:
  Lease() noexcept = default;
  Lease(Lease&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Lease& operator=(Lease&& other) noexcept {
    if (this != &other) {
      release();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() { release(); }

  /// Holds a resource (not released, discarded or, once bound, reclaimed). Cost:
  /// one load; for a bound lease a lock.
  explicit operator bool() const noexcept { return get() != nullptr; }

  /// The resource, or nullptr. On a bound lease the answer can change at any time
  /// on another thread: touch a bound lease's resource only inside use().
  T* get() const noexcept {
    if (handle_.slot == nullptr) return nullptr;
    if (handle_.binding) {
      std::error_code ignored;
      void* resource = detail::enter_use(handle_, ignored);
      if (resource != nullptr) detail::leave_use(handle_);
      return static_cast<T*>(resource);
    }
    return static_cast<T*>(detail::slot_resource(handle_.slot));
  }
  T& operator*() const noexcept { return *get(); }
  T* operator->() const noexcept { return get(); }

  /// Returns the resource to the pool now (recycle hook first). Idempotent; no-op
  /// on an empty lease. Blocking: runs the recycle hook; waits for a bind() reclaim
  /// that is running at this moment.
  void release() noexcept {
    if (handle_.slot != nullptr) handle_.core->release(handle_, false);
    handle_ = {};
  }

  /// Gives the resource up as broken (connection died): it is destroyed, never
  /// reused, and the pool may create a new one. Idempotent.
  void discard() noexcept {
    if (handle_.slot != nullptr) handle_.core->release(handle_, true);
    handle_ = {};
  }

  /// From now on, when ctx ends the pool takes the resource back: the interrupt
  /// hook runs (on ctxpp's callback executor, so a slow PQcancel delays no
  /// canceller) and the resource is returned as soon as no use() section holds it.
  /// After that the lease is empty and use() fails with ctx's error. If ctx has
  /// already ended, that happens before bind returns, and bind returns ctx.err().
  /// Binding again replaces the previous context. Errors: failure::rejected on an
  /// empty lease; std::bad_alloc. Cost: one allocation and an after_func.
  std::error_code bind(const Context& ctx) {
    if (handle_.slot == nullptr) return make_error_code(failure::rejected);
    return handle_.core->bind(handle_, ctx);
  }

  /// A section in which a bound lease's resource is not reclaimed; on an unbound
  /// lease simply the resource. Falsy, with error(), when the lease was reclaimed
  /// (the bound context's err()) or is empty (failure::rejected).
  class [[nodiscard]] Use {
   public:
    Use(Use&& other) noexcept
        : handle_(std::exchange(other.handle_, nullptr)),
          resource_(std::exchange(other.resource_, nullptr)),
          error_(other.error_) {}
    Use& operator=(Use&&) = delete;
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;
    ~Use() {
      if (handle_ != nullptr && resource_ != nullptr && handle_->binding) {
        detail::leave_use(*handle_);
      }
    }
    explicit operator bool() const noexcept { return resource_ != nullptr; }
    std::error_code error() const noexcept { return error_; }
    T& operator*() const noexcept { return *resource_; }
    T* operator->() const noexcept { return resource_; }

   private:
    friend class Lease;
    Use(const detail::LeaseHandle* handle, T* resource, std::error_code error) noexcept
        : handle_(handle), resource_(resource), error_(error) {}
    const detail::LeaseHandle* handle_;
    T* resource_;
    std::error_code error_;
  };

  /// Enters a use() section. Blocking: no (a lock). Thread safety: one section at a
  /// time per lease. The lease must outlive the section.
  Use use() const noexcept {
    if (handle_.slot == nullptr) return Use(&handle_, nullptr, make_error_code(failure::rejected));
    if (!handle_.binding) {
      return Use(&handle_, static_cast<T*>(detail::slot_resource(handle_.slot)), {});
    }
    std::error_code error;
    void* resource = detail::enter_use(handle_, error);
    return Use(&handle_, static_cast<T*>(resource), error);
  }

 private:
  friend class Pool<T>;
  explicit Lease(detail::LeaseHandle handle) noexcept : handle_(std::move(handle)) {}
  detail::LeaseHandle handle_;
};

/// A bounded pool of T. Thread safety: every member may be called from any thread
/// at once, except that destroying the Pool races with calls still running on it.
/// Destruction: closes the pool — waiters fail with failure::rejected, idle
/// resources are destroyed — without waiting for leases; each lease still out keeps
/// the shared state alive and destroys its resource when it is returned.
template <class T>
class Pool {
 public:
  /// Errors: throws std::invalid_argument naming the field for max_size == 0,
  /// negative durations or a missing create hook.
  explicit Pool(PoolHooks<T> hooks, PoolOptions options = {})
      : core_(std::make_shared<Core>(std::move(hooks), std::move(options))) {}
  ~Pool() { core_->close_now(); }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /// A lease on an idle resource, a new one (create hook, with ctx) while below
  /// max_size, or the next one returned, in FIFO order of the callers waiting.
  /// Blocking: while waiting and while creating; returns as soon as ctx ends.
  /// Errors: ctx's err() (also when ctx had ended before the call); failure::rejected
  /// on a closed pool; the create hook's error; the create hook's exception is
  /// rethrown here (the capacity it held is given back first).
  /// Cost uncontended: one mutex section, no allocation; on a context that can end
  /// (or with max_hold, idle_timeout or max_lifetime set) also a clock read, and an
  /// allocation-free callback registration on ctx (to notice a lease outliving its
  /// context). Returning the lease costs one more mutex section and the recycle hook.
  /// Measured in bench/pool_bench.cpp (P1–P3).
  Result<Lease<T>> acquire(const Context& ctx, SourceLocation where = SourceLocation::current()) {
    auto handle = core_->acquire(ctx, where);
    if (!handle) return handle.error();
    return Lease<T>(std::move(*handle));
  }

  /// Stops the pool: acquire() fails with failure::rejected from now on, waiters at
  /// once; idle resources are destroyed. Then waits until every lease is returned
  /// (their resources are destroyed) or ctx ends. Returns {} when drained, ctx.err()
  /// otherwise (later returns still destroy their resources). Idempotent.
  std::error_code close(const Context& ctx) { return core_->close(ctx); }

  /// A snapshot of the counters. Cost: a mutex section and a walk of the leases.
  PoolStats stats() const { return core_->stats(); }

  /// The leases lingering now (see PoolOptions). Cost: as stats().
  std::vector<LingeringLease> lingering() const { return core_->lingering(); }

  const PoolOptions& options() const noexcept { return core_->options(); }

 private:
  class Core;
  std::shared_ptr<Core> core_;
};

// ---------------------------------------------------------------------------------------
// Implementation details.

namespace detail {

struct PoolSlotRecord;  // the pool's bookkeeping for a slot (src/pool.cpp)

// Shared by every slot; the typed slot adds the resource.
struct PoolSlot {
  PoolSlot() = default;
  PoolSlot(const PoolSlot&) = delete;
  PoolSlot& operator=(const PoolSlot&) = delete;
  virtual ~PoolSlot() = default;
  void* resource = nullptr;          // points into the typed slot
  PoolSlotRecord* record = nullptr;  // owned by the pool
};

template <class T>
struct TypedPoolSlot final : PoolSlot {
  explicit TypedPoolSlot(T&& value) : object(std::move(value)) { resource = &object; }
  T object;
};

inline void* slot_resource(const PoolSlot* slot) noexcept { return slot->resource; }

// Throws std::invalid_argument naming the field.
void validate_pool_options(const PoolOptions& options, bool has_create);

}  // namespace detail

template <class T>
class Pool<T>::Core final : public detail::PoolCore {
 public:
  Core(PoolHooks<T> hooks, PoolOptions options)
      : PoolCore((detail::validate_pool_options(options, static_cast<bool>(hooks.create)),
                  std::move(options))),
        hooks_(std::move(hooks)) {}
  ~Core() override = default;
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  detail::PoolSlot* create_slot(const Context& ctx, std::error_code& error) override {
    Result<T> made = hooks_.create(ctx);
    if (!made) {
      error = made.error();
      return nullptr;
    }
    return new detail::TypedPoolSlot<T>(std::move(*made));
  }
  bool recycle_slot(detail::PoolSlot* slot) noexcept override {
    if (!hooks_.recycle) return true;
    try {
      return hooks_.recycle(typed(slot));
    } catch (...) {
      return false;
    }
  }
  void interrupt_slot(detail::PoolSlot* slot) noexcept override {
    if (!hooks_.interrupt) return;
    try {
      hooks_.interrupt(typed(slot));
    } catch (...) {  // an interrupt that failed leaves the reclaim to the end of use()
    }
  }
  bool has_interrupt() const noexcept override { return static_cast<bool>(hooks_.interrupt); }
  void destroy_slot(detail::PoolSlot* slot) noexcept override { delete slot; }

 private:
  static T& typed(detail::PoolSlot* slot) noexcept {
    return static_cast<detail::TypedPoolSlot<T>*>(slot)->object;
  }
  PoolHooks<T> hooks_;
};

}  // namespace ctxpp
