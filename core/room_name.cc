#include "core/room_name.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace roomcast::core {
namespace {

bool IsNamespaceChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.' || c == '=' || c == '@' || c == '/' || c == '+';
}

}  // namespace

bool IsValidNamespace(absl::string_view ns) {
  if (ns.empty()) return false;
  for (char c : ns) {
    if (!IsNamespaceChar(c)) return false;
  }
  return true;
}

absl::string_view NamespaceOf(absl::string_view room) {
  size_t colon = room.find(':');
  return colon == absl::string_view::npos ? absl::string_view() : room.substr(0, colon);
}

absl::Status ValidateRoomName(absl::string_view room, size_t max_bytes) {
  if (room.empty()) return absl::InvalidArgumentError("room name is empty");
  if (room.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "room name is %d bytes, longer than the limit of %d", room.size(), max_bytes));
  }
  absl::string_view name = room;
  if (size_t colon = room.find(':'); colon != absl::string_view::npos) {
    if (!IsValidNamespace(room.substr(0, colon))) {
      return absl::InvalidArgumentError(
          "room namespace must be 1 or more of [a-z0-9_-] before the ':'");
    }
    name = room.substr(colon + 1);
  }
  if (name.empty()) return absl::InvalidArgumentError("room name is empty after its namespace");
  for (char c : name) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("room name has a character outside [A-Za-z0-9_-.=@/+] (byte 0x%02x)",
                          static_cast<unsigned char>(c)));
    }
  }
  return absl::OkStatus();
}

}  // namespace roomcast::core
