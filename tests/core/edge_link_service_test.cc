// EdgeLink over a real loopback port: one stream multiplexing clients, rooms
// subscribed once per edge, replies and events in order, cleanup.
#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/subscription_recorder.h"
#include "tests/core/test_server.h"

namespace roomcast::core {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

// A fake edge: one Link stream driven synchronously.
class FakeEdge {
 public:
  explicit FakeEdge(v1::EdgeLink::Stub& stub, bool hello = true) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    stream_ = stub.Link(&ctx_);
    if (hello) {
      v1::EdgeToCore in;
      in.mutable_hello()->set_edge_name("test-edge");
      Send(in);
      v1::CoreToEdge welcome = Next();
      EXPECT_TRUE(welcome.has_welcome());
    }
  }
  ~FakeEdge() {
    ctx_.TryCancel();
    if (!finished_) stream_->Finish().IgnoreError();
  }

  void Send(const v1::EdgeToCore& in) { ASSERT_TRUE(stream_->Write(in)); }

  v1::CoreToEdge Next() {
    v1::CoreToEdge out;
    EXPECT_TRUE(stream_->Read(&out)) << "the link ended early";
    return out;
  }

  // Reads until the reply to `request_id`, collecting room events meanwhile.
  v1::EdgeReply ReplyTo(uint64_t request_id) {
    for (;;) {
      v1::CoreToEdge out;
      if (!stream_->Read(&out)) {
        ADD_FAILURE() << "the link ended before reply " << request_id;
        return {};
      }
      if (out.has_reply() && out.reply().request_id() == request_id) return out.reply();
      if (out.has_events()) {
        for (const auto& e : out.events().events()) events_.push_back(e);
      }
    }
  }

  // Reads until `n` room events have been collected in total.
  std::vector<v1::RoomEvent> Events(size_t n) {
    while (events_.size() < n) {
      v1::CoreToEdge out = Next();
      if (!out.has_events()) {
        if (out.kind_case() == v1::CoreToEdge::KIND_NOT_SET) break;  // Ended.
        others_.push_back(out);
        continue;
      }
      for (const auto& e : out.events().events()) events_.push_back(e);
    }
    return events_;
  }

  void Connect(const std::string& client_id, const std::string& user_id = "") {
    v1::EdgeToCore in;
    in.mutable_client_connected()->mutable_client()->set_client_id(client_id);
    in.mutable_client_connected()->mutable_client()->set_user_id(user_id);
    Send(in);
  }
  void ConnectWithGrants(const std::string& client_id, const std::string& user_id,
                         const v1::Grants& grants) {
    v1::EdgeToCore in;
    in.mutable_client_connected()->mutable_client()->set_client_id(client_id);
    in.mutable_client_connected()->mutable_client()->set_user_id(user_id);
    *in.mutable_client_connected()->mutable_grants() = grants;
    Send(in);
  }
  v1::EdgeReply Ask(const std::string& client_id, const v1::EdgeRequest& request) {
    v1::EdgeToCore in;
    *in.mutable_request() = request;
    in.mutable_request()->set_request_id(++next_id_);
    in.mutable_request()->set_client_id(client_id);
    Send(in);
    return ReplyTo(next_id_);
  }
  void Disconnect(const std::string& client_id) {
    v1::EdgeToCore in;
    in.mutable_client_disconnected()->set_client_id(client_id);
    Send(in);
  }
  v1::EdgeReply Join(const std::string& client_id, const std::string& room,
                     const v1::Position* since = nullptr) {
    v1::EdgeToCore in;
    v1::EdgeRequest* r = in.mutable_request();
    r->set_request_id(++next_id_);
    r->set_client_id(client_id);
    r->mutable_join()->set_room(room);
    if (since != nullptr) *r->mutable_join()->mutable_since() = *since;
    Send(in);
    return ReplyTo(next_id_);
  }
  v1::EdgeReply Publish(const std::string& client_id, const std::string& room,
                        const std::string& data) {
    v1::EdgeToCore in;
    v1::EdgeRequest* r = in.mutable_request();
    r->set_request_id(++next_id_);
    r->set_client_id(client_id);
    r->mutable_publish()->set_room(room);
    r->mutable_publish()->set_data(data);
    Send(in);
    return ReplyTo(next_id_);
  }
  v1::EdgeReply Leave(const std::string& client_id, const std::string& room) {
    v1::EdgeToCore in;
    v1::EdgeRequest* r = in.mutable_request();
    r->set_request_id(++next_id_);
    r->set_client_id(client_id);
    r->mutable_leave()->set_room(room);
    Send(in);
    return ReplyTo(next_id_);
  }

