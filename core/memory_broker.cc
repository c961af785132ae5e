#include "core/memory_broker.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/room_fanout.h"
#include "google/protobuf/util/time_util.h"

namespace roomcast::core {

namespace {

std::string NewEpoch() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  absl::MutexLock lock(&mu);
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(*gen));
}

}  // namespace

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
  RoomFanout subscribers ABSL_GUARDED_BY(mu);
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
  // Appends to `out` at most `limit` messages after offset `after`: the
  // oldest first, or with `reverse` the newest first.
  void CopyHistory(uint64_t after, uint32_t limit, bool reverse,
                   std::vector<RoomEventPtr>& out) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    // The first entry with offset > after (offsets are consecutive).
    size_t first = 0;
    if (!history.empty() && after >= OffsetOf(history.front())) {
      first = after - OffsetOf(history.front()) + 1;
    }
    size_t count = std::min<size_t>(limit, history.size() - std::min(first, history.size()));
    out.reserve(out.size() + count);
    for (size_t i = 0; i < count; ++i) {
      out.push_back(reverse ? history[history.size() - 1 - i] : history[first + i]);
    }
  }
  // Drops the messages older than the namespace's history_ttl.
  void TrimExpired(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (history.empty()) return;
    absl::Time oldest_kept = now - options->history_ttl;
    while (!history.empty() && TimeOf(history.front()) < oldest_kept) history.pop_front();
  }
};

MemoryBroker::MemoryBroker(const Policy* policy, Clock* clock, MemoryBrokerOptions options)
    : policy_(policy), clock_(clock), options_(options) {}

MemoryBroker::~MemoryBroker() { Stop(); }

absl::Status MemoryBroker::Start() {
  absl::MutexLock lock(&lifecycle_mu_);
  if (sweeper_.joinable()) return absl::FailedPreconditionError("memory broker already started");
  stop_sweeper_ = std::make_unique<absl::Notification>();
  absl::Notification* stop = stop_sweeper_.get();
  sweeper_ = std::thread([this, stop] {
    while (!stop->WaitForNotificationWithTimeout(options_.sweep_interval)) {
      absl::MutexLock sweep_lock(&sweep_mu_);
      SweepPass();
    }
  });
  return absl::OkStatus();
}

void MemoryBroker::Stop() {
  absl::MutexLock lock(&lifecycle_mu_);
  if (!sweeper_.joinable()) return;
  stop_sweeper_->Notify();
  sweeper_.join();
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
  const size_t max_rooms = policy_->options().max_rooms;
  if (rooms_.size() >= max_rooms) {
    return absl::ResourceExhaustedError(absl::StrCat("too many rooms (limit ", max_rooms, ")"));
  }
  auto created = std::make_shared<Room>(std::string(room), NewEpoch(), ns);
  rooms_.emplace(created->name, created);
  return created;
}

void MemoryBroker::Publish(PublishArgs args, Completion<absl::StatusOr<v1::Position>> done) {
  absl::StatusOr<v1::Position> position = PublishNow(args);
  std::move(done)(std::move(position));
}

absl::StatusOr<v1::Position> MemoryBroker::PublishNow(PublishArgs& args) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_->Resolve(args.room);
  if (!ns.ok()) return ns.status();
  if (absl::Status s = policy_->CheckPayload(args.data.size()); !s.ok()) return s;
  v1::RoomEvent event;
  v1::Message* message = event.mutable_message();
  message->set_room(args.room);
  message->set_data(std::move(args.data));
  if (args.publisher.has_value()) *message->mutable_publisher() = std::move(*args.publisher);

  for (;;) {
    absl::StatusOr<std::shared_ptr<Room>> room = GetOrCreate(args.room, *ns);
    if (!room.ok()) return room.status();
    Room& r = **room;
    absl::MutexLock lock(&r.mu);
    if (r.removed) continue;  // Swept between lookup and lock: look again.
    absl::Time now = clock_->Now();
    message->mutable_position()->set_epoch(r.epoch);
    message->mutable_position()->set_offset(++r.offset);
    *message->mutable_time() =
        google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(now));
    RoomEventPtr shared = MakeRoomEvent(std::move(event));
    if (r.options->history_size > 0) {
      r.history.push_back(shared);
      while (r.history.size() > r.options->history_size) r.history.pop_front();
    }
    r.subscribers.Deliver(shared);
    published_total_.fetch_add(1, std::memory_order_relaxed);
    return r.Position();
  }
}

void MemoryBroker::Join(JoinArgs args, Subscriber* subscriber, JoinedCallback on_joined,
                        Completion<absl::Status> done) {
  absl::Status status = JoinNow(args, subscriber, on_joined);
  std::move(done)(std::move(status));
}

absl::Status MemoryBroker::JoinNow(const JoinArgs& args, Subscriber* subscriber,
                                   JoinedCallback& on_joined) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_->Resolve(args.room);
  if (!ns.ok()) return ns.status();
  const v1::Position* since = args.since.has_value() ? &*args.since : nullptr;
  for (;;) {
    absl::StatusOr<std::shared_ptr<Room>> room = GetOrCreate(args.room, *ns);
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
      r.TrimExpired(clock_->Now());
      uint64_t first_kept = r.history.empty() ? r.offset + 1 : OffsetOf(r.history.front());
      result.recovered = since->epoch() == r.epoch && since->offset() + 1 >= first_kept;
      if (result.recovered) {
        for (const RoomEventPtr& e : r.history) {
          if (OffsetOf(e) > since->offset()) result.replayed.push_back(e);
        }
      }
    }
    r.subscribers.Add(subscriber);
    std::move(on_joined)(result);
    if (args.member.has_value() && r.options->presence) {
      const v1::ClientInfo& member = *args.member;
      auto [it, inserted] = r.members.insert_or_assign(member.client_id(), member);
      if (inserted && r.options->join_leave) {
        r.subscribers.Deliver(PresenceEventOf(r.name, v1::PresenceEvent::JOIN, member));
      }
    }
    return absl::OkStatus();
  }
}

