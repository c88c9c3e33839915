// Error category of ctxpp: the two outcomes of a context and their portable
// equivalents.
#include "ctxpp/errc.hpp"

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
