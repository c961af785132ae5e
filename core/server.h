// CoreServer: the whole core process minus flag parsing. Owns the broker, the
// services and the gRPC server (with health checking and reflection), and the
// sweeper that expires history. Used by main.cc and by tests, which start it
// on port 0 or talk to it through InProcessChannel().
#ifndef ROOMCAST_CORE_SERVER_H_
#define ROOMCAST_CORE_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/connection_registry.h"
#include "core/options.h"
#include "core/services.h"
#include "grpcpp/grpcpp.h"

namespace roomcast::core {

class MemoryBroker;

class CoreServer {
 public:
  // `clock` must outlive the server.
  explicit CoreServer(CoreOptions options, Clock* clock = Clock::Real());
  ~CoreServer();  // Shuts down if still running.
  CoreServer(const CoreServer&) = delete;
  CoreServer& operator=(const CoreServer&) = delete;

  // Binds options.listen and starts serving. Returns the bound address
  // ("127.0.0.1:NNNNN") or an error when the address cannot be bound.
  absl::StatusOr<std::string> Start();

  // Graceful shutdown: health turns NOT_SERVING, new streams are refused,
  // live streams end with UNAVAILABLE "server shutting down" after their
  // queued events, and after options.shutdown_grace whatever remains is
  // cancelled. Idempotent; blocks until done.
  void Shutdown();

  // Blocks until Shutdown completes.
  void Wait();

  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Runs one sweep now (tests; the server also sweeps on its own).
  void SweepNow();

 private:
  // Publishes CollectStats() as JSON to options.stats_room.
  void PublishStats();

  const CoreOptions options_;
  std::unique_ptr<MemoryBroker> broker_;
  ConnectionRegistry registry_;
  QueueGauges gauges_;
  ServiceContext context_;
  RoomsService rooms_;
  EdgeLinkService edge_link_;
  std::unique_ptr<grpc::Server> server_;
  absl::Notification stop_sweeper_;
  std::thread sweeper_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  absl::Notification done_;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_SERVER_H_
