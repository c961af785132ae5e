// Rooms over a real loopback port: publish/subscribe at scale, resume, the
// error codes, slow consumers and cleanup.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"
#include "tests/core/subscription_recorder.h"
#include "tests/core/test_server.h"

namespace roomcast::core {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

v1::SubscribeRequest SubscribeTo(const std::string& room, const v1::Position* since = nullptr) {
  v1::SubscribeRequest request;
  auto* r = request.add_rooms();
  r->set_room(room);
  if (since != nullptr) *r->mutable_since() = *since;
  return request;
}

std::vector<std::string> DataOf(const std::vector<v1::Message>& messages) {
  std::vector<std::string> out;
  for (const auto& m : messages) out.push_back(m.data());
  return out;
}

class RoomsServiceTest : public ::testing::Test {
 protected:
  explicit RoomsServiceTest(CoreOptions options = TestOptions()) : server_(std::move(options)) {}

  v1::Position PublishOk(const std::string& room, const std::string& data) {
    v1::Position p;
    grpc::Status s = server_.Publish(room, data, &p);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return p;
  }

  TestServer server_;
};

TEST_F(RoomsServiceTest, PublishAssignsConsecutiveOffsetsInOneEpoch) {
  v1::Position a = PublishOk("lobby", "1");
  v1::Position b = PublishOk("lobby", "2");
  EXPECT_EQ(a.offset(), 1u);
  EXPECT_EQ(b.offset(), 2u);
  EXPECT_EQ(a.epoch(), b.epoch());
  EXPECT_FALSE(a.epoch().empty());
}

TEST_F(RoomsServiceTest, SubscribeGetsRecoveryMarkerThenLiveMessagesInOrder) {
  SubscriptionRecorder sub(server_.rooms(), SubscribeTo("lobby"));
  ASSERT_TRUE(sub.WaitForEvents(1));
  PublishOk("lobby", "a");
  PublishOk("lobby", "b");
  ASSERT_TRUE(sub.WaitForMessages(2));
  std::vector<v1::SubscribeResponse> events = sub.events();
  ASSERT_THAT(events, SizeIs(3));
  EXPECT_TRUE(events[0].recovery().recovered());
  EXPECT_EQ(events[0].recovery().room(), "lobby");
  EXPECT_EQ(events[0].recovery().position().offset(), 0u);
  EXPECT_THAT(DataOf(sub.messages()), ElementsAre("a", "b"));
  EXPECT_EQ(events[2].message().position().offset(), 2u);
}

TEST_F(RoomsServiceTest, ThousandSubscribersReceiveEveryMessageInOrder) {
  constexpr int kSubscribers = 1000;
  constexpr int kMessages = 50;
  std::vector<std::unique_ptr<SubscriptionRecorder>> subs;
  for (int i = 0; i < kSubscribers; ++i) {
    subs.push_back(std::make_unique<SubscriptionRecorder>(server_.rooms(), SubscribeTo("big")));
  }
  for (auto& sub : subs) ASSERT_TRUE(sub->WaitForEvents(1));  // Recovery: joined.
  EXPECT_EQ(server_.Stats().subscribe_streams(), static_cast<uint64_t>(kSubscribers));
  for (int i = 1; i <= kMessages; ++i) PublishOk("big", absl::StrCat(i));
  for (auto& sub : subs) {
    ASSERT_TRUE(sub->WaitForMessages(kMessages));
    std::vector<v1::Message> got = sub->messages();
    ASSERT_THAT(got, SizeIs(kMessages));
    for (int i = 0; i < kMessages; ++i) {
      ASSERT_EQ(got[i].position().offset(), static_cast<uint64_t>(i + 1));
      ASSERT_EQ(got[i].data(), absl::StrCat(i + 1));
    }
  }
  subs.clear();
  v1::StatsResponse stats = server_.WaitForStats([](const v1::StatsResponse& s) {
    return s.subscribe_streams() == 0 && s.subscriptions() == 0;
  });
  EXPECT_EQ(stats.subscribe_streams(), 0u);
  EXPECT_EQ(stats.subscriptions(), 0u);
  EXPECT_EQ(stats.queued_events(), 0u);
}

TEST_F(RoomsServiceTest, ResumeAfterDisconnectGetsExactlyTheMissedMessages) {
  v1::Position last;
  {
    SubscriptionRecorder sub(server_.rooms(), SubscribeTo("resume"));
    ASSERT_TRUE(sub.WaitForEvents(1));
    PublishOk("resume", "1");
    PublishOk("resume", "2");
    ASSERT_TRUE(sub.WaitForMessages(2));
    last = sub.messages().back().position();
  }  // Disconnected.
  PublishOk("resume", "3");
  PublishOk("resume", "4");
  SubscriptionRecorder again(server_.rooms(), SubscribeTo("resume", &last));
  ASSERT_TRUE(again.WaitForEvents(3));
  PublishOk("resume", "5");
  ASSERT_TRUE(again.WaitForMessages(3));
  std::vector<v1::SubscribeResponse> events = again.events();
  ASSERT_THAT(events, SizeIs(4));
  EXPECT_EQ(events[0].message().data(), "3");
  EXPECT_EQ(events[1].message().data(), "4");
  EXPECT_TRUE(events[2].recovery().recovered());
  EXPECT_EQ(events[2].recovery().position().offset(), 4u);
  EXPECT_EQ(events[3].message().data(), "5");
}

TEST_F(RoomsServiceTest, ResumeFromAnotherEpochSaysNotRecovered) {
  PublishOk("epochs", "1");
  v1::Position stale = MakePosition("some-other-epoch", 1);
  SubscriptionRecorder sub(server_.rooms(), SubscribeTo("epochs", &stale));
  ASSERT_TRUE(sub.WaitForEvents(1));
  std::vector<v1::SubscribeResponse> events = sub.events();
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_FALSE(events[0].recovery().recovered());
  EXPECT_EQ(events[0].recovery().position().offset(), 1u);
}

TEST_F(RoomsServiceTest, InvalidRoomNamesAreInvalidArgumentAndTheServerKeepsServing) {
  EXPECT_EQ(server_.Publish("bad room", "x").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(server_.Publish("", "x").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(server_.Publish(std::string(1000, 'a'), "x").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(server_.Publish("nosuchns:room", "x").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  SubscriptionRecorder sub(server_.rooms(), SubscribeTo("bad?room"));
  EXPECT_EQ(sub.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(sub.events().empty());
  EXPECT_TRUE(server_.Publish("good", "x").ok());
}

TEST_F(RoomsServiceTest, OversizedPayloadIsInvalidArgument) {
  grpc::Status s = server_.Publish("big", std::string(64 * 1024 + 1, 'x'));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("payload"));
}

TEST_F(RoomsServiceTest, HistorySincePastTheEndIsOutOfRange) {
  v1::Position p = PublishOk("h", "1");
  grpc::ClientContext ctx;
  v1::HistoryRequest request;
  request.set_room("h");
  *request.mutable_since() = MakePosition(p.epoch(), 5);
  v1::HistoryResponse response;
  EXPECT_EQ(server_.rooms().History(&ctx, request, &response).error_code(),
            grpc::StatusCode::OUT_OF_RANGE);
}

TEST_F(RoomsServiceTest, SubscribeSincePastTheEndIsOutOfRange) {
  v1::Position p = PublishOk("s", "1");
  v1::Position future = MakePosition(p.epoch(), 9);
  SubscriptionRecorder sub(server_.rooms(), SubscribeTo("s", &future));
  EXPECT_EQ(sub.Finish().error_code(), grpc::StatusCode::OUT_OF_RANGE);
}

TEST_F(RoomsServiceTest, HistoryReturnsMessagesAfterSinceWithLimitAndReverse) {
  v1::Position first = PublishOk("hist", "1");
  PublishOk("hist", "2");
  PublishOk("hist", "3");
  grpc::ClientContext ctx;
  v1::HistoryRequest request;
  request.set_room("hist");
  *request.mutable_since() = first;
  request.set_limit(1);
  v1::HistoryResponse response;
  ASSERT_TRUE(server_.rooms().History(&ctx, request, &response).ok());
  ASSERT_THAT(response.messages(), SizeIs(1));
  EXPECT_EQ(response.messages(0).data(), "2");
  EXPECT_EQ(response.position().offset(), 3u);

  grpc::ClientContext ctx2;
  request.clear_since();
  request.set_limit(0);
  request.set_reverse(true);
  ASSERT_TRUE(server_.rooms().History(&ctx2, request, &response).ok());
  ASSERT_THAT(response.messages(), SizeIs(3));
  EXPECT_EQ(response.messages(0).data(), "3");
}

TEST_F(RoomsServiceTest, SubscribeRejectsDuplicateAndTooManyRooms) {
  v1::SubscribeRequest dup = SubscribeTo("x");
  dup.add_rooms()->set_room("x");
  SubscriptionRecorder a(server_.rooms(), dup);
  EXPECT_EQ(a.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::SubscribeRequest many;
  for (int i = 0; i < 101; ++i) many.add_rooms()->set_room(absl::StrCat("r", i));
  SubscriptionRecorder b(server_.rooms(), many);
  EXPECT_EQ(b.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  SubscriptionRecorder c(server_.rooms(), v1::SubscribeRequest());
  EXPECT_EQ(c.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A failed Subscribe leaves nothing behind.
  v1::StatsResponse stats =
      server_.WaitForStats([](const v1::StatsResponse& s) { return s.subscribe_streams() == 0; });
  EXPECT_EQ(stats.subscriptions(), 0u);
  EXPECT_EQ(stats.subscribe_streams(), 0u);
}

TEST_F(RoomsServiceTest, PresenceShowsSubscribersThatAskForIt) {
  v1::SubscribeRequest request = SubscribeTo("p");
  request.mutable_client()->set_user_id("alice");
  request.set_presence(true);
  auto sub = std::make_unique<SubscriptionRecorder>(server_.rooms(), request);
  ASSERT_TRUE(sub->WaitForEvents(2));  // Recovery, then its own JOIN.
  EXPECT_EQ(sub->events()[1].presence().kind(), v1::PresenceEvent::JOIN);

  grpc::ClientContext ctx;
  v1::PresenceRequest preq;
  preq.set_room("p");
  v1::PresenceResponse presence;
  ASSERT_TRUE(server_.rooms().Presence(&ctx, preq, &presence).ok());
  ASSERT_THAT(presence.clients(), SizeIs(1));
  EXPECT_EQ(presence.clients(0).user_id(), "alice");

  grpc::ClientContext ctx2;
  v1::PresenceStatsRequest sreq;
  sreq.set_room("p");
  v1::PresenceStatsResponse pstats;
  ASSERT_TRUE(server_.rooms().PresenceStats(&ctx2, sreq, &pstats).ok());
  EXPECT_EQ(pstats.num_clients(), 1u);
  EXPECT_EQ(pstats.num_users(), 1u);

  sub.reset();
  v1::StatsResponse stats =
      server_.WaitForStats([](const v1::StatsResponse& s) { return s.presence_entries() == 0; });
  EXPECT_EQ(stats.presence_entries(), 0u);
}

TEST_F(RoomsServiceTest, FailedSubscribeLeavesNoPresenceBehind) {
  v1::SubscribeRequest request = SubscribeTo("lobby");
  request.add_rooms()->set_room("bad room!");
  request.mutable_client()->set_client_id("ghost");
  request.set_presence(true);
  SubscriptionRecorder sub(server_.rooms(), request);
  EXPECT_EQ(sub.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::StatsResponse stats = server_.WaitForStats([](const v1::StatsResponse& s) {
    return s.subscribe_streams() == 0 && s.presence_entries() == 0;
  });
  EXPECT_EQ(stats.presence_entries(), 0u);
  EXPECT_EQ(stats.subscriptions(), 0u);
}

TEST_F(RoomsServiceTest, DisconnectByUserEndsTheirSubscription) {
  v1::SubscribeRequest request = SubscribeTo("d");
  request.mutable_client()->set_user_id("mallory");
  SubscriptionRecorder target(server_.rooms(), request);
  SubscriptionRecorder bystander(server_.rooms(), SubscribeTo("d"));
  ASSERT_TRUE(target.WaitForEvents(1));
  ASSERT_TRUE(bystander.WaitForEvents(1));

  grpc::ClientContext ctx;
  v1::DisconnectRequest dreq;
  dreq.set_user_id("mallory");
  dreq.set_reason("banned");
  v1::DisconnectResponse dresp;
  ASSERT_TRUE(server_.rooms().Disconnect(&ctx, dreq, &dresp).ok());
  EXPECT_EQ(dresp.num_disconnected(), 1u);
  grpc::Status s = target.Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("banned"));
  EXPECT_FALSE(bystander.done());

  grpc::ClientContext ctx2;
  v1::DisconnectRequest neither;
  EXPECT_EQ(server_.rooms().Disconnect(&ctx2, neither, &dresp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RoomsServiceTest, PublishStreamAcksEachRequestInOrderAndSurvivesBadOnes) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = server_.rooms().PublishStream(&ctx);
  for (uint64_t id = 1; id <= 5; ++id) {
    v1::PublishRequest request;
    request.set_id(id);
    request.set_room(id == 3 ? "bad room" : "stream");
    request.set_data(absl::StrCat(id));
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  std::vector<v1::PublishAck> acks;
  v1::PublishAck ack;
  while (stream->Read(&ack)) acks.push_back(ack);
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_THAT(acks, SizeIs(5));
  uint64_t expected_offset = 1;
  for (uint64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(acks[i].id(), i + 1);
    if (i + 1 == 3) {
      EXPECT_EQ(acks[i].error().code(), static_cast<uint32_t>(grpc::StatusCode::INVALID_ARGUMENT));
    } else {
      EXPECT_EQ(acks[i].position().offset(), expected_offset++);
    }
  }
}

TEST_F(RoomsServiceTest, PublishStreamKeepsUpWithManyPipelinedRequests) {
  constexpr uint64_t kRequests = 5000;  // More than max_pending_acks.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = server_.rooms().PublishStream(&ctx);
  std::thread writer([&] {
    for (uint64_t id = 1; id <= kRequests; ++id) {
      v1::PublishRequest request;
      request.set_id(id);
      request.set_room("pipelined");
      request.set_data("x");
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
  });
  uint64_t next = 1;
  v1::PublishAck ack;
  while (stream->Read(&ack)) {
    EXPECT_EQ(ack.id(), next);
    EXPECT_EQ(ack.position().offset(), next);
    ++next;
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(next, kRequests + 1);
}

TEST_F(RoomsServiceTest, HealthCheckSaysServing) {
  // grpc.health.v1.Health/Check with an empty HealthCheckRequest; the
  // response {status: SERVING (1)} serializes to the bytes 08 01.
  auto channel = grpc::CreateChannel(server_.address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  auto check = [&]() -> std::string {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::ByteBuffer request, response;
    grpc::Slice empty("", 0);
    request = grpc::ByteBuffer(&empty, 1);
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) {
                     status = s;
                     done.Notify();
                   });
    done.WaitForNotification();
    if (!status.ok()) return absl::StrCat("error ", status.error_code());
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(response.Dump(&slices).ok());
    std::string bytes;
    for (const auto& slice : slices)
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    return bytes;
  };
  EXPECT_EQ(check(), std::string("\x08\x01", 2));
}

class SlowConsumerTest : public RoomsServiceTest {
 protected:
  static CoreOptions SmallQueues() {
    CoreOptions options = TestOptions();
    options.subscribe_queue = {.max_events = 20, .max_bytes = 1 << 20};
    return options;
  }
  SlowConsumerTest() : RoomsServiceTest(SmallQueues()) {}
};

TEST_F(SlowConsumerTest, SlowSubscriberIsEndedAndOthersGetEverything) {
  // Publishes until the core ends the slow stream: how much the transport
  // (HTTP/2 windows, the kernel's socket buffers, which autotune) absorbs
  // before the core's queue fills varies from run to run.
  constexpr int kMaxMessages = 30'000;
  // A channel whose HTTP/2 windows stay small, so that a consumer that does
  // not read really stops the server's writes.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 * 1024);
  auto stub = v1::Rooms::NewStub(
      grpc::CreateCustomChannel(server_.address(), grpc::InsecureChannelCredentials(), args));
  SubscriptionRecorder slow(*stub, SubscribeTo("firehose"), /*read=*/false);
  SubscriptionRecorder fast(server_.rooms(), SubscribeTo("firehose"));
  ASSERT_TRUE(fast.WaitForEvents(1));
  ASSERT_EQ(server_.WaitForStats([](const v1::StatsResponse& s) { return s.subscriptions() == 2; })
                .subscriptions(),
            2u);
  std::string payload(1024, 'x');
  int published = 0;
  while (published < kMaxMessages &&
         (published % 500 != 0 || server_.Stats().slow_consumer_disconnects_total() == 0)) {
    PublishOk("firehose", payload);
    ++published;
  }
  ASSERT_EQ(server_.Stats().slow_consumer_disconnects_total(), 1u)
      << "the slow stream was not ended after " << published << " messages";
  const size_t kMessages = static_cast<size_t>(published);
  ASSERT_TRUE(fast.WaitForMessages(kMessages, absl::Seconds(30)));
  EXPECT_EQ(fast.messages().back().position().offset(), static_cast<uint64_t>(kMessages));

  slow.StartReading();  // Drain what was in flight; then the end.
  grpc::Status s = slow.Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("slow consumer"));
  EXPECT_LT(slow.messages().size(), kMessages);
  // What it did get is a gap-free prefix, so it can resume from the last one.
  std::vector<v1::Message> got = slow.messages();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].position().offset(), i + 1);
  EXPECT_EQ(server_.Stats().slow_consumer_disconnects_total(), 1u);
  EXPECT_FALSE(fast.done());
}

TEST_F(RoomsServiceTest, ShutdownEndsStreamsWithUnavailable) {
  SubscriptionRecorder sub(server_.rooms(), SubscribeTo("bye"));
  ASSERT_TRUE(sub.WaitForEvents(1));
  server_.server().Shutdown();
  grpc::Status s = sub.Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("shutting down"));
}

}  // namespace
}  // namespace roomcast::core
