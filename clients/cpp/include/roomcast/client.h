// roomcast::client — the C++ client of the core's backend API (roomcast.v1.Rooms)
// for backend services.
//
//   Client             one channel to a core; unary calls (Publish, History,
//                      Presence, PresenceStats, ListRooms, Disconnect, Stats),
//                      each with a deadline.
//   PublishStream      Rooms.PublishStream: high-rate publishing, one ack per
//                      message (its id and position, or an error).
//   Subscription       Rooms.Subscribe that survives the connection: it
//                      reconnects with exponential backoff and full jitter and
//                      resumes every room from the last position it delivered,
//                      so each message reaches the caller exactly once and in
//                      order (after a slow-consumer end it first catches up
//                      with History, a page at a time, since the core cannot
//                      queue an unbounded replay); where what was missed is gone
//                      (history lost, e.g. the core restarted) the caller gets
//                      a Recovery event with recovered = false and delivery
//                      continues from the room's new position. Events arrive
//                      through a callback or an iterator (Next / range-for).
//
// Ownership and lifetimes: a Client, PublishStream and Subscription each own
// their resources; PublishStreams and Subscriptions share the channel with the
// Client that made them and may outlive it. None of them is copyable.
//
// Threads: Client methods may be called from any thread, concurrently. A
// Subscription's callback runs on that subscription's own thread, one event
// at a time, in stream order; see Subscription for what it may call. A
// PublishStream's ack callback runs on a gRPC thread; see PublishStream.
//
// Errors are absl::Status with the canonical gRPC code the core returned
// (docs/protocol.md §5), or UNAVAILABLE / DEADLINE_EXCEEDED from the channel.
#ifndef ROOMCAST_CLIENTS_CPP_CLIENT_H_
#define ROOMCAST_CLIENTS_CPP_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "roomcast/v1/roomcast.grpc.pb.h"

namespace roomcast::client {

struct ClientOptions {
  // The core's gRPC address (host:port). Ignored when `channel` is set.
  std::string core = "127.0.0.1:50051";
  // Use this channel instead of creating one (tests: an in-process channel).
  std::shared_ptr<grpc::Channel> channel;
  // Deadline of unary calls that do not give their own (CallOptions).
  absl::Duration call_timeout = absl::Seconds(10);
  // Subscription reconnect backoff: before retry n the subscription sleeps a
  // uniformly random time in [0, min(reconnect_max, reconnect_min * 2^n)]
  // ("full jitter", so a fleet does not reconnect in lockstep). The cap goes
  // back to reconnect_min once a stream delivers something.
  absl::Duration reconnect_min = absl::Milliseconds(100);
  absl::Duration reconnect_max = absl::Seconds(10);
  // Largest response accepted. History responses can exceed gRPC's 4 MiB
  // default (docs/protocol.md §6).
  int max_receive_message_bytes = 64 << 20;
  // HTTP/2 keepalive: detects a connection that died without a FIN (the
  // stream would otherwise wait forever). roomcast-core accepts a ping every
  // 10 s from a client, even without calls in flight (its
  // --min_client_ping_interval); a server with gRPC's default policy
  // (one every 5 minutes) would answer faster pings with "too many pings".
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
};

// Per-call settings of unary calls.
struct CallOptions {
  // How long the call may take. Zero means ClientOptions.call_timeout;
  // absl::InfiniteDuration() means no deadline.
  absl::Duration timeout = absl::ZeroDuration();
};

// One event of a Subscription.
struct Event {
  enum class Type {
    // A room message (`message`), delivered exactly once, in offset order.
    kMessage,
    // A presence JOIN/LEAVE (`presence`). Presence is live only: events that
    // happen while disconnected are not replayed; reload with
    // Client::Presence after a kRecovery with `resumed`.
    kPresence,
    // A room's (re)subscription is complete (`recovery`): once per room when
    // the subscription starts and again after every reconnect (`resumed`).
    // recovery.recovered() == false means messages were lost (the requested
    // position's epoch is gone or history no longer reaches back): reload the
    // room's state; delivery continues after recovery.position(). A gap seen
    // in the stream itself is reported the same way.
    kRecovery,
    // The stream ended with a retryable error (`status`); the subscription
    // reconnects after `retry_in` and resumes.
    kReconnecting,
    // The subscription ended for good (`status`): a non-retryable error (an
    // invalid room, Rooms.Disconnect without reconnect = ABORTED, ...) or
    // SubscribeOptions.max_failed_attempts was reached. The last event.
    kDone,
  };
  Type type = Type::kDone;
  v1::Message message;
  v1::PresenceEvent presence;
  v1::Recovery recovery;
  bool resumed = false;
  absl::Status status;
  absl::Duration retry_in;

