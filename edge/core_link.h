// CoreLink: the edge's one EdgeLink stream to the core, reconnected with
// exponential backoff and full jitter whenever it ends. Each connection is a
// "generation"; a client belongs to the generation it was announced on, and
// when that generation ends the edge closes all its clients (they reconnect
// and resume), so edge and core never disagree about who is connected.
//
// The outbox (messages waiting to be written to the core) is bounded by
// EdgeOptions::core_outbox_max_messages and core_outbox_max_bytes: past
// either, Request() fails at once with RESOURCE_EXHAUSTED and Send() returns
// false (the caller closes the client it was announcing), each counted in
// overflow_total(). Client disconnects are always queued: each client sends
// at most one, and dropping one would leave a ghost member at the core.
//
// Thread-safety: every public method may be called from any thread. Handler
// callbacks and reply callbacks run on gRPC threads or the link's own
// thread, in stream order; they must not block and must not call Stop().
#ifndef ROOMCAST_EDGE_CORE_LINK_H_
#define ROOMCAST_EDGE_CORE_LINK_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "edge/options.h"
#include "roomcast/v1/roomcast.grpc.pb.h"

namespace roomcast::edge {

class CoreLink {
 public:
  struct Handler {
    std::function<void(const v1::EdgeEvents&)> on_events;
    std::function<void(const v1::DisconnectClient&)> on_disconnect;
    // The link came up (true) or went down (false).
    std::function<void(bool up)> on_state;
  };
  using ReplyCallback = std::function<void(v1::EdgeReply)>;

  // Connects to options.core once started. `handler`'s callbacks may be
  // empty.
  CoreLink(const EdgeOptions& options, Handler handler);
  ~CoreLink();  // Stops.
  CoreLink(const CoreLink&) = delete;
  CoreLink& operator=(const CoreLink&) = delete;

  // Starts connecting (and reconnecting) in the background.
  void Start();
  // Ends the link without reconnecting; blocks until the stream is done.
  void Stop();

  // The current generation while the link is up, 0 while it is down.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Sends `message` on generation `generation`. False when it was dropped:
  // that generation has ended, or the outbox is full (not for
  // client_disconnected, which is always queued while the generation lives).
  bool Send(uint64_t generation, v1::EdgeToCore message);
  // Sends a request (its request_id is assigned here). `on_reply` runs
  // exactly once: with the core's reply, or with an error reply
  // (UNAVAILABLE when the generation ended or is not the current one,
  // RESOURCE_EXHAUSTED when the outbox is full, DEADLINE_EXCEEDED after
  // options.request_timeout). It may run before Request returns.
  void Request(uint64_t generation, v1::EdgeRequest request, ReplyCallback on_reply);

  // Messages refused because the outbox was full.
  uint64_t overflow_total() const { return overflow_total_.load(std::memory_order_relaxed); }

 private:
  class Stream;
  struct Pending {
    ReplyCallback callback;
    absl::Time deadline;
  };

  void Run();
  void OnWelcome(uint64_t generation);
  void OnReply(uint64_t generation, v1::EdgeReply reply);
  void OnStreamDone(uint64_t generation, const grpc::Status& status);
  // Fails every pending request (the stream ended).
  void FailPending();
  void ExpirePending();
  // Counts a message refused by the outbox bound.
  void CountOverflow(uint64_t generation);

  const EdgeOptions options_;
  const Handler handler_;
  std::unique_ptr<v1::EdgeLink::Stub> stub_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> next_request_id_{1};
  std::atomic<uint64_t> overflow_total_{0};
  // An overflow was logged and no message was queued since.
  std::atomic<bool> overflow_logged_{false};

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status stream_status_ ABSL_GUARDED_BY(mu_);  // How the last stream ended.
  uint64_t stream_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<Stream> stream_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_CORE_LINK_H_
