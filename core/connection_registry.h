// ConnectionRegistry: every live streaming connection of the core (Subscribe
// streams and edge links), so that Rooms.Disconnect can reach a user's
// connections wherever they are, shutdown can end them all, and Stats can
// count them. Thread-safe.
//
// Lock order: the registry's mutex is taken before any connection's own
// locks and before broker locks; connections never call the registry while
// holding those. Connection::Disconnect runs under the registry's mutex and
// may issue broker Leaves (after releasing its own locks): broker calls
// never block (core/broker.h), and broker completions never call the
// registry.
#ifndef ROOMCAST_CORE_CONNECTION_REGISTRY_H_
#define ROOMCAST_CORE_CONNECTION_REGISTRY_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::core {

class Connection {
 public:
  virtual ~Connection() = default;
  // Ends the clients that `request` names (by user_id or client_id); returns
  // how many. Called with the registry lock held: must not call the registry.
  virtual uint32_t Disconnect(const v1::DisconnectRequest& request) = 0;
  // Ends the whole stream with UNAVAILABLE (server shutting down).
  virtual void Shutdown() = 0;
  // Browser clients carried by this connection (0 for a Subscribe stream).
  virtual uint64_t NumClients() = 0;
};

class ConnectionRegistry {
 public:
  enum class Kind { kSubscribe, kEdgeLink, kPublishStream };

  // False once shutdown has begun: the caller must refuse the stream.
  bool Add(Connection* connection, Kind kind);
  // Idempotent.
  void Remove(Connection* connection);

  uint32_t Disconnect(const v1::DisconnectRequest& request);
  // Refuses new connections and shuts down every live one.
  void ShutdownAll();

  struct Counts {
    uint64_t subscribe_streams = 0;
    uint64_t edge_links = 0;
    uint64_t edge_clients = 0;
  };
  Counts Count();

 private:
  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<Connection*> subscribe_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<Connection*> edge_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<Connection*> publish_ ABSL_GUARDED_BY(mu_);
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_CONNECTION_REGISTRY_H_
