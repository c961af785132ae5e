// Micro-benchmark of the edge's frame codec (edge/codec.h): encoding a room
// message once per edge (JSON text and binary protobuf) and decoding the
// frames browsers send. Pure functions, no sockets.
//
// Never asserts a speed; see benchmarks/README.md.
#include <cstdint>
#include <string>

#include "benchmark/benchmark.h"
#include "edge/codec.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::edge {
namespace {

// A message as the core delivers it: JSON payload {"t":...,"pad":"xx..."} of
// about `payload_bytes` bytes, as roomcast-bench publishes.
v1::Message BenchMessage(size_t payload_bytes) {
  v1::Message m;
  m.set_room("bench-room-1");
  m.mutable_position()->set_epoch("9f3c2a1b7d4e6f08");
  m.mutable_position()->set_offset(123456);
  std::string data = "{\"t\":1234567890123,\"pad\":\"";
  const size_t tail = 2;
  if (payload_bytes > data.size() + tail) data.append(payload_bytes - data.size() - tail, 'x');
  data += "\"}";
  m.set_data(std::move(data));
  m.mutable_time()->set_seconds(1'764'000'000);
  m.mutable_time()->set_nanos(123'000'000);
  return m;
}

void BM_EncodeMessageFrame(benchmark::State& state, Encoding encoding) {
  const v1::Message message = BenchMessage(static_cast<size_t>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string frame = EncodeMessageFrame(message, encoding);
    bytes += frame.size();
    benchmark::DoNotOptimize(frame);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK_CAPTURE(BM_EncodeMessageFrame, json, Encoding::kJson)->Arg(64)->Arg(1024)->Arg(16 * 1024);
BENCHMARK_CAPTURE(BM_EncodeMessageFrame, protobuf, Encoding::kProtobuf)
    ->Arg(64)
    ->Arg(1024)
    ->Arg(16 * 1024);

// The frames a browser sends most: join, and publish with a small object.
std::string ClientFrameBytes(bool publish, Encoding encoding) {
  if (encoding == Encoding::kJson) {
    return publish
               ? R"({"id":7,"publish":{"room":"chat:lobby","data":{"text":"hello","n":[1,2,3]}}})"
               : R"({"id":7,"join":{"room":"chat:lobby"}})";
  }
  v1::ClientFrame frame;
  frame.set_id(7);
  if (publish) {
    v1::ClientPublishRequest* p = frame.mutable_publish();
    p->set_room("chat:lobby");
    auto& fields = *p->mutable_data()->mutable_struct_value()->mutable_fields();
    fields["text"].set_string_value("hello");
    auto* list = fields["n"].mutable_list_value();
    for (int i = 1; i <= 3; ++i) list->add_values()->set_number_value(i);
  } else {
    frame.mutable_join()->set_room("chat:lobby");
  }
  return frame.SerializeAsString();
}

void BM_DecodeClientFrame(benchmark::State& state, bool publish, Encoding encoding) {
  const std::string bytes = ClientFrameBytes(publish, encoding);
  for (auto _ : state) {
    uint64_t id = 0;
    auto frame = DecodeClientFrame(bytes, encoding, &id);
    if (!frame.ok()) {
      state.SkipWithError(std::string(frame.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(frame);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_DecodeClientFrame, join_json, false, Encoding::kJson);
BENCHMARK_CAPTURE(BM_DecodeClientFrame, join_protobuf, false, Encoding::kProtobuf);
BENCHMARK_CAPTURE(BM_DecodeClientFrame, publish_json, true, Encoding::kJson);
BENCHMARK_CAPTURE(BM_DecodeClientFrame, publish_protobuf, true, Encoding::kProtobuf);

}  // namespace
}  // namespace roomcast::edge
