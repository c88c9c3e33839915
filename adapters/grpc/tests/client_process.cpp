// A client that calls Probe.Hold on the server named by its argument and waits for the
// answer, which never comes: GrpcCall.ClientProcessGoneEndsServerContext kills it
// meanwhile, to see what a server makes of a client process that goes away.
#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "ctxpp/context.hpp"
#include "ctxpp/grpc/client_call.hpp"
#include "probe.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
    return 2;
  }
  auto channel = ::grpc::CreateChannel(argv[1], ::grpc::InsecureChannelCredentials());
  auto stub = ctxpp::grpc::test::Probe::NewStub(channel);
  ctxpp::grpc::ClientCall call(ctxpp::background());
  ctxpp::grpc::test::HoldRequest request;
  ctxpp::grpc::test::HoldReply reply;
  const ::grpc::Status status = stub->Hold(&call.context(), request, &reply);
  std::fprintf(stderr, "the server answered (%d): the test should have killed this client\n",
               static_cast<int>(status.error_code()));
  return 3;
}
