#include "benchmarks/bench_stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace roomcast::bench {

int64_t NowNs() {
  static const auto anchor = std::chrono::steady_clock::now();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              anchor)
      .count();
}

// ---------------------------------------------------------------------------
// Histogram
// ---------------------------------------------------------------------------

namespace {
constexpr int kExact = 64;       // Values below this have their own bucket.
constexpr int kSubBuckets = 32;  // Per power of two above that.
constexpr int kBuckets = kExact + (63 - 5) * kSubBuckets;
}  // namespace

Histogram::Histogram() : buckets_(kBuckets, 0) {}

int Histogram::BucketOf(int64_t ns) {
  if (ns < kExact) return static_cast<int>(std::max<int64_t>(ns, 0));
  const uint64_t v = static_cast<uint64_t>(ns);
  const int msb = 63 - std::countl_zero(v);  // >= 6
  const int shift = msb - 5;                 // keeps the top 6 bits: 32..63
  const int mantissa = static_cast<int>(v >> shift) - kSubBuckets;
  return kExact + (shift - 1) * kSubBuckets + mantissa;
}

int64_t Histogram::UpperEdge(int bucket) {
  if (bucket < kExact) return bucket;
  const int shift = (bucket - kExact) / kSubBuckets + 1;
  const int64_t mantissa = (bucket - kExact) % kSubBuckets + kSubBuckets;
  return ((mantissa + 1) << shift) - 1;
}

void Histogram::Record(int64_t ns) {
  if (ns < 0) ns = 0;
  ++buckets_[BucketOf(ns)];
  if (count_ == 0 || ns < min_) min_ = ns;
  if (ns > max_) max_ = ns;
  ++count_;
  sum_ += static_cast<double>(ns);
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (int i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  if (count_ == 0 || other.min_ < min_) min_ = other.min_;
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

void Histogram::Reset() {
  std::fill(buckets_.begin(), buckets_.end(), 0);
  count_ = 0;
  min_ = max_ = 0;
  sum_ = 0;
}

int64_t Histogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  const uint64_t rank = std::max<uint64_t>(
      1, static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min(UpperEdge(i), max_);
  }
  return max_;
}

// ---------------------------------------------------------------------------
// OffsetTally
// ---------------------------------------------------------------------------

bool OffsetTally::Test(uint64_t index) const {
  const uint64_t word = index / 64;
  return word < bits_.size() && (bits_[word] >> (index % 64)) & 1;
}

OffsetTally::Arrival OffsetTally::Record(uint64_t offset) {
  if (offset <= base_) return Arrival::kStale;
  const uint64_t index = offset - base_ - 1;
  const uint64_t word = index / 64;
  if (word >= bits_.size()) bits_.resize(std::max<size_t>(word + 1, bits_.size() * 2), 0);
  const uint64_t mask = uint64_t{1} << (index % 64);
  if (bits_[word] & mask) return Arrival::kDuplicate;
  bits_[word] |= mask;
  if (offset < max_offset_) return Arrival::kOutOfOrder;
  max_offset_ = offset;
  return Arrival::kInOrder;
}

void OffsetTally::Rebase(uint64_t base) {
  if (base <= base_) return;
  const uint64_t drop = base - base_;
  std::vector<uint64_t> kept;
  const uint64_t total_bits = bits_.size() * 64;
  if (drop < total_bits) {
    kept.assign((total_bits - drop + 63) / 64, 0);
    for (uint64_t i = drop; i < total_bits; ++i) {
      if (Test(i)) kept[(i - drop) / 64] |= uint64_t{1} << ((i - drop) % 64);
    }
  }
  bits_.swap(kept);
  base_ = base;
  max_offset_ = std::max(max_offset_, base_);
}

uint64_t OffsetTally::CountInRange(uint64_t first, uint64_t last) const {
  first = std::max(first, base_ + 1);
  if (last < first) return 0;
  uint64_t lo = first - base_ - 1;
  const uint64_t hi = last - base_ - 1;  // inclusive
  uint64_t count = 0;
  while (lo <= hi && lo / 64 < bits_.size()) {
    const uint64_t word = lo / 64;
    const uint64_t from = lo % 64;
    const uint64_t to = std::min<uint64_t>(63, from + (hi - lo));  // inclusive
    const uint64_t width = to - from + 1;
    const uint64_t mask = width == 64 ? ~uint64_t{0} : ((uint64_t{1} << width) - 1) << from;
    count += std::popcount(bits_[word] & mask);
    lo += width;
  }
  return count;
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

ProcessSample SampleProcess(int pid) {
  ProcessSample sample;
  if (pid <= 0) return sample;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  bool have_rss = false;
  while (std::getline(status, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "VmRSS:")) {
      rest = absl::StripAsciiWhitespace(rest);
      absl::ConsumeSuffix(&rest, "kB");
      have_rss = absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &sample.rss_kb);
    }
  }
  std::ifstream stat_file(absl::StrCat("/proc/", pid, "/stat"));
  std::stringstream text;
  text << stat_file.rdbuf();
  const std::string stat = text.str();
  const size_t paren = stat.rfind(')');
  if (!have_rss || paren == std::string::npos) return sample;
  // Fields after "(comm)": state is field 3; utime and stime are 14 and 15.
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(paren + 2), ' ', absl::SkipEmpty());
  uint64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return sample;
  }
  sample.cpu_seconds =
      static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  sample.ok = true;
  return sample;
}

