// EdgeLink: one stream per edge process. The edge's clients are tracked here
// only as far as the core needs them: their identity (presence, publisher,
// Disconnect) and the rooms they joined (so that everything is left when the
// client or the whole edge goes away). The edge is subscribed to a room once
// per joined client (the broker counts joins) and receives each room event
// once, batched with its neighbours into EdgeEvents.
//
// Requests go to the broker without any lock held and are answered from its
// completions, so one edge's requests do not wait for each other. A join
// that is still pending when its client leaves (or the link ends) is undone
// from its own completion once the broker says it succeeded: a Leave must
// only undo a Join that succeeded.
#include <algorithm>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/grpc_status.h"
#include "core/services.h"
#include "spdlog/spdlog.h"

namespace roomcast::core {
namespace {

using Item = std::variant<RoomEventPtr, v1::CoreToEdge>;

// One room a client joined (or is joining).
struct RoomJoin {
  // Tells a join's completion whether the entry is still its own (the
  // client may have left and joined the same room again meanwhile).
  uint64_t join_id = 0;
  bool joined = false;
};

struct Client {
  v1::ClientInfo info;
  // What the client may do (ClientConnected.grants; all when the edge sent
  // none).
  v1::Grants grants;
  absl::flat_hash_map<std::string, RoomJoin> rooms;
};

// A broker Leave to issue once the state lock is released.
struct PendingLeave {
  std::string room;
  std::string client_id;
};

class EdgeLinkReactor final
    : public QueuedWriter<grpc::ServerBidiReactor<v1::EdgeToCore, v1::CoreToEdge>, Item,
                          v1::CoreToEdge>,
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

  void OnEvent(const RoomEventPtr& event) override { Enqueue(event, event->QueuedBytes()); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // The edge closed its side: it is going away.
      FinishOnce(grpc::Status::OK, false);
      return;
    }
    if (absl::Status s = Handle(in_); !s.ok()) {
      spdlog::warn("edge link protocol error edge={} error={}", edge_name_, s.ToString());
      FinishOnce(ToGrpcStatus(s), false);
      return;
    }
    StartRead(&in_);
  }

  // Called by the registry with its lock held; the Leaves it issues do not
  // block (Broker contract).
  uint32_t Disconnect(const v1::DisconnectRequest& request) override {
    v1::DisconnectCode code = request.code();
    if (code == v1::DISCONNECT_CODE_UNSPECIFIED) {
      code = request.reconnect() ? v1::SERVER_RECONNECT : v1::DISCONNECTED;
    }
    std::vector<PendingLeave> leaves;
    uint32_t matched = DisconnectMatching(request, code, leaves);
    IssueLeaves(std::move(leaves));
    return matched;
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
    std::vector<PendingLeave> leaves;
    size_t clients = RemoveAllClients(leaves);
    IssueLeaves(std::move(leaves));
    if (hello_) {  // No read is in flight after OnDone: edge_name_ is settled.
      spdlog::info("edge link closed edge={} clients_removed={}", edge_name_, clients);
    }
    ReleaseStream();
  }

 private:
  void TakeNext(Queue& queue, v1::CoreToEdge& out) override {
    if (auto* reply = std::get_if<v1::CoreToEdge>(&queue.front())) {
      out = std::move(*reply);
      queue.PopFront();
      return;
    }
    // Coalesce consecutive room events into one write.
    v1::EdgeEvents* events = out.mutable_events();
    // At least one, or a zero limit would write empty batches forever.
    const size_t max_events = std::max<size_t>(1, context_->options->max_events_per_edge_batch);
    queue.TakeBatch(max_events, [events](Item& item) {
      auto* event = std::get_if<RoomEventPtr>(&item);
      if (event == nullptr) return false;
      *events->add_events() = (*event)->proto();
      return true;
    });
  }

