// Room name rules. A room name is "name" or "namespace:name":
//   namespace: 1+ of [a-z0-9_-]
//   name:      1+ of [A-Za-z0-9_-.=@/+], no further ':'
// The whole name is at most EngineOptions.max_room_name_bytes bytes.
// Pure functions; safe from any thread.
#ifndef ROOMCAST_CORE_ROOM_NAME_H_
#define ROOMCAST_CORE_ROOM_NAME_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace roomcast::core {

// OK, or INVALID_ARGUMENT naming what is wrong.
absl::Status ValidateRoomName(absl::string_view room, size_t max_bytes);

// The namespace part of a valid room name ("" when it has none).
absl::string_view NamespaceOf(absl::string_view room);

bool IsValidNamespace(absl::string_view ns);

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_ROOM_NAME_H_
