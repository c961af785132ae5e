// Options for the core: every limit of the process in one place, each named
// with its unit and commented with its reason. Plain data; copy freely.
#ifndef ROOMCAST_CORE_OPTIONS_H_
#define ROOMCAST_CORE_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace roomcast::core {

// Per-namespace behaviour. A room "chat:lobby" uses namespace "chat"; a room
// without ':' uses the default namespace (empty name).
struct NamespaceOptions {
  // Messages kept per room for recovery and History. 0 disables history (and
  // therefore recovery: every resume reports recovered = false).
  size_t history_size = 100;
  // Messages older than this leave history. Bounds memory held by idle rooms.
  absl::Duration history_ttl = absl::Minutes(5);
  // Whether members are tracked (Presence, PresenceStats).
  bool presence = true;
  // Whether JOIN/LEAVE events are sent to the room's subscribers (needs
  // presence). Turn off for large rooms: N members joining send N²/2 events.
  bool join_leave = true;
  // Whether browser clients (through the edge) may publish. Backends always may.
  bool client_publish = true;
};

struct EngineOptions {
  // Options of the default namespace and of each named one. A room in a
  // namespace that is not listed is refused (INVALID_ARGUMENT).
  NamespaceOptions default_namespace;
  absl::flat_hash_map<std::string, NamespaceOptions> namespaces;
  // Longest room name, in bytes, namespace included.
  size_t max_room_name_bytes = 200;
  // Largest payload accepted, in bytes. Keeps one message from monopolizing
  // queues and history.
  size_t max_payload_bytes = 64 * 1024;
  // Most rooms that may exist at once; past it new rooms are refused with
  // RESOURCE_EXHAUSTED so a client cannot exhaust memory by naming rooms.
  size_t max_rooms = 1'000'000;
  // Cap on History.limit (and its default when the request says 0).
  uint32_t max_history_limit = 1000;
  // Largest ClientInfo.info accepted, in serialized bytes.
  size_t max_client_info_bytes = 4096;
  // Longest ClientInfo.client_id and user_id, in bytes. They are map keys
  // (presence, Disconnect) and travel with every message a client publishes.
  size_t max_client_id_bytes = 256;
};

// Limits of one outbound stream queue (a Subscribe stream or an edge link).
// When either is exceeded the stream ends with RESOURCE_EXHAUSTED
// ("slow consumer"); the subscriber resumes from its last position.
struct QueueLimits {
  // Room for a full resume: max_rooms_per_subscribe (100) rooms each
  // replaying a default history (100 messages) is 10,000 events.
  size_t max_events = 50'000;
  size_t max_bytes = 8 * 1024 * 1024;
};

struct CoreOptions {
  // host:port to listen on; port 0 picks a free port (the bound address is
  // printed at start).
  std::string listen = "127.0.0.1:50051";
  // Which Broker keeps the rooms (broker_factory.h): "memory" (embedded) or
  // "nats" (NATS JetStream shared by every core node, docs/cluster.md).
  std::string broker = "memory";
  // Names this node in logs, EdgeWelcome and (nats) the NATS connection.
  // main.cc defaults it to host name + pid with the nats broker, so that the
  // nodes of a cluster are told apart.
  std::string node_name = "core";
  // NATS server URL(s), comma-separated (nats broker).
  std::string nats_url = "nats://127.0.0.1:4222";
  // Longest a JetStream request may take before the operation fails with
  // DEADLINE_EXCEEDED (nats broker): bounds how long a publish can hang.
  absl::Duration nats_request_timeout = absl::Seconds(2);
  EngineOptions engine;
  // A Subscribe stream serves one backend; a small queue bounds its memory.
  QueueLimits subscribe_queue;
  // An edge link carries every client of an edge: give it room for bursts.
  QueueLimits edge_queue = {.max_events = 200'000, .max_bytes = 64 * 1024 * 1024};
  // Most rooms in one Subscribe request.
  size_t max_rooms_per_subscribe = 100;
  // Unacknowledged PublishStream requests before the core stops reading
  // (flow control, not an error).
  size_t max_pending_acks = 1024;
  // How often expired history and empty rooms are swept (memory broker).
  absl::Duration sweep_interval = absl::Seconds(1);
  // Most rooms one sweep pass visits (memory broker): bounds the work and the
  // time the room registry is locked per pass; the next pass continues
  // where this one stopped.
  size_t sweep_rooms_per_pass = 10'000;
  // When set, the core publishes its Stats as JSON to this room every
  // stats_interval (the demo dashboard shows them).
  std::string stats_room;
  absl::Duration stats_interval = absl::Seconds(1);
  // Most room events batched into one CoreToEdge write: keeps one gRPC
  // message (and the edge's work per read) bounded.
  size_t max_events_per_edge_batch = 512;
  // gRPC keepalive: ping a connection idle for keepalive_time, drop it when
  // the ping gets no answer within keepalive_timeout (finds dead peers).
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // Clients (edges, the C++ client) may ping this often without being told
  // "too many pings"; must not exceed the clients' own keepalive interval.
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  // Bytes a request may carry beyond max_payload_bytes and
  // max_client_info_bytes (room name, ids, framing): together they are the
  // largest gRPC message the core accepts.
  size_t max_envelope_bytes = 64 * 1024;
  // Graceful shutdown: how long streams get to finish before being cancelled.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // gRPC server reflection: off unless asked for, since it advertises every
  // service (EdgeLink included) to whoever reaches the port.
  bool reflection = false;
};

// Parses namespace definitions of the form
//   "chat:history_size=100,history_ttl=5m,presence=true,client_publish=true;feed:history_size=0"
// Unspecified fields keep the defaults of `base`.
absl::StatusOr<absl::flat_hash_map<std::string, NamespaceOptions>> ParseNamespaces(
    absl::string_view spec, const NamespaceOptions& base);

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_OPTIONS_H_
