// RoomSubscription: one Rooms.Subscribe call, joined to its rooms for as long
// as the stream lives. Responses are raw frames: a room event's
// SubscribeResponse bytes are built once (RoomEvent::SubscribeFrame) and every
// stream sends a slice over those same bytes, which keeps the event alive
// until gRPC has written it. Recovery markers are per stream and serialized
// here.
//
// Joins run one room after the other through the broker's completions;
// nothing is written until every join succeeded (a Subscribe that fails on
// its third room sends nothing but its error).
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/grpc_status.h"
#include "core/services.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "spdlog/spdlog.h"

namespace roomcast::core {
namespace {

// A slice over the event's shared SubscribeResponse bytes; holds a reference
// to the event until gRPC releases the slice.
grpc::Slice SharedFrame(const RoomEventPtr& event) {
  const std::string& frame = event->SubscribeFrame();
  auto* keep = new RoomEventPtr(event);
  return grpc::Slice(
      const_cast<char*>(frame.data()), frame.size(),
      [](void* p) { delete static_cast<RoomEventPtr*>(p); }, keep);
}

struct SubscribedRoom {
  std::string room;
  std::optional<v1::Position> since;
};

using Item = std::variant<RoomEventPtr, v1::Recovery>;

class RoomSubscription final
    : public QueuedWriter<grpc::ServerWriteReactor<grpc::ByteBuffer>, Item, grpc::ByteBuffer>,
      public Subscriber,
      public Connection {
 public:
  RoomSubscription(ServiceContext* context, const grpc::ByteBuffer& raw)
      : QueuedWriter(context->options->subscribe_queue, context->gauges), context_(context) {
    // The identity is settled before the stream is registered (Disconnect
    // reads it) and before any join (a failed Subscribe must leave presence).
    if (absl::Status s = Prepare(raw); !s.ok()) {
      FinishOnce(ToGrpcStatus(s), false);
      StartWriting();
    } else if (!context_->registry->Add(this, ConnectionRegistry::Kind::kSubscribe)) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"), false);
      StartWriting();
    } else {
      JoinNext(0);
    }
  }

  void OnEvent(const RoomEventPtr& event) override { Enqueue(event, event->QueuedBytes()); }

  uint32_t Disconnect(const v1::DisconnectRequest& request) override {
    if (!MatchesDisconnect(client_, request)) return 0;
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
    ReleaseStream();
  }

 private:
  void TakeNext(Queue& queue, grpc::ByteBuffer& out) override {
    Item item = queue.PopFront();
    grpc::Slice slice;
    if (auto* recovery = std::get_if<v1::Recovery>(&item)) {
      v1::SubscribeResponse response;
      *response.mutable_recovery() = std::move(*recovery);
      slice = grpc::Slice(response.SerializeAsString());
    } else {
      slice = SharedFrame(std::get<RoomEventPtr>(item));
    }
    grpc::ByteBuffer frame(&slice, 1);
    out.Swap(&frame);
  }

  absl::Status Prepare(const grpc::ByteBuffer& raw) {
    v1::SubscribeRequest request;
    grpc::ByteBuffer copy(raw);  // The reader consumes its buffer.
    grpc::ProtoBufferReader reader(&copy);
    if (!request.ParseFromZeroCopyStream(&reader)) {
      return absl::InvalidArgumentError("malformed SubscribeRequest");
    }
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
    if (absl::Status s = context_->policy->ValidateClientInfo(request.client()); !s.ok()) return s;
    client_ = request.client();
    if (client_.client_id().empty()) {
      client_.set_client_id(absl::StrCat("core-", context_->next_client_id.fetch_add(1)));
    }
    presence_ = request.presence();
    for (const auto& room : request.rooms()) {
      rooms_.push_back(SubscribedRoom{room.room(), room.has_since()
                                                       ? std::optional<v1::Position>(room.since())
                                                       : std::nullopt});
    }
    return absl::OkStatus();
  }

  // Joins rooms_[i], then (from the completion) the next one; writing starts
  // when all are joined, or the stream ends with the first error.
  void JoinNext(size_t i) {
    if (i == rooms_.size() || Finishing()) {  // All joined, or cancelled meanwhile.
      StartWriting();
      return;
    }
    JoinArgs args;
    args.room = rooms_[i].room;
    args.since = rooms_[i].since;
    if (presence_) args.member = client_;
    context_->broker->Join(
        std::move(args), this,
        // Runs before `done` (whose Hold keeps this alive) and before any
        // later event of the room: the replay and the marker come first.
        [this, i](const JoinResult& result) { QueueReplay(rooms_[i].room, result); },
        [this, i, hold = Retain()](absl::Status status) { OnJoinDone(i, std::move(status)); });
  }

  void QueueReplay(const std::string& room, const JoinResult& result) {
    for (const RoomEventPtr& e : result.replayed) Enqueue(e, e->QueuedBytes());
    v1::Recovery recovery;
    recovery.set_room(room);
    recovery.set_recovered(result.recovered);
    *recovery.mutable_position() = result.position;
    Enqueue(std::move(recovery), kControlMessageBytes + room.size());
  }

  void OnJoinDone(size_t i, absl::Status status) {
    if (!status.ok()) {
      LeaveAll();
      FinishOnce(ToGrpcStatus(absl::Status(status.code(), absl::StrCat("room \"", rooms_[i].room,
                                                                       "\": ", status.message()))),
                 false);
      StartWriting();
      return;
    }
    joined_.push_back(rooms_[i].room);
    JoinNext(i + 1);
  }

  void LeaveAll() {
    for (const std::string& room : joined_) {
      LeaveArgs args{room, presence_ ? client_.client_id() : std::string()};
      context_->broker->Leave(std::move(args), this, [room, hold = Retain()](absl::Status status) {
        if (!status.ok()) {
          spdlog::warn("subscribe leave failed room={} error={}", room, status.ToString());
        }
      });
    }
    joined_.clear();
  }

  ServiceContext* const context_;
  // Written before the first join, then only read (Disconnect, OnDone).
  v1::ClientInfo client_;
  bool presence_ = false;
  std::vector<SubscribedRoom> rooms_;
  // Touched by the join chain (one completion at a time) and, after it
  // ended and writing started, by OnDone: never concurrently.
  std::vector<std::string> joined_;
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* NewRoomSubscription(ServiceContext* context,
                                                                const grpc::ByteBuffer& request) {
  return new RoomSubscription(context, request);
}

}  // namespace roomcast::core
