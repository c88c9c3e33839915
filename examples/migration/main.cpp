// Migrating a library to contexts without breaking its callers (docs/migration.md).
//
// `inventory` is a library whose API predates ctxpp. Step 1 added context-taking
// overloads (context first) and made the old functions thin wrappers that pass
// ctxpp::todo(); step 2 marked the old ones deprecated, so every remaining caller
// shows up as a compiler warning; step 3 (a later release) deletes them. This file
// is the library at step 2, one migrated caller and one caller not yet migrated.
#include <chrono>
#include <cstdio>
#include <string>
#include <system_error>
#include <thread>

#include "ctxpp/context.hpp"
#include "ctxpp/result.hpp"

namespace inventory {

// --- the library at step 2 -----------------------------------------------------------

/// Reserves quantity units of sku. Honours ctx: returns ctx.err() once it ends, and
/// never holds a reservation past that point.
ctxpp::Result<int> reserve(const ctxpp::Context& ctx, const std::string& sku, int quantity) {
  // The work is a loop of short steps, each checking the context (one load).
  for (int step = 0; step < 5; ++step) {
    if (ctx.done()) return ctx.err();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // one short storage round trip
  }
  return static_cast<int>(sku.size()) * quantity;  // a reservation id
}

/// The pre-context API, kept so existing callers still build. It cannot be
/// cancelled: todo() marks the missing context for tools and reports.
[[deprecated("pass a ctxpp::Context: inventory::reserve(ctx, sku, quantity)")]] inline int reserve(
    const std::string& sku, int quantity) {
  ctxpp::Result<int> result = reserve(ctxpp::todo(), sku, quantity);
  return result ? *result : -1;  // the old API reported failure as -1
}

/// Interfaces migrate the same way: the new virtual has a default that calls the
/// old one, so existing implementations keep compiling; new ones override it.
class Notifier {
 public:
  virtual ~Notifier() = default;
  [[deprecated("override notify(ctx, message)")]] virtual void notify(const std::string&) {}
  virtual std::error_code notify(const ctxpp::Context& ctx, const std::string& message) {
    if (ctx.done()) return ctx.err();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    notify(message);  // an implementation written before step 1
#pragma GCC diagnostic pop
    return {};
  }
};

}  // namespace inventory

// --- callers ------------------------------------------------------------------------------

class EmailNotifier final : public inventory::Notifier {
 public:
  using Notifier::notify;
  std::error_code notify(const ctxpp::Context& ctx, const std::string& message) override {
    if (ctx.done()) return ctx.err();
    std::printf("  email: %s\n", message.c_str());
    return {};
  }
};

int main() {
  int failures = 0;

  // A migrated caller: its request context reaches the library, so a client that
  // hangs up (here: a deadline that has already passed) stops the reservation.
  auto [request, cancel] = ctxpp::with_timeout(ctxpp::background(), std::chrono::seconds(5));
  ctxpp::Result<int> reserved = inventory::reserve(request, "sku-42", 2);
  std::printf("migrated caller: reservation %d\n", reserved.value_or(-1));
  failures += reserved ? 0 : 1;

  auto [expired, expired_cancel] = ctxpp::with_timeout(request, std::chrono::seconds(0));
  ctxpp::Result<int> refused = inventory::reserve(expired, "sku-42", 2);
  std::printf("migrated caller, deadline passed: %s\n", refused.error().message().c_str());
  failures += refused.error() == ctxpp::errc::deadline_exceeded ? 0 : 1;
  expired_cancel();

  // A caller not yet migrated still builds and works; with -Werror it would have to
  // silence the warning explicitly, which is the point of step 2.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  const int legacy = inventory::reserve("sku-7", 1);
#pragma GCC diagnostic pop
  std::printf("legacy caller: reservation %d\n", legacy);
  failures += legacy > 0 ? 0 : 1;

  EmailNotifier email;
  failures += email.notify(request, "order placed") ? 1 : 0;
  cancel();
  failures += email.notify(request, "too late") == ctxpp::errc::canceled ? 0 : 1;

  std::printf("%s\n", failures == 0 ? "migration example: ok" : "migration example: FAILED");
  return failures == 0 ? 0 : 1;
}
