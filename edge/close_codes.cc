#include "edge/close_codes.h"

#include "google/protobuf/descriptor.h"

namespace roomcast::edge {

bool Reconnects(int code) {
  const google::protobuf::EnumValueDescriptor* value =
      v1::DisconnectCode_descriptor()->FindValueByNumber(code);
  return value != nullptr && value->options().GetExtension(v1::reconnect);
}

v1::ServerFrame DisconnectFrame(v1::DisconnectCode code, const std::string& reason) {
  v1::ServerFrame frame;
  v1::Disconnect* disconnect = frame.mutable_disconnect();
  disconnect->set_code(code);
  disconnect->set_reason(reason);
  disconnect->set_reconnect(Reconnects(code));
  return frame;
}

}  // namespace roomcast::edge
