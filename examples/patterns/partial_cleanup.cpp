// examples/patterns/partial_cleanup.cpp — undo exactly the steps that succeeded.
// Publishing a report takes four steps: write a temp file, open a connection to storage,
// add a cache entry, upload. A step can fail, or the request can end in the middle. Each
// step that succeeded registers its undo at once — with ctxpp::defer, disarmed on commit,
// or with a ctxpp::CleanupCoordinator, which undoes by priority and hands a close that
// would block to its background cleaner — and undo runs in a cleanup context with its own
// budget. After each run the program checks that only the succeeded steps were undone
// and that nothing is left behind.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <ctxpp/cleanup.hpp>
#include <ctxpp/cleanup_coordinator.hpp>
#include <ctxpp/context.hpp>
#include <ctxpp/result.hpp>

#include "support.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = ctxpp::clock;
using pattern_support::expect;
using pattern_support::Milestone;
using pattern_support::verdict;

constexpr auto kGoodbye = 40ms;   // a polite close waits this long for the peer
constexpr auto kUndoBudget = 2s;  // version 1: each undo's; version 2: the cleaner's

// --- what the steps touch ------------------------------------------------------------------

// Everything a run can leave behind, so the program can check that nothing is.
struct Workspace : std::enable_shared_from_this<Workspace> {
  fs::path dir;  // temp files and published reports
  std::atomic<int> open_connections{0};
  std::map<std::string, std::string> cache;  // report name -> content, at most kCacheSlots
  std::vector<std::string> undone;           // what was undone, in order
  std::mutex mutex;                          // guards cache and undone: undo runs anywhere

  static constexpr std::size_t kCacheSlots = 1;

  void record_undo(std::string what) {
    std::lock_guard lock(mutex);
    undone.push_back(std::move(what));
  }
};

// A connection to the storage service; a socket pair stands in for the network.
// Closing politely (a goodbye the peer acknowledges) takes kGoodbye once anything was
// sent; closing abruptly never blocks but leaves the peer guessing.
class Connection {
 public:
  static ctxpp::Result<std::shared_ptr<Connection>> open(const ctxpp::Context& ctx,
                                                         Workspace& workspace) {
    if (ctx.done()) return ctx.err();
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      return std::error_code(errno, std::system_category());
    }
    workspace.open_connections.fetch_add(1);
    return std::make_shared<Connection>(fds[0], fds[1], workspace.shared_from_this());
  }

  // Shares the workspace: a close that outlives everyone (see publish_steps) still
  // finds its counter.
  Connection(int local, int peer, std::shared_ptr<Workspace> workspace)
      : local_(local), peer_(peer), workspace_(std::move(workspace)) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { close_now(); }  // the last resort, if nobody closed it

  std::error_code send(const ctxpp::Context& ctx, std::string_view data) {
    if (ctx.done()) return ctx.err();
    if (::send(local_, data.data(), data.size(), MSG_NOSIGNAL) < 0) {
      return std::error_code(errno, std::system_category());
    }
    goodbye_owed_ = true;
    return {};
  }

  // Closes at once if no goodbye is owed; false ("not now") if closing would block.
  bool try_close() {
    if (goodbye_owed_) return false;
    close_now();
    return true;
  }

  // Says goodbye and waits for the acknowledgement, at most until ctx ends; closes in
  // any case.
  std::error_code close(const ctxpp::Context& ctx) {
    std::error_code result;
    if (goodbye_owed_ && ctx.wait_for(kGoodbye)) result = ctx.err();
    close_now();
    return result;
  }

  bool is_open() const { return local_ >= 0; }

 private:
  void close_now() {
    if (local_ < 0) return;
    ::close(local_);
    ::close(peer_);
    local_ = peer_ = -1;
    workspace_->open_connections.fetch_sub(1);
  }

  int local_;
  int peer_;
  std::shared_ptr<Workspace> workspace_;
  bool goodbye_owed_ = false;
};

