// Measurement pieces of roomcast-bench, free of sockets and gRPC: the clock
// every timestamp uses, a latency histogram, the per-subscriber record of
// which offsets arrived (loss, duplicates, reordering by position), the
// report structs, and their rendering as a table and as JSON.
//
// Thread-safety: none of these types lock. A Histogram or an OffsetTally
// belongs to one client thread while a step runs; the coordinator reads them
// only after that thread handed them over (see bench_clients.h).
#ifndef ROOMCAST_BENCHMARKS_BENCH_STATS_H_
#define ROOMCAST_BENCHMARKS_BENCH_STATS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace roomcast::bench {

// Nanoseconds on the steady clock since this process first asked. The
// publisher writes it into each payload ("t") and subscribers subtract it
// from their own reading: one process, one clock, so no skew. Kept small so
// that it survives a round trip through a protobuf double (binary frames).
int64_t NowNs();

// Log-linear histogram of non-negative nanosecond values: exact below 64 ns,
// then 32 buckets per power of two (at most ~3% relative error). Fixed size,
// no allocation on Record.
class Histogram {
 public:
  Histogram();
  void Record(int64_t ns);
  void Merge(const Histogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  int64_t max() const { return max_; }
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  double mean() const { return count_ == 0 ? 0 : sum_ / static_cast<double>(count_); }
  // The value at percentile `p` (0–100): the upper edge of the bucket that
  // holds it, never above max(). 0 when empty.
  int64_t Percentile(double p) const;

 private:
  static int BucketOf(int64_t ns);
  static int64_t UpperEdge(int bucket);

  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  double sum_ = 0;
};

// Which offsets of one room a subscriber received, as a bitmap over the
// offsets after `base` (offsets start at 1 in a new room, so base 0 covers a
// room from its creation).
class OffsetTally {
 public:
  enum class Arrival {
    kInOrder,     // Higher than every offset seen so far.
    kOutOfOrder,  // New, but below an offset already seen (it came late).
    kDuplicate,   // Seen before.
    kStale,       // At or below `base`: from before the current step.
  };
  Arrival Record(uint64_t offset);
  // Forgets offsets <= `base` (a new step starts after them). Never lowers it.
  void Rebase(uint64_t base);
  // Distinct offsets received in [first, last].
  uint64_t CountInRange(uint64_t first, uint64_t last) const;
  uint64_t max_offset() const { return max_offset_; }

 private:
  bool Test(uint64_t index) const;

  uint64_t base_ = 0;
  uint64_t max_offset_ = 0;
  std::vector<uint64_t> bits_;  // bit i = offset base_ + 1 + i
};

// Resource use of one process over an interval.
struct ProcessSample {
  bool ok = false;
  int64_t rss_kb = 0;
  double cpu_seconds = 0;  // user + system
};
// /proc/PID/status VmRSS and /proc/PID/stat utime+stime. ok=false when the
// process cannot be read.
ProcessSample SampleProcess(int pid);
// getrusage(RUSAGE_SELF) user + system seconds of this process.
double SelfCpuSeconds();

// What the subscribers saw in one step (aggregated over client threads).
struct DeliveryTally {
  int subscribers = 0;         // Subscribers open at the start of the step.
  int joined_during_step = 0;  // Joined during the step (churn); owed what followed their join.
  int churned = 0;             // Closed by the harness during the step (not counted for loss).
  uint64_t expected = 0;       // Sum over subscribers of the offsets published to their room.
  uint64_t received = 0;       // Distinct expected offsets that arrived.
  uint64_t lost = 0;           // expected - received.
  uint64_t duplicated = 0;
  uint64_t out_of_order = 0;
  uint64_t stale = 0;            // Arrivals from before the step (ignored).
  uint64_t unparsed_frames = 0;  // Frames the client could not classify.
  uint64_t presence_frames = 0;
  int subscribers_with_loss = 0;
  int disconnected = 0;            // Subscribers whose connection ended during the step.
  std::map<int, int> close_codes;  // WebSocket close code (0: none / SSE) -> subscribers.
  Histogram latency;               // Publish-to-receive, for messages sent after warm-up.
  uint64_t bytes_received = 0;     // WebSocket payload / SSE bytes, whole step.
};

struct ConnectReport {
  int requested = 0;
  int joined = 0;
  int failed = 0;
  double seconds = 0;                 // Wall time until every connection joined or failed.
  Histogram latency;                  // Per connection: TCP connect to join confirmed.
  uint64_t presence_frames = 0;       // Received during the phase (JOINs of later joiners).
  std::map<std::string, int> errors;  // First error text -> connections.
};

struct StepReport {
  std::string label;
  double rate_per_room = 0;  // Target msgs/s per room; 0 = as fast as possible.
  int rooms = 0;
  int subscribers = 0;
  double warmup_seconds = 0;
  double measure_seconds = 0;  // Publishing time after warm-up.
  uint64_t published = 0;      // Acked with a position.
  uint64_t publish_errors = 0;
  double published_per_second = 0;
  double delivered_per_second = 0;  // Latency samples / measure_seconds.
  DeliveryTally delivery;
  double drain_seconds = 0;
  bool drained = false;  // Every open subscriber reached the last offset.
  double generator_cpu_seconds = 0;
  double wall_seconds = 0;
  std::optional<double> edge_cpu_seconds;
  std::optional<double> core_cpu_seconds;
  ProcessSample edge_after;
  ProcessSample core_after;
  bool sustainable = false;
  std::string verdict;  // Why it is (not) sustainable.
};

struct RunReport {
  std::string preset;
  std::string transport;
  std::string publish;  // stream | unary
  std::string edge;
  std::string core;
  std::string started_at;  // UTC, RFC 3339.
  std::string host_load;   // /proc/loadavg at the start.
  int client_threads = 0;
  int payload_bytes = 0;
  int edge_pid = 0;
  int core_pid = 0;
  ProcessSample edge_before;
  ProcessSample core_before;
  ProcessSample edge_connected;  // After the connect phase (first or every rung).
  ProcessSample core_connected;
  std::vector<ConnectReport> connects;  // One per connect phase.
  std::vector<StepReport> steps;
  std::optional<double> highest_sustainable_rate;      // fanout
  std::optional<int> highest_sustainable_subscribers;  // ladder
  double generator_cpu_seconds = 0;
  double wall_seconds = 0;
  std::vector<std::string> notes;
};

// Human-readable report (what the console shows).
std::string FormatTable(const RunReport& report);
// The same as one JSON document.
std::string FormatJson(const RunReport& report);

}  // namespace roomcast::bench

#endif  // ROOMCAST_BENCHMARKS_BENCH_STATS_H_
