#include "core/memory_broker.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/room_name.h"
#include "google/protobuf/util/time_util.h"

namespace roomcast::core {

struct MemoryBroker::Room {
  explicit Room(std::string room_name, std::string room_epoch, const NamespaceOptions* ns)
      : name(std::move(room_name)), epoch(std::move(room_epoch)), options(ns) {}

  const std::string name;
  const std::string epoch;
  const NamespaceOptions* const options;

  absl::Mutex mu;
  // Set under both the registry mutex and `mu` when the room leaves the map;
  // whoever then holds `mu` looks the room up again.
  bool removed ABSL_GUARDED_BY(mu) = false;
  uint64_t offset ABSL_GUARDED_BY(mu) = 0;
  // Oldest first; offsets are consecutive, ending at `offset`.
  std::deque<RoomEventPtr> history ABSL_GUARDED_BY(mu);
  // Subscriber -> number of Joins not yet undone.
  absl::flat_hash_map<Subscriber*, int> subscribers ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, v1::ClientInfo> members ABSL_GUARDED_BY(mu);

  v1::Position Position() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    v1::Position p;
    p.set_epoch(epoch);
    p.set_offset(offset);
    return p;
  }
  bool Empty() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return subscribers.empty() && members.empty() && history.empty();
  }
};

namespace {

std::string NewEpoch() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  absl::MutexLock lock(&mu);
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(*gen));
}

uint64_t OffsetOf(const RoomEventPtr& e) { return e->message().position().offset(); }

absl::Time TimeOf(const RoomEventPtr& e) {
  const auto& t = e->message().time();
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

RoomEventPtr PresenceEventOf(const std::string& room, v1::PresenceEvent::Kind kind,
                             const v1::ClientInfo& client) {
  auto event = std::make_shared<v1::RoomEvent>();
  v1::PresenceEvent* p = event->mutable_presence();
  p->set_room(room);
  p->set_kind(kind);
  *p->mutable_client() = client;
  return event;
}

}  // namespace

MemoryBroker::MemoryBroker(EngineOptions options, Clock* clock)
    : options_(std::move(options)), clock_(clock) {}

MemoryBroker::~MemoryBroker() = default;

absl::StatusOr<const NamespaceOptions*> MemoryBroker::Resolve(absl::string_view room) const {
  if (absl::Status s = ValidateRoomName(room, options_.max_room_name_bytes); !s.ok()) return s;
  absl::string_view ns = NamespaceOf(room);
  if (ns.empty()) return &options_.default_namespace;
  auto it = options_.namespaces.find(ns);
  if (it == options_.namespaces.end()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown namespace \"", ns, "\""));
  }
  return &it->second;
}

std::shared_ptr<MemoryBroker::Room> MemoryBroker::Find(absl::string_view room) {
  absl::MutexLock lock(&mu_);
  auto it = rooms_.find(room);
  return it == rooms_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<MemoryBroker::Room>> MemoryBroker::GetOrCreate(
    absl::string_view room, const NamespaceOptions* ns) {
  absl::MutexLock lock(&mu_);
  auto it = rooms_.find(room);
  if (it != rooms_.end()) return it->second;
  if (rooms_.size() >= options_.max_rooms) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many rooms (limit ", options_.max_rooms, ")"));
  }
  auto created = std::make_shared<Room>(std::string(room), NewEpoch(), ns);
  rooms_.emplace(created->name, created);
  return created;
}

void MemoryBroker::Fanout(Room& room, const RoomEventPtr& event) {
  for (const auto& [subscriber, joins] : room.subscribers) subscriber->OnEvent(event);
}

void MemoryBroker::TrimExpired(Room& room) {
  if (room.history.empty()) return;
  absl::Time oldest_kept = clock_->Now() - room.options->history_ttl;
  while (!room.history.empty() && TimeOf(room.history.front()) < oldest_kept) {
    room.history.pop_front();
  }
}

