// Options for the edge: every limit of the process in one place, each named
// with its unit and commented with its reason. Plain data; copy freely.
#ifndef ROOMCAST_EDGE_OPTIONS_H_
#define ROOMCAST_EDGE_OPTIONS_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace roomcast::edge {

class TokenVerifier;  // edge/auth.h

struct EdgeOptions {
  // host:port for HTTP (/ws, /sse, /publish, /healthz, /metrics, /); port 0
  // picks a free port (the bound address is printed at start).
  std::string listen = "127.0.0.1:8080";
  // The core's EdgeLink address.
  std::string core = "127.0.0.1:50051";
  // Names this edge to the core (logs, stats).
  std::string edge_name = "edge";
  // I/O threads; sessions are spread over them and fan-out crosses to each
  // thread once per message batch.
  int threads = 2;

  // Past this many open WebSocket + SSE connections new clients get HTTP 503
  // with Retry-After (before the WebSocket upgrade).
  size_t max_connections = 20'000;
  // Largest WebSocket message accepted (close 1009 beyond it).
  size_t max_frame_bytes = 64 * 1024;
  // Rooms one connection may be in at once.
  size_t max_rooms_per_connection = 100;
  // Requests per second per connection (token bucket) and the burst allowed.
  double rate_limit_per_second = 100;
  double rate_limit_burst = 200;
  // Malformed or rate-limited requests tolerated per connection per minute
  // before it is closed with 4500 (do not reconnect).
  int max_bad_requests = 20;
  // Bytes of live room events waiting to be written to one client before it
  // is closed as a slow consumer (4001 / SSE stream ends); bounds memory per
  // connection. Replies to the client's own requests are not counted against
  // it (they are paced by the rate limit).
  size_t max_queued_bytes = 1024 * 1024;

  // WebSocket: a ping goes out after half of this without data from the
  // peer; the connection is closed when the whole of it passes.
  absl::Duration idle_timeout = absl::Seconds(30);
  // Time to complete the HTTP request or the WebSocket handshake.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // A write that makes no progress for this long means a dead peer.
  absl::Duration write_timeout = absl::Seconds(30);
  // Write coalescing: a WebSocket or SSE connection that started a write less than
  // this long ago waits until then for its next one, which then carries
  // everything queued meanwhile. A connection that was quiet that long
  // writes at once, so sparse traffic (a chat, a dashboard tick) gets no
  // added latency, and a busy room costs each connection at most one write
  // (one syscall here, one wakeup in the browser) per write_delay instead of
  // one per message. 0: write as soon as the previous write completes.
  absl::Duration write_delay = absl::Milliseconds(20);
  // SSE: a comment line this often keeps proxies and the browser from timing out.
  absl::Duration sse_heartbeat = absl::Seconds(15);
  // SSE: the reconnect delay suggested to EventSource (`retry:`).
  absl::Duration sse_retry = absl::Seconds(2);
  // Connection tokens (edge/auth.h), from --auth_hmac_secret_file and
  // --auth_public_key_file. Null: no authentication, every client is
  // anonymous and may do everything (the behaviour without auth flags).
  // Set: /ws, /sse and POST /publish need a valid token unless
  // allow_anonymous, and a token, when given, must be valid.
  std::shared_ptr<const TokenVerifier> token_verifier;
  bool allow_anonymous = false;
  // Origins allowed for cross-origin WebSocket, SSE and POST /publish.
  // Same-origin requests are always allowed. "*" allows any origin, without
  // credentials.
  std::vector<std::string> allowed_origins;

  // Core link reconnect backoff (full jitter between 0 and the current cap,
  // doubling from min to max).
  absl::Duration reconnect_min = absl::Milliseconds(100);
  absl::Duration reconnect_max = absl::Seconds(5);
  // A request to the core that gets no reply in this time fails.
  absl::Duration request_timeout = absl::Seconds(10);
  // Graceful shutdown: how long clients get to receive their close frames.
  absl::Duration shutdown_grace = absl::Seconds(3);

  // The core link's outbox (messages waiting to be written to the core): past
  // either bound, requests fail at once with RESOURCE_EXHAUSTED and a client
  // whose client_connected cannot be queued is closed with 4000, so a core
  // that stops reading costs the edge bounded memory. Client disconnects are
  // always queued (at most one per client): dropping one would leave a ghost
  // member at the core.
  size_t core_outbox_max_messages = 10'000;
  size_t core_outbox_max_bytes = 16 * 1024 * 1024;
  // Largest message accepted from the core (a join replaying history can be
  // large).
  size_t core_max_receive_bytes = 64 * 1024 * 1024;
  // gRPC keepalive on the core link: notice a dead core within about
  // keepalive_time + keepalive_timeout even when no traffic flows.
  absl::Duration core_keepalive_time = absl::Seconds(20);
  absl::Duration core_keepalive_timeout = absl::Seconds(10);
  // How often the link checks pending requests for request_timeout (so a
  // timeout fires at most this late).
  absl::Duration request_timeout_check = absl::Milliseconds(200);

  // HTTP: largest request header block (browsers send a few KiB; more is
  // abuse), and the slack allowed above max_frame_bytes for a POST /publish
  // body (the JSON around the published data).
  size_t max_header_bytes = 8 * 1024;
  size_t publish_body_slack_bytes = 1024;
  // A write takes queued frames up to this size (at least one) into one
  // WebSocket message, so no message is much larger than this unless one
  // frame is; a connection with this much waiting writes without waiting for
  // write_delay.
  size_t max_batch_bytes = 64 * 1024;
  // Replies to a connection's own requests may queue up to this many times
  // max_queued_bytes (room for a large resume) before the connection counts
  // as a slow consumer.
  size_t reply_queue_factor = 16;
  // Retry-After (seconds) on a 503 refusal (full, no core link, shutting
  // down): long enough that a refused crowd does not come straight back.
  int retry_after_seconds = 5;
  // A WebSocket close frame carries at most 125 bytes of payload (RFC 6455),
  // 2 of them the code; longer reasons are cut to this.
  size_t max_close_reason_bytes = 120;
  // Malformed or rate-limited requests are counted over this window
  // (max_bad_requests per window): an occasional mistake never adds up to a
  // close, a client stuck in a loop of them does.
  absl::Duration bad_request_window = absl::Minutes(1);
  // Access-Control-Max-Age of a /publish preflight: how long a browser may
  // cache it.
  absl::Duration cors_max_age = absl::Seconds(600);
};

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_OPTIONS_H_
