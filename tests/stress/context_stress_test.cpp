// Stress tests of the context tree: many threads cancelling parents and children
// at once, cancel racing deadlines, child creation racing a parent's cancel,
// done() polled by 64 threads, handles dropped mid-cancel, merges racing their
// inputs (pitfalls 10-14, 16, 19, 31 of design/pitfalls.md).
//
// Every test prints its seed and takes one from CTXPP_SEED; each is bounded both by
// an iteration count and by ~5 s of wall time, and is cut 10x under ThreadSanitizer.
// Nothing sleeps to synchronise. Each body runs under a watchdog: a hang fails the
// test with a dump of the process's threads instead of blocking ctest.
#include "ctxpp/context.hpp"
#include "support/stress_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace {

using ctxpp_test::announce_seed;
using ctxpp_test::Budget;
using ctxpp_test::describe;
using ctxpp_test::Failures;
using ctxpp_test::run_seed;
using ctxpp_test::run_with_watchdog;
using ctxpp_test::spin_for;

using namespace std::chrono_literals;
using ctxpp::background;
using ctxpp::CancelCauseFunc;
using ctxpp::CancelFunc;
using ctxpp::clock;
using ctxpp::Context;
using ctxpp::errc;
using ctxpp::Key;
using ctxpp::merge;
using ctxpp::with_cancel;
using ctxpp::with_cancel_cause;
using ctxpp::with_deadline_cause;
using ctxpp::with_timeout;
using ctxpp::with_timeout_cause;
using ctxpp::with_value;
using ctxpp::detail::child_count;
using ctxpp::detail::pending_timers;

using Cancellable = ctxpp::WithCancel<Context, CancelFunc>;

// Budget cuts iterations 10x under TSan and caps wall time at kStressWallTime (5 s, or
// CTXPP_STRESS_SECONDS).

// A wait that could hang: generous, then fail with a dump.
constexpr clock::duration kBound = 10s;
// The whole body of a test, watchdog bound (TSan runs are slow, hangs are forever).
constexpr clock::duration kWatchdog = 45s;

std::error_code canceled() { return ctxpp::make_error_code(errc::canceled); }
std::error_code deadline_exceeded() { return ctxpp::make_error_code(errc::deadline_exceeded); }

// A few distinct causes; index 0 is "no cause" (cancel(), or cancel({})).
std::error_code cause_of_index(std::size_t i) {
  static const std::array<std::errc, 4> kCodes = {
      std::errc::connection_reset, std::errc::broken_pipe, std::errc::host_unreachable,
      std::errc::network_down};
  return i == 0 ? std::error_code{} : std::make_error_code(kCodes[(i - 1) % kCodes.size()]);
}

// Threads of this process, their state and kernel wait channel, and the timer count.
std::string dump_process() {
  std::ostringstream out;
  out << "seed=" << run_seed() << " pending_timers=" << pending_timers() << "; threads:";
  out << ctxpp_test::describe_threads();
  return out.str();
}

// Registrations linked on ctx's signal node. Internal (detail/node.hpp layout);
// call it only while no other thread touches ctx.
std::size_t registrations_on(const Context& ctx) {
  const ctxpp::detail::SignalNode* node = ctxpp::detail::Access::signal(ctx);
  std::size_t n = 0;
  for (const ctxpp::detail::CallbackBase* cb = node != nullptr ? node->callbacks_ : nullptr;
       cb != nullptr; cb = cb->next_) {
    ++n;
  }
  return n;
}

// Waits for ctx by polling done() (the lock-free path), bounded.
bool poll_until_done(const Context& ctx, clock::duration bound = kBound) {
  const clock::time_point until = clock::now() + bound;
  while (!ctx.done()) {
    if (clock::now() >= until) return false;
    std::this_thread::yield();
  }
  return true;
}

// Spin start line for a fixed number of threads (yielding: 2 cores, many threads).
class StartLine {
 public:
  explicit StartLine(int parties) : parties_(parties) {}
  void arrive_and_wait() {
    arrived_.fetch_add(1);
    while (arrived_.load() < parties_) std::this_thread::yield();
  }

 private:
  const int parties_;
  std::atomic<int> arrived_{0};
};

// ---------------------------------------------------------------------------
// A random tree of contexts with a record of every cancel call's outcome.

enum class Kind { cancel, cause, short_timer, long_timer, value, merge };

struct Node {
  Kind kind = Kind::cancel;
  int parent = -1;  // the node this one was made from (primary, for a merge)
  int other = -1;   // merge only
  Context ctx;
  CancelFunc cancel;
  CancelCauseFunc cause_cancel;
  std::error_code timer_cause;    // cause given to a *_cause deadline
  std::vector<int> children;      // nodes made from this one (tree edges only)
  std::atomic<int> wins{0};       // cancel calls that returned true
  std::error_code winning_cause;  // the cause passed by the winner (written by it)
  bool has_cancel() const { return kind != Kind::value; }
};

