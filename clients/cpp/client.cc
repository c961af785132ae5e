#include "roomcast/client.h"

#include <utility>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "clients/cpp/internal.h"
#include "grpcpp/grpcpp.h"

namespace roomcast::client {
namespace internal {

absl::Status ToStatus(const grpc::Status& status) {
  // gRPC and absl share the canonical code numbering.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// Whether the core ended a stream as a slow consumer: the status details
// (a google.rpc.Status, here v1::RpcStatus) carry StreamEnd{SLOW_CONSUMER}.
bool IsSlowConsumer(const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) return false;
  v1::RpcStatus details;
  if (!details.ParseFromString(status.error_details())) return false;
  for (const google::protobuf::Any& any : details.details()) {
    v1::StreamEnd end;
    if (any.UnpackTo(&end) && end.code() == v1::SLOW_CONSUMER) return true;
  }
  return false;
}

// Stream ends after which a subscription reconnects and resumes. Everything
// else (a bad room, OUT_OF_RANGE, ABORTED by Rooms.Disconnect, ...) would
// fail the same way again, or was meant to stop us.
bool Retryable(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:  // shutdown, unreachable, broken, Disconnect(reconnect)
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:    // transport-level stream resets
    case grpc::StatusCode::CANCELLED:  // not by us: the caller checks that first
      return true;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // A slow consumer resumes; "too many rooms" (max_rooms) would not pass.
      return IsSlowConsumer(status);
    default:
      return false;
  }
}

std::string RandomClientId() {
  absl::BitGen gen;
  return absl::StrFormat("cpp-%016x", absl::Uniform<uint64_t>(gen));
}

}  // namespace internal

namespace {

using internal::ToStatus;

const std::string& EmptyString() {
  static const std::string* const kEmpty = new std::string();
  return *kEmpty;
}

}  // namespace

const std::string& Event::room() const {
  switch (type) {
    case Type::kMessage:
      return message.room();
    case Type::kPresence:
      return presence.room();
    case Type::kRecovery:
      return recovery.room();
    default:
      return EmptyString();
  }
}

std::string FormatPosition(const v1::Position& position) {
  return absl::StrCat(position.epoch(), ":", position.offset());
}

absl::StatusOr<v1::Position> ParsePosition(std::string_view text) {
  size_t colon = text.rfind(':');
  uint64_t offset = 0;
  if (colon == std::string_view::npos ||
      !absl::SimpleAtoi(absl::string_view(text.data() + colon + 1, text.size() - colon - 1),
                        &offset)) {
    return absl::InvalidArgumentError(
        absl::StrCat("position \"", absl::string_view(text.data(), text.size()),
                     "\" is not EPOCH:OFFSET (e.g. 9f3c2a1b7d4e6f08:42)"));
  }
  v1::Position position;
  position.set_epoch(std::string(text.substr(0, colon)));
  position.set_offset(offset);
  return position;
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

namespace {

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options) {
  if (options.channel != nullptr) return options.channel;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // Subscriptions pace their reconnects themselves (with jitter); keep
  // gRPC's own connection backoff short so a core that is back is found soon.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  if (options.keepalive_time != absl::InfiniteDuration() &&
      options.keepalive_time > absl::ZeroDuration()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
    // An idle subscription sends no data; keep pinging anyway.
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  return grpc::CreateCustomChannel(options.core, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

Client::Client(ClientOptions options)
    : options_(std::move(options)),
      channel_(MakeChannel(options_)),
      stub_(v1::Rooms::NewStub(channel_)) {}

Client::~Client() = default;

void Client::SetDeadline(grpc::ClientContext& ctx, const CallOptions& call) const {
  absl::Duration timeout =
      call.timeout == absl::ZeroDuration() ? options_.call_timeout : call.timeout;
  if (timeout == absl::InfiniteDuration()) return;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::StatusOr<v1::Position> Client::Publish(std::string_view room, std::string_view data,
                                             const CallOptions& call) {
  v1::PublishRequest request;
  request.set_room(std::string(room));
  request.set_data(std::string(data));
  return Publish(request, call);
}

absl::StatusOr<v1::Position> Client::Publish(const v1::PublishRequest& request,
                                             const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::PublishResponse response;
  grpc::Status status = stub_->Publish(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return std::move(*response.mutable_position());
}

absl::StatusOr<v1::HistoryResponse> Client::History(const v1::HistoryRequest& request,
                                                    const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::HistoryResponse response;
  grpc::Status status = stub_->History(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return response;
}

absl::StatusOr<std::vector<v1::ClientInfo>> Client::Presence(std::string_view room,
                                                             const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::PresenceRequest request;
  request.set_room(std::string(room));
  v1::PresenceResponse response;
  grpc::Status status = stub_->Presence(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return std::vector<v1::ClientInfo>(std::make_move_iterator(response.mutable_clients()->begin()),
                                     std::make_move_iterator(response.mutable_clients()->end()));
}

absl::StatusOr<v1::PresenceStatsResponse> Client::PresenceStats(std::string_view room,
                                                                const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::PresenceStatsRequest request;
  request.set_room(std::string(room));
  v1::PresenceStatsResponse response;
  grpc::Status status = stub_->PresenceStats(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return response;
}

absl::StatusOr<std::vector<v1::ListRoomsResponse::RoomInfo>> Client::ListRooms(
    std::string_view prefix, const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::ListRoomsRequest request;
  request.set_prefix(std::string(prefix));
  v1::ListRoomsResponse response;
  grpc::Status status = stub_->ListRooms(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return std::vector<v1::ListRoomsResponse::RoomInfo>(
      std::make_move_iterator(response.mutable_rooms()->begin()),
      std::make_move_iterator(response.mutable_rooms()->end()));
}

absl::StatusOr<uint32_t> Client::Disconnect(const v1::DisconnectRequest& request,
                                            const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::DisconnectResponse response;
  grpc::Status status = stub_->Disconnect(&ctx, request, &response);
  if (!status.ok()) return ToStatus(status);
  return response.num_disconnected();
}

absl::StatusOr<v1::StatsResponse> Client::Stats(const CallOptions& call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, call);
  v1::StatsResponse response;
  grpc::Status status = stub_->Stats(&ctx, v1::StatsRequest(), &response);
  if (!status.ok()) return ToStatus(status);
  return response;
}

}  // namespace roomcast::client
