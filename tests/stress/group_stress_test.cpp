// Stress tests of TaskGroup: random trees of nested groups with random limits,
// failures and exceptions, parents cancelled from other threads at random moments,
// spawns from inside tasks and from other threads while wait() runs (pitfalls 15,
// 25-30 of design/pitfalls.md).
//
// Invariants: wait() (or join(), or the destructor) returns; no task of a group
// runs after that returned; the first failure is the one reported and every
// failure is recorded once. Every test prints its seed and takes one from
// CTXPP_SEED; each is bounded both by an iteration count and by ~5 s of wall time,
// and is cut 10x under ThreadSanitizer. Nothing sleeps to synchronise. Each body
// runs under a watchdog: a hang fails the test with a dump of the process's
// threads instead of blocking ctest.
#include "ctxpp/group.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/coroutine.hpp"
#include "ctxpp/errc.hpp"
#include "ctxpp/executor.hpp"
#include "ctxpp/failure.hpp"
#include "ctxpp/task.hpp"
#include "support/stress_support.hpp"

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
using ctxpp::clock;
using ctxpp::Context;
using ctxpp::Task;
using ctxpp::TaskFailure;
using ctxpp::TaskGroup;
using ctxpp::ThreadPool;
using ctxpp::with_cancel_cause;

// Budget cuts iterations 10x under TSan; wall time is capped everywhere.
constexpr clock::duration kWallBudget = 2s;  // two tests: the file stays under 5 s
// A wait that could hang: generous, then fail with a dump.
constexpr clock::duration kBound = 10s;
// The whole body of a test, watchdog bound (TSan runs are slow, hangs are forever).
constexpr clock::duration kWatchdog = 60s;

std::string dump_process() {
  return "seed=" + std::to_string(run_seed()) + "; threads:" + ctxpp_test::describe_threads();
}

// A few distinct causes for cancels from outside.
std::error_code cause_of_index(std::size_t i) {
  static const std::array<std::errc, 3> kCodes = {std::errc::network_down, std::errc::network_reset,
                                                  std::errc::network_unreachable};
  return std::make_error_code(kCodes[i % kCodes.size()]);
}

class Boom : public std::runtime_error {
 public:
  explicit Boom(int which) : std::runtime_error("boom " + std::to_string(which)), id(which) {}
  int id;
};

// Thrown through a group's scope to destroy it while unwinding.
struct Unwind {};

// Unjoined-group reports, counted for the whole process while a test runs.
std::atomic<int> g_unjoined_reports{0};
void count_unjoined(const ctxpp::UnjoinedGroup& /*group*/) { g_unjoined_reports.fetch_add(1); }

class CountUnjoined {
 public:
  CountUnjoined() : previous_(ctxpp::set_unjoined_group_handler(&count_unjoined)) {
    g_unjoined_reports.store(0);
  }
  CountUnjoined(const CountUnjoined&) = delete;
  CountUnjoined& operator=(const CountUnjoined&) = delete;
  ~CountUnjoined() { ctxpp::set_unjoined_group_handler(previous_); }

 private:
  ctxpp::UnjoinedGroupHandler previous_;
};

// ---------------------------------------------------------------------------
// Random trees of nested groups.
//
// Nested levels use one pool per depth. A task blocked in spawn() at a limit needs
// another thread to run the task it waits for; on one shared pool every thread
// can end up blocked that way (see the unit test
// NestedGroupWithALimitOnASingleThreadPoolCompletes). With a pool per depth, the
// deepest level never blocks, so every level makes progress.

constexpr int kMaxDepth = 2;

// What one group's tasks record. Heap-allocated and freed right after the group
// is joined: a task touching it later is a use-after-free (ASan) or reads
// closed == true.
struct Probe {
  std::atomic<bool> closed{false};
  std::atomic<int> spawned{0};
  std::atomic<int> ended{0};
  std::atomic<int> failed{0};
};

struct Shared {
  std::array<std::unique_ptr<ThreadPool>, kMaxDepth + 1> pools;
  Failures failures;
  std::atomic<int> next_id{1};
  std::atomic<int> expected_reports{0};
  std::array<std::atomic<int>, 4> ends{};  // groups per End, for the summary
  std::atomic<int> groups_failed{0};
  std::atomic<int> max_depth_seen{0};
  std::mutex mutex;
  std::vector<CancelCauseFunc> cancels;  // what the canceller may cancel

