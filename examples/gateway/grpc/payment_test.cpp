// The payment service and its client helpers on 127.0.0.1: a charge that completes,
// one the client cancels and one whose deadline passes (the service stops at once and
// counts it), refunds, request ids and the JSON record.
#include "payment_client.hpp"
#include "payment_service.hpp"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "ctxpp/grpc/error.hpp"
#include "support/test_support.hpp"

namespace {

using namespace std::chrono_literals;
using ctxpp_test::describe;

class Payment : public ::testing::Test {
 protected:
  void SetUp() override {
    ::grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto channel = ::grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                         ::grpc::InsecureChannelCredentials());
    stub_ = ctxpp::gateway::Payment::NewStub(channel);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 10s);
  }

  ctxpp::ThreadPool pool_{8};
  ctxpp::gateway::PaymentService service_{ctxpp::background(), pool_, 16};
  std::unique_ptr<::grpc::Server> server_;
  std::unique_ptr<ctxpp::gateway::Payment::Stub> stub_;
};

TEST_F(Payment, ChargeCompletesAndRefundsOnce) {
  auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), 30s);
  ctxpp::Result<std::string> id = ctxpp::gateway::charge(ctx, *stub_, "o-1", 1200, 1, "r-1");
  ASSERT_TRUE(id) << describe(id.error());
  EXPECT_EQ(id->rfind("pay-", 0), 0U);
  EXPECT_TRUE(ctxpp::gateway::refund(ctx, *stub_, *id, "r-2"));
  const ctxpp::Result<void> again = ctxpp::gateway::refund(ctx, *stub_, *id, "r-3");
  EXPECT_EQ(again.error(), ctxpp::grpc::errc::not_found) << describe(again.error());
  EXPECT_TRUE(ctxpp_test::eventually([&] { return service_.in_flight() == 0; }));
  EXPECT_EQ(service_.completed(), 2);
  EXPECT_EQ(service_.failed(), 1);
  const auto calls = service_.recent_calls();
  ASSERT_EQ(calls.size(), 3U);
  EXPECT_EQ(calls[0].method, "Charge");
  EXPECT_EQ(calls[0].request_id, "r-1");
  EXPECT_EQ(calls[0].outcome, "ok");
  EXPECT_LE(calls[0].start_ns, calls[0].end_ns);
  EXPECT_EQ(calls[2].outcome, "not_found");
  const std::string json = service_.stats_json();
  EXPECT_NE(json.find("\"request_id\":\"r-3\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"completed\":2"), std::string::npos) << json;
  cancel();  // releases the timer now rather than at the deadline
}

TEST_F(Payment, InvalidChargeFails) {
  const auto id = ctxpp::gateway::charge(ctxpp::background(), *stub_, "o-1", 0, 0, "");
  EXPECT_EQ(id.error(), ctxpp::grpc::errc::invalid_argument) << describe(id.error());
}

TEST_F(Payment, ClientCancelStopsChargeAtOnce) {
  auto made = ctxpp::with_cancel(ctxpp::background());
  ctxpp::Result<std::string> id = std::error_code{};
  std::thread client(
      [&] { id = ctxpp::gateway::charge(made.ctx, *stub_, "o-2", 500, 600'000, "r-cancel"); });
  ASSERT_TRUE(ctxpp_test::eventually([&] { return service_.in_flight() == 1; }));
  made.cancel();
  client.join();
  EXPECT_EQ(id.error(), ctxpp::errc::canceled) << describe(id.error());
  // The service's ten-minute charge stopped: it is counted and recorded as canceled.
  ASSERT_TRUE(ctxpp_test::eventually([&] { return service_.canceled() == 1; }));
  EXPECT_EQ(service_.in_flight(), 0);
  const auto calls = service_.recent_calls();
  ASSERT_EQ(calls.size(), 1U);
  EXPECT_EQ(calls[0].request_id, "r-cancel");
  EXPECT_EQ(calls[0].outcome, "canceled");
}

TEST_F(Payment, DeadlineStopsChargeOnBothSides) {
  auto [ctx, cancel] = ctxpp::with_timeout(ctxpp::background(), 100ms);
  const auto id = ctxpp::gateway::charge(ctx, *stub_, "o-3", 500, 600'000, "r-late");
  EXPECT_EQ(id.error(), ctxpp::errc::deadline_exceeded) << describe(id.error());
  ASSERT_TRUE(ctxpp_test::eventually([&] { return service_.canceled() == 1; }));
  const auto calls = service_.recent_calls();
  ASSERT_EQ(calls.size(), 1U);
  // The server's copy of the deadline or gRPC's cancel, whichever came first.
  EXPECT_TRUE(calls[0].outcome == "deadline_exceeded" || calls[0].outcome == "canceled")
      << calls[0].outcome;
  cancel();  // releases the timer now rather than at the deadline
}

}  // namespace
