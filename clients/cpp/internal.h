// Internal to the client library (clients/cpp/*.cc), not installed: how the
// library reads the core's gRPC statuses and names its subscribers.
#ifndef ROOMCAST_CLIENTS_CPP_INTERNAL_H_
#define ROOMCAST_CLIENTS_CPP_INTERNAL_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"

namespace roomcast::client::internal {

// The same canonical code and message as an absl::Status.
absl::Status ToStatus(const grpc::Status& status);
// Whether the core ended a stream as a slow consumer: the status details
// (a google.rpc.Status, here v1::RpcStatus) carry StreamEnd{SLOW_CONSUMER}.
bool IsSlowConsumer(const grpc::Status& status);
// Stream ends after which a subscription reconnects and resumes.
bool Retryable(const grpc::Status& status);
// A client id for a subscription that did not choose one ("cpp-<random>").
std::string RandomClientId();

}  // namespace roomcast::client::internal

#endif  // ROOMCAST_CLIENTS_CPP_INTERNAL_H_