  // The room this event is about ("" for kReconnecting and kDone).
  const std::string& room() const;
};

struct SubscribeOptions {
  struct Room {
    std::string room;
    // Resume after this position (replay what follows it); absent: live only.
    std::optional<v1::Position> since;
  };
  // 1 to 100 distinct rooms (CoreOptions.max_rooms_per_subscribe).
  std::vector<Room> rooms;
  // Identity shown in presence and matched by Rooms.Disconnect (user_id for
  // the person or service, client_id for one connection). When client_id is
  // empty, connection n of this subscription uses "cpp-<random>-<n>" (the
  // proto: unique per connection); Subscription::client_id() is the current
  // one. A client_id set here is sent on every connection: then, with
  // presence, a dropped connection that the core notices only after the
  // reconnect removes the shared entry (the core keys members by client_id).
  v1::ClientInfo client;
  // Whether this subscriber appears as a member of each room.
  bool presence = false;
  // Whether to reconnect after retryable errors: UNAVAILABLE (core shutting
  // down or unreachable, Rooms.Disconnect with reconnect = true, broken
  // connection), RESOURCE_EXHAUSTED "slow consumer", INTERNAL, UNKNOWN and
  // CANCELLED that this side did not ask for. Everything else is final.
  bool reconnect = true;
  // Give up (kDone with the last error) after this many attempts in a row
  // that ended before receiving anything. 0: retry forever.
  int max_failed_attempts = 0;
  // Events read from the network but not yet handled. When full, reading
  // stops and the core queues for us; past its limit it ends the stream as a
  // slow consumer and we resume, so a slow callback never loses messages
  // silently. Also the capacity of the iterator's queue.
  size_t max_buffered_events = 1024;
};

// A subscription to one or more rooms, reconnecting and resuming by itself.
// Created by Client::Subscribe.
//
// Callback mode: the callback runs on this subscription's thread, one event at
// a time, in order. It may call Cancel() and any Client method; it must not
// destroy the Subscription or call Close(). A slow callback slows only this
// subscription (see max_buffered_events).
//
// Iterator mode: events queue up to max_buffered_events; take them with
// Next() or `for (const Event& e : *subscription)` from one thread at a time.
//
// After Cancel() from the callback no further callback runs; from another
// thread, a callback that was already starting may still run. Close() and the
// destructor wait for the thread to finish, so after them no callback runs
// (the callback may capture things that die right after the Subscription).
// Cancelling does not produce kDone.
class Subscription {
 public:
  using Callback = std::function<void(const Event&)>;

  ~Subscription();  // Close().
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // Stops without waiting; any thread, including the callback.
  void Cancel();
  // Cancel() and wait for the subscription's thread to exit. Not from the
  // callback.
  void Close();

  // Iterator mode: the next event, or nullopt after `timeout` or once the
  // subscription has ended and every event was taken (then done() is true).
  // Always nullopt in callback mode.
  std::optional<Event> Next(absl::Duration timeout = absl::InfiniteDuration());
  // True when no event will come any more (cancelled, or kDone was taken).
  bool done();

  // The last position delivered per room (messages and recovery markers):
  // what a reconnect resumes from. Rooms with nothing delivered yet are
  // absent, or carry the `since` they were subscribed with.
  std::map<std::string, v1::Position> Positions();
  // The client_id of the current (or last) connection; "" before the first.
  std::string client_id();

  // Range-for over Next(): ends when Next() returns nullopt.
  class Iterator {
   public:
    using value_type = Event;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    const Event& operator*() const { return *event_; }
    const Event* operator->() const { return &*event_; }
    Iterator& operator++();
    void operator++(int) { ++*this; }
    bool operator==(const Iterator& other) const { return !event_ && !other.event_; }

   private:
    friend class Subscription;
    explicit Iterator(Subscription* owner);
    Subscription* owner_ = nullptr;
    std::optional<Event> event_;
  };
  Iterator begin() { return Iterator(this); }
  Iterator end() { return Iterator(); }

