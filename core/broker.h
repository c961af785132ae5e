// Broker: where rooms live. The services (Rooms, EdgeLink) talk only to this
// interface. MemoryBroker (memory_broker.h) keeps everything in this process
// and is the default; a NATS JetStream broker lets several core nodes share
// rooms through the same interface.
//
// Semantics every implementation keeps (docs/protocol.md):
//   * each room has one order: offsets +1 per message, no gaps, one epoch per
//     continuous history;
//   * Join replays everything after `since` before any later event, or says
//     recovered = false;
//   * events reach subscribers through Subscriber::OnEvent, never with I/O
//     under a broker lock.
#ifndef ROOMCAST_CORE_BROKER_H_
#define ROOMCAST_CORE_BROKER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::core {

// An immutable event shared by every recipient: built once per publish.
using RoomEventPtr = std::shared_ptr<const v1::RoomEvent>;

// Receives a room's live events. Implemented by a Subscribe stream and an
// edge link. OnEvent is called with broker locks held, from the publishing
// thread, in room order; it must not block and must not call back into the
// broker. It takes a copy of the pointer if it keeps the event (typically
// into a bounded queue; overflowing it is the subscriber's own business).
class Subscriber {
 public:
  virtual ~Subscriber() = default;
  virtual void OnEvent(const RoomEventPtr& event) = 0;
};

// What Join saw, handed to the caller under the room lock so that it is
// ordered before any later event of the room.
struct JoinResult {
  // Every message after `since` was replayed (true when no `since`).
  bool recovered = true;
  // The room's position at the join.
  v1::Position position;
  // The messages after `since`, oldest first (empty unless recovered).
  std::vector<RoomEventPtr> replayed;
};

struct HistoryResult {
  std::vector<RoomEventPtr> messages;
  v1::Position position;
};

struct RoomSummary {
  std::string room;
  v1::Position position;
  uint32_t num_subscribers = 0;
  uint32_t num_clients = 0;
};

struct BrokerStats {
  uint64_t rooms = 0;
  uint64_t subscriptions = 0;
  uint64_t presence_entries = 0;
  uint64_t messages_published_total = 0;
};

class Broker {
 public:
  virtual ~Broker() = default;

  // Appends a message to `room` (created on first use) and fans it out.
  // Errors: INVALID_ARGUMENT (name, payload size), RESOURCE_EXHAUSTED (too
  // many rooms).
  virtual absl::StatusOr<v1::Position> Publish(absl::string_view room, std::string data,
                                               const v1::ClientInfo* publisher) = 0;

  // Subscribes `subscriber` to `room`. Joins are counted: a subscriber joined
  // N times stays subscribed until N Leaves (an edge joins once per client).
  // With `since`, replays the messages after it. `on_joined` runs exactly
  // once on success, under the room lock, before any later event of the room
  // reaches `subscriber`; it must not block or call into the broker.
  // When `member` is set and the namespace has presence, it becomes a member
  // and a JOIN event is published (to `subscriber` too).
  // Errors: INVALID_ARGUMENT, OUT_OF_RANGE (since.offset past the room's
  // last offset in the same epoch), RESOURCE_EXHAUSTED.
  virtual absl::Status Join(absl::string_view room, const v1::Position* since,
                            Subscriber* subscriber, const v1::ClientInfo* member,
                            absl::FunctionRef<void(const JoinResult&)> on_joined) = 0;

  // Undoes one Join. When `member_client_id` is non-empty that member leaves
  // presence (a LEAVE event is published). Unknown rooms or subscribers are
  // ignored: leaving is idempotent so that cleanup paths can always call it.
  virtual void Leave(absl::string_view room, Subscriber* subscriber,
                     absl::string_view member_client_id) = 0;

  // Errors: INVALID_ARGUMENT; FAILED_PRECONDITION when `since` is from
  // another epoch; OUT_OF_RANGE past the last offset. An unknown room has an
  // empty history at offset 0.
  virtual absl::StatusOr<HistoryResult> History(absl::string_view room, const v1::Position* since,
                                                uint32_t limit, bool reverse) = 0;

  // Members ordered by client_id. FAILED_PRECONDITION when the namespace has
  // presence off.
  virtual absl::StatusOr<std::vector<v1::ClientInfo>> Presence(absl::string_view room) = 0;

  virtual std::vector<RoomSummary> ListRooms(absl::string_view prefix) = 0;

  virtual BrokerStats Stats() = 0;

  // Whether browser clients may publish to `room` (namespace option). Also
  // validates the name.
  virtual absl::Status CheckClientPublish(absl::string_view room) = 0;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_BROKER_H_
