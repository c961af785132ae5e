// RoomEvent: one event of a room (a message or a presence change) as every
// recipient shares it, and Subscriber, the interface that receives them.
//
// Ownership: a RoomEvent is built once per publish and immutable; recipients
// share it through RoomEventPtr (history, queues, replays) and it dies with
// the last of them. Threads: every const method is safe from any thread; the
// SubscribeResponse bytes are built once, by the first stream that asks, and
// shared by all the others.
#ifndef ROOMCAST_CORE_ROOM_EVENT_H_
#define ROOMCAST_CORE_ROOM_EVENT_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/base/call_once.h"
#include "absl/time/time.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::core {

class RoomEvent {
 public:
  explicit RoomEvent(v1::RoomEvent proto) : proto_(std::move(proto)) {}
  RoomEvent(const RoomEvent&) = delete;
  RoomEvent& operator=(const RoomEvent&) = delete;

  const v1::RoomEvent& proto() const { return proto_; }
  bool has_message() const { return proto_.has_message(); }
  const v1::Message& message() const { return proto_.message(); }
  bool has_presence() const { return proto_.has_presence(); }
  const v1::PresenceEvent& presence() const { return proto_.presence(); }

  // The serialized v1::SubscribeResponse that carries this event (its
  // message or presence field). Built on first use, then shared.
  const std::string& SubscribeFrame() const;

  // Approximate bytes the event occupies in an outbound queue (payload and
  // names); the unit of every queue's byte limit.
  size_t QueuedBytes() const;

 private:
  const v1::RoomEvent proto_;
  mutable absl::once_flag frame_once_;
  mutable std::string frame_;
};

using RoomEventPtr = std::shared_ptr<const RoomEvent>;

inline RoomEventPtr MakeRoomEvent(v1::RoomEvent proto) {
  return std::make_shared<const RoomEvent>(std::move(proto));
}

// A JOIN or LEAVE of `client` in `room`.
RoomEventPtr PresenceEventOf(const std::string& room, v1::PresenceEvent::Kind kind,
                             const v1::ClientInfo& client);

// A message event's offset and publish time (messages only).
inline uint64_t OffsetOf(const RoomEventPtr& e) { return e->message().position().offset(); }
absl::Time TimeOf(const RoomEventPtr& e);

// Receives a room's live events. Implemented by a Subscribe stream and an
// edge link. OnEvent is called with broker locks held, from the publishing
// thread (or a broker thread), in room order; it must not block and must not
// call back into the broker. It takes a copy of the pointer if it keeps the
// event (typically into a bounded queue; overflowing it is the subscriber's
// own business).
class Subscriber {
 public:
  virtual ~Subscriber() = default;
  virtual void OnEvent(const RoomEventPtr& event) = 0;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_ROOM_EVENT_H_
