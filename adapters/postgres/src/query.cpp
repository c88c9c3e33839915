// query(): one statement over libpq's asynchronous API, cancelled server-side when
// its context ends.
//
// The deadline lives in the context, not in the server's statement_timeout: a
// context also ends for reasons the server cannot know (a client gone, a sibling
// failed, a parent's deadline that moved closer), setting statement_timeout would
// cost a round trip per statement (or leave a stale value on a pooled
// connection), and its 57014 error could not be told apart from an administrator's
// cancel. One mechanism, PQcancel when ctx ends, covers every ending; a
// statement_timeout the application sets itself still works and is reported as
// errc::interrupted.
//
// Every statement follows the same path: send (non-blocking), then poll() the
// socket together with ctx's done_fd() until libpq has every result and
// PQgetResult() returns nullptr. When ctx ends first, cancel_and_drain() takes over:
// one cancel request (repeated every cancel_retry_interval), then the same reading
// without ctx, for drain_timeout at most. Only a connection read to the end of its
// statement is healthy; every other way out marks it broken.
#include "ctxpp/postgres/query.hpp"

#include <poll.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "connection_state.hpp"

namespace ctxpp::postgres {

int QueryResult::rows() const noexcept { return result_ == nullptr ? 0 : PQntuples(result_); }

int QueryResult::columns() const noexcept { return result_ == nullptr ? 0 : PQnfields(result_); }

std::string_view QueryResult::column_name(int column) const noexcept {
  if (result_ == nullptr || column < 0 || column >= PQnfields(result_)) return {};
  const char* name = PQfname(result_, column);
  return name == nullptr ? std::string_view() : std::string_view(name);
}

int QueryResult::column_index(std::string_view name) const noexcept {
  // PQfnumber folds unquoted names to lower case; compare exactly instead.
  for (int column = 0; column < columns(); ++column) {
    if (column_name(column) == name) return column;
  }
  return -1;
}

unsigned QueryResult::column_type(int column) const noexcept {
  if (result_ == nullptr || column < 0 || column >= PQnfields(result_)) return 0;
  return PQftype(result_, column);
}

bool QueryResult::is_null(int row, int column) const noexcept {
  // Checked here: libpq reports out-of-range access through the notice processor.
  if (result_ == nullptr || row < 0 || row >= PQntuples(result_) || column < 0 ||
      column >= PQnfields(result_)) {
    return true;
  }
  return PQgetisnull(result_, row, column) != 0;
}

std::string_view QueryResult::value(int row, int column) const noexcept {
  if (is_null(row, column)) return {};
  return {PQgetvalue(result_, row, column),
          static_cast<std::size_t>(PQgetlength(result_, row, column))};
}

std::uint64_t QueryResult::affected_rows() const noexcept {
  if (result_ == nullptr) return 0;
  const char* text = PQcmdTuples(result_);
  std::uint64_t count = 0;
  if (text != nullptr) (void)std::from_chars(text, text + std::strlen(text), count);
  return count;
}

std::string_view QueryResult::command_tag() const noexcept {
  if (result_ == nullptr) return {};
  const char* tag = PQcmdStatus(result_);
  return tag == nullptr ? std::string_view() : std::string_view(tag);
}

namespace {

using detail::ConnectionState;

constexpr std::size_t kMaxParams = 65535;

enum class Progress {
  waiting,  // libpq needs more input (or output flushed) before the statement is over
  done,     // PQgetResult returned nullptr: the server finished the statement
  failed,   // the connection broke, or a result query() cannot handle arrived
};

// What one statement has produced so far.
struct Exchange {
  bool need_flush = true;  // output may still sit in libpq's buffer
  bool copy = false;       // a COPY result arrived: the connection is mid-COPY
  QueryResult kept;        // the statement's result (the first, or the first error)
};

bool is_error(const QueryResult& result) noexcept {
  const ExecStatusType status = PQresultStatus(result.raw());
  return status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR ||
         status == PGRES_BAD_RESPONSE;
}

// Moves the exchange forward without blocking: reads what arrived (revents from
// poll), flushes output, collects the results libpq has completed.
Progress advance(ConnectionState& state, Exchange& exchange, int revents) {
  PGconn* conn = state.conn;
  bool failed = false;
  if ((revents & (POLLIN | POLLERR | POLLHUP)) != 0 && PQconsumeInput(conn) == 0) {
    failed = true;  // still collect below: the server's last words may be parsed
  }
  if (!failed && exchange.need_flush) {
    // libpq's rule for non-blocking sends: consume input whenever the socket is
    // readable, and flush again until PQflush returns 0.
    const int flushed = PQflush(conn);
    if (flushed < 0) failed = true;
    exchange.need_flush = flushed == 1;
  }
  while (!PQisBusy(conn)) {
    PGresult* result = PQgetResult(conn);
    if (result == nullptr) return failed ? Progress::failed : Progress::done;
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      PQclear(result);
      exchange.copy = true;
      return Progress::failed;
    }
    QueryResult owned(result);
    if (exchange.kept.raw() == nullptr || (is_error(owned) && !is_error(exchange.kept))) {
      exchange.kept = std::move(owned);
    }
  }
  return failed ? Progress::failed : Progress::waiting;
}

// Saves the server's text and SQLSTATE of an error result, or libpq's own message.
void record_error(ConnectionState& state, const QueryResult& result) {
  if (result.raw() != nullptr && is_error(result)) {
    state.last_error_message = detail::trimmed(PQresultErrorMessage(result.raw()));
    const char* sqlstate = PQresultErrorField(result.raw(), PG_DIAG_SQLSTATE);
    state.last_sqlstate = sqlstate != nullptr ? sqlstate : "";
  }
  if (state.last_error_message.empty()) {
    state.last_error_message = detail::trimmed(PQerrorMessage(state.conn));
  }
}

int ms_until(clock::time_point when) noexcept {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(when - clock::now()).count();
  return static_cast<int>(std::clamp<decltype(left)>(left, 0, 1'000'000));
}

// ctx has ended (or the connection was interrupted) while the statement runs:
// cancel it server-side and read the connection to the end of the statement, or
// give the connection up. Returns error either way (style: the context's error,
// never the 57014 symptom).
std::error_code cancel_and_drain(ConnectionState& state, Exchange& exchange, std::error_code error,
                                 const QueryOptions& options) {
  // Whatever already arrived first: a statement that has just finished needs no
  // cancel request (and its ~10 ms).
  Progress progress = advance(state, exchange, POLLIN);
  // The drain is timed from the first request's delivery: PQcancel itself can take
  // long when many connections cancel at once (the postmaster forks for each).
  clock::time_point deadline = clock::time_point::max();
  clock::time_point next_cancel = clock::now();
  bool first_request = true;
  while (progress == Progress::waiting) {
    if (clock::now() >= next_cancel) {
      // The first request joins one a concurrent request_cancel() or interrupt()
      // already delivered; later ones repeat it, since the server drops a request
      // that arrives before it has read the statement.
      (void)detail::send_cancel(
          state, first_request ? detail::CancelMode::join : detail::CancelMode::retry);
      if (first_request) deadline = clock::now() + options.drain_timeout;
      first_request = false;
      next_cancel = clock::now() + std::max<clock::duration>(options.cancel_retry_interval,
                                                             std::chrono::milliseconds(1));
    }
    if (clock::now() >= deadline) break;
    const int sock = PQsocket(state.conn);
    if (sock < 0) break;
    const short events = static_cast<short>(POLLIN | (exchange.need_flush ? POLLOUT : 0));
    const int revents =
        detail::wait_socket(sock, events, -1, ms_until(std::min(deadline, next_cancel)));
    if (revents < 0) break;
    if (revents > 0) progress = advance(state, exchange, revents);
  }
  if (exchange.kept.raw() != nullptr && is_error(exchange.kept)) record_error(state, exchange.kept);
  if (progress != Progress::done || exchange.copy || PQstatus(state.conn) != CONNECTION_OK) {
    state.broken = true;
    if (state.last_error_message.empty()) {
      state.last_error_message =
          progress == Progress::waiting
              ? "the cancelled statement was not drained in time; connection discarded"
              : detail::trimmed(PQerrorMessage(state.conn));
    }
  }
  return error;
}

// Ends a begun statement's generation on every way out of query() (I4).
class StatementEnd {
 public:
  explicit StatementEnd(ConnectionState& state) noexcept : state_(state) {}
  StatementEnd(const StatementEnd&) = delete;
  StatementEnd& operator=(const StatementEnd&) = delete;
  ~StatementEnd() { detail::end_statement(state_); }