  void add_cancel(const CancelCauseFunc& cancel) {
    std::lock_guard lock(mutex);
    cancels.push_back(cancel);
  }
};

enum class Kind { succeed, error, raise, poll, wait_ctx, spawn_inside, nested, coroutine };
enum class End { wait, join, destroy, unwind };

Task<std::error_code> join_group(TaskGroup& group) { co_return co_await group.join(); }

std::error_code run_group(Shared& shared, const Context& parent, int depth, std::uint64_t seed);

// A task body: its outcome is what it returns or throws. The wrapper keeps the
// probe's books around it.
using Body = std::function<std::error_code(const Context&)>;

void check_open(Shared& shared, Probe* probe, const char* where) {
  if (probe->closed.load()) {
    shared.failures.report(
        [&] { return std::string("a task ran after its group was joined (") + where + ")"; });
  }
}

void spawn_tracked(Shared& shared, TaskGroup& group, Probe* probe, Body body) {
  probe->spawned.fetch_add(1);
  group.spawn([&shared, probe, body = std::move(body)](const Context& ctx) -> std::error_code {
    check_open(shared, probe, "start");
    std::error_code ec;
    try {
      ec = body(ctx);
    } catch (...) {
      probe->failed.fetch_add(1);
      check_open(shared, probe, "end");
      probe->ended.fetch_add(1);  // the last touch of the probe
      throw;
    }
    if (ec) probe->failed.fetch_add(1);
    check_open(shared, probe, "end");
    probe->ended.fetch_add(1);
    return ec;
  });
}

// A body that needs nothing from the group: success, an error, an exception, or
// polling the context for a while.
Body simple_body(Shared& shared, std::mt19937_64& rng, bool explicit_failures) {
  const int id = shared.next_id.fetch_add(1);
  const auto pick = rng() % (explicit_failures ? 4 : 2);
  const auto spins = static_cast<std::uint32_t>(rng() % 2000);
  switch (pick) {
    case 0:
      return [spins](const Context&) {
        spin_for(spins);
        return std::error_code{};
      };
    case 1:
      return [spins](const Context& ctx) {
        for (std::uint32_t i = 0; i < spins / 10 && !ctx.done(); ++i) std::this_thread::yield();
        return ctx.err();
      };
    case 2:
      return [id](const Context&) { return std::error_code(1000 + id, std::generic_category()); };
    default:
      return [id](const Context&) -> std::error_code { throw Boom(id); };
  }
}

