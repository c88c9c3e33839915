// Seeing cancellation: two requests through a tiny two-component service, each
// step of their cancellation written as JSON lines, the live context tree printed,
// and, with --broken, the middleware bug the debug mode is there to catch.
//
//   ctxpp-example-observe              events on stdout, then the tree, exit 0
//   CTXPP_DEBUG=leaks,chains ctxpp-example-observe --broken
//                                      the same with a middleware that re-roots each
//                                      request on background() and forgets a cancel:
//                                      the debug report at exit names both sites
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/current.hpp"
#include "ctxpp/debug.hpp"
#include "ctxpp/observe.hpp"
#include "ctxpp/observers.hpp"

using namespace std::chrono_literals;

namespace {

bool broken = false;

// A component: works until its context ends, then cleans up (2 ms).
void component(const ctxpp::Context& ctx, const char* name) {
  ctxpp::ComponentScope scope(ctx, name);
  ctx.wait_for(5s);
  // ctxpp-audit: ignore CTX004 (the cleanup runs after the end, on purpose)
  std::this_thread::sleep_for(2ms);  // closing connections, rolling back
}

// The middleware: attaches the user to the request. The broken version re-roots the
// request on background() — the client's disconnect no longer reaches the work.
ctxpp::Context attach_user(const ctxpp::Context& request) {
  if (broken) {
    // A cancel handle made and dropped, too: nobody can ever end this context.
    // ctxpp-audit: ignore CTX002, CTX003 (the seeded mistakes the debug mode reports)
    auto [user_ctx, forgotten] = ctxpp::with_cancel(ctxpp::background());
    return user_ctx;
  }
  return ctxpp::with_name(request, "user:42");
}

void handle(const ctxpp::Context& request) {
  ctxpp::ContextScope scope(request);
  const ctxpp::Context ctx = attach_user(ctxpp::current());
  auto [work, done] = ctxpp::with_timeout(ctx, 1s);
  std::thread db(component, work, "db");
  std::thread upstream(component, work, "upstream");
  // Each component returns once work ends (its deadline bounds it).
  db.join();        // ctxpp-audit: ignore CTX004
  upstream.join();  // ctxpp-audit: ignore CTX004
  done();
}

}  // namespace

int main(int argc, char** argv) {
  broken = argc > 1 && std::strcmp(argv[1], "--broken") == 0;
  auto json = std::make_shared<ctxpp::JsonLinesObserver>(std::cout);
  const ctxpp::ObserverRegistration registration = ctxpp::add_observer(json);

  std::vector<std::thread> clients;
  // Request 1: the client hangs up after 10 ms.
  auto [connection1, hang_up] = ctxpp::with_cancel(ctxpp::background());
  clients.emplace_back(handle, ctxpp::with_name(connection1, "GET /report (client leaves)"));
  // Request 2: a 20 ms deadline from the client's header.
  auto [deadline2, cancel2] =
      ctxpp::with_timeout(ctxpp::with_name(ctxpp::background(), "GET /orders (20 ms)"), 20ms);
  clients.emplace_back(handle, deadline2);
  std::this_thread::sleep_for(10ms);
  std::cerr << ctxpp::render_context_tree_text();
  hang_up();
  if (broken) {
    // Nothing reaches the work any more: end it the hard way so the demo finishes.
    std::this_thread::sleep_for(100ms);
  }
  for (auto& client : clients) client.join();
  cancel2();
  std::cerr << "events written: " << json->written() << "\n";
  return 0;
}
