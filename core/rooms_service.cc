// Rooms: the backend API. Unary calls check the request against the Policy,
// call the broker and finish their reactor from its completion;
// PublishStream is a reactor built on QueuedWriter with one publish in
// flight. Subscribe lives in room_subscription.cc.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/grpc_status.h"
#include "core/services.h"

namespace roomcast::core {

bool MatchesDisconnect(const v1::ClientInfo& client, const v1::DisconnectRequest& request) {
  if (!request.client_id().empty()) return client.client_id() == request.client_id();
  return !request.user_id().empty() && client.user_id() == request.user_id();
}

namespace {

std::optional<v1::Position> SinceOf(bool has_since, const v1::Position& since) {
  return has_since ? std::optional<v1::Position>(since) : std::nullopt;
}

// One PublishStream call: publishes each request in order and acks it. One
// publish is in flight at a time: the next read starts from the completion,
// so acks keep the order of the requests whatever the broker.
class PublishStreamReactor final
    : public QueuedWriter<grpc::ServerBidiReactor<v1::PublishRequest, v1::PublishAck>,
                          v1::PublishAck, v1::PublishAck>,
      public Connection {
 public:
  explicit PublishStreamReactor(ServiceContext* context)
      // Reading pauses at max_pending_acks, so the queue never overflows
      // because of the publisher's pace; only a client that stops reading
      // its acks altogether can fill it.
      : QueuedWriter(QueueLimits{.max_events = context->options->max_pending_acks + 1,
                                 .max_bytes = (context->options->max_pending_acks + 1) * kAckBytes},
                     context->gauges),
        context_(context) {
    if (!context_->registry->Add(this, ConnectionRegistry::Kind::kPublishStream)) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"), false);
    } else {
      MaybeRead();
    }
    StartWriting();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // The client half-closed (or left): finish after the last ack.
      CloseReading();
      FinishOnce(grpc::Status::OK, true);
      return;
    }
    if (ReadClosed()) return;  // After Shutdown nothing more is published.
    const uint64_t id = request_.id();
    if (absl::Status s = context_->policy->ValidateClientInfo(request_.publisher()); !s.ok()) {
      Ack(id, s);
      return;
    }
    PublishArgs args;
    args.room = request_.room();
    args.data = std::move(*request_.mutable_data());
    if (request_.has_publisher()) args.publisher = request_.publisher();
    context_->broker->Publish(std::move(args),
                              [this, id, hold = Retain()](absl::StatusOr<v1::Position> position) {
                                Ack(id, std::move(position));
                              });
  }

  void OnWriteDone(bool ok) override {
    QueuedWriter::OnWriteDone(ok);
    if (ok) MaybeRead();
  }

  uint32_t Disconnect(const v1::DisconnectRequest&) override { return 0; }
  void Shutdown() override {
    CloseReading();
    FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"), true);
  }
  uint64_t NumClients() override { return 0; }
  void OnCancel() override {
    CloseReading();
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"), false);
  }
  void OnDone() override {
    CloseReading();  // A late completion must not start a read.
    context_->registry->Remove(this);
    ReleaseStream();
  }

 private:
  // Queue estimate of one ack (id, position or error).
  static constexpr size_t kAckBytes = 256;

  void TakeNext(Queue& queue, v1::PublishAck& out) override { out = queue.PopFront(); }

  // Queues the ack of request `id`; only then may another read reuse
  // request_.
  void Ack(uint64_t id, absl::StatusOr<v1::Position> position) {
    v1::PublishAck ack;
    ack.set_id(id);
    if (position.ok()) {
      *ack.mutable_position() = *std::move(position);
    } else {
      *ack.mutable_error() = ToError(position.status());
    }
    Enqueue(std::move(ack), kControlMessageBytes);
    {
      absl::MutexLock lock(&read_mu_);
      reading_ = false;
    }
    MaybeRead();
  }

  void CloseReading() {
    absl::MutexLock lock(&read_mu_);
    reading_ = false;
    read_closed_ = true;
  }

  bool ReadClosed() {
    absl::MutexLock lock(&read_mu_);
    if (read_closed_) reading_ = false;
    return read_closed_;
  }

  // Keeps one read in flight while fewer than max_pending_acks acks wait.
  // Never once the stream is finishing: a completion that arrives after
  // OnCancel must not start a read on a stream that is ending.
  void MaybeRead() {
    absl::MutexLock lock(&read_mu_);
    if (reading_ || read_closed_ || Finishing() ||
        QueuedEvents() >= context_->options->max_pending_acks) {
      return;
    }
    reading_ = true;
    StartRead(&request_);
  }