struct Tree {
  std::vector<std::unique_ptr<Node>> nodes;

  // Calls the node's cancel function with a random cause; records a win.
  bool cancel(int i, std::mt19937_64& rng) {
    Node& node = *nodes[static_cast<std::size_t>(i)];
    if (node.kind == Kind::cause) {
      const std::error_code cause = cause_of_index(rng() % 5);
      if (node.cause_cancel.cancel(cause)) {
        node.winning_cause = cause ? cause : canceled();
        node.wins.fetch_add(1);
        return true;
      }
      return false;
    }
    if (node.cancel.cancel()) {
      node.winning_cause = canceled();
      node.wins.fetch_add(1);
      return true;
    }
    return false;
  }

  // The first node of the tree-subtree of i that is not done, or -1.
  int first_undone_below(int i) const {
    std::vector<int> todo{i};
    while (!todo.empty()) {
      const int n = todo.back();
      todo.pop_back();
      const Node& node = *nodes[static_cast<std::size_t>(n)];
      if (!node.ctx.done()) return n;
      todo.insert(todo.end(), node.children.begin(), node.children.end());
    }
    return -1;
  }
};

// Builds a tree of `size` nodes under a with_cancel_cause root. with_merges adds
// merge nodes whose other input is a random earlier node.
std::unique_ptr<Tree> build_tree(std::mt19937_64& rng, std::size_t size, bool with_merges) {
  static const Key<int> key("stress-value");
  auto tree = std::make_unique<Tree>();
  auto root = std::make_unique<Node>();
  root->kind = Kind::cause;
  auto made = with_cancel_cause(background());
  root->ctx = made.ctx;
  root->cause_cancel = made.cancel;
  tree->nodes.push_back(std::move(root));
  for (std::size_t i = 1; i < size; ++i) {
    auto node = std::make_unique<Node>();
    node->parent = static_cast<int>(rng() % i);
    const Context& parent = tree->nodes[static_cast<std::size_t>(node->parent)]->ctx;
    const int kinds = with_merges ? 6 : 5;
    node->kind = static_cast<Kind>(rng() % static_cast<std::uint64_t>(kinds));
    switch (node->kind) {
      case Kind::cancel: {
        auto c = with_cancel(parent);
        node->ctx = c.ctx;
        node->cancel = c.cancel;
        break;
      }
      case Kind::cause: {
        auto c = with_cancel_cause(parent);
        node->ctx = c.ctx;
        node->cause_cancel = c.cancel;
        break;
      }
      case Kind::short_timer: {
        node->timer_cause = cause_of_index(rng() % 3);
        auto c =
            with_timeout_cause(parent, std::chrono::microseconds(rng() % 400), node->timer_cause);
        node->ctx = c.ctx;
        node->cancel = c.cancel;
        break;
      }
      case Kind::long_timer: {
        auto c = with_timeout(parent, 1h);
        node->ctx = c.ctx;
        node->cancel = c.cancel;
        break;
      }
      case Kind::value:
        node->ctx = with_value(parent, key, static_cast<int>(i));
        break;
      case Kind::merge: {
        // Inputs ending on the same signal node (merge(x, x)) have their own unit
        // test (Merge.OfAContextWithItselfEndsOnce); keep them out of the random mix.
        auto same_signal = [&](int j) {
          return ctxpp::detail::Access::signal(tree->nodes[static_cast<std::size_t>(j)]->ctx) ==
                 ctxpp::detail::Access::signal(parent);
        };
        node->other = static_cast<int>(rng() % i);
        for (int tries = 0; tries < 8 && same_signal(node->other); ++tries) {
          node->other = static_cast<int>(rng() % i);
        }
        if (same_signal(node->other)) node->other = -1;
        auto c =
            merge(parent, node->other >= 0 ? tree->nodes[static_cast<std::size_t>(node->other)]->ctx
                                           : background());
        node->ctx = c.ctx;
        node->cancel = c.cancel;
        break;
      }
    }
    tree->nodes[static_cast<std::size_t>(node->parent)]->children.push_back(static_cast<int>(i));
    tree->nodes.push_back(std::move(node));
  }
  return tree;
}

