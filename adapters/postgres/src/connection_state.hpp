// What a Connection holds, shared by connection.cpp and query.cpp (not installed).
#pragma once

#include <libpq-fe.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "ctxpp/postgres/connection.hpp"

namespace ctxpp::postgres::detail {

// Invariants (cited as I1.. in connection.cpp and query.cpp):
// I1. conn and cancel are set before the state is shared and freed only by the
//     destructor, so request_cancel() on another thread never sees them change.
// I2. generation is odd exactly while a statement is between its send and the end
//     of its drain; it changes only under cancel_mutex, and only on the holder's
//     thread.
// I3. A cancel request is started only while generation is odd, and marked in
//     cancel_in_flight (under cancel_mutex) until PQcancel returns; at most one is
//     in flight. canceled_generation records the generation of the last one
//     delivered.
// I4. Ending a statement (generation odd -> even) waits, under cancel_mutex, until
//     no request is in flight: no statement can be sent while a request aimed at
//     an earlier one is still travelling to the server.
// I5. interrupted is set (by interrupt()) and tested (by begin_statement) under
//     cancel_mutex: either the statement sees it and is never sent, or it was
//     already counted as running (generation odd) and interrupt() cancels it and
//     wakes the holder through wake_fd, whose query() then keeps cancelling until
//     the statement ends. Set before wake_fd is written, so a woken holder sees it.
struct ConnectionState {
  ConnectionState() = default;
  ConnectionState(const ConnectionState&) = delete;
  ConnectionState& operator=(const ConnectionState&) = delete;
  ~ConnectionState();

  PGconn* conn = nullptr;      // owned (PQfinish)
  PGcancel* cancel = nullptr;  // owned (PQfreeCancel); nullptr if libpq gave none

  std::mutex cancel_mutex;
  std::condition_variable cancel_done;  // cancel_in_flight went back to 0
  std::uint64_t cancel_in_flight = 0;   // I3; the generation aimed at, under cancel_mutex
  // Atomic only so that the test hooks may read them from other threads; every
  // write holds cancel_mutex (I2, I3).
  std::atomic<std::uint64_t> generation{0};
  std::atomic<std::uint64_t> canceled_generation{0};
  std::atomic<bool> interrupted{false};  // I5; read without the lock by interrupted()
  int wake_fd = -1;  // eventfd written by interrupt(); -1 if none could be made (I1)

  // Holder's thread only.
  bool broken = false;
  std::string last_error_message;
  std::string last_sqlstate;
};

struct ConnectionAccess {
  static ConnectionState* state(const Connection& conn) noexcept { return conn.state_.get(); }
  static Connection make(std::unique_ptr<ConnectionState> state) noexcept {
    return Connection(std::move(state));
  }
};

// Takes ownership of conn; non-blocking mode, notices dropped, cancel handle.
// Errors: std::bad_alloc (conn is finished first).
std::unique_ptr<ConnectionState> prepare_state(PGconn* conn);

// Starts a statement: generation becomes odd (I2). false, and nothing changes, if
// the connection is interrupted (I5).
bool begin_statement(ConnectionState& state) noexcept;
// Ends it: generation becomes even, after any cancel request in flight (I4).
void end_statement(ConnectionState& state) noexcept;
enum class CancelMode {
  // Other threads (request_cancel, interrupt): send one unless a request for the
  // running statement was delivered or is in flight; never wait for another's.
  unless_sent,
  // The holder's first request: wait for one in flight, send one unless a request
  // for this statement has been delivered. On return a request was delivered, or
  // the last attempt failed.
  join,
  // The holder's repeat: send another, unless one is in flight.
  retry,
};

// Sends a cancel request for the running statement, as mode says (I3). True if a
// request for it was delivered (or, for unless_sent and retry, is in flight).
bool send_cancel(ConnectionState& state, CancelMode mode) noexcept;

// libpq's message without the trailing newline.
std::string trimmed(const char* message);

}  // namespace ctxpp::postgres::detail

namespace ctxpp::postgres::detail {

// ctx's done_fd(), or -1 if none could be made: then callers wait in slices of
// kFallbackSliceMs and check ctx.done() after each.
int context_fd(const Context& ctx) noexcept;
inline constexpr int kFallbackSliceMs = 10;

// The poll() timeout of a wait for ctx (and wake_fd) alone: none with both fds, a
// slice without.
inline int context_wait_ms(int ctx_fd, int wake_fd = 0) noexcept {
  return ctx_fd < 0 || wake_fd < 0 ? kFallbackSliceMs : -1;
}

// Waits until sock has one of events, ctx_fd or wake_fd (each if >= 0) is readable,
// or timeout_ms passed (-1: no timeout). Returns sock's revents (0 when only
// another fd or the timeout woke it), or -1 if poll() failed. EINTR restarts the
// wait with the full timeout: callers re-check their own deadlines.
int wait_socket(int sock, short events, int ctx_fd, int timeout_ms, int wake_fd = -1) noexcept;

}  // namespace ctxpp::postgres::detail
