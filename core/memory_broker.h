// MemoryBroker: the default Broker. Rooms, history rings and presence live in
// this process; a restart loses them, which is why every room gets a fresh
// random epoch when it is created.
//
// Locking: a registry mutex guards the room map; each room has its own mutex
// guarding its offset, history, subscribers and members. Publishes to
// different rooms proceed in parallel; one room has one order. Events are
// handed to subscribers under the room mutex (Subscriber::OnEvent only
// enqueues), never with I/O under a lock.
//
// Empty rooms (no subscribers, no members, no history left) are removed by
// Sweep(), which the server calls periodically; tests call it with a fake
// clock. Thread-safe.
#ifndef ROOMCAST_CORE_MEMORY_BROKER_H_
#define ROOMCAST_CORE_MEMORY_BROKER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/options.h"

namespace roomcast::core {

class MemoryBroker final : public Broker {
 public:
  // `clock` must outlive the broker.
  MemoryBroker(EngineOptions options, Clock* clock);
  ~MemoryBroker() override;
  MemoryBroker(const MemoryBroker&) = delete;
  MemoryBroker& operator=(const MemoryBroker&) = delete;

  absl::StatusOr<v1::Position> Publish(absl::string_view room, std::string data,
                                       const v1::ClientInfo* publisher) override;
  absl::Status Join(absl::string_view room, const v1::Position* since, Subscriber* subscriber,
                    const v1::ClientInfo* member,
                    absl::FunctionRef<void(const JoinResult&)> on_joined) override;
  void Leave(absl::string_view room, Subscriber* subscriber,
             absl::string_view member_client_id) override;
  absl::StatusOr<HistoryResult> History(absl::string_view room, const v1::Position* since,
                                        uint32_t limit, bool reverse) override;
  absl::StatusOr<std::vector<v1::ClientInfo>> Presence(absl::string_view room) override;
  std::vector<RoomSummary> ListRooms(absl::string_view prefix) override;
  BrokerStats Stats() override;
  absl::Status CheckClientPublish(absl::string_view room) override;

  // Drops expired history and removes rooms left with nothing in them.
  void Sweep();

 private:
  struct Room;

  // The options of `room`'s namespace, or INVALID_ARGUMENT for a bad name or
  // an unknown namespace.
  absl::StatusOr<const NamespaceOptions*> Resolve(absl::string_view room) const;
  // The live room, created if needed. Returned rooms are never removed while
  // the caller holds their mutex and sees removed == false.
  absl::StatusOr<std::shared_ptr<Room>> GetOrCreate(absl::string_view room,
                                                    const NamespaceOptions* ns);
  std::shared_ptr<Room> Find(absl::string_view room);
  void Fanout(Room& room, const RoomEventPtr& event);
  void TrimExpired(Room& room);

  const EngineOptions options_;
  Clock* const clock_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Room>> rooms_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> published_total_{0};
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_MEMORY_BROKER_H_