// Checks the end state of a tree whose root has been cancelled: every node done
// exactly once, with an outcome explained by exactly one ending (its own cancel,
// its deadline, or an input's outcome). Returns a description of the first
// violation, or "".
std::string check_final_state(const Tree& tree) {
  for (std::size_t i = 0; i < tree.nodes.size(); ++i) {
    const Node& node = *tree.nodes[i];
    const std::error_code err = node.ctx.err();
    const std::error_code cause = node.ctx.cause();
    std::ostringstream where;
    where << "node " << i << " (kind " << static_cast<int>(node.kind) << ", parent " << node.parent
          << ", other " << node.other << "): err=" << describe(err) << " cause=" << describe(cause);
    if (!node.ctx.done()) return where.str() + ": not done after the root was cancelled";
    if (err != canceled() && err != deadline_exceeded()) return where.str() + ": bad err";
    if (!cause) return where.str() + ": done without a cause";
    const int wins = node.wins.load();
    if (wins > 1) return where.str() + ": " + std::to_string(wins) + " cancel calls returned true";
    if (wins == 1) {
      if (err != canceled() || cause != node.winning_cause) {
        return where.str() + ": its own cancel won with cause " + describe(node.winning_cause) +
               " but the outcome differs";
      }
      continue;
    }
    if (i == 0) return where.str() + ": the root ended but no cancel call won";
    auto same_as = [&](int j) {
      const Node& input = *tree.nodes[static_cast<std::size_t>(j)];
      return input.ctx.done() && input.ctx.err() == err && input.ctx.cause() == cause;
    };
    if (same_as(node.parent)) continue;
    if (node.kind == Kind::merge && node.other >= 0 && same_as(node.other)) continue;
    if (node.kind == Kind::short_timer && err == deadline_exceeded() &&
        cause == (node.timer_cause ? node.timer_cause : deadline_exceeded())) {
      continue;
    }
    return where.str() + ": outcome explained neither by its parent (" +
           describe(tree.nodes[static_cast<std::size_t>(node.parent)]->ctx.cause()) +
           "), its other input, nor its deadline";
  }
  return "";
}

// Many threads cancel random nodes of random trees (pitfalls 10, 12, 13): after
// every cancel call returns, the node's whole subtree is done; at the end every
// node is done exactly once with one consistent err()/cause(), and concurrent
// observers never see an outcome change.
void cancel_random_trees(bool with_merges) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed, with_merges] {
    std::mt19937_64 rng(seed ^ (with_merges ? 0x6d65726765ULL : 0x74726565ULL));
    Budget budget(2000);
    Failures failures;
    constexpr int kThreads = 4;
    while (budget.next() && !failures.any()) {
      const std::size_t size = 20 + rng() % 300;
      const std::unique_ptr<Tree> tree = build_tree(rng, size, with_merges);
      StartLine start(kThreads + 1);
      std::atomic<bool> stop_observing{false};
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, thread_seed = rng()] {
          std::mt19937_64 local(thread_seed);
          start.arrive_and_wait();
          const std::size_t ops = 1 + local() % (size / 2 + 1);
          for (std::size_t op = 0; op < ops; ++op) {
            // Bias towards the top so parents and children race.
            const int i = static_cast<int>(
                local() % 2 == 0 ? local() % std::min<std::size_t>(size, 8) : local() % size);
            if (!tree->nodes[static_cast<std::size_t>(i)]->has_cancel()) continue;
            tree->cancel(i, local);
            // Merges may reach their subtree through a callback of the other
            // input, which is not waited for; the tree-only case is exact.
            if (!with_merges) {
              if (const int undone = tree->first_undone_below(i); undone >= 0) {
                failures.report([&] {
                  return "cancel() of node " + std::to_string(i) + " returned while descendant " +
                         std::to_string(undone) + " was not done";
                });
              }
            }
          }
        });
      }
      // An observer: an outcome once seen never changes, done() never goes back.
      threads.emplace_back([&] {
        std::vector<std::optional<std::pair<std::error_code, std::error_code>>> seen(size);
        start.arrive_and_wait();
        while (!stop_observing.load(std::memory_order_relaxed)) {
          for (std::size_t i = 0; i < size; ++i) {
            const Context& ctx = tree->nodes[i]->ctx;
            const bool done = ctx.done();
            const std::error_code err = ctx.err();
            const std::error_code cause = ctx.cause();
            if (seen[i].has_value()) {
              if (!done || err != seen[i]->first || cause != seen[i]->second) {
                failures.report([&] {
                  return "node " + std::to_string(i) + " changed outcome from " +
                         describe(seen[i]->first) + "/" + describe(seen[i]->second) + " to " +
                         (done ? "" : "not done ") + describe(err) + "/" + describe(cause);
                });
              }
            } else if (err) {
              if (!cause) {
                failures.report([&] { return "node " + std::to_string(i) + " done, no cause"; });
              }
              seen[i].emplace(err, cause);
            }
          }
          std::this_thread::yield();
        }
      });
      for (int t = 0; t < kThreads; ++t) threads[static_cast<std::size_t>(t)].join();
      tree->cancel(0, rng);  // end whatever is left
      stop_observing = true;
      threads.back().join();
      if (const std::string violation = check_final_state(*tree); !violation.empty()) {
        failures.report([&] { return violation; });
      }
      // cause() is the same for every observer.
      std::vector<std::error_code> causes(size);
      for (std::size_t i = 0; i < size; ++i) causes[i] = tree->nodes[i]->ctx.cause();
      std::thread other_observer([&] {
        for (std::size_t i = 0; i < size; ++i) {
          if (tree->nodes[i]->ctx.cause() != causes[i]) {
            failures.report(
                [&] { return "cause() differs between threads, node " + std::to_string(i); });
          }
        }
      });
      other_observer.join();
      if (child_count(tree->nodes[0]->ctx) != 0) {
        failures.report([] { return std::string("the cancelled root still has linked children"); });
      }
    }
    std::printf("[ stress   ] %zu trees\n", budget.done());
  });
}

