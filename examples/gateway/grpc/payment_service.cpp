// PaymentService: Charge waits on the call's context, so a cancelled or expired caller
// stops it at once; every call is counted and recorded when its work stops.
#include "payment_service.hpp"

#include <chrono>
#include <cstdio>
#include <utility>

#include "ctxpp/grpc/status.hpp"
#include "ctxpp/grpc/unary_reactor.hpp"

namespace ctxpp::gateway {
namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string request_id_of(const ::grpc::CallbackServerContext& server_context) {
  const auto& metadata = server_context.client_metadata();
  const auto found = metadata.find("x-request-id");
  if (found == metadata.end()) return {};
  return {found->second.data(), found->second.size()};
}

std::string outcome_of(const ::grpc::Status& status) {
  switch (status.error_code()) {
    case ::grpc::StatusCode::OK:
      return "ok";
    case ::grpc::StatusCode::CANCELLED:
      return "canceled";
    case ::grpc::StatusCode::DEADLINE_EXCEEDED:
      return "deadline_exceeded";
    case ::grpc::StatusCode::INVALID_ARGUMENT:
      return "invalid_argument";
    case ::grpc::StatusCode::NOT_FOUND:
      return "not_found";
    default:
      return "error";
  }
}

// JSON string contents: request ids come from clients, so escape what JSON requires.
void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace

PaymentService::PaymentService(const Context& lifetime, Executor& executor, std::size_t history)
    : lifetime_(lifetime), executor_(executor), history_(history) {}

::grpc::ServerUnaryReactor* PaymentService::Charge(::grpc::CallbackServerContext* server_context,
                                                   const ChargeRequest* request,
                                                   ChargeReply* reply) {
  PaymentCall call{"Charge", request_id_of(*server_context), now_ns(), 0, {}};
  {
    std::lock_guard lock(mutex_);
    ++in_flight_;
  }
  return grpc::UnaryReactor::start(
      lifetime_, server_context, executor_,
      [this, request, reply, call](const Context& ctx) mutable {
        ::grpc::Status status;
        if (request->amount_cents() <= 0 || request->delay_ms() < 0) {
          status = ::grpc::Status(::grpc::StatusCode::INVALID_ARGUMENT,
                                  "amount_cents must be positive, delay_ms not negative");
        } else if (ctx.wait_for(std::chrono::milliseconds(request->delay_ms()))) {
          status = grpc::to_status(ctx.err());  // the caller gave up: stop here
        } else {
          std::lock_guard lock(mutex_);
          // Keyed by the caller's request id when it sent one: a caller whose answer
          // never arrived (it gave up just as the charge went through) can still refund,
          // and a refund that overtook this charge voids it.
          std::string id = call.request_id.empty() ? "pay-" + std::to_string(next_payment_++)
                                                   : "pay-" + call.request_id;
          if (refunded_early_.erase(id) == 0) charged_.insert(id);
          reply->set_payment_id(std::move(id));
        }
        finish(std::move(call), status);
        return status;
      });
}

::grpc::ServerUnaryReactor* PaymentService::Refund(::grpc::CallbackServerContext* server_context,
                                                   const RefundRequest* request,
                                                   RefundReply* /*reply*/) {
  PaymentCall call{"Refund", request_id_of(*server_context), now_ns(), 0, {}};
  {
    std::lock_guard lock(mutex_);
    ++in_flight_;
  }
  return grpc::UnaryReactor::start(
      lifetime_, server_context, executor_, [this, request, call](const Context& ctx) mutable {
        ::grpc::Status status;
        if (ctx.done()) {
          status = grpc::to_status(ctx.err());
        } else {
          std::lock_guard lock(mutex_);
          if (charged_.erase(request->payment_id()) == 0) {
            refunded_early_.insert(request->payment_id());
            status = ::grpc::Status(::grpc::StatusCode::NOT_FOUND, "no such payment");
          }
        }
        finish(std::move(call), status);
        return status;
      });
}

std::int64_t PaymentService::open_payments() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::int64_t>(charged_.size());
}

void PaymentService::finish(PaymentCall call, const ::grpc::Status& status) {
  call.end_ns = now_ns();
  call.outcome = outcome_of(status);
  std::lock_guard lock(mutex_);
  --in_flight_;
  if (status.ok()) {
    ++completed_;
  } else if (status.error_code() == ::grpc::StatusCode::CANCELLED ||
             status.error_code() == ::grpc::StatusCode::DEADLINE_EXCEEDED) {
    ++canceled_;
  } else {
    ++failed_;
  }
  if (history_ == 0) return;
  if (recent_.size() == history_) recent_.pop_front();
  recent_.push_back(std::move(call));
}

std::int64_t PaymentService::in_flight() const noexcept {
  std::lock_guard lock(mutex_);
  return in_flight_;
}

std::int64_t PaymentService::completed() const noexcept {
  std::lock_guard lock(mutex_);
  return completed_;
}

std::int64_t PaymentService::canceled() const noexcept {
  std::lock_guard lock(mutex_);
  return canceled_;
}

std::int64_t PaymentService::failed() const noexcept {
  std::lock_guard lock(mutex_);
  return failed_;
}

std::vector<PaymentCall> PaymentService::recent_calls() const {
  std::lock_guard lock(mutex_);
  return {recent_.begin(), recent_.end()};
}

std::string PaymentService::stats_json() const {
  std::int64_t in_flight = 0;
  std::int64_t completed = 0;
  std::int64_t canceled = 0;
  std::int64_t failed = 0;
  std::vector<PaymentCall> calls;
  {
    std::lock_guard lock(mutex_);
    in_flight = in_flight_;
    completed = completed_;
    canceled = canceled_;
    failed = failed_;
    calls.assign(recent_.begin(), recent_.end());
  }
  std::string out = "{\"in_flight\":" + std::to_string(in_flight) +
                    ",\"completed\":" + std::to_string(completed) +
                    ",\"canceled\":" + std::to_string(canceled) +
                    ",\"failed\":" + std::to_string(failed) + ",\"calls\":[";
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (i != 0) out += ',';
    out += "{\"method\":";
    append_json_string(out, calls[i].method);
    out += ",\"request_id\":";
    append_json_string(out, calls[i].request_id);
    out += ",\"start_ns\":" + std::to_string(calls[i].start_ns);
    out += ",\"end_ns\":" + std::to_string(calls[i].end_ns);
    out += ",\"outcome\":";
    append_json_string(out, calls[i].outcome);
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace ctxpp::gateway