 private:
  friend class Client;
  class Impl;
  explicit Subscription(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One Rooms.PublishStream. Created by Client::OpenPublishStream.
//
// Publish may be called from several threads; ids are assigned in the order
// requests are queued, and acks arrive in that order. The ack callback runs on
// a gRPC thread, one ack at a time, in order: it must not block and must not
// call Publish (which may wait for acks). Finish (or the destructor) is called
// once, after the last Publish returned.
//
// The stream is not reconnected: after it ends, requests that got no ack may
// or may not have been published (docs/protocol.md §4), so each is acked with
// the stream's error and the caller decides whether to publish it again.
class PublishStream {
 public:
  struct Ack {
    uint64_t id = 0;
    // The assigned position, or the error for this message.
    absl::StatusOr<v1::Position> position;
  };
  using AckCallback = std::function<void(const Ack&)>;

  ~PublishStream();  // Cancels if Finish was not called; unacked requests get CANCELLED.
  PublishStream(const PublishStream&) = delete;
  PublishStream& operator=(const PublishStream&) = delete;

  // Queues one message and returns its id (1, 2, ...). Blocks while
  // `max_unacked` messages await their ack (the core's flow control). Fails
  // when the stream has ended or is finishing. request.id is overwritten.
  absl::StatusOr<uint64_t> Publish(v1::PublishRequest request);
  absl::StatusOr<uint64_t> Publish(std::string_view room, std::string_view data);

  // Half-closes, waits until every message is acked, and returns the stream's
  // status (OK, or why it ended). After `timeout` the stream is cancelled.
  absl::Status Finish(absl::Duration timeout = absl::InfiniteDuration());

 private:
  friend class Client;
  class Impl;
  explicit PublishStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Client {
 public:
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Rooms.Publish: the message's position.
  absl::StatusOr<v1::Position> Publish(std::string_view room, std::string_view data,
                                       const CallOptions& call = {});
  absl::StatusOr<v1::Position> Publish(const v1::PublishRequest& request,
                                       const CallOptions& call = {});

  // Rooms.PublishStream. `on_ack` gets one Ack per Publish, in order.
  // `max_unacked` bounds messages in flight (the core stops reading at 1024).
  std::unique_ptr<PublishStream> OpenPublishStream(PublishStream::AckCallback on_ack,
                                                   size_t max_unacked = 1024);

  // Rooms.Subscribe with reconnect and resume. With a callback, events go to
  // it on the subscription's thread; without, take them with Next().
  std::unique_ptr<Subscription> Subscribe(SubscribeOptions options,
                                          Subscription::Callback callback);
  std::unique_ptr<Subscription> Subscribe(SubscribeOptions options);

  absl::StatusOr<v1::HistoryResponse> History(const v1::HistoryRequest& request,
                                              const CallOptions& call = {});
  // The room's members, ordered by client_id.
  absl::StatusOr<std::vector<v1::ClientInfo>> Presence(std::string_view room,
                                                       const CallOptions& call = {});
  absl::StatusOr<v1::PresenceStatsResponse> PresenceStats(std::string_view room,
                                                          const CallOptions& call = {});
  // Rooms whose name starts with `prefix`, ordered by name.
  absl::StatusOr<std::vector<v1::ListRoomsResponse::RoomInfo>> ListRooms(
      std::string_view prefix = "", const CallOptions& call = {});
  // Connections ended on this core node.
  absl::StatusOr<uint32_t> Disconnect(const v1::DisconnectRequest& request,
                                      const CallOptions& call = {});
  absl::StatusOr<v1::StatsResponse> Stats(const CallOptions& call = {});

  const ClientOptions& options() const { return options_; }

 private:
  void SetDeadline(grpc::ClientContext& ctx, const CallOptions& call) const;

  const ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<v1::Rooms::Stub> stub_;
};

// "epoch:offset", the position's text form in logs and the CLI.
std::string FormatPosition(const v1::Position& position);
// Parses "epoch:offset" (the epoch may be empty; the offset is decimal).
absl::StatusOr<v1::Position> ParsePosition(std::string_view text);

}  // namespace roomcast::client

#endif  // ROOMCAST_CLIENTS_CPP_CLIENT_H_