  // Reads whatever is left, then returns the link's final status.
  grpc::Status Finish() {
    v1::CoreToEdge out;
    while (stream_->Read(&out)) others_.push_back(out);
    finished_ = true;
    return stream_->Finish();
  }
  const std::vector<v1::CoreToEdge>& others() const { return others_; }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::EdgeToCore, v1::CoreToEdge>> stream_;
  bool finished_ = false;
  uint64_t next_id_ = 0;
  std::vector<v1::RoomEvent> events_;
  std::vector<v1::CoreToEdge> others_;
};

CoreOptions WithNamespaces() {
  CoreOptions options = TestOptions();
  NamespaceOptions readonly;
  readonly.client_publish = false;
  options.engine.namespaces["feed"] = readonly;
  return options;
}

class EdgeLinkServiceTest : public ::testing::Test {
 protected:
  EdgeLinkServiceTest() : server_(WithNamespaces()) {}
  TestServer server_;
};

TEST_F(EdgeLinkServiceTest, RoomEventsReachTheEdgeOncePerEdgeNotPerClient) {
  FakeEdge edge(server_.edge_link());
  edge.Connect("c1", "alice");
  edge.Connect("c2", "bob");
  ASSERT_FALSE(edge.Join("c1", "lobby").has_error());
  ASSERT_FALSE(edge.Join("c2", "lobby").has_error());
  EXPECT_EQ(server_.Stats().subscriptions(), 1u);  // One edge subscription for two clients.
  EXPECT_EQ(server_.Stats().edge_clients(), 2u);

  v1::Position p;
  ASSERT_TRUE(server_.Publish("lobby", "hello", &p).ok());
  // Two JOIN presence events, then the message exactly once.
  std::vector<v1::RoomEvent> events = edge.Events(3);
  ASSERT_THAT(events, SizeIs(3));
  EXPECT_EQ(events[0].presence().kind(), v1::PresenceEvent::JOIN);
  EXPECT_EQ(events[0].presence().client().client_id(), "c1");
  EXPECT_EQ(events[1].presence().client().client_id(), "c2");
  EXPECT_EQ(events[2].message().data(), "hello");
  EXPECT_EQ(events[2].message().position().offset(), p.offset());
}

TEST_F(EdgeLinkServiceTest, JoinWithSinceReplaysInsideTheReply) {
  v1::Position first;
  ASSERT_TRUE(server_.Publish("r", "1", &first).ok());
  ASSERT_TRUE(server_.Publish("r", "2").ok());
  ASSERT_TRUE(server_.Publish("r", "3").ok());
  FakeEdge edge(server_.edge_link());
  edge.Connect("c1");
  v1::EdgeReply reply = edge.Join("c1", "r", &first);
  ASSERT_TRUE(reply.has_join());
  EXPECT_TRUE(reply.join().recovered());
  EXPECT_EQ(reply.join().position().offset(), 3u);
  ASSERT_THAT(reply.join().replayed(), SizeIs(2));
  EXPECT_EQ(reply.join().replayed(0).data(), "2");
  EXPECT_EQ(reply.join().replayed(1).data(), "3");
}

TEST_F(EdgeLinkServiceTest, ClientPublishGetsPositionAndIsAttributed) {
  FakeEdge edge(server_.edge_link());
  edge.Connect("c1", "alice");
  ASSERT_FALSE(edge.Join("c1", "chat").has_error());
  v1::EdgeReply reply = edge.Publish("c1", "chat", "{\"text\":\"hi\"}");
  ASSERT_TRUE(reply.has_publish()) << reply.error().message();
  EXPECT_EQ(reply.publish().position().offset(), 1u);
  std::vector<v1::RoomEvent> events = edge.Events(2);  // JOIN, message.
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[1].message().publisher().user_id(), "alice");
}

