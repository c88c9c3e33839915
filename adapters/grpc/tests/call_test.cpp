// ServerCall, UnaryReactor and ClientCall against a real server on 127.0.0.1: deadlines
// and cancellation cross the call in both directions, a client that goes away ends the
// server's context, Finish() racing OnCancel() releases every call exactly once, and
// traceparent reaches the server.
#include "ctxpp/grpc/unary_reactor.hpp"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ctxpp/context.hpp"
#include "ctxpp/executor.hpp"
#include "ctxpp/grpc/client_call.hpp"
#include "ctxpp/grpc/error.hpp"
#include "ctxpp/grpc/server_call.hpp"
#include "ctxpp/grpc/status.hpp"
#include "ctxpp/http/traceparent.hpp"
#include "probe.grpc.pb.h"
#include "support/test_support.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
// Contexts are unpacked into plain variables, not structured bindings, because
// clang 14 cannot capture a structured binding in a lambda.
using ctxpp::grpc::test::HoldReply;
using ctxpp::grpc::test::HoldRequest;
using ctxpp_test::describe;
using ctxpp_test::kLongBound;

using Handler =
    std::function<::grpc::Status(const ctxpp::Context&, const HoldRequest&, HoldReply&)>;

// Counts, in its destructor, the release of what a call's handler captured.
struct ReleaseCounter {
  explicit ReleaseCounter(std::atomic<int>& released) : released_(released) {}
  ReleaseCounter(const ReleaseCounter&) = delete;
  ReleaseCounter& operator=(const ReleaseCounter&) = delete;
  ~ReleaseCounter() { released_.fetch_add(1); }
  std::atomic<int>& released_;
};

class CallbackProbe final : public ctxpp::grpc::test::Probe::CallbackService {
 public:
  CallbackProbe(const ctxpp::Context& lifetime, ctxpp::Executor& executor)
      : lifetime_(lifetime), executor_(executor) {}

  void set_handler(Handler handler) {
    std::lock_guard lock(mutex_);
    handler_ = std::move(handler);
  }
  std::atomic<int> started{0};
  std::atomic<int> released{0};

  ::grpc::ServerUnaryReactor* Hold(::grpc::CallbackServerContext* server_context,
                                   const HoldRequest* request, HoldReply* reply) override {
    Handler handler;
    {
      std::lock_guard lock(mutex_);
      handler = handler_;
    }
    started.fetch_add(1);
    auto counter = std::make_shared<ReleaseCounter>(released);
    return ctxpp::grpc::UnaryReactor::start(
        lifetime_, server_context, executor_,
        [handler, counter, request, reply](const ctxpp::Context& ctx) {
          return handler(ctx, *request, *reply);
        });
  }

 private:
  ctxpp::Context lifetime_;
  ctxpp::Executor& executor_;
  std::mutex mutex_;
  Handler handler_;
};

class SyncProbe final : public ctxpp::grpc::test::SyncProbe::Service {
 public:
  std::function<::grpc::Status(ctxpp::grpc::ServerCall&)> handler;

  ::grpc::Status Hold(::grpc::ServerContext* server_context, const HoldRequest*,
                      HoldReply*) override {
    ctxpp::grpc::ServerCall call(ctxpp::background(), *server_context);
    return handler(call);
  }
};

// What a handler saw, for the test thread to check once it has been recorded.
struct Seen {
  ctxpp_test::Gate started;
  ctxpp_test::Gate ended;
  std::mutex mutex;
  std::optional<ctxpp::clock::time_point> deadline;
  std::error_code err;
  std::error_code cause;
  std::optional<ctxpp::http::TraceParent> trace;

  void record_start(const ctxpp::Context& ctx) {
    {
      std::lock_guard lock(mutex);
      deadline = ctx.deadline();
      trace = ctxpp::http::traceparent(ctx);
    }
    started.open();
  }
  void record_end(const ctxpp::Context& ctx) {
    {
      std::lock_guard lock(mutex);
      err = ctx.err();
      cause = ctx.cause();
    }
    ended.open();
  }
};

// Starts, waits until ctx ends (bounded), records, answers with ctx's end.
Handler hold_until_done(Seen& seen) {
  return [&seen](const ctxpp::Context& ctx, const HoldRequest&, HoldReply&) {
    seen.record_start(ctx);
    ctx.wait_for(kLongBound);
    seen.record_end(ctx);
    return ctxpp::grpc::to_status(ctx.err());
  };
}

