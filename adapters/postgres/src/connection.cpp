// Connection: ownership of a PGconn, the non-blocking connect, and cancel requests.
//
// The generation rule (why a late cancel never hits the next statement).
// PostgreSQL cancels whatever the backend runs when the cancel request arrives,
// not a particular statement. PQcancel takes 10–20 ms (it opens a connection to
// the postmaster, which signals the backend and then closes it). Without care, a
// request aimed at statement N that started while N ran, then travelled while N
// finished and N+1 was sent, would cancel N+1. Two things rule that out:
//  - Each statement gets a generation: odd while it runs, even between statements
//    (I2 in connection_state.hpp). A request is only started while the generation
//    is odd, and is recorded against it (I3); one aimed at a finished statement is
//    never started.
//  - While a request travels, cancel_in_flight says so, and a statement ends
//    (generation back to even) only once no request is in flight (I4). So the
//    next statement is sent only after PQcancel returned, that is after the
//    postmaster signalled the backend (it signals, then closes the connection
//    PQcancel waits on). The backend handles a signal that arrives while it waits
//    for the next command by dropping it (PostgresMain resets a pending cancel
//    while reading a command), so the request expires with N and never reaches N+1.
// The price: a statement that ends while another thread's request is in flight
// waits for that request (one PQcancel: ~10 ms, longer when the postmaster is
// flooded with them). One request per statement travels at a time; other threads
// asking meanwhile return at once (never waiting for someone else's PQcancel, so a
// pool's callback executor is not held up), and only the holder's own query()
// waits for it, as it must before it can send a retry.
#include "ctxpp/postgres/connection.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <utility>

#include "connection_state.hpp"

