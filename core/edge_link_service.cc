// EdgeLink: one stream per edge process. The edge's clients are tracked here
// only as far as the core needs them: their identity (presence, publisher,
// Disconnect) and the rooms they joined (so that everything is left when the
// client or the whole edge goes away). The edge is subscribed to a room once
// per joined client (the broker counts joins) and receives each room event
// once, batched with its neighbours into EdgeEvents.
#include <cstdio>
#include <string>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/grpc_status.h"
#include "core/services.h"

namespace roomcast::core {
namespace {

// Most events batched into one CoreToEdge write; keeps one write bounded.
constexpr size_t kMaxEventsPerBatch = 512;

class EdgeLinkReactor final
    : public QueuedWriter<grpc::ServerBidiReactor<v1::EdgeToCore, v1::CoreToEdge>,
                          std::variant<RoomEventPtr, v1::CoreToEdge>, v1::CoreToEdge>,
      public Subscriber,
      public Connection {
 public:
  explicit EdgeLinkReactor(ServiceContext* context)
      : QueuedWriter(context->options->edge_queue, context->gauges), context_(context) {
    if (!context_->registry->Add(this, ConnectionRegistry::Kind::kEdgeLink)) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"), false);
    } else {
      StartRead(&in_);
    }
    StartWriting();
  }

  void OnEvent(const RoomEventPtr& event) override { Enqueue(event, QueuedBytes(*event)); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // The edge closed its side: it is going away.
      FinishOnce(grpc::Status::OK, false);
      return;
    }
    if (absl::Status s = Handle(in_); !s.ok()) {
      FinishOnce(ToGrpcStatus(s), false);
      return;
    }
    StartRead(&in_);
  }

  uint32_t Disconnect(const v1::DisconnectRequest& request) override {
    v1::DisconnectCode code = request.code();
    if (code == v1::DISCONNECT_CODE_UNSPECIFIED) {
      code = request.reconnect() ? v1::SERVER_RECONNECT : v1::DISCONNECTED;
    }
    absl::MutexLock lock(&state_mu_);
    std::vector<std::string> matched;
    for (const auto& [id, client] : clients_) {
      if (request.client_id().empty() ? client.info.user_id() == request.user_id()
                                      : id == request.client_id()) {
        matched.push_back(id);
      }
    }
    for (const std::string& id : matched) {
      v1::CoreToEdge out;
      v1::DisconnectClient* d = out.mutable_disconnect();
      d->set_client_id(id);
      d->set_code(code);
      d->set_reason(request.reason());
      Enqueue(std::move(out), 64 + request.reason().size());
      RemoveClientLocked(id);
    }
    return static_cast<uint32_t>(matched.size());
  }

  void Shutdown() override {
    FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"), true);
  }

  uint64_t NumClients() override {
    absl::MutexLock lock(&state_mu_);
    return clients_.size();
  }

  void OnCancel() override {
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"), false);
  }

  void OnDone() override {
    context_->registry->Remove(this);
    size_t clients = 0;
    {
      absl::MutexLock lock(&state_mu_);
      clients = clients_.size();
      while (!clients_.empty()) RemoveClientLocked(clients_.begin()->first);
    }
    if (hello_) {  // No read is in flight after OnDone: edge_name_ is settled.
      std::fprintf(stderr, "roomcast-core: edge link from \"%s\" closed; %zu clients removed\n",
                   edge_name_.c_str(), clients);
    }
    delete this;
  }

 private:
  struct Client {
    v1::ClientInfo info;
    absl::flat_hash_set<std::string> rooms;
  };

  void TakeNext(std::deque<Entry>& queue, v1::CoreToEdge& out) override {
    if (auto* reply = std::get_if<v1::CoreToEdge>(&queue.front().item)) {
      out = std::move(*reply);
      PopFront(queue);
      return;
    }
    // Coalesce consecutive room events into one write.
    v1::EdgeEvents* events = out.mutable_events();
    while (!queue.empty() && events->events_size() < static_cast<int>(kMaxEventsPerBatch) &&
           std::holds_alternative<RoomEventPtr>(queue.front().item)) {
      *events->add_events() = *std::get<RoomEventPtr>(PopFront(queue));
    }
  }

  // Handles one message from the edge. An error is a protocol violation that
  // ends the link; errors of a single request are replied to instead.
  absl::Status Handle(v1::EdgeToCore& in) {
    if (!hello_) {
      if (!in.has_hello()) return absl::InvalidArgumentError("the first message must be hello");
      hello_ = true;
      edge_name_ = in.hello().edge_name();
      std::fprintf(stderr, "roomcast-core: edge link from \"%s\" opened\n", edge_name_.c_str());
      v1::CoreToEdge out;
      out.mutable_welcome()->set_core_name(context_->options->node_name);
      Enqueue(std::move(out), 64);
      return absl::OkStatus();
    }
    switch (in.kind_case()) {
      case v1::EdgeToCore::kClientConnected:
        return Connect(in.client_connected().client());
      case v1::EdgeToCore::kClientDisconnected: {
        absl::MutexLock lock(&state_mu_);
        RemoveClientLocked(in.client_disconnected().client_id());
        return absl::OkStatus();
      }
      case v1::EdgeToCore::kRequest:
        HandleRequest(*in.mutable_request());
        return absl::OkStatus();
      case v1::EdgeToCore::kHello:
        return absl::InvalidArgumentError("hello sent twice");
      case v1::EdgeToCore::KIND_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError("empty or unknown EdgeToCore message");
  }

  absl::Status Connect(const v1::ClientInfo& info) {
    if (info.client_id().empty())
      return absl::InvalidArgumentError("client_connected without client_id");
    if (absl::Status s = ValidateClientInfo(info, *context_->options); !s.ok()) return s;
    absl::MutexLock lock(&state_mu_);
    if (!clients_.try_emplace(info.client_id(), Client{info, {}}).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("client_connected: client \"", info.client_id(), "\" is already connected"));
    }
    return absl::OkStatus();
  }