double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

namespace {

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

std::string Rate(double rate) { return rate == 0 ? "max" : absl::StrFormat("%g", rate); }

// KiB of RSS gained per connection between two samples, when both are known.
std::optional<double> KibPerConnection(const ProcessSample& before, const ProcessSample& after,
                                       int connections) {
  if (!before.ok || !after.ok || connections <= 0) return std::nullopt;
  return static_cast<double>(after.rss_kb - before.rss_kb) / connections;
}

std::string Optional(const std::optional<double>& v, const char* format = "%.1f") {
  return v ? absl::StrFormat(format, *v) : "-";
}

boost::json::object LatencyJson(const Histogram& h) {
  boost::json::object o;
  o["count"] = h.count();
  o["p50_ms"] = Ms(h.Percentile(50));
  o["p90_ms"] = Ms(h.Percentile(90));
  o["p99_ms"] = Ms(h.Percentile(99));
  o["p999_ms"] = Ms(h.Percentile(99.9));
  o["max_ms"] = Ms(h.max());
  o["mean_ms"] = h.mean() / 1e6;
  return o;
}

boost::json::value SampleJson(const ProcessSample& s) {
  if (!s.ok) return nullptr;
  return boost::json::object{{"rss_kb", s.rss_kb}, {"cpu_seconds", s.cpu_seconds}};
}

boost::json::value OptionalJson(const std::optional<double>& v) {
  if (!v) return nullptr;
  return *v;
}

}  // namespace