class GrpcCall : public ::testing::Test {
 protected:
  void SetUp() override {
    ::grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&callback_service_);
    builder.RegisterService(&sync_service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
    channel_ = ::grpc::CreateChannel(target(), ::grpc::InsecureChannelCredentials());
    stub_ = ctxpp::grpc::test::Probe::NewStub(channel_);
    sync_stub_ = ctxpp::grpc::test::SyncProbe::NewStub(channel_);
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 10s);
    // Every call's reactor is gone (OnDone ran) and released its handler.
    EXPECT_TRUE(ctxpp_test::eventually([&] {
      return callback_service_.released.load() == callback_service_.started.load();
    })) << callback_service_.released.load()
        << " of " << callback_service_.started.load();
    end_lifetime_();
  }

  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  // Blocking call under ctx; returns the status.
  ::grpc::Status hold(ctxpp::grpc::ClientCall& call) {
    HoldRequest request;
    HoldReply reply;
    return stub_->Hold(&call.context(), request, &reply);
  }

  ctxpp::WithCancel<ctxpp::Context, ctxpp::CancelFunc> lifetime_made_ =
      ctxpp::with_cancel(ctxpp::background());
  ctxpp::CancelFunc end_lifetime_ = lifetime_made_.cancel;
  ctxpp::ThreadPool pool_{16};
  CallbackProbe callback_service_{lifetime_made_.ctx, pool_};
  SyncProbe sync_service_;
  int port_ = 0;
  std::unique_ptr<::grpc::Server> server_;
  std::shared_ptr<::grpc::Channel> channel_;
  std::unique_ptr<ctxpp::grpc::test::Probe::Stub> stub_;
  std::unique_ptr<ctxpp::grpc::test::SyncProbe::Stub> sync_stub_;
};

TEST_F(GrpcCall, ServerDeadlineIsClientDeadline) {
  Seen seen;
  callback_service_.set_handler([&seen](const ctxpp::Context& ctx, const HoldRequest&, HoldReply&) {
    seen.record_start(ctx);
    return ::grpc::Status::OK;
  });
  auto made = ctxpp::with_timeout(ctxpp::background(), 60s);
  ctxpp::grpc::ClientCall call(made.ctx);
  const ::grpc::Status status = hold(call);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(seen.started.wait());
  std::lock_guard lock(seen.mutex);
  ASSERT_TRUE(seen.deadline.has_value());
  // grpc-timeout carries the time left, rounded by its unit: equal within a generous
  // tolerance that only a lost or invented deadline would exceed.
  EXPECT_LE(*seen.deadline, *made.ctx.deadline() + 1s);
  EXPECT_GE(*seen.deadline, *made.ctx.deadline() - 10s);
}

TEST_F(GrpcCall, ServerHasNoDeadlineWhenClientHasNone) {
  Seen seen;
  callback_service_.set_handler([&seen](const ctxpp::Context& ctx, const HoldRequest&, HoldReply&) {
    seen.record_start(ctx);
    return ::grpc::Status::OK;
  });
  ctxpp::grpc::ClientCall call(ctxpp::background());
  ASSERT_TRUE(hold(call).ok());
  ASSERT_TRUE(seen.started.wait());
  std::lock_guard lock(seen.mutex);
  EXPECT_FALSE(seen.deadline.has_value());
}

TEST_F(GrpcCall, ClientCancelEndsServerContextWithClientCanceled) {
  Seen seen;
  callback_service_.set_handler(hold_until_done(seen));
  auto made = ctxpp::with_cancel(ctxpp::background());
  ctxpp::grpc::ClientCall call(made.ctx);
  HoldRequest request;
  HoldReply reply;
  ctxpp_test::Gate finished;
  std::error_code client_error;
  stub_->async()->Hold(&call.context(), &request, &reply, [&](::grpc::Status status) {
    client_error = call.error(status);
    finished.open();
  });
  ASSERT_TRUE(seen.started.wait());
  made.cancel();
  ASSERT_TRUE(finished.wait()) << ctxpp_test::describe_threads();
  EXPECT_EQ(client_error, ctxpp::errc::canceled) << describe(client_error);
  ASSERT_TRUE(seen.ended.wait()) << ctxpp_test::describe_threads();
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.err, ctxpp::errc::canceled) << describe(seen.err);
  EXPECT_EQ(seen.cause, ctxpp::grpc::errc::client_canceled) << describe(seen.cause);
}

