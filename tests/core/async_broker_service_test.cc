// The services over a broker that completes later, on its own thread (as a
// NATS broker will): unary calls finish from the completion, PublishStream
// acks keep request order, and a join still pending when its client or
// stream goes away is undone once it took effect, leaving no subscription or
// presence behind.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/connection_registry.h"
#include "core/options.h"
#include "core/policy.h"
#include "core/services.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/core/deferred_broker.h"
#include "tests/core/subscription_recorder.h"

namespace roomcast::core {
namespace {

template <class Pred>
bool WaitUntil(Pred done, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

class AsyncBrokerServiceTest : public ::testing::Test {
 protected:
  AsyncBrokerServiceTest()
      : policy_(options_.engine),
        broker_(&policy_, Clock::Real()),
        context_{.options = &options_,
                 .policy = &policy_,
                 .broker = &broker_,
                 .registry = &registry_,
                 .gauges = &gauges_},
        rooms_(&context_),
        edge_link_(&context_) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&rooms_);
    builder.RegisterService(&edge_link_);
    server_ = builder.BuildAndStart();
    EXPECT_NE(port, 0);
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    rooms_stub_ = v1::Rooms::NewStub(channel);
    edge_stub_ = v1::EdgeLink::NewStub(channel);
  }
  ~AsyncBrokerServiceTest() override {
    broker_.Resume();
    registry_.ShutdownAll();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    broker_.Stop();  // Runs every pending completion before the services go.
  }

  BrokerStats Stats() {
    BrokerStats stats;
    broker_.Stats([&stats](BrokerStats s) { stats = s; });
    return stats;
  }

  CoreOptions options_;
  Policy policy_;
  DeferredBroker broker_;
  ConnectionRegistry registry_;
  QueueGauges gauges_;
  ServiceContext context_;
  RoomsService rooms_;
  EdgeLinkService edge_link_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Rooms::Stub> rooms_stub_;
  std::unique_ptr<v1::EdgeLink::Stub> edge_stub_;
};

TEST_F(AsyncBrokerServiceTest, UnaryCallsAnswerFromTheBrokersCompletion) {
  for (int i = 1; i <= 3; ++i) {
    grpc::ClientContext ctx;
    v1::PublishRequest request;
    request.set_room("lobby");
    request.set_data(absl::StrCat("m", i));
    v1::PublishResponse response;
    ASSERT_TRUE(rooms_stub_->Publish(&ctx, request, &response).ok());
    EXPECT_EQ(response.position().offset(), static_cast<uint64_t>(i));
  }
  grpc::ClientContext ctx;
  v1::HistoryRequest request;
  request.set_room("lobby");
  v1::HistoryResponse response;
  ASSERT_TRUE(rooms_stub_->History(&ctx, request, &response).ok());
  ASSERT_EQ(response.messages_size(), 3);
  EXPECT_EQ(response.messages(2).data(), "m3");
}

TEST_F(AsyncBrokerServiceTest, PublishStreamAcksKeepTheOrderOfTheRequests) {
  grpc::ClientContext ctx;
  auto stream = rooms_stub_->PublishStream(&ctx);
  constexpr int kRequests = 200;
  for (int i = 0; i < kRequests; ++i) {
    v1::PublishRequest request;
    request.set_id(i);
    request.set_room(i % 2 == 0 ? "even" : "odd");
    ASSERT_TRUE(stream->Write(request));
  }
  ASSERT_TRUE(stream->WritesDone());
  v1::PublishAck ack;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(stream->Read(&ack)) << "ack " << i;
    EXPECT_EQ(ack.id(), static_cast<uint64_t>(i));
    EXPECT_EQ(ack.position().offset(), static_cast<uint64_t>(i / 2 + 1));
  }
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(AsyncBrokerServiceTest, EdgeJoinPendingWhenItsClientLeavesIsUndone) {
  grpc::ClientContext ctx;
  auto link = edge_stub_->Link(&ctx);
  v1::EdgeToCore in;
  in.mutable_hello()->set_edge_name("edge");
  ASSERT_TRUE(link->Write(in));
  v1::CoreToEdge out;
  ASSERT_TRUE(link->Read(&out) && out.has_welcome());
  in.Clear();
  in.mutable_client_connected()->mutable_client()->set_client_id("c1");
  ASSERT_TRUE(link->Write(in));

  broker_.Pause();
  in.Clear();
  in.mutable_request()->set_client_id("c1");
  in.mutable_request()->set_request_id(1);
  in.mutable_request()->mutable_join()->set_room("lobby");
  ASSERT_TRUE(link->Write(in));
  ASSERT_TRUE(WaitUntil([&] { return broker_.queued() == 1; }));
  in.Clear();
  in.mutable_client_disconnected()->set_client_id("c1");
  ASSERT_TRUE(link->Write(in));
  // A request of the gone client is refused without the broker: once its
  // reply is here, the disconnect was handled.
  in.Clear();
  in.mutable_request()->set_client_id("c1");
  in.mutable_request()->set_request_id(2);
  in.mutable_request()->mutable_presence()->set_room("lobby");
  ASSERT_TRUE(link->Write(in));
  do {
    ASSERT_TRUE(link->Read(&out));
  } while (!(out.has_reply() && out.reply().request_id() == 2));
  EXPECT_EQ(out.reply().error().code(), static_cast<uint32_t>(grpc::StatusCode::NOT_FOUND));

  broker_.Resume();  // The join takes effect, then is undone.
  EXPECT_TRUE(WaitUntil([&] {
    BrokerStats s = Stats();
    return s.subscriptions == 0 && s.presence_entries == 0 && broker_.queued() == 0;
  })) << Stats().subscriptions
      << " subscriptions, " << Stats().presence_entries << " members";
  ctx.TryCancel();
}

TEST_F(AsyncBrokerServiceTest, SubscribeCancelledWhileJoiningLeavesNothingBehind) {
  broker_.Pause();
  v1::SubscribeRequest request;
  request.add_rooms()->set_room("a");
  request.add_rooms()->set_room("b");
  request.mutable_client()->set_client_id("c9");
  request.set_presence(true);
  auto recorder = std::make_unique<SubscriptionRecorder>(*rooms_stub_, request);
  ASSERT_TRUE(WaitUntil([&] { return broker_.queued() == 1; }));
  recorder->Cancel();
  broker_.Resume();
  EXPECT_EQ(recorder->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitUntil([&] {
    BrokerStats s = Stats();
    return s.subscriptions == 0 && s.presence_entries == 0 && broker_.queued() == 0;
  })) << Stats().subscriptions
      << " subscriptions, " << Stats().presence_entries << " members";
  EXPECT_TRUE(recorder->messages().empty());
}

}  // namespace
}  // namespace roomcast::core
