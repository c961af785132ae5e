// POST /publish without HTTP, the Prometheus page, and the reconnect rule
// read from the proto.
#include "edge/publish.h"

#include <string>

#include "edge/close_codes.h"
#include "edge/hub.h"
#include "edge/metrics.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/support/status.h"
#include "gtest/gtest.h"

namespace roomcast::edge {
namespace {

using ::testing::HasSubstr;

TEST(ParsePublishBodyTest, RoomAndDataAsJsonText) {
  absl::StatusOr<v1::PublishRequest> publish =
      ParsePublishBody(R"({"room":"lobby","data":{"text":"hi"}})");
  ASSERT_TRUE(publish.ok()) << publish.status();
  EXPECT_EQ(publish->room(), "lobby");
  EXPECT_EQ(publish->data(), R"({"text":"hi"})");
}

TEST(ParsePublishBodyTest, UnknownFieldIsInvalidArgument) {
  absl::StatusOr<v1::PublishRequest> publish =
      ParsePublishBody(R"({"room":"lobby","data":1,"extra":2})");
  EXPECT_EQ(publish.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParsePublishBodyTest, BodyThatClosesTheWrapperIsRefused) {
  // Would make {"publish":{...},"ping":{}} if the body were pasted blindly.
  absl::StatusOr<v1::PublishRequest> publish =
      ParsePublishBody(R"({"room":"a","data":1},"ping":{})");
  EXPECT_EQ(publish.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParsePublishBodyTest, NotJsonIsInvalidArgument) {
  EXPECT_EQ(ParsePublishBody("room=lobby").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParsePublishBody("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RenderPublishReplyTest, SuccessIs200WithThePosition) {
  v1::EdgeReply reply;
  reply.mutable_publish()->mutable_position()->set_epoch("e1");
  reply.mutable_publish()->mutable_position()->set_offset(42);
  PublishResponse response = RenderPublishReply(reply);
  EXPECT_EQ(response.status, 200u);
  EXPECT_EQ(response.json, R"({"position":{"epoch":"e1","offset":"42"}})");
}

TEST(RenderPublishReplyTest, ErrorsMapToHttpStatusAndErrorFrame) {
  PublishResponse response =
      RenderPublishReply(ErrorReply(grpc::StatusCode::PERMISSION_DENIED, "no publishing here"));
  EXPECT_EQ(response.status, 403u);
  EXPECT_THAT(response.json, HasSubstr(R"("message":"no publishing here")"));
  EXPECT_THAT(response.json, HasSubstr(R"("code":7)"));
}

TEST(HttpStatusOfTest, EveryMappedCode) {
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::INVALID_ARGUMENT), 400u);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::OUT_OF_RANGE), 400u);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::FAILED_PRECONDITION), 400u);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::PERMISSION_DENIED), 403u);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::NOT_FOUND), 404u);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::RESOURCE_EXHAUSTED), 429u);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::UNAVAILABLE), 503u);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::DEADLINE_EXCEEDED), 504u);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::INTERNAL), 500u);
  EXPECT_EQ(HttpStatusOf(12345), 500u);
}

TEST(MetricsTest, EveryCounterAndTheLinkAppear) {
  EdgeCounters counters;
  counters.ws_connections = 3;
  counters.slow_consumer_total = 2;
  std::string text = RenderMetrics(counters, LinkMetrics{.up = true, .overflow_total = 9});
  EXPECT_THAT(text, HasSubstr("\nroomcast_edge_websocket_connections 3\n"));
  EXPECT_THAT(text, HasSubstr("\nroomcast_edge_slow_consumer_total 2\n"));
  EXPECT_THAT(text, HasSubstr("\nroomcast_edge_core_link_up 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE roomcast_edge_core_link_overflow_total counter\n"
                              "roomcast_edge_core_link_overflow_total 9\n"));
}

// The documented rule, value by value (proto/roomcast/v1/roomcast.proto).
TEST(ReconnectsTest, EveryDisconnectCode) {
  const struct {
    v1::DisconnectCode code;
    bool reconnect;
  } kRule[] = {
      {v1::DISCONNECT_CODE_UNSPECIFIED, false},
      {v1::GOING_AWAY, true},
      {v1::MESSAGE_TOO_BIG, false},
      {v1::INTERNAL_ERROR, true},
      {v1::TRY_AGAIN_LATER, true},
      {v1::RECONNECT, true},
      {v1::SLOW_CONSUMER, true},
      {v1::SERVER_RECONNECT, true},
      {v1::TOKEN_EXPIRED, true},
      {v1::BAD_REQUEST, false},
      {v1::UNAUTHORIZED, false},
      {v1::DISCONNECTED, false},
  };
  const google::protobuf::EnumDescriptor* codes = v1::DisconnectCode_descriptor();
  ASSERT_EQ(codes->value_count(), static_cast<int>(std::size(kRule)))
      << "a DisconnectCode was added: give it a row here";
  for (const auto& row : kRule) {
    EXPECT_EQ(Reconnects(row.code), row.reconnect) << v1::DisconnectCode_Name(row.code);
  }
}

TEST(ReconnectsTest, TheRangesOfTheProtoComment) {
  const google::protobuf::EnumDescriptor* codes = v1::DisconnectCode_descriptor();
  for (int i = 0; i < codes->value_count(); ++i) {
    int number = codes->value(i)->number();
    if (number >= 4000 && number < 4500) {
      EXPECT_TRUE(Reconnects(number)) << number;
    } else if (number >= 4500 && number < 5000) {
      EXPECT_FALSE(Reconnects(number)) << number;
    }
  }
}

TEST(ReconnectsTest, UnknownNumbersDoNotReconnect) {
  EXPECT_FALSE(Reconnects(4499));
  EXPECT_FALSE(Reconnects(-1));
}

TEST(DisconnectFrameTest, CarriesCodeReasonAndRule) {
  v1::ServerFrame frame = DisconnectFrame(v1::SLOW_CONSUMER, "slow");
  EXPECT_EQ(frame.disconnect().code(), v1::SLOW_CONSUMER);
  EXPECT_EQ(frame.disconnect().reason(), "slow");
  EXPECT_TRUE(frame.disconnect().reconnect());
  EXPECT_FALSE(DisconnectFrame(v1::UNAUTHORIZED, "").disconnect().reconnect());
}

}  // namespace
}  // namespace roomcast::edge