std::string FormatTable(const RunReport& r) {
  std::string out;
  absl::StrAppend(
      &out, absl::StrFormat("roomcast-bench  preset=%s transport=%s publish=%s edge=%s core=%s\n"
                            "started %s  loadavg %s  client threads %d  payload %d B\n",
                            r.preset, r.transport, r.publish, r.edge, r.core, r.started_at,
                            r.host_load, r.client_threads, r.payload_bytes));
  for (size_t i = 0; i < r.connects.size(); ++i) {
    const ConnectReport& c = r.connects[i];
    absl::StrAppend(
        &out,
        absl::StrFormat("connect[%d]: %d requested, %d joined, %d failed in %.2f s "
                        "(%.0f conn/s); per connection p50 %.1f ms p99 %.1f ms max %.1f ms\n",
                        i, c.requested, c.joined, c.failed, c.seconds,
                        c.seconds > 0 ? c.joined / c.seconds : 0.0, Ms(c.latency.Percentile(50)),
                        Ms(c.latency.Percentile(99)), Ms(c.latency.max())));
    if (c.presence_frames > 0) {
      absl::StrAppend(&out, absl::StrFormat("  %d presence frames received while connecting\n",
                                            c.presence_frames));
    }
    for (const auto& [error, n] : c.errors) {
      absl::StrAppend(&out, absl::StrFormat("  %d x %s\n", n, error));
    }
  }
  if (r.edge_before.ok || r.core_before.ok) {
    int joined = r.connects.empty() ? 0 : r.connects.front().joined;
    absl::StrAppend(
        &out, absl::StrFormat(
                  "RSS before: edge %s KiB, core %s KiB; after connect[0]: edge %s KiB "
                  "(%s KiB/conn), core %s KiB (%s KiB/conn)\n",
                  r.edge_before.ok ? absl::StrCat(r.edge_before.rss_kb) : "-",
                  r.core_before.ok ? absl::StrCat(r.core_before.rss_kb) : "-",
                  r.edge_connected.ok ? absl::StrCat(r.edge_connected.rss_kb) : "-",
                  Optional(KibPerConnection(r.edge_before, r.edge_connected, joined), "%.2f"),
                  r.core_connected.ok ? absl::StrCat(r.core_connected.rss_kb) : "-",
                  Optional(KibPerConnection(r.core_before, r.core_connected, joined), "%.2f")));
  }
  if (!r.steps.empty()) {
    absl::StrAppend(
        &out,
        absl::StrFormat("\n%-12s %7s %6s %9s %11s %7s %7s %7s %7s %7s %6s %4s %4s %4s %6s %6s "
                        "%6s %9s %s\n",
                        "step", "rate/rm", "subs", "published", "delivered/s", "p50ms", "p90ms",
                        "p99ms", "p999ms", "maxms", "lost", "dup", "ooo", "disc", "gen%", "edge%",
                        "core%", "edgeKiB/c", "verdict"));
  }
  for (const StepReport& s : r.steps) {
    const DeliveryTally& d = s.delivery;
    auto pct = [&](const std::optional<double>& cpu) {
      return cpu && s.wall_seconds > 0 ? absl::StrFormat("%.0f", 100 * *cpu / s.wall_seconds)
                                       : std::string("-");
    };
    absl::StrAppend(
        &out,
        absl::StrFormat(
            "%-12s %7s %6d %9d %11.0f %7.2f %7.2f %7.2f %7.2f %7.2f %6d %4d %4d %4d "
            "%6s %6s %6s %9s %s\n",
            s.label, Rate(s.rate_per_room), s.subscribers, s.published, s.delivered_per_second,
            Ms(d.latency.Percentile(50)), Ms(d.latency.Percentile(90)),
            Ms(d.latency.Percentile(99)), Ms(d.latency.Percentile(99.9)), Ms(d.latency.max()),
            d.lost, d.duplicated, d.out_of_order, d.disconnected, pct(s.generator_cpu_seconds),
            pct(s.edge_cpu_seconds), pct(s.core_cpu_seconds),
            Optional(KibPerConnection(r.edge_before, s.edge_after, s.subscribers)), s.verdict));
  }
  for (const StepReport& s : r.steps) {
    const DeliveryTally& d = s.delivery;
    if (d.close_codes.empty() && d.unparsed_frames == 0 && s.publish_errors == 0 &&
        d.churned == 0 && d.joined_during_step == 0) {
      continue;
    }
    absl::StrAppend(&out, absl::StrFormat("  %s: publish errors %d, unparsed frames %d", s.label,
                                          s.publish_errors, d.unparsed_frames));
    if (d.churned > 0 || d.joined_during_step > 0) {
      absl::StrAppend(
          &out, absl::StrFormat(", %d closed by churn, %d joined during the step (included above)",
                                d.churned, d.joined_during_step));
    }
    for (const auto& [code, n] : d.close_codes) {
      absl::StrAppend(&out, absl::StrFormat(", %d closed with %d", n, code));
    }
    absl::StrAppend(&out, "\n");
  }
  if (r.highest_sustainable_rate) {
    absl::StrAppend(&out, absl::StrFormat("highest sustainable rate: %g msgs/s per room\n",
                                          *r.highest_sustainable_rate));
  }
  if (r.highest_sustainable_subscribers) {
    absl::StrAppend(&out, absl::StrFormat("most subscribers sustained: %d\n",
                                          *r.highest_sustainable_subscribers));
  }
  absl::StrAppend(
      &out,
      absl::StrFormat("generator CPU %.2f s over %.2f s wall (%.0f%% of one core)\n",
                      r.generator_cpu_seconds, r.wall_seconds,
                      r.wall_seconds > 0 ? 100 * r.generator_cpu_seconds / r.wall_seconds : 0));
  for (const std::string& note : r.notes) absl::StrAppend(&out, "note: ", note, "\n");
  return out;
}

