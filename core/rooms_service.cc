// Rooms: the backend API. Unary calls go straight to the broker; Subscribe
// and PublishStream are reactors built on QueuedWriter.
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/grpc_status.h"
#include "core/services.h"

namespace roomcast::core {

absl::Status ValidateClientInfo(const v1::ClientInfo& client, const CoreOptions& options) {
  if (client.client_id().size() > 256 || client.user_id().size() > 256) {
    return absl::InvalidArgumentError("client_id and user_id are limited to 256 bytes");
  }
  if (client.info().ByteSizeLong() > options.engine.max_client_info_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("client info is larger than the limit of ",
                                                   options.engine.max_client_info_bytes, " bytes"));
  }
  return absl::OkStatus();
}

size_t QueuedBytes(const v1::RoomEvent& event) {
  constexpr size_t kOverhead = 64;  // Position, time, framing.
  if (event.has_message()) {
    return kOverhead + event.message().room().size() + event.message().data().size();
  }
  return kOverhead + event.presence().room().size() + event.presence().client().ByteSizeLong();
}

namespace {

bool Matches(const v1::ClientInfo& client, const v1::DisconnectRequest& request) {
  if (!request.client_id().empty()) return client.client_id() == request.client_id();
  return !request.user_id().empty() && client.user_id() == request.user_id();
}

// One Subscribe call: joined to its rooms for as long as the stream lives.
class RoomSubscription final
    : public QueuedWriter<grpc::ServerWriteReactor<v1::SubscribeResponse>,
                          std::variant<RoomEventPtr, v1::Recovery>, v1::SubscribeResponse>,
      public Subscriber,
      public Connection {
 public:
  RoomSubscription(ServiceContext* context, const v1::SubscribeRequest& request)
      : QueuedWriter(context->options->subscribe_queue, context->gauges), context_(context) {
    // The identity is settled before the stream is registered (Disconnect
    // reads it) and before any join (a failed Subscribe must leave presence).
    if (absl::Status s = Prepare(request); !s.ok()) {
      FinishOnce(ToGrpcStatus(s), false);
    } else if (!context_->registry->Add(this, ConnectionRegistry::Kind::kSubscribe)) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"), false);
    } else if (absl::Status s = JoinAll(request); !s.ok()) {
      LeaveAll();
      FinishOnce(ToGrpcStatus(s), false);
    }
    StartWriting();
  }

  void OnEvent(const RoomEventPtr& event) override { Enqueue(event, QueuedBytes(*event)); }

  uint32_t Disconnect(const v1::DisconnectRequest& request) override {
    if (!Matches(client_, request)) return 0;
    // UNAVAILABLE tells a client library to reconnect; ABORTED not to.
    FinishOnce(grpc::Status(
                   request.reconnect() ? grpc::StatusCode::UNAVAILABLE : grpc::StatusCode::ABORTED,
                   absl::StrCat("disconnected by the server: ", request.reason())),
               false);
    return 1;
  }
  void Shutdown() override {
    FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"), true);
  }
  uint64_t NumClients() override { return 0; }

  void OnCancel() override {
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"), false);
  }
  void OnDone() override {
    context_->registry->Remove(this);
    LeaveAll();
    delete this;
  }

 private:
  void TakeNext(std::deque<Entry>& queue, v1::SubscribeResponse& out) override {
    std::variant<RoomEventPtr, v1::Recovery> item = PopFront(queue);
    if (auto* recovery = std::get_if<v1::Recovery>(&item)) {
      *out.mutable_recovery() = std::move(*recovery);
      return;
    }
    const v1::RoomEvent& event = *std::get<RoomEventPtr>(item);
    if (event.has_message()) {
      *out.mutable_message() = event.message();
    } else {
      *out.mutable_presence() = event.presence();
    }
  }

