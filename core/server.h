// CoreServer: the whole core process minus flag parsing. Owns the Policy, the
// broker (chosen by options.broker through broker_factory.h; it maintains
// itself), the services and the gRPC server (with health checking, and
// reflection when options.reflection), and the thread that publishes stats
// to options.stats_room.
// Used by main.cc and by tests, which start it on port 0 or talk to it
// through InProcessChannel().
//
// Threads: Start, Shutdown and Wait from the owner's thread; Shutdown may
// also come from another thread (it is idempotent).
#ifndef ROOMCAST_CORE_SERVER_H_
#define ROOMCAST_CORE_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/connection_registry.h"
#include "core/options.h"
#include "core/policy.h"
#include "core/services.h"
#include "grpcpp/grpcpp.h"

namespace roomcast::core {

class CoreServer {
 public:
  // `clock` must outlive the server.
  explicit CoreServer(CoreOptions options, Clock* clock = Clock::Real());
  ~CoreServer();  // Shuts down if still running.
  CoreServer(const CoreServer&) = delete;
  CoreServer& operator=(const CoreServer&) = delete;

  // Starts the broker, binds options.listen and starts serving. Returns the
  // bound address ("127.0.0.1:NNNNN"), INVALID_ARGUMENT for an unknown
  // options.broker, the broker's start error, or UNAVAILABLE when the
  // address cannot be bound.
  absl::StatusOr<std::string> Start();

  // Graceful shutdown: health turns NOT_SERVING, new streams are refused,
  // live streams end with UNAVAILABLE "server shutting down" after their
  // queued events, and after options.shutdown_grace whatever remains is
  // cancelled; then the broker stops. Idempotent; blocks until done.
  void Shutdown();

  // Blocks until Shutdown completes.
  void Wait();

  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Runs one full round of the broker's maintenance now (expired history,
  // empty rooms); tests with a fake clock. The broker also runs it itself.
  void SweepNow();

 private:
  // Publishes the Stats as JSON to options.stats_room.
  void PublishStats();

  const CoreOptions options_;
  const Policy policy_;
  absl::Status broker_status_;
  std::unique_ptr<Broker> broker_;
  ConnectionRegistry registry_;
  QueueGauges gauges_;
  ServiceContext context_;
  RoomsService rooms_;
  EdgeLinkService edge_link_;
  std::unique_ptr<grpc::Server> server_;
  absl::Notification stop_stats_;
  std::thread stats_thread_;
  // Whether the last stats publish failed (its error is logged once).
  std::atomic<bool> stats_failing_{false};
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  absl::Notification done_;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_SERVER_H_