TEST(Stress, RandomTreesCancelledFromManyThreadsEndConsistently) { cancel_random_trees(false); }

TEST(Stress, RandomMergeDagsCancelledFromManyThreadsEndConsistently) { cancel_random_trees(true); }

// Pitfall 19: a deadline firing while cancel() runs. Exactly one reason wins, the
// cancel that returns true is the one whose reason is reported, and the subtree
// agrees. The timer entry is gone afterwards.
TEST(Stress, CancelRacingADeadlineHasExactlyOneReason) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    std::mt19937_64 rng(seed ^ 0x646561646c696e65ULL);
    Budget budget(20000);
    Failures failures;
    const std::size_t timers = pending_timers();
    std::size_t cancel_won = 0;
    std::size_t deadline_won = 0;
    const std::error_code timer_cause = std::make_error_code(std::errc::timed_out);
    while (budget.next() && !failures.any()) {
      const bool cancel_parent = rng() % 4 == 0;
      auto parent = with_cancel(background());
      const clock::time_point d = clock::now() + std::chrono::microseconds(rng() % 300);
      auto timer = with_deadline_cause(parent.ctx, d, timer_cause);
      auto child = with_cancel(timer.ctx);
      auto grandchild = with_timeout(child.ctx, 1h);
      // Aim the cancel at the deadline, give or take a few microseconds.
      const clock::time_point aim =
          d + std::chrono::microseconds(static_cast<int>(rng() % 20) - 10);
      while (clock::now() < aim) {
      }
      const bool won = cancel_parent ? parent.cancel.cancel() : timer.cancel.cancel();
      if (!grandchild.ctx.wait_for(kBound)) {
        failures.report([] { return "never done; " + dump_process(); });
        break;
      }
      const std::error_code err = timer.ctx.err();
      const std::error_code cause = timer.ctx.cause();
      const bool canceled_pair = err == canceled() && cause == canceled();
      const bool deadline_pair = err == deadline_exceeded() && cause == timer_cause;
      if (won) ++cancel_won;
      if (!won) ++deadline_won;
      if (cancel_parent) {
        // The parent's cancel always wins on the parent; the timer child gets
        // whichever reached it first.
        if (!won) failures.report([] { return std::string("the parent's only cancel lost"); });
        if (!canceled_pair && !deadline_pair) {
          failures.report(
              [&] { return "inconsistent pair " + describe(err) + "/" + describe(cause); });
        }
      } else if (won ? !canceled_pair : !deadline_pair) {
        failures.report([&] {
          return std::string("cancel() returned ") + (won ? "true" : "false") +
                 " but the outcome is " + describe(err) + "/" + describe(cause);
        });
      }
      for (const Context* below : {&child.ctx, &grandchild.ctx}) {
        if (below->err() != err || below->cause() != cause) {
          failures.report([&] { return "a descendant disagrees: " + describe(below->cause()); });
        }
      }
      if (timer.cancel.cancel()) failures.report([] { return std::string("second win"); });
    }
    // The timer thread erases an entry before ending its node; a cancel releases it
    // at once. Either way nothing is left.
    if (pending_timers() != timers) {
      ADD_FAILURE() << "pending timers " << pending_timers() << " != baseline " << timers;
    }
    std::printf("[ stress   ] %zu races: cancel won %zu, deadline won %zu\n", budget.done(),
                cancel_won, deadline_won);
  });
}

