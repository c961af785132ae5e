// QueuedWriter: the outbound half of a server streaming reactor. Keeps at
// most one write in flight; what arrives meanwhile waits in a BoundedQueue
// (bounded_queue.h) and goes out in later writes (the subclass may batch
// several queued items into one response). When the queue would exceed its
// limits the stream ends with RESOURCE_EXHAUSTED "slow consumer" and a
// machine-readable StreamEnd{SLOW_CONSUMER} detail (SlowConsumerStatus)
// instead of growing or blocking the caller: the subscriber resumes from the
// last position it received.
//
// Thread-safety: Enqueue, StartWriting and FinishOnce may be called from any
// thread, including from Subscriber::OnEvent and Join's on_joined under a
// broker lock (they never block on I/O, and gRPC never runs reactions inline
// for these reactors). Finish is called exactly once, never while a write is
// in flight.
//
// Lifetime: the reactor deletes itself once gRPC is done with it (the
// subclass's OnDone calls ReleaseStream()) and every Hold taken for a broker
// completion is gone, whichever comes last. A completion that touches the
// reactor owns a Hold, so an asynchronous broker can never complete into a
// deleted reactor.
#ifndef ROOMCAST_CORE_QUEUED_WRITER_H_
#define ROOMCAST_CORE_QUEUED_WRITER_H_

#include <atomic>
#include <cstddef>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/bounded_queue.h"
#include "core/grpc_status.h"
#include "core/options.h"
#include "grpcpp/grpcpp.h"

namespace roomcast::core {

// Process-wide gauges of what sits in outbound queues.
struct QueueGauges {
  std::atomic<int64_t> events{0};
  std::atomic<int64_t> bytes{0};
  std::atomic<uint64_t> slow_consumer_total{0};
};

template <class Reactor, class Item, class Response>
class QueuedWriter : public Reactor {
 public:
  using Queue = BoundedQueue<Item>;

  // Keeps the reactor alive while a broker completion may still touch it.
  // Move-only; taken with Retain().
  class Hold {
   public:
    explicit Hold(QueuedWriter* writer) : writer_(writer) {}
    Hold(Hold&& other) noexcept : writer_(std::exchange(other.writer_, nullptr)) {}
    Hold& operator=(Hold&&) = delete;
    Hold(const Hold&) = delete;
    ~Hold() {
      if (writer_ != nullptr) writer_->Unref();
    }

   private:
    QueuedWriter* writer_;
  };

 protected:
  QueuedWriter(QueueLimits limits, QueueGauges* gauges)
      : gauges_(gauges), queue_(limits.max_events, limits.max_bytes) {}
  ~QueuedWriter() override {
    absl::MutexLock lock(&mu_);
    DropQueued();
  }

  // Moves the next item(s) from the front of `queue` (never empty) into
  // `out`. Called with the writer's mutex held: must not block.
  virtual void TakeNext(Queue& queue, Response& out) = 0;

  Hold Retain() {
    refs_.fetch_add(1, std::memory_order_relaxed);
    return Hold(this);
  }
  // Drops the reference gRPC held (call last in OnDone).
  void ReleaseStream() { Unref(); }

  // Queues `item` (about `bytes` in size). Dropped when the stream is
  // finishing. On overflow the stream finishes with "slow consumer".
  void Enqueue(Item item, size_t bytes) {
    absl::MutexLock lock(&mu_);
    if (finish_.has_value()) return;
    if (queue_.Push(std::move(item), bytes) == Queue::PushResult::kOverflow) {
      gauges_->slow_consumer_total.fetch_add(1, std::memory_order_relaxed);
      DropQueued();
      RequestFinishLocked(SlowConsumerStatus("slow consumer: outbound queue overflowed; resume "
                                             "from the last position received"),
                          /*drain=*/false);
      return;
    }
    gauges_->events.fetch_add(1, std::memory_order_relaxed);
    gauges_->bytes.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
    MaybeWriteLocked();
  }

  // Writes are held until this is called (so a stream can finish setting up
  // before anything goes out).
  void StartWriting() {
    absl::MutexLock lock(&mu_);
    started_ = true;
    MaybeWriteLocked();
  }

  // Ends the stream with `status` once the write in flight completes; with
  // `drain`, only after everything queued has been written. Later calls are
  // ignored: the first reason wins. Nothing happens before StartWriting, so
  // a reactor cannot reach OnDone while its setup still runs.
  void FinishOnce(grpc::Status status, bool drain) {
    absl::MutexLock lock(&mu_);
    RequestFinishLocked(std::move(status), drain);
  }

  // Whether a finish was requested (the stream takes nothing more).
  bool Finishing() {
    absl::MutexLock lock(&mu_);
    return finish_.has_value() || finished_;
  }

  size_t QueuedEvents() {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {  // The peer is gone: nothing more can be written.
      DropQueued();
      RequestFinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"), false);
      // A finish requested earlier (OnCancel, slow consumer) waited for this
      // write: finish now, or the reactor never reaches OnDone.
      MaybeWriteLocked();
      return;
    }
    MaybeWriteLocked();
  }

 private:
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  void RequestFinishLocked(grpc::Status status, bool drain) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_.has_value() || finished_) return;
    finish_ = std::move(status);
    if (!drain) DropQueued();
    MaybeWriteLocked();
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || !started_ || finished_) return;
    if (!queue_.empty()) {
      in_flight_.Clear();
      const size_t items_before = queue_.size();
      const size_t bytes_before = queue_.bytes();
      TakeNext(queue_, in_flight_);
      gauges_->events.fetch_sub(static_cast<int64_t>(items_before - queue_.size()),
                                std::memory_order_relaxed);
      gauges_->bytes.fetch_sub(static_cast<int64_t>(bytes_before - queue_.bytes()),
                               std::memory_order_relaxed);
      writing_ = true;
      this->StartWrite(&in_flight_);
      return;
    }
    if (finish_.has_value()) {
      finished_ = true;
      this->Finish(*finish_);
    }
  }

  void DropQueued() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    typename Queue::Removed removed = queue_.Clear();
    gauges_->events.fetch_sub(static_cast<int64_t>(removed.items), std::memory_order_relaxed);
    gauges_->bytes.fetch_sub(static_cast<int64_t>(removed.bytes), std::memory_order_relaxed);
  }

  QueueGauges* const gauges_;
  // One reference for gRPC (until OnDone) plus one per Hold.
  std::atomic<int> refs_{1};
  absl::Mutex mu_;
  Queue queue_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> finish_ ABSL_GUARDED_BY(mu_);
  Response in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_QUEUED_WRITER_H_
