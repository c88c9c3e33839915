// server_process.cpp — fork/exec with a stdout pipe and a bounded stop.
#include "server_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ctxpp_load {

bool ServerProcess::start(const std::vector<std::string>& argv, const std::string& log_path,
                          std::string& error) {
  log_fd_ = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd_ < 0) {
    error = log_path + ": " + std::strerror(errno);
    return false;
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  // Build the argument array before fork: the child may only call async-signal-safe
  // functions, and allocation is not one.
  std::vector<char*> arguments;
  for (const auto& argument : argv) arguments.push_back(const_cast<char*>(argument.c_str()));
  arguments.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return false;
  }
  if (pid == 0) {
    // A demo killed from outside (a test timeout) must not leave servers behind.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::dup2(log_fd_, STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::execv(arguments[0], arguments.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  pid_ = pid;
  stdout_fd_ = pipe_fds[0];
  stopped_cleanly_ = false;
  return true;
}

std::optional<std::vector<std::string>> ServerProcess::wait_for_lines(
    const std::vector<std::string>& prefixes, std::chrono::milliseconds timeout,
    std::string& error) {
  std::vector<std::optional<std::string>> found(prefixes.size());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto all_found = [&] {
    for (const auto& one : found) {
      if (!one) return false;
    }
    return true;
  };
  char chunk[4096];
  while (!all_found()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      error =
          "no \"" + prefixes.front() + "\" line within " + std::to_string(timeout.count()) + " ms";
      return std::nullopt;
    }
    pollfd entry{stdout_fd_, POLLIN, 0};
    const int ready = ::poll(&entry, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (ready < 0 && errno != EINTR) {
      error = std::string("poll: ") + std::strerror(errno);
      return std::nullopt;
    }
    if (ready <= 0) continue;
    const ssize_t received = ::read(stdout_fd_, chunk, sizeof chunk);
    if (received <= 0) {
      error = "exited before announcing itself (" + stop() + ")";
      return std::nullopt;
    }
    if (log_fd_ >= 0) {
      [[maybe_unused]] auto written = ::write(log_fd_, chunk, static_cast<std::size_t>(received));
    }
    pending_.append(chunk, static_cast<std::size_t>(received));
    for (auto newline = pending_.find('\n'); newline != std::string::npos;
         newline = pending_.find('\n')) {
      std::string line = pending_.substr(0, newline);
      pending_.erase(0, newline + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      for (std::size_t index = 0; index < prefixes.size(); ++index) {
        if (!found[index] && line.starts_with(prefixes[index])) {
          found[index] = line.substr(prefixes[index].size());
        }
      }
    }
  }
  // From here on nobody parses stdout; keep it flowing into the log until the child exits.
  copier_ = std::thread([fd = stdout_fd_, log = log_fd_] {
    char buffer[4096];
    for (;;) {
      const ssize_t received = ::read(fd, buffer, sizeof buffer);
      if (received < 0 && errno == EINTR) continue;
      if (received <= 0) break;
      if (log >= 0) {
        [[maybe_unused]] auto written = ::write(log, buffer, static_cast<std::size_t>(received));
      }
    }
  });
  std::vector<std::string> addresses;
  for (auto& one : found) addresses.push_back(std::move(*one));
  return addresses;
}

std::string ServerProcess::stop() {
  std::string how;
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    bool reaped = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    // Bounded: 10 ms steps for 5 s.
    while (std::chrono::steady_clock::now() < deadline) {
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_ || (done < 0 && errno != EINTR)) {
        reaped = done == pid_;
        break;
      }
      ::usleep(10'000);
    }
    std::string suffix;
    if (!reaped) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      suffix = " after SIGKILL";
    }
    if (WIFEXITED(status)) {
      how = "exit " + std::to_string(WEXITSTATUS(status)) + suffix;
      stopped_cleanly_ = reaped && WEXITSTATUS(status) == 0;
    } else if (WIFSIGNALED(status)) {
      how = "signal " + std::to_string(WTERMSIG(status)) + suffix;
    }
    pid_ = -1;
  }
  // The child is gone, so its end of the pipe is closed and the copier sees EOF (unless a
  // grandchild inherited it; closing our end below would not help then either).
  if (copier_.joinable()) copier_.join();
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
  stdout_fd_ = -1;
  if (log_fd_ >= 0) ::close(log_fd_);
  log_fd_ = -1;
  return how;
}

}  // namespace ctxpp_load
