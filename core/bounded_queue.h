// BoundedQueue: a FIFO of items with a count limit and a byte limit, the
// outbound queue of one stream (QueuedWriter) without any of its I/O.
//
// Ownership: the queue owns its items. Each item is pushed with the number of
// bytes it stands for (an estimate the caller chooses); the queue only sums
// them. A push that would exceed either limit is refused with kOverflow and
// the item is dropped; what is already queued stays (the caller decides what
// an overflow means: QueuedWriter ends the stream as a slow consumer).
//
// Threads: none inside, no locks. The owner serializes every call (QueuedWriter
// holds its mutex around them). Errors: only the push result; no exceptions
// beyond allocation failure.
#ifndef ROOMCAST_CORE_BOUNDED_QUEUE_H_
#define ROOMCAST_CORE_BOUNDED_QUEUE_H_

#include <cstddef>
#include <deque>
#include <utility>

namespace roomcast::core {

template <class Item>
class BoundedQueue {
 public:
  enum class PushResult { kQueued, kOverflow };

  // What a take or a clear removed.
  struct Removed {
    size_t items = 0;
    size_t bytes = 0;
  };

  BoundedQueue(size_t max_items, size_t max_bytes) : max_items_(max_items), max_bytes_(max_bytes) {}
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Appends `item`, which stands for `bytes`, unless that would take the
  // queue past max_items or max_bytes.
  PushResult Push(Item item, size_t bytes) {
    if (entries_.size() + 1 > max_items_ || bytes_ + bytes > max_bytes_) {
      return PushResult::kOverflow;
    }
    entries_.push_back(Entry{std::move(item), bytes});
    bytes_ += bytes;
    return PushResult::kQueued;
  }

  // Hands front items to `take(Item&)` one by one, at most `max_items` of
  // them, until `take` returns false: that item stays queued (untouched, if
  // `take` left it so). Items `take` accepted are removed; it may move from
  // them.
  template <class Take>
  Removed TakeBatch(size_t max_items, Take&& take) {
    Removed removed;
    while (!entries_.empty() && removed.items < max_items) {
      Entry& front = entries_.front();
      if (!take(front.item)) break;
      removed.items += 1;
      removed.bytes += front.bytes;
      bytes_ -= front.bytes;
      entries_.pop_front();
    }
    return removed;
  }

  // The front item; the queue must not be empty.
  Item& front() { return entries_.front().item; }

  // Removes and returns the front item; the queue must not be empty.
  Item PopFront() {
    Entry e = std::move(entries_.front());
    entries_.pop_front();
    bytes_ -= e.bytes;
    return std::move(e.item);
  }

  Removed Clear() {
    Removed removed{entries_.size(), bytes_};
    entries_.clear();
    bytes_ = 0;
    return removed;
  }

  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  size_t bytes() const { return bytes_; }
  size_t max_items() const { return max_items_; }
  size_t max_bytes() const { return max_bytes_; }

 private:
  struct Entry {
    Item item;
    size_t bytes;
  };

  const size_t max_items_;
  const size_t max_bytes_;
  std::deque<Entry> entries_;
  size_t bytes_ = 0;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_BOUNDED_QUEUE_H_