TEST_F(EdgeLinkServiceTest, RequestErrorsAreRepliesAndTheLinkStaysUp) {
  FakeEdge edge(server_.edge_link());
  edge.Connect("c1");
  EXPECT_EQ(edge.Join("nobody", "lobby").error().code(),
            static_cast<uint32_t>(grpc::StatusCode::NOT_FOUND));
  EXPECT_EQ(edge.Join("c1", "bad room").error().code(),
            static_cast<uint32_t>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(edge.Publish("c1", "feed:news", "1").error().code(),
            static_cast<uint32_t>(grpc::StatusCode::PERMISSION_DENIED));
  ASSERT_FALSE(edge.Join("c1", "lobby").has_error());
  EXPECT_EQ(edge.Join("c1", "lobby").error().code(),
            static_cast<uint32_t>(grpc::StatusCode::ALREADY_EXISTS));
  EXPECT_TRUE(edge.Publish("c1", "lobby", "still serving").has_publish());
}

TEST_F(EdgeLinkServiceTest, FirstMessageMustBeHello) {
  FakeEdge edge(server_.edge_link(), /*hello=*/false);
  edge.Connect("c1");
  grpc::Status s = edge.Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(EdgeLinkServiceTest, DuplicateClientEndsTheLink) {
  FakeEdge edge(server_.edge_link());
  edge.Connect("c1");
  edge.Connect("c1");
  EXPECT_EQ(edge.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::StatsResponse stats =
      server_.WaitForStats([](const v1::StatsResponse& s) { return s.edge_links() == 0; });
  EXPECT_EQ(stats.edge_clients(), 0u);
}

TEST_F(EdgeLinkServiceTest, LeaveAndDisconnectRemoveClientsFromRoomsAndPresence) {
  FakeEdge edge(server_.edge_link());
  edge.Connect("c1");
  edge.Connect("c2");
  ASSERT_FALSE(edge.Join("c1", "a").has_error());
  ASSERT_FALSE(edge.Join("c2", "a").has_error());
  ASSERT_FALSE(edge.Join("c2", "b").has_error());
  EXPECT_EQ(server_.Stats().presence_entries(), 3u);
  ASSERT_TRUE(edge.Leave("c1", "a").has_leave());
  EXPECT_EQ(server_.Stats().presence_entries(), 2u);
  EXPECT_EQ(server_.Stats().subscriptions(), 2u);  // c2 still holds a and b.
  edge.Disconnect("c2");
  v1::StatsResponse stats = server_.WaitForStats([](const v1::StatsResponse& s) {
    return s.presence_entries() == 0 && s.edge_clients() == 1;
  });
  EXPECT_EQ(stats.presence_entries(), 0u);
  EXPECT_EQ(stats.subscriptions(), 0u);
  EXPECT_EQ(stats.edge_clients(), 1u);
}

TEST_F(EdgeLinkServiceTest, ClosingTheLinkForgetsEveryClient) {
  {
    FakeEdge edge(server_.edge_link());
    for (int i = 0; i < 50; ++i) {
      edge.Connect(absl::StrCat("c", i));
      ASSERT_FALSE(edge.Join(absl::StrCat("c", i), absl::StrCat("room", i % 5)).has_error());
    }
    EXPECT_EQ(server_.Stats().edge_clients(), 50u);
  }
  v1::StatsResponse stats = server_.WaitForStats([](const v1::StatsResponse& s) {
    return s.edge_links() == 0 && s.subscriptions() == 0 && s.presence_entries() == 0;
  });
  EXPECT_EQ(stats.edge_links(), 0u);
  EXPECT_EQ(stats.edge_clients(), 0u);
  EXPECT_EQ(stats.subscriptions(), 0u);
  EXPECT_EQ(stats.presence_entries(), 0u);
  EXPECT_EQ(stats.queued_events(), 0u);
}

TEST_F(EdgeLinkServiceTest, DisconnectRpcReachesTheClientThroughItsEdge) {
  FakeEdge edge(server_.edge_link());
  edge.Connect("c1", "mallory");
  edge.Connect("c2", "alice");
  ASSERT_FALSE(edge.Join("c1", "x").has_error());
  grpc::ClientContext ctx;
  v1::DisconnectRequest request;
  request.set_user_id("mallory");
  request.set_reason("banned");
  v1::DisconnectResponse response;
  ASSERT_TRUE(server_.rooms().Disconnect(&ctx, request, &response).ok());
  EXPECT_EQ(response.num_disconnected(), 1u);
  v1::CoreToEdge out;
  do {
    out = edge.Next();
  } while (out.has_events());
  ASSERT_TRUE(out.has_disconnect());
  EXPECT_EQ(out.disconnect().client_id(), "c1");
  EXPECT_EQ(out.disconnect().code(), v1::DISCONNECTED);
  EXPECT_EQ(out.disconnect().reason(), "banned");
  EXPECT_EQ(server_.Stats().edge_clients(), 1u);
}

TEST_F(EdgeLinkServiceTest, GrantsLimitEachOperationAndTheLinkStaysUp) {
  FakeEdge edge(server_.edge_link());
  v1::Grants grants;
  grants.add_subscribe("a");
  grants.add_subscribe("r*");
  grants.add_publish("a");
  edge.ConnectWithGrants("c1", "alice", grants);
  const auto denied = static_cast<uint32_t>(grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(edge.Join("c1", "b").error().code(), denied);
  EXPECT_EQ(edge.Publish("c1", "r1", "1").error().code(), denied);
  v1::EdgeRequest presence;
  presence.mutable_presence()->set_room("a");
  EXPECT_EQ(edge.Ask("c1", presence).error().code(), denied);
  v1::EdgeRequest history;
  history.mutable_history()->set_room("a");
  EXPECT_EQ(edge.Ask("c1", history).error().code(), denied);
  EXPECT_FALSE(edge.Join("c1", "a").has_error());
  EXPECT_FALSE(edge.Join("c1", "r1").has_error());
  EXPECT_TRUE(edge.Publish("c1", "a", "1").has_publish());
  // A client announced without grants keeps today's behaviour: everything.
  edge.Connect("c2");
  EXPECT_FALSE(edge.Join("c2", "b").has_error());
}

TEST_F(EdgeLinkServiceTest, DisconnectByUserReachesEveryConnectionOfThatUser) {
  FakeEdge edge1(server_.edge_link());
  FakeEdge edge2(server_.edge_link());
  v1::Grants grants;
  grants.add_subscribe("*");
  edge1.ConnectWithGrants("c1", "alice", grants);
  edge1.ConnectWithGrants("c2", "alice", grants);
  edge2.ConnectWithGrants("c3", "alice", grants);
  edge2.ConnectWithGrants("c4", "bob", grants);
  ASSERT_FALSE(edge2.Join("c4", "x").has_error());  // Both edges' clients are known now.
  ASSERT_FALSE(edge1.Join("c1", "x").has_error());
  grpc::ClientContext ctx;
  v1::DisconnectRequest request;
  request.set_user_id("alice");
  v1::DisconnectResponse response;
  ASSERT_TRUE(server_.rooms().Disconnect(&ctx, request, &response).ok());
  EXPECT_EQ(response.num_disconnected(), 3u);
  auto disconnected = [](FakeEdge& edge, size_t n) {
    std::vector<std::string> ids;
    while (ids.size() < n) {
      v1::CoreToEdge out = edge.Next();
      if (out.kind_case() == v1::CoreToEdge::KIND_NOT_SET) break;
      if (out.has_disconnect()) ids.push_back(out.disconnect().client_id());
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  };
  EXPECT_THAT(disconnected(edge1, 2), ElementsAre("c1", "c2"));
  EXPECT_THAT(disconnected(edge2, 1), ElementsAre("c3"));
  EXPECT_EQ(server_.Stats().edge_clients(), 1u);  // bob stays.
}

TEST_F(EdgeLinkServiceTest, ShutdownEndsTheLinkWithUnavailable) {
  FakeEdge edge(server_.edge_link());
  edge.Connect("c1");
  ASSERT_FALSE(edge.Join("c1", "x").has_error());
  server_.server().Shutdown();
  grpc::Status s = edge.Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
}

CoreOptions SmallEdgeQueue() {
  CoreOptions options = TestOptions();
  options.edge_queue = {.max_events = 20, .max_bytes = 1 << 20};
  return options;
}

TEST(EdgeLinkSlowConsumerTest, AnEdgeThatStopsReadingIsEndedAndOthersGetEverything) {
  TestServer server(SmallEdgeQueue());
  // Small HTTP/2 windows, so that an edge that does not read really stops
  // the core's writes.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 * 1024);
  auto stub = v1::EdgeLink::NewStub(
      grpc::CreateCustomChannel(server.address(), grpc::InsecureChannelCredentials(), args));
  FakeEdge slow(*stub);
  slow.Connect("c1");
  ASSERT_FALSE(slow.Join("c1", "flood").has_error());
  v1::SubscribeRequest request;
  request.add_rooms()->set_room("flood");
  SubscriptionRecorder fast(server.rooms(), request);
  ASSERT_TRUE(fast.WaitForEvents(1));

  constexpr int kMessages = 3000;
  std::string payload(1024, 'x');
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(server.Publish("flood", payload).ok());
  ASSERT_TRUE(fast.WaitForMessages(kMessages));

  grpc::Status status = slow.Finish();  // Reads what was in flight, then the end.
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("slow consumer"));
  v1::StatsResponse stats = server.WaitForStats([](const v1::StatsResponse& s) {
    return s.edge_links() == 0 && s.edge_clients() == 0 && s.subscriptions() == 1;
  });
  EXPECT_EQ(stats.edge_links(), 0u);
  EXPECT_EQ(stats.edge_clients(), 0u);
  EXPECT_EQ(stats.subscriptions(), 1u);  // Only the Subscribe stream is left.
  EXPECT_EQ(stats.slow_consumer_disconnects_total(), 1u);
  EXPECT_FALSE(fast.done());
}

}  // namespace
}  // namespace roomcast::core
