// The one place where absl::Status becomes grpc::Status (and v1::Error).
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

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_GRPC_STATUS_H_
