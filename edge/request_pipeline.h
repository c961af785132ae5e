// The request side of one WebSocket connection, without sockets: which
// requests may go to the core (rate limit, room bookkeeping), when the
// connection has misbehaved enough to be closed (bad requests per window),
// and the order replies leave in (request order, whatever order the core and
// local checks answer in).
//
// Threads: not thread-safe; one instance per session, used on its shard
// thread only. Time is passed in (SteadyTime), so tests use a fake clock.
// Errors are returned as absl::Status for the session to send as error
// replies; nothing here closes or logs.
#ifndef ROOMCAST_EDGE_REQUEST_PIPELINE_H_
#define ROOMCAST_EDGE_REQUEST_PIPELINE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "edge/options.h"
#include "edge/write_scheduler.h"

namespace roomcast::edge {

// A token bucket: `rate` tokens per second, at most `burst`; starts full.
class RateLimiter {
 public:
  RateLimiter(double rate, double burst, SteadyTime now)
      : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}
  // Takes a token at `now`; false when none is left.
  bool Allow(SteadyTime now);

 private:
  const double rate_;
  const double burst_;
  double tokens_;
  SteadyTime last_;
};

// Counts bad requests (malformed or rate-limited) in fixed windows.
class BadRequestCounter {
 public:
  BadRequestCounter(int max_per_window, absl::Duration window, SteadyTime now)
      : max_per_window_(max_per_window),
        window_(absl::ToChronoNanoseconds(window)),
        window_start_(now) {}
  // Counts one at `now`; true once the window holds more than the limit.
  bool Count(SteadyTime now);

 private:
  const int max_per_window_;
  const std::chrono::steady_clock::duration window_;
  SteadyTime window_start_;
  int count_ = 0;
};

// Replies in request order. Every request takes a slot when it arrives;
// a reply decided at once (ping, local errors) fills its slot at once, one
// from the core when it comes; ready slots leave in order, and a reply waits
// behind earlier requests still at the core.
class ReplyOrder {
 public:
  using Slot = uint64_t;

  // A slot for a request whose reply comes later.
  Slot Reserve();
  // The frames (encoded ServerFrames, possibly none) answering `slot`.
  void Fill(Slot slot, std::vector<std::string> frames);
  // A reply decided now: takes a slot and fills it.
  void AddReady(std::string frame);
  // Removes and returns the frames of the leading filled slots, in order.
  std::vector<std::string> TakeReady();
  // Forgets every slot (the connection is being closed).
  void Clear() { slots_.clear(); }

  size_t pending() const { return slots_.size(); }

 private:
  struct Entry {
    Slot slot;
    std::optional<std::vector<std::string>> frames;  // nullopt while at the core.
  };
  std::vector<Entry> slots_;  // In request order.
  Slot next_slot_ = 0;
};

// The rooms of one connection: joined, and joins still at the core.
class RoomSet {
 public:
  explicit RoomSet(size_t max_rooms) : max_rooms_(max_rooms) {}

  // Checks a join and, if it may go to the core, marks it pending:
  // ALREADY_EXISTS when joined or joining, RESOURCE_EXHAUSTED past
  // max_rooms (joined + joining).
  absl::Status BeginJoin(const std::string& room);
  // The core answered a join (either way): no longer pending.
  void EndJoin(const std::string& room) { joining_.erase(room); }
  // The join succeeded.
  void AddJoined(const std::string& room) { joined_.insert(room); }
  // Leaves `room`; true when it was joined.
  bool Leave(const std::string& room) { return joined_.erase(room) > 0; }
  // Forgets every room and returns the joined ones.
  std::vector<std::string> TakeJoined();

  size_t size() const { return joined_.size() + joining_.size(); }

 private:
  const size_t max_rooms_;
  absl::flat_hash_set<std::string> joined_;
  absl::flat_hash_set<std::string> joining_;
};

// Whether a reply of `frame_bytes` may be queued on a connection with
// `queued_bytes` waiting: replies are paced by the client's own requests,
// not by max_queued_bytes, but a client that keeps asking without reading
// would grow its queue without end, so past reply_queue_factor ×
// max_queued_bytes it is a slow consumer. A reply larger than that alone
// still goes out when nothing waits.
bool ReplyFits(const EdgeOptions& options, size_t queued_bytes, size_t frame_bytes);

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_REQUEST_PIPELINE_H_
