// POST /publish without HTTP machinery: the request body to the publish the
// edge sends to the core, and the core's reply to the HTTP status and JSON
// body the caller sees. SSE-only pages publish through it.
//
//   request:  {"room": "...", "data": <any JSON value>}
//   success:  200 {"position": {"epoch": "...", "offset": "N"}}
//   failure:  the gRPC code as an HTTP status (HttpStatusOf) and
//             {"error": {"code": N, "message": "..."}}
//
// Pure functions: no state, safe from any thread. The body is untrusted: it
// is decoded by the same strict rules as a WebSocket publish frame
// (edge/codec.h), and a bad one yields INVALID_ARGUMENT, never a crash.
#ifndef ROOMCAST_EDGE_PUBLISH_H_
#define ROOMCAST_EDGE_PUBLISH_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::edge {

// The publish request of a /publish body (room and data as JSON text), or
// INVALID_ARGUMENT naming what is wrong.
absl::StatusOr<v1::PublishRequest> ParsePublishBody(absl::string_view body);

struct PublishResponse {
  unsigned status = 200;
  std::string json;
};

// The HTTP response for the core's reply (or an error reply made by the edge).
PublishResponse RenderPublishReply(const v1::EdgeReply& reply);

// An error reply with `code` and `message`.
v1::EdgeReply ErrorReply(uint32_t code, absl::string_view message);

// The HTTP status for a gRPC status code.
unsigned HttpStatusOf(uint32_t grpc_code);

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_PUBLISH_H_
