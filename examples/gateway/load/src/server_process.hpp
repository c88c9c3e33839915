// server_process.hpp — start a server binary, learn its port, and always stop and reap it.
// The servers announce readiness with one "NAME listening on HOST:PORT" line on stdout;
// port 0 lets the kernel pick, so parallel test runs never collide. Standard error goes
// to a log file; standard output after the announcement is copied there too so a chatty
// server never blocks on a full pipe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ctxpp_load {

/// Ownership: owns the child process; the destructor stops it (SIGTERM, then SIGKILL
/// after 5 s) and reaps it, so no error path leaves a server running.
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { stop(); }

  /// Starts `argv` (argv[0] is the path). Errors: false and `error` when fork/exec or the
  /// log file fails; an exec failure shows up as the child's exit 127.
  [[nodiscard]] bool start(const std::vector<std::string>& argv, const std::string& log_path,
                           std::string& error);

  /// Reads stdout until every prefix in `prefixes` began a line; returns what followed
  /// each (the address). Blocking: until `timeout` at most. Errors: nullopt and `error`
  /// when the child exits or the time runs out first.
  [[nodiscard]] std::optional<std::vector<std::string>> wait_for_lines(
      const std::vector<std::string>& prefixes, std::chrono::milliseconds timeout,
      std::string& error);

  /// SIGTERM, wait up to 5 s, then SIGKILL; reaps. Returns a description of how it ended
  /// ("exit 0", "signal 9 after SIGKILL", ...); empty when nothing was running.
  /// Blocking: 5 s at most plus the reap after SIGKILL.
  std::string stop();

  bool running() const { return pid_ > 0; }
  /// True when the last stop() saw a clean exit 0 after SIGTERM.
  bool stopped_cleanly() const { return stopped_cleanly_; }

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int log_fd_ = -1;
  std::string pending_;  // stdout read but not yet a whole line
  std::thread copier_;
  bool stopped_cleanly_ = false;
};

}  // namespace ctxpp_load
