// Broker: where rooms live. The services (Rooms, EdgeLink) talk only to this
// interface, and only through the Policy (policy.h) for what is allowed.
// MemoryBroker (memory_broker.h) keeps everything in this process and is the
// default; a NATS JetStream broker lets several core nodes share rooms
// through the same interface. broker_factory.h picks one by name.
//
// Semantics every implementation keeps (docs/protocol.md):
//   * each room has one order: offsets +1 per message, no gaps, one epoch per
//     continuous history;
//   * Join replays everything after `since` before any later event, or says
//     recovered = false;
//   * events reach subscribers through Subscriber::OnEvent, never with I/O
//     under a broker lock.
//
// Asynchrony: every operation returns at once and completes through its
// callback, which runs exactly once: inline before the call returns (the
// memory broker) or later on a broker thread (a network broker). A caller
// must therefore never hold its own locks across a broker call, and a
// completion must take what it needs by value or keep its owner alive.
// Completions (`done`) run without broker locks held and may call the broker
// again. The one exception is Join's `on_joined`, see there.
//
// Order: operations naming the same subscriber and room take effect in the
// order they were called (a Leave after a Join undoes that Join even if the
// Join has not completed yet).
//
// Errors: absl::Status with canonical codes (listed per operation); a
// network broker adds UNAVAILABLE / DEADLINE_EXCEEDED when it cannot reach
// its store. Threads: every method may be called from any thread.
#ifndef ROOMCAST_CORE_BROKER_H_
#define ROOMCAST_CORE_BROKER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/room_event.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::core {

// What Join saw, handed to `on_joined` so that it is ordered before any
// later event of the room.
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

struct PublishArgs {
  std::string room;
  std::string data;
  std::optional<v1::ClientInfo> publisher;
};

struct JoinArgs {
  std::string room;
  // Resume after this position (replay), or join at the live end.
  std::optional<v1::Position> since;
  // When set and the namespace has presence, the member to add (a JOIN
  // event is published, to the joining subscriber too).
  std::optional<v1::ClientInfo> member;
};

struct LeaveArgs {
  std::string room;
  // When non-empty, this member leaves presence (a LEAVE event is published).
  std::string member_client_id;
};

struct HistoryArgs {
  std::string room;
  std::optional<v1::Position> since;
  // 0 means the Policy's maximum.
  uint32_t limit = 0;
  bool reverse = false;
};

template <class T>
using Completion = absl::AnyInvocable<void(T) &&>;
using JoinedCallback = absl::AnyInvocable<void(const JoinResult&) &&>;

class Broker {
 public:
  virtual ~Broker() = default;

  // Starts the broker's own maintenance (sweeping, connections). Called once
  // before the first operation by its owner; errors stop the process start.
  virtual absl::Status Start() = 0;
  // Stops maintenance; blocks until its threads are gone and every
  // completion of an earlier operation has run (their owners may go away
  // next). Idempotent. Operations after Stop still complete (possibly with
  // UNAVAILABLE).
  virtual void Stop() = 0;
  // Runs one full round of maintenance now and returns when it is done
  // (tests with a fake clock; the broker also maintains itself).
  virtual void MaintainNow() = 0;

  // Appends a message to `room` (created on first use) and fans it out;
  // completes with its position. Errors: INVALID_ARGUMENT (name, payload
  // size, as the Policy says), RESOURCE_EXHAUSTED (too many rooms).
  virtual void Publish(PublishArgs args, Completion<absl::StatusOr<v1::Position>> done) = 0;

  // Subscribes `subscriber` to the room. Joins are counted: a subscriber
  // joined N times stays subscribed until N Leaves. With `since`, replays
  // the messages after it.
  //
  // On success `on_joined` runs exactly once, before any later event of the
  // room reaches `subscriber` (the memory broker runs it under the room
  // lock; a network broker runs it on the thread that delivers the room's
  // events, before delivering the next one). It must not block and must not
  // call the broker. Then `done` runs exactly once, with OK after
  // `on_joined` or with the error (and no `on_joined`); `done` may call the
  // broker. `subscriber` must stay alive until the Leave that undoes the
  // join has completed (or until `done` reports an error).
  // Errors: INVALID_ARGUMENT, OUT_OF_RANGE (since.offset past the room's
  // last offset in the same epoch), RESOURCE_EXHAUSTED.
  virtual void Join(JoinArgs args, Subscriber* subscriber, JoinedCallback on_joined,
                    Completion<absl::Status> done) = 0;

  // Undoes one Join of `subscriber`. Once `done` ran the broker does not call
  // `subscriber` for that join any more. Unknown rooms or subscribers are
  // ignored: leaving is idempotent so that cleanup paths can always call it,
  // but a Leave must only undo a Join that succeeded (counts are shared).
  virtual void Leave(LeaveArgs args, Subscriber* subscriber, Completion<absl::Status> done) = 0;

  // Errors: INVALID_ARGUMENT; FAILED_PRECONDITION when `since` is from
  // another epoch; OUT_OF_RANGE past the last offset. An unknown room has an
  // empty history at offset 0.
  virtual void History(HistoryArgs args, Completion<absl::StatusOr<HistoryResult>> done) = 0;

  // Members ordered by client_id. FAILED_PRECONDITION when the namespace has
  // presence off.
  virtual void Presence(std::string room,
                        Completion<absl::StatusOr<std::vector<v1::ClientInfo>>> done) = 0;

  // Rooms whose name starts with `prefix`, ordered by name.
  virtual void ListRooms(std::string prefix,
                         Completion<absl::StatusOr<std::vector<RoomSummary>>> done) = 0;

  virtual void Stats(Completion<BrokerStats> done) = 0;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_BROKER_H_