TEST_F(GrpcCall, ClientDeadlineEndsBothSides) {
  Seen seen;
  callback_service_.set_handler(hold_until_done(seen));
  auto made = ctxpp::with_timeout(ctxpp::background(), 200ms);
  ctxpp::grpc::ClientCall call(made.ctx);
  const ::grpc::Status status = hold(call);
  const std::error_code ec = call.error(status);
  EXPECT_EQ(ec, ctxpp::errc::deadline_exceeded) << describe(ec) << " " << status.error_message();
  EXPECT_TRUE(made.ctx.done());
  ASSERT_TRUE(seen.ended.wait()) << ctxpp_test::describe_threads();
  std::lock_guard lock(seen.mutex);
  // The server's own timer (deadline_exceeded) or gRPC's OnCancel (client_canceled),
  // whichever came first: either way the work stopped.
  EXPECT_TRUE(seen.err == ctxpp::errc::deadline_exceeded ||
              seen.cause == ctxpp::grpc::errc::client_canceled)
      << describe(seen.err) << " " << describe(seen.cause);
}

TEST_F(GrpcCall, ServerLifetimeEndsCallContexts) {
  Seen seen;
  callback_service_.set_handler(hold_until_done(seen));
  ctxpp::grpc::ClientCall call(ctxpp::background());
  ::grpc::Status status;
  std::thread client([&] { status = hold(call); });
  ASSERT_TRUE(seen.started.wait());
  end_lifetime_();
  client.join();
  EXPECT_EQ(status.error_code(), ::grpc::StatusCode::CANCELLED);
  EXPECT_EQ(call.error(status), ctxpp::grpc::errc::canceled);
  ASSERT_TRUE(seen.ended.wait()) << ctxpp_test::describe_threads();
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.err, ctxpp::errc::canceled);
  EXPECT_NE(seen.cause, ctxpp::grpc::errc::client_canceled);
}

TEST_F(GrpcCall, ClientCallFromEndedContextCancelsAtOnce) {
  callback_service_.set_handler(
      [](const ctxpp::Context&, const HoldRequest&, HoldReply&) { return ::grpc::Status::OK; });
  auto made = ctxpp::with_cancel(ctxpp::background());
  made.cancel();
  ctxpp::grpc::ClientCall call(made.ctx);
  const ::grpc::Status status = hold(call);
  EXPECT_EQ(status.error_code(), ::grpc::StatusCode::CANCELLED);
  EXPECT_EQ(call.error(status), ctxpp::errc::canceled);
  // Cancelled before it started: the call never reached the server.
  EXPECT_EQ(callback_service_.started.load(), 0);
}

TEST_F(GrpcCall, TraceparentReachesServer) {
  Seen seen;
  callback_service_.set_handler([&seen](const ctxpp::Context& ctx, const HoldRequest&, HoldReply&) {
    seen.record_start(ctx);
    return ::grpc::Status::OK;
  });
  const ctxpp::http::TraceParent sent = ctxpp::http::new_trace(true);
  const ctxpp::Context ctx = ctxpp::http::with_traceparent(ctxpp::background(), sent);
  ctxpp::grpc::ClientCall call(ctx);
  ASSERT_TRUE(hold(call).ok());
  ASSERT_TRUE(seen.started.wait());
  std::lock_guard lock(seen.mutex);
  ASSERT_TRUE(seen.trace.has_value());
  EXPECT_EQ(seen.trace->trace_id, sent.trace_id);
  EXPECT_EQ(seen.trace->flags, sent.flags);
  EXPECT_NE(seen.trace->parent_id, sent.parent_id);  // a span of the server's own
}

TEST_F(GrpcCall, NoTraceWithoutTraceparent) {
  Seen seen;
  callback_service_.set_handler([&seen](const ctxpp::Context& ctx, const HoldRequest&, HoldReply&) {
    seen.record_start(ctx);
    return ::grpc::Status::OK;
  });
  ctxpp::grpc::ClientCall call(ctxpp::background());
  ASSERT_TRUE(hold(call).ok());
  ASSERT_TRUE(seen.started.wait());
  std::lock_guard lock(seen.mutex);
  EXPECT_FALSE(seen.trace.has_value());
}