 private:
  ConnectionState& state_;
};

}  // namespace

Result<QueryResult> query(const Context& ctx, Connection& conn, std::string_view sql, Params params,
                          const QueryOptions& options) {
  ConnectionState* state = detail::ConnectionAccess::state(conn);
  if (state == nullptr) return make_error_code(errc::not_connected);
  state->last_error_message.clear();
  state->last_sqlstate.clear();
  if (conn.broken()) {
    state->broken = true;
    state->last_error_message = detail::trimmed(PQerrorMessage(state->conn));
    if (state->last_error_message.empty()) state->last_error_message = "connection is broken";
    return make_error_code(errc::broken_connection);
  }
  if (ctx.done()) return ctx.err();  // nothing is sent
  if (PQisBusy(state->conn) != 0 || PQisnonblocking(state->conn) == 0) {
    state->last_error_message =
        "the connection is busy or in blocking mode (changed through raw()?)";
    return make_error_code(errc::protocol);
  }

  // libpq takes NUL-terminated text: one buffer for the statement and every value.
  const std::span<const Param> values = params.values();
  if (values.size() > kMaxParams) {
    state->last_error_message = "more than 65535 parameters";
    return make_error_code(errc::query_failed);  // the protocol counts them in 16 bits
  }
  std::string buffer;
  std::size_t size = sql.size() + 1;
  for (const Param& value : values) size += value ? value->size() + 1 : 0;
  buffer.reserve(size);
  buffer.append(sql).push_back('\0');
  std::vector<std::size_t> offsets;
  offsets.reserve(values.size());
  for (const Param& value : values) {
    offsets.push_back(value ? buffer.size() : std::string::npos);
    if (value) buffer.append(*value).push_back('\0');
  }
  std::vector<const char*> pointers(values.size(), nullptr);
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (offsets[i] != std::string::npos) pointers[i] = buffer.data() + offsets[i];
  }
  const int ctx_fd = detail::context_fd(ctx);

  if (!detail::begin_statement(*state)) {
    state->last_error_message = "the connection is interrupted (Connection::interrupt())";
    return make_error_code(errc::interrupted);  // nothing is sent (I5)
  }
  const StatementEnd end(*state);
  if (PQsendQueryParams(state->conn, buffer.data(), static_cast<int>(values.size()), nullptr,
                        pointers.data(), nullptr, nullptr, 0) == 0) {
    state->last_error_message = detail::trimmed(PQerrorMessage(state->conn));
    if (PQstatus(state->conn) != CONNECTION_OK) {
      state->broken = true;
      return make_error_code(errc::broken_connection);
    }
    return make_error_code(errc::query_failed);  // refused by libpq
  }

  Exchange exchange;
  Progress progress = advance(*state, exchange, 0);
  while (progress == Progress::waiting) {
    const int sock = PQsocket(state->conn);
    if (sock < 0) {
      progress = Progress::failed;
      break;
    }
    const short events = static_cast<short>(POLLIN | (exchange.need_flush ? POLLOUT : 0));
    const int revents = detail::wait_socket(
        sock, events, ctx_fd, detail::context_wait_ms(ctx_fd, state->wake_fd), state->wake_fd);
    if (ctx.done()) return cancel_and_drain(*state, exchange, ctx.err(), options);
    if (state->interrupted.load(std::memory_order_acquire)) {  // I5
      return cancel_and_drain(*state, exchange, make_error_code(errc::interrupted), options);
    }
    if (revents < 0) {
      progress = Progress::failed;
      break;
    }
    if (revents > 0) progress = advance(*state, exchange, revents);
  }

  if (progress == Progress::failed) {
    state->broken = true;
    record_error(*state, exchange.kept);
    if (exchange.copy) {
      state->last_error_message = "COPY is not supported by query(); connection discarded";
      return make_error_code(errc::protocol);
    }
    return make_error_code(errc::broken_connection);
  }
  if (exchange.kept.raw() == nullptr) {
    state->broken = true;
    state->last_error_message = "the server sent no result for the statement";
    return make_error_code(errc::protocol);
  }
  switch (PQresultStatus(exchange.kept.raw())) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
      return std::move(exchange.kept);
    case PGRES_FATAL_ERROR:
    case PGRES_NONFATAL_ERROR:
      record_error(*state, exchange.kept);
      if (PQstatus(state->conn) != CONNECTION_OK) {
        state->broken = true;
        return make_error_code(errc::broken_connection);
      }
      if (state->last_sqlstate == "57014") {  // query_canceled
        // ctx may have ended just as a cancel from elsewhere landed: its error wins.
        if (ctx.done()) return ctx.err();
        return make_error_code(errc::interrupted);
      }
      return make_error_code(errc::query_failed);
    default:  // PGRES_BAD_RESPONSE, pipeline states: the protocol state is unknown
      record_error(*state, exchange.kept);
      state->broken = true;
      return make_error_code(errc::protocol);
  }
}

}  // namespace ctxpp::postgres
