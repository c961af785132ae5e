// SVG plot of a roomcast-bench run: one point per step (x = subscribers for
// ladder, rate for fanout, the step label otherwise), latency p50/p90/p99/max
// on a log scale (left axis, ms) and delivered/s as bars (right axis).
// Hand-written SVG text, no dependencies; free of sockets and gRPC.
#ifndef ROOMCAST_BENCHMARKS_BENCH_PLOT_H_
#define ROOMCAST_BENCHMARKS_BENCH_PLOT_H_

#include <string>

#include "benchmarks/bench_stats.h"

namespace roomcast::bench {

// A self-contained SVG document (UTF-8, starts with "<?xml").
std::string RenderPlotSvg(const RunReport& report);

}  // namespace roomcast::bench

#endif  // ROOMCAST_BENCHMARKS_BENCH_PLOT_H_