struct Report {
  std::string name;
  std::string content;
  Clock::duration storage_delay{};  // how long storage takes to store it
};

// --- the four steps and their undos -------------------------------------------------------

ctxpp::Result<fs::path> write_temp_file(const ctxpp::Context& ctx, const Workspace& workspace,
                                        std::string_view content) {
  if (ctx.done()) return ctx.err();
  std::string path = (workspace.dir / "report-XXXXXX.tmp").string();
  const int fd = ::mkstemps(path.data(), 4);
  if (fd < 0) return std::error_code(errno, std::system_category());
  const bool written =
      ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  const std::error_code error(errno, std::system_category());
  ::close(fd);
  if (!written) {
    ::unlink(path.c_str());  // this step failed: it cleans up after itself
    return error;
  }
  return fs::path(path);
}

std::error_code remove_temp_file(const fs::path& path) {
  std::error_code error;
  if (!fs::remove(path, error) && !error)
    error = std::make_error_code(std::errc::no_such_file_or_directory);
  return error;
}

std::error_code put_in_cache(const ctxpp::Context& ctx, Workspace& workspace,
                             const Report& report) {
  if (ctx.done()) return ctx.err();
  std::lock_guard lock(workspace.mutex);
  if (workspace.cache.size() >= Workspace::kCacheSlots) {
    return std::make_error_code(std::errc::no_space_on_device);
  }
  workspace.cache[report.name] = report.content;
  return {};
}

void erase_from_cache(Workspace& workspace, const std::string& name) {
  std::lock_guard lock(workspace.mutex);
  workspace.cache.erase(name);
}

// Sends the report and waits for storage to store it. A request that ends meanwhile
// stops the wait at once (ctx.wait_for returns early).
std::error_code upload(const ctxpp::Context& ctx, Connection& connection, const Report& report,
                       Milestone& started) {
  if (std::error_code ec = connection.send(ctx, report.content)) return ec;
  started.reach();
  if (ctx.wait_for(report.storage_delay)) return ctx.err();
  return {};
}

// Commit: the temp file becomes the published report. Can fail too; the caller's undos
// are still armed then.
std::error_code publish_file(const Workspace& workspace, const fs::path& temp,
                             const Report& report) {
  std::error_code error;
  fs::rename(temp, workspace.dir / report.name, error);
  return error;
}

// --- version 1: scope guards --------------------------------------------------------------

// Runs one undo in a cleanup context (run_cleanup makes it with cleanup_context): not ended
// by the request's end, bounded by its own budget. It runs from a scope guard, maybe while
// an error is being returned, so its outcome is recorded, never thrown.
template <class Undo>
void undo(const ctxpp::Context& ctx, Workspace& workspace, const char* what, Undo&& fn) {
  const std::error_code ec = ctxpp::run_cleanup(ctx, kUndoBudget, std::forward<Undo>(fn));
  std::printf("  undo %-12s %s\n", what, ec ? ec.message().c_str() : "done");
  if (!ec) workspace.record_undo(what);
}