  // Handles one message from the edge. An error is a protocol violation that
  // ends the link; errors of a single request are replied to instead.
  absl::Status Handle(v1::EdgeToCore& in) {
    if (!hello_) {
      if (!in.has_hello()) return absl::InvalidArgumentError("the first message must be hello");
      hello_ = true;
      edge_name_ = in.hello().edge_name();
      spdlog::info("edge link opened edge={} core={}", edge_name_, context_->options->node_name);
      v1::CoreToEdge out;
      out.mutable_welcome()->set_core_name(context_->options->node_name);
      Enqueue(std::move(out), kControlMessageBytes);
      return absl::OkStatus();
    }
    switch (in.kind_case()) {
      case v1::EdgeToCore::kClientConnected:
        return Connect(in.client_connected());
      case v1::EdgeToCore::kClientDisconnected: {
        std::vector<PendingLeave> leaves;
        RemoveClient(in.client_disconnected().client_id(), leaves);
        IssueLeaves(std::move(leaves));
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

  absl::Status Connect(const v1::ClientConnected& connected) {
    const v1::ClientInfo& info = connected.client();
    if (info.client_id().empty())
      return absl::InvalidArgumentError("client_connected without client_id");
    if (absl::Status s = context_->policy->ValidateClientInfo(info); !s.ok()) return s;
    absl::MutexLock lock(&state_mu_);
    v1::Grants grants;
    if (connected.has_grants()) {
      grants = connected.grants();
    } else {
      grants.set_all(true);
    }
    if (!clients_.try_emplace(info.client_id(), Client{info, std::move(grants), {}}).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("client_connected: client \"", info.client_id(), "\" is already connected"));
    }
    return absl::OkStatus();
  }

  void HandleRequest(v1::EdgeRequest& request) {
    const uint64_t request_id = request.request_id();
    v1::Grants grants;
    std::optional<v1::ClientInfo> client = ClientInfoOf(request.client_id(), grants);
    if (!client.has_value()) {
      ReplyError(request_id,
                 absl::NotFoundError(absl::StrCat("unknown client \"", request.client_id(), "\"")));
      return;
    }
    if (absl::Status allowed = CheckRequestGrant(grants, request); !allowed.ok()) {
      ReplyError(request_id, allowed);
      return;
    }
    switch (request.op_case()) {
      case v1::EdgeRequest::kJoin:
        Join(request_id, *std::move(client), request.join());
        return;
      case v1::EdgeRequest::kLeave:
        Leave(request_id, client->client_id(), request.leave().room());
        return;
      case v1::EdgeRequest::kPublish:
        Publish(request_id, *std::move(client), *request.mutable_publish());
        return;
      case v1::EdgeRequest::kPresence:
        Presence(request_id, request.presence().room());
        return;
      case v1::EdgeRequest::kHistory:
        History(request_id, request.history());
        return;
      case v1::EdgeRequest::OP_NOT_SET:
        break;
    }
    ReplyError(request_id, absl::InvalidArgumentError("request without an operation"));
  }

  // A copy of the client's identity (and its grants into `grants`), or
  // nullopt when it is not connected.
  std::optional<v1::ClientInfo> ClientInfoOf(const std::string& client_id, v1::Grants& grants) {
    absl::MutexLock lock(&state_mu_);
    auto it = clients_.find(client_id);
    if (it == clients_.end()) return std::nullopt;
    grants = it->second.grants;
    return it->second.info;
  }

  // PERMISSION_DENIED when the client's grants do not cover the request (a
  // leave is always allowed).
  static absl::Status CheckRequestGrant(const v1::Grants& grants, const v1::EdgeRequest& request) {
    switch (request.op_case()) {
      case v1::EdgeRequest::kJoin:
        return CheckGrant(grants, RoomOp::kSubscribe, request.join().room());
      case v1::EdgeRequest::kPublish:
        return CheckGrant(grants, RoomOp::kPublish, request.publish().room());
      case v1::EdgeRequest::kPresence:
        return CheckGrant(grants, RoomOp::kPresence, request.presence().room());
      case v1::EdgeRequest::kHistory:
        return CheckGrant(grants, RoomOp::kHistory, request.history().room());
      default:
        return absl::OkStatus();
    }
  }

  void Join(uint64_t request_id, v1::ClientInfo client, const v1::JoinRequest& join) {
    const std::string& room = join.room();
    uint64_t join_id = 0;
    if (absl::Status s = StartJoin(client.client_id(), room, join_id); !s.ok()) {
      ReplyError(request_id, s);
      return;
    }
    std::string client_id = client.client_id();
    JoinArgs args;
    args.room = room;
    if (join.has_since()) args.since = join.since();
    args.member = std::move(client);
    context_->broker->Join(
        std::move(args), this,
        // The reply is queued before any later event of the room.
        [this, request_id](const JoinResult& result) { QueueJoinReply(request_id, result); },
        [this, request_id, join_id, client_id = std::move(client_id), room = std::string(room),
         hold = Retain()](absl::Status status) {
          OnJoinDone(request_id, client_id, room, join_id, std::move(status));
        });
  }

  // Records a pending join; ALREADY_EXISTS when the client is in the room.
  absl::Status StartJoin(const std::string& client_id, const std::string& room, uint64_t& join_id) {
    absl::MutexLock lock(&state_mu_);
    auto client = clients_.find(client_id);
    if (client == clients_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown client \"", client_id, "\""));
    }
    join_id = ++next_join_id_;
    if (!client->second.rooms.try_emplace(room, RoomJoin{join_id, false}).second) {
      return absl::AlreadyExistsError(absl::StrCat("already joined \"", room, "\""));
    }
    return absl::OkStatus();
  }

