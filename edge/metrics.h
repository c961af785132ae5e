// The edge's /metrics page: EdgeCounters and the core link's state in the
// Prometheus text format (version 0.0.4). A pure function over a snapshot of
// atomics: safe from any thread; values may be a moment apart.
#ifndef ROOMCAST_EDGE_METRICS_H_
#define ROOMCAST_EDGE_METRICS_H_

#include <cstdint>
#include <string>

#include "edge/hub.h"

namespace roomcast::edge {

// What the core link contributes.
struct LinkMetrics {
  bool up = false;
  // Messages refused because the outbox to the core was full.
  uint64_t overflow_total = 0;
};

std::string RenderMetrics(const EdgeCounters& counters, const LinkMetrics& link);

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_METRICS_H_