  void HandleRequest(v1::EdgeRequest& request) {
    v1::CoreToEdge out;
    v1::EdgeReply* reply = out.mutable_reply();
    reply->set_request_id(request.request_id());
    absl::MutexLock lock(&state_mu_);
    auto client = clients_.find(request.client_id());
    absl::Status status;
    if (client == clients_.end()) {
      status = absl::NotFoundError(absl::StrCat("unknown client \"", request.client_id(), "\""));
    } else {
      switch (request.op_case()) {
        case v1::EdgeRequest::kJoin:
          // The reply is queued by the broker, ordered before later events.
          status = Join(request.request_id(), client->second, request.join());
          if (status.ok()) return;
          break;
        case v1::EdgeRequest::kLeave:
          if (client->second.rooms.erase(request.leave().room()) > 0) {
            context_->broker->Leave(request.leave().room(), this, client->first);
          }
          reply->mutable_leave();
          break;
        case v1::EdgeRequest::kPublish:
          status = Publish(client->second, *request.mutable_publish(), *reply);
          break;
        case v1::EdgeRequest::kPresence: {
          absl::StatusOr<std::vector<v1::ClientInfo>> members =
              context_->broker->Presence(request.presence().room());
          status = members.status();
          if (status.ok()) {
            for (v1::ClientInfo& m : *members)
              *reply->mutable_presence()->add_clients() = std::move(m);
          }
          break;
        }
        case v1::EdgeRequest::kHistory: {
          const v1::HistoryRequest& h = request.history();
          absl::StatusOr<HistoryResult> history = context_->broker->History(
              h.room(), h.has_since() ? &h.since() : nullptr, h.limit(), h.reverse());
          status = history.status();
          if (status.ok()) {
            v1::HistoryResponse* r = reply->mutable_history();
            for (const RoomEventPtr& e : history->messages) *r->add_messages() = e->message();
            *r->mutable_position() = history->position;
          }
          break;
        }
        case v1::EdgeRequest::OP_NOT_SET:
          status = absl::InvalidArgumentError("request without an operation");
          break;
      }
    }
    if (!status.ok()) *reply->mutable_error() = ToError(status);
    size_t bytes = 64 + (reply->has_history() ? reply->history().ByteSizeLong() : 0) +
                   (reply->has_presence() ? reply->presence().ByteSizeLong() : 0);
    Enqueue(std::move(out), bytes);
  }

  absl::Status Join(uint64_t request_id, Client& client, const v1::JoinRequest& join)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_) {
    if (client.rooms.contains(join.room())) {
      return absl::AlreadyExistsError(absl::StrCat("already joined \"", join.room(), "\""));
    }
    absl::Status s = context_->broker->Join(join.room(), join.has_since() ? &join.since() : nullptr,
                                            this, &client.info, [&](const JoinResult& result) {
                                              v1::CoreToEdge out;
                                              v1::EdgeReply* reply = out.mutable_reply();
                                              reply->set_request_id(request_id);
                                              v1::JoinResult* r = reply->mutable_join();
                                              r->set_recovered(result.recovered);
                                              *r->mutable_position() = result.position;
                                              size_t bytes = 64;
                                              for (const RoomEventPtr& e : result.replayed) {
                                                *r->add_replayed() = e->message();
                                                bytes += QueuedBytes(*e);
                                              }
                                              Enqueue(std::move(out), bytes);
                                            });
    if (s.ok()) client.rooms.insert(join.room());
    return s;
  }

  absl::Status Publish(const Client& client, v1::PublishRequest& publish, v1::EdgeReply& reply) {
    if (absl::Status s = context_->broker->CheckClientPublish(publish.room()); !s.ok()) return s;
    absl::StatusOr<v1::Position> position =
        context_->broker->Publish(publish.room(), std::move(*publish.mutable_data()), &client.info);
    if (position.ok()) *reply.mutable_publish()->mutable_position() = *std::move(position);
    return position.status();
  }

  void RemoveClientLocked(const std::string& client_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_) {
    auto it = clients_.find(client_id);
    if (it == clients_.end()) return;
    for (const std::string& room : it->second.rooms) {
      context_->broker->Leave(room, this, client_id);
    }
    clients_.erase(it);
  }

  ServiceContext* const context_;
  // Read side: touched only from OnReadDone (one read at a time).
  v1::EdgeToCore in_;
  bool hello_ = false;
  std::string edge_name_;
  // Lock order: state_mu_, then broker locks, then the writer's queue lock.
  absl::Mutex state_mu_;
  absl::flat_hash_map<std::string, Client> clients_ ABSL_GUARDED_BY(state_mu_);
};

}  // namespace

grpc::ServerBidiReactor<v1::EdgeToCore, v1::CoreToEdge>* EdgeLinkService::Link(
    grpc::CallbackServerContext* ctx) {
  return new EdgeLinkReactor(context_);
}

}  // namespace roomcast::core
