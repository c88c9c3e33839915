#include "payment_upstream.hpp"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <stdexcept>

namespace gateway {

namespace {
// As many finished calls as the ledger keeps for HTTP.
constexpr std::size_t kHistory = 200'000;
}  // namespace

PaymentUpstream::PaymentUpstream(const HostPort& listen)
    : lifetime_(ctxpp::with_cancel(ctxpp::background())),
      service_(
          std::make_unique<ctxpp::gateway::PaymentService>(lifetime_.ctx, executor_, kHistory)) {
  ::grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(listen.host + ":" + std::to_string(listen.port),
                           ::grpc::InsecureServerCredentials(), &selected_port);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || selected_port == 0) {
    throw std::runtime_error("cannot listen for gRPC on " + listen.host + ":" +
                             std::to_string(listen.port));
  }
  port_ = static_cast<std::uint16_t>(selected_port);
}

PaymentUpstream::~PaymentUpstream() {
  lifetime_.cancel();  // every call still running stops and finishes CANCELLED
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
}

std::vector<UpstreamRecord> PaymentUpstream::records() const {
  std::vector<UpstreamRecord> records;
  for (const ctxpp::gateway::PaymentCall& call : service_->recent_calls()) {
    records.push_back({call.request_id, "grpc:" + call.method, call.start_ns, call.end_ns,
                       call.outcome == "canceled" || call.outcome == "deadline_exceeded"});
  }
  return records;
}

}  // namespace gateway
