// ctxpp/sqlite/connection.hpp: opening with a context, options, ownership and moves.
#include "ctxpp/sqlite/connection.hpp"

#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "ctxpp/context.hpp"
#include "ctxpp/sqlite/error.hpp"
#include "ctxpp/sqlite/statement.hpp"
#include "sqlite_test_support.hpp"
#include "support/test_support.hpp"

namespace {

namespace sq = ctxpp::sqlite;
using ctxpp::background;
using ctxpp_sqlite_test::CancelWhenOpen;
using ctxpp_sqlite_test::kLongQuery;
using ctxpp_sqlite_test::kPromptBound;
using ctxpp_sqlite_test::StartProbe;
using ctxpp_sqlite_test::TempDir;
using ctxpp_test::describe;

std::optional<std::string> text_of(sq::Connection& conn, std::string_view sql) {
  std::optional<std::string> value;
  auto done = sq::query(background(), conn, sql,
                        [&](const sq::Row& row) { value = std::string(row.text(0)); });
  EXPECT_TRUE(done) << describe(done.error()) << " " << conn.last_error_message();
  return value;
}

TEST(Open, CreatesTheFileAndRunsStatements) {
  TempDir dir;
  const std::string path = dir.file("app.db");
  auto conn = sq::open(background(), path);
  ASSERT_TRUE(conn) << describe(conn.error());
  EXPECT_TRUE(*conn);
  EXPECT_NE(conn->raw(), nullptr);
  ASSERT_TRUE(sq::execute(background(), *conn, "CREATE TABLE t(x)"));
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(conn->in_transaction());
  EXPECT_FALSE(conn->interrupted());
}

TEST(Open, ContextEndedBeforeTheCallOpensNothing) {
  TempDir dir;
  const std::string path = dir.file("never.db");
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  cancel();
  auto conn = sq::open(ctx, path, {.wal = true});
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error(), ctxpp::errc::canceled) << describe(conn.error());
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Open, MissingDirectoryIsCantopen) {
  TempDir dir;
  auto conn = sq::open(background(), dir.file("no/such/dir/app.db"));
  ASSERT_FALSE(conn);
  EXPECT_TRUE(conn.error() == sq::errc::cantopen) << describe(conn.error());
  EXPECT_EQ(conn.error().message(), "unable to open database file");
}

TEST(Open, MissingFileWithoutCreateIsCantopen) {
  TempDir dir;
  auto conn = sq::open(background(), dir.file("absent.db"), {.flags = SQLITE_OPEN_READONLY});
  ASSERT_FALSE(conn);
  EXPECT_TRUE(conn.error() == sq::errc::cantopen) << describe(conn.error());
}

TEST(Open, ReadOnlyConnectionRefusesWritesWithReadonly) {
  TempDir dir;
  const std::string path = dir.file("app.db");
  {
    auto writer = sq::open(background(), path);
    ASSERT_TRUE(writer);
    ASSERT_TRUE(sq::execute(background(), *writer, "CREATE TABLE t(x)"));
  }
  auto reader = sq::open(background(), path, {.flags = SQLITE_OPEN_READONLY});
  ASSERT_TRUE(reader) << describe(reader.error());
  auto done = sq::execute(background(), *reader, "INSERT INTO t VALUES (1)");
  EXPECT_TRUE(done.error() == sq::errc::readonly) << describe(done.error());
}

TEST(Open, WalSwitchesTheJournalMode) {
  TempDir dir;
  auto conn = sq::open(background(), dir.file("wal.db"), {.wal = true});
  ASSERT_TRUE(conn) << describe(conn.error());
  EXPECT_EQ(text_of(*conn, "PRAGMA journal_mode"), "wal");
  auto plain = sq::open(background(), dir.file("plain.db"));
  ASSERT_TRUE(plain);
  EXPECT_EQ(text_of(*plain, "PRAGMA journal_mode"), "delete");
}

TEST(Open, ForeignKeysAreEnforcedOnlyWhenAsked) {
  TempDir dir;
  const char* schema =
      "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
      "CREATE TABLE child(parent INTEGER REFERENCES parent(id));";
  auto strict = sq::open(background(), dir.file("strict.db"), {.foreign_keys = true});
  ASSERT_TRUE(strict) << describe(strict.error());
  ASSERT_TRUE(sq::execute_script(background(), *strict, schema));
  auto orphan = sq::execute(background(), *strict, "INSERT INTO child VALUES (7)");
  EXPECT_EQ(orphan.error().value(), SQLITE_CONSTRAINT_FOREIGNKEY) << describe(orphan.error());

  auto lax = sq::open(background(), dir.file("lax.db"));
  ASSERT_TRUE(lax);
  ASSERT_TRUE(sq::execute_script(background(), *lax, schema));
  EXPECT_TRUE(sq::execute(background(), *lax, "INSERT INTO child VALUES (7)"));
}

