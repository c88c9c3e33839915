// ctxpp/testing.hpp — fail a GoogleTest test on any debug finding (ctxpp/debug.hpp).
// Header-only and optional: include it only from tests that link GoogleTest; the
// library itself never depends on it.
// Example:
//   class Handler : public ctxpp::testing::NoFindingsTest {};   // leaks + chains on
//   TEST_F(Handler, CancelsDownstreamWork) { ... }   // fails if a finding appears
// or, inside any test body:
//   ctxpp::testing::expect_no_findings();
#pragma once

#include <gtest/gtest.h>

#include <chrono>

#include "ctxpp/debug.hpp"

namespace ctxpp::testing {

/// Adds one non-fatal GoogleTest failure per finding recorded so far (taking them),
/// naming the kind, the sites and the message. Returns how many there were.
/// Thread safety: any thread (GoogleTest failures from other threads are allowed).
inline std::size_t expect_no_findings() {
  const std::vector<Finding> found = take_debug_findings();
  for (const Finding& finding : found) {
    ADD_FAILURE_AT(finding.where.file_name(), static_cast<int>(finding.where.line()))
        << "ctxpp " << to_string(finding.kind) << ": " << finding.message;
  }
  return found.size();
}

/// A fixture that switches the detectors on (mode, linger bound) for the test and
/// fails it in TearDown on any finding; the previous debug options come back after.
class NoFindingsTest : public ::testing::Test {
 protected:
  explicit NoFindingsTest(DebugMode mode = DebugMode::all,
                          clock::duration linger_bound = std::chrono::seconds(1))
      : mode_(mode), linger_bound_(linger_bound) {}

  void SetUp() override {
    previous_ = debug_options();
    DebugOptions options = previous_;
    options.mode = mode_;
    options.linger_bound = linger_bound_;
    set_debug(options);
    (void)take_debug_findings();  // what earlier tests left is theirs
  }
  void TearDown() override {
    expect_no_findings();
    set_debug(previous_);
  }

 private:
  DebugMode mode_;
  clock::duration linger_bound_;
  DebugOptions previous_;
};

}  // namespace ctxpp::testing
