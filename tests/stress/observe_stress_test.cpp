// Stress tests of observation: request trees created, scoped and cancelled from many
// threads while observers are added and removed, the live view is rendered and the
// debug sweep runs — the record lifetimes (observe.cpp [O1]-[O3]) under fire.
//
// Prints its seed and takes one from CTXPP_SEED; bounded by iterations and ~5 s of
// wall time (a tenth of the iterations under ThreadSanitizer); a watchdog turns a
// hang into a failure.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ctxpp/current.hpp"
#include "ctxpp/debug.hpp"
#include "ctxpp/observe.hpp"
#include "ctxpp/scoped_callback.hpp"
#include "support/stress_support.hpp"

namespace {

using namespace std::chrono_literals;

class CheckingObserver final : public ctxpp::Observer {
 public:
  void on_event(const ctxpp::Event& event) noexcept override {
    events_.fetch_add(1, std::memory_order_relaxed);
    // The origin of a cancellation is itself; a descendant names an origin.
    if (event.kind == ctxpp::EventKind::canceled && event.context_id != 0 &&
        event.origin_id != event.context_id) {
      bad_.fetch_add(1, std::memory_order_relaxed);
    }
    if (event.kind == ctxpp::EventKind::propagated &&
        (event.origin_id == 0 || event.delay < ctxpp::clock::duration::zero() || !event.error)) {
      bad_.fetch_add(1, std::memory_order_relaxed);
    }
    // Views are valid during the call: touch them.
    sink_.fetch_add(event.name.size() + event.component.size(), std::memory_order_relaxed);
  }
  std::uint64_t events() const { return events_.load(); }
  std::uint64_t bad() const { return bad_.load(); }

 private:
  std::atomic<std::uint64_t> events_{0};
  std::atomic<std::uint64_t> bad_{0};
  std::atomic<std::uint64_t> sink_{0};
};

TEST(ObserveStress, TreesCancelledWhileObserversComeAndGo) {
  const std::uint64_t seed = ctxpp_test::announce_seed();
  const std::size_t live_before = ctxpp::live_tracked_contexts();
  ctxpp_test::Watchdog watchdog(60s);
  ctxpp::DebugOptions debug;
  debug.mode = ctxpp::DebugMode::all;
  debug.linger_bound = 1ms;
  ctxpp::set_debug(debug);

  auto observer = std::make_shared<CheckingObserver>();
  std::atomic<bool> stop{false};
  ctxpp_test::Failures failures;

  // Observers added and removed, the tree rendered and the sweep run, all the time.
  std::thread churn([&] {
    while (!stop.load()) {
      auto extra = ctxpp::add_observer(std::make_shared<CheckingObserver>());
      const std::string json = ctxpp::render_context_tree_json();
      if (json.rfind("{\"contexts\":[", 0) != 0) failures.report([] { return "bad tree JSON"; });
      (void)ctxpp::take_debug_findings();
      extra.reset();
      std::this_thread::yield();
    }
  });
  const ctxpp::ObserverRegistration registration = ctxpp::add_observer(observer);

  constexpr int kThreads = 3;
  std::vector<std::thread> workers;
  std::atomic<std::size_t> iterations{0};
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 random(seed + static_cast<std::uint64_t>(t));
      ctxpp_test::Budget budget(3000);
      while (budget.next()) {
        auto [root, cancel_root] =
            ctxpp::with_cancel(ctxpp::with_name(ctxpp::background(), "request"));
        ctxpp::ContextScope request(root);
        std::vector<ctxpp::WithCancel<ctxpp::Context, ctxpp::CancelFunc>> children;
        const int width = 1 + static_cast<int>(random() % 6);
        for (int i = 0; i < width; ++i) {
          const ctxpp::Context& parent = children.empty() || random() % 2 == 0
                                             ? root
                                             : children[random() % children.size()].ctx;
          if (random() % 3 == 0) {
            children.push_back(
                ctxpp::with_timeout(parent, std::chrono::microseconds(random() % 200)));
          } else {
            children.push_back(ctxpp::with_cancel(parent));
          }
        }
        // A component on another thread, racing the cancel below.
        std::thread component([ctx = children[random() % children.size()].ctx] {
          ctxpp::ComponentScope scope(ctx, "db");
          ctx.wait_for(2ms);
        });
        if (random() % 2 == 0) children[random() % children.size()].cancel();
        cancel_root();
        component.join();
        ++iterations;
      }
    });
  }
  for (auto& w : workers) w.join();
  stop.store(true);
  churn.join();
  ctxpp::set_debug({});
  (void)ctxpp::take_debug_findings();
  std::printf("%zu trees, %llu events\n", iterations.load(),
              static_cast<unsigned long long>(observer->events()));
  EXPECT_EQ(observer->bad(), 0U);
  EXPECT_GT(observer->events(), 0U);
  EXPECT_FALSE(failures.any());
  EXPECT_EQ(ctxpp::live_tracked_contexts(), live_before) << "every record went with its node";
}

}  // namespace
