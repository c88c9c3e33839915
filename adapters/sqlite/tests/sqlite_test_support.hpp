// adapters/sqlite/tests/sqlite_test_support.hpp — what the SQLite adapter's tests share:
// a temporary directory for real database files, a query that runs for many seconds
// and says when it started, and a thread that cancels once it has.
#pragma once

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "ctxpp/context.hpp"
#include "support/test_support.hpp"

namespace ctxpp_sqlite_test {

// A fresh directory under the system's temporary directory, removed with everything
// in it when the object goes.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "ctxpp-sqlite-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed for " << pattern;
      return;
    }
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }

  const std::filesystem::path& path() const { return path_; }
  std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Registers started() on a connection: the first call opens a gate (the statement is
// running), every call is counted. Register it before the statement that uses it; the
// probe must outlive the connection's statements.
struct StartProbe {
  ctxpp_test::Gate running;
  std::atomic<int> calls{0};
  // Called (once, on the statement's thread) at the first call, before the gate opens.
  void (*on_first)(StartProbe&) = nullptr;
  void* user = nullptr;

  bool install(sqlite3* db) {
    return sqlite3_create_function(
               db, "started", 0, SQLITE_UTF8, this,
               [](sqlite3_context* call, int, sqlite3_value**) {
                 auto* probe = static_cast<StartProbe*>(sqlite3_user_data(call));
                 if (probe->calls.fetch_add(1) == 0) {
                   if (probe->on_first != nullptr) probe->on_first(*probe);
                   probe->running.open();
                 }
                 sqlite3_result_int(call, 1);
               },
               nullptr, nullptr) == SQLITE_OK;
  }
};

// Counts to 10^8 (over ten seconds here without cancellation; far longer than any
// bound below), calling started() once as it begins. Completing returns one row.
inline constexpr std::string_view kLongQuery =
    "WITH RECURSIVE c(x) AS (SELECT started() UNION ALL SELECT x + 1 FROM c WHERE x < 100000000)"
    " SELECT count(*) FROM c";

// The bound a cancelled statement must stop within: generous, so that sanitizers and a
// loaded machine cannot make it flake; the precise figure is printed, and measured in
// bench/.
inline constexpr std::chrono::steady_clock::duration kPromptBound = std::chrono::seconds(1);

// Cancels once a gate opens, from its own thread, remembering when. Open the gate
// yourself after the statement returned so a statement that never started does not
// keep the thread waiting; join() before reading cancelled_at().
class CancelWhenOpen {
 public:
  CancelWhenOpen(ctxpp_test::Gate& gate, ctxpp::CancelFunc cancel)
      : thread_([this, &gate, cancel = std::move(cancel)] {
          if (!gate.wait()) return;
          cancelled_at_ = std::chrono::steady_clock::now();
          cancel();
        }) {}
  CancelWhenOpen(const CancelWhenOpen&) = delete;
  CancelWhenOpen& operator=(const CancelWhenOpen&) = delete;
  ~CancelWhenOpen() { join(); }

  void join() {
    if (thread_.joinable()) thread_.join();
  }
  std::chrono::steady_clock::time_point cancelled_at() const { return cancelled_at_; }

 private:
  std::chrono::steady_clock::time_point cancelled_at_{};
  std::thread thread_;
};

inline double to_ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace ctxpp_sqlite_test