// Pitfall 13: children created from several threads while another thread cancels
// their parent. A child created after cancel() returned is done at once; every
// child created before is done by the time cancel() returns; nothing deadlocks and
// the parent ends with no linked child.
TEST(Stress, ChildCreationRacingParentCancelLeavesNoLiveChild) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    static const Key<int> key("creation");
    std::mt19937_64 rng(seed ^ 0x6372656174650000ULL);
    Budget budget(3000);
    Failures failures;
    constexpr int kCreators = 3;
    while (budget.next() && !failures.any()) {
      auto grand = with_cancel(background());
      auto parent = with_cancel_cause(grand.ctx);
      const bool cancel_grand = rng() % 3 == 0;
      std::atomic<bool> returned{false};
      std::mutex registry_mutex;
      std::vector<Context> registry;
      StartLine start(kCreators + 1);
      std::vector<std::thread> creators;
      for (int t = 0; t < kCreators; ++t) {
        creators.emplace_back([&, thread_seed = rng()] {
          std::mt19937_64 local(thread_seed);
          start.arrive_and_wait();
          int after = 0;
          while (after < 8) {  // keep going a little past the cancel
            const bool was_returned = returned.load(std::memory_order_acquire);
            Context child;
            CancelFunc own_cancel;
            switch (local() % 5) {
              case 0: {
                auto c = with_cancel(parent.ctx);
                child = c.ctx;
                own_cancel = c.cancel;
                break;
              }
              case 1:
                child = with_cancel_cause(parent.ctx).ctx;
                break;
              case 2: {
                auto c = with_timeout(parent.ctx, 1h);
                child = c.ctx;
                own_cancel = c.cancel;
                break;
              }
              case 3:
                child = with_cancel(with_value(parent.ctx, key, 1)).ctx;
                break;
              default:
                child = merge(parent.ctx, background()).ctx;
                break;
            }
            // A grandchild under the fresh child, and sometimes the child's own cancel.
            auto grandchild = with_cancel(child);
            if (local() % 4 == 0) own_cancel();
            if (was_returned) {
              ++after;
              if (!child.done() || !grandchild.ctx.done()) {
                failures.report(
                    [] { return std::string("child made after cancel() returned is live"); });
              }
            }
            std::lock_guard lock(registry_mutex);
            registry.push_back(child);
            registry.push_back(grandchild.ctx);
          }
        });
      }
      start.arrive_and_wait();
      spin_for(static_cast<std::uint32_t>(rng() % 20000));
      if (cancel_grand) {
        grand.cancel();
      } else {
        parent.cancel(cause_of_index(1 + rng() % 4));
      }
      {
        // Everything registered so far was created before this point.
        std::lock_guard lock(registry_mutex);
        const auto live = std::count_if(registry.begin(), registry.end(),
                                        [](const Context& c) { return !c.done(); });
        if (live != 0) {
          failures.report([&] {
            return std::to_string(live) + " children still live after cancel() returned";
          });
        }
      }
      returned.store(true, std::memory_order_release);
      for (auto& creator : creators) creator.join();
      const std::error_code cause = parent.ctx.cause();
      for (const Context& c : registry) {
        if (!c.done()) {
          failures.report([] { return std::string("a child was left undone"); });
          break;
        }
        if (c.cause() != cause && c.cause() != canceled()) {  // own cancel: canceled
          failures.report([&] { return "a child reports " + describe(c.cause()); });
          break;
        }
      }
      if (child_count(parent.ctx) != 0) {
        failures.report([&] {
          return std::to_string(child_count(parent.ctx)) +
                 " children left linked under a done parent";
        });
      }
    }
    std::printf("[ stress   ] %zu rounds\n", budget.done());
  });
}

// Pitfall 31 (correctness only; speed lives in bench/): 64 threads poll done() on
// a hot parent and on long-lived children while another thread creates and
// cancels children of both. Nobody sees a wrong answer; after the final cancel
// every poller sees every context done.
TEST(Stress, SixtyFourPollersWhileChildrenAreCreatedAndCancelled) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    std::mt19937_64 rng(seed ^ 0x706f6c6c6572ULL);
    Failures failures;
    constexpr int kPollers = 64;
    constexpr int kLongLived = 8;
    auto parent = with_cancel(background());
    std::vector<Cancellable> long_lived;
    for (int i = 0; i < kLongLived; ++i) long_lived.push_back(with_cancel(parent.ctx));
    std::atomic<bool> creating{true};
    std::atomic<bool> cancel_started{false};
    std::atomic<std::uint64_t> polls{0};
    std::vector<std::thread> pollers;
    for (int p = 0; p < kPollers; ++p) {
      pollers.emplace_back([&, p] {
        std::uint64_t local_polls = 0;
        const Context& mine = long_lived[static_cast<std::size_t>(p % kLongLived)].ctx;
        while (creating.load(std::memory_order_acquire)) {
          for (int k = 0; k < 64; ++k) {
            // done() true (acquire) implies the flag set before cancel() is visible.
            if ((parent.ctx.done() || mine.done()) && !cancel_started.load()) {
              failures.report(
                  [] { return std::string("done() true before anything was cancelled"); });
            }
            ++local_polls;
          }
          std::this_thread::yield();
        }
        // The creator cancels the parent after clearing `creating`.
        if (!poll_until_done(parent.ctx) || !poll_until_done(mine)) {
          failures.report([] { return "a poller never saw the end; " + dump_process(); });
        } else if (mine.err() != canceled()) {
          failures.report([&] { return "a poller saw " + describe(mine.err()); });
        }
        polls.fetch_add(local_polls);
      });
    }
    Budget budget(200000);
    while (budget.next() && !failures.any()) {
      const Context& base = (rng() % 2 == 0) ? parent.ctx : long_lived[rng() % kLongLived].ctx;
      auto child = with_cancel(base);
      auto grandchild = with_cancel(child.ctx);
      if (child.ctx.done()) failures.report([] { return std::string("new child born done"); });
      if (!child.cancel.cancel()) failures.report([] { return std::string("lone cancel lost"); });
      if (!grandchild.ctx.done()) failures.report([] { return std::string("grandchild live"); });
    }
    cancel_started.store(true);
    creating.store(false, std::memory_order_release);
    parent.cancel();
    for (const auto& c : long_lived) {
      if (!c.ctx.done()) failures.report([] { return std::string("child live after cancel()"); });
    }
    for (auto& poller : pollers) poller.join();
    if (child_count(parent.ctx) != 0) ADD_FAILURE() << "children left linked";
    std::printf("[ stress   ] %zu create+cancel, %llu polls\n", budget.done(),
                static_cast<unsigned long long>(polls.load()));
  });
}

