#include "edge/metrics.h"

#include "absl/strings/str_cat.h"

namespace roomcast::edge {

std::string RenderMetrics(const EdgeCounters& c, const LinkMetrics& link) {
  std::string out;
  auto metric = [&out](const char* name, const char* help, const char* type, int64_t value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ",
                    value, "\n");
  };
  auto counter = [&metric](const char* name, const char* help, uint64_t value) {
    metric(name, help, "counter", static_cast<int64_t>(value));
  };
  metric("roomcast_edge_core_link_up", "1 while the link to the core is up.", "gauge",
         link.up ? 1 : 0);
  metric("roomcast_edge_websocket_connections", "Open WebSocket connections.", "gauge",
         c.ws_connections.load());
  metric("roomcast_edge_sse_connections", "Open SSE streams.", "gauge", c.sse_connections.load());
  metric("roomcast_edge_room_memberships", "Local (client, room) memberships.", "gauge",
         c.memberships.load());
  metric("roomcast_edge_queued_bytes", "Bytes waiting to be written to clients.", "gauge",
         c.queued_bytes.load());
  counter("roomcast_edge_connections_total", "Connections accepted.", c.connections_total.load());
  counter("roomcast_edge_refused_total", "Connections refused (full, no core, shutdown).",
          c.refused_total.load());
  counter("roomcast_edge_frames_delivered_total", "Room events handed to clients.",
          c.frames_delivered_total.load());
  counter("roomcast_edge_slow_consumer_total", "Clients closed as slow consumers.",
          c.slow_consumer_total.load());
  counter("roomcast_edge_bad_requests_total", "Malformed or rate-limited requests.",
          c.bad_requests_total.load());
  counter("roomcast_edge_core_link_overflow_total",
          "Messages to the core refused because the link's outbox was full.", link.overflow_total);
  return out;
}

}  // namespace roomcast::edge