void MemoryBroker::Leave(LeaveArgs args, Subscriber* subscriber, Completion<absl::Status> done) {
  std::shared_ptr<Room> room = Find(args.room);
  if (room != nullptr) {
    absl::MutexLock lock(&room->mu);
    if (!room->removed) {  // Removed rooms had no subscribers left.
      room->subscribers.Remove(subscriber);
      if (!args.member_client_id.empty()) {
        auto m = room->members.find(args.member_client_id);
        if (m != room->members.end()) {
          v1::ClientInfo left = std::move(m->second);
          room->members.erase(m);
          if (room->options->join_leave) {
            room->subscribers.Deliver(PresenceEventOf(room->name, v1::PresenceEvent::LEAVE, left));
          }
        }
      }
    }
  }
  std::move(done)(absl::OkStatus());
}

void MemoryBroker::History(HistoryArgs args, Completion<absl::StatusOr<HistoryResult>> done) {
  absl::StatusOr<HistoryResult> result = HistoryNow(args);
  std::move(done)(std::move(result));
}

absl::StatusOr<HistoryResult> MemoryBroker::HistoryNow(const HistoryArgs& args) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_->Resolve(args.room);
  if (!ns.ok()) return ns.status();
  const uint32_t limit = policy_->HistoryLimit(args.limit);
  const v1::Position* since = args.since.has_value() ? &*args.since : nullptr;
  HistoryResult result;
  std::shared_ptr<Room> room = Find(args.room);
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
  room->TrimExpired(clock_->Now());
  room->CopyHistory(after, limit, args.reverse, result.messages);
  return result;
}

void MemoryBroker::Presence(std::string room,
                            Completion<absl::StatusOr<std::vector<v1::ClientInfo>>> done) {
  absl::StatusOr<std::vector<v1::ClientInfo>> members = PresenceNow(room);
  std::move(done)(std::move(members));
}

absl::StatusOr<std::vector<v1::ClientInfo>> MemoryBroker::PresenceNow(absl::string_view room_name) {
  absl::StatusOr<const NamespaceOptions*> ns = policy_->Resolve(room_name);
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

std::vector<std::shared_ptr<MemoryBroker::Room>> MemoryBroker::RoomsFrom(absl::string_view prefix) {
  std::vector<std::shared_ptr<Room>> rooms;
  absl::MutexLock lock(&mu_);
  for (auto it = rooms_.lower_bound(prefix);
       it != rooms_.end() && absl::StartsWith(it->first, prefix); ++it) {
    rooms.push_back(it->second);
  }
  return rooms;
}

void MemoryBroker::ListRooms(std::string prefix,
                             Completion<absl::StatusOr<std::vector<RoomSummary>>> done) {
  std::vector<RoomSummary> out;
  for (const auto& room : RoomsFrom(prefix)) {  // Already in name order.
    absl::MutexLock lock(&room->mu);
    if (room->removed) continue;
    out.push_back({room->name, room->Position(), static_cast<uint32_t>(room->subscribers.size()),
                   static_cast<uint32_t>(room->members.size())});
  }
  std::move(done)(std::move(out));
}

void MemoryBroker::Stats(Completion<BrokerStats> done) {
  std::vector<std::shared_ptr<Room>> rooms = RoomsFrom("");
  BrokerStats stats;
  stats.rooms = rooms.size();
  stats.messages_published_total = published_total_.load(std::memory_order_relaxed);
  for (const auto& room : rooms) {
    absl::MutexLock lock(&room->mu);
    stats.subscriptions += room->subscribers.size();
    stats.presence_entries += room->members.size();
  }
  std::move(done)(stats);
}

void MemoryBroker::MaintainNow() {
  absl::MutexLock lock(&sweep_mu_);
  sweep_cursor_.clear();  // A full round from the first room.
  while (!SweepPass()) {
  }
}

bool MemoryBroker::SweepPass() {
  std::vector<std::shared_ptr<Room>> batch;
  bool round_done = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = sweep_cursor_.empty() ? rooms_.begin() : rooms_.upper_bound(sweep_cursor_);
    for (; it != rooms_.end() && batch.size() < options_.sweep_rooms_per_pass; ++it) {
      batch.push_back(it->second);
    }
    round_done = it == rooms_.end();
  }
  sweep_cursor_ = round_done || batch.empty() ? std::string() : batch.back()->name;
  for (const std::shared_ptr<Room>& room : batch) {
    bool empty = false;
    {
      absl::MutexLock lock(&room->mu);
      room->TrimExpired(clock_->Now());
      empty = room->Empty();
    }
    if (empty) RemoveIfEmpty(room);
  }
  return round_done;
}

void MemoryBroker::RemoveIfEmpty(const std::shared_ptr<Room>& room) {
  absl::MutexLock lock(&mu_);
  absl::MutexLock room_lock(&room->mu);
  if (room->removed || !room->Empty()) return;
  auto it = rooms_.find(room->name);
  if (it == rooms_.end() || it->second != room) return;
  room->removed = true;
  rooms_.erase(it);
}

}  // namespace roomcast::core
