// Stress tests of the cleanup coordinator: several coordinators on one context
// tree, resources of random priorities and behaviours added and removed while
// other threads cancel parts of the tree or call cleanup_now(). Every resource
// not removed is released exactly once, a removed one never; every report is
// delivered once and agrees with what the release functions did.
// Each test prints its seed (replay with CTXPP_SEED=<n>), is bounded in rounds
// and in wall time (~5 s), runs fewer rounds under a sanitizer, and a watchdog
// aborts with a message instead of hanging if something deadlocks.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ctxpp/cleanup_coordinator.hpp"
#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "support/stress_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp::CancelFunc;
using ctxpp::CleanupCoordinator;
using ctxpp::CleanupOptions;
using ctxpp::CleanupRecord;
using ctxpp::CleanupReport;
using ctxpp::Context;
using ctxpp::Priority;
using ctxpp::ReleaseOutcome;
using ctxpp::Resource;
using ctxpp_test::announce_seed;
using ctxpp_test::eventually;
using ctxpp_test::scaled;
using ctxpp_test::TimeBudget;
using ctxpp_test::Watchdog;

// Per test: stop early at kStressWallTime (5 s, or CTXPP_STRESS_SECONDS) and report how far we got;
// abort at the watchdog limit (a hang, not slowness).
constexpr auto kWatchdogLimit = 90s;
// Rounds are cut 10x under TSan (scaled) and 4x under ASan.
constexpr int kAsanCut = 4;
constexpr ctxpp::clock::duration kReleaseBudget = 30ms;  // the cleaners' deadline

// How a resource behaves when released.
enum class Behaviour : std::uint8_t {
  quick,           // try_release says yes
  declines,        // try_release says "not now", release returns at once
  release_only,    // no try_release; release returns at once
  slow,            // release sleeps up to 2 ms (a slow close)
  overruns,        // release waits for its context: returns at the deadline
  try_throws,      // try_release throws
  release_throws,  // release throws
  count,
};

// One resource's history; shared with its functions, so a release still running
// after the round touches nothing of the round.
struct Tracked {
  std::string name;
  Behaviour behaviour = Behaviour::quick;
  Priority priority = Priority::normal;
  std::atomic<int> try_calls{0};
  std::atomic<int> release_calls{0};
  bool removed = false;  // remove() returned true (written by its adder only)
};

Resource make_resource(const std::shared_ptr<Tracked>& tracked) {
  Resource resource{.name = tracked->name, .priority = tracked->priority};
  const Behaviour behaviour = tracked->behaviour;
  if (behaviour != Behaviour::release_only) {
    resource.try_release = [tracked, behaviour]() -> bool {
      tracked->try_calls.fetch_add(1);
      if (behaviour == Behaviour::try_throws) throw std::runtime_error("try boom");
      return behaviour == Behaviour::quick;
    };
  }
  if (behaviour != Behaviour::quick && behaviour != Behaviour::try_throws) {
    const auto pause =
        std::chrono::microseconds(std::hash<std::string>{}(tracked->name) % 2000);  // < 2 ms
    resource.release = [tracked, behaviour, pause](const Context& ctx) {
      tracked->release_calls.fetch_add(1);
      if (behaviour == Behaviour::slow) std::this_thread::sleep_for(pause);
      if (behaviour == Behaviour::overruns) (void)ctx.wait_for(ctxpp_test::kLongBound);
      if (behaviour == Behaviour::release_throws) throw std::logic_error("release boom");
    };
  }
  return resource;
}

// What a report may say about a resource of this behaviour.
bool outcome_fits(const CleanupRecord& record, Behaviour behaviour) {
  switch (behaviour) {
    case Behaviour::quick:
      return record.outcome == ReleaseOutcome::released && !record.blocking;
    case Behaviour::try_throws:
      return record.outcome == ReleaseOutcome::failed && !record.blocking &&
             record.error_message == "try boom" && record.error != nullptr;
    case Behaviour::release_throws:
      // Failed, unless it was still queued or running at the deadline.
      return record.blocking &&
             ((record.outcome == ReleaseOutcome::failed && record.error_message == "release boom" &&
               record.error != nullptr) ||
              record.outcome == ReleaseOutcome::timed_out);
    case Behaviour::declines:
    case Behaviour::release_only:
    case Behaviour::slow:
    case Behaviour::overruns:
      return record.blocking && record.outcome != ReleaseOutcome::failed &&
             record.outcome != ReleaseOutcome::removed;
    case Behaviour::count:
      break;
  }
  return false;
}

struct Coordinated {
  std::unique_ptr<CleanupCoordinator> coordinator;
  std::atomic<int> reports{0};
  std::mutex mutex;
  std::vector<std::shared_ptr<Tracked>> resources;  // guarded by mutex
};

