// What a Connection holds, shared by connection.cpp and query.cpp (not installed).
#pragma once

#include <libpq-fe.h>

#include <atomic>
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
// I3. A cancel request is sent only under cancel_mutex and only while generation is
//     odd; canceled_generation records the generation it was aimed at.
// I4. Ending a statement (generation odd -> even) takes cancel_mutex, so it waits
//     for a cancel request in flight: no statement can be sent while a request
//     aimed at an earlier one is still travelling to the server.
struct ConnectionState {
  ConnectionState() = default;
  ConnectionState(const ConnectionState&) = delete;
  ConnectionState& operator=(const ConnectionState&) = delete;
  ~ConnectionState();

  PGconn* conn = nullptr;      // owned (PQfinish)
  PGcancel* cancel = nullptr;  // owned (PQfreeCancel); nullptr if libpq gave none

  std::mutex cancel_mutex;
  // Atomic only so that the test hooks may read them from other threads; every
  // write holds cancel_mutex (I2, I3).
  std::atomic<std::uint64_t> generation{0};
  std::atomic<std::uint64_t> canceled_generation{0};

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

// Starts a statement: generation becomes odd (I2).
void begin_statement(ConnectionState& state) noexcept;
// Ends it: generation becomes even, after any cancel request in flight (I4).
void end_statement(ConnectionState& state) noexcept;
// Sends a cancel request for the running statement (I3). With force, sends one
// even if a request already went to this generation. True if a request was
// delivered for the running statement (now or earlier, without force).
bool send_cancel(ConnectionState& state, bool force) noexcept;

// libpq's message without the trailing newline.
std::string trimmed(const char* message);

}  // namespace ctxpp::postgres::detail

namespace ctxpp::postgres::detail {

// ctx's done_fd(), or -1 if none could be made: then callers wait in slices of
// kFallbackSliceMs and check ctx.done() after each.
int context_fd(const Context& ctx) noexcept;
inline constexpr int kFallbackSliceMs = 10;

// The poll() timeout of a wait for ctx alone: none with a done fd, a slice without.
inline int context_wait_ms(int ctx_fd) noexcept { return ctx_fd < 0 ? kFallbackSliceMs : -1; }

// Waits until sock has one of events, ctx_fd (if >= 0) is readable, or timeout_ms
// passed (-1: no timeout). Returns sock's revents (0 when only ctx_fd or the
// timeout woke it), or -1 if poll() failed. EINTR restarts the wait with the full
// timeout: callers re-check their own deadlines.
int wait_socket(int sock, short events, int ctx_fd, int timeout_ms) noexcept;

}  // namespace ctxpp::postgres::detail
