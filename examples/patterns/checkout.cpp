// examples/patterns/checkout.cpp — a multi-step transaction cancelled as one.
// A checkout reserves stock, charges the card and sends the receipt, all under one
// context: the user's. Every step honours it (co_await ctxpp::sleep_for ends early when
// the user leaves), every completed step arms its compensation with ctxpp::defer, and
// the compensations run in a cleanup context, so they finish although the user's context
// has ended. Runs a completed checkout, one abandoned during payment and one abandoned
// while the receipt is being sent, and checks stock, money and messages after each.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <ctxpp/cleanup.hpp>
#include <ctxpp/context.hpp>
#include <ctxpp/result.hpp>
#include <ctxpp/task.hpp>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = ctxpp::clock;
using pattern_support::expect;
using pattern_support::verdict;

// How long the simulated services take.
constexpr auto kWarehouseRoundTrip = 20ms;
constexpr auto kBankConfirmation = 250ms;
constexpr auto kMailRelay = 250ms;
constexpr auto kBankCall = 5ms;  // a void or a refund
// Each compensation's own budget, counted from when it starts.
constexpr auto kCompensationBudget = 500ms;

// --- a request-scoped trace ------------------------------------------------------------

// The checkout's events, in order. It travels in the context (with_value), so the steps
// and the compensations — which run in a cleanup context, and that keeps the request's
// values — all record into the same trace. The simulated user waits on it to leave at a
// known point instead of guessing with a sleep.
class Trace {
 public:
  Trace() : start_(Clock::now()) {}

  void record(std::string event) {
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start_).count();
    std::lock_guard lock(mutex_);
    std::printf("  %6.1f ms  %s\n", ms, event.c_str());
    events_.push_back(std::move(event));
    changed_.notify_all();
  }

  // Until an event starting with prefix is recorded (true), the trace is closed or the
  // limit has passed (false).
  bool wait_for(std::string_view prefix, Clock::duration limit) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, limit, [&] { return closed_ || position(prefix) >= 0; });
    return position(prefix) >= 0;
  }

  // Wakes a waiter whose event will never come.
  void close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    changed_.notify_all();
  }

  // Index of the first event starting with prefix, or -1.
  int find(std::string_view prefix) const {
    std::lock_guard lock(mutex_);
    return position(prefix);
  }

 private:
  int position(std::string_view prefix) const {
    for (std::size_t i = 0; i < events_.size(); ++i) {
      if (std::string_view(events_[i]).starts_with(prefix)) return static_cast<int>(i);
    }
    return -1;
  }

  const Clock::time_point start_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> events_;
  bool closed_ = false;
};

constexpr ctxpp::Key<Trace*> trace_key{"trace"};

void trace(const ctxpp::Context& ctx, std::string event) {
  if (Trace* const* found = ctx.value(trace_key)) (*found)->record(std::move(event));
}

// Runs one compensation in a cleanup context: it keeps the request's values, is not
// ended by the user leaving, and has its own budget. It runs from a scope guard, maybe
// while another error is being returned, so a failure is recorded, never thrown.
template <class Undo>
void compensate(const ctxpp::Context& ctx, Undo&& undo) {
  if (std::error_code ec = ctxpp::run_cleanup(ctx, kCompensationBudget, std::forward<Undo>(undo))) {
    trace(ctx, "compensation failed: " + ec.message());
  }
}

// --- the three services -------------------------------------------------------------------

class Inventory {
 public:
  explicit Inventory(int stock) : available_(stock) {}

  // Reserves quantity units and returns the reservation's id. If ctx ends during the
  // warehouse round trip, returns its error with nothing reserved.
  ctxpp::Task<ctxpp::Result<int>> reserve(ctxpp::Context ctx, int quantity) {
    if (std::error_code ec = co_await ctxpp::sleep_for(ctx, kWarehouseRoundTrip)) co_return ec;
    int id = 0;
    {
      std::lock_guard lock(mutex_);
      if (available_ < quantity) co_return std::make_error_code(std::errc::no_buffer_space);
      available_ -= quantity;
      id = next_id_++;
      reservations_[id] = quantity;
    }
    trace(ctx, "inventory: reserved " + std::to_string(quantity));
    co_return id;
  }

  // Undoes reserve(). ctx is a cleanup context.
  std::error_code release(const ctxpp::Context& ctx, int reservation) {
    if (ctx.done()) return ctx.err();
    {
      std::lock_guard lock(mutex_);
      auto it = reservations_.find(reservation);
      if (it == reservations_.end()) return std::make_error_code(std::errc::invalid_argument);
      available_ += it->second;
      reservations_.erase(it);
    }
    trace(ctx, "inventory: released the reservation");
    return {};
  }

  int available() const {
    std::lock_guard lock(mutex_);
    return available_;
  }

 private:
  mutable std::mutex mutex_;
  int available_;
  int next_id_ = 1;
  std::map<int, int> reservations_;  // id -> quantity
};

