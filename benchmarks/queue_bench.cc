// Micro-benchmark of the core's subscriber queue, without gRPC.
//
// core/queued_writer.h (QueuedWriter) is a template over a gRPC reactor, so
// it cannot be instantiated here. QueueingSubscriber below copies what its
// Enqueue / TakeNext do for a Rooms.Subscribe stream (rooms_service.cc):
// under an absl::Mutex, check the event / byte limits, push an
// Entry{variant<RoomEventPtr, Recovery>, bytes} onto a std::deque, bump the
// process-wide gauges; with a write in flight (the common case under load)
// nothing else happens. The writer side pops an entry and copies its message
// into a SubscribeResponse (TakeNext) — the copy the real reactor makes
// before StartWrite. If QueuedWriter changes, this model has to follow.
//
// No I/O. Never asserts a speed; see benchmarks/README.md.
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/memory_broker.h"
#include "core/options.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::core {
namespace {

struct Gauges {
  std::atomic<int64_t> events{0};
  std::atomic<int64_t> bytes{0};
};

class QueueingSubscriber final : public Subscriber {
 public:
  using Item = std::variant<RoomEventPtr, v1::Recovery>;
  struct Entry {
    Item item;
    size_t bytes;
  };

  QueueingSubscriber(QueueLimits limits, Gauges* gauges) : limits_(limits), gauges_(gauges) {}

  // As SubscribeReactor::OnEvent -> QueuedWriter::Enqueue, with a write in flight.
  void OnEvent(const RoomEventPtr& event) override {
    const size_t bytes = 64 + event->message().room().size() + event->message().data().size();
    absl::MutexLock lock(&mu_);
    if (overflowed_) return;
    if (queue_.size() + 1 > limits_.max_events || queued_bytes_ + bytes > limits_.max_bytes) {
      overflowed_ = true;  // The real writer drops the queue and finishes "slow consumer".
      return;
    }
    queue_.push_back(Entry{event, bytes});
    queued_bytes_ += bytes;
    gauges_->events.fetch_add(1, std::memory_order_relaxed);
    gauges_->bytes.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  }

  // As OnWriteDone -> MaybeWriteLocked -> TakeNext, once per queued event.
  // Returns the events taken.
  size_t DrainAll(v1::SubscribeResponse& out) {
    absl::MutexLock lock(&mu_);
    size_t taken = 0;
    while (!queue_.empty()) {
      out.Clear();
      Entry e = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= e.bytes;
      gauges_->events.fetch_sub(1, std::memory_order_relaxed);
      gauges_->bytes.fetch_sub(static_cast<int64_t>(e.bytes), std::memory_order_relaxed);
      if (auto* event = std::get_if<RoomEventPtr>(&e.item))
        *out.mutable_message() = (*event)->message();
      benchmark::DoNotOptimize(out);
      ++taken;
    }
    return taken;
  }

  bool overflowed() const { return overflowed_; }

 private:
  const QueueLimits limits_;
  Gauges* const gauges_;
  absl::Mutex mu_;
  std::deque<Entry> queue_;
  size_t queued_bytes_ = 0;
  bool overflowed_ = false;
};

// Publish into N queueing subscribers; every `batch` publishes each queue is
// drained (the writer catching up). take=0: the drain runs with the timer
// paused (enqueue cost only); take=1: the drain (TakeNext copies) is timed.
void BM_PublishIntoQueues(benchmark::State& state) {
  const int num_subscribers = static_cast<int>(state.range(0));
  const bool timed_take = state.range(1) != 0;
  constexpr int kBatch = 64;
  EngineOptions options;
  options.default_namespace.presence = false;
  MemoryBroker broker(options, Clock::Real());
  Gauges gauges;
  std::vector<std::unique_ptr<QueueingSubscriber>> subscribers;
  for (int i = 0; i < num_subscribers; ++i) {
    subscribers.push_back(std::make_unique<QueueingSubscriber>(QueueLimits{}, &gauges));
    absl::Status status =
        broker.Join("bench", nullptr, subscribers.back().get(), nullptr, [](const JoinResult&) {});
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      return;
    }
  }
  const std::string payload(100, 'x');
  v1::SubscribeResponse out;
  int pending = 0;
  for (auto _ : state) {
    auto position = broker.Publish("bench", payload, nullptr);
    benchmark::DoNotOptimize(position);
    if (++pending == kBatch) {
      pending = 0;
      if (!timed_take) state.PauseTiming();
      for (auto& s : subscribers) s->DrainAll(out);
      if (!timed_take) state.ResumeTiming();
    }
  }
  for (auto& s : subscribers) {
    if (s->overflowed()) state.SkipWithError("a queue overflowed");
    s->DrainAll(out);
  }
  state.SetItemsProcessed(state.iterations() * num_subscribers);  // deliveries
  state.counters["msgs/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  for (const auto& s : subscribers) broker.Leave("bench", s.get(), "");
}
BENCHMARK(BM_PublishIntoQueues)
    ->ArgNames({"subscribers", "take"})
    ->ArgsProduct({{1, 100, 10'000}, {0, 1}});

// One queue on its own: enqueue 64 events, then take them (no broker).
void BM_QueueEnqueueTake(benchmark::State& state) {
  Gauges gauges;
  QueueingSubscriber queue(QueueLimits{}, &gauges);
  auto event = std::make_shared<v1::RoomEvent>();
  event->mutable_message()->set_room("bench");
  event->mutable_message()->set_data(std::string(100, 'x'));
  event->mutable_message()->mutable_position()->set_epoch("0123456789abcdef");
  event->mutable_message()->mutable_position()->set_offset(123456);
  const RoomEventPtr shared = event;
  v1::SubscribeResponse out;
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) queue.OnEvent(shared);
    benchmark::DoNotOptimize(queue.DrainAll(out));
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_QueueEnqueueTake);

}  // namespace
}  // namespace roomcast::core
