// The one place where absl::Status becomes grpc::Status (and v1::Error), and
// where a stream end gets its machine-readable reason (v1::StreamEnd in the
// status details). Pure functions; safe from any thread.
#ifndef ROOMCAST_CORE_GRPC_STATUS_H_
#define ROOMCAST_CORE_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::core {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

inline v1::Error ToError(const absl::Status& status) {
  v1::Error error;
  error.set_code(static_cast<uint32_t>(status.code()));
  error.set_message(std::string(status.message()));
  return error;
}

// `code` and `message` with binary details (the grpc-status-details-bin
// trailer): a serialized v1::RpcStatus (wire-compatible with
// google.rpc.Status) whose details hold one Any packing v1::StreamEnd{end}.
grpc::Status StreamEndStatus(grpc::StatusCode code, std::string message, v1::DisconnectCode end);

// How a stream ends when its outbound queue overflowed: RESOURCE_EXHAUSTED,
// `message` for people, StreamEnd{SLOW_CONSUMER} for clients (reconnect and
// resume from the last position received).
inline grpc::Status SlowConsumerStatus(std::string message) {
  return StreamEndStatus(grpc::StatusCode::RESOURCE_EXHAUSTED, std::move(message),
                         v1::SLOW_CONSUMER);
}

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_GRPC_STATUS_H_
