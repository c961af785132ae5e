// The browser frame codec (edge/codec.h). Frames are untrusted input: every
// malformed frame must come back as INVALID_ARGUMENT with a message naming the
// problem (and the request id when it can be read), never a crash or a log
// line. Valid frames must round-trip in both encodings, and room messages must
// reach browsers with their JSON payload verbatim.
#include "edge/codec.h"

#include <boost/json.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::edge {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t k2To53 = uint64_t{1} << 53;

// `levels` nested objects ({"k":...}) or arrays around 1.
std::string Nest(int levels, bool objects) {
  std::string s;
  for (int i = 0; i < levels; ++i) s += objects ? R"({"k":)" : "[";
  s += "1";
  for (int i = 0; i < levels; ++i) s += objects ? "}" : "]";
  return s;
}

// The reference: protobuf's own JSON parser.
google::protobuf::Value ParseValue(absl::string_view json) {
  google::protobuf::Value value;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &value);
  EXPECT_TRUE(status.ok()) << status.ToString() << " for " << json;
  return value;
}

// A browser's strict reading of a server frame: canonical JSON, no unknown fields.
v1::ServerFrame ParseServerJson(absl::string_view json) {
  v1::ServerFrame frame;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &frame, options);
  EXPECT_TRUE(status.ok()) << status.ToString() << " for " << json;
  return frame;
}

v1::ServerFrame ParseServerProto(const std::string& bytes) {
  v1::ServerFrame frame;
  EXPECT_TRUE(frame.ParseFromString(bytes));
  return frame;
}

// What browsers send: canonical JSON.
std::string ToCanonicalJson(const google::protobuf::Message& message) {
  std::string out;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(message, &out).ok());
  return out;
}

class CodecTest : public ::testing::Test {
 protected:
  // Decodes, expects INVALID_ARGUMENT whose message contains `why`; returns
  // the id the codec could read.
  uint64_t ExpectInvalid(absl::string_view payload, Encoding encoding, absl::string_view why) {
    uint64_t id = 12345;  // Must be overwritten.
    absl::StatusOr<v1::ClientFrame> frame = DecodeClientFrame(payload, encoding, &id);
    EXPECT_EQ(frame.status().code(), absl::StatusCode::kInvalidArgument)
        << "payload: " << payload << " -> " << frame.status();
    EXPECT_THAT(std::string(frame.status().message()), HasSubstr(std::string(why)))
        << "payload: " << payload;
    return id;
  }
  uint64_t ExpectJsonInvalid(absl::string_view payload, absl::string_view why) {
    return ExpectInvalid(payload, Encoding::kJson, why);
  }
  uint64_t ExpectBinaryInvalid(absl::string_view payload, absl::string_view why) {
    return ExpectInvalid(payload, Encoding::kProtobuf, why);
  }

  v1::ClientFrame DecodeOk(absl::string_view payload, Encoding encoding) {
    uint64_t id = 12345;
    absl::StatusOr<v1::ClientFrame> frame = DecodeClientFrame(payload, encoding, &id);
    EXPECT_TRUE(frame.ok()) << "payload: " << payload << " -> " << frame.status();
    if (!frame.ok()) return v1::ClientFrame();
    EXPECT_EQ(id, frame->id());
    return *frame;
  }
  v1::ClientFrame DecodeJsonOk(absl::string_view payload) {
    return DecodeOk(payload, Encoding::kJson);
  }

  // Encodes `frame` as a client would, decodes it, expects the same frame.
  void ExpectClientRoundTrip(const v1::ClientFrame& frame, Encoding encoding) {
    const std::string bytes =
        encoding == Encoding::kJson ? ToCanonicalJson(frame) : frame.SerializeAsString();
    v1::ClientFrame decoded = DecodeOk(bytes, encoding);
    EXPECT_TRUE(MessageDifferencer::Equals(decoded, frame))
        << "sent: " << frame.ShortDebugString() << "\ngot: " << decoded.ShortDebugString();
  }

  // Encodes `frame` with the codec, reads it back as a browser would.
  void ExpectServerRoundTrip(const v1::ServerFrame& frame, Encoding encoding) {
    const std::string bytes = EncodeServerFrame(frame, encoding);
    v1::ServerFrame decoded =
        encoding == Encoding::kJson ? ParseServerJson(bytes) : ParseServerProto(bytes);
    EXPECT_TRUE(MessageDifferencer::Equals(decoded, frame))
        << "sent: " << frame.ShortDebugString() << "\ngot: " << decoded.ShortDebugString();
  }

  static v1::ClientFrame JoinFrame() {
    v1::ClientFrame frame;
    frame.set_id(1);
    frame.mutable_join()->set_room("chat:lobby");
    frame.mutable_join()->mutable_since()->set_epoch("e1");
    frame.mutable_join()->mutable_since()->set_offset(k2To53 + 1);
    return frame;
  }
  static v1::ClientFrame LeaveFrame() {
    v1::ClientFrame frame;
    frame.set_id(2);
    frame.mutable_leave()->set_room("chat:lobby");
    return frame;
  }
  static v1::ClientFrame PublishFrame() {
    v1::ClientFrame frame;
    frame.set_id(3);
    frame.mutable_publish()->set_room("chat:lobby");
    *frame.mutable_publish()->mutable_data() =
        ParseValue(R"({"text":"h\u00e9llo \"you\"","n":[1,2.5,-3e10,true,null,{}],"e":[]})");
    return frame;
  }
  static v1::ClientFrame PresenceFrame() {
    v1::ClientFrame frame;
    frame.set_id(4);
    frame.mutable_presence()->set_room("chat:lobby");
    return frame;
  }
  static v1::ClientFrame HistoryFrame() {
    v1::ClientFrame frame;
    frame.set_id(UINT64_MAX);
    frame.mutable_history()->set_room("chat:lobby");
    frame.mutable_history()->mutable_since()->set_epoch("e1");
    frame.mutable_history()->mutable_since()->set_offset(7);
    frame.mutable_history()->set_limit(50);
    frame.mutable_history()->set_reverse(true);
    return frame;
  }
  static v1::ClientFrame PingFrame() {
    v1::ClientFrame frame;
    frame.mutable_ping();
    return frame;
  }

  static v1::Message RoomMessage(std::string data) {
    v1::Message message;
    message.set_room("chat:lobby");
    message.mutable_position()->set_epoch("e1");
    message.mutable_position()->set_offset(3);
    message.set_data(std::move(data));
    message.mutable_publisher()->set_client_id("c1");
    message.mutable_publisher()->set_user_id("u1");
    (*message.mutable_publisher()->mutable_info()->mutable_fields())["name"].set_string_value(
        "Ann");
    message.mutable_time()->set_seconds(1700000000);
    message.mutable_time()->set_nanos(5000000);
    return message;
  }

  // The frame browsers must see for `message`, payload as a Value or in binary.
  static v1::ServerFrame ExpectedMessageFrame(const v1::Message& message, bool as_json) {
    v1::ServerFrame frame;
    v1::ServerMessage* m = frame.mutable_message();
    m->set_room(message.room());
    *m->mutable_position() = message.position();
    *m->mutable_publisher() = message.publisher();
    *m->mutable_time() = message.time();
    if (as_json) {
      *m->mutable_data() = ParseValue(message.data());
    } else {
      m->set_binary(message.data());
    }
    return frame;
  }

  void ExpectFrameEquals(const v1::ServerFrame& got, const v1::ServerFrame& want) {
    EXPECT_TRUE(MessageDifferencer::Equals(got, want))
        << "want: " << want.ShortDebugString() << "\ngot: " << got.ShortDebugString();
  }
};