// ---------------------------------------------------------------------------
// Several coordinators on a small tree; two threads add and remove while two
// others cancel children, the root, or call cleanup_now().
TEST(CleanupCoordinatorStress, ConcurrentAddRemoveAndCancelReleaseEachResourceOnce) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  std::mt19937_64 rng(seed);
  ctxpp::ThreadPool pool(64, 20ms);
  constexpr int kCoordinators = 4;
  constexpr int kAdders = 2;
  constexpr int kCancellers = 2;
  constexpr int kOpsPerAdder = 40;
  const int rounds = scaled(400, kAsanCut);
  const TimeBudget budget;
  int done_rounds = 0;
  long long resources_total = 0;
  long long removed_total = 0;
  long long unreported_total = 0;  // added after their report was final
  std::array<long long, 5> outcomes{};
  for (int r = 0; r < rounds && !budget.out_of_time(); ++r) {
    watchdog.iteration(r);
    watchdog.phase("building a round");
    // Not a structured binding: lambdas below capture it (clang 14 cannot).
    const ctxpp::WithCancel<Context, CancelFunc> tree_root =
        ctxpp::with_cancel(ctxpp::background());
    const Context& root = tree_root.ctx;
    const CancelFunc& cancel_root = tree_root.cancel;
    std::vector<ctxpp::WithCancel<Context, CancelFunc>> children;
    std::array<Coordinated, kCoordinators> coordinated;
    for (int c = 0; c < kCoordinators; ++c) {
      children.push_back(ctxpp::with_cancel(root));
      Coordinated& slot = coordinated[static_cast<std::size_t>(c)];
      // The last coordinator watches the root itself.
      const Context& ctx = c + 1 == kCoordinators ? root : children.back().ctx;
      slot.coordinator = std::make_unique<CleanupCoordinator>(
          ctx, CleanupOptions{.background_timeout = kReleaseBudget,
                              .background = &pool,
                              .on_report = [&slot](const CleanupReport&) { ++slot.reports; }});
    }
    std::vector<std::uint64_t> seeds;
    for (int t = 0; t < kAdders + kCancellers; ++t) seeds.push_back(rng());
    std::barrier sync(kAdders + kCancellers);
    std::vector<std::thread> threads;
    for (int t = 0; t < kAdders; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 local(seeds[static_cast<std::size_t>(t)]);
        std::vector<std::pair<std::shared_ptr<Tracked>, CleanupCoordinator::Id>> mine;
        std::vector<std::size_t> owner;
        sync.arrive_and_wait();
        for (int op = 0; op < kOpsPerAdder; ++op) {
          const auto c = static_cast<std::size_t>(local() % kCoordinators);
          if (!mine.empty() && local() % 4 == 0) {
            const std::size_t victim = local() % mine.size();
            auto& [tracked, id] = mine[victim];
            if (!tracked->removed && coordinated[owner[victim]].coordinator->remove(id)) {
              tracked->removed = true;
            }
            continue;
          }
          auto tracked = std::make_shared<Tracked>();
          tracked->name =
              "c" + std::to_string(c) + "-t" + std::to_string(t) + "-" + std::to_string(op);
          tracked->behaviour =
              static_cast<Behaviour>(local() % static_cast<unsigned>(Behaviour::count));
          tracked->priority = static_cast<Priority>(local() % 3);
          {
            std::lock_guard lock(coordinated[c].mutex);
            coordinated[c].resources.push_back(tracked);
          }
          const auto id = coordinated[c].coordinator->add(make_resource(tracked));
          mine.emplace_back(tracked, id);
          owner.push_back(c);
        }
      });
    }
    for (int t = 0; t < kCancellers; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 local(seeds[static_cast<std::size_t>(kAdders + t)]);
        sync.arrive_and_wait();
        for (int k = 0; k < 3; ++k) {
          for (unsigned spin = static_cast<unsigned>(local() % 20000); spin > 0; --spin) {
            std::atomic_signal_fence(std::memory_order_seq_cst);  // jitter
          }
          const auto pick = static_cast<std::size_t>(local() % (kCoordinators + 2));
          if (pick < kCoordinators) {
            children[pick].cancel();
          } else if (pick == kCoordinators) {
            coordinated[local() % kCoordinators].coordinator->cleanup_now();
          } else if (local() % 4 == 0) {
            cancel_root();
          }
        }
      });
    }
    watchdog.phase("adding, removing and cancelling");
    for (std::thread& thread : threads) thread.join();
    cancel_root();

    watchdog.phase("waiting for the reports");
    for (Coordinated& slot : coordinated) {
      const std::optional<CleanupReport> report =
          slot.coordinator->wait_for(ctxpp_test::kLongBound);
      ASSERT_TRUE(report.has_value()) << "seed=" << seed;
      ASSERT_TRUE(eventually([&] { return slot.coordinator->pending() == 0; }))
          << "releases still running, seed=" << seed;
      slot.coordinator.reset();
      EXPECT_EQ(slot.reports.load(), 1);

      std::map<std::string, const CleanupRecord*> by_name;
      for (const CleanupRecord& record : report->records) {
        EXPECT_TRUE(by_name.emplace(record.name, &record).second)
            << record.name << " reported twice, seed=" << seed;
        ++outcomes[static_cast<std::size_t>(record.outcome)];
      }
      for (const auto& tracked : slot.resources) {
        ++resources_total;
        const int tries = tracked->try_calls.load();
        const int releases = tracked->release_calls.load();
        const auto found = by_name.find(tracked->name);
        if (tracked->removed) {
          ++removed_total;
          EXPECT_EQ(tries + releases, 0) << tracked->name << " released after remove";
          EXPECT_EQ(found, by_name.end()) << tracked->name << " removed but reported";
          continue;
        }
        EXPECT_LE(tries, 1) << tracked->name;
        EXPECT_LE(releases, 1) << tracked->name;
        EXPECT_GE(tries + releases, 1) << tracked->name << " never released, seed=" << seed;
        if (tracked->behaviour == Behaviour::quick || tracked->behaviour == Behaviour::try_throws) {
          EXPECT_EQ(releases, 0) << tracked->name;
        }
        if (found == by_name.end()) {
          ++unreported_total;
          continue;
        }
        EXPECT_TRUE(outcome_fits(*found->second, tracked->behaviour))
            << tracked->name << " behaviour " << static_cast<int>(tracked->behaviour) << " outcome "
            << static_cast<int>(found->second->outcome) << ", seed=" << seed;
        EXPECT_EQ(found->second->priority, tracked->priority);
        by_name.erase(found);
      }
      EXPECT_TRUE(by_name.empty()) << "records of unknown resources, seed=" << seed;
    }
    ++done_rounds;
    if (::testing::Test::HasFailure()) break;
  }
  watchdog.phase("waiting for the pool to shrink");
  EXPECT_TRUE(eventually([&] { return pool.thread_count() == 0; }));
  std::printf(
      "%d of %d rounds in budget: %lld resources, %lld removed, %lld added after their "
      "report; released %lld, late %lld, timed out %lld, failed %lld\n",
      done_rounds, rounds, resources_total, removed_total, unreported_total, outcomes[0],
      outcomes[1], outcomes[2], outcomes[3]);
  EXPECT_GT(done_rounds, 0);
}