absl::StatusOr<v1::Position> MemoryBroker::Publish(absl::string_view room_name, std::string data,
                                                   const v1::ClientInfo* publisher) {
  absl::StatusOr<const NamespaceOptions*> ns = Resolve(room_name);
  if (!ns.ok()) return ns.status();
  if (data.size() > options_.max_payload_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("payload is %d bytes, larger than the limit of %d", data.size(),
                        options_.max_payload_bytes));
  }
  auto event = std::make_shared<v1::RoomEvent>();
  v1::Message* message = event->mutable_message();
  message->set_room(std::string(room_name));
  message->set_data(std::move(data));
  if (publisher != nullptr) *message->mutable_publisher() = *publisher;

  for (;;) {
    absl::StatusOr<std::shared_ptr<Room>> room = GetOrCreate(room_name, *ns);
    if (!room.ok()) return room.status();
    Room& r = **room;
    absl::MutexLock lock(&r.mu);
    if (r.removed) continue;  // Swept between lookup and lock: look again.
    absl::Time now = clock_->Now();
    message->mutable_position()->set_epoch(r.epoch);
    message->mutable_position()->set_offset(++r.offset);
    *message->mutable_time() =
        google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(now));
    RoomEventPtr shared = std::move(event);
    if (r.options->history_size > 0) {
      r.history.push_back(shared);
      while (r.history.size() > r.options->history_size) r.history.pop_front();
    }
    Fanout(r, shared);
    published_total_.fetch_add(1, std::memory_order_relaxed);
    return r.Position();
  }
}

absl::Status MemoryBroker::Join(absl::string_view room_name, const v1::Position* since,
                                Subscriber* subscriber, const v1::ClientInfo* member,
                                absl::FunctionRef<void(const JoinResult&)> on_joined) {
  absl::StatusOr<const NamespaceOptions*> ns = Resolve(room_name);
  if (!ns.ok()) return ns.status();
  for (;;) {
    absl::StatusOr<std::shared_ptr<Room>> room = GetOrCreate(room_name, *ns);
    if (!room.ok()) return room.status();
    Room& r = **room;
    absl::MutexLock lock(&r.mu);
    if (r.removed) continue;
    JoinResult result;
    result.position = r.Position();
    if (since != nullptr) {
      if (since->epoch() == r.epoch && since->offset() > r.offset) {
        return absl::OutOfRangeError(absl::StrFormat(
            "since offset %d is past the room's last offset %d", since->offset(), r.offset));
      }
      TrimExpired(r);
      uint64_t first_kept = r.history.empty() ? r.offset + 1 : OffsetOf(r.history.front());
      result.recovered = since->epoch() == r.epoch && since->offset() + 1 >= first_kept;
      if (result.recovered) {
        for (const RoomEventPtr& e : r.history) {
          if (OffsetOf(e) > since->offset()) result.replayed.push_back(e);
        }
      }
    }
    ++r.subscribers[subscriber];
    on_joined(result);
    if (member != nullptr && r.options->presence) {
      auto [it, inserted] = r.members.insert_or_assign(member->client_id(), *member);
      if (inserted && r.options->join_leave) {
        Fanout(r, PresenceEventOf(r.name, v1::PresenceEvent::JOIN, *member));
      }
    }
    return absl::OkStatus();
  }
}

void MemoryBroker::Leave(absl::string_view room_name, Subscriber* subscriber,
                         absl::string_view member_client_id) {
  std::shared_ptr<Room> room = Find(room_name);
  if (room == nullptr) return;
  absl::MutexLock lock(&room->mu);
  if (room->removed) return;  // Removed rooms had no subscribers left.
  auto sub = room->subscribers.find(subscriber);
  if (sub != room->subscribers.end() && --sub->second == 0) room->subscribers.erase(sub);
  if (!member_client_id.empty()) {
    auto m = room->members.find(member_client_id);
    if (m != room->members.end()) {
      v1::ClientInfo left = std::move(m->second);
      room->members.erase(m);
      if (room->options->join_leave) {
        Fanout(*room, PresenceEventOf(room->name, v1::PresenceEvent::LEAVE, left));
      }
    }
  }
}