  void QueueJoinReply(uint64_t request_id, const JoinResult& result) {
    v1::CoreToEdge out;
    v1::EdgeReply* reply = out.mutable_reply();
    reply->set_request_id(request_id);
    v1::JoinResult* r = reply->mutable_join();
    r->set_recovered(result.recovered);
    *r->mutable_position() = result.position;
    size_t bytes = kControlMessageBytes;
    for (const RoomEventPtr& e : result.replayed) {
      *r->add_replayed() = e->message();
      bytes += e->QueuedBytes();
    }
    Enqueue(std::move(out), bytes);
  }

  void OnJoinDone(uint64_t request_id, const std::string& client_id, const std::string& room,
                  uint64_t join_id, absl::Status status) {
    const bool orphaned = !SettleJoin(client_id, room, join_id, status.ok());
    if (!status.ok()) {
      ReplyError(request_id, status);
      return;
    }
    // The client left (or the link ended) while its join was pending: undo
    // the join now that it took effect.
    if (orphaned) IssueLeaves({PendingLeave{room, client_id}});
  }

  // Marks the pending join done (or forgets it when it failed). False when
  // its entry is gone: nobody else will undo it.
  bool SettleJoin(const std::string& client_id, const std::string& room, uint64_t join_id,
                  bool ok) {
    absl::MutexLock lock(&state_mu_);
    auto client = clients_.find(client_id);
    if (client == clients_.end()) return false;
    auto entry = client->second.rooms.find(room);
    if (entry == client->second.rooms.end() || entry->second.join_id != join_id) return false;
    if (ok) {
      entry->second.joined = true;
    } else {
      client->second.rooms.erase(entry);
    }
    return true;
  }

  void Leave(uint64_t request_id, const std::string& client_id, const std::string& room) {
    bool joined = false;
    {
      absl::MutexLock lock(&state_mu_);
      auto client = clients_.find(client_id);
      if (client != clients_.end()) {
        auto entry = client->second.rooms.find(room);
        if (entry != client->second.rooms.end()) {
          // A pending join is undone by its own completion.
          joined = entry->second.joined;
          client->second.rooms.erase(entry);
        }
      }
    }
    if (joined) IssueLeaves({PendingLeave{room, client_id}});
    v1::CoreToEdge out;
    v1::EdgeReply* reply = out.mutable_reply();
    reply->set_request_id(request_id);
    reply->mutable_leave();
    Enqueue(std::move(out), kControlMessageBytes);
  }

  void Publish(uint64_t request_id, v1::ClientInfo client, v1::PublishRequest& publish) {
    if (absl::Status s = context_->policy->CheckClientPublish(publish.room()); !s.ok()) {
      ReplyError(request_id, s);
      return;
    }
    PublishArgs args{publish.room(), std::move(*publish.mutable_data()), std::move(client)};
    context_->broker->Publish(std::move(args), [this, request_id, hold = Retain()](
                                                   absl::StatusOr<v1::Position> position) {
      if (!position.ok()) {
        ReplyError(request_id, position.status());
        return;
      }
      v1::CoreToEdge out;
      v1::EdgeReply* reply = out.mutable_reply();
      reply->set_request_id(request_id);
      *reply->mutable_publish()->mutable_position() = *std::move(position);
      Enqueue(std::move(out), kControlMessageBytes);
    });
  }