// ---------------------------------------------------------------------------
// Malformed JSON frames
// ---------------------------------------------------------------------------

TEST_F(CodecTest, RejectsInvalidJson) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":1,"ping":{}]})", "invalid JSON at byte 17"), 1u);
}

TEST_F(CodecTest, RejectsTruncatedJsonAndKeepsTheId) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":7,"join":{"room":"x")", "invalid JSON"), 7u);
}

TEST_F(CodecTest, RejectsSingleQuotesThatProtobufWouldAccept) {
  ExpectJsonInvalid(R"({'id':1,'ping':{}})", "invalid JSON at byte 1");
}

TEST_F(CodecTest, RejectsTrailingCommaThatProtobufWouldAccept) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":1,"ping":{},})", "invalid JSON"), 1u);
}

TEST_F(CodecTest, RejectsComment) {
  ExpectJsonInvalid(R"({"id":1,"ping":{}} /* hi */)", "invalid JSON");
}

TEST_F(CodecTest, RejectsDataAfterTheObject) {
  ExpectJsonInvalid(R"({"id":1,"ping":{}} x)", "data after the value");
}

TEST_F(CodecTest, RejectsTwoConcatenatedObjects) {
  ExpectJsonInvalid(R"({"id":1,"ping":{}}{"id":2,"ping":{}})", "data after the value");
}

TEST_F(CodecTest, RejectsEmptyFrame) { EXPECT_EQ(ExpectJsonInvalid("", "empty frame"), 0u); }

TEST_F(CodecTest, RejectsWhitespaceOnlyFrame) { ExpectJsonInvalid(" \r\n\t ", "empty frame"); }

TEST_F(CodecTest, RejectsUnknownNestedFieldAndKeepsTheId) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":7,"join":{"rooom":"x"}})", "rooom"), 7u);
}

TEST_F(CodecTest, RejectsUnknownTopLevelField) {
  EXPECT_EQ(
      ExpectJsonInvalid(R"({"id":7,"room":"x","join":{"room":"x"}})", R"(unknown field "room")"),
      7u);
}

TEST_F(CodecTest, RejectsUnknownOpAndNamesTheKnownOnes) {
  uint64_t id =
      ExpectJsonInvalid(R"({"subscribe":{"room":"x"},"id":"4"})", R"(unknown field "subscribe")");
  EXPECT_EQ(id, 4u);
  ExpectJsonInvalid(R"({"id":4,"subscribe":{}})",
                    "join, leave, publish, presence, history or ping");
}

TEST_F(CodecTest, RejectsOpWithWrongCase) {
  ExpectJsonInvalid(R"({"id":1,"Join":{"room":"x"}})", R"(unknown field "Join")");
}

TEST_F(CodecTest, RejectsTwoOps) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":5,"join":{"room":"x"},"leave":{"room":"y"}})",
                              "exactly one op, got join and leave"),
            5u);
}

TEST_F(CodecTest, RejectsTheSameOpTwice) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":5,"join":{"room":"x"},"join":{"room":"y"}})",
                              R"(duplicate key "join")"),
            5u);
}

TEST_F(CodecTest, RejectsDuplicateId) {
  ExpectJsonInvalid(R"({"id":1,"id":2,"ping":{}})", R"(duplicate key "id")");
}

TEST_F(CodecTest, RejectsDuplicateKeyInsideAnOp) {
  ExpectJsonInvalid(R"({"id":1,"join":{"room":"a","room":"b"}})", R"(duplicate key "room")");
}

TEST_F(CodecTest, RejectsDuplicateKeyInsidePublishData) {
  ExpectJsonInvalid(R"({"id":1,"publish":{"room":"a","data":{"x":1,"x":2}}})",
                    R"(duplicate key "x")");
}

TEST_F(CodecTest, RejectsRoomAsNumberAndKeepsTheId) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":3,"join":{"room":5}})", "join.room"), 3u);
}

TEST_F(CodecTest, RejectsRoomAsObject) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":3,"leave":{"room":{"name":"x"}}})", "room"), 3u);
}

TEST_F(CodecTest, RejectsOpAsString) {
  ExpectJsonInvalid(R"({"id":3,"join":"chat:lobby"})", "invalid frame");
}

TEST_F(CodecTest, RejectsNegativeIdAndCannotReadIt) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":-1,"ping":{}})", "id"), 0u);
}

TEST_F(CodecTest, RejectsFractionalIdAndCannotReadIt) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":1.5,"ping":{}})", "id"), 0u);
}

TEST_F(CodecTest, RejectsNonNumericStringIdAndCannotReadIt) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":"abc","ping":{}})", "id"), 0u);
}

TEST_F(CodecTest, RejectsStringIdWithSpaces) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":" 7","ping":{}})", "id"), 0u);
}

TEST_F(CodecTest, RejectsBooleanId) { ExpectJsonInvalid(R"({"id":true,"ping":{}})", "id"); }

TEST_F(CodecTest, RejectsIdBeyondUint64AndCannotReadIt) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":"18446744073709551616","ping":{}})", "id"), 0u);
}

TEST_F(CodecTest, RejectsNegativeOffsetInSince) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":8,"join":{"room":"x","since":{"epoch":"e","offset":-3}}})",
                              "join.since.offset"),
            8u);
}

TEST_F(CodecTest, RejectsEmptyObject) { EXPECT_EQ(ExpectJsonInvalid("{}", "frame has no op"), 0u); }

TEST_F(CodecTest, RejectsIdWithoutOpAndKeepsTheId) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":9})", "frame has no op"), 9u);
}

TEST_F(CodecTest, RejectsNullOp) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":9,"ping":null})", "frame has no op"), 9u);
}

TEST_F(CodecTest, RejectsJoinWithoutRoom) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":2,"join":{}})", "join.room is missing or empty"), 2u);
}

