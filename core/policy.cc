#include "core/policy.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/room_name.h"

namespace roomcast::core {
namespace {

const google::protobuf::RepeatedPtrField<std::string>& GrantList(const v1::Grants& grants,
                                                                 RoomOp op) {
  switch (op) {
    case RoomOp::kSubscribe:
      return grants.subscribe();
    case RoomOp::kPublish:
      return grants.publish();
    case RoomOp::kPresence:
      return grants.presence();
    case RoomOp::kHistory:
      break;
  }
  return grants.history();
}

const char* OpName(RoomOp op) {
  switch (op) {
    case RoomOp::kSubscribe:
      return "subscribe to";
    case RoomOp::kPublish:
      return "publish to";
    case RoomOp::kPresence:
      return "read the presence of";
    case RoomOp::kHistory:
      break;
  }
  return "read the history of";
}

}  // namespace

absl::Status CheckGrant(const v1::Grants& grants, RoomOp op, absl::string_view room) {
  if (grants.all()) return absl::OkStatus();
  for (const std::string& entry : GrantList(grants, op)) {
    const bool match =
        absl::EndsWith(entry, "*")
            ? absl::StartsWith(room, absl::string_view(entry).substr(0, entry.size() - 1))
            : entry == room;
    if (match) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat("not allowed to ", OpName(op), " \"", room.substr(0, 256), "\""));
}

Policy::Policy(EngineOptions options) : options_(std::move(options)) {}

absl::StatusOr<const NamespaceOptions*> Policy::Resolve(absl::string_view room) const {
  if (absl::Status s = ValidateRoomName(room, options_.max_room_name_bytes); !s.ok()) return s;
  absl::string_view ns = NamespaceOf(room);
  if (ns.empty()) return &options_.default_namespace;
  auto it = options_.namespaces.find(ns);
  if (it == options_.namespaces.end()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown namespace \"", ns, "\""));
  }
  return &it->second;
}

absl::Status Policy::CheckPayload(size_t bytes) const {
  if (bytes > options_.max_payload_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "payload is %d bytes, larger than the limit of %d", bytes, options_.max_payload_bytes));
  }
  return absl::OkStatus();
}

absl::Status Policy::ValidateClientInfo(const v1::ClientInfo& client) const {
  if (client.client_id().size() > options_.max_client_id_bytes ||
      client.user_id().size() > options_.max_client_id_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("client_id and user_id are limited to ",
                                                   options_.max_client_id_bytes, " bytes"));
  }
  if (client.info().ByteSizeLong() > options_.max_client_info_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("client info is larger than the limit of ",
                                                   options_.max_client_info_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status Policy::CheckClientPublish(absl::string_view room) const {
  absl::StatusOr<const NamespaceOptions*> ns = Resolve(room);
  if (!ns.ok()) return ns.status();
  if (!(*ns)->client_publish) {
    return absl::PermissionDeniedError(
        absl::StrCat("clients may not publish in the namespace of \"", room, "\""));
  }
  return absl::OkStatus();
}

uint32_t Policy::HistoryLimit(uint32_t requested) const {
  if (requested == 0 || requested > options_.max_history_limit) return options_.max_history_limit;
  return requested;
}

}  // namespace roomcast::core
