// Inventory: resource allocation points, scope-bound or manual. No findings here.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include <ctxpp/cleanup.hpp>
#include <ctxpp/context.hpp>
#include <ctxpp/pool.hpp>

struct sqlite3;
extern "C" int sqlite3_open(const char* path, sqlite3** db);
extern "C" int sqlite3_close(sqlite3* db);

namespace corpus {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

struct Widget {
  int size = 0;
};

int manual_file() {
  std::FILE* f = std::fopen("/dev/null", "r");  // manual
  if (f == nullptr) return -1;
  std::fclose(f);
  return 0;
}

int owned_file() {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen("/dev/null", "r"));  // scope-bound
  return f ? 0 : -1;
}

int guarded_socket() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);  // scope-bound: the guard closes it
  auto close_fd = ctxpp::defer([fd] { ::close(fd); });
  return fd;
}

int manual_socket() {
  return ::socket(AF_INET, SOCK_STREAM, 0);  // manual: the caller must close it
}

int manual_new() {
  auto* w = new Widget;  // manual
  const int size = w->size;
  delete w;
  return size;
}

int owned_new() {
  std::unique_ptr<Widget> w(new Widget);  // scope-bound
  return w->size;
}

void* manual_malloc() { return std::malloc(16); }  // manual

void manual_thread() {   // expect: CTX005
  std::thread t([] {});  // manual: joined by hand
  t.join();
}

void bound_thread() {
  std::jthread t([] {});  // scope-bound: joins in its destructor
}

int sqlite_manual(sqlite3*& out) {
  return sqlite3_open(":memory:", &out);  // manual
}

int sqlite_guarded() {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open(":memory:", &db);  // scope-bound
  auto close_db = ctxpp::defer([db] { sqlite3_close(db); });
  return rc;
}

int pooled(ctxpp::Pool<Widget>& pool, const ctxpp::Context& ctx) {
  auto lease = pool.acquire(ctx);  // scope-bound: the lease gives it back
  return lease ? 1 : 0;
}

int callers(ctxpp::Pool<Widget>& pool, const ctxpp::Context& ctx) {
  return pooled(pool, ctx) + owned_new() + manual_new();
}

}  // namespace corpus