std::error_code run_group(Shared& shared, const Context& parent, int depth, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto scope = with_cancel_cause(parent);
  shared.add_cancel(scope.cancel);
  auto probe = std::make_unique<Probe>();
  Probe* const p = probe.get();

  const auto end_pick = rng() % 20;
  const End end = end_pick < 11   ? End::wait
                  : end_pick < 14 ? End::join
                  : end_pick < 17 ? End::destroy
                                  : End::unwind;
  const std::size_t limit = rng() % 5 < 2 ? TaskGroup::kNoLimit : 1 + rng() % 3;
  const bool has_failer = rng() % 2 == 0;
  const int tasks = 1 + static_cast<int>(rng() % 6);
  const bool helper =
      depth == 0 && (end == End::wait || end == End::join) && limit >= 2 && rng() % 4 == 0;
  ThreadPool& pool = *shared.pools[static_cast<std::size_t>(depth)];
  shared.ends[static_cast<std::size_t>(end)].fetch_add(1);
  if (depth > shared.max_depth_seen.load()) shared.max_depth_seen.store(depth);

  std::error_code result;
  std::exception_ptr thrown;
  try {
    TaskGroup group(scope.ctx, pool);
    if (limit != TaskGroup::kNoLimit) group.set_limit(limit);

    // A failure first, so that tasks waiting for the context are released.
    if (has_failer) {
      const int id = shared.next_id.fetch_add(1);
      if (rng() % 2 == 0) {
        spawn_tracked(shared, group, p, [id](const Context&) {
          return std::error_code(1000 + id, std::generic_category());
        });
      } else {
        spawn_tracked(shared, group, p,
                      [id](const Context&) -> std::error_code { throw Boom(id); });
      }
    }
    for (int t = 0; t < tasks; ++t) {
      auto kind = static_cast<Kind>(rng() % 8);
      if (kind == Kind::wait_ctx && !has_failer) {
        kind = Kind::poll;  // nothing would end the context while tasks are being spawned
      }
      if (kind == Kind::nested && depth >= kMaxDepth) kind = Kind::succeed;
      switch (kind) {
        case Kind::succeed:
        case Kind::error:
        case Kind::raise:
        case Kind::poll:
          spawn_tracked(shared, group, p, simple_body(shared, rng, kind != Kind::succeed));
          break;
        case Kind::wait_ctx:
          spawn_tracked(shared, group, p, [&shared](const Context& ctx) {
            if (!ctx.wait_for(kBound)) {
              shared.failures.report([] { return "a task waited for its context in vain"; });
            }
            return ctx.err();
          });
          break;
        case Kind::spawn_inside: {
          // Spawns siblings from inside: never blocks, even at the limit.
          std::vector<Body> children;
          for (int c = 1 + static_cast<int>(rng() % 3); c > 0; --c) {
            children.push_back(simple_body(shared, rng, true));
          }
          spawn_tracked(shared, group, p, [&shared, &group, p, children](const Context&) mutable {
            for (Body& child : children) {
              spawn_tracked(shared, group, p, std::move(child));
            }
            return std::error_code{};
          });
          break;
        }
        case Kind::nested: {
          const std::uint64_t child_seed = rng();
          spawn_tracked(shared, group, p, [&shared, depth, child_seed](const Context& ctx) {
            return run_group(shared, ctx, depth + 1, child_seed);
          });
          break;
        }
        case Kind::coroutine: {
          const int id = shared.next_id.fetch_add(1);
          const auto outcome = rng() % (has_failer ? 4 : 3);
          p->spawned.fetch_add(1);
          group.spawn(
              [&shared, &pool, p, id, outcome](const Context& ctx) -> Task<std::error_code> {
                check_open(shared, p, "coroutine start");
                co_await ctxpp::resume_on(pool);
                std::error_code ec;
                if (outcome == 0) {
                  ec = co_await ctxpp::sleep_for(ctx, std::chrono::microseconds(id % 300), pool);
                } else if (outcome == 1) {
                  ec = std::error_code(1000 + id, std::generic_category());
                } else if (outcome == 2) {
                  p->failed.fetch_add(1);
                  check_open(shared, p, "coroutine end");
                  p->ended.fetch_add(1);
                  throw Boom(id);
                } else {  // a failer was spawned first: the context ends
                  auto bounded = ctxpp::with_timeout(ctx, kBound);
                  co_await ctxpp::cancelled(bounded.ctx);
                  co_await ctxpp::resume_on(pool);
                  ec = ctx.err();
                  if (!ec) shared.failures.report([] { return "a coroutine waited in vain"; });
                }
                if (ec) p->failed.fetch_add(1);
                check_open(shared, p, "coroutine end");
                p->ended.fetch_add(1);
                co_return ec;
              });
          break;
        }
      }
    }

    // Spawns from another thread while the join runs; a holder task keeps the
    // group busy until they are all in, so none lands after the join.
    std::thread helper_thread;
    ctxpp_test::Gate helper_done;
    if (helper) {
      spawn_tracked(shared, group, p, [&helper_done, &shared](const Context&) {
        if (!helper_done.wait(kBound)) {
          shared.failures.report([] { return "the helper spawner never finished"; });
        }
        return std::error_code{};
      });
      std::vector<Body> bodies;
      for (int i = 0; i < 4; ++i) bodies.push_back(simple_body(shared, rng, true));
      helper_thread = std::thread([&shared, &group, p, &helper_done, bodies]() mutable {
        for (Body& body : bodies) spawn_tracked(shared, group, p, std::move(body));
        helper_done.open();
      });
    }

    switch (end) {
      case End::wait:
      case End::join: {
        try {
          result = end == End::wait ? group.wait() : ctxpp::sync_wait(join_group(group));
        } catch (...) {
          thrown = std::current_exception();
        }
        if (helper_thread.joinable()) helper_thread.join();
        // Joined: every task spawned so far has ended, and the books agree.
        const int spawned = p->spawned.load();
        const int ended = p->ended.load();
        if (ended != spawned) {
          shared.failures.report([&] {
            return "join returned with " + std::to_string(spawned - ended) + " task(s) unfinished";
          });
        }
        const std::vector<TaskFailure> failures = group.failures();
        const int failed = p->failed.load();
        if (!failures.empty()) shared.groups_failed.fetch_add(1);
        if (static_cast<int>(failures.size()) != failed) {
          shared.failures.report([&] {
            return "failures() lists " + std::to_string(failures.size()) + ", tasks failed " +
                   std::to_string(failed);
          });
        } else if (failures.empty()) {
          if (result || thrown) shared.failures.report([] { return "a failure out of nowhere"; });
        } else if (failures[0].exception) {
          if (thrown != failures[0].exception) {
            shared.failures.report([] { return "the first exception was not rethrown"; });
          }
        } else if (thrown || result != failures[0].code) {
          shared.failures.report([&] {
            return "join reported " + describe(result) + ", the first failure was " +
                   describe(failures[0].code);
          });
        }
        const Context& ctx = group.context();
        if (!ctx.done()) shared.failures.report([] { return "the context outlived the join"; });
        const std::error_code expected_cause =
            failures.empty() ? ctxpp::make_error_code(ctxpp::errc::canceled) : failures[0].code;
        const bool parent_first = scope.ctx.done() && ctx.cause() == scope.ctx.cause();
        if (ctx.cause() != expected_cause && !parent_first) {
          shared.failures.report([&] {
            return "group cause " + describe(ctx.cause()) + ", expected " +
                   describe(expected_cause);
          });
        }
        break;
      }
      case End::destroy:
        shared.expected_reports.fetch_add(1);
        break;  // the destructor cancels and joins
      case End::unwind:
        throw Unwind{};
    }
  } catch (const Unwind&) {
    // The group was destroyed while unwinding: joined, and not reported.
  }
  // The group is gone: nothing of it may run any more.
  if (p->ended.load() != p->spawned.load()) {
    shared.failures.report([&] {
      return "the group's scope ended with " + std::to_string(p->spawned.load() - p->ended.load()) +
             " task(s) unfinished";
    });
  }
  p->closed.store(true);
  probe.reset();
  if (thrown) std::rethrow_exception(thrown);
  return result;
}

