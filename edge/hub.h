// Hub: the edge's local rooms. Knows which local clients are in which room
// and fans each room event out to them. It holds no room logic: ordering,
// history and presence live in the core.
//
// Threads: the edge runs one io_context per I/O thread ("shard"); every
// client lives on one shard and is only touched on that shard's thread. The
// core link hands the hub a batch of room events once; the hub encodes each
// event once (shared by every recipient) and posts the batch to each shard
// once, so fan-out crosses threads once per thread, never once per member.
#ifndef ROOMCAST_EDGE_HUB_H_
#define ROOMCAST_EDGE_HUB_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/io_context.hpp"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::edge {

// A room event encoded for browsers, once per edge.
struct Frame {
  std::string room;
  // Set for messages (resume cursors advance with them); empty for presence.
  v1::Position position;
  bool is_message = false;
  // The ServerFrame as batch entries (edge/codec.h, "Batches"), shared by
  // every recipient: '\n' + canonical JSON (text WebSocket messages, SSE
  // data), and varint length + serialized bytes (binary WebSocket messages;
  // empty when no binary client was connected when the event arrived).
  std::string json_entry;
  std::string protobuf_entry;

  // For messages, while SSE streams are connected: the whole SSE event for
  // a stream on this one room, its id: line the resume cursor
  // "room epoch offset" (streams on several rooms build their own).
  std::string sse_event;

  // The canonical JSON text alone.
  absl::string_view json() const { return absl::string_view(json_entry).substr(1); }
};
using FramePtr = std::shared_ptr<const Frame>;

// Live gauges and counters, exported on /metrics.
struct EdgeCounters {
  std::atomic<int64_t> ws_connections{0};
  std::atomic<int64_t> sse_connections{0};
  std::atomic<int64_t> binary_clients{0};
  std::atomic<int64_t> memberships{0};
  std::atomic<int64_t> queued_bytes{0};
  std::atomic<uint64_t> frames_delivered_total{0};
  std::atomic<uint64_t> slow_consumer_total{0};
  std::atomic<uint64_t> bad_requests_total{0};
  std::atomic<uint64_t> refused_total{0};
  std::atomic<uint64_t> connections_total{0};

  int64_t connections() const { return ws_connections.load() + sse_connections.load(); }
};

// A browser connection as the hub sees it. Implemented by the WebSocket and
// SSE sessions. All virtual methods run on the client's shard thread and
// must not change hub membership synchronously (defer a close with post).
class Client {
 public:
  Client(std::string id, size_t shard) : id_(std::move(id)), shard_(shard) {}
  virtual ~Client() = default;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& id() const { return id_; }
  size_t shard() const { return shard_; }

  // A room event for a room this client joined.
  virtual void Deliver(const FramePtr& frame) = 0;
  // The server ends the connection (core disconnect, link lost, shutdown).
  virtual void Close(v1::DisconnectCode code, std::string reason) = 0;

 private:
  const std::string id_;
  const size_t shard_;
};

class Hub {
 public:
  // One io_context per shard; they must outlive the hub.
  explicit Hub(std::vector<boost::asio::io_context*> shards);
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  size_t num_shards() const { return shards_.size(); }
  // Round-robin shard for a new connection.
  size_t PickShard();
  boost::asio::io_context& context(size_t shard) { return *shards_[shard]->context; }
  EdgeCounters& counters() { return counters_; }

  // A fresh client id, unique across edges ("<random>-<n>").
  std::string NewClientId();

  // The registry of live clients (for core disconnects and CloseAll).
  // Thread-safe.
  void Register(const std::shared_ptr<Client>& client);
  void Unregister(const Client& client);

  // Local membership; on the client's shard thread. Leave is idempotent.
  void Join(Client& client, const std::string& room);
  void Leave(Client& client, const std::string& room);

  // From the core link, any thread.
  void OnEvents(const v1::EdgeEvents& events);
  void OnDisconnect(const v1::DisconnectClient& disconnect);
  // Closes every client (core link lost, shutdown).
  void CloseAll(v1::DisconnectCode code, const std::string& reason);

 private:
  struct Shard {
    boost::asio::io_context* context;
    // Touched only on this shard's thread.
    absl::flat_hash_map<std::string, absl::flat_hash_set<Client*>> rooms;
  };

  void Dispatch(Shard& shard, const std::vector<FramePtr>& frames);
  std::shared_ptr<Client> Find(absl::string_view id);

  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<size_t> next_shard_{0};
  std::atomic<uint64_t> next_client_{1};
  const std::string id_prefix_;
  EdgeCounters counters_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::weak_ptr<Client>> clients_ ABSL_GUARDED_BY(mu_);
};

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_HUB_H_
