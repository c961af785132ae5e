// EdgeServer: the whole edge process minus flag parsing. Terminates browser
// connections (WebSocket /ws, SSE /sse, POST /publish, /healthz, /metrics,
// the demo page at /) and carries them over one CoreLink to the core.
// Used by main.cc and by tests (port 0).
//
// Owns everything it runs: options.threads I/O threads (one io_context
// each, the "shards"), the hub, the core link and every session. Start and
// Shutdown are called from one thread (not from an I/O thread). Errors:
// Start returns INVALID_ARGUMENT for a malformed listen address and
// UNAVAILABLE when it cannot be bound; everything after that is logged
// (spdlog) and handled per connection.
#ifndef ROOMCAST_EDGE_EDGE_SERVER_H_
#define ROOMCAST_EDGE_EDGE_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "edge/options.h"

namespace roomcast::edge {

class EdgeServer {
 public:
  explicit EdgeServer(EdgeOptions options);
  ~EdgeServer();  // Shuts down if still running.
  EdgeServer(const EdgeServer&) = delete;
  EdgeServer& operator=(const EdgeServer&) = delete;

  // Binds options.listen, starts the I/O threads and the core link. Returns
  // the bound address ("127.0.0.1:NNNNN").
  absl::StatusOr<std::string> Start();

  // Graceful shutdown: stop accepting, close every client with 1001 "going
  // away" (SSE streams end), wait up to options.shutdown_grace for them to
  // drain, then stop. Idempotent; blocks until done.
  void Shutdown();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_EDGE_SERVER_H_
