#include "core/connection_registry.h"

namespace roomcast::core {

bool ConnectionRegistry::Add(Connection* connection, Kind kind) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return false;
  switch (kind) {
    case Kind::kSubscribe:
      subscribe_.insert(connection);
      break;
    case Kind::kEdgeLink:
      edge_.insert(connection);
      break;
    case Kind::kPublishStream:
      publish_.insert(connection);
      break;
  }
  return true;
}

void ConnectionRegistry::Remove(Connection* connection) {
  absl::MutexLock lock(&mu_);
  subscribe_.erase(connection);
  edge_.erase(connection);
  publish_.erase(connection);
}

uint32_t ConnectionRegistry::Disconnect(const v1::DisconnectRequest& request) {
  absl::MutexLock lock(&mu_);
  uint32_t n = 0;
  for (Connection* c : subscribe_) n += c->Disconnect(request);
  for (Connection* c : edge_) n += c->Disconnect(request);
  return n;
}

void ConnectionRegistry::ShutdownAll() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  for (Connection* c : subscribe_) c->Shutdown();
  for (Connection* c : edge_) c->Shutdown();
  for (Connection* c : publish_) c->Shutdown();
}

ConnectionRegistry::Counts ConnectionRegistry::Count() {
  absl::MutexLock lock(&mu_);
  Counts counts;
  counts.subscribe_streams = subscribe_.size();
  counts.edge_links = edge_.size();
  for (Connection* c : edge_) counts.edge_clients += c->NumClients();
  return counts;
}

}  // namespace roomcast::core
