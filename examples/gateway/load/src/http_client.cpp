// http_client.cpp — non-blocking sockets driven by poll() against a deadline.
#include "http_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ctxpp_load {

namespace {

int milliseconds_until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

bool wait_for(int fd, short events, Clock::time_point deadline) {
  // Bounded: one poll per EINTR at most, each no longer than the time left.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    pollfd entry{fd, events, 0};
    const int ready = ::poll(&entry, 1, milliseconds_until(deadline));
    if (ready > 0) return true;
    if (ready == 0) return false;
    if (errno != EINTR) return false;
  }
  return false;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

}  // namespace

std::optional<Endpoint> parse_endpoint(std::string_view text) {
  if (text.starts_with("http://")) text.remove_prefix(7);
  while (text.ends_with('/')) text.remove_suffix(1);
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  Endpoint endpoint;
  endpoint.host = std::string(text.substr(0, colon));
  const auto port_text = text.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5) return std::nullopt;
  unsigned port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port == 0 || port > 65535) return std::nullopt;
  in_addr address{};
  if (::inet_pton(AF_INET, endpoint.host.c_str(), &address) != 1) return std::nullopt;
  endpoint.port = static_cast<std::uint16_t>(port);
  return endpoint;
}

std::int64_t monotonic_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

std::optional<std::pair<HttpResponse, std::size_t>> parse_response(std::string_view buffer,
                                                                   bool eof, std::string& error) {
  const auto header_end = buffer.find("\r\n\r\n");
  if (header_end == std::string_view::npos) {
    if (eof) error = "connection closed before a complete response header";
    return std::nullopt;
  }
  const std::string_view head = buffer.substr(0, header_end);
  const auto line_end = head.find("\r\n");
  const std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.1 200 OK"
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) {
    error = "bad status line";
    return std::nullopt;
  }
  HttpResponse response;
  response.keep_alive = status_line[7] == '1';  // HTTP/1.0 closes unless asked otherwise
  response.status =
      (status_line[9] - '0') * 100 + (status_line[10] - '0') * 10 + (status_line[11] - '0');
  std::optional<std::size_t> content_length;
  bool chunked = false;
  std::string_view rest =
      line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
  while (!rest.empty()) {
    const auto next = rest.find("\r\n");
    const std::string_view line = rest.substr(0, next);
    rest = next == std::string_view::npos ? std::string_view{} : rest.substr(next + 2);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const auto name = trim(line.substr(0, colon));
    const auto value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      std::size_t length = 0;
      for (char c : value) {
        if (c < '0' || c > '9') {
          error = "bad content-length";
          return std::nullopt;
        }
        length = length * 10 + static_cast<std::size_t>(c - '0');
      }
      content_length = length;
    } else if (iequals(name, "transfer-encoding")) {
      chunked = value.find("chunked") != std::string_view::npos;
    } else if (iequals(name, "connection")) {
      if (iequals(value, "close")) response.keep_alive = false;
      if (iequals(value, "keep-alive")) response.keep_alive = true;
    }
  }
  std::size_t position = header_end + 4;
  if (chunked) {
    // Bounded by the buffer: every chunk consumes at least its size line.
    while (true) {
      const auto size_end = buffer.find("\r\n", position);
      if (size_end == std::string_view::npos) break;
      std::size_t size = 0;
      for (char c : buffer.substr(position, size_end - position)) {
        if (c == ';') break;
        const int digit = std::isdigit(static_cast<unsigned char>(c))
                              ? c - '0'
                              : (std::isxdigit(static_cast<unsigned char>(c))
                                     ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10
                                     : -1);
        if (digit < 0) {
          error = "bad chunk size";
          return std::nullopt;
        }
        size = size * 16 + static_cast<std::size_t>(digit);
      }
      const std::size_t data = size_end + 2;
      if (size == 0) {
        // Trailers end with an empty line; with none it is the CRLF right here.
        const auto trailer_end = buffer.find("\r\n", data);
        if (trailer_end == std::string_view::npos) break;
        return std::pair{std::move(response), trailer_end + 2};
      }
      if (buffer.size() < data + size + 2) break;
      response.body.append(buffer.substr(data, size));
      position = data + size + 2;
    }
    if (eof) error = "connection closed inside a chunked body";
    return std::nullopt;
  }
  if (content_length) {
    if (buffer.size() < position + *content_length) {
      if (eof) error = "connection closed inside the body";
      return std::nullopt;
    }
    response.body = std::string(buffer.substr(position, *content_length));
    return std::pair{std::move(response), position + *content_length};
  }
  if (response.status == 204 || response.status == 304 || response.status / 100 == 1) {
    return std::pair{std::move(response), position};
  }
  // No length: the body runs to the end of the connection.
  if (!eof) return std::nullopt;
  response.body = std::string(buffer.substr(position));
  response.keep_alive = false;
  return std::pair{std::move(response), buffer.size()};
}

