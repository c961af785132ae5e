// The edge's three Beast sessions, each in its own translation unit (Beast
// is expensive to compile): HTTP (routing glue, /publish, /healthz,
// /metrics, the demo page; edge/http_session.cc), WebSocket
// (edge/ws_session.cc) and SSE (edge/sse_session.cc). The decisions they
// carry out live in Beast-free classes: edge/http_router.h, publish.h,
// request_pipeline.h, write_scheduler.h.
//
// Each session owns its socket and keeps itself alive through the handlers
// it has pending (shared_ptr); it runs on its shard's thread only. `ctx`
// must outlive every session (EdgeServer destroys the io_contexts first).
#ifndef ROOMCAST_EDGE_SESSIONS_H_
#define ROOMCAST_EDGE_SESSIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/empty_body.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "edge/auth.h"
#include "edge/codec.h"
#include "edge/session_context.h"

namespace roomcast::edge {

// Serves HTTP requests on an accepted socket until it upgrades to a
// WebSocket, turns into an SSE stream, or closes.
void StartHttpSession(EdgeContext& ctx, boost::asio::ip::tcp::socket socket, size_t shard);

// Completes the WebSocket handshake for `request` and runs the session on
// core link generation `generation`; `binary` selects the protobuf
// subprotocol. `identity` is the connection's verified identity, or why it
// was refused: then the handshake completes and the connection closes at
// once with 4501 UNAUTHORIZED and that reason (a browser cannot read an
// HTTP refusal of an upgrade). A token's expiry closes it with 4003.
void StartWebSocketSession(EdgeContext& ctx, boost::asio::ip::tcp::socket socket, size_t shard,
                           uint64_t generation, bool binary, absl::StatusOr<Identity> identity,
                           boost::beast::http::request<boost::beast::http::string_body> request);

// Starts an event stream on `stream` for `rooms`, resuming from `since`, as
// `identity` (already verified); `headers` carries the CORS headers already
// decided. A token's expiry ends the stream with a 4003 disconnect event
// (noticed at the next heartbeat).
void StartSseSession(EdgeContext& ctx, boost::beast::tcp_stream stream, size_t shard,
                     uint64_t generation, std::vector<std::string> rooms, SseCursor since,
                     Identity identity,
                     boost::beast::http::response<boost::beast::http::empty_body> headers);

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_SESSIONS_H_