  void Presence(uint64_t request_id, const std::string& room) {
    context_->broker->Presence(room, [this, request_id, hold = Retain()](
                                         absl::StatusOr<std::vector<v1::ClientInfo>> members) {
      if (!members.ok()) {
        ReplyError(request_id, members.status());
        return;
      }
      v1::CoreToEdge out;
      v1::EdgeReply* reply = out.mutable_reply();
      reply->set_request_id(request_id);
      v1::PresenceResponse* presence = reply->mutable_presence();
      for (v1::ClientInfo& m : *members) *presence->add_clients() = std::move(m);
      size_t bytes = kControlMessageBytes + presence->ByteSizeLong();
      Enqueue(std::move(out), bytes);
    });
  }

  void History(uint64_t request_id, const v1::HistoryRequest& h) {
    HistoryArgs args{h.room(),
                     h.has_since() ? std::optional<v1::Position>(h.since()) : std::nullopt,
                     h.limit(), h.reverse()};
    context_->broker->History(std::move(args), [this, request_id, hold = Retain()](
                                                   absl::StatusOr<HistoryResult> history) {
      if (!history.ok()) {
        ReplyError(request_id, history.status());
        return;
      }
      v1::CoreToEdge out;
      v1::EdgeReply* reply = out.mutable_reply();
      reply->set_request_id(request_id);
      v1::HistoryResponse* r = reply->mutable_history();
      for (const RoomEventPtr& e : history->messages) *r->add_messages() = e->message();
      *r->mutable_position() = history->position;
      size_t bytes = kControlMessageBytes + r->ByteSizeLong();
      Enqueue(std::move(out), bytes);
    });
  }

  void ReplyError(uint64_t request_id, const absl::Status& status) {
    v1::CoreToEdge out;
    v1::EdgeReply* reply = out.mutable_reply();
    reply->set_request_id(request_id);
    *reply->mutable_error() = ToError(status);
    Enqueue(std::move(out), kControlMessageBytes);
  }

  uint32_t DisconnectMatching(const v1::DisconnectRequest& request, v1::DisconnectCode code,
                              std::vector<PendingLeave>& leaves) {
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
      Enqueue(std::move(out), kControlMessageBytes + request.reason().size());
      RemoveClientLocked(id, leaves);
    }
    return static_cast<uint32_t>(matched.size());
  }

  void RemoveClient(const std::string& client_id, std::vector<PendingLeave>& leaves) {
    absl::MutexLock lock(&state_mu_);
    RemoveClientLocked(client_id, leaves);
  }

  size_t RemoveAllClients(std::vector<PendingLeave>& leaves) {
    absl::MutexLock lock(&state_mu_);
    size_t clients = clients_.size();
    while (!clients_.empty()) RemoveClientLocked(clients_.begin()->first, leaves);
    return clients;
  }

  // Forgets the client; the rooms it had joined go to `leaves` (its pending
  // joins are undone by their completions).
  void RemoveClientLocked(const std::string& client_id, std::vector<PendingLeave>& leaves)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_) {
    auto it = clients_.find(client_id);
    if (it == clients_.end()) return;
    for (const auto& [room, join] : it->second.rooms) {
      if (join.joined) leaves.push_back(PendingLeave{room, client_id});
    }
    clients_.erase(it);
  }

  // Issues broker Leaves; never with state_mu_ held.
  void IssueLeaves(std::vector<PendingLeave> leaves) ABSL_LOCKS_EXCLUDED(state_mu_) {
    for (PendingLeave& leave : leaves) {
      std::string room = leave.room;
      context_->broker->Leave(LeaveArgs{std::move(leave.room), std::move(leave.client_id)}, this,
                              [room = std::move(room), hold = Retain()](absl::Status status) {
                                if (!status.ok()) {
                                  spdlog::warn("edge leave failed room={} error={}", room,
                                               status.ToString());
                                }
                              });
    }
  }

  ServiceContext* const context_;
  // Read side: touched only from OnReadDone (one read at a time) and OnDone.
  v1::EdgeToCore in_;
  bool hello_ = false;
  std::string edge_name_;
  // Lock order: state_mu_, then the writer's queue lock. Never held across a
  // broker call; join completions take it after the broker released its
  // locks.
  absl::Mutex state_mu_;
  absl::flat_hash_map<std::string, Client> clients_ ABSL_GUARDED_BY(state_mu_);
  uint64_t next_join_id_ ABSL_GUARDED_BY(state_mu_) = 0;
};

}  // namespace

grpc::ServerBidiReactor<v1::EdgeToCore, v1::CoreToEdge>* EdgeLinkService::Link(
    grpc::CallbackServerContext* ctx) {
  return new EdgeLinkReactor(context_);
}

}  // namespace roomcast::core