  ServiceContext* const context_;
  absl::Mutex read_mu_;
  bool reading_ ABSL_GUARDED_BY(read_mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(read_mu_) = false;
  // Owned by the read in flight; touched only in OnReadDone.
  v1::PublishRequest request_;
};

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* RoomsService::Publish(grpc::CallbackServerContext* ctx,
                                                const v1::PublishRequest* request,
                                                v1::PublishResponse* response) {
  if (absl::Status s = context_->policy->ValidateClientInfo(request->publisher()); !s.ok()) {
    return Reply(ctx, s);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  PublishArgs args;
  args.room = request->room();
  args.data = request->data();
  if (request->has_publisher()) args.publisher = request->publisher();
  context_->broker->Publish(std::move(args),
                            [reactor, response](absl::StatusOr<v1::Position> position) {
                              if (position.ok()) *response->mutable_position() = *position;
                              reactor->Finish(ToGrpcStatus(position.status()));
                            });
  return reactor;
}

grpc::ServerBidiReactor<v1::PublishRequest, v1::PublishAck>* RoomsService::PublishStream(
    grpc::CallbackServerContext* ctx) {
  return new PublishStreamReactor(context_);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* RoomsService::Subscribe(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) {
  return NewRoomSubscription(context_, *request);
}

grpc::ServerUnaryReactor* RoomsService::History(grpc::CallbackServerContext* ctx,
                                                const v1::HistoryRequest* request,
                                                v1::HistoryResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  HistoryArgs args{request->room(), SinceOf(request->has_since(), request->since()),
                   request->limit(), request->reverse()};
  context_->broker->History(std::move(args),
                            [reactor, response](absl::StatusOr<HistoryResult> history) {
                              if (history.ok()) {
                                for (const RoomEventPtr& e : history->messages) {
                                  *response->add_messages() = e->message();
                                }
                                *response->mutable_position() = history->position;
                              }
                              reactor->Finish(ToGrpcStatus(history.status()));
                            });
  return reactor;
}

grpc::ServerUnaryReactor* RoomsService::Presence(grpc::CallbackServerContext* ctx,
                                                 const v1::PresenceRequest* request,
                                                 v1::PresenceResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  context_->broker->Presence(
      request->room(), [reactor, response](absl::StatusOr<std::vector<v1::ClientInfo>> members) {
        if (members.ok()) {
          for (v1::ClientInfo& m : *members) *response->add_clients() = std::move(m);
        }
        reactor->Finish(ToGrpcStatus(members.status()));
      });
  return reactor;
}

grpc::ServerUnaryReactor* RoomsService::PresenceStats(grpc::CallbackServerContext* ctx,
                                                      const v1::PresenceStatsRequest* request,
                                                      v1::PresenceStatsResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  context_->broker->Presence(
      request->room(), [reactor, response](absl::StatusOr<std::vector<v1::ClientInfo>> members) {
        if (members.ok()) {
          absl::flat_hash_set<std::string> users;
          for (const v1::ClientInfo& m : *members) {
            if (!m.user_id().empty()) users.insert(m.user_id());
          }
          response->set_num_clients(static_cast<uint32_t>(members->size()));
          response->set_num_users(static_cast<uint32_t>(users.size()));
        }
        reactor->Finish(ToGrpcStatus(members.status()));
      });
  return reactor;
}

grpc::ServerUnaryReactor* RoomsService::ListRooms(grpc::CallbackServerContext* ctx,
                                                  const v1::ListRoomsRequest* request,
                                                  v1::ListRoomsResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  context_->broker->ListRooms(request->prefix(),
                              [reactor, response](absl::StatusOr<std::vector<RoomSummary>> rooms) {
                                if (rooms.ok()) {
                                  for (const RoomSummary& r : *rooms) {
                                    v1::ListRoomsResponse::RoomInfo* info = response->add_rooms();
                                    info->set_room(r.room);
                                    *info->mutable_position() = r.position;
                                    info->set_num_subscribers(r.num_subscribers);
                                    info->set_num_clients(r.num_clients);
                                  }
                                }
                                reactor->Finish(ToGrpcStatus(rooms.status()));
                              });
  return reactor;
}

grpc::ServerUnaryReactor* RoomsService::Disconnect(grpc::CallbackServerContext* ctx,
                                                   const v1::DisconnectRequest* request,
                                                   v1::DisconnectResponse* response) {
  if (request->user_id().empty() == request->client_id().empty()) {
    return Reply(ctx, absl::InvalidArgumentError("set exactly one of user_id and client_id"));
  }
  response->set_num_disconnected(context_->registry->Disconnect(*request));
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* RoomsService::Stats(grpc::CallbackServerContext* ctx,
                                              const v1::StatsRequest* request,
                                              v1::StatsResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  CollectStats(*context_, [reactor, response](v1::StatsResponse stats) {
    *response = std::move(stats);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

void CollectStats(ServiceContext& context, absl::AnyInvocable<void(v1::StatsResponse) &&> done) {
  ServiceContext* ctx = &context;
  context.broker->Stats([ctx, done = std::move(done)](BrokerStats broker) mutable {
    ConnectionRegistry::Counts connections = ctx->registry->Count();
    v1::StatsResponse stats;
    stats.set_rooms(broker.rooms);
    stats.set_subscriptions(broker.subscriptions);
    stats.set_presence_entries(broker.presence_entries);
    stats.set_messages_published_total(broker.messages_published_total);
    stats.set_subscribe_streams(connections.subscribe_streams);
    stats.set_edge_links(connections.edge_links);
    stats.set_edge_clients(connections.edge_clients);
    stats.set_queued_events(ctx->gauges->events.load());
    stats.set_queued_bytes(ctx->gauges->bytes.load());
    stats.set_slow_consumer_disconnects_total(ctx->gauges->slow_consumer_total.load());
    std::move(done)(std::move(stats));
  });
}

}  // namespace roomcast::core