absl::StatusOr<HistoryResult> MemoryBroker::History(absl::string_view room_name,
                                                    const v1::Position* since, uint32_t limit,
                                                    bool reverse) {
  absl::StatusOr<const NamespaceOptions*> ns = Resolve(room_name);
  if (!ns.ok()) return ns.status();
  if (limit == 0 || limit > options_.max_history_limit) limit = options_.max_history_limit;
  HistoryResult result;
  std::shared_ptr<Room> room = Find(room_name);
  if (room == nullptr) {
    if (since != nullptr && since->offset() > 0) {
      return absl::FailedPreconditionError("epoch mismatch: the room has no history");
    }
    return result;  // An unknown room is an empty one at offset 0.
  }
  absl::MutexLock lock(&room->mu);
  result.position = room->Position();
  uint64_t after = 0;
  if (since != nullptr) {
    if (since->epoch() != room->epoch) {
      return absl::FailedPreconditionError(absl::StrCat("epoch mismatch: since is from epoch \"",
                                                        since->epoch(), "\", the room is at \"",
                                                        room->epoch, "\""));
    }
    if (since->offset() > room->offset) {
      return absl::OutOfRangeError(absl::StrFormat(
          "since offset %d is past the room's last offset %d", since->offset(), room->offset));
    }
    after = since->offset();
  }
  TrimExpired(*room);
  const auto& h = room->history;
  // The first entry with offset > after (offsets are consecutive).
  size_t first = 0;
  if (!h.empty() && after >= OffsetOf(h.front())) first = after - OffsetOf(h.front()) + 1;
  size_t count = std::min<size_t>(limit, h.size() - std::min(first, h.size()));
  result.messages.reserve(count);
  if (reverse) {
    for (size_t i = 0; i < count; ++i) result.messages.push_back(h[h.size() - 1 - i]);
  } else {
    for (size_t i = 0; i < count; ++i) result.messages.push_back(h[first + i]);
  }
  return result;
}

absl::StatusOr<std::vector<v1::ClientInfo>> MemoryBroker::Presence(absl::string_view room_name) {
  absl::StatusOr<const NamespaceOptions*> ns = Resolve(room_name);
  if (!ns.ok()) return ns.status();
  if (!(*ns)->presence) {
    return absl::FailedPreconditionError(
        absl::StrCat("presence is off in the namespace of \"", room_name, "\""));
  }
  std::vector<v1::ClientInfo> out;
  std::shared_ptr<Room> room = Find(room_name);
  if (room == nullptr) return out;
  {
    absl::MutexLock lock(&room->mu);
    out.reserve(room->members.size());
    for (const auto& [id, info] : room->members) out.push_back(info);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.client_id() < b.client_id(); });
  return out;
}

std::vector<RoomSummary> MemoryBroker::ListRooms(absl::string_view prefix) {
  std::vector<std::shared_ptr<Room>> rooms;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, room] : rooms_) {
      if (absl::StartsWith(name, prefix)) rooms.push_back(room);
    }
  }
  std::vector<RoomSummary> out;
  out.reserve(rooms.size());
  for (const auto& room : rooms) {
    absl::MutexLock lock(&room->mu);
    if (room->removed) continue;
    out.push_back({room->name, room->Position(), static_cast<uint32_t>(room->subscribers.size()),
                   static_cast<uint32_t>(room->members.size())});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.room < b.room; });
  return out;
}

BrokerStats MemoryBroker::Stats() {
  std::vector<std::shared_ptr<Room>> rooms;
  {
    absl::MutexLock lock(&mu_);
    rooms.reserve(rooms_.size());
    for (const auto& [name, room] : rooms_) rooms.push_back(room);
  }
  BrokerStats stats;
  stats.rooms = rooms.size();
  stats.messages_published_total = published_total_.load(std::memory_order_relaxed);
  for (const auto& room : rooms) {
    absl::MutexLock lock(&room->mu);
    stats.subscriptions += room->subscribers.size();
    stats.presence_entries += room->members.size();
  }
  return stats;
}

absl::Status MemoryBroker::CheckClientPublish(absl::string_view room) {
  absl::StatusOr<const NamespaceOptions*> ns = Resolve(room);
  if (!ns.ok()) return ns.status();
  if (!(*ns)->client_publish) {
    return absl::PermissionDeniedError(
        absl::StrCat("clients may not publish in the namespace of \"", room, "\""));
  }
  return absl::OkStatus();
}

void MemoryBroker::Sweep() {
  absl::MutexLock lock(&mu_);
  for (auto it = rooms_.begin(); it != rooms_.end();) {
    Room& room = *it->second;
    absl::MutexLock room_lock(&room.mu);
    TrimExpired(room);
    if (room.Empty()) {
      room.removed = true;
      rooms_.erase(it++);
    } else {
      ++it;
    }
  }
}

}  // namespace roomcast::core
