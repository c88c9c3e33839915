// Error category of ctxpp: the two outcomes of a context and their portable
// equivalents.
#include "ctxpp/errc.hpp"
#include "ctxpp/failure.hpp"

#include <string>

namespace ctxpp {
namespace {

class ContextCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ctxpp"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::canceled:
        return "context canceled";
      case errc::deadline_exceeded:
        return "context deadline exceeded";
    }
    return "unknown ctxpp error " + std::to_string(value);
  }

  std::error_condition default_error_condition(int value) const noexcept override {
    switch (static_cast<errc>(value)) {
      case errc::canceled:
        return std::errc::operation_canceled;
      case errc::deadline_exceeded:
        return std::errc::timed_out;
    }
    return {value, *this};
  }
};

}  // namespace

const std::error_category& context_category() noexcept {
  static const ContextCategory category;
  return category;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), context_category()};
}

std::error_condition make_error_condition(errc e) noexcept {
  return context_category().default_error_condition(static_cast<int>(e));
}

}  // namespace ctxpp

namespace ctxpp {
namespace {

class FailureCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ctxpp.failure"; }

  std::string message(int value) const override {
    switch (static_cast<failure>(value)) {
      case failure::exception:
        return "an exception was thrown";
      case failure::not_joined:
        return "task group destroyed without wait()";
      case failure::budget_exceeded:
        return "time budget exceeded";
      case failure::abandoned:
        return "blocking call abandoned";
      case failure::abandon_limit:
        return "too many abandoned blocking calls";
      case failure::rejected:
        return "no longer accepting work";
    }
    return "unknown ctxpp.failure " + std::to_string(value);
  }
};

}  // namespace

const std::error_category& failure_category() noexcept {
  static const FailureCategory category;
  return category;
}

std::error_code make_error_code(failure f) noexcept {
  return {static_cast<int>(f), failure_category()};
}

}  // namespace ctxpp

namespace ctxpp::detail {
namespace {

class SleepCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ctxpp.sleep"; }
  std::string message(int) const override { return "slept the full duration"; }
};

}  // namespace

const std::error_category& sleep_category() noexcept {
  static const SleepCategory category;
  return category;
}

}  // namespace ctxpp::detail
