#include "edge/hub.h"

#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boost/asio/post.hpp"
#include "edge/codec.h"

namespace roomcast::edge {
namespace {

std::string RandomPrefix() {
  absl::BitGen gen;
  return absl::StrFormat("%08x", absl::Uniform<uint32_t>(gen));
}

FramePtr Encode(const v1::RoomEvent& event, bool with_protobuf, bool with_sse) {
  auto frame = std::make_shared<Frame>();
  if (event.has_message()) {
    const v1::Message& m = event.message();
    frame->room = m.room();
    frame->position = m.position();
    frame->is_message = true;
    frame->json_entry = BatchEntry(EncodeMessageFrame(m, Encoding::kJson), Encoding::kJson);
    if (with_sse) {
      frame->sse_event = SseEvent(SseCursorEntry(m.room(), m.position()), frame->json());
    }
    if (with_protobuf) {
      frame->protobuf_entry =
          BatchEntry(EncodeMessageFrame(m, Encoding::kProtobuf), Encoding::kProtobuf);
    }
  } else {
    v1::ServerFrame server_frame;
    *server_frame.mutable_presence() = event.presence();
    frame->room = event.presence().room();
    frame->json_entry =
        BatchEntry(EncodeServerFrame(server_frame, Encoding::kJson), Encoding::kJson);
    if (with_protobuf) {
      frame->protobuf_entry =
          BatchEntry(EncodeServerFrame(server_frame, Encoding::kProtobuf), Encoding::kProtobuf);
    }
  }
  return frame;
}

}  // namespace

Hub::Hub(std::vector<boost::asio::io_context*> shards) : id_prefix_(RandomPrefix()) {
  for (boost::asio::io_context* context : shards) {
    shards_.push_back(std::make_unique<Shard>(Shard{context, {}}));
  }
}

size_t Hub::PickShard() { return next_shard_.fetch_add(1) % shards_.size(); }

std::string Hub::NewClientId() { return absl::StrCat(id_prefix_, "-", next_client_.fetch_add(1)); }

void Hub::Register(const std::shared_ptr<Client>& client) {
  absl::MutexLock lock(&mu_);
  clients_[client->id()] = client;
}

void Hub::Unregister(const Client& client) {
  absl::MutexLock lock(&mu_);
  clients_.erase(client.id());
}

std::shared_ptr<Client> Hub::Find(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(id);
  return it == clients_.end() ? nullptr : it->second.lock();
}

void Hub::Join(Client& client, const std::string& room) {
  if (shards_[client.shard()]->rooms[room].insert(&client).second) {
    counters_.memberships.fetch_add(1, std::memory_order_relaxed);
  }
}

void Hub::Leave(Client& client, const std::string& room) {
  auto& rooms = shards_[client.shard()]->rooms;
  auto it = rooms.find(room);
  if (it == rooms.end()) return;
  if (it->second.erase(&client) > 0) counters_.memberships.fetch_sub(1, std::memory_order_relaxed);
  if (it->second.empty()) rooms.erase(it);
}

void Hub::OnEvents(const v1::EdgeEvents& events) {
  bool with_protobuf = counters_.binary_clients.load(std::memory_order_relaxed) > 0;
  bool with_sse = counters_.sse_connections.load(std::memory_order_relaxed) > 0;
  auto frames = std::make_shared<std::vector<FramePtr>>();
  frames->reserve(events.events_size());
  for (const v1::RoomEvent& event : events.events())
    frames->push_back(Encode(event, with_protobuf, with_sse));
  for (auto& shard : shards_) {
    boost::asio::post(*shard->context, [this, s = shard.get(), frames] { Dispatch(*s, *frames); });
  }
}

void Hub::Dispatch(Shard& shard, const std::vector<FramePtr>& frames) {
  uint64_t delivered = 0;
  for (const FramePtr& frame : frames) {
    auto it = shard.rooms.find(frame->room);
    if (it == shard.rooms.end()) continue;
    for (Client* client : it->second) client->Deliver(frame);
    delivered += it->second.size();
  }
  counters_.frames_delivered_total.fetch_add(delivered, std::memory_order_relaxed);
}

void Hub::OnDisconnect(const v1::DisconnectClient& disconnect) {
  std::shared_ptr<Client> client = Find(disconnect.client_id());
  if (client == nullptr) return;
  boost::asio::post(context(client->shard()),
                    [client, code = disconnect.code(), reason = disconnect.reason()] {
                      client->Close(code, reason);
                    });
}

void Hub::CloseAll(v1::DisconnectCode code, const std::string& reason) {
  std::vector<std::shared_ptr<Client>> all;
  {
    absl::MutexLock lock(&mu_);
    all.reserve(clients_.size());
    for (const auto& [id, weak] : clients_) {
      if (auto client = weak.lock()) all.push_back(std::move(client));
    }
  }
  for (auto& client : all) {
    boost::asio::post(context(client->shard()),
                      [client, code, reason] { client->Close(code, reason); });
  }
}

}  // namespace roomcast::edge
