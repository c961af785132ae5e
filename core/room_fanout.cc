#include "core/room_fanout.h"

namespace roomcast::core {

bool RoomFanout::Add(Subscriber* subscriber) { return ++joins_[subscriber] == 1; }

bool RoomFanout::Remove(Subscriber* subscriber) {
  auto it = joins_.find(subscriber);
  if (it == joins_.end()) return false;
  if (--it->second > 0) return false;
  joins_.erase(it);
  return true;
}

void RoomFanout::Deliver(const RoomEventPtr& event) const {
  for (const auto& [subscriber, joins] : joins_) subscriber->OnEvent(event);
}

int RoomFanout::joins(Subscriber* subscriber) const {
  auto it = joins_.find(subscriber);
  return it == joins_.end() ? 0 : it->second;
}

}  // namespace roomcast::core
