// QueuedWriter: the outbound half of a server streaming reactor. Keeps at
// most one write in flight; what arrives meanwhile waits in a bounded queue
// and goes out in later writes (the subclass may batch several queued items
// into one response). When the queue would exceed its limits the stream ends
// with RESOURCE_EXHAUSTED "slow consumer" instead of growing or blocking the
// caller: the subscriber resumes from the last position it received.
//
// Thread-safety: Enqueue, StartWriting and FinishOnce may be called from any
// thread, including from Subscriber::OnEvent under a broker lock (they never
// block on I/O, and gRPC never runs reactions inline for these reactors).
// Finish is called exactly once, never while a write is in flight.
#ifndef ROOMCAST_CORE_QUEUED_WRITER_H_
#define ROOMCAST_CORE_QUEUED_WRITER_H_

#include <atomic>
#include <cstddef>
#include <deque>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
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
  struct Entry {
    Item item;
    size_t bytes;
  };

 protected:
  QueuedWriter(QueueLimits limits, QueueGauges* gauges) : limits_(limits), gauges_(gauges) {}
  ~QueuedWriter() override {
    absl::MutexLock lock(&mu_);
    DropQueued();
  }

  // Moves the next item(s) from the front of `queue` (never empty) into
  // `out`. Called with the writer's mutex held: must not block.
  virtual void TakeNext(std::deque<Entry>& queue, Response& out) = 0;

  // Queues `item` (about `bytes` in size). Dropped when the stream is
  // finishing. On overflow the stream finishes with "slow consumer".
  void Enqueue(Item item, size_t bytes) {
    absl::MutexLock lock(&mu_);
    if (finish_.has_value()) return;
    if (queue_.size() + 1 > limits_.max_events || queued_bytes_ + bytes > limits_.max_bytes) {
      gauges_->slow_consumer_total.fetch_add(1, std::memory_order_relaxed);
      DropQueued();
      RequestFinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                       "slow consumer: outbound queue overflowed; resume from "
                                       "the last position received"),
                          /*drain=*/false);
      return;
    }
    queue_.push_back(Entry{std::move(item), bytes});
    queued_bytes_ += bytes;
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
  // a reactor cannot reach OnDone while its constructor still runs.
  void FinishOnce(grpc::Status status, bool drain) {
    absl::MutexLock lock(&mu_);
    RequestFinishLocked(std::move(status), drain);
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
      size_t before = queue_.size();
      taken_bytes_ = 0;
      TakeNext(queue_, in_flight_);  // Pops through PopFront, which sums taken_bytes_.
      size_t taken = before - queue_.size();
      queued_bytes_ -= taken_bytes_;
      gauges_->events.fetch_sub(static_cast<int64_t>(taken), std::memory_order_relaxed);
      gauges_->bytes.fetch_sub(static_cast<int64_t>(taken_bytes_), std::memory_order_relaxed);
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
    gauges_->events.fetch_sub(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
    gauges_->bytes.fetch_sub(static_cast<int64_t>(queued_bytes_), std::memory_order_relaxed);
    queue_.clear();
    queued_bytes_ = 0;
  }

 protected:
  // For TakeNext: pops the front entry, accounting for its bytes.
  Item PopFront(std::deque<Entry>& queue) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry e = std::move(queue.front());
    queue.pop_front();
    taken_bytes_ += e.bytes;
    return std::move(e.item);
  }

 private:
  const QueueLimits limits_;
  QueueGauges* const gauges_;
  absl::Mutex mu_;
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t taken_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> finish_ ABSL_GUARDED_BY(mu_);
  Response in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_QUEUED_WRITER_H_
