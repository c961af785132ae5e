#include "edge/publish.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "edge/codec.h"
#include "google/protobuf/util/json_util.h"

namespace roomcast::edge {

absl::StatusOr<v1::PublishRequest> ParsePublishBody(absl::string_view body) {
  // The body is a ClientPublishRequest; decoding it as the publish op of a
  // frame applies the same strict rules (and depth limit) as a WebSocket
  // publish.
  uint64_t unused_id = 0;
  absl::StatusOr<v1::ClientFrame> frame =
      DecodeClientFrame(absl::StrCat("{\"publish\":", body, "}"), Encoding::kJson, &unused_id);
  if (!frame.ok()) return absl::InvalidArgumentError(frame.status().message());
  if (!frame->has_publish()) {
    return absl::InvalidArgumentError("body must be {\"room\": \"...\", \"data\": <JSON value>}");
  }
  v1::PublishRequest publish;
  publish.set_room(frame->publish().room());
  publish.set_data(ValueToJson(frame->publish().data()));
  return publish;
}

v1::EdgeReply ErrorReply(uint32_t code, absl::string_view message) {
  v1::EdgeReply reply;
  reply.mutable_error()->set_code(code);
  reply.mutable_error()->set_message(std::string(message));
  return reply;
}

PublishResponse RenderPublishReply(const v1::EdgeReply& reply) {
  PublishResponse response;
  if (!reply.has_error()) {
    auto printed = google::protobuf::util::MessageToJsonString(
        reply.publish(), &response.json, google::protobuf::util::JsonPrintOptions());
    if (printed.ok()) return response;
    // Only a position protobuf cannot print (it never is): say so rather
    // than send a half-written body.
    return RenderPublishReply(
        ErrorReply(static_cast<uint32_t>(absl::StatusCode::kInternal),
                   absl::StrCat("cannot encode the publish result: ", printed.ToString())));
  }
  response.status = HttpStatusOf(reply.error().code());
  v1::ServerFrame frame;
  *frame.mutable_error() = reply.error();
  response.json = EncodeServerFrame(frame, Encoding::kJson);
  return response;
}

unsigned HttpStatusOf(uint32_t grpc_code) {
  switch (static_cast<absl::StatusCode>(grpc_code)) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

}  // namespace roomcast::edge
