// RoomFanout: the local subscribers of one room and the delivery of its
// events to them. Joins are counted: a subscriber added N times (an edge
// joins once per client) gets each event once and stays until N removals.
// Storage (offsets, history, presence) is not here, so every broker (memory,
// NATS) reuses it for the subscribers of its own process.
//
// Ownership: subscribers are borrowed; each must stay alive until its last
// Remove. Threads: not thread-safe. The owner holds the one lock that orders
// the room's events around every call, so that Deliver hands events to every
// subscriber in room order and a join's replay (delivered by the owner under
// the same lock) precedes the live events that follow it.
#ifndef ROOMCAST_CORE_ROOM_FANOUT_H_
#define ROOMCAST_CORE_ROOM_FANOUT_H_

#include <cstddef>

#include "absl/container/flat_hash_map.h"
#include "core/room_event.h"

namespace roomcast::core {

class RoomFanout {
 public:
  RoomFanout() = default;
  RoomFanout(const RoomFanout&) = delete;
  RoomFanout& operator=(const RoomFanout&) = delete;

  // Counts one join of `subscriber`; true when it is its first.
  bool Add(Subscriber* subscriber);

  // Undoes one Add; true when that was the subscriber's last join (it gets
  // nothing more). A subscriber that is not here is ignored (false).
  bool Remove(Subscriber* subscriber);

  // Hands `event` to every subscriber once, whatever its join count.
  void Deliver(const RoomEventPtr& event) const;

  // Distinct subscribers.
  size_t size() const { return joins_.size(); }
  bool empty() const { return joins_.empty(); }
  // Joins of `subscriber` not yet undone (0 when absent).
  int joins(Subscriber* subscriber) const;

 private:
  absl::flat_hash_map<Subscriber*, int> joins_;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_ROOM_FANOUT_H_