// Pitfall 10: while only the root is being cancelled, an observer that sees a
// node done also sees its parent done (parents are published first).
TEST(Stress, ObserversNeverSeeAChildDoneBeforeItsParent) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    std::mt19937_64 rng(seed ^ 0x6f72646572ULL);
    Budget budget(2000);
    Failures failures;
    while (budget.next() && !failures.any()) {
      const std::unique_ptr<Tree> tree = build_tree(rng, 50 + rng() % 500, false);
      StartLine start(3);
      std::atomic<bool> finished{false};
      std::vector<std::thread> observers;
      for (int t = 0; t < 2; ++t) {
        observers.emplace_back([&] {
          start.arrive_and_wait();
          while (!finished.load(std::memory_order_acquire)) {
            for (std::size_t i = 1; i < tree->nodes.size(); ++i) {
              const Node& node = *tree->nodes[i];
              if (node.kind == Kind::short_timer) continue;  // may end on its own
              if (node.ctx.done() &&
                  !tree->nodes[static_cast<std::size_t>(node.parent)]->ctx.done()) {
                failures.report(
                    [&] { return "node " + std::to_string(i) + " seen done before its parent"; });
              }
            }
          }
        });
      }
      start.arrive_and_wait();
      // Short timers may end subtrees on their own; only they and the root end nodes.
      tree->cancel(0, rng);
      finished.store(true, std::memory_order_release);
      for (auto& observer : observers) observer.join();
    }
    std::printf("[ stress   ] %zu trees\n", budget.done());
  });
}

// Several threads cancel the same root at once: exactly one wins, and every one
// of them returns only once the whole tree is done (the losers wait, as in Go).
TEST(Stress, LosingCancellersReturnOnlyAfterTheSubtreeIsDone) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    std::mt19937_64 rng(seed ^ 0x6c6f736572ULL);
    Budget budget(2000);
    Failures failures;
    constexpr int kThreads = 3;
    while (budget.next() && !failures.any()) {
      const std::unique_ptr<Tree> tree = build_tree(rng, 100 + rng() % 2000, false);
      // Each thread cancels the root, or first a random node then the root.
      StartLine start(kThreads);
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, thread_seed = rng()] {
          std::mt19937_64 local(thread_seed);
          start.arrive_and_wait();
          if (local() % 2 == 0) {
            const int i = static_cast<int>(local() % tree->nodes.size());
            if (tree->nodes[static_cast<std::size_t>(i)]->has_cancel()) {
              tree->cancel(i, local);
              if (const int undone = tree->first_undone_below(i); undone >= 0) {
                failures.report([&] {
                  return "cancel of node " + std::to_string(i) + " returned, node " +
                         std::to_string(undone) + " live";
                });
              }
            }
          }
          tree->cancel(0, local);
          if (const int undone = tree->first_undone_below(0); undone >= 0) {
            failures.report([&] {
              return "cancel of the root returned while node " + std::to_string(undone) +
                     " was live";
            });
          }
        });
      }
      for (auto& thread : threads) thread.join();
      if (tree->nodes[0]->wins.load() != 1) {
        failures.report([&] { return std::to_string(tree->nodes[0]->wins.load()) + " winners"; });
      }
      if (const std::string violation = check_final_state(*tree); !violation.empty()) {
        failures.report([&] { return violation; });
      }
    }
    std::printf("[ stress   ] %zu trees\n", budget.done());
  });
}

