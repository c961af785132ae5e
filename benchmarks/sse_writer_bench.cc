// Micro-benchmark of the edge's SSE event writer: the cost of formatting one
// event "id: <cursor>\ndata: <json>\n\n" for a stream joined to 1 / 10 / 100
// rooms, with the functions SseSession uses (edge/codec.h: FormatSseCursor,
// SseEvent). As SseSession does, each delivered message updates the
// stream's cursor entry for its room, then the id line is rebuilt from every
// room of the stream and appended with the frame's JSON to the pending
// buffer. (A stream on one room appends an event the hub built once per
// edge instead: that path is a plain append.)
//
// No I/O. Never asserts a speed; see benchmarks/README.md.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "edge/codec.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::edge {
namespace {

class SseWriterModel {
 public:
  explicit SseWriterModel(std::vector<std::string> rooms) : rooms_(std::move(rooms)) {
    for (const std::string& room : rooms_) {
      v1::Position& p = cursor_[room];
      p.set_epoch("0197a3c2e4f1b8d6");
      p.set_offset(1'000'000);
    }
  }

  // SseSession::Deliver for a message frame (no slow-consumer check).
  void Deliver(const std::string& room, const v1::Position& position, const std::string& json,
               bool with_id) {
    cursor_[room] = position;
    pending_.append(SseEvent(with_id ? FormatSseCursor(rooms_, cursor_) : "", json));
    if (pending_.size() > (1 << 20)) pending_.clear();  // The socket write, not measured.
  }

 private:
  std::vector<std::string> rooms_;
  SseCursor cursor_;
  std::string pending_;
};

// One event per iteration, round-robin over the stream's rooms; a ~190-byte
// JSON message frame. with_id=0 formats only "data: ...\n\n" (the cost
// without a resume cursor), for comparison.
void BM_SseEvent(benchmark::State& state) {
  const int num_rooms = static_cast<int>(state.range(0));
  const bool with_id = state.range(1) != 0;
  std::vector<std::string> rooms;
  for (int i = 0; i < num_rooms; ++i) rooms.push_back(absl::StrCat("bench-1a2b3c4d-", i));
  SseWriterModel writer(rooms);
  const std::string json = absl::StrCat(
      R"({"message":{"room":"bench-1a2b3c4d-0","data":{"t":123456789012,"pad":")",
      std::string(70, 'x'), R"("},"position":{"epoch":"0197a3c2e4f1b8d6","offset":"1000001"}}})");
  v1::Position position;
  position.set_epoch("0197a3c2e4f1b8d6");
  uint64_t offset = 1'000'001;
  size_t next = 0;
  for (auto _ : state) {
    position.set_offset(offset++);
    writer.Deliver(rooms[next], position, json, with_id);
    if (++next == rooms.size()) next = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SseEvent)->ArgNames({"rooms", "id"})->ArgsProduct({{1, 10, 100}, {1, 0}});

}  // namespace
}  // namespace roomcast::edge
