// The gRPC services of the core: Rooms (the backend API) and EdgeLink (one
// stream per edge). Both are thin: they check requests against the Policy,
// call the Broker and stream its events through bounded queues. They own no
// room state.
//
// Files: rooms_service.cc (unary calls, PublishStream), room_subscription.cc
// (Subscribe, raw frames shared between streams), edge_link_service.cc.
//
// Threads: gRPC calls every method on its own threads. Broker calls are made
// without holding any service mutex, and every unary call finishes its
// reactor from the broker's completion.
#ifndef ROOMCAST_CORE_SERVICES_H_
#define ROOMCAST_CORE_SERVICES_H_

#include <atomic>
#include <string>

#include "absl/functional/any_invocable.h"
#include "core/broker.h"
#include "core/connection_registry.h"
#include "core/options.h"
#include "core/policy.h"
#include "core/queued_writer.h"
#include "grpcpp/support/byte_buffer.h"
#include "roomcast/v1/roomcast.grpc.pb.h"

namespace roomcast::core {

// What the services share. Every pointer outlives the services.
struct ServiceContext {
  const CoreOptions* options;
  const Policy* policy;
  Broker* broker;
  ConnectionRegistry* registry;
  QueueGauges* gauges;
  // Source of core-assigned client ids ("core-N").
  std::atomic<uint64_t> next_client_id{1};
};

// Subscribe is served with raw frames (grpc::ByteBuffer) so that every
// stream of a room sends the same bytes, serialized once per event.
class RoomsService final
    : public v1::Rooms::WithRawCallbackMethod_Subscribe<v1::Rooms::CallbackService> {
 public:
  explicit RoomsService(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* ctx,
                                    const v1::PublishRequest* request,
                                    v1::PublishResponse* response) override;
  grpc::ServerBidiReactor<v1::PublishRequest, v1::PublishAck>* PublishStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Subscribe(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* History(grpc::CallbackServerContext* ctx,
                                    const v1::HistoryRequest* request,
                                    v1::HistoryResponse* response) override;
  grpc::ServerUnaryReactor* Presence(grpc::CallbackServerContext* ctx,
                                     const v1::PresenceRequest* request,
                                     v1::PresenceResponse* response) override;
  grpc::ServerUnaryReactor* PresenceStats(grpc::CallbackServerContext* ctx,
                                          const v1::PresenceStatsRequest* request,
                                          v1::PresenceStatsResponse* response) override;
  grpc::ServerUnaryReactor* ListRooms(grpc::CallbackServerContext* ctx,
                                      const v1::ListRoomsRequest* request,
                                      v1::ListRoomsResponse* response) override;
  grpc::ServerUnaryReactor* Disconnect(grpc::CallbackServerContext* ctx,
                                       const v1::DisconnectRequest* request,
                                       v1::DisconnectResponse* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx, const v1::StatsRequest* request,
                                  v1::StatsResponse* response) override;

 private:
  ServiceContext* const context_;
};

class EdgeLinkService final : public v1::EdgeLink::CallbackService {
 public:
  explicit EdgeLinkService(ServiceContext* context) : context_(context) {}

  grpc::ServerBidiReactor<v1::EdgeToCore, v1::CoreToEdge>* Link(
      grpc::CallbackServerContext* ctx) override;

 private:
  ServiceContext* const context_;
};

// Starts one Subscribe stream (room_subscription.cc); it deletes itself.
grpc::ServerWriteReactor<grpc::ByteBuffer>* NewRoomSubscription(ServiceContext* context,
                                                                const grpc::ByteBuffer& request);

// Whether a connection's client matches a Disconnect request.
bool MatchesDisconnect(const v1::ClientInfo& client, const v1::DisconnectRequest& request);

// The live counts behind Rooms.Stats; `done` runs once with them (from the
// broker's completion).
void CollectStats(ServiceContext& context, absl::AnyInvocable<void(v1::StatsResponse) &&> done);

// Estimate of the queue bytes of a reply or control message beside its
// payload (ids, status, framing). Used only for byte accounting.
inline constexpr size_t kControlMessageBytes = 64;

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_SERVICES_H_