// Each step that succeeded arms the guard that undoes it. A failing step just returns:
// the armed guards undo the earlier steps, in reverse order. The commit disarms them.
std::error_code publish_with_defer(const ctxpp::Context& ctx, Workspace& workspace,
                                   const Report& report, Milestone& upload_started,
                                   std::vector<std::shared_ptr<Connection>>& pool) {
  ctxpp::Result<fs::path> temp = write_temp_file(ctx, workspace, report.content);
  if (!temp) return temp.error();
  auto remove_temp = ctxpp::defer([&] {
    undo(ctx, workspace, "temp file",
         [&](const ctxpp::Context&) { return remove_temp_file(*temp); });
  });

  ctxpp::Result<std::shared_ptr<Connection>> connection = Connection::open(ctx, workspace);
  if (!connection) return connection.error();
  auto close_connection = ctxpp::defer([&] {
    undo(ctx, workspace, "connection",
         [&](const ctxpp::Context& cleanup) { return (*connection)->close(cleanup); });
  });

  if (std::error_code ec = put_in_cache(ctx, workspace, report)) return ec;
  auto erase_entry = ctxpp::defer([&] {
    undo(ctx, workspace, "cache entry",
         [&](const ctxpp::Context&) { erase_from_cache(workspace, report.name); });
  });

  if (std::error_code ec = upload(ctx, **connection, report, upload_started)) return ec;
  if (std::error_code ec = publish_file(workspace, *temp, report)) return ec;

  // Committed: the file is published, the connection goes back to the pool, the cache
  // entry stays. Nothing is to be undone.
  pool.push_back(std::move(*connection));
  std::move(erase_entry).cancel();
  std::move(close_connection).cancel();
  std::move(remove_temp).cancel();
  return {};
}

// --- version 2: a cleanup coordinator ------------------------------------------------------

// The same steps; each one that succeeded registers its undo with a priority and up to
// two ways to run it: try_release never blocks and may decline; release may block and
// honours a context that has the cleaner's deadline. The commit takes them all back.
std::error_code publish_steps(const ctxpp::Context& ctx, Workspace& workspace, const Report& report,
                              Milestone& upload_started,
                              std::vector<std::shared_ptr<Connection>>& pool,
                              ctxpp::CleanupCoordinator& cleanup) {
  ctxpp::Result<fs::path> temp = write_temp_file(ctx, workspace, report.content);
  if (!temp) return temp.error();
  // Releases run on the coordinator's threads, and one that times out runs on after
  // the coordinator and this frame are gone: capture values and shared ownership.
  cleanup.add({
      .name = "temp file",
      .priority = ctxpp::Priority::normal,
      .try_release =
          [workspace = workspace.shared_from_this(), path = *temp] {
            if (std::error_code ec = remove_temp_file(path))
              throw std::system_error(ec, path.string());
            workspace->record_undo("temp file");
            return true;
          },
      .release = {},
  });

  ctxpp::Result<std::shared_ptr<Connection>> connection = Connection::open(ctx, workspace);
  if (!connection) return connection.error();
  // Critical: a pooled connection is what other requests wait for. Its polite close
  // blocks, so try_release declines and the background cleaner runs release.
  cleanup.add({
      .name = "connection",
      .priority = ctxpp::Priority::critical,
      .try_release = [connection = *connection] { return connection->try_close(); },
      .release =
          [workspace = workspace.shared_from_this(),
           connection = *connection](const ctxpp::Context& cleanup_ctx) {
            (void)connection->close(cleanup_ctx);
            workspace->record_undo("connection");
          },
  });

  if (std::error_code ec = put_in_cache(ctx, workspace, report)) return ec;
  cleanup.add({
      .name = "cache entry",
      .priority = ctxpp::Priority::background,
      .try_release =
          [workspace = workspace.shared_from_this(), name = report.name] {
            erase_from_cache(*workspace, name);
            workspace->record_undo("cache entry");
            return true;
          },
      .release = {},
  });

  if (std::error_code ec = upload(ctx, **connection, report, upload_started)) return ec;
  if (std::error_code ec = publish_file(workspace, *temp, report)) return ec;

  // Committed: one decision for every undo at once. Only this function starts the
  // cleanup (see publish_with_coordinator), so dismiss() cannot find it begun.
  pool.push_back(std::move(*connection));
  if (!cleanup.dismiss()) return std::make_error_code(std::errc::operation_canceled);
  return {};
}