class Payments {
 public:
  // Charges cents and returns the charge's id: places a hold on the card at once, then
  // waits for the bank to confirm it. Until the bank confirms, the hold is this
  // function's to undo: on any way out before that — the user leaving included — it is
  // voided in a cleanup context, so no card stays blocked for an order that is gone.
  ctxpp::Task<ctxpp::Result<int>> charge(ctxpp::Context ctx, int cents) {
    if (ctx.done()) co_return ctx.err();
    const int hold = place_hold(cents);
    trace(ctx, "payment: hold placed");
    auto release_hold = ctxpp::defer([&] {
      compensate(ctx, [&](const ctxpp::Context& cleanup) { return void_hold(cleanup, hold); });
    });
    if (std::error_code ec = co_await ctxpp::sleep_for(ctx, kBankConfirmation)) co_return ec;
    capture(hold);
    std::move(release_hold).cancel();  // the money is taken: from here, undoing it is a refund
    trace(ctx, "payment: captured");
    co_return hold;
  }

  // Undoes a captured charge. ctx is a cleanup context.
  std::error_code refund(const ctxpp::Context& ctx, int charge) {
    if (ctx.wait_for(kBankCall)) return ctx.err();  // the budget ran out during the call
    {
      std::lock_guard lock(mutex_);
      auto it = captured_.find(charge);
      if (it == captured_.end()) return std::make_error_code(std::errc::invalid_argument);
      refunded_cents_ += it->second;
      captured_.erase(it);
    }
    trace(ctx, "payment: refunded");
    return {};
  }

  int held_cents() const { return sum(held_); }
  int captured_cents() const { return sum(captured_); }  // kept: captured, not refunded
  int refunded_cents() const {
    std::lock_guard lock(mutex_);
    return refunded_cents_;
  }

 private:
  int place_hold(int cents) {
    std::lock_guard lock(mutex_);
    held_[next_id_] = cents;
    return next_id_++;
  }

  void capture(int hold) {
    std::lock_guard lock(mutex_);
    captured_[hold] = held_[hold];
    held_.erase(hold);
  }

  std::error_code void_hold(const ctxpp::Context& ctx, int hold) {
    if (ctx.wait_for(kBankCall)) return ctx.err();
    {
      std::lock_guard lock(mutex_);
      if (held_.erase(hold) == 0) return std::make_error_code(std::errc::invalid_argument);
    }
    trace(ctx, "payment: hold voided");
    return {};
  }

  int sum(const std::map<int, int>& amounts) const {
    std::lock_guard lock(mutex_);
    int total = 0;
    for (const auto& [id, cents] : amounts) total += cents;
    return total;
  }

  mutable std::mutex mutex_;
  int next_id_ = 1;
  std::map<int, int> held_;      // id -> cents, placed and not yet confirmed
  std::map<int, int> captured_;  // id -> cents, taken and not refunded
  int refunded_cents_ = 0;
};

class Notifications {
 public:
  // Sends the receipt. A receipt for an abandoned order must never go out, so the
  // message is handed to the relay only if ctx is still live after composing it.
  ctxpp::Task<std::error_code> send_receipt(ctxpp::Context ctx, std::string to) {
    if (ctx.done()) co_return ctx.err();
    trace(ctx, "notification: started");
    if (std::error_code ec = co_await ctxpp::sleep_for(ctx, kMailRelay)) {
      trace(ctx, "notification: dropped, not sent");
      co_return ec;
    }
    {
      std::lock_guard lock(mutex_);
      ++sent_;
    }
    trace(ctx, "notification: receipt sent to " + to);
    co_return std::error_code{};
  }

  int sent() const {
    std::lock_guard lock(mutex_);
    return sent_;
  }

 private:
  mutable std::mutex mutex_;
  int sent_ = 0;
};

struct Shop {
  Inventory inventory{10};
  Payments payments;
  Notifications notifications;
};

// --- the transaction ------------------------------------------------------------------------

struct Order {
  std::string email;
  int quantity = 0;
  int cents = 0;
};

struct Receipt {
  int reservation = 0;
  int charge = 0;
};

// The whole checkout under one context. Every step receives ctx, so one cancel — the
// user leaving — reaches whichever step is running, and the later steps never start.
// Each completed step arms its compensation; on any way out they run in reverse order,
// until the commit at the end disarms them all at once.
ctxpp::Task<ctxpp::Result<Receipt>> checkout(ctxpp::Context ctx, Shop& shop, Order order) {
  ctxpp::Result<int> reservation = co_await shop.inventory.reserve(ctx, order.quantity);
  if (!reservation) co_return reservation.error();
  auto release = ctxpp::defer([&] {
    compensate(ctx, [&](const ctxpp::Context& cleanup) {
      return shop.inventory.release(cleanup, *reservation);
    });
  });

  ctxpp::Result<int> charge = co_await shop.payments.charge(ctx, order.cents);
  if (!charge) co_return charge.error();
  auto refund = ctxpp::defer([&] {
    compensate(
        ctx, [&](const ctxpp::Context& cleanup) { return shop.payments.refund(cleanup, *charge); });
  });

  if (std::error_code ec = co_await shop.notifications.send_receipt(ctx, order.email)) {
    co_return ec;
  }

  // Committed: all three steps happened, so nothing is to be undone.
  std::move(refund).cancel();
  std::move(release).cancel();
  co_return Receipt{*reservation, *charge};
}

