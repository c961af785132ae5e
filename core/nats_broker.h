// NatsBroker: a Broker over NATS JetStream, so that every core node linked
// to the same JetStream serves every room (docs/cluster.md).
//
// Storage: one stream (NatsBrokerOptions::stream, "ROOMCAST") with subjects
// "roomcast.room.<room token>" (RoomSubject). Each message is the published
// data with the room position in headers (Roomcast-Epoch, Roomcast-Offset,
// Roomcast-Time, Roomcast-Publisher). A publish appends with "expected last
// subject sequence" = the stream sequence of the room's last message, so two
// nodes can never both take offset n+1: the loser re-reads the last message
// and retries. The epoch travels in the headers; a room's first message
// (no message on its subject) starts a new random epoch, so the epoch
// survives every core restart and changes only when the room's history is
// really gone from JetStream.
//
// Fan-out by interest: while a room has local subscribers, the node keeps
// one ordered push consumer on the room's subject, started from the oldest
// stored message. It fills a local window of the room's history (the
// namespace's history_size / history_ttl) and, once it has caught up with
// the room's last message, delivers every later message to the local
// RoomFanout. Joins are answered from that window under the room lock, so a
// join's replay and the live events form one ordered sequence.
//
// Presence: members live in a KV bucket (presence_bucket, one key per room
// and client, TTL presence_ttl refreshed by the member's node), so Presence
// answers the same on every node; JOIN/LEAVE events still reach only the
// subscribers of the member's own node (docs/cluster.md).
//
// Message bus: a queue subscription (group "roomcast") on
// "roomcast.publish.>" publishes whatever plain NATS clients send there, as
// Rooms.Publish would; a request gets the position as JSON in its reply.
//
// A publish completes once JetStream stored the message and, when this node
// has subscribers in the room, once they were handed it (so a publisher
// that got its position finds the message with its local subscribers, as
// with the memory broker).
//
// Threads: operations are queued to a few worker threads of the broker (a
// room always maps to the same worker, so operations on one room keep their
// order) and never block the caller. Consumer callbacks run on the NATS
// library's delivery threads.
//
// Errors: UNAVAILABLE when NATS is unreachable (checked before any I/O, so
// it is fast), DEADLINE_EXCEEDED when JetStream does not answer within
// request_timeout. The connection reconnects by itself.
#ifndef ROOMCAST_CORE_NATS_BROKER_H_
#define ROOMCAST_CORE_NATS_BROKER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/policy.h"

namespace roomcast::core {

struct NatsBrokerOptions {
  // NATS server URL(s), comma-separated (CoreOptions::nats_url).
  std::string url = "nats://127.0.0.1:4222";
  // Client name shown by the NATS server (CoreOptions::node_name).
  std::string node_name = "core";
  // JetStream stream holding every room.
  std::string stream = "ROOMCAST";
  // Longest a JetStream request (publish ack, last message, stream info)
  // may take before the operation fails with DEADLINE_EXCEEDED.
  absl::Duration request_timeout = absl::Seconds(2);
  // Pause between reconnect attempts; the node retries forever.
  absl::Duration reconnect_wait = absl::Milliseconds(250);
  // Threads running broker operations (each room maps to one of them).
  int workers = 4;
  // Publishes queued per worker before new ones are refused with
  // RESOURCE_EXHAUSTED: a publisher faster than JetStream's acks meets a
  // bound instead of growing the queue without one. (Joins, leaves and
  // history reads are bounded by their callers: streams and requests.)
  size_t max_queued_per_worker = 256;
  // How often idle rooms leave this node's cache and windows are trimmed.
  absl::Duration maintain_interval = absl::Seconds(1);
  // Publishes retried after losing the race for the next offset to
  // another node before the publish fails with ABORTED.
  int max_publish_attempts = 16;
  // Whether this node consumes "roomcast.publish.>" (the message bus).
  bool message_bus = true;
  // KV bucket of every node's presence members ("<room>.<client id>" keys).
  std::string presence_bucket = "roomcast_presence";
  // A member not refreshed for this long leaves the bucket: the time after
  // which a dead node's members disappear. Live nodes refresh theirs every
  // presence_ttl / 3.
  absl::Duration presence_ttl = absl::Seconds(30);
};

// The NATS subject token of a room: '.' (a token separator) and '%' are
// percent-encoded; every other character of a valid name is kept.
std::string RoomSubjectToken(absl::string_view room);
// The inverse of RoomSubjectToken; also accepts '.'-separated tokens (a
// publisher that wrote "roomcast.publish.a.b" means room "a.b").
std::string RoomFromSubjectToken(absl::string_view token);

class NatsBroker final : public Broker {
 public:
  // `policy` and `clock` must outlive the broker.
  NatsBroker(const Policy* policy, Clock* clock, NatsBrokerOptions options);
  ~NatsBroker() override;  // Stops.
  NatsBroker(const NatsBroker&) = delete;
  NatsBroker& operator=(const NatsBroker&) = delete;