  absl::Status Prepare(const v1::SubscribeRequest& request) {
    const CoreOptions& options = *context_->options;
    if (request.rooms().empty()) return absl::InvalidArgumentError("no rooms to subscribe to");
    if (static_cast<size_t>(request.rooms_size()) > options.max_rooms_per_subscribe) {
      return absl::InvalidArgumentError(absl::StrCat("too many rooms in one Subscribe (limit ",
                                                     options.max_rooms_per_subscribe, ")"));
    }
    absl::flat_hash_set<absl::string_view> seen;
    for (const auto& room : request.rooms()) {
      if (!seen.insert(room.room()).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("room \"", room.room(), "\" is listed twice"));
      }
    }
    if (absl::Status s = ValidateClientInfo(request.client(), options); !s.ok()) return s;
    client_ = request.client();
    if (client_.client_id().empty()) {
      client_.set_client_id(absl::StrCat("core-", context_->next_client_id.fetch_add(1)));
    }
    presence_ = request.presence();
    return absl::OkStatus();
  }

  absl::Status JoinAll(const v1::SubscribeRequest& request) {
    const v1::ClientInfo* member = presence_ ? &client_ : nullptr;
    for (const auto& room : request.rooms()) {
      absl::Status s =
          context_->broker->Join(room.room(), room.has_since() ? &room.since() : nullptr, this,
                                 member, [&](const JoinResult& result) {
                                   for (const RoomEventPtr& e : result.replayed)
                                     Enqueue(e, QueuedBytes(*e));
                                   v1::Recovery recovery;
                                   recovery.set_room(room.room());
                                   recovery.set_recovered(result.recovered);
                                   *recovery.mutable_position() = result.position;
                                   Enqueue(std::move(recovery), 64 + room.room().size());
                                 });
      if (!s.ok())
        return absl::Status(s.code(), absl::StrCat("room \"", room.room(), "\": ", s.message()));
      joined_.push_back(room.room());
    }
    return absl::OkStatus();
  }

  void LeaveAll() {
    for (const std::string& room : joined_) {
      context_->broker->Leave(room, this, presence_ ? client_.client_id() : absl::string_view());
    }
    joined_.clear();
  }

  ServiceContext* const context_;
  // Written only in the constructor, read in OnDone and Disconnect.
  v1::ClientInfo client_;
  bool presence_ = false;
  std::vector<std::string> joined_;
};

// One PublishStream call: publishes each request in order and acks it.
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
                                 .max_bytes = (context->options->max_pending_acks + 1) * 256},
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
      {
        absl::MutexLock lock(&read_mu_);
        reading_ = false;
        read_closed_ = true;
      }
      FinishOnce(grpc::Status::OK, true);
      return;
    }
    {
      // After Shutdown nothing more is published: a request without an ack
      // was not published.
      absl::MutexLock lock(&read_mu_);
      if (read_closed_) {
        reading_ = false;
        return;
      }
    }
    v1::PublishAck ack;
    ack.set_id(request_.id());
    absl::Status s = ValidateClientInfo(request_.publisher(), *context_->options);
    absl::StatusOr<v1::Position> position =
        s.ok()
            ? context_->broker->Publish(request_.room(), std::move(*request_.mutable_data()),
                                        request_.has_publisher() ? &request_.publisher() : nullptr)
            : absl::StatusOr<v1::Position>(s);
    if (position.ok()) {
      *ack.mutable_position() = *std::move(position);
    } else {
      *ack.mutable_error() = ToError(position.status());
    }
    Enqueue(std::move(ack), 64);
    {
      // Only now may another read reuse request_ (OnWriteDone may race us).
      absl::MutexLock lock(&read_mu_);
      reading_ = false;
    }
    MaybeRead();
  }

  void OnWriteDone(bool ok) override {
    QueuedWriter::OnWriteDone(ok);
    if (ok) MaybeRead();
  }

  uint32_t Disconnect(const v1::DisconnectRequest&) override { return 0; }
  void Shutdown() override {
    {
      absl::MutexLock lock(&read_mu_);
      read_closed_ = true;
    }
    FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"), true);
  }
  uint64_t NumClients() override { return 0; }
  void OnCancel() override {
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"), false);
  }
  void OnDone() override {
    context_->registry->Remove(this);
    delete this;
  }

 private:
  void TakeNext(std::deque<Entry>& queue, v1::PublishAck& out) override { out = PopFront(queue); }

  // Keeps one read in flight while fewer than max_pending_acks acks wait.
  void MaybeRead() {
    absl::MutexLock lock(&read_mu_);
    if (reading_ || read_closed_ || QueuedEvents() >= context_->options->max_pending_acks) return;
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
  if (absl::Status s = ValidateClientInfo(request->publisher(), *context_->options); !s.ok()) {
    return Reply(ctx, s);
  }
  absl::StatusOr<v1::Position> position = context_->broker->Publish(
      request->room(), request->data(), request->has_publisher() ? &request->publisher() : nullptr);
  if (position.ok()) *response->mutable_position() = *std::move(position);
  return Reply(ctx, position.status());
}

