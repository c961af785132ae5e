// Write scheduling for one browser connection, without Asio: when the next
// write starts (WriteScheduler) and what it carries (WriteQueue). The
// WebSocket and SSE sessions drive these from their shard thread and turn
// the decisions into posts, timer waits and socket writes.
//
// The rule (EdgeOptions::write_delay, max_batch_bytes): one write in flight;
// something queued on a connection that started a write less than
// write_delay ago waits for the shard's write-delay timer, so a busy
// connection writes at most once per write_delay and each write carries
// everything queued meanwhile; a connection that was quiet that long writes
// as soon as the current handler finishes (sparse traffic gets no added
// latency); a full batch (max_batch_bytes waiting) never waits for the delay.
//
// Threads: not thread-safe; each instance belongs to one session and is
// used on its shard thread only. Time is passed in, so tests use any clock.
#ifndef ROOMCAST_EDGE_WRITE_SCHEDULER_H_
#define ROOMCAST_EDGE_WRITE_SCHEDULER_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace roomcast::edge {

using SteadyTime = std::chrono::steady_clock::time_point;

class WriteScheduler {
 public:
  // What the session does after something was queued.
  enum class Action {
    kNone,      // A write is scheduled already; it will take this too.
    kWriteNow,  // Write at once (a full batch found a write scheduled).
    kPost,      // Schedule the write after the current handler (post).
    kDelay,     // Wait for the shard's write-delay timer.
  };

  // `write_delay` 0 disables delaying; `max_batch_bytes` is a full batch.
  WriteScheduler(absl::Duration write_delay, size_t max_batch_bytes);

  // Something was queued while no write is in flight; `queued` bytes wait.
  // kPost and kDelay mean a write is now scheduled: call OnScheduledWrite()
  // when it runs.
  Action OnQueued(size_t queued, SteadyTime now);
  // The scheduled write runs (the post or the timer fired).
  void OnScheduledWrite() { scheduled_ = false; }
  // A write started at `now`.
  void OnWriteStarted(SteadyTime now) { last_write_ = now; }

  bool scheduled() const { return scheduled_; }

 private:
  const std::chrono::steady_clock::duration write_delay_;
  const size_t max_batch_bytes_;
  bool scheduled_ = false;
  // No write yet: the first one never waits.
  SteadyTime last_write_ = SteadyTime::min();
};

// The frames waiting for one WebSocket connection, as batch entries
// (edge/codec.h, "Batches") that reference bytes owned elsewhere (a room
// event encoded once for every recipient) or by the queue (a reply). A write
// takes the entries up to max_batch_bytes (at least one), copied into one
// buffer: one contiguous buffer costs less than a gather of hundreds of
// small ones. Vectors, not deques: an empty std::deque still holds ~600
// bytes, and both are short (each write empties most of the queue).
class WriteQueue {
 public:
  explicit WriteQueue(size_t max_batch_bytes) : max_batch_bytes_(max_batch_bytes) {}

  // Queues `entry`, which `owner` keeps alive.
  void Push(std::shared_ptr<const void> owner, absl::string_view entry);
  // Queues a copy of `entry`.
  void PushCopy(absl::string_view entry);

  // Starts a write: moves the next batch into the write buffer and returns
  // it. `strip_first_byte` drops the first byte of the batch (the '\n' that
  // separates JSON entries). Requires !empty() and !writing().
  absl::string_view TakeBatch(bool strip_first_byte);
  // The write finished (whatever its outcome); its buffer is released.
  void WriteDone();
  // Drops every entry not yet in flight.
  void DropPending();

  bool empty() const { return entries_.empty(); }
  bool writing() const { return writing_; }
  // Bytes queued plus bytes in flight.
  size_t queued_bytes() const { return queued_bytes_; }

 private:
  struct Entry {
    std::shared_ptr<const void> owner;
    absl::string_view bytes;  // Owned by `owner`.
  };

  const size_t max_batch_bytes_;
  std::vector<Entry> entries_;
  std::string write_buffer_;  // The batch in flight.
  bool writing_ = false;
  size_t queued_bytes_ = 0;  // entries_ + write_buffer_.
};

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_WRITE_SCHEDULER_H_