std::string build_request(std::string_view method, std::string_view target,
                          const std::vector<std::pair<std::string, std::string>>& headers,
                          std::string_view body, bool keep_alive) {
  std::string request;
  request.reserve(128 + body.size());
  request.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: gateway\r\n");
  for (const auto& header : headers) {
    request.append(header.first).append(": ").append(header.second).append("\r\n");
  }
  if (!body.empty() || method == "POST") {
    request.append("Content-Type: application/json\r\nContent-Length: ")
        .append(std::to_string(body.size()))
        .append("\r\n");
  }
  if (!keep_alive) request.append("Connection: close\r\n");
  request.append("\r\n").append(body);
  return request;
}

void HttpConnection::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

std::int64_t HttpConnection::reset() {
  if (fd_ >= 0) {
    const linger hard{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  }
  close();
  return monotonic_ns();
}

bool HttpConnection::connect(Clock::time_point deadline, std::string& error) {
  close();
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(endpoint_.port);
  ::inet_pton(AF_INET, endpoint_.host.c_str(), &address.sin_addr);
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    if (errno != EINPROGRESS) {
      error = std::string("connect: ") + std::strerror(errno);
      close();
      return false;
    }
    if (!wait_for(fd_, POLLOUT, deadline)) {
      error = "connect: timed out";
      close();
      return false;
    }
    int result = 0;
    socklen_t length = sizeof result;
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &result, &length);
    if (result != 0) {
      error = std::string("connect: ") + std::strerror(result);
      close();
      return false;
    }
  }
  return true;
}

bool HttpConnection::send_all(std::string_view data, Clock::time_point deadline,
                              std::string& error) {
  while (!data.empty()) {
    const ssize_t sent = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent > 0) {
      data.remove_prefix(static_cast<std::size_t>(sent));
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd_, POLLOUT, deadline)) {
        error = "send: timed out";
        return false;
      }
      continue;
    }
    error = std::string("send: ") + std::strerror(errno);
    return false;
  }
  return true;
}

std::optional<HttpResponse> HttpConnection::read_response(Clock::time_point deadline,
                                                          std::string& error, bool& got_bytes) {
  got_bytes = !buffer_.empty();
  char chunk[16384];
  bool eof = false;
  while (true) {
    if (!buffer_.empty() || eof) {
      auto parsed = parse_response(buffer_, eof, error);
      if (parsed) {
        buffer_.erase(0, parsed->second);
        return std::move(parsed->first);
      }
      if (!error.empty()) return std::nullopt;
    }
    if (eof) {
      error = "connection closed";
      return std::nullopt;
    }
    // A server trickling bytes must not keep this loop going past the deadline.
    if (Clock::now() >= deadline) {
      error = "response: timed out";
      return std::nullopt;
    }
    const ssize_t received = ::recv(fd_, chunk, sizeof chunk, 0);
    if (received > 0) {
      got_bytes = true;
      buffer_.append(chunk, static_cast<std::size_t>(received));
      continue;
    }
    if (received == 0) {
      eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(fd_, POLLIN, deadline)) {
        error = "response: timed out";
        return std::nullopt;
      }
      continue;
    }
    error = std::string("recv: ") + std::strerror(errno);
    return std::nullopt;
  }
}

std::optional<HttpResponse> HttpConnection::exchange(const std::string& request,
                                                     Clock::time_point deadline,
                                                     std::string& error) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused = fd_ >= 0;
    if (!reused && !connect(deadline, error)) return std::nullopt;
    error.clear();
    bool got_bytes = false;
    if (send_all(request, deadline, error)) {
      auto response = read_response(deadline, error, got_bytes);
      if (response) {
        if (!response->keep_alive) close();
        return response;
      }
    }
    close();
    // Only a stale keep-alive connection earns a retry; a fresh one failing is the answer.
    if (!reused || got_bytes || Clock::now() >= deadline) return std::nullopt;
  }
  return std::nullopt;
}

bool HttpConnection::open_and_send(const std::string& request, Clock::time_point deadline,
                                   std::string& error) {
  if (!connect(deadline, error)) return false;
  return send_all(request, deadline, error);
}

bool HttpConnection::wait_readable(std::chrono::milliseconds timeout) {
  if (fd_ < 0) return false;
  return wait_for(fd_, POLLIN, Clock::now() + timeout);
}

std::optional<std::string> http_get(HttpConnection& connection, const std::string& target,
                                    std::chrono::milliseconds timeout, std::string& error) {
  auto response = connection.exchange(build_request("GET", target, {}, {}, true),
                                      Clock::now() + timeout, error);
  if (!response) return std::nullopt;
  if (response->status != 200) {
    error = "GET " + target + ": status " + std::to_string(response->status);
    return std::nullopt;
  }
  return std::move(response->body);
}

}  // namespace ctxpp_load