TEST(Open, InvalidOptionsThrowNamingTheField) {
  TempDir dir;
  try {
    static_cast<void>(sq::open(background(), dir.file("a.db"), {.progress_steps = 0}));
    ADD_FAILURE() << "no exception for progress_steps = 0";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("progress_steps"), std::string::npos) << e.what();
  }
  try {
    static_cast<void>(
        sq::open(background(), dir.file("a.db"), {.busy_timeout = std::chrono::milliseconds(-1)}));
    ADD_FAILURE() << "no exception for a negative busy_timeout";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("busy_timeout"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("a.db")));
}

TEST(Connection, FileThatIsNotADatabaseFailsOnFirstUseWithNotadb) {
  TempDir dir;
  const std::string path = dir.file("junk.db");
  {
    std::ofstream junk(path);
    for (int i = 0; i < 200; ++i) junk << "this is not a database file ";
  }
  auto conn = sq::open(background(), path);
  ASSERT_TRUE(conn) << describe(conn.error());
  auto done = sq::execute(background(), *conn, "SELECT count(*) FROM sqlite_schema");
  EXPECT_TRUE(done.error() == sq::errc::notadb) << describe(done.error());
  EXPECT_EQ(conn->last_error_message(), "file is not a database");
}

TEST(Connection, MovedConnectionKeepsItsCancellationHooks) {
  // SQLite's hooks hold the address of the connection's state: a move must not
  // leave them pointing at the moved-from object.
  TempDir dir;
  auto opened = sq::open(background(), dir.file("app.db"));
  ASSERT_TRUE(opened);
  sq::Connection first(std::move(*opened));
  sq::Connection conn;
  conn = std::move(first);
  EXPECT_FALSE(first);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(first.raw(), nullptr);

  StartProbe probe;
  ASSERT_TRUE(probe.install(conn.raw()));
  auto [ctx, cancel] = ctxpp::with_cancel(background());
  CancelWhenOpen canceller(probe.running, cancel);
  auto done = sq::query(ctx, conn, kLongQuery, [](const sq::Row&) {});
  const auto returned = std::chrono::steady_clock::now();
  probe.running.open();
  canceller.join();
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error(), ctxpp::errc::canceled) << describe(done.error());
  EXPECT_LT(returned - canceller.cancelled_at(), kPromptBound);
}

TEST(Connection, MoveAssignmentClosesWhatItHeld) {
  TempDir dir;
  auto a = sq::open(background(), dir.file("a.db"));
  auto b = sq::open(background(), dir.file("b.db"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(sq::execute(background(), *a, "CREATE TABLE only_in_a(x)"));
  sqlite3* b_raw = b->raw();
  *a = std::move(*b);
  EXPECT_EQ(a->raw(), b_raw);
  EXPECT_FALSE(*b);  // NOLINT(bugprone-use-after-move)
  // a now talks to b.db, which has no such table.
  auto done = sq::execute(background(), *a, "SELECT * FROM only_in_a");
  EXPECT_TRUE(done.error() == sq::errc::error) << describe(done.error());
}

TEST(Connection, CloseEmptiesItAndIsIdempotent) {
  TempDir dir;
  auto conn = sq::open(background(), dir.file("app.db"));
  ASSERT_TRUE(conn);
  conn->close();
  EXPECT_FALSE(*conn);
  EXPECT_EQ(conn->raw(), nullptr);
  conn->close();
  auto done = sq::execute(background(), *conn, "SELECT 1");
  EXPECT_TRUE(done.error() == sq::errc::misuse) << describe(done.error());
}

TEST(Connection, EmptyConnectionAnswersEveryQueryHarmlessly) {
  sq::Connection empty;
  EXPECT_FALSE(empty);
  EXPECT_EQ(empty.raw(), nullptr);
  EXPECT_EQ(empty.last_error_message(), "");
  EXPECT_EQ(empty.last_insert_rowid(), 0);
  EXPECT_FALSE(empty.in_transaction());
  empty.interrupt();
  EXPECT_FALSE(empty.interrupted());
  empty.clear_interrupt();
  empty.close();
}

}  // namespace