// --- the simulated users -------------------------------------------------------------------

struct Run {
  ctxpp::Result<Receipt> result;
  double stopped_ms = -1;  // from the user leaving to checkout returning; -1 if they stayed
};

// Runs one checkout as a server would: in the user's session context, with a trace.
// If leave_after names an event, the user abandons the checkout a moment after it.
Run run_checkout(const ctxpp::Context& server, Shop& shop, const Order& order, Trace& trace,
                 std::string_view leave_after) {
  auto session = ctxpp::with_cancel(server);
  const ctxpp::Context ctx = ctxpp::with_value(session.ctx, trace_key, &trace);

  Clock::time_point left_at{};
  std::thread user;
  if (!leave_after.empty()) {
    user = std::thread([&] {
      if (!trace.wait_for(leave_after, 5s)) return;
      std::this_thread::sleep_for(5ms);  // the user hesitates: the step is well under way
      left_at = Clock::now();
      trace.record("user: abandoned the checkout");
      session.cancel();
    });
  }
  Run run{ctxpp::sync_wait(checkout(ctx, shop, order))};
  const Clock::time_point returned_at = Clock::now();
  trace.close();
  // ctxpp-audit: ignore CTX004 — the user thread ends within 5 s by itself
  if (user.joinable()) user.join();
  session.cancel();  // the session is over either way: release its node
  if (left_at != Clock::time_point{}) {
    run.stopped_ms = std::chrono::duration<double, std::milli>(returned_at - left_at).count();
  }
  return run;
}

}  // namespace

int main() {
  auto server = ctxpp::with_cancel(ctxpp::background());
  Shop shop;
  const int stock = shop.inventory.available();
  const Order order{"alice@example.com", 2, 4599};

  std::printf("1. completed checkout\n");
  {
    Trace trace;
    Run run = run_checkout(server.ctx, shop, order, trace, {});
    expect(run.result.has_value(), "the checkout succeeded");
    expect(trace.find("notification: receipt sent") >= 0, "the receipt was sent");
    expect(trace.find("inventory: released") < 0 && trace.find("payment: refunded") < 0,
           "nothing was compensated");
    expect(shop.inventory.available() == stock - order.quantity, "the stock was taken");
    expect(shop.payments.captured_cents() == order.cents, "the card was charged once");
  }

  std::printf("2. abandoned during payment\n");
  {
    Trace trace;
    Run run = run_checkout(server.ctx, shop, order, trace, "payment: hold placed");
    std::printf("  checkout returned \"%s\" %.2f ms after the user left (compensations included)\n",
                run.result.error().message().c_str(), run.stopped_ms);
    expect(run.result.error() == ctxpp::errc::canceled, "the checkout reports errc::canceled");
    expect(trace.find("notification: started") < 0, "the notification never started");
    expect(trace.find("payment: hold voided") >= 0, "the card hold was voided");
    expect(trace.find("inventory: released") >= 0, "the reservation was released");
    expect(run.stopped_ms >= 0 && run.stopped_ms < 500, "the checkout stopped promptly");
  }

  std::printf("3. abandoned while the receipt is being sent\n");
  {
    Trace trace;
    Run run = run_checkout(server.ctx, shop, order, trace, "notification: started");
    std::printf("  checkout returned \"%s\" %.2f ms after the user left (compensations included)\n",
                run.result.error().message().c_str(), run.stopped_ms);
    expect(run.result.error() == ctxpp::errc::canceled, "the checkout reports errc::canceled");
    expect(trace.find("notification: receipt sent") < 0, "no receipt went out");
    const int refunded = trace.find("payment: refunded");
    const int released = trace.find("inventory: released");
    expect(refunded >= 0 && released > refunded, "refunded, then released: reverse order");
    expect(run.stopped_ms >= 0 && run.stopped_ms < 500, "the checkout stopped promptly");
  }

  // Across all three: exactly the completed order left a trace in stock, money and mail.
  expect(shop.inventory.available() == stock - order.quantity, "only one order holds stock");
  expect(shop.payments.held_cents() == 0, "no card hold is left");
  expect(shop.payments.captured_cents() == order.cents, "exactly one payment was kept");
  expect(shop.payments.refunded_cents() == order.cents, "the other captured one was refunded");
  expect(shop.notifications.sent() == 1, "exactly one receipt was sent");
  server.cancel();

  return verdict("checkout pattern");
}