std::error_code publish_with_coordinator(const ctxpp::Context& ctx, Workspace& workspace,
                                         const Report& report, Milestone& upload_started,
                                         std::vector<std::shared_ptr<Connection>>& pool,
                                         std::optional<ctxpp::CleanupReport>& cleanup_report) {
  // The coordinator watches a context that never ends by itself (it keeps ctx's values):
  // cleanup starts when this function says so, after a step failed or saw the request
  // end — never underneath a step that still uses a resource, never racing the commit.
  ctxpp::CleanupCoordinator cleanup(ctxpp::without_cancel(ctx),
                                    {.background_timeout = kUndoBudget});
  const std::error_code result =
      publish_steps(ctx, workspace, report, upload_started, pool, cleanup);
  if (result) {
    cleanup.cleanup_now();  // non-blocking undos run here; the slow close goes to the cleaner
    cleanup_report = cleanup.wait();
  }
  return result;
}

// --- checks ---------------------------------------------------------------------------------

const char* name_of(ctxpp::Priority priority) {
  switch (priority) {
    case ctxpp::Priority::critical:
      return "critical";
    case ctxpp::Priority::normal:
      return "normal";
    case ctxpp::Priority::background:
      return "background";
  }
  return "?";
}

const char* name_of(ctxpp::ReleaseOutcome outcome) {
  switch (outcome) {
    case ctxpp::ReleaseOutcome::released:
      return "released";
    case ctxpp::ReleaseOutcome::late:
      return "late";
    case ctxpp::ReleaseOutcome::timed_out:
      return "timed out";
    case ctxpp::ReleaseOutcome::failed:
      return "failed";
    case ctxpp::ReleaseOutcome::removed:
      return "removed";
  }
  return "?";
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

void print(const ctxpp::CleanupReport& report) {
  std::printf("  cleanup report: %s; non-blocking undos done at %.2f ms, all at %.2f ms\n",
              report.clean() ? "clean" : "NOT clean", ms(report.nonblocking_done - report.started),
              ms(report.finished - report.started));
  for (const ctxpp::CleanupRecord& record : report.records) {
    std::printf("    %-10s %-12s %-9s %-10s took %6.2f ms %s\n", name_of(record.priority),
                record.name.c_str(), name_of(record.outcome),
                record.blocking ? "background" : "inline", ms(record.took),
                record.error_message.c_str());
  }
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

// Nothing of a failed or cancelled run may remain: no file, connection or cache entry
// beyond what was there before (other_entries).
void expect_nothing_left(Workspace& workspace, std::size_t other_entries) {
  expect(files_in(workspace.dir).empty(), "no temp file is left");
  expect(workspace.open_connections.load() == 0, "no connection is left open");
  std::lock_guard lock(workspace.mutex);
  expect(workspace.cache.size() == other_entries, "no cache entry of ours is left");
}

std::vector<std::string> take_undone(Workspace& workspace) {
  std::lock_guard lock(workspace.mutex);
  return std::exchange(workspace.undone, {});
}

}  // namespace

int main() {
  std::string dir_template = (fs::temp_directory_path() / "ctxpp-partial-cleanup-XXXXXX").string();
  if (::mkdtemp(dir_template.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const auto shared_workspace = std::make_shared<Workspace>();
  Workspace& workspace = *shared_workspace;
  workspace.dir = dir_template;
  std::vector<std::shared_ptr<Connection>> pool;  // idle connections, kept after a commit
  auto server = ctxpp::with_cancel(ctxpp::background());

  std::printf("1. scope guards, the cache step fails: undo the connection, then the file\n");
  {
    {
      std::lock_guard lock(workspace.mutex);
      workspace.cache["someone else's report"] = "...";  // fills the only slot
    }
    auto request = ctxpp::with_cancel(server.ctx);
    Milestone upload_started;
    const std::error_code ec = publish_with_defer(
        request.ctx, workspace, {"q3.txt", "numbers", 20ms}, upload_started, pool);
    std::printf("  publish: %s\n", ec.message().c_str());
    expect(ec == std::errc::no_space_on_device, "the cache step's error is returned");
    expect(take_undone(workspace) == std::vector<std::string>{"connection", "temp file"},
           "exactly the two succeeded steps were undone, in reverse order");
    expect_nothing_left(workspace, 1);
    std::lock_guard lock(workspace.mutex);
    expect(workspace.cache.count("someone else's report") == 1, "other entries are untouched");
    workspace.cache.clear();
    request.cancel();  // the request is over: release its context now
  }

  std::printf("2. scope guards, every step succeeds: commit, nothing undone\n");
  {
    auto request = ctxpp::with_cancel(server.ctx);
    Milestone upload_started;
    const std::error_code ec = publish_with_defer(
        request.ctx, workspace, {"q3.txt", "numbers", 20ms}, upload_started, pool);
    std::printf("  publish: %s\n", ec ? ec.message().c_str() : "ok");
    expect(!ec, "the publication succeeded");
    expect(take_undone(workspace).empty(), "nothing was undone");
    expect(files_in(workspace.dir) == std::vector<std::string>{"q3.txt"},
           "the published file is there, no temp file");
    expect(pool.size() == 1 && pool.front()->is_open(), "the connection went back to the pool");
    // The committed results belong to the program: clear them for the next run.
    pool.clear();
    fs::remove(workspace.dir / "q3.txt");
    std::lock_guard lock(workspace.mutex);
    expect(workspace.cache.size() == 1, "the cache entry stays");
    workspace.cache.clear();
    request.cancel();  // the request is over: release its context now
  }

  std::printf("3. coordinator, the request ends during the upload\n");
  {
    auto request = ctxpp::with_cancel(server.ctx);
    Milestone upload_started;
    std::thread client([&] {
      if (!upload_started.wait_for(5s)) return;
      std::this_thread::sleep_for(10ms);  // the upload is under way when the client leaves
      request.cancel();
    });
    std::optional<ctxpp::CleanupReport> report;
    const std::error_code ec = publish_with_coordinator(
        request.ctx, workspace, {"q4.txt", "numbers", 5s}, upload_started, pool, report);
    client.join();
    std::printf("  publish: %s\n", ec.message().c_str());
    expect(ec == ctxpp::errc::canceled, "the request's end is returned");
    expect(report.has_value(), "a cleanup report was made");
    if (report) {
      print(*report);
      expect(report->clean() && report->records.size() == 3, "all three undos released");
      for (const ctxpp::CleanupRecord& record : report->records) {
        expect(record.blocking == (record.name == "connection"),
               "only the polite close went to the background cleaner");
      }
    }
    const std::vector<std::string> undone = take_undone(workspace);
    expect(undone.size() == 3 && undone.back() == "connection",
           "three steps undone; the slow close finished last, holding up nobody");
    expect_nothing_left(workspace, 0);
  }

  std::printf("4. coordinator, every step succeeds: commit, nothing undone\n");
  {
    auto request = ctxpp::with_cancel(server.ctx);
    Milestone upload_started;
    std::optional<ctxpp::CleanupReport> report;
    const std::error_code ec = publish_with_coordinator(
        request.ctx, workspace, {"q4.txt", "numbers", 20ms}, upload_started, pool, report);
    std::printf("  publish: %s\n", ec ? ec.message().c_str() : "ok");
    expect(!ec && !report, "the publication succeeded without a cleanup");
    expect(take_undone(workspace).empty(), "nothing was undone");
    expect(files_in(workspace.dir) == std::vector<std::string>{"q4.txt"},
           "the published file is there, no temp file");
    expect(pool.size() == 1 && pool.front()->is_open(), "the connection went back to the pool");
    pool.clear();
    fs::remove(workspace.dir / "q4.txt");
    std::lock_guard lock(workspace.mutex);
    expect(workspace.cache.size() == 1, "the cache entry stays");
    workspace.cache.clear();
    request.cancel();  // the request is over: release its context now
  }

  server.cancel();
  std::error_code error;
  fs::remove(workspace.dir, error);  // fails unless empty: then the check above failed too
  return verdict("partial cleanup pattern");
}
