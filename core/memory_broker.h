// MemoryBroker: the default Broker. Offsets, epochs, history rings and
// presence live in this process; a restart loses them, which is why every
// room gets a fresh random epoch when it is created. What is allowed (names,
// namespaces, limits) comes from the Policy; the room's local subscribers
// are a RoomFanout.
//
// Every operation completes inline, before the call returns; Join's
// on_joined runs under the room lock, `done` callbacks after it is released.
//
// Locking: a registry mutex guards the room map; each room has its own mutex
// guarding its offset, history, subscribers and members. Publishes to
// different rooms proceed in parallel; one room has one order. Events are
// handed to subscribers under the room mutex (Subscriber::OnEvent only
// enqueues), never with I/O under a lock.
//
// Maintenance: Start() runs a sweeper thread that every sweep_interval
// drops expired history and removes rooms left with nothing in them. Each
// pass visits at most sweep_rooms_per_pass rooms (in name order, continuing
// where the last pass stopped) and locks the registry only to copy that
// batch and to remove an empty room, never across all rooms. MaintainNow()
// runs a full round (tests, with a fake clock). Thread-safe.
#ifndef ROOMCAST_CORE_MEMORY_BROKER_H_
#define ROOMCAST_CORE_MEMORY_BROKER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/options.h"
#include "core/policy.h"

namespace roomcast::core {

struct MemoryBrokerOptions {
  // Sweeper period (CoreOptions::sweep_interval).
  absl::Duration sweep_interval = absl::Seconds(1);
  // Rooms visited per sweep pass (CoreOptions::sweep_rooms_per_pass).
  size_t sweep_rooms_per_pass = 10'000;
};

class MemoryBroker final : public Broker {
 public:
  // `policy` and `clock` must outlive the broker.
  MemoryBroker(const Policy* policy, Clock* clock, MemoryBrokerOptions options = {});
  ~MemoryBroker() override;  // Stops the sweeper.
  MemoryBroker(const MemoryBroker&) = delete;
  MemoryBroker& operator=(const MemoryBroker&) = delete;

  absl::Status Start() override;
  void Stop() override;
  void MaintainNow() override;

  void Publish(PublishArgs args, Completion<absl::StatusOr<v1::Position>> done) override;
  void Join(JoinArgs args, Subscriber* subscriber, JoinedCallback on_joined,
            Completion<absl::Status> done) override;
  void Leave(LeaveArgs args, Subscriber* subscriber, Completion<absl::Status> done) override;
  void History(HistoryArgs args, Completion<absl::StatusOr<HistoryResult>> done) override;
  void Presence(std::string room,
                Completion<absl::StatusOr<std::vector<v1::ClientInfo>>> done) override;
  void ListRooms(std::string prefix,
                 Completion<absl::StatusOr<std::vector<RoomSummary>>> done) override;
  void Stats(Completion<BrokerStats> done) override;

 private:
  struct Room;

  // The live room, created if needed. Returned rooms are never removed while
  // the caller holds their mutex and sees removed == false.
  absl::StatusOr<std::shared_ptr<Room>> GetOrCreate(absl::string_view room,
                                                    const NamespaceOptions* ns);
  std::shared_ptr<Room> Find(absl::string_view room);

  absl::StatusOr<v1::Position> PublishNow(PublishArgs& args);
  absl::Status JoinNow(const JoinArgs& args, Subscriber* subscriber, JoinedCallback& on_joined);
  absl::StatusOr<HistoryResult> HistoryNow(const HistoryArgs& args);
  absl::StatusOr<std::vector<v1::ClientInfo>> PresenceNow(absl::string_view room);
  std::vector<std::shared_ptr<Room>> RoomsFrom(absl::string_view prefix);

  // One bounded sweep pass; true when it reached the last room (a round
  // is complete).
  bool SweepPass() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sweep_mu_);
  // Removes `room` from the map if it is still empty.
  void RemoveIfEmpty(const std::shared_ptr<Room>& room);

  const Policy* const policy_;
  Clock* const clock_;
  const MemoryBrokerOptions options_;

  absl::Mutex mu_;
  absl::btree_map<std::string, std::shared_ptr<Room>> rooms_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> published_total_{0};

  // Serializes sweep passes (the sweeper thread and MaintainNow).
  absl::Mutex sweep_mu_;
  // The last room name a pass visited; "" starts a new round.
  std::string sweep_cursor_ ABSL_GUARDED_BY(sweep_mu_);

  absl::Mutex lifecycle_mu_;
  std::unique_ptr<absl::Notification> stop_sweeper_ ABSL_GUARDED_BY(lifecycle_mu_);
  std::thread sweeper_ ABSL_GUARDED_BY(lifecycle_mu_);
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_MEMORY_BROKER_H_
