// Micro-benchmark of the edge's local fan-out (edge/hub.h): Hub::OnEvents
// encodes each room event once and posts the batch to each shard, where
// Dispatch hands the shared frame to every local member. The members are
// fakes that keep the frame pointer (what a session's write queue does), so
// the numbers are the hub's cost without sockets.
//
// The shard io_contexts are run on the benchmark thread (poll), so a post and
// its handler are both measured. Never asserts a speed; see README.md.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "boost/asio/io_context.hpp"
#include "edge/hub.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::edge {
namespace {

class FakeClient final : public Client {
 public:
  using Client::Client;
  void Deliver(const FramePtr& frame) override {
    last_ = frame;
    ++frames_;
  }
  void Close(v1::DisconnectCode, std::string) override {}
  uint64_t frames() const { return frames_; }

 private:
  FramePtr last_;
  uint64_t frames_ = 0;
};

// One batch from the core: `batch` messages of room "bench" with a
// {"t":...,"pad":"xx..."} payload of about `payload_bytes`.
v1::EdgeEvents Batch(int batch, size_t payload_bytes) {
  v1::EdgeEvents events;
  std::string data = "{\"t\":1234567890123,\"pad\":\"";
  if (payload_bytes > data.size() + 2) data.append(payload_bytes - data.size() - 2, 'x');
  data += "\"}";
  for (int i = 0; i < batch; ++i) {
    v1::Message* m = events.add_events()->mutable_message();
    m->set_room("bench");
    m->mutable_position()->set_epoch("9f3c2a1b7d4e6f08");
    m->mutable_position()->set_offset(i + 1);
    m->set_data(data);
    m->mutable_time()->set_seconds(1'764'000'000);
  }
  return events;
}

// Args: local members, shards, messages per batch.
void BM_HubFanout(benchmark::State& state) {
  const int members = static_cast<int>(state.range(0));
  const int num_shards = static_cast<int>(state.range(1));
  const int batch = static_cast<int>(state.range(2));
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts;
  std::vector<boost::asio::io_context*> shards;
  for (int i = 0; i < num_shards; ++i) {
    contexts.push_back(std::make_unique<boost::asio::io_context>(1));
    shards.push_back(contexts.back().get());
  }
  Hub hub(shards);
  std::vector<std::unique_ptr<FakeClient>> clients;
  for (int i = 0; i < members; ++i) {
    const size_t shard = hub.PickShard();
    clients.push_back(std::make_unique<FakeClient>(hub.NewClientId(), shard));
    hub.Join(*clients.back(), "bench");
  }
  const v1::EdgeEvents events = Batch(batch, 100);
  for (auto _ : state) {
    hub.OnEvents(events);
    for (auto& context : contexts) {
      context->restart();
      context->poll();
    }
  }
  state.SetItemsProcessed(state.iterations() * batch * members);  // deliveries
  state.counters["msgs/s"] = benchmark::Counter(static_cast<double>(state.iterations() * batch),
                                                benchmark::Counter::kIsRate);
  for (auto& c : clients) hub.Leave(*c, "bench");
}
BENCHMARK(BM_HubFanout)
    ->ArgNames({"members", "shards", "batch"})
    ->Args({1, 1, 1})
    ->Args({100, 1, 1})
    ->Args({10'000, 1, 1})
    ->Args({10'000, 2, 1})
    ->Args({1'000, 1, 64});

}  // namespace
}  // namespace roomcast::edge