namespace ctxpp::postgres {
namespace detail {
namespace {

void drop_notice(void* /*arg*/, const char* /*message*/) {}

}  // namespace

ConnectionState::~ConnectionState() {
  if (wake_fd >= 0) ::close(wake_fd);
  if (cancel != nullptr) PQfreeCancel(cancel);
  if (conn != nullptr) PQfinish(conn);
}

std::unique_ptr<ConnectionState> prepare_state(PGconn* conn) {
  std::unique_ptr<ConnectionState> state;
  try {
    state = std::make_unique<ConnectionState>();
  } catch (...) {
    PQfinish(conn);
    throw;
  }
  state->conn = conn;
  if (PQstatus(conn) != CONNECTION_OK) {
    state->broken = true;
    state->last_error_message = trimmed(PQerrorMessage(conn));
    return state;
  }
  // Notices (a ROLLBACK outside a transaction, RAISE NOTICE) would go to stderr.
  PQsetNoticeProcessor(conn, drop_notice, nullptr);
  // Non-blocking: PQsendQueryParams and PQflush never stall on a full socket
  // buffer; query() waits for writability itself, watching the context too.
  if (PQsetnonblocking(conn, 1) != 0) {
    state->broken = true;
    state->last_error_message = trimmed(PQerrorMessage(conn));
    return state;
  }
  // Prepared once (I1): PQgetCancel copies the backend's key, so later requests
  // touch no state the holder's thread uses.
  state->cancel = PQgetCancel(conn);
  if (state->cancel == nullptr) throw std::bad_alloc();
  // Without it (out of descriptors) query() notices interrupt() in 10 ms slices.
  state->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return state;
}

bool begin_statement(ConnectionState& state) noexcept {
  const std::lock_guard lock(state.cancel_mutex);
  if (state.interrupted.load(std::memory_order_relaxed)) return false;  // I5
  // Relaxed: the mutex orders this write with request_cancel's reads (I2); the
  // atomic exists only for the test hooks.
  state.generation.store(state.generation.load(std::memory_order_relaxed) + 1,
                         std::memory_order_relaxed);
  return true;
}

void end_statement(ConnectionState& state) noexcept {
  // I4: waits for a cancel request in flight before the next statement can start.
  std::unique_lock lock(state.cancel_mutex);
  state.cancel_done.wait(lock, [&] { return state.cancel_in_flight == 0; });
  const std::uint64_t generation = state.generation.load(std::memory_order_relaxed);
  if ((generation & 1U) != 0U) state.generation.store(generation + 1, std::memory_order_relaxed);
}

bool send_cancel(ConnectionState& state, CancelMode mode) noexcept {
  std::unique_lock lock(state.cancel_mutex);
  const std::uint64_t generation = state.generation.load(std::memory_order_relaxed);
  if ((generation & 1U) == 0U || state.cancel == nullptr) return false;  // I3
  // A request in flight is aimed at this statement: the statement cannot have
  // ended meanwhile (I4).
  if (state.cancel_in_flight != 0) {
    if (mode != CancelMode::join) return true;
    state.cancel_done.wait(lock, [&] { return state.cancel_in_flight == 0; });
    // Only the holder moves the generation, and the holder is this caller.
    if (state.canceled_generation.load(std::memory_order_relaxed) == generation) return true;
  } else if (mode != CancelMode::retry &&
             state.canceled_generation.load(std::memory_order_relaxed) == generation) {
    return true;  // already delivered for this statement
  }
  state.cancel_in_flight = generation;
  lock.unlock();
  char message[256];
  const bool delivered = PQcancel(state.cancel, message, static_cast<int>(sizeof message)) != 0;
  lock.lock();
  state.cancel_in_flight = 0;
  if (delivered) state.canceled_generation.store(generation, std::memory_order_relaxed);
  state.cancel_done.notify_all();
  return delivered;
}

std::string trimmed(const char* message) {
  std::string text = message != nullptr ? message : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

int context_fd(const Context& ctx) noexcept {
  std::error_code ec;
  const int fd = ctx.done_fd(ec);
  return ec ? -1 : fd;
}

int wait_socket(int sock, short events, int ctx_fd, int timeout_ms, int wake_fd) noexcept {
  // poll() ignores a negative fd.
  pollfd fds[3] = {{sock, events, 0}, {ctx_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
  for (;;) {
    const int n = ::poll(fds, 3, timeout_ms);
    if (n >= 0) return n == 0 ? 0 : fds[0].revents;
    if (errno != EINTR) return -1;
  }
}

std::uint64_t statement_generation(const Connection& conn) noexcept {
  const ConnectionState* state = ConnectionAccess::state(conn);
  return state == nullptr ? 0 : state->generation.load(std::memory_order_relaxed);
}

std::uint64_t last_canceled_generation(const Connection& conn) noexcept {
  const ConnectionState* state = ConnectionAccess::state(conn);
  return state == nullptr ? 0 : state->canceled_generation.load(std::memory_order_relaxed);
}

}  // namespace detail

Connection::Connection() noexcept = default;
Connection::Connection(std::unique_ptr<detail::ConnectionState> state) noexcept
    : state_(std::move(state)) {}
Connection::Connection(Connection&& other) noexcept = default;
Connection& Connection::operator=(Connection&& other) noexcept = default;
Connection::~Connection() = default;

Connection Connection::adopt(PGconn* conn) {
  if (conn == nullptr) return {};
  return Connection(detail::prepare_state(conn));
}

Connection::operator bool() const noexcept { return state_ != nullptr; }

bool Connection::broken() const noexcept {
  return state_ == nullptr || state_->broken || PQstatus(state_->conn) != CONNECTION_OK;
}

void Connection::mark_broken() noexcept {
  if (state_ != nullptr) state_->broken = true;
}

PGconn* Connection::raw() const noexcept { return state_ == nullptr ? nullptr : state_->conn; }

bool Connection::request_cancel() noexcept {
  return state_ != nullptr && detail::send_cancel(*state_, detail::CancelMode::unless_sent);
}

void Connection::interrupt() noexcept {
  if (state_ == nullptr) return;
  {
    const std::lock_guard lock(state_->cancel_mutex);
    // Release: pairs with interrupted()'s acquire load on other threads (I5).
    state_->interrupted.store(true, std::memory_order_release);
  }
  if (state_->wake_fd >= 0) {
    const std::uint64_t one = 1;
    // Cannot fail short of a counter overflow (2^64 - 1 calls): the flag stays set.
    (void)!::write(state_->wake_fd, &one, sizeof one);
  }
  (void)detail::send_cancel(*state_, detail::CancelMode::unless_sent);
}

bool Connection::interrupted() const noexcept {
  return state_ != nullptr && state_->interrupted.load(std::memory_order_acquire);
}

void Connection::clear_interrupt() noexcept {
  if (state_ == nullptr) return;
  const std::lock_guard lock(state_->cancel_mutex);
  state_->interrupted.store(false, std::memory_order_relaxed);
  if (state_->wake_fd >= 0) {
    std::uint64_t count = 0;
    (void)!::read(state_->wake_fd, &count, sizeof count);  // EAGAIN when never written
  }
}

const std::string& Connection::last_error_message() const noexcept {
  static const std::string empty;
  return state_ == nullptr ? empty : state_->last_error_message;
}

const std::string& Connection::last_sqlstate() const noexcept {
  static const std::string empty;
  return state_ == nullptr ? empty : state_->last_sqlstate;
}

int Connection::backend_pid() const noexcept {
  return state_ == nullptr ? 0 : PQbackendPID(state_->conn);
}

Result<Connection> connect(const Context& ctx, std::string_view conninfo,
                           std::string* error_message) {
  if (ctx.done()) return ctx.err();
  const std::string info(conninfo);
  // Owned from here: every return below finishes it unless it is handed over.
  std::unique_ptr<PGconn, void (*)(PGconn*)> conn(PQconnectStart(info.c_str()), PQfinish);
  if (conn == nullptr) throw std::bad_alloc();
  const auto fail = [&]() -> std::error_code {
    if (error_message != nullptr) *error_message = detail::trimmed(PQerrorMessage(conn.get()));
    return make_error_code(errc::connection_failed);
  };
  if (PQstatus(conn.get()) == CONNECTION_BAD) return fail();  // bad conninfo, no socket

  const int ctx_fd = detail::context_fd(ctx);
  // libpq's contract: before the first PQconnectPoll, act as if it had said WRITING.
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;
  for (;;) {
    if (status == PGRES_POLLING_OK) break;
    if (status == PGRES_POLLING_FAILED) return fail();
    // The socket can change between steps (another host or address is tried).
    const int sock = PQsocket(conn.get());
    if (sock < 0) return fail();
    const short events = status == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    const int ready = detail::wait_socket(sock, events, ctx_fd, detail::context_wait_ms(ctx_fd));
    if (ctx.done()) return ctx.err();  // the half-open connection is closed here
    if (ready < 0) return fail();
    if (ready == 0) continue;  // fallback slice without a done fd
    status = PQconnectPoll(conn.get());
  }
  if (error_message != nullptr) error_message->clear();
  auto state = detail::prepare_state(conn.release());
  if (state->broken) {
    if (error_message != nullptr) *error_message = state->last_error_message;
    return make_error_code(errc::connection_failed);
  }
  return detail::ConnectionAccess::make(std::move(state));
}

}  // namespace ctxpp::postgres
