// Rooms.Subscribe frames on the wire: every stream of a room receives the same
// bytes for an event (serialized once and shared), and a slow consumer's end
// carries a machine-readable StreamEnd{SLOW_CONSUMER} in its status details.
// Raw frames are read with a generic (ByteBuffer) call, exactly as they left
// the core.
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/grpc_status.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "tests/core/subscription_recorder.h"
#include "tests/core/test_server.h"

namespace roomcast::core {
namespace {

// A Subscribe call that records the raw bytes of every response frame.
class RawSubscriber final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  RawSubscriber(grpc::GenericStub& stub, const v1::SubscribeRequest& request) {
    grpc::Slice slice(request.SerializeAsString());
    request_ = grpc::ByteBuffer(&slice, 1);
    stub.PrepareBidiStreamingCall(&ctx_, "/roomcast.v1.Rooms/Subscribe", grpc::StubOptions(), this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    StartCall();
  }
  ~RawSubscriber() override {
    ctx_.TryCancel();
    done_.WaitForNotification();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    std::vector<grpc::Slice> slices;
    std::string frame;
    if (response_.Dump(&slices).ok()) {
      for (const grpc::Slice& s : slices) frame.append(s.begin(), s.end());
    }
    {
      absl::MutexLock lock(&mu_);
      frames_.push_back(std::move(frame));
    }
    StartRead(&response_);
  }
  void OnWriteDone(bool ok) override {}
  void OnDone(const grpc::Status& status) override { done_.Notify(); }

  bool WaitForFrames(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return frames_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  std::vector<std::string> frames() {
    absl::MutexLock lock(&mu_);
    return frames_;
  }

 private:
  grpc::ClientContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  absl::Mutex mu_;
  std::vector<std::string> frames_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

v1::SubscribeRequest SubscribeTo(const std::string& room) {
  v1::SubscribeRequest request;
  request.add_rooms()->set_room(room);
  return request;
}

TEST(SubscribeFramesTest, TwoSubscribersReceiveIdenticalCorrectFrames) {
  TestServer server;
  grpc::GenericStub stub(grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  RawSubscriber a(stub, SubscribeTo("frames"));
  RawSubscriber b(stub, SubscribeTo("frames"));
  ASSERT_TRUE(a.WaitForFrames(1));  // The recovery markers: both joined.
  ASSERT_TRUE(b.WaitForFrames(1));
  v1::Position first, second;
  ASSERT_TRUE(server.Publish("frames", "hello", &first).ok());
  ASSERT_TRUE(server.Publish("frames", std::string(3000, 'z'), &second).ok());
  ASSERT_TRUE(a.WaitForFrames(3));
  ASSERT_TRUE(b.WaitForFrames(3));

  std::vector<std::string> fa = a.frames(), fb = b.frames();
  ASSERT_EQ(fa.size(), 3u);
  ASSERT_EQ(fb.size(), 3u);
  EXPECT_EQ(fa[1], fb[1]);
  EXPECT_EQ(fa[2], fb[2]);
  v1::SubscribeResponse marker, m1, m2;
  ASSERT_TRUE(marker.ParseFromString(fa[0]));
  EXPECT_EQ(marker.recovery().room(), "frames");
  EXPECT_TRUE(marker.recovery().recovered());
  ASSERT_TRUE(m1.ParseFromString(fa[1]));
  ASSERT_TRUE(m2.ParseFromString(fb[2]));
  EXPECT_EQ(m1.message().room(), "frames");
  EXPECT_EQ(m1.message().data(), "hello");
  EXPECT_EQ(m1.message().position().offset(), first.offset());
  EXPECT_EQ(m1.message().position().epoch(), first.epoch());
  EXPECT_EQ(m2.message().data(), std::string(3000, 'z'));
  EXPECT_EQ(m2.message().position().offset(), second.offset());
}

TEST(StreamEndStatusTest, SlowConsumerStatusCarriesStreamEndInRpcStatusDetails) {
  grpc::Status status = SlowConsumerStatus("slow consumer: test");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(), "slow consumer: test");
  v1::RpcStatus details;
  ASSERT_TRUE(details.ParseFromString(status.error_details()));
  EXPECT_EQ(details.code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(details.message(), "slow consumer: test");
  ASSERT_EQ(details.details_size(), 1);
  v1::StreamEnd end;
  ASSERT_TRUE(details.details(0).UnpackTo(&end));
  EXPECT_EQ(end.code(), v1::SLOW_CONSUMER);
}

TEST(StreamEndStatusTest, SlowSubscriberEndsWithAStreamEndDetail) {
  CoreOptions options = TestOptions();
  options.subscribe_queue = {.max_events = 20, .max_bytes = 1 << 20};
  TestServer server(options);
  // Small HTTP/2 windows, so that a consumer that does not read really stops
  // the server's writes.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 * 1024);
  auto stub = v1::Rooms::NewStub(
      grpc::CreateCustomChannel(server.address(), grpc::InsecureChannelCredentials(), args));
  SubscriptionRecorder slow(*stub, SubscribeTo("flood"), /*read=*/false);
  ASSERT_EQ(server.WaitForStats([](const v1::StatsResponse& s) { return s.subscriptions() == 1; })
                .subscriptions(),
            1u);
  std::string payload(1024, 'x');
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(server.Publish("flood", payload).ok());
  slow.StartReading();
  grpc::Status status = slow.Finish();

  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("slow consumer"));
  v1::RpcStatus details;
  ASSERT_TRUE(details.ParseFromString(status.error_details()));
  ASSERT_EQ(details.details_size(), 1);
  EXPECT_EQ(details.details(0).type_url(), "type.googleapis.com/roomcast.v1.StreamEnd");
  v1::StreamEnd end;
  ASSERT_TRUE(details.details(0).UnpackTo(&end));
  EXPECT_EQ(end.code(), v1::SLOW_CONSUMER);
}

}  // namespace
}  // namespace roomcast::core