grpc::ServerBidiReactor<v1::PublishRequest, v1::PublishAck>* RoomsService::PublishStream(
    grpc::CallbackServerContext* ctx) {
  return new PublishStreamReactor(context_);
}

grpc::ServerWriteReactor<v1::SubscribeResponse>* RoomsService::Subscribe(
    grpc::CallbackServerContext* ctx, const v1::SubscribeRequest* request) {
  return new RoomSubscription(context_, *request);
}

grpc::ServerUnaryReactor* RoomsService::History(grpc::CallbackServerContext* ctx,
                                                const v1::HistoryRequest* request,
                                                v1::HistoryResponse* response) {
  absl::StatusOr<HistoryResult> history =
      context_->broker->History(request->room(), request->has_since() ? &request->since() : nullptr,
                                request->limit(), request->reverse());
  if (history.ok()) {
    for (const RoomEventPtr& e : history->messages) *response->add_messages() = e->message();
    *response->mutable_position() = history->position;
  }
  return Reply(ctx, history.status());
}

grpc::ServerUnaryReactor* RoomsService::Presence(grpc::CallbackServerContext* ctx,
                                                 const v1::PresenceRequest* request,
                                                 v1::PresenceResponse* response) {
  absl::StatusOr<std::vector<v1::ClientInfo>> members = context_->broker->Presence(request->room());
  if (members.ok()) {
    for (v1::ClientInfo& m : *members) *response->add_clients() = std::move(m);
  }
  return Reply(ctx, members.status());
}

grpc::ServerUnaryReactor* RoomsService::PresenceStats(grpc::CallbackServerContext* ctx,
                                                      const v1::PresenceStatsRequest* request,
                                                      v1::PresenceStatsResponse* response) {
  absl::StatusOr<std::vector<v1::ClientInfo>> members = context_->broker->Presence(request->room());
  if (members.ok()) {
    absl::flat_hash_set<std::string> users;
    for (const v1::ClientInfo& m : *members) {
      if (!m.user_id().empty()) users.insert(m.user_id());
    }
    response->set_num_clients(static_cast<uint32_t>(members->size()));
    response->set_num_users(static_cast<uint32_t>(users.size()));
  }
  return Reply(ctx, members.status());
}

grpc::ServerUnaryReactor* RoomsService::ListRooms(grpc::CallbackServerContext* ctx,
                                                  const v1::ListRoomsRequest* request,
                                                  v1::ListRoomsResponse* response) {
  for (const RoomSummary& r : context_->broker->ListRooms(request->prefix())) {
    v1::ListRoomsResponse::RoomInfo* info = response->add_rooms();
    info->set_room(r.room);
    *info->mutable_position() = r.position;
    info->set_num_subscribers(r.num_subscribers);
    info->set_num_clients(r.num_clients);
  }
  return Reply(ctx, absl::OkStatus());
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
  *response = CollectStats(*context_);
  return Reply(ctx, absl::OkStatus());
}

v1::StatsResponse CollectStats(ServiceContext& context) {
  BrokerStats broker = context.broker->Stats();
  ConnectionRegistry::Counts connections = context.registry->Count();
  v1::StatsResponse stats;
  stats.set_rooms(broker.rooms);
  stats.set_subscriptions(broker.subscriptions);
  stats.set_presence_entries(broker.presence_entries);
  stats.set_messages_published_total(broker.messages_published_total);
  stats.set_subscribe_streams(connections.subscribe_streams);
  stats.set_edge_links(connections.edge_links);
  stats.set_edge_clients(connections.edge_clients);
  stats.set_queued_events(context.gauges->events.load());
  stats.set_queued_bytes(context.gauges->bytes.load());
  stats.set_slow_consumer_disconnects_total(context.gauges->slow_consumer_total.load());
  return stats;
}

}  // namespace roomcast::core
