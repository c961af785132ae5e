// The gRPC services of the core: Rooms (the backend API) and EdgeLink (one
// stream per edge). Both are thin: they validate requests, call the Broker and
// stream its events through bounded queues. They own no room state.
#ifndef ROOMCAST_CORE_SERVICES_H_
#define ROOMCAST_CORE_SERVICES_H_

#include <atomic>
#include <string>

#include "core/broker.h"
#include "core/connection_registry.h"
#include "core/options.h"
#include "core/queued_writer.h"
#include "roomcast/v1/roomcast.grpc.pb.h"

namespace roomcast::core {

// What the services share. Every pointer outlives the services.
struct ServiceContext {
  const CoreOptions* options;
  Broker* broker;
  ConnectionRegistry* registry;
  QueueGauges* gauges;
  // Source of core-assigned client ids ("core-N").
  std::atomic<uint64_t> next_client_id{1};
};

class RoomsService final : public v1::Rooms::CallbackService {
 public:
  explicit RoomsService(ServiceContext* context) : context_(context) {}

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* ctx,
                                    const v1::PublishRequest* request,
                                    v1::PublishResponse* response) override;
  grpc::ServerBidiReactor<v1::PublishRequest, v1::PublishAck>* PublishStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerWriteReactor<v1::SubscribeResponse>* Subscribe(
      grpc::CallbackServerContext* ctx, const v1::SubscribeRequest* request) override;
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

// Helpers shared by both services (services.cc, edge_link.cc).
absl::Status ValidateClientInfo(const v1::ClientInfo& client, const CoreOptions& options);
// Approximate bytes an event occupies in a queue (payload and names).
size_t QueuedBytes(const v1::RoomEvent& event);
// The live counts behind Rooms.Stats.
v1::StatsResponse CollectStats(ServiceContext& context);

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_SERVICES_H_