// Pitfall 11: a waiter that starts waiting while cancel() runs is never lost.
TEST(Stress, WaitersRacingCancelAreNeverLost) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    std::mt19937_64 rng(seed ^ 0x77616974ULL);
    Budget budget(5000);
    Failures failures;
    while (budget.next() && !failures.any()) {
      auto parent = with_cancel(background());
      auto child = with_cancel(parent.ctx);
      auto timer = with_timeout(child.ctx, std::chrono::microseconds(200 + rng() % 200));
      StartLine start(3);
      std::atomic<int> woke{0};
      auto waiter = [&](const Context& ctx, bool until) {
        start.arrive_and_wait();
        const bool done = until ? ctx.wait_until(clock::now() + kBound) : ctx.wait_for(kBound);
        if (done) woke.fetch_add(1);
      };
      std::thread a(waiter, std::cref(child.ctx), false);
      std::thread b(waiter, std::cref(timer.ctx), true);
      start.arrive_and_wait();
      // Sometimes after the timer child's deadline, so its waiter is woken by the timer.
      const clock::time_point aim = clock::now() + std::chrono::microseconds(rng() % 600);
      while (clock::now() < aim) {
      }
      parent.cancel();
      a.join();
      b.join();
      if (woke.load() != 2) failures.report([] { return "lost wake-up; " + dump_process(); });
    }
    std::printf("[ stress   ] %zu rounds\n", budget.done());
  });
}

// Pitfall 16: handles of children dropped (the nodes freed) on other threads
// while the parent's cancel walks them. ASan turns a use-after-free into a failure.
TEST(Stress, DroppingHandlesRacingParentCancelIsSafe) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    std::mt19937_64 rng(seed ^ 0x64726f70ULL);
    Budget budget(3000);
    Failures failures;
    const std::size_t timers = pending_timers();
    while (budget.next() && !failures.any()) {
      auto parent = with_cancel(background());
      constexpr int kDroppers = 2;
      std::vector<std::vector<Cancellable>> owned(kDroppers);
      // Mostly direct children: the parent's cancel pops them while they are freed.
      for (auto& mine : owned) {
        for (int i = 0; i < 512; ++i) {
          const Context& base =
              mine.empty() || rng() % 8 != 0 ? parent.ctx : mine[rng() % mine.size()].ctx;
          mine.push_back(rng() % 2 == 0 ? with_cancel(base) : with_timeout(base, 1h));
        }
      }
      StartLine start(kDroppers + 1);
      std::vector<std::thread> droppers;
      for (int d = 0; d < kDroppers; ++d) {
        droppers.emplace_back([&, d, thread_seed = rng()] {
          std::mt19937_64 local(thread_seed);
          auto& mine = owned[static_cast<std::size_t>(d)];
          start.arrive_and_wait();
          while (!mine.empty()) {
            if (local() % 4 == 0) mine.back().cancel();  // sometimes cancel first
            mine.pop_back();                             // frees the node unless shared
          }
        });
      }
      start.arrive_and_wait();
      spin_for(static_cast<std::uint32_t>(rng() % 20000));
      parent.cancel();
      for (auto& dropper : droppers) dropper.join();
      if (child_count(parent.ctx) != 0) {
        failures.report([] { return std::string("children left linked"); });
      }
    }
    if (pending_timers() != timers) ADD_FAILURE() << "timers left armed: " << pending_timers();
    std::printf("[ stress   ] %zu rounds\n", budget.done());
  });
}

// Two threads create and cancel (or drop) children of one hot parent; a third
// creates grandchildren and cancels the children. The parent ends with nothing
// linked (pitfall 14 under contention).
TEST(Stress, HotParentCreateCancelFromSeveralThreadsDoesNotGrow) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    auto parent = with_cancel(background());
    std::atomic<std::size_t> total{0};
    Failures failures;
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&, t, thread_seed = seed + static_cast<std::uint64_t>(t)] {
        std::mt19937_64 local(thread_seed);
        Budget budget(300000);
        while (budget.next()) {
          auto child = with_cancel(parent.ctx);
          if (t == 2) {
            auto grandchild = with_timeout(child.ctx, 1h);
            child.cancel();
            if (!grandchild.ctx.done())
              failures.report([] { return std::string("grandchild live"); });
          } else if (local() % 2 == 0) {
            child.cancel();
          }  // else: dropped uncancelled
        }
        total.fetch_add(budget.done());
      });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(child_count(parent.ctx), 0U);
    EXPECT_FALSE(parent.ctx.done());
    std::printf("[ stress   ] %zu children\n", total.load());
  });
}

// A merge whose last handle is dropped while its other input is being cancelled
// on another thread. The drop must neither hang nor touch freed memory.
TEST(Stress, MergeDroppedWhileItsOtherInputIsCancelled) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    std::mt19937_64 rng(seed ^ 0x6d64726f70ULL);
    Budget budget(20000);
    while (budget.next()) {
      auto other = with_cancel_cause(background());
      auto primary = with_cancel(background());
      auto merged = std::make_unique<Cancellable>(merge(primary.ctx, other.ctx));
      auto below = with_cancel(merged->ctx);
      StartLine start(2);
      std::thread canceller([&] {
        start.arrive_and_wait();
        other.cancel(cause_of_index(1));
      });
      start.arrive_and_wait();
      spin_for(static_cast<std::uint32_t>(rng() % 200));
      below = Cancellable{};
      merged.reset();  // the last handles of the merge go here
      canceller.join();
      if (child_count(primary.ctx) != 0) {
        ADD_FAILURE() << "a dropped merge is still linked under its primary";
        break;
      }
    }
    std::printf("[ stress   ] %zu rounds\n", budget.done());
  });
}