TEST_F(GrpcCall, HandlerExceptionFinishesWithUnknown) {
  callback_service_.set_handler(
      [](const ctxpp::Context&, const HoldRequest&, HoldReply&) -> ::grpc::Status {
        throw std::runtime_error("broken handler");
      });
  ctxpp::grpc::ClientCall call(ctxpp::background());
  const ::grpc::Status status = hold(call);
  EXPECT_EQ(status.error_code(), ::grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(status.error_message(), "broken handler");
}

TEST_F(GrpcCall, SyncServerPollSeesClientCancel) {
  Seen seen;
  sync_service_.handler = [&seen](ctxpp::grpc::ServerCall& server_call) {
    seen.record_start(server_call.ctx());
    const auto until = std::chrono::steady_clock::now() + kLongBound;
    while (!server_call.poll_cancel() && std::chrono::steady_clock::now() < until) {
      server_call.ctx().wait_for(1ms);  // a slice of work
    }
    seen.record_end(server_call.ctx());
    return ctxpp::grpc::to_status(server_call.ctx().err());
  };
  auto made = ctxpp::with_cancel(ctxpp::background());
  ctxpp::grpc::ClientCall call(made.ctx);
  ::grpc::Status status;
  std::thread client([&] {
    HoldRequest request;
    HoldReply reply;
    status = sync_stub_->Hold(&call.context(), request, &reply);
  });
  ASSERT_TRUE(seen.started.wait());
  made.cancel();
  client.join();
  EXPECT_EQ(call.error(status), ctxpp::errc::canceled);
  ASSERT_TRUE(seen.ended.wait()) << ctxpp_test::describe_threads();
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.cause, ctxpp::grpc::errc::client_canceled) << describe(seen.cause);
}

// Many calls whose client cancels around the moment the server finishes: each ends
// exactly once on the client, and every reactor is deleted (its handler released)
// whether OnCancel() came or Finish() won. Bounded in count and time.
TEST_F(GrpcCall, FinishRacingCancelReleasesEveryCallOnce) {
  const int calls = ctxpp_test::kTsan || ctxpp_test::kAsan ? 100 : 400;
  const auto time_bound = std::chrono::steady_clock::now() + 20s;
  std::atomic<int> handler_runs{0};
  callback_service_.set_handler(
      [&handler_runs](const ctxpp::Context& ctx, const HoldRequest& request, HoldReply& reply) {
        handler_runs.fetch_add(1);
        const int spin_us = std::stoi(request.tag());
        if (ctx.wait_for(std::chrono::microseconds(spin_us)))
          return ctxpp::grpc::to_status(ctx.err());
        reply.set_tag(request.tag());
        return ::grpc::Status::OK;
      });
  std::mt19937 random(12345);
  std::uniform_int_distribution<int> delay_us(0, 300);
  int issued = 0;
  std::atomic<int> completions{0};
  std::atomic<int> bad{0};
  for (; issued < calls && std::chrono::steady_clock::now() < time_bound; ++issued) {
    auto made = ctxpp::with_cancel(ctxpp::background());
    auto call = std::make_unique<ctxpp::grpc::ClientCall>(made.ctx);
    HoldRequest request;
    request.set_tag(std::to_string(delay_us(random)));
    HoldReply reply;
    ctxpp_test::Gate done;
    std::atomic<int> callbacks{0};
    stub_->async()->Hold(&call->context(), &request, &reply, [&](::grpc::Status status) {
      const std::error_code ec = call->error(status);
      if (ec && ec != ctxpp::errc::canceled) bad.fetch_add(1);
      if (callbacks.fetch_add(1) != 0) bad.fetch_add(1);
      completions.fetch_add(1);
      done.open();
    });
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(random)));
    made.cancel();
    ASSERT_TRUE(done.wait()) << "call " << issued << ctxpp_test::describe_threads();
  }
  EXPECT_EQ(completions.load(), issued);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LE(handler_runs.load(), issued);
  EXPECT_TRUE(ctxpp_test::eventually([&] {
    return callback_service_.released.load() == callback_service_.started.load();
  })) << callback_service_.released.load()
      << " of " << callback_service_.started.load();
}

TEST_F(GrpcCall, ClientProcessGoneEndsServerContext) {
  Seen seen;
  callback_service_.set_handler(hold_until_done(seen));
  // CTXPP_GRPC_TEST_CLIENT: tests/client_process.cpp, built beside this test.
  std::string program = CTXPP_GRPC_TEST_CLIENT;
  std::string address = target();
  char* argv[] = {program.data(), address.data(), nullptr};
  pid_t child = 0;
  ASSERT_EQ(::posix_spawn(&child, program.c_str(), nullptr, nullptr, argv, environ), 0);
  const bool started = seen.started.wait();
  ::kill(child, SIGKILL);
  int child_status = 0;
  ::waitpid(child, &child_status, 0);
  ASSERT_TRUE(started) << "the child's call never reached the server";
  ASSERT_TRUE(seen.ended.wait()) << ctxpp_test::describe_threads();
  std::lock_guard lock(seen.mutex);
  EXPECT_EQ(seen.err, ctxpp::errc::canceled) << describe(seen.err);
  EXPECT_EQ(seen.cause, ctxpp::grpc::errc::client_canceled) << describe(seen.cause);
}

}  // namespace
