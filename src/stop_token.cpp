// Lazily made per-node resources: the done_fd eventfd and the std::stop_source
// behind Context::stop_token(); and with_stop_token(). Each resource registers
// an internal listener on the node (owned by the node, so it holds no
// reference and is dropped when the node is freed).
#include "ctxpp/stop_token.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <new>

#include "observe_internal.hpp"
#include "tree.hpp"

namespace ctxpp {
namespace detail {
namespace {

Extras* extras_of(CallbackBase* callback) noexcept {
  return static_cast<ExtrasListener*>(callback)->owner;
}

void signal_fd(CallbackBase* callback) noexcept {
  Extras* extras = extras_of(callback);
  const std::uint64_t one = 1;
  // An eventfd write of 1 cannot block short of 2^64-2 unread writes; a failure
  // leaves the fd unreadable, which only the never-ending case may do.
  [[maybe_unused]] const ssize_t written =
      ::write(extras->fd.load(std::memory_order_acquire), &one, sizeof one);
}

void request_stop(CallbackBase* callback) noexcept {
  Extras* extras = extras_of(callback);
  extras->stop_source->request_stop();  // runs std::stop_callbacks inline
}

}  // namespace

Extras* extras_for(SignalNode* node) noexcept {
  Extras* extras = node->extras_.load(std::memory_order_acquire);
  if (extras != nullptr) return extras;
  auto* made = new (std::nothrow) Extras();
  if (made == nullptr) return nullptr;
  // acq_rel: publish the new object; on failure, see the winner's.
  if (node->extras_.compare_exchange_strong(extras, made, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
    return made;
  }
  delete made;
  return extras;
}

void destroy_extras(Extras* extras) noexcept {
  release_meta(extras->meta.load(std::memory_order_acquire));
  delete extras->shards.load(std::memory_order_relaxed);
  const int fd = extras->fd.load(std::memory_order_relaxed);
  if (fd >= 0) ::close(fd);
  delete extras;
}

}  // namespace detail

int Context::done_fd(std::error_code& ec) const noexcept {
  ec.clear();
  if (signal_ == nullptr) {
    // Shared by every never-ending context; nobody ever writes it.
    static const int never_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    static const int never_errno = never_fd < 0 ? errno : 0;
    if (never_fd < 0) ec.assign(never_errno, std::generic_category());
    return never_fd;
  }
  detail::Extras* extras = detail::extras_for(signal_);
  if (extras == nullptr) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return -1;
  }
  int fd = extras->fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  std::lock_guard lock(extras->mutex);
  fd = extras->fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) {
    ec.assign(errno, std::generic_category());
    return -1;
  }
  extras->fd.store(fd, std::memory_order_release);
  extras->fd_listener.fire_ = &detail::signal_fd;
  if (!detail::register_callback(signal_, &extras->fd_listener)) {
    detail::signal_fd(&extras->fd_listener);  // already done
  }
  return fd;
}

std::stop_token Context::stop_token() const {
  if (signal_ == nullptr) return {};
  detail::Extras* extras = detail::extras_for(signal_);
  if (extras == nullptr) throw std::bad_alloc();
  std::lock_guard lock(extras->mutex);
  if (!extras->stop_source.has_value()) {
    extras->stop_source.emplace();
    extras->stop_listener.fire_ = &detail::request_stop;
    if (!detail::register_callback(signal_, &extras->stop_listener)) {
      extras->stop_source->request_stop();  // already done
    }
  }
  return extras->stop_source->get_token();
}

WithCancel<Context, CancelFunc> with_stop_token(const Context& parent, std::stop_token token,
                                                SourceLocation where) {
  if (!token.stop_possible()) return with_cancel(parent, where);
  auto* node = detail::new_child_for_pair<detail::StopTokenNode>(parent);
  if (detail::observe_flags() != 0U) [[unlikely]] {
    detail::track_created(node, parent, where, {}, 1);
  }
  detail::attach(detail::Access::signal(parent), node);
  WithCancel<Context, CancelFunc> result{detail::Access::adopt(node, node),
                                         detail::Access::adopt_cancel(node)};
  // Registered only once the node is complete and linked; runs inline (and
  // ends the node) if the token is already stop-requested.
  if (!result.ctx.done()) node->callback_.emplace(std::move(token), detail::StopForward{node});
  return result;
}

}  // namespace ctxpp