// merge(primary, other) made while primary is being cancelled on another thread:
// the merge ends with primary's outcome and, once ended, holds no registration on
// other (else cancelling other later fires into a finished or freed merge).
TEST(Stress, MergeCreatedWhileItsPrimaryIsCancelledReleasesOther) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    std::mt19937_64 rng(seed ^ 0x6d6372656174ULL);
    Budget budget(50000);
    Failures failures;
    while (budget.next() && !failures.any()) {
      auto primary = with_cancel_cause(background());
      auto other = with_cancel(background());
      const std::error_code primary_cause = cause_of_index(3);
      StartLine start(2);
      std::thread canceller([&] {
        start.arrive_and_wait();
        spin_for(static_cast<std::uint32_t>(rng() % 64));
        primary.cancel(primary_cause);
      });
      start.arrive_and_wait();
      auto merged = merge(primary.ctx, other.ctx);
      canceller.join();
      if (!merged.ctx.done() || merged.ctx.cause() != primary_cause) {
        failures.report(
            [&] { return "merge of a cancelled primary: " + describe(merged.ctx.cause()); });
        break;
      }
      if (const std::size_t left = registrations_on(other.ctx); left != 0) {
        // Stop here: cancelling other now would fire into a done merge.
        failures.report([&] {
          return "a merge ended by its primary still has " + std::to_string(left) +
                 " registration(s) on other (race between merge() and primary's cancel)";
        });
        break;
      }
      other.cancel();
    }
    std::printf("[ stress   ] %zu rounds\n", budget.done());
  });
}

// A merge cancelled on one thread while its other input is cancelled on another:
// one consistent outcome, and the registration on other is released.
TEST(Stress, MergeCancelRacingItsOtherInputHasOneOutcome) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    std::mt19937_64 rng(seed ^ 0x6d72616365ULL);
    Budget budget(20000);
    Failures failures;
    const std::error_code other_cause = cause_of_index(2);
    while (budget.next() && !failures.any()) {
      auto other = with_cancel_cause(background());
      auto merged = merge(background(), other.ctx);
      auto below = with_cancel(merged.ctx);
      std::atomic<bool> merge_won{false};
      StartLine start(2);
      std::thread canceller([&] {
        start.arrive_and_wait();
        merge_won = merged.cancel.cancel();
      });
      start.arrive_and_wait();
      spin_for(static_cast<std::uint32_t>(rng() % 200));
      other.cancel(other_cause);
      canceller.join();
      const std::error_code cause = merged.ctx.cause();
      const bool consistent = merge_won ? cause == canceled() : cause == other_cause;
      if (!consistent || below.ctx.cause() != cause) {
        failures.report([&] {
          return std::string("merge cancel ") + (merge_won ? "won" : "lost") + ", cause " +
                 describe(cause) + ", below " + describe(below.ctx.cause());
        });
      }
    }
    std::printf("[ stress   ] %zu rounds\n", budget.done());
  });
}

// cancel() of a merge's other input has ended the merge itself by the time it
// returns; the merge's descendants are descendants of primary, not of other, so
// they are guaranteed done then only if that cancel ended the merge (context.hpp,
// merge). Either way, once both cancels returned, the whole subtree is done.
TEST(Stress, CancelOfAMergesOtherInputEndsTheMergeBeforeReturning) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    std::mt19937_64 rng(seed ^ 0x6d73756274726565ULL);
    Budget budget(2000);
    Failures failures;
    while (budget.next() && !failures.any()) {
      auto other = with_cancel(background());
      auto merged = merge(background(), other.ctx);
      std::vector<Cancellable> below;
      for (int i = 0; i < 500; ++i) below.push_back(with_cancel(merged.ctx));
      StartLine start(2);
      std::thread canceller([&] {
        start.arrive_and_wait();
        merged.cancel();
      });
      start.arrive_and_wait();
      spin_for(static_cast<std::uint32_t>(rng() % 2000));
      other.cancel();
      const bool merge_done = merged.ctx.done();
      canceller.join();
      const auto live = std::count_if(below.begin(), below.end(),
                                      [](const Cancellable& c) { return !c.ctx.done(); });
      if (!merge_done || live != 0) {
        failures.report([&] {
          return "other.cancel() returned with the merge " +
                 std::string(merge_done ? "done" : "live") + "; after both cancels " +
                 std::to_string(live) + " of 500 descendants were live";
        });
      }
    }
    std::printf("[ stress   ] %zu rounds\n", budget.done());
  });
}

}  // namespace
