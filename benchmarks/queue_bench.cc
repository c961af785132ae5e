// Micro-benchmark of the core's outbound queue, core/bounded_queue.h
// (BoundedQueue), the one QueuedWriter uses, without gRPC.
//
// BM_PublishIntoQueues: MemoryBroker::Publish into N subscribers that each
// push into a BoundedQueue under a mutex and bump process-wide gauges, as
// QueuedWriter::Enqueue does for a Rooms.Subscribe stream (with a write in
// flight, the common case under load, nothing else happens). The writer side
// takes entries as QueuedWriter::MaybeWriteLocked / RoomSubscription do: one
// per write, each a slice over the event's shared SubscribeResponse bytes
// (built once per event, RoomEvent::SubscribeFrame).
// BM_BoundedQueuePushTake: the queue alone, no lock.
//
// No I/O. Never asserts a speed; see benchmarks/README.md.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "core/bounded_queue.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/memory_broker.h"
#include "core/options.h"
#include "core/policy.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::core {
namespace {

using Item = std::variant<RoomEventPtr, v1::Recovery>;

struct Gauges {
  std::atomic<int64_t> events{0};
  std::atomic<int64_t> bytes{0};
};

class QueueingSubscriber final : public Subscriber {
 public:
  QueueingSubscriber(QueueLimits limits, Gauges* gauges)
      : gauges_(gauges), queue_(limits.max_events, limits.max_bytes) {}

  void OnEvent(const RoomEventPtr& event) override {
    const size_t bytes = event->QueuedBytes();
    absl::MutexLock lock(&mu_);
    if (overflowed_) return;
    if (queue_.Push(event, bytes) == BoundedQueue<Item>::PushResult::kOverflow) {
      overflowed_ = true;  // The real writer drops the queue and finishes "slow consumer".
      return;
    }
    gauges_->events.fetch_add(1, std::memory_order_relaxed);
    gauges_->bytes.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  }

  // One take per write, as the Subscribe writer does. Returns the events taken.
  size_t DrainAll() {
    absl::MutexLock lock(&mu_);
    size_t taken = 0;
    while (!queue_.empty()) {
      BoundedQueue<Item>::Removed removed = queue_.TakeBatch(1, [](Item& item) {
        if (auto* event = std::get_if<RoomEventPtr>(&item)) {
          benchmark::DoNotOptimize((*event)->SubscribeFrame().data());
        }
        return true;
      });
      gauges_->events.fetch_sub(static_cast<int64_t>(removed.items), std::memory_order_relaxed);
      gauges_->bytes.fetch_sub(static_cast<int64_t>(removed.bytes), std::memory_order_relaxed);
      taken += removed.items;
    }
    return taken;
  }

  bool overflowed() {
    absl::MutexLock lock(&mu_);
    return overflowed_;
  }

 private:
  Gauges* const gauges_;
  absl::Mutex mu_;
  BoundedQueue<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
};

// Publish into N queueing subscribers; every `batch` publishes each queue is
// drained (the writer catching up). take=0: the drain runs with the timer
// paused (enqueue cost only); take=1: the drain is timed.
void BM_PublishIntoQueues(benchmark::State& state) {
  const int num_subscribers = static_cast<int>(state.range(0));
  const bool timed_take = state.range(1) != 0;
  constexpr int kBatch = 64;
  EngineOptions options;
  options.default_namespace.presence = false;
  Policy policy(options);
  MemoryBroker broker(&policy, Clock::Real());
  Gauges gauges;
  std::vector<std::unique_ptr<QueueingSubscriber>> subscribers;
  for (int i = 0; i < num_subscribers; ++i) {
    subscribers.push_back(std::make_unique<QueueingSubscriber>(QueueLimits{}, &gauges));
    absl::Status status;
    broker.Join(
        JoinArgs{"bench", std::nullopt, std::nullopt}, subscribers.back().get(),
        [](const JoinResult&) {}, [&status](absl::Status s) { status = std::move(s); });
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      return;
    }
  }
  const std::string payload(100, 'x');
  int pending = 0;
  for (auto _ : state) {
    broker.Publish(PublishArgs{"bench", payload, std::nullopt},
                   [](absl::StatusOr<v1::Position> p) { benchmark::DoNotOptimize(p); });
    if (++pending == kBatch) {
      pending = 0;
      if (!timed_take) state.PauseTiming();
      for (auto& s : subscribers) s->DrainAll();
      if (!timed_take) state.ResumeTiming();
    }
  }
  for (auto& s : subscribers) {
    if (s->overflowed()) state.SkipWithError("a queue overflowed");
    s->DrainAll();
  }
  state.SetItemsProcessed(state.iterations() * num_subscribers);  // deliveries
  state.counters["msgs/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  for (const auto& s : subscribers) {
    broker.Leave(LeaveArgs{"bench", ""}, s.get(), [](absl::Status) {});
  }
}
BENCHMARK(BM_PublishIntoQueues)
    ->ArgNames({"subscribers", "take"})
    ->ArgsProduct({{1, 100, 10'000}, {0, 1}});

// The queue alone: push 64 shared events, then take them in one batch (the
// edge link's coalescing take). No lock, no broker.
void BM_BoundedQueuePushTake(benchmark::State& state) {
  BoundedQueue<Item> queue(QueueLimits{}.max_events, QueueLimits{}.max_bytes);
  v1::RoomEvent proto;
  proto.mutable_message()->set_room("bench");
  proto.mutable_message()->set_data(std::string(100, 'x'));
  proto.mutable_message()->mutable_position()->set_epoch("0123456789abcdef");
  proto.mutable_message()->mutable_position()->set_offset(123456);
  const RoomEventPtr shared = MakeRoomEvent(std::move(proto));
  const size_t bytes = shared->QueuedBytes();
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) {
      if (queue.Push(shared, bytes) != BoundedQueue<Item>::PushResult::kQueued) {
        state.SkipWithError("overflow");
        return;
      }
    }
    auto removed = queue.TakeBatch(64, [](Item& item) {
      benchmark::DoNotOptimize(item);
      return true;
    });
    benchmark::DoNotOptimize(removed);
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_BoundedQueuePushTake);

}  // namespace
}  // namespace roomcast::core