// ---------------------------------------------------------------------------
// A coordinator made, filled and destroyed while another thread cancels its
// context: the after_func and the destructor race to begin cleanup; each
// resource is released exactly once and the report is delivered once.
TEST(CleanupCoordinatorStress, DestructionRacingCancelReleasesEachResourceOnce) {
  const std::uint64_t seed = announce_seed();
  Watchdog watchdog(kWatchdogLimit);
  std::mt19937_64 rng(seed);
  ctxpp::ThreadPool pool(8, 20ms);
  const int rounds = scaled(3000, kAsanCut);
  const TimeBudget budget;
  int done_rounds = 0;
  for (int r = 0; r < rounds && !budget.out_of_time(); ++r) {
    watchdog.iteration(r);
    const ctxpp::WithCancel<Context, CancelFunc> owner = ctxpp::with_cancel(ctxpp::background());
    // Shared with the functions: a resource added after the report was final is
    // released by a task the destructor does not wait for.
    struct Counts {
      std::atomic<int> quick{0};
      std::atomic<int> blocking{0};
      std::atomic<int> reports{0};
      std::atomic<std::size_t> reported{0};
    };
    auto counts = std::make_shared<Counts>();
    const unsigned jitter = static_cast<unsigned>(rng() % 4000);
    std::atomic<bool> go{false};
    std::thread canceller([&] {
      while (!go.load()) std::this_thread::yield();
      for (unsigned spin = jitter; spin > 0; --spin) {
        std::atomic_signal_fence(std::memory_order_seq_cst);
      }
      owner.cancel();
    });
    watchdog.phase("constructing, adding, destroying");
    {
      CleanupCoordinator cleanup(owner.ctx, {.background_timeout = 5s,
                                             .background = &pool,
                                             .on_report = [counts](const CleanupReport& report) {
                                               counts->reports.fetch_add(1);
                                               counts->reported = report.records.size();
                                             }});
      go.store(true);
      for (int i = 0; i < 2; ++i) {
        cleanup.add({.name = "quick", .try_release = [counts] {
                       counts->quick.fetch_add(1);
                       return true;
                     }});
        cleanup.add({.name = "blocking",
                     .release = [counts](const Context&) { counts->blocking.fetch_add(1); }});
      }
    }
    canceller.join();
    watchdog.phase("waiting for unreported releases");
    ASSERT_TRUE(eventually([&] { return counts->blocking.load() == 2; })) << "seed=" << seed;
    ASSERT_EQ(counts->quick.load(), 2) << "seed=" << seed;
    ASSERT_EQ(counts->reports.load(), 1) << "seed=" << seed;
    ASSERT_LE(counts->reported.load(), 4U) << "seed=" << seed;
    ++done_rounds;
  }
  EXPECT_TRUE(eventually([&] { return pool.thread_count() == 0; }));
  std::printf("%d of %d rounds in budget\n", done_rounds, rounds);
  EXPECT_GT(done_rounds, 0);
}

}  // namespace