std::string FormatJson(const RunReport& r) {
  boost::json::object root;
  root["preset"] = r.preset;
  root["transport"] = r.transport;
  root["publish"] = r.publish;
  root["edge"] = r.edge;
  root["core"] = r.core;
  root["started_at"] = r.started_at;
  root["loadavg"] = r.host_load;
  root["client_threads"] = r.client_threads;
  root["payload_bytes"] = r.payload_bytes;
  root["edge_pid"] = r.edge_pid;
  root["core_pid"] = r.core_pid;
  root["edge_before"] = SampleJson(r.edge_before);
  root["core_before"] = SampleJson(r.core_before);
  root["edge_connected"] = SampleJson(r.edge_connected);
  root["core_connected"] = SampleJson(r.core_connected);
  const int joined = r.connects.empty() ? 0 : r.connects.front().joined;
  root["edge_kib_per_connection"] =
      OptionalJson(KibPerConnection(r.edge_before, r.edge_connected, joined));
  root["core_kib_per_connection"] =
      OptionalJson(KibPerConnection(r.core_before, r.core_connected, joined));
  boost::json::array connects;
  for (const ConnectReport& c : r.connects) {
    boost::json::object o;
    o["requested"] = c.requested;
    o["joined"] = c.joined;
    o["failed"] = c.failed;
    o["presence_frames"] = c.presence_frames;
    o["seconds"] = c.seconds;
    o["latency"] = LatencyJson(c.latency);
    boost::json::object errors;
    for (const auto& [e, n] : c.errors) errors[e] = n;
    o["errors"] = std::move(errors);
    connects.push_back(std::move(o));
  }
  root["connects"] = std::move(connects);
  boost::json::array steps;
  uint64_t total_lost = 0, total_duplicated = 0, total_out_of_order = 0;
  for (const StepReport& s : r.steps) {
    const DeliveryTally& d = s.delivery;
    total_lost += d.lost;
    total_duplicated += d.duplicated;
    total_out_of_order += d.out_of_order;
    boost::json::object o;
    o["label"] = s.label;
    o["rate_per_room"] = s.rate_per_room;
    o["rooms"] = s.rooms;
    o["subscribers"] = s.subscribers;
    o["joined_during_step"] = d.joined_during_step;
    o["churned"] = d.churned;
    o["warmup_seconds"] = s.warmup_seconds;
    o["measure_seconds"] = s.measure_seconds;
    o["published"] = s.published;
    o["publish_errors"] = s.publish_errors;
    o["published_per_second"] = s.published_per_second;
    o["delivered_per_second"] = s.delivered_per_second;
    o["expected"] = d.expected;
    o["received"] = d.received;
    o["lost"] = d.lost;
    o["duplicated"] = d.duplicated;
    o["out_of_order"] = d.out_of_order;
    o["stale"] = d.stale;
    o["unparsed_frames"] = d.unparsed_frames;
    o["presence_frames"] = d.presence_frames;
    o["subscribers_with_loss"] = d.subscribers_with_loss;
    o["disconnected"] = d.disconnected;
    boost::json::object codes;
    for (const auto& [code, n] : d.close_codes) codes[absl::StrCat(code)] = n;
    o["close_codes"] = std::move(codes);
    o["bytes_received"] = d.bytes_received;
    o["latency"] = LatencyJson(d.latency);
    o["drain_seconds"] = s.drain_seconds;
    o["drained"] = s.drained;
    o["generator_cpu_seconds"] = s.generator_cpu_seconds;
    o["wall_seconds"] = s.wall_seconds;
    o["edge_cpu_seconds"] = OptionalJson(s.edge_cpu_seconds);
    o["core_cpu_seconds"] = OptionalJson(s.core_cpu_seconds);
    o["edge_after"] = SampleJson(s.edge_after);
    o["core_after"] = SampleJson(s.core_after);
    o["edge_kib_per_connection"] =
        OptionalJson(KibPerConnection(r.edge_before, s.edge_after, s.subscribers));
    o["core_kib_per_connection"] =
        OptionalJson(KibPerConnection(r.core_before, s.core_after, s.subscribers));
    o["sustainable"] = s.sustainable;
    o["verdict"] = s.verdict;
    steps.push_back(std::move(o));
  }
  root["steps"] = std::move(steps);
  root["lost"] = total_lost;
  root["duplicated"] = total_duplicated;
  root["out_of_order"] = total_out_of_order;
  root["highest_sustainable_rate"] = OptionalJson(r.highest_sustainable_rate);
  if (r.highest_sustainable_subscribers) {
    root["highest_sustainable_subscribers"] = *r.highest_sustainable_subscribers;
  } else {
    root["highest_sustainable_subscribers"] = nullptr;
  }
  root["generator_cpu_seconds"] = r.generator_cpu_seconds;
  root["wall_seconds"] = r.wall_seconds;
  boost::json::array notes;
  for (const std::string& n : r.notes) notes.emplace_back(n);
  root["notes"] = std::move(notes);
  return boost::json::serialize(root) + "\n";
}

}  // namespace roomcast::bench
