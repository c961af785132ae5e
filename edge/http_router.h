// HTTP routing, CORS and admission for the edge, without Beast: given what a
// request asked for (method, target, a few headers) and the edge's state
// (shutting down, core link, open connections), decide the route, the
// response status, body and headers, or the parameters of the long-lived
// connection to start. The Beast glue (edge/http_session.cc) reads the
// request into an HttpRequestInfo and carries the decision out.
//
// CORS: requests without Origin (non-browser, or a same-origin GET) and
// same-origin requests (Origin equals http(s):// + Host) are allowed; a
// cross-origin one only from EdgeOptions::allowed_origins, which then gets
// Access-Control-Allow-Origin (with credentials and Vary: Origin; "*"
// without). Others get 403.
//
// Admission (WebSocket and SSE only): past max_connections, without a core
// link or while shutting down, 503 with Retry-After, connection closed.
//
// Pure functions: no state, safe from any thread; `options` is only read
// during the call.
#ifndef ROOMCAST_EDGE_HTTP_ROUTER_H_
#define ROOMCAST_EDGE_HTTP_ROUTER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "edge/options.h"

namespace roomcast::edge {

enum class HttpMethod { kGet, kHead, kPost, kOptions, kOther };

// What the router needs of a request.
struct HttpRequestInfo {
  HttpMethod method = HttpMethod::kGet;
  std::string target;  // Origin-form: path and query.
  std::optional<std::string> origin;
  std::string host;
  // A valid WebSocket upgrade request (GET, HTTP/1.1, Connection: upgrade,
  // Upgrade: websocket), as Beast decides it.
  bool websocket_upgrade = false;
  std::string sec_websocket_protocol;
  std::string last_event_id;  // The Last-Event-ID header.
};

// The edge's state at the time of the request.
struct EdgeState {
  bool shutting_down = false;
  uint64_t link_generation = 0;  // 0 while the core link is down.
  int64_t connections = 0;       // Open WebSocket + SSE connections.
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

enum class Route {
  kRespond,       // Send `response` as decided here.
  kWebSocket,     // Upgrade; see `websocket`.
  kSse,           // Start an event stream; see `sse`.
  kPublish,       // POST /publish; add `cors_headers` to its response.
  kMetrics,       // GET /metrics.
  kDemoPage,      // GET /.
  kClientModule,  // GET /roomcast.js.
};

struct HttpResponseSpec {
  unsigned status = 200;
  std::string body;
  std::string content_type = "text/plain; charset=utf-8";
  HttpHeaders headers;  // Besides Server, Content-Type and Content-Length.
  bool close = false;   // Close the connection after it (else keep-alive as asked).
};

struct RouteDecision {
  Route route = Route::kRespond;
  HttpResponseSpec response;  // kRespond.
  // A refusal by admission control (counted in refused_total).
  bool refused = false;
  // CORS headers for the response of kSse and kPublish.
  HttpHeaders cors_headers;
  // kWebSocket and kSse: the core link generation the connection joins.
  uint64_t generation = 0;
  // kWebSocket: the client asked for the binary subprotocol.
  bool binary = false;
  // kSse: the rooms (deduplicated, in order) and the resume cursor text
  // (Last-Event-ID, or ?lastEventId= when the header is absent).
  std::vector<std::string> rooms;
  std::string last_event_id;
};

// The WebSocket subprotocol of binary (protobuf) connections.
inline constexpr char kBinarySubprotocol[] = "roomcast.v1.proto";

RouteDecision RouteRequest(const HttpRequestInfo& request, const EdgeState& state,
                           const EdgeOptions& options);

// The CORS decision alone: nullopt when the origin is forbidden, else the
// headers to add (none for same-origin or no Origin).
std::optional<HttpHeaders> CheckOrigin(const HttpRequestInfo& request, const EdgeOptions& options);

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_HTTP_ROUTER_H_
