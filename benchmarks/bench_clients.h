// ClientPool: the subscribing side of roomcast-bench. Opens N browser-like
// connections to an edge (WebSocket with JSON text frames, WebSocket with the
// binary "roomcast.v1.proto" subprotocol, or SSE), N Rooms.Subscribe
// streams straight to the core, N connections to another WebSocket server
// (generic target) or to nats-server's WebSocket listener, each joined to one
// room,
// spread over `threads` client threads (one io_context each). Every received
// message is matched to its room position (loss, duplicates, reordering)
// and, when its payload carries {"t": NowNs() at publish}, to a latency.
//
// The header has no Beast types: Beast lives in bench_clients.cc only (it is
// expensive to compile).
//
// Thread-safety: the public methods are called from one coordinating thread.
// Each subscriber and its counters belong to one client thread; the pool
// reads them by posting work onto those threads and waiting for it.
#ifndef ROOMCAST_BENCHMARKS_BENCH_CLIENTS_H_
#define ROOMCAST_BENCHMARKS_BENCH_CLIENTS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "benchmarks/bench_stats.h"

namespace roomcast::bench {

enum class Transport {
  kWebSocketJson,    // Edge /ws, JSON text frames.
  kWebSocketBinary,  // Edge /ws, subprotocol roomcast.v1.proto.
  kSse,              // Edge /sse?room=R.
  kGrpc,             // Core Rooms.Subscribe, no edge.
  kGenericWs,        // Any WebSocket server, described by a GenericTarget.
  kNatsWebSocket,    // nats-server's WebSocket listener (bench_nats.cc); path in generic.path.
};

// How to drive a WebSocket server that is not roomcast (generic target mode).
// Payloads then carry "bench_t" (send time, NowNs) and "bench_seq" (1, 2, ...
// per room): loss, duplicates and reordering are counted by bench_seq.
struct GenericTarget {
  // The request target of the upgrade, e.g. "/ws" or "/socket?x=1".
  std::string path = "/";
  // Text frame sent after the upgrade; "{room}" is replaced by the room name.
  std::string subscribe_frame;
  // A text frame containing this is a delivered message; its "bench_seq" and
  // "bench_t" are read wherever they appear in it.
  std::string message_match;
  // If set, a frame containing this confirms the subscription; if empty,
  // the subscription counts as confirmed once the frame is written.
  std::string joined_match;
};

struct ClientOptions {
  std::string host = "127.0.0.1";
  std::string port = "8080";
  Transport transport = Transport::kWebSocketJson;
  // The core's gRPC address (kGrpc only).
  std::string core = "127.0.0.1:50051";
  // kGenericWs only.
  GenericTarget generic;
  int threads = 1;
  // Connections in the TCP-connect / upgrade / join phase at once: a burst of
  // thousands of SYNs would overflow the edge's accept backlog and measure
  // kernel retransmits (1 s, 3 s...) instead of the edge.
  int max_connecting = 200;
  // A connection not joined by then counts as failed.
  absl::Duration join_timeout = absl::Seconds(20);
};

class ClientPool {
 public:
  explicit ClientPool(ClientOptions options);
  ~ClientPool();  // Closes every connection and joins the threads.
  ClientPool(const ClientPool&) = delete;
  ClientPool& operator=(const ClientPool&) = delete;

  // Opens `count` more subscribers; the i-th new one (counting from every
  // subscriber opened before) joins rooms[i % rooms.size()]. Blocks until
  // each has joined or failed, or `timeout` passed (the rest count as failed
  // and are closed).
  ConnectReport Connect(int count, const std::vector<std::string>& rooms, absl::Duration timeout);

  // Starts a step: forgets counters, and makes every subscriber ignore
  // offsets <= base[room index] (published before the step). Latency is
  // recorded for messages whose "t" is >= measure_from_ns.
  void BeginStep(const std::vector<uint64_t>& base, int64_t measure_from_ns);

  // Open subscribers that have not yet received offset last[room index]
  // (those with nothing to wait for, last <= their join position, do not count).
  int CountBehind(const std::vector<uint64_t>& last);

  // Ends a step: what every subscriber open at BeginStep saw of the offsets
  // [first[r], last[r]] of its room r (an empty range when last < first).
  DeliveryTally EndStep(const std::vector<uint64_t>& first, const std::vector<uint64_t>& last);

  // Churn: closes `count` open subscribers (oldest first, spread over the
  // threads) and starts `count` new ones, without waiting for them. Within a
  // step, closed ones are left out of the loss count and new ones are owed
  // every offset after the position their join reported.
  void Replace(int count, const std::vector<std::string>& rooms);
  // The connect report of everything Replace started since the last call:
  // waits up to `timeout` for the pending ones to join or fail.
  ConnectReport TakeReplaceReport(absl::Duration timeout);

  // Subscribers open now.
  int open() const;

  // Closes every connection (the sockets are shut, not handshaken: the edge
  // must cope with peers that vanish).
  void CloseAll();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Posts bodies to one http:// URL over a keep-alive HTTP/1.1 connection, one
// request at a time (reconnecting once when the connection dropped): the
// generic target mode's publisher. Not thread-safe; use from one thread.
class HttpPoster {
 public:
  HttpPoster(std::string host, std::string port, std::string path);
  ~HttpPoster();
  HttpPoster(const HttpPoster&) = delete;
  HttpPoster& operator=(const HttpPoster&) = delete;

  // The response status (200, 503, ...), or 0 with `error` set when no
  // response came (connection refused, timeout).
  int Post(const std::string& body, std::string* error);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The number after `"key":` in `text` (integer or JSON number), if any.
std::optional<int64_t> NumberField(std::string_view text, std::string_view key);

}  // namespace roomcast::bench

#endif  // ROOMCAST_BENCHMARKS_BENCH_CLIENTS_H_
