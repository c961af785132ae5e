// Policy: what the core allows, separate from where rooms are stored. Room
// name rules and namespace resolution (room_name.h, EngineOptions), payload
// and client-info limits, whether browser clients may publish, and the room
// grants of an edge client's token (CheckGrant). The services check requests with it before they
// reach the broker, and brokers resolve a room's namespace options (history
// size and age, presence) through it, so every broker applies the same rules.
//
// Ownership: holds a copy of the options; the owner (CoreServer, a test)
// keeps the Policy alive as long as every service and broker that points to
// it. Threads: immutable after construction; every method is safe from any
// thread. Errors: INVALID_ARGUMENT for malformed input, PERMISSION_DENIED
// for what the configuration forbids.
#ifndef ROOMCAST_CORE_POLICY_H_
#define ROOMCAST_CORE_POLICY_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/options.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::core {

// The operations a client's Grants (ClientConnected.grants) cover.
enum class RoomOp { kSubscribe, kPublish, kPresence, kHistory };

// OK when `grants` allow `op` on `room` (grants.all, an equal entry in the
// op's list, or an entry ending in `*` that is a prefix of `room`);
// PERMISSION_DENIED otherwise. The edge checks the same before asking, but
// the core never trusts an edge beyond the grants it announced.
absl::Status CheckGrant(const v1::Grants& grants, RoomOp op, absl::string_view room);

class Policy {
 public:
  explicit Policy(EngineOptions options);
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  const EngineOptions& options() const { return options_; }

  // The options of `room`'s namespace (the returned pointer lives as long as
  // the Policy), or INVALID_ARGUMENT for a malformed name or an unknown
  // namespace.
  absl::StatusOr<const NamespaceOptions*> Resolve(absl::string_view room) const;

  // INVALID_ARGUMENT when a payload of `bytes` is over max_payload_bytes.
  absl::Status CheckPayload(size_t bytes) const;

  // INVALID_ARGUMENT when the ids or the info of `client` are over their
  // limits (max_client_id_bytes, max_client_info_bytes).
  absl::Status ValidateClientInfo(const v1::ClientInfo& client) const;

  // Whether browser clients (through an edge) may publish to `room`.
  // Backends always may. Also validates the name.
  absl::Status CheckClientPublish(absl::string_view room) const;

  // The number of messages a History request returns at most: `requested`,
  // or max_history_limit when it asks for 0 or more than that.
  uint32_t HistoryLimit(uint32_t requested) const;

 private:
  const EngineOptions options_;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_POLICY_H_