TEST(GroupStress, RandomNestedGroupsJoinEveryTaskAndReportTheFirstFailure) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    CountUnjoined count_unjoined;
    auto shared = std::make_unique<Shared>();
    for (auto& pool : shared->pools) pool = std::make_unique<ThreadPool>(3);
    std::mt19937_64 rng(seed ^ 0x67726f7570ULL);
    Budget budget(4000, kWallBudget);
    while (budget.next() && !shared->failures.any()) {
      auto root = with_cancel_cause(background());
      {
        std::lock_guard lock(shared->mutex);
        shared->cancels.clear();
      }
      shared->add_cancel(root.cancel);
      shared->expected_reports.store(0);
      g_unjoined_reports.store(0);
      // Cancels a few of the scopes that exist by then, at random moments.
      const std::uint64_t canceller_seed = rng();
      std::thread canceller([&shared, canceller_seed] {
        std::mt19937_64 local(canceller_seed);
        for (auto n = local() % 4; n > 0; --n) {
          spin_for(static_cast<std::uint32_t>(local() % 200000));
          CancelCauseFunc victim;
          {
            std::lock_guard lock(shared->mutex);
            victim = shared->cancels[local() % shared->cancels.size()];
          }
          victim(cause_of_index(local()));
        }
      });
      try {
        (void)run_group(*shared, root.ctx, 0, rng());
      } catch (const Boom&) {
        // The root group's first failure was an exception: fine.
      } catch (...) {
        shared->failures.report([] { return "an unexpected exception left the root group"; });
      }
      canceller.join();
      if (g_unjoined_reports.load() != shared->expected_reports.load()) {
        shared->failures.report([&] {
          return "unjoined-group reports: " + std::to_string(g_unjoined_reports.load()) +
                 ", groups destroyed without wait() outside unwinding: " +
                 std::to_string(shared->expected_reports.load());
        });
      }
    }
    std::printf(
        "[ stress   ] %zu rounds; groups ended by wait %d, join %d, destructor %d, unwinding %d; "
        "%d joined with a failure; depth reached %d\n",
        budget.done(), shared->ends[0].load(), shared->ends[1].load(), shared->ends[2].load(),
        shared->ends[3].load(), shared->groups_failed.load(), shared->max_depth_seen.load());
  });
}

// ---------------------------------------------------------------------------
// One flat group hammered from several threads at once.

