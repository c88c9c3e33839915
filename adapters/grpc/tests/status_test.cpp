// grpc::Status <-> std::error_code, the ctxpp.grpc category, and a ClientCall's setup
// (deadline, cancellation of an already-ended context) without a server.
#include "ctxpp/grpc/status.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "ctxpp/context.hpp"
#include "ctxpp/grpc/client_call.hpp"
#include "ctxpp/grpc/error.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp_test::describe;

TEST(GrpcCategory, NamesGrpcCodesAndMapsThemToPortableConditions) {
  EXPECT_STREQ(ctxpp::grpc::grpc_category().name(), "ctxpp.grpc");
  const std::error_code unavailable = ctxpp::grpc::errc::unavailable;
  EXPECT_EQ(unavailable.value(), static_cast<int>(::grpc::StatusCode::UNAVAILABLE));
  EXPECT_EQ(unavailable.message(), "UNAVAILABLE");
  EXPECT_EQ(std::error_code(ctxpp::grpc::errc::canceled), std::errc::operation_canceled);
  EXPECT_EQ(std::error_code(ctxpp::grpc::errc::client_canceled), std::errc::operation_canceled);
  EXPECT_EQ(std::error_code(ctxpp::grpc::errc::deadline_exceeded), std::errc::timed_out);
  EXPECT_NE(unavailable, std::errc::operation_canceled);
  EXPECT_EQ(std::error_code(999, ctxpp::grpc::grpc_category()).message(),
            "unknown ctxpp.grpc error");
}

TEST(ToErrorCode, OkIsEmpty) {
  EXPECT_FALSE(ctxpp::grpc::to_error_code(::grpc::Status::OK));
  EXPECT_FALSE(ctxpp::grpc::to_error_code(ctxpp::background(), ::grpc::Status::OK));
}

TEST(ToErrorCode, CancelledByOwnContextIsContextErr) {
  auto made = ctxpp::with_cancel(ctxpp::background());
  made.cancel();
  const std::error_code ec =
      ctxpp::grpc::to_error_code(made.ctx, ::grpc::Status(::grpc::StatusCode::CANCELLED, ""));
  EXPECT_EQ(ec, ctxpp::errc::canceled) << describe(ec);
}

TEST(ToErrorCode, DeadlineOfOwnContextIsContextErr) {
  auto made = ctxpp::with_timeout(ctxpp::background(), -1ms);
  const std::error_code ec = ctxpp::grpc::to_error_code(
      made.ctx, ::grpc::Status(::grpc::StatusCode::DEADLINE_EXCEEDED, ""));
  EXPECT_EQ(ec, ctxpp::errc::deadline_exceeded) << describe(ec);
}

TEST(ToErrorCode, DeadlineJustBeforeOwnContextEndsWaitsForIt) {
  // gRPC's alarm can beat ctx's timer: the answer is still ctx's own deadline.
  auto made = ctxpp::with_timeout(ctxpp::background(), 2ms);
  const std::error_code ec = ctxpp::grpc::to_error_code(
      made.ctx, ::grpc::Status(::grpc::StatusCode::DEADLINE_EXCEEDED, ""));
  EXPECT_EQ(ec, ctxpp::errc::deadline_exceeded) << describe(ec);
}

TEST(ToErrorCode, CancelledWhileOwnContextLivesIsGrpcCode) {
  auto made = ctxpp::with_timeout(ctxpp::background(), 1h);
  std::error_code ec =
      ctxpp::grpc::to_error_code(made.ctx, ::grpc::Status(::grpc::StatusCode::CANCELLED, ""));
  EXPECT_EQ(ec, ctxpp::grpc::errc::canceled) << describe(ec);
  // A server's own, shorter deadline is the server's failure, not ours.
  ec = ctxpp::grpc::to_error_code(made.ctx,
                                  ::grpc::Status(::grpc::StatusCode::DEADLINE_EXCEEDED, ""));
  EXPECT_EQ(ec, ctxpp::grpc::errc::deadline_exceeded) << describe(ec);
  EXPECT_FALSE(made.ctx.done());
}

TEST(ToErrorCode, OtherCodesAreGrpcCodesEvenWhenContextEnded) {
  auto made = ctxpp::with_cancel(ctxpp::background());
  made.cancel();
  const std::error_code ec =
      ctxpp::grpc::to_error_code(made.ctx, ::grpc::Status(::grpc::StatusCode::NOT_FOUND, "x"));
  EXPECT_EQ(ec, ctxpp::grpc::errc::not_found) << describe(ec);
}

TEST(ToStatus, MapsContextEndsAndKeepsGrpcCodes) {
  EXPECT_TRUE(ctxpp::grpc::to_status({}).ok());
  EXPECT_EQ(ctxpp::grpc::to_status(ctxpp::errc::canceled).error_code(),
            ::grpc::StatusCode::CANCELLED);
  EXPECT_EQ(ctxpp::grpc::to_status(ctxpp::errc::deadline_exceeded).error_code(),
            ::grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(ctxpp::grpc::to_status(ctxpp::grpc::errc::client_canceled).error_code(),
            ::grpc::StatusCode::CANCELLED);
  EXPECT_EQ(ctxpp::grpc::to_status(ctxpp::grpc::errc::not_found).error_code(),
            ::grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ctxpp::grpc::to_status(std::make_error_code(std::errc::timed_out)).error_code(),
            ::grpc::StatusCode::DEADLINE_EXCEEDED);
  const ::grpc::Status other = ctxpp::grpc::to_status(std::make_error_code(std::errc::io_error));
  EXPECT_EQ(other.error_code(), ::grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(other.error_message(), std::make_error_code(std::errc::io_error).message());
  EXPECT_EQ(ctxpp::grpc::to_status(ctxpp::errc::canceled, "stopped").error_message(), "stopped");
}

TEST(ToStatus, RoundTripsThroughToErrorCode) {
  for (int value = 1; value <= 16; ++value) {
    const std::error_code ec(value, ctxpp::grpc::grpc_category());
    EXPECT_EQ(ctxpp::grpc::to_error_code(ctxpp::grpc::to_status(ec)), ec) << describe(ec);
  }
}

TEST(ClientCall, TakesContextDeadline) {
  auto made = ctxpp::with_timeout(ctxpp::background(), 30s);
  ctxpp::grpc::ClientCall call(made.ctx);
  const auto expected = std::chrono::system_clock::now() + 30s;
  const auto set = call.context().deadline();
  EXPECT_LT(set, expected + 1s);
  EXPECT_GT(set, expected - 5s);
}

TEST(ClientCall, NoDeadlineWithoutContextDeadline) {
  ctxpp::grpc::ClientCall call(ctxpp::background());
  EXPECT_EQ(call.context().deadline(), std::chrono::system_clock::time_point::max());
  auto never = ctxpp::with_deadline(ctxpp::background(), ctxpp::clock::time_point::max());
  ctxpp::grpc::ClientCall far(never.ctx);
  EXPECT_EQ(far.context().deadline(), std::chrono::system_clock::time_point::max());
}

TEST(ClientCall, ErrorReportsContextErr) {
  auto made = ctxpp::with_cancel(ctxpp::background());
  ctxpp::grpc::ClientCall call(made.ctx);
  made.cancel();
  EXPECT_EQ(call.error(::grpc::Status(::grpc::StatusCode::CANCELLED, "")), ctxpp::errc::canceled);
  EXPECT_FALSE(call.error(::grpc::Status::OK));
}

}  // namespace