  // Connects (or keeps retrying in the background when NATS is not up yet),
  // creates or updates the stream, starts the workers and the message bus.
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

  // Whether the NATS connection is up (tests, health).
  bool Connected() const;

  struct Room;
  struct Nats;
  class Worker;

 private:
  // Runs `task` on the worker of `room`, or `refused` inline with the
  // reason when the broker is not running or the worker's queue is full
  // (`bounded`: publishes only).
  void Post(absl::string_view room, absl::AnyInvocable<void()> task,
            absl::AnyInvocable<void(absl::Status)> refused, bool bounded = true);
  std::shared_ptr<Room> GetOrCreate(absl::string_view room, const NamespaceOptions* ns);
  std::shared_ptr<Room> Find(absl::string_view room);

  // Appends the message; `stored_seq` gets its stream sequence.
  absl::StatusOr<v1::Position> PublishNow(PublishArgs& args, uint64_t& stored_seq);
  void JoinNow(JoinArgs& args, Subscriber* subscriber, JoinedCallback& on_joined,
               Completion<absl::Status>& done);
  void LeaveNow(const LeaveArgs& args, Subscriber* subscriber);
  absl::StatusOr<HistoryResult> HistoryNow(const HistoryArgs& args);
  // Starts the room's consumer (no lock held); completes waiting joins.
  void StartConsumer(const std::shared_ptr<Room>& room, uint64_t generation);
  absl::Status Usable() const;
  // Writes (or with `remove` deletes) one member's presence key; errors are
  // returned, the caller decides.
  absl::Status PutMember(absl::string_view room, const v1::ClientInfo* member,
                         absl::string_view client_id);
  absl::StatusOr<std::vector<v1::ClientInfo>> PresenceNow(absl::string_view room);
  // Re-writes every local member's key when presence_ttl / 3 has passed.
  void RefreshPresence();
  // Tells the other nodes' subscribers of `room` that `member` joined or
  // left ("JOIN", "LEAVE"); this node delivers its own events itself.
  void SendPresenceEvent(absl::string_view room, const char* kind, const v1::ClientInfo& member);

 public:
  // A presence event from "roomcast.presence.>" (NATS delivery thread):
  // its subject, sending node, kind and serialized ClientInfo.
  void OnPresenceEvent(absl::string_view subject, absl::string_view node, absl::string_view kind,
                       absl::string_view member);

 private:
  const Policy* const policy_;
  Clock* const clock_;
  const NatsBrokerOptions options_;
  std::unique_ptr<Nats> nats_;

  absl::Mutex mu_;
  absl::btree_map<std::string, std::shared_ptr<Room>> rooms_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> published_total_{0};

  absl::Mutex lifecycle_mu_;
  bool running_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  std::vector<std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(lifecycle_mu_);
  std::thread maintainer_;
  absl::Mutex maintainer_mu_;
  bool stop_maintainer_ ABSL_GUARDED_BY(maintainer_mu_) = false;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_NATS_BROKER_H_
