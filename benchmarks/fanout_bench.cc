// Micro-benchmark of the engine's hot path: MemoryBroker::Publish to one room
// with 1 / 100 / 10,000 subscribers. The subscribers are fakes that only count
// (the cheapest possible OnEvent), so the numbers are the broker's own cost:
// validating the name, building the shared event once, appending it to
// history and calling OnEvent per subscriber under the room lock.
//
// No I/O, no gRPC. Never asserts a speed; see benchmarks/README.md.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "benchmark/benchmark.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/memory_broker.h"
#include "core/options.h"
#include "core/policy.h"

namespace roomcast::core {
namespace {

// Counts events; keeps nothing (a real subscriber copies the pointer into
// its queue, which CopyingSubscriber models).
class CountingSubscriber final : public Subscriber {
 public:
  void OnEvent(const RoomEventPtr& event) override { ++events_; }
  uint64_t events() const { return events_; }

 private:
  uint64_t events_ = 0;
};

// Holds on to the last event like a queueing subscriber would (one
// shared_ptr copy per recipient: the atomic reference count is the cost).
class CopyingSubscriber final : public Subscriber {
 public:
  void OnEvent(const RoomEventPtr& event) override { last_ = event; }

 private:
  RoomEventPtr last_;
};

template <class Fake>
void BM_PublishFanout(benchmark::State& state) {
  const int num_subscribers = static_cast<int>(state.range(0));
  const size_t payload_bytes = static_cast<size_t>(state.range(1));
  EngineOptions options;
  options.default_namespace.presence = false;
  Policy policy(options);
  MemoryBroker broker(&policy, Clock::Real());
  std::vector<std::unique_ptr<Fake>> subscribers;
  subscribers.reserve(num_subscribers);
  for (int i = 0; i < num_subscribers; ++i) {
    subscribers.push_back(std::make_unique<Fake>());
    absl::Status status;
    broker.Join(
        JoinArgs{"bench", std::nullopt, std::nullopt}, subscribers.back().get(),
        [](const JoinResult&) {}, [&status](absl::Status s) { status = std::move(s); });
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      return;
    }
  }
  const std::string payload(payload_bytes, 'x');
  for (auto _ : state) {
    broker.Publish(PublishArgs{"bench", payload, std::nullopt},
                   [](absl::StatusOr<v1::Position> p) { benchmark::DoNotOptimize(p); });
  }
  state.SetItemsProcessed(state.iterations() * num_subscribers);  // deliveries
  state.counters["msgs/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  for (const auto& s : subscribers) {
    broker.Leave(LeaveArgs{"bench", ""}, s.get(), [](absl::Status) {});
  }
}

BENCHMARK_TEMPLATE(BM_PublishFanout, CountingSubscriber)
    ->ArgNames({"subscribers", "payload"})
    ->ArgsProduct({{1, 100, 10'000}, {64, 1024}});
BENCHMARK_TEMPLATE(BM_PublishFanout, CopyingSubscriber)
    ->ArgNames({"subscribers", "payload"})
    ->ArgsProduct({{1, 100, 10'000}, {64}});

}  // namespace
}  // namespace roomcast::core