TEST_F(CodecTest, RejectsJoinWithEmptyRoom) {
  ExpectJsonInvalid(R"({"id":2,"join":{"room":""}})", "join.room is missing or empty");
}

TEST_F(CodecTest, RejectsLeaveWithoutRoom) {
  ExpectJsonInvalid(R"({"id":2,"leave":{}})", "leave.room is missing or empty");
}

TEST_F(CodecTest, RejectsPublishWithoutRoom) {
  ExpectJsonInvalid(R"({"id":2,"publish":{"data":1}})", "publish.room is missing or empty");
}

TEST_F(CodecTest, RejectsPresenceWithoutRoom) {
  ExpectJsonInvalid(R"({"id":2,"presence":{}})", "presence.room is missing or empty");
}

TEST_F(CodecTest, RejectsHistoryWithoutRoom) {
  ExpectJsonInvalid(R"({"id":2,"history":{"limit":3}})", "history.room is missing or empty");
}

TEST_F(CodecTest, RejectsPublishWithoutData) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":6,"publish":{"room":"x"}})", "publish.data is missing"), 6u);
}

TEST_F(CodecTest, RejectsJsonArrayTopLevel) {
  ExpectJsonInvalid(R"([{"id":1,"ping":{}}])", "must be a JSON object, got an array");
}

TEST_F(CodecTest, RejectsStringTopLevel) {
  ExpectJsonInvalid(R"("ping")", "must be a JSON object, got a string");
}

TEST_F(CodecTest, RejectsNumberTopLevel) {
  ExpectJsonInvalid("42", "must be a JSON object, got a number");
}

TEST_F(CodecTest, RejectsNullTopLevel) {
  ExpectJsonInvalid("null", "must be a JSON object, got null");
}

TEST_F(CodecTest, RejectsPublishDataOneLevelTooDeep) {
  const std::string frame =
      R"({"id":5,"publish":{"room":"x","data":)" + Nest(kMaxDataDepth + 1, true) + "}}";
  EXPECT_EQ(ExpectJsonInvalid(frame, "publish.data may nest at most 24 levels"), 5u);
}

TEST_F(CodecTest, AcceptsPublishDataOfObjectsExactlyAtTheDepthLimit) {
  const std::string data = Nest(kMaxDataDepth, true);
  v1::ClientFrame frame = DecodeJsonOk(R"({"id":5,"publish":{"room":"x","data":)" + data + "}}");
  EXPECT_EQ(ValueToJson(frame.publish().data()), data);
}

TEST_F(CodecTest, AcceptsPublishDataOfArraysExactlyAtTheDepthLimit) {
  const std::string data = Nest(kMaxDataDepth, false);
  v1::ClientFrame frame = DecodeJsonOk(R"({"id":5,"publish":{"room":"x","data":)" + data + "}}");
  EXPECT_EQ(ValueToJson(frame.publish().data()), data);
}

TEST_F(CodecTest, RejectsHugeNestingQuicklyAndKeepsTheId) {
  const std::string frame =
      R"({"id":5,"publish":{"room":"x","data":)" + std::string(1'000'000, '[');
  EXPECT_EQ(ExpectJsonInvalid(frame, "frame nested deeper than 26 levels"), 5u);
}

TEST_F(CodecTest, RejectsDeepNestingInAnotherOp) {
  ExpectJsonInvalid(R"({"id":5,"join":{"room":)" + Nest(40, false) + "}}", "nested deeper");
}

TEST_F(CodecTest, RejectsNonUtf8BytesInAString) {
  EXPECT_EQ(ExpectJsonInvalid("{\"id\":1,\"join\":{\"room\":\"caf\xe9\"}}", "invalid JSON"), 1u);
}

TEST_F(CodecTest, RejectsNonUtf8BytesInAKey) {
  ExpectJsonInvalid("{\"id\":1,\"join\":{\"r\xff\":\"x\"}}", "invalid JSON");
}

TEST_F(CodecTest, RejectsOverlongUtf8Encoding) {
  ExpectJsonInvalid("{\"id\":1,\"join\":{\"room\":\"\xc0\xaf\"}}", "invalid JSON");
}

TEST_F(CodecTest, RejectsLoneSurrogateEscape) {
  ExpectJsonInvalid(R"({"id":1,"join":{"room":"\ud800"}})", "invalid JSON");
}

TEST_F(CodecTest, RejectsNumberBeyondDoubleRange) {
  ExpectJsonInvalid(R"({"id":1,"publish":{"room":"x","data":1e400}})", "out of the range");
}

TEST_F(CodecTest, NullIdOutPointerIsAllowed) {
  EXPECT_FALSE(DecodeClientFrame("{", Encoding::kJson, nullptr).ok());
  EXPECT_TRUE(DecodeClientFrame(R"({"ping":{}})", Encoding::kJson, nullptr).ok());
}

TEST_F(CodecTest, ErrorRepliesToMalformedFramesAreValidJson) {
  const std::string inputs[] = {
      "{\"id\":1,\"j\xc3\xa9\":{}}",
      "{\"id\":1,\"join\":{\"room\":[\"caf\xc3\xa9\"]}}",
      "{\"id\":1,\"join\":{\"r\xc3\xa9\":\"x\"}}",
      "{\"id\":1,\"join\":{\"room\":\"\xff\"}}",
      std::string("{\"id\":1,\"\0\":1}", 14),
  };
  for (const std::string& input : inputs) {
    uint64_t id = 0;
    absl::StatusOr<v1::ClientFrame> frame = DecodeClientFrame(input, Encoding::kJson, &id);
    ASSERT_FALSE(frame.ok()) << input;
    const std::string reply =
        EncodeServerFrame(ErrorFrame(DecodeError{id, frame.status()}), Encoding::kJson);
    boost::json::error_code ec;
    boost::json::parse(reply, ec);
    EXPECT_FALSE(ec) << reply;
    EXPECT_EQ(ParseServerJson(reply).error().code(), 3u) << reply;
  }
}

// ---------------------------------------------------------------------------
// Ids that can be read
// ---------------------------------------------------------------------------

TEST_F(CodecTest, AcceptsIdAsDecimalString) {
  EXPECT_EQ(DecodeJsonOk(R"({"id":"7","ping":{}})").id(), 7u);
}

TEST_F(CodecTest, AcceptsMaxUint64IdAsNumberAndAsString) {
  EXPECT_EQ(DecodeJsonOk(R"({"id":18446744073709551615,"ping":{}})").id(), UINT64_MAX);
  EXPECT_EQ(DecodeJsonOk(R"({"id":"18446744073709551615","ping":{}})").id(), UINT64_MAX);
}

TEST_F(CodecTest, ReadsMaxUint64IdFromMalformedFrame) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":"18446744073709551615","pong":{}})", "pong"), UINT64_MAX);
}