TEST(GroupStress, SpawnersCancellersAndLimitChangesRacingWaitLoseNoTask) {
  const std::uint64_t seed = announce_seed();
  run_with_watchdog(kWatchdog, dump_process, [seed] {
    Failures failures;
    ThreadPool pool(4);
    std::mt19937_64 rng(seed ^ 0x666c6174ULL);
    Budget budget(800, kWallBudget);
    while (budget.next() && !failures.any()) {
      constexpr int kSpawners = 2;
      constexpr int kPerSpawner = 20;
      auto parent = with_cancel_cause(background());
      auto probe = std::make_unique<Probe>();
      Probe* const p = probe.get();
      std::atomic<int> running{0};
      std::atomic<int> max_running{0};
      std::atomic<std::size_t> max_limit{2};
      ctxpp_test::Gate holder_release;
      {
        TaskGroup group(parent.ctx, pool);
        group.set_limit(2);
        // Holds a slot until every spawner is done, so the first wait() cannot
        // return before the last spawn. The limit never drops below 2: the
        // spawners always have a slot to wait for.
        p->spawned.fetch_add(1);
        group.spawn([&] {
          if (!holder_release.wait(kBound)) failures.report([] { return "spawners stuck"; });
          p->ended.fetch_add(1);
        });
        auto task = [&, p](const Context& ctx) -> std::error_code {
          if (p->closed.load()) failures.report([] { return "a task ran after the join"; });
          const int now = running.fetch_add(1) + 1;
          int seen = max_running.load();
          while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
          }
          std::this_thread::yield();
          running.fetch_sub(1);
          const std::error_code ec = ctx.err();
          if (ec) p->failed.fetch_add(1);
          p->ended.fetch_add(1);
          return ec;
        };
        std::vector<std::thread> threads;
        std::atomic<int> spawners_done{0};
        for (int s = 0; s < kSpawners; ++s) {
          threads.emplace_back([&] {
            for (int i = 0; i < kPerSpawner; ++i) {
              p->spawned.fetch_add(1);
              group.spawn(task);
            }
            if (spawners_done.fetch_add(1) + 1 == kSpawners) holder_release.open();
          });
        }
        const std::uint64_t local_seed = rng();
        threads.emplace_back([&, local_seed] {  // limits go up and down
          std::mt19937_64 local(local_seed);
          for (int i = 0; i < 5; ++i) {
            const std::size_t limit = 2 + local() % 4;
            std::size_t seen = max_limit.load();
            while (limit > seen && !max_limit.compare_exchange_weak(seen, limit)) {
            }
            group.set_limit(limit);
            spin_for(static_cast<std::uint32_t>(local() % 20000));
          }
        });
        threads.emplace_back([&, local_seed, cancel = parent.cancel] {  // the parent ends
          std::mt19937_64 local(local_seed ^ 1U);
          spin_for(static_cast<std::uint32_t>(local() % 400000));
          cancel(cause_of_index(local()));
        });
        std::error_code first;
        std::thread waiter([&] { first = group.wait(); });  // concurrent with the spawns
        waiter.join();
        for (auto& thread : threads) thread.join();
        const std::error_code second = group.wait();  // joins anything spawned late
        if (p->ended.load() != p->spawned.load()) {
          failures.report([&] {
            return std::to_string(p->spawned.load() - p->ended.load()) +
                   " task(s) unfinished after wait()";
          });
        }
        if (p->spawned.load() != 1 + kSpawners * kPerSpawner) {
          failures.report([] { return "a spawn was lost"; });
        }
        const std::vector<TaskFailure> recorded = group.failures();
        if (static_cast<int>(recorded.size()) != p->failed.load()) {
          failures.report([&] {
            return "failures() lists " + std::to_string(recorded.size()) + ", tasks failed " +
                   std::to_string(p->failed.load());
          });
        }
        if (!recorded.empty() && second != recorded[0].code) {
          failures.report([&] {
            return "wait() reported " + describe(second) + ", the first failure was " +
                   describe(recorded[0].code);
          });
        }
        if (max_running.load() > static_cast<int>(max_limit.load())) {
          failures.report([&] {
            return std::to_string(max_running.load()) +
                   " tasks ran at once, the highest limit was " + std::to_string(max_limit.load());
          });
        }
        (void)first;
      }
      p->closed.store(true);
      probe.reset();
    }
    std::printf("[ stress   ] %zu rounds\n", budget.done());
  });
}

}  // namespace
