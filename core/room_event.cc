#include "core/room_event.h"

namespace roomcast::core {

const std::string& RoomEvent::SubscribeFrame() const {
  absl::call_once(frame_once_, [this] {
    v1::SubscribeResponse response;
    if (proto_.has_message()) {
      *response.mutable_message() = proto_.message();
    } else if (proto_.has_presence()) {
      *response.mutable_presence() = proto_.presence();
    }
    // Serializing a message built in memory fails only past protobuf's 2 GiB
    // limit, which payload limits rule out; should it happen, the client
    // gets an empty SubscribeResponse, never a crash or half a frame.
    if (!response.SerializeToString(&frame_)) frame_.clear();
  });
  return frame_;
}

size_t RoomEvent::QueuedBytes() const {
  constexpr size_t kOverhead = 64;  // Estimate: position, time, framing.
  if (proto_.has_message()) {
    return kOverhead + proto_.message().room().size() + proto_.message().data().size();
  }
  return kOverhead + proto_.presence().room().size() + proto_.presence().client().ByteSizeLong();
}

RoomEventPtr PresenceEventOf(const std::string& room, v1::PresenceEvent::Kind kind,
                             const v1::ClientInfo& client) {
  v1::RoomEvent event;
  v1::PresenceEvent* p = event.mutable_presence();
  p->set_room(room);
  p->set_kind(kind);
  *p->mutable_client() = client;
  return MakeRoomEvent(std::move(event));
}

absl::Time TimeOf(const RoomEventPtr& e) {
  const auto& t = e->message().time();
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

}  // namespace roomcast::core