TEST_F(CodecTest, ReadsIdGivenAfterTheProblem) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"join":{"rooom":"x"},"id":11})", "rooom"), 11u);
}

TEST_F(CodecTest, DoesNotReadANestedId) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"join":{"id":11}})", "id"), 0u);
}

TEST_F(CodecTest, ReadsIntegralFloatIdLikeProtobuf) {
  EXPECT_EQ(DecodeJsonOk(R"({"id":7.0,"ping":{}})").id(), 7u);
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":1e2,"pong":{}})", "pong"), 100u);
}

TEST_F(CodecTest, ReadsIdFromEscapedString) {
  EXPECT_EQ(ExpectJsonInvalid(R"({"id":"\u0031\u0032\u0033","pong":{}})", "pong"), 123u);
}

// ---------------------------------------------------------------------------
// Malformed protobuf frames
// ---------------------------------------------------------------------------

TEST_F(CodecTest, RejectsBinaryGarbage) {
  ExpectBinaryInvalid(absl::string_view("\xff\xff\xff\xff\xff\x00\x01", 7),
                      "invalid protobuf frame");
}

TEST_F(CodecTest, RejectsJsonTextSentAsBinary) {
  ExpectBinaryInvalid(R"({"id":1,"ping":{}})", "invalid protobuf frame");
}

TEST_F(CodecTest, RejectsTruncatedBinaryAndKeepsTheId) {
  v1::ClientFrame frame = JoinFrame();
  frame.set_id(42);
  std::string bytes = frame.SerializeAsString();
  bytes.pop_back();
  EXPECT_EQ(ExpectBinaryInvalid(bytes, "invalid protobuf frame"), 42u);
}

TEST_F(CodecTest, RejectsBinaryUnknownTopLevelFieldAndKeepsTheId) {
  std::string bytes = PingFrame().SerializeAsString();
  v1::ClientFrame with_id;
  with_id.set_id(13);
  bytes += with_id.SerializeAsString();
  bytes += "\xc8\x06\x01";  // Field 105, varint 1.
  EXPECT_EQ(ExpectBinaryInvalid(
                bytes, "invalid protobuf frame: unknown field 105 in roomcast.v1.ClientFrame"),
            13u);
}

TEST_F(CodecTest, RejectsBinaryUnknownNestedField) {
  v1::ClientFrame frame;
  frame.set_id(14);
  frame.mutable_join()->set_room("x");
  frame.mutable_join()
      ->GetReflection()
      ->MutableUnknownFields(frame.mutable_join())
      ->AddVarint(9, 1);
  EXPECT_EQ(
      ExpectBinaryInvalid(frame.SerializeAsString(), "unknown field 9 in roomcast.v1.JoinRequest"),
      14u);
}

TEST_F(CodecTest, RejectsBinaryFieldWithWrongWireType) {
  // Field 1 (id, a varint) sent length-delimited: protobuf would keep it as unknown.
  ExpectBinaryInvalid(absl::string_view("\x0a\x01\x07\x3a\x00", 5),
                      "wrong wire type for roomcast.v1.ClientFrame.id");
}

