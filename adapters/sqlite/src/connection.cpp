// Connection: the sqlite3 handle, its hooks, and open().
//
// The two hooks are how a statement notices its context without a thread of its own
// (the invariants are in connection_state.hpp):
//  - the progress handler runs every progress_steps VM steps inside sqlite3_step and
//    stops the statement once the active context is done. It catches what
//    sqlite3_interrupt misses: SQLite 3.40 clears a pending interrupt when a statement
//    starts while none is running, so an interrupt sent just before the first step is
//    lost.
//  - the busy handler replaces sqlite3_busy_timeout, whose sleeps no one can cut short:
//    it waits on the context instead, so a lock wait ends the moment the context does.
#include "ctxpp/sqlite/connection.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <thread>
#include <utility>

#include "ctxpp/sqlite/statement.hpp"
#include "connection_state.hpp"

namespace ctxpp::sqlite {
namespace {

int on_progress(void* arg) noexcept {
  const auto* state = static_cast<const detail::ConnectionState*>(arg);
  const Context* ctx = state->active;  // [S2]
  if (ctx == nullptr) return 0;        // a statement run on raw(): not ours to stop
  return ctx->done() || state->interrupted.load(std::memory_order_relaxed) ? 1 : 0;
}

// The pauses between lock attempts: short at first (most locks are brief), then
// longer; the same shape as SQLite's own busy timeout.
constexpr std::array<std::chrono::milliseconds, 12> kBusyPauses{
    std::chrono::milliseconds(1),  std::chrono::milliseconds(2),  std::chrono::milliseconds(5),
    std::chrono::milliseconds(10), std::chrono::milliseconds(15), std::chrono::milliseconds(20),
    std::chrono::milliseconds(25), std::chrono::milliseconds(25), std::chrono::milliseconds(25),
    std::chrono::milliseconds(50), std::chrono::milliseconds(50), std::chrono::milliseconds(100)};

// Returns nonzero to try the lock again, 0 to give up (the statement fails with
// SQLITE_BUSY, reported as the context's error when the context ended).
int on_busy(void* arg, int attempts) noexcept {
  auto* state = static_cast<detail::ConnectionState*>(arg);
  const Context* ctx = state->active;  // [S2]
  if (ctx != nullptr && (ctx->done() || state->interrupted.load(std::memory_order_relaxed))) {
    return 0;
  }
  const clock::time_point now = clock::now();
  if (attempts == 0) state->busy_since = now;
  const clock::duration waited = now - state->busy_since;
  if (waited >= state->busy_timeout) return 0;
  const auto index =
      std::min<std::size_t>(static_cast<std::size_t>(attempts), kBusyPauses.size() - 1);
  const clock::duration pause =
      std::min<clock::duration>(kBusyPauses[index], state->busy_timeout - waited);
  if (ctx != nullptr) {
    // Ends early, and gives up, when the context ends.
    if (ctx->wait_for(pause)) return 0;
  } else {
    std::this_thread::sleep_for(pause);
  }
  return 1;
}

}  // namespace

void detail::validate(const OpenOptions& options) {
  if (options.busy_timeout < clock::duration::zero()) {
    throw std::invalid_argument("ctxpp::sqlite::OpenOptions::busy_timeout must not be negative");
  }
  if (options.progress_steps <= 0) {
    throw std::invalid_argument("ctxpp::sqlite::OpenOptions::progress_steps must be > 0");
  }
}

Connection::Connection() noexcept = default;

Connection::Connection(std::unique_ptr<detail::ConnectionState> state) noexcept
    : state_(std::move(state)), db_(state_ != nullptr ? state_->db : nullptr) {}

Connection::Connection(Connection&& other) noexcept
    : state_(std::move(other.state_)), db_(std::exchange(other.db_, nullptr)) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    close();
    state_ = std::move(other.state_);
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

Connection::~Connection() { close(); }

void Connection::close() noexcept {
  if (state_ == nullptr) return;
  // close_v2 never fails on a valid handle; with statements still unfinalized on
  // raw() it defers the close to the last sqlite3_finalize. The hooks then keep a
  // dangling argument, so take them off first.
  sqlite3_progress_handler(db_, 0, nullptr, nullptr);
  sqlite3_busy_handler(db_, nullptr, nullptr);
  sqlite3_close_v2(db_);
  db_ = nullptr;
  state_.reset();
}

std::string Connection::last_error_message() const {
  if (state_ == nullptr) return {};
  return state_->last_error;
}

std::int64_t Connection::last_insert_rowid() const noexcept {
  return db_ != nullptr ? sqlite3_last_insert_rowid(db_) : 0;
}

bool Connection::in_transaction() const noexcept {
  return db_ != nullptr && sqlite3_get_autocommit(db_) == 0;
}

void Connection::interrupt() noexcept {
  if (state_ == nullptr) return;
  state_->interrupted.store(true, std::memory_order_relaxed);  // [S3]
  sqlite3_interrupt(db_);
}

bool Connection::interrupted() const noexcept {
  return state_ != nullptr && state_->interrupted.load(std::memory_order_relaxed);
}

void Connection::clear_interrupt() noexcept {
  if (state_ != nullptr) state_->interrupted.store(false, std::memory_order_relaxed);
}

Result<Connection> open(const Context& ctx, const std::string& path, const OpenOptions& options) {
  detail::validate(options);
  if (ctx.done()) return ctx.err();

  auto state = std::make_unique<detail::ConnectionState>();
  state->busy_timeout = options.busy_timeout;
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, options.flags, nullptr);
  if (rc != SQLITE_OK) {
    // The handle, when SQLite made one, holds the detailed code; it must be closed.
    const int detailed = db != nullptr ? sqlite3_extended_errcode(db) : rc;
    sqlite3_close_v2(db);
    return make_error_code(detailed != SQLITE_OK ? detailed : rc);
  }
  state->db = db;
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_handler(db, &on_busy, state.get());                                  // [S1]
  sqlite3_progress_handler(db, options.progress_steps, &on_progress, state.get());  // [S1]
  Connection conn = detail::ConnectionAccess::adopt(std::move(state));

  if (options.wal) {
    // Answers with the mode now in force: "memory" for an in-memory database.
    auto switched = execute(ctx, conn, "PRAGMA journal_mode=WAL");
    if (!switched) return switched.error();
  }
  if (options.foreign_keys) {
    auto enabled = execute(ctx, conn, "PRAGMA foreign_keys=ON");
    if (!enabled) return enabled.error();
  }
  return conn;
}

}  // namespace ctxpp::sqlite
