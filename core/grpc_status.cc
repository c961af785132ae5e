#include "core/grpc_status.h"

#include <utility>

namespace roomcast::core {

grpc::Status StreamEndStatus(grpc::StatusCode code, std::string message, v1::DisconnectCode end) {
  v1::StreamEnd stream_end;
  stream_end.set_code(end);
  v1::RpcStatus details;
  details.set_code(static_cast<int32_t>(code));
  details.set_message(message);
  details.add_details()->PackFrom(stream_end);
  return grpc::Status(code, std::move(message), details.SerializeAsString());
}

}  // namespace roomcast::core