TEST_F(CodecTest, RejectsBinaryInvalidUtf8RoomWithoutLogging) {
  v1::ClientFrame frame;
  frame.set_id(16);
  frame.mutable_join()->set_room("caf\xe9");
  ::testing::internal::CaptureStderr();
  const std::string bytes = frame.SerializePartialAsString();
  ::testing::internal::GetCapturedStderr();  // Serializing logs; not the codec.
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(ExpectBinaryInvalid(bytes, "invalid UTF-8 in roomcast.v1.JoinRequest.room"), 16u);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

TEST_F(CodecTest, RejectsBinaryInvalidUtf8InDataKeyWithoutLogging) {
  v1::ClientFrame frame;
  frame.mutable_publish()->set_room("x");
  (*frame.mutable_publish()->mutable_data()->mutable_struct_value()->mutable_fields())["\xff"]
      .set_bool_value(true);
  ::testing::internal::CaptureStderr();
  const std::string bytes = frame.SerializePartialAsString();
  ::testing::internal::GetCapturedStderr();  // Serializing logs; not the codec.
  ::testing::internal::CaptureStderr();
  ExpectBinaryInvalid(bytes, "invalid UTF-8 in google.protobuf.Struct.FieldsEntry.key");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

TEST_F(CodecTest, RejectsEmptyBinaryFrame) { ExpectBinaryInvalid("", "frame has no op"); }

TEST_F(CodecTest, RejectsBinaryJoinWithoutRoomAndKeepsTheId) {
  v1::ClientFrame frame;
  frame.set_id(15);
  frame.mutable_join();
  EXPECT_EQ(ExpectBinaryInvalid(frame.SerializeAsString(), "join.room is missing"), 15u);
}

TEST_F(CodecTest, RejectsBinaryPublishWithoutData) {
  v1::ClientFrame frame;
  frame.mutable_publish()->set_room("x");
  ExpectBinaryInvalid(frame.SerializeAsString(), "publish.data is missing");
}

TEST_F(CodecTest, RejectsBinaryPublishDataOneLevelTooDeep) {
  v1::ClientFrame frame;
  frame.mutable_publish()->set_room("x");
  *frame.mutable_publish()->mutable_data() = ParseValue(Nest(kMaxDataDepth + 1, false));
  ExpectBinaryInvalid(frame.SerializeAsString(), "publish.data nests deeper than 24 levels");
}

TEST_F(CodecTest, RejectsBinaryNonFiniteNumber) {
  v1::ClientFrame frame;
  frame.mutable_publish()->set_room("x");
  frame.mutable_publish()->mutable_data()->mutable_list_value()->add_values()->set_number_value(
      std::numeric_limits<double>::infinity());
  ExpectBinaryInvalid(frame.SerializeAsString(), "not finite");
}

TEST_F(CodecTest, RejectsBinaryValueWithNoKind) {
  v1::ClientFrame frame;
  frame.mutable_publish()->set_room("x");
  (*frame.mutable_publish()->mutable_data()->mutable_struct_value()->mutable_fields())["a"];
  ExpectBinaryInvalid(frame.SerializeAsString(), "value with no kind");
}

TEST_F(CodecTest, RejectsBinaryInvalidNullValue) {
  v1::ClientFrame frame;
  frame.mutable_publish()->set_room("x");
  frame.mutable_publish()->mutable_data()->set_null_value(google::protobuf::NullValue(5));
  ExpectBinaryInvalid(frame.SerializeAsString(), "invalid null");
}

TEST_F(CodecTest, NeverCrashesOrLogsOnRandomBytes) {
  std::mt19937 random(20260101);
  const std::string valid_json = ToCanonicalJson(PublishFrame());
  const std::string valid_binary = PublishFrame().SerializeAsString();
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 3000; ++i) {
    std::string bytes;
    if (i % 3 == 0) {
      bytes.resize(random() % 64);
      for (char& c : bytes) c = static_cast<char>(random());
    } else {
      bytes = i % 3 == 1 ? valid_json : valid_binary;
      for (int flips = 1 + random() % 3; flips > 0; --flips) {
        bytes[random() % bytes.size()] = static_cast<char>(random());
      }
    }
    for (Encoding encoding : {Encoding::kJson, Encoding::kProtobuf}) {
      absl::StatusOr<v1::ClientFrame> frame = DecodeClientFrame(bytes, encoding, nullptr);
      if (!frame.ok()) {
        ASSERT_EQ(frame.status().code(), absl::StatusCode::kInvalidArgument) << frame.status();
      }
    }
  }
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

// ---------------------------------------------------------------------------
// Client frames: every op, both encodings
// ---------------------------------------------------------------------------

TEST_F(CodecTest, DecodesJoinAsABrowserWritesIt) {
  v1::ClientFrame frame =
      DecodeJsonOk(R"({"id":1,"join":{"room":"chat:lobby","since":{"epoch":"e1","offset":3}}})");
  EXPECT_EQ(frame.id(), 1u);
  EXPECT_EQ(frame.join().room(), "chat:lobby");
  EXPECT_EQ(frame.join().since().epoch(), "e1");
  EXPECT_EQ(frame.join().since().offset(), 3u);
}

TEST_F(CodecTest, DecodesOffsetGivenAsString) {
  v1::ClientFrame frame = DecodeJsonOk(
      R"({"id":1,"join":{"room":"r","since":{"epoch":"e1","offset":"9007199254740993"}}})");
  EXPECT_EQ(frame.join().since().offset(), k2To53 + 1);
}

TEST_F(CodecTest, DecodesFrameWithoutIdAsIdZero) {
  v1::ClientFrame frame = DecodeJsonOk(R"({"ping":{}})");
  EXPECT_EQ(frame.id(), 0u);
  EXPECT_EQ(frame.op_case(), v1::ClientFrame::kPing);
}

TEST_F(CodecTest, AcceptsPublishWithNullData) {
  v1::ClientFrame frame = DecodeJsonOk(R"({"id":1,"publish":{"room":"r","data":null}})");
  EXPECT_EQ(frame.publish().data().kind_case(), google::protobuf::Value::kNullValue);
}

TEST_F(CodecTest, RoundTripsJoinJson) { ExpectClientRoundTrip(JoinFrame(), Encoding::kJson); }
TEST_F(CodecTest, RoundTripsJoinProtobuf) {
  ExpectClientRoundTrip(JoinFrame(), Encoding::kProtobuf);
}
TEST_F(CodecTest, RoundTripsLeaveJson) { ExpectClientRoundTrip(LeaveFrame(), Encoding::kJson); }
TEST_F(CodecTest, RoundTripsLeaveProtobuf) {
  ExpectClientRoundTrip(LeaveFrame(), Encoding::kProtobuf);
}
TEST_F(CodecTest, RoundTripsPublishJson) { ExpectClientRoundTrip(PublishFrame(), Encoding::kJson); }
TEST_F(CodecTest, RoundTripsPublishProtobuf) {
  ExpectClientRoundTrip(PublishFrame(), Encoding::kProtobuf);
}
TEST_F(CodecTest, RoundTripsPresenceJson) {
  ExpectClientRoundTrip(PresenceFrame(), Encoding::kJson);
}
TEST_F(CodecTest, RoundTripsPresenceProtobuf) {
  ExpectClientRoundTrip(PresenceFrame(), Encoding::kProtobuf);
}
TEST_F(CodecTest, RoundTripsHistoryJson) { ExpectClientRoundTrip(HistoryFrame(), Encoding::kJson); }
TEST_F(CodecTest, RoundTripsHistoryProtobuf) {
  ExpectClientRoundTrip(HistoryFrame(), Encoding::kProtobuf);
}
TEST_F(CodecTest, RoundTripsPingJson) { ExpectClientRoundTrip(PingFrame(), Encoding::kJson); }
TEST_F(CodecTest, RoundTripsPingProtobuf) {
  ExpectClientRoundTrip(PingFrame(), Encoding::kProtobuf);
}

// ---------------------------------------------------------------------------
// Server frames
// ---------------------------------------------------------------------------

TEST_F(CodecTest, EncodesPongAsCanonicalJson) {
  v1::ServerFrame frame;
  frame.set_id(5);
  frame.mutable_reply()->mutable_pong();
  EXPECT_EQ(EncodeServerFrame(frame, Encoding::kJson), R"({"id":"5","reply":{"pong":{}}})");
}

TEST_F(CodecTest, EncodesJoinReplyWithOffsetAbove2To53AsString) {
  v1::ServerFrame frame;
  frame.set_id(1);
  frame.mutable_reply()->mutable_join()->set_recovered(true);
  frame.mutable_reply()->mutable_join()->mutable_position()->set_epoch("e1");
  frame.mutable_reply()->mutable_join()->mutable_position()->set_offset(k2To53 + 1);
  EXPECT_EQ(EncodeServerFrame(frame, Encoding::kJson),
            R"({"id":"1","reply":{"join":{"recovered":true,)"
            R"("position":{"epoch":"e1","offset":"9007199254740993"}}}})");
}

TEST_F(CodecTest, EncodesErrorFrameWithNumericCode) {
  EXPECT_EQ(EncodeServerFrame(ErrorFrame(7, absl::NotFoundError("no such room")), Encoding::kJson),
            R"({"id":"7","error":{"code":5,"message":"no such room"}})");
}

TEST_F(CodecTest, ErrorFrameFromDecodeErrorCarriesTheId) {
  v1::ServerFrame frame = ErrorFrame(DecodeError{9, absl::InvalidArgumentError("bad")});
  EXPECT_EQ(frame.id(), 9u);
  EXPECT_EQ(frame.error().code(), 3u);
  EXPECT_EQ(frame.error().message(), "bad");
}

TEST_F(CodecTest, EncodesDisconnectWithCodeName) {
  v1::ServerFrame frame;
  frame.mutable_disconnect()->set_code(v1::GOING_AWAY);
  frame.mutable_disconnect()->set_reason("restart");
  frame.mutable_disconnect()->set_reconnect(true);
  EXPECT_EQ(EncodeServerFrame(frame, Encoding::kJson),
            R"({"disconnect":{"code":"GOING_AWAY","reason":"restart","reconnect":true}})");
}

TEST_F(CodecTest, EncodesPresenceEvent) {
  v1::ServerFrame frame;
  frame.mutable_presence()->set_room("chat:lobby");
  frame.mutable_presence()->set_kind(v1::PresenceEvent::JOIN);
  frame.mutable_presence()->mutable_client()->set_client_id("c1");
  EXPECT_EQ(EncodeServerFrame(frame, Encoding::kJson),
            R"({"presence":{"room":"chat:lobby","kind":"JOIN","client":{"clientId":"c1"}}})");
}

TEST_F(CodecTest, EncodesUnprintableFrameAsInternalError) {
  v1::ServerFrame frame;
  frame.set_id(3);
  frame.mutable_message()->mutable_time()->set_seconds(int64_t{1} << 60);  // Out of range.
  ::testing::internal::CaptureStderr();  // Protobuf warns about the aborted print.
  const std::string out = EncodeServerFrame(frame, Encoding::kJson);
  ::testing::internal::GetCapturedStderr();
  v1::ServerFrame got = ParseServerJson(out);
  EXPECT_EQ(got.id(), 3u);
  EXPECT_EQ(got.error().code(), 13u);
}

TEST_F(CodecTest, RoundTripsEveryServerFrameKindInBothEncodings) {
  std::vector<v1::ServerFrame> frames(9);
  frames[0].set_id(1);
  *frames[0].mutable_reply()->mutable_join()->mutable_position() = JoinFrame().join().since();
  frames[1].set_id(2);
  frames[1].mutable_reply()->mutable_leave();
  frames[2].set_id(3);
  frames[2].mutable_reply()->mutable_publish()->mutable_position()->set_offset(UINT64_MAX);
  frames[3].set_id(4);
  frames[3].mutable_reply()->mutable_presence()->add_clients()->set_user_id("u1");
  frames[4].set_id(5);
  *frames[4].mutable_reply()->mutable_history()->add_messages() =
      ToServerMessage(RoomMessage(R"({"a":[1,"b"]})"));
  *frames[4].mutable_reply()->mutable_history()->add_messages() =
      ToServerMessage(RoomMessage(std::string("\x00\x01", 2)));
  frames[4].mutable_reply()->mutable_history()->mutable_position()->set_offset(2);
  frames[5].set_id(6);
  frames[5].mutable_reply()->mutable_pong();
  frames[6] = ErrorFrame(7, absl::UnavailableError("shutting down"));
  frames[7].mutable_presence()->set_kind(v1::PresenceEvent::LEAVE);
  frames[8].mutable_disconnect()->set_code(v1::SLOW_CONSUMER);
  for (const v1::ServerFrame& frame : frames) {
    ExpectServerRoundTrip(frame, Encoding::kJson);
    ExpectServerRoundTrip(frame, Encoding::kProtobuf);
  }
}

TEST_F(CodecTest, HistoryReplyPrintsDataAtTheDepthLimit) {
  v1::ServerFrame frame;
  frame.set_id(1);
  *frame.mutable_reply()->mutable_history()->add_messages() =
      ToServerMessage(RoomMessage(Nest(kMaxDataDepth, true)));
  ASSERT_TRUE(frame.reply().history().messages(0).has_data());
  ExpectServerRoundTrip(frame, Encoding::kJson);
  ExpectServerRoundTrip(frame, Encoding::kProtobuf);
}

// ---------------------------------------------------------------------------
// Room messages
// ---------------------------------------------------------------------------

TEST_F(CodecTest, MessageFrameSplicesJsonObjectPayloadVerbatim) {
  const std::string payload =
      R"({"text":"hi \u00e9","n":[1,2.50,{"x":null}],"big":12345678901234567890})";
  const v1::Message message = RoomMessage(payload);
  const std::string out = EncodeMessageFrame(message, Encoding::kJson);
  EXPECT_THAT(out, HasSubstr(R"("data":)" + payload + "}}"));
  EXPECT_THAT(out, Not(HasSubstr("binary")));
  ExpectFrameEquals(ParseServerJson(out), ExpectedMessageFrame(message, /*as_json=*/true));
}

TEST_F(CodecTest, MessageFrameHasTheDocumentedLayout) {
  EXPECT_EQ(EncodeMessageFrame(RoomMessage(R"({"a":1})"), Encoding::kJson),
            R"({"message":{"room":"chat:lobby","position":{"epoch":"e1","offset":"3"},)"
            R"("publisher":{"clientId":"c1","userId":"u1","info":{"name":"Ann"}},)"
            R"("time":"2023-11-14T22:13:20.005Z","data":{"a":1}}})");
}

TEST_F(CodecTest, MessageFrameTurnsPayloadLineBreaksIntoSpaces) {
  // A JSON batch separates frames by '\n', so no frame may contain one.
  const std::string payload = " {\r\n  \"a\" : [ 1 , 2 ],\"s\":\"x\\ny\"\n}\n";
  const std::string out = EncodeMessageFrame(RoomMessage(payload), Encoding::kJson);
  EXPECT_THAT(out, HasSubstr(R"("data": {    "a" : [ 1 , 2 ],"s":"x\ny" } }})"));
  EXPECT_EQ(out.find('\n'), std::string::npos);
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_EQ(ParseServerJson(out).message().data().struct_value().fields().at("s").string_value(),
            "x\ny");
  EXPECT_EQ(ParseServerJson(out)
                .message()
                .data()
                .struct_value()
                .fields()
                .at("a")
                .list_value()
                .values_size(),
            2);
}

TEST_F(CodecTest, MessageFrameWithOnlyAPayload) {
  v1::Message message;
  message.set_data("[true]");
  EXPECT_EQ(EncodeMessageFrame(message, Encoding::kJson), R"({"message":{"data":[true]}})");
}

TEST_F(CodecTest, MessageFrameSplicesScalarPayloads) {
  for (const std::string payload : {R"("hello")", "42", "-0.5e3", "null", "true"}) {
    const v1::Message message = RoomMessage(payload);
    const std::string out = EncodeMessageFrame(message, Encoding::kJson);
    EXPECT_THAT(out, HasSubstr(R"("data":)" + payload + "}}"));
    ExpectFrameEquals(ParseServerJson(out), ExpectedMessageFrame(message, /*as_json=*/true));
  }
}

TEST_F(CodecTest, MessageFrameSendsNonJsonPayloadAsBase64Binary) {
  const v1::Message message = RoomMessage(std::string("\x00\xffhello", 7));
  const std::string out = EncodeMessageFrame(message, Encoding::kJson);
  EXPECT_THAT(out, HasSubstr(R"("binary":"AP9oZWxsbw==")"));
  EXPECT_THAT(out, Not(HasSubstr(R"("data")")));
  ExpectFrameEquals(ParseServerJson(out), ExpectedMessageFrame(message, /*as_json=*/false));
}

TEST_F(CodecTest, MessageFrameSendsTruncatedJsonAsBinary) {
  const std::string out = EncodeMessageFrame(RoomMessage(R"({"a":)"), Encoding::kJson);
  EXPECT_EQ(ParseServerJson(out).message().binary(), R"({"a":)");
}

TEST_F(CodecTest, MessageFrameSendsPlainTextAsBinary) {
  const std::string out = EncodeMessageFrame(RoomMessage("hello world"), Encoding::kJson);
  EXPECT_EQ(ParseServerJson(out).message().binary(), "hello world");
}

TEST_F(CodecTest, MessageFrameSendsDuplicateKeyJsonAsBinaryInBothEncodings) {
  // Protobuf cannot represent it as a Value: both encodings agree on binary.
  const std::string payload = R"({"a":1,"a":2})";
  EXPECT_EQ(
      ParseServerJson(EncodeMessageFrame(RoomMessage(payload), Encoding::kJson)).message().binary(),
      payload);
  EXPECT_EQ(ParseServerProto(EncodeMessageFrame(RoomMessage(payload), Encoding::kProtobuf))
                .message()
                .binary(),
            payload);
}

TEST_F(CodecTest, MessageFrameSendsTooDeepJsonAsBinaryInBothEncodings) {
  const std::string payload = Nest(kMaxDataDepth + 1, true);
  EXPECT_EQ(
      ParseServerJson(EncodeMessageFrame(RoomMessage(payload), Encoding::kJson)).message().binary(),
      payload);
  EXPECT_EQ(ParseServerProto(EncodeMessageFrame(RoomMessage(payload), Encoding::kProtobuf))
                .message()
                .binary(),
            payload);
}

TEST_F(CodecTest, MessageFrameSplicesJsonExactlyAtTheDepthLimit) {
  const std::string payload = Nest(kMaxDataDepth, true);
  const v1::Message message = RoomMessage(payload);
  ExpectFrameEquals(ParseServerJson(EncodeMessageFrame(message, Encoding::kJson)),
                    ExpectedMessageFrame(message, /*as_json=*/true));
  ExpectFrameEquals(ParseServerProto(EncodeMessageFrame(message, Encoding::kProtobuf)),
                    ExpectedMessageFrame(message, /*as_json=*/true));
}

TEST_F(CodecTest, MessageFrameWithEmptyPayloadHasNeitherDataNorBinary) {
  const std::string out = EncodeMessageFrame(RoomMessage(""), Encoding::kJson);
  EXPECT_THAT(out, Not(HasSubstr(R"("data")")));
  EXPECT_THAT(out, Not(HasSubstr(R"("binary")")));
}

TEST_F(CodecTest, MessageFrameRendersOffsetAbove2To53AsString) {
  v1::Message message = RoomMessage(R"({"a":1})");
  message.mutable_position()->set_offset(k2To53 + 1);
  const std::string out = EncodeMessageFrame(message, Encoding::kJson);
  EXPECT_THAT(out, HasSubstr(R"("offset":"9007199254740993")"));
  EXPECT_EQ(ParseServerJson(out).message().position().offset(), k2To53 + 1);
}

TEST_F(CodecTest, MessageFrameProtobufCarriesTheValue) {
  const v1::Message message = RoomMessage(R"({"text":"hi","n":[1,2.5,{"x":null}]})");
  const v1::ServerFrame got = ParseServerProto(EncodeMessageFrame(message, Encoding::kProtobuf));
  EXPECT_TRUE(got.message().binary().empty());
  ExpectFrameEquals(got, ExpectedMessageFrame(message, /*as_json=*/true));
}

TEST_F(CodecTest, MessageFrameProtobufCarriesNonJsonAsBinary) {
  const v1::Message message = RoomMessage(std::string("\x00\xffhello", 7));
  const v1::ServerFrame got = ParseServerProto(EncodeMessageFrame(message, Encoding::kProtobuf));
  EXPECT_FALSE(got.message().has_data());
  ExpectFrameEquals(got, ExpectedMessageFrame(message, /*as_json=*/false));
}

TEST_F(CodecTest, MessageFrameProtobufAndJsonAgree) {
  const v1::Message message = RoomMessage(R"([1,{"k":"v"},"s",false,null])");
  ExpectFrameEquals(ParseServerProto(EncodeMessageFrame(message, Encoding::kProtobuf)),
                    ParseServerJson(EncodeMessageFrame(message, Encoding::kJson)));
}

TEST_F(CodecTest, ToServerMessageBuildsTheSameValueAsProtobufsParser) {
  const std::string payloads[] = {
      "0.1",
      "1e-400",
      "12345678901234567890",
      "123456789012345678901234567890",
      "1.7976931348623157e308",
      "-2.2250738585072014e-308",
      "9007199254740993",
      "5e-324",
      R"("\u0000\ud83d\ude00\n\"")",
      "\"\xf0\x9f\x98\x80 caf\xc3\xa9\"",
      R"({"":[],"a":{"b":{}}})",
      R"([[],[{}],null,false])",
  };
  for (const std::string& payload : payloads) {
    const v1::ServerMessage got = ToServerMessage(RoomMessage(payload));
    ASSERT_TRUE(got.has_data()) << payload;
    EXPECT_TRUE(MessageDifferencer::Equals(got.data(), ParseValue(payload)))
        << payload << " -> " << got.data().ShortDebugString();
  }
}

TEST_F(CodecTest, ToServerMessageKeepsNegativeZero) {
  const v1::ServerMessage got = ToServerMessage(RoomMessage("-0"));
  EXPECT_EQ(got.data().number_value(), 0.0);
  EXPECT_TRUE(std::signbit(got.data().number_value()));
}

// ---------------------------------------------------------------------------
// ValueToJson: the publish path browser -> core -> browsers
// ---------------------------------------------------------------------------

TEST_F(CodecTest, ValueToJsonIsCompactJson) {
  v1::ClientFrame frame =
      DecodeJsonOk(R"({"id":1,"publish":{"room":"r","data":{ "b" : [1, "x", true, null] }}})");
  EXPECT_EQ(ValueToJson(frame.publish().data()), R"({"b":[1,"x",true,null]})");
}

TEST_F(CodecTest, PublishedValueReachesBrowsersAsTheSameValue) {
  const v1::ClientFrame published = PublishFrame();
  v1::ClientFrame decoded = DecodeJsonOk(ToCanonicalJson(published));
  v1::Message stored = RoomMessage(ValueToJson(decoded.publish().data()));
  EXPECT_TRUE(IsBrowserJson(stored.data()));
  for (Encoding encoding : {Encoding::kJson, Encoding::kProtobuf}) {
    const std::string out = EncodeMessageFrame(stored, encoding);
    v1::ServerFrame got =
        encoding == Encoding::kJson ? ParseServerJson(out) : ParseServerProto(out);
    EXPECT_TRUE(MessageDifferencer::Equals(got.message().data(), published.publish().data()))
        << got.message().data().ShortDebugString();
  }
}

TEST_F(CodecTest, ValueToJsonOfEmptyValueIsNull) {
  EXPECT_EQ(ValueToJson(google::protobuf::Value()), "null");
}

TEST_F(CodecTest, ValueToJsonOfStructWithEmptyValueIsValidJson) {
  google::protobuf::Value value;
  (*value.mutable_struct_value()->mutable_fields())["a"];
  EXPECT_EQ(ValueToJson(value), "{}");  // Protobuf skips the kind-less member.
}

TEST_F(CodecTest, ValueToJsonOfLargeNumberIsValidJson) {
  google::protobuf::Value value;
  value.set_number_value(1e300);
  EXPECT_TRUE(IsBrowserJson(ValueToJson(value))) << ValueToJson(value);
}

TEST_F(CodecTest, IsBrowserJsonAcceptsSurroundingWhitespaceOnly) {
  EXPECT_TRUE(IsBrowserJson(" [1] \n"));
  EXPECT_FALSE(IsBrowserJson("[1] x"));
  EXPECT_FALSE(IsBrowserJson(""));
  EXPECT_FALSE(IsBrowserJson("NaN"));
  EXPECT_FALSE(IsBrowserJson("1e400"));
}

// A batch message as the edge writes it: the entries back to back, the first
// JSON entry without its '\n'.
std::string Batch(const std::vector<std::string>& frames, Encoding encoding) {
  std::string message;
  for (const std::string& frame : frames) message += BatchEntry(frame, encoding);
  if (encoding == Encoding::kJson && !message.empty()) message.erase(0, 1);
  return message;
}

TEST_F(CodecTest, JsonBatchIsFramesSeparatedByNewlines) {
  EXPECT_EQ(BatchEntry(R"({"a":1})", Encoding::kJson), "\n{\"a\":1}");
  EXPECT_EQ(Batch({R"({"a":1})"}, Encoding::kJson), R"({"a":1})");  // One frame: its text.
  const std::string batch = Batch({R"({"a":1})", R"({"b":2})"}, Encoding::kJson);
  EXPECT_EQ(batch, "{\"a\":1}\n{\"b\":2}");
  absl::StatusOr<std::vector<absl::string_view>> frames = SplitBatch(batch, Encoding::kJson);
  ASSERT_TRUE(frames.ok()) << frames.status();
  EXPECT_THAT(*frames, ::testing::ElementsAre(R"({"a":1})", R"({"b":2})"));
}

TEST_F(CodecTest, JsonBatchOfMessageFramesSplitsIntoTheFrames) {
  const std::string batch = Batch({EncodeMessageFrame(RoomMessage("[1,\n2]"), Encoding::kJson),
                                   EncodeMessageFrame(RoomMessage("{\n}"), Encoding::kJson)},
                                  Encoding::kJson);
  absl::StatusOr<std::vector<absl::string_view>> frames = SplitBatch(batch, Encoding::kJson);
  ASSERT_TRUE(frames.ok()) << frames.status();
  ASSERT_EQ(frames->size(), 2u);
  EXPECT_EQ(ParseServerJson((*frames)[0]).message().data().list_value().values_size(), 2);
  EXPECT_TRUE(ParseServerJson((*frames)[1]).message().data().has_struct_value());
}

TEST_F(CodecTest, BinaryBatchIsLengthPrefixedFrames) {
  v1::ServerFrame pong;
  pong.set_id(1);
  pong.mutable_reply()->mutable_pong();
  const std::string small = pong.SerializeAsString();
  const std::string large = EncodeMessageFrame(
      RoomMessage(absl::StrCat("\"", std::string(300, 'x'), "\"")), Encoding::kProtobuf);
  ASSERT_GT(large.size(), 127u);  // Needs a two-byte length.
  const std::string batch = Batch({small, large}, Encoding::kProtobuf);
  EXPECT_EQ(static_cast<uint8_t>(batch[0]), small.size());  // One frame has a prefix too.
  EXPECT_EQ(batch.size(), 1 + small.size() + 2 + large.size());
  absl::StatusOr<std::vector<absl::string_view>> frames = SplitBatch(batch, Encoding::kProtobuf);
  ASSERT_TRUE(frames.ok()) << frames.status();
  ASSERT_EQ(frames->size(), 2u);
  EXPECT_EQ((*frames)[0], small);
  EXPECT_EQ((*frames)[1], large);
  EXPECT_EQ(ParseServerProto(std::string((*frames)[1])).message().data().string_value(),
            std::string(300, 'x'));
}

TEST_F(CodecTest, SplitBatchRejectsTruncatedAndEmptyEntries) {
  const std::string truncated = std::string(1, '\x05') + "abc";  // Says 5 bytes, has 3.
  EXPECT_THAT(SplitBatch(truncated, Encoding::kProtobuf).status().message(),
              HasSubstr("truncated frame"));
  EXPECT_THAT(SplitBatch("\x80", Encoding::kProtobuf).status().message(),
              HasSubstr("truncated frame length"));
  EXPECT_THAT(SplitBatch("{}\n\n{}", Encoding::kJson).status().message(), HasSubstr("empty frame"));
  EXPECT_TRUE(SplitBatch("", Encoding::kProtobuf).ok());
}

TEST_F(CodecTest, SseCursorRoundTripsInRoomOrder) {
  SseCursor cursor;
  cursor["b"].set_epoch("e2");
  cursor["b"].set_offset(7);
  cursor["a"].set_epoch("e1");
  cursor["a"].set_offset(0);
  const std::string text = FormatSseCursor({"a", "b", "not-joined"}, cursor);
  EXPECT_EQ(text, "a e1 0,b e2 7");
  SseCursor parsed = ParseSseCursor(text);
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed["b"].epoch(), "e2");
  EXPECT_EQ(parsed["b"].offset(), 7u);
  EXPECT_EQ(SseCursorEntry("b", cursor["b"]), "b e2 7");
}

TEST_F(CodecTest, SseCursorSkipsMalformedEntries) {
  SseCursor parsed = ParseSseCursor("a e1 x, b e2, c e3 4 5,,d e4 9 ,garbage");
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed["d"].offset(), 9u);
  EXPECT_TRUE(ParseSseCursor("").empty());
}

TEST_F(CodecTest, SseEventHasAnIdLineOnlyWithACursor) {
  EXPECT_EQ(SseEvent("a e1 3", R"({"x":1})"), "id: a e1 3\ndata: {\"x\":1}\n\n");
  EXPECT_EQ(SseEvent("", R"({"x":1})"), "data: {\"x\":1}\n\n");
}

}  // namespace
}  // namespace roomcast::edge
