// CTX005 missing-context (a note).
#include <unistd.h>

#include <chrono>
#include <thread>

#include <ctxpp/context.hpp>

namespace corpus {

using namespace std::chrono_literals;

int fetch(const ctxpp::Context& ctx, int fd);

void legacy_sleep() {  // expect: CTX005
  std::this_thread::sleep_for(1ms);
}

int legacy_fetch(int fd) { return fetch(ctxpp::todo(), fd); }  // expect: CTX005

namespace {
void internal_sleep() { std::this_thread::sleep_for(1ms); }
}  // namespace

static long internal_read(int fd) {
  char c = 0;
  return ::read(fd, &c, 1);
}

class Api {
 public:
  long pub(int fd) {  // expect: CTX005
    char c = 0;
    return ::read(fd, &c, 1);
  }
  long uses_private(int fd) { return priv(fd) + internal_read(fd); }

 private:
  long priv(int fd) {
    char c = 0;
    return ::read(fd, &c, 1);
  }
};

// Owns the root it starts: not a missing context.
int owns_root() {
  auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), 1s);
  const int n = fetch(ctx, 0);
  cancel();
  return n;
}

// Its object carries the context.
class Session {
 public:
  long pull(int fd) {
    if (ctx_.done()) return -1;
    char c = 0;
    return ::read(fd, &c, 1);
  }

 private:
  ctxpp::Context ctx_;
};

int run_internal() {
  internal_sleep();
  return 0;
}

}  // namespace corpus
