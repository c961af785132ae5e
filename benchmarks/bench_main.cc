// roomcast-bench: load harness for a running roomcast-core + roomcast-edge.
//
// Subscribers connect to the edge (bench_clients.h) and join their rooms; a
// gRPC publisher (Rooms.PublishStream) then publishes JSON payloads
// {"t": NowNs() at send, "pad": "..."} at a fixed rate per room (or as fast
// as the stream allows). Every step reports delivered messages/s, publish-to-
// receive latency, loss / duplicates / reordering by room position, the
// generator's own CPU and, given their PIDs, the edge's and core's CPU and RSS.
//
// Presets (each bounded in time, stops by itself):
//   fanout  1,000 subscribers in one room; rate steps until loss, a
//           disconnect or p99 > --max-p99; reports the highest sustainable rate
//   rooms   100 rooms x 10 subscribers at a fixed rate
//   ladder  subscribers added in rungs (100, 250, 500, 1,000, ...) in one room
//           at a fixed rate; RSS per rung
//   idle    10,000 idle subscribers: connect time and memory per connection,
//           then one message per room to check every one is still alive
//
// Generic target mode (--target ws://...): the same presets against any
// WebSocket server, given a subscribe frame, a substring that marks a
// delivered message and an HTTP publish URL; payloads then carry bench_t and
// bench_seq, and loss is counted by bench_seq per room.
//   churn   1,000 subscribers in one room at a fixed rate while --churn-rate
//           of them per second are closed and replaced by new connections:
//           reconnect time under load, and no loss for those that stay or join
//
// nats-server mode (--target nats+ws://HOST:PORT): the WebSocket server is
// nats-server's WebSocket listener (subscribers speak the NATS protocol over
// it) and the publisher a NATS client on its TCP port (--nats-publish), with
// the generic mode's payloads.
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmarks/bench_clients.h"
#include "benchmarks/bench_nats.h"
#include "benchmarks/bench_plot.h"
#include "benchmarks/bench_stats.h"
#include "grpcpp/grpcpp.h"
#include "roomcast/v1/roomcast.grpc.pb.h"

namespace roomcast::bench {
namespace {

constexpr const char* kUsage = R"(usage: roomcast-bench [flags]

  --preset NAME        fanout | rooms | ladder | churn | idle (default fanout)
  --edge HOST:PORT     the edge (default 127.0.0.1:8080)
  --core HOST:PORT     the core's gRPC address, for publishing (default 127.0.0.1:50051)
  --transport T        subscribers: ws | ws-binary | sse (through the edge) | grpc (Rooms.Subscribe
                       on the core, no edge) (default ws)
  --publish P          stream (Rooms.PublishStream, default) | unary (Rooms.Publish, one call at a time)
  --subscribers N      subscribers (preset default: fanout 1000, rooms 1000, ladder 2500, churn 1000,
                       idle 10000)
  --rooms N            rooms; subscriber i joins room i % N (preset default: rooms 100, else 1)
  --rate R             msgs/s per room, 0 = as fast as possible (fanout: one step at R)
  --rates R1,R2,...    fanout rate steps (default 10,20,50,100,200,500,1000,2000,5000,10000)
  --payload BYTES      size of the JSON payload published (default 100, at least ~30)
  --duration D         measured publishing time per step (default 3s; churn 10s; idle: hold time 5s)
  --churn-rate N       churn: connections closed and replaced per second (default 100)
  --warmup D           publishing before measuring latency, per step (default 1s)
  --drain D            longest wait for the last message after publishing (default 5s)
  --threads N          client threads (default 1)
  --max-connecting N   connections being opened at once (default 200)
  --connect-timeout D  bound on one connect phase (default 60s)
  --max-p99 D          fanout/ladder: a step with a higher p99 is not sustainable (default 250ms)
  --room-prefix P      room names are P-<run id>-<i> (default "bench"; "ns:bench" uses namespace ns)
  --edge-pid PID       read the edge's RSS and CPU from /proc
  --core-pid PID       read the core's RSS and CPU from /proc
  --json FILE          also write the report as JSON
  --plot FILE.svg      also write an SVG plot of the steps: latency p50/p90/p99/max (log scale)
                       and delivered/s against subscribers (ladder), rate (fanout) or step

Generic target mode (any WebSocket server; --core and --transport are then unused):
  --target URL         ws://HOST:PORT/PATH to subscribe at
  --subscribe-frame T  text frame sent after the upgrade; {room} is replaced by the room name
  --message-match S    a frame containing S is a delivered message
  --joined-match S     a frame containing S confirms the subscription (default: none, confirmed
                       once the subscribe frame is written)
  --publish-url URL    http://HOST:PORT/PATH to POST each message to
  --publish-body T     POST body; {room} and {payload} are replaced (default
                       {"room":"{room}","data":{payload}}); the payload is
                       {"bench_t":<ns>,"bench_seq":<n per room>,"pad":"..."}

nats-server (generic payloads; --subscribe-frame, --publish-url etc. are then unused):
  --target nats+ws://HOST:PORT[/PATH]
                       subscribe over nats-server's WebSocket listener: CONNECT, SUB <room>,
                       and the PONG of a PING confirms the subscription
  --nats-publish HOST:PORT
                       nats-server's client port, to publish on with PUB <room> (pipelined;
                       a PING/PONG after each step's last PUB confirms them) (default HOST:4222)
Durations: 500ms, 2s, 1m. Flags take --name=value or --name value; '_' and '-' are the same.
)";

struct Flags {
  std::string preset = "fanout";
  std::string edge = "127.0.0.1:8080";
  std::string core = "127.0.0.1:50051";
  std::string transport = "ws";
  std::string publish = "stream";
  std::optional<int> subscribers;
  std::optional<int> rooms;
  std::optional<double> rate;
  std::vector<double> rates = {10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
  int payload = 100;
  std::optional<absl::Duration> duration;
  absl::Duration warmup = absl::Seconds(1);
  absl::Duration drain = absl::Seconds(5);
  int threads = 1;
  double churn_rate = 100;
  int max_connecting = 200;
  absl::Duration connect_timeout = absl::Seconds(60);
  absl::Duration max_p99 = absl::Milliseconds(250);
  std::string room_prefix = "bench";
  int edge_pid = 0;
  int core_pid = 0;
  std::string json;
  std::string plot;
  // Generic target mode.
  std::string target;
  std::string subscribe_frame;
  std::string message_match;
  std::string joined_match;
  std::string publish_url;
  std::string publish_body = R"({"room":"{room}","data":{payload}})";
  std::string nats_publish;  // HOST:PORT; set when --target is nats+ws://.
};

constexpr char kNatsScheme[] = "nats+ws";

bool IsNatsTarget(const Flags& f) { return absl::StartsWith(f.target, "nats+ws://"); }

struct Url {
  std::string host;
  std::string port;
  std::string target;  // path and query, "/" at least
};

// scheme://host[:port][/target], no TLS, no user info.
Url ParseUrl(const std::string& url, absl::string_view scheme, const char* flag);
// host:port -> {host, port}.
std::pair<std::string, std::string> SplitHostPort(const std::string& address, const char* flag);

[[noreturn]] void UsageError(const std::string& message) {
  std::cerr << "roomcast-bench: " << message << "\n(--help for usage)\n";
  std::exit(2);
}

int ParseInt(absl::string_view name, absl::string_view v, int min) {
  int out = 0;
  if (!absl::SimpleAtoi(v, &out) || out < min) {
    UsageError(absl::StrCat("--", name, ": expected an integer >= ", min, ", got \"", v, "\""));
  }
  return out;
}

double ParseRate(absl::string_view name, absl::string_view v) {
  double out = 0;
  if (!absl::SimpleAtod(v, &out) || !(out >= 0) || std::isinf(out)) {
    UsageError(absl::StrCat("--", name, ": expected a rate >= 0, got \"", v, "\""));
  }
  return out;
}

absl::Duration ParseDurationFlag(absl::string_view name, absl::string_view v) {
  absl::Duration d;
  if (!absl::ParseDuration(v, &d) || d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    UsageError(absl::StrCat("--", name, ": expected a duration like 500ms or 2s, got \"", v, "\""));
  }
  return d;
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (!absl::ConsumePrefix(&arg, "--"))
      UsageError(absl::StrCat("unexpected argument \"", arg, "\""));
    std::string name;
    std::string value;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
    } else {
      name = std::string(arg);
      if (i + 1 >= argc) UsageError(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    std::replace(name.begin(), name.end(), '_', '-');
    if (name == "preset") {
      f.preset = value;
    } else if (name == "edge") {
      f.edge = value;
    } else if (name == "core") {
      f.core = value;
    } else if (name == "transport") {
      f.transport = value;
    } else if (name == "publish") {
      f.publish = value;
    } else if (name == "subscribers") {
      f.subscribers = ParseInt(name, value, 1);
    } else if (name == "rooms") {
      f.rooms = ParseInt(name, value, 1);
    } else if (name == "rate") {
      f.rate = ParseRate(name, value);
    } else if (name == "rates") {
      f.rates.clear();
      for (absl::string_view r : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        f.rates.push_back(ParseRate(name, absl::StripAsciiWhitespace(r)));
      }
      if (f.rates.empty()) UsageError("--rates: name at least one rate");
    } else if (name == "payload") {
      f.payload = ParseInt(name, value, 0);
    } else if (name == "duration") {
      f.duration = ParseDurationFlag(name, value);
    } else if (name == "warmup") {
      f.warmup = ParseDurationFlag(name, value);
    } else if (name == "drain") {
      f.drain = ParseDurationFlag(name, value);
    } else if (name == "threads") {
      f.threads = ParseInt(name, value, 1);
    } else if (name == "churn-rate") {
      f.churn_rate = ParseRate(name, value);
    } else if (name == "max-connecting") {
      f.max_connecting = ParseInt(name, value, 1);
    } else if (name == "connect-timeout") {
      f.connect_timeout = ParseDurationFlag(name, value);
    } else if (name == "max-p99") {
      f.max_p99 = ParseDurationFlag(name, value);
    } else if (name == "room-prefix") {
      f.room_prefix = value;
    } else if (name == "edge-pid") {
      f.edge_pid = ParseInt(name, value, 1);
    } else if (name == "core-pid") {
      f.core_pid = ParseInt(name, value, 1);
    } else if (name == "json") {
      f.json = value;
    } else if (name == "plot") {
      f.plot = value;
    } else if (name == "target") {
      f.target = value;
    } else if (name == "subscribe-frame") {
      f.subscribe_frame = value;
    } else if (name == "message-match") {
      f.message_match = value;
    } else if (name == "joined-match") {
      f.joined_match = value;
    } else if (name == "publish-url") {
      f.publish_url = value;
    } else if (name == "publish-body") {
      f.publish_body = value;
    } else if (name == "nats-publish") {
      f.nats_publish = value;
    } else {
      UsageError(absl::StrCat("unknown flag --", name));
    }
  }
  static const std::vector<std::string> kPresets = {"fanout", "rooms", "ladder", "churn", "idle"};
  if (std::find(kPresets.begin(), kPresets.end(), f.preset) == kPresets.end()) {
    UsageError(absl::StrCat("unknown preset \"", f.preset, "\": choose one of ",
                            absl::StrJoin(kPresets, ", ")));
  }
  if (f.transport != "ws" && f.transport != "ws-binary" && f.transport != "sse" &&
      f.transport != "grpc") {
    UsageError(
        absl::StrCat("unknown transport \"", f.transport, "\": choose ws, ws-binary, sse or grpc"));
  }
  if (IsNatsTarget(f)) {
    const Url target = ParseUrl(f.target, kNatsScheme, "target");
    if (f.nats_publish.empty()) f.nats_publish = absl::StrCat(target.host, ":4222");
    SplitHostPort(f.nats_publish, "nats-publish");
  } else if (!f.nats_publish.empty()) {
    UsageError("--nats-publish needs --target nats+ws://HOST:PORT");
  } else if (!f.target.empty()) {
    ParseUrl(f.target, "ws", "target");
    ParseUrl(f.publish_url, "http", "publish-url");
    if (f.subscribe_frame.empty()) UsageError("--target needs --subscribe-frame");
    if (f.message_match.empty()) UsageError("--target needs --message-match");
    if (!absl::StrContains(f.publish_body, "{payload}")) {
      UsageError("--publish-body must contain {payload}");
    }
  }
  if (f.publish != "stream" && f.publish != "unary") {
    UsageError(absl::StrCat("unknown --publish \"", f.publish, "\": choose stream or unary"));
  }
  return f;
}

Url ParseUrl(const std::string& url, absl::string_view scheme, const char* flag) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, absl::StrCat(scheme, "://"))) {
    UsageError(
        absl::StrCat("--", flag, ": expected ", scheme, "://HOST:PORT/PATH, got \"", url, "\""));
  }
  Url out;
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  out.target = slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  size_t colon = authority.rfind(':');
  if (colon == absl::string_view::npos) {
    out.host = std::string(authority);
    out.port = "80";
  } else {
    out.host = std::string(authority.substr(0, colon));
    out.port = std::string(authority.substr(colon + 1));
  }
  if (out.host.empty() || out.port.empty()) {
    UsageError(absl::StrCat("--", flag, ": no host or port in \"", url, "\""));
  }
  return out;
}

// host:port -> {host, port}.
std::pair<std::string, std::string> SplitHostPort(const std::string& address, const char* flag) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    UsageError(absl::StrCat("--", flag, ": expected HOST:PORT, got \"", address, "\""));
  }
  return {address.substr(0, colon), address.substr(colon + 1)};
}

// ---------------------------------------------------------------------------
// The publisher
// ---------------------------------------------------------------------------

struct PublishOutcome {
  explicit PublishOutcome(size_t rooms) : first(rooms, 0), last(rooms, 0) {}

  uint64_t sent = 0;
  uint64_t acked = 0;
  uint64_t errors = 0;
  std::map<std::string, int> error_messages;
  std::string failure;          // The stream itself failed.
  std::vector<uint64_t> first;  // Per room: lowest offset acked (0: none).
  std::vector<uint64_t> last;   // Per room: highest offset acked.
};

// {"t":<ns>,"pad":"xxx"}, about `payload_bytes` long.
std::string Payload(int64_t t, int payload_bytes, const std::string& pad) {
  return absl::StrCat(R"({"t":)", t, R"(,"pad":")", pad, R"("})");
}

// The payload of the generic and nats targets, sent now: they carry their
// own sequence number per room.
std::string GenericPayload(uint64_t seq, const std::string& pad) {
  return absl::StrCat(R"({"bench_t":)", NowNs(), R"(,"bench_seq":)", seq, R"(,"pad":")", pad,
                      R"("})");
}

void SleepUntil(int64_t ns) {
  while (NowNs() < ns) std::this_thread::sleep_for(std::chrono::nanoseconds(ns - NowNs()));
}

// Records one publish result for room `room`.
void Account(PublishOutcome& out, size_t room, const v1::PublishAck& ack) {
  if (ack.has_position()) {
    ++out.acked;
    const uint64_t offset = ack.position().offset();
    if (out.first[room] == 0 || offset < out.first[room]) out.first[room] = offset;
    out.last[room] = std::max(out.last[room], offset);
  } else {
    ++out.errors;
    if (out.error_messages.size() < 10) ++out.error_messages[ack.error().message()];
  }
}

// Waits until send number `seq` is due; false once the window is over
// (including for a publisher running late: what it could not send by
// `end_ns` is not sent, and shows as a publish rate below the target).
// With a rate, sends follow a fixed schedule (a late one goes out at once,
// and its timestamp is the actual send time); at rate 0, back to back.
bool WaitForTurn(uint64_t seq, double total_rate, int64_t start_ns, int64_t end_ns) {
  const int64_t now = NowNs();
  if (now >= end_ns) return false;
  if (total_rate <= 0) return true;
  const int64_t due = start_ns + static_cast<int64_t>(static_cast<double>(seq) * 1e9 / total_rate);
  if (due >= end_ns) return false;
  if (due > now) std::this_thread::sleep_for(std::chrono::nanoseconds(due - now));
  return true;
}

// Generic target mode: one HTTP POST at a time to --publish-url. Each room's
// messages carry bench_seq = next_seq[room], next_seq[room] + 1, ...; a 2xx
// answer counts as published (first/last are then bench_seq values).
PublishOutcome PublishHttp(HttpPoster& poster, const Flags& f,
                           const std::vector<std::string>& rooms,
                           const std::vector<uint64_t>& next_seq, double rate_per_room,
                           int64_t start_ns, int64_t end_ns) {
  PublishOutcome out(rooms.size());
  std::vector<uint64_t> seq_of = next_seq;
  const std::string pad(std::max(0, f.payload - 45), 'x');
  const double total_rate = rate_per_room * static_cast<double>(rooms.size());
  SleepUntil(start_ns);
  for (uint64_t n = 0; WaitForTurn(n, total_rate, start_ns, end_ns); ++n) {
    const size_t room = n % rooms.size();
    const uint64_t seq = seq_of[room]++;
    const std::string payload = GenericPayload(seq, pad);
    const std::string body =
        absl::StrReplaceAll(f.publish_body, {{"{room}", rooms[room]}, {"{payload}", payload}});
    std::string error;
    const int status = poster.Post(body, &error);
    ++out.sent;
    v1::PublishAck ack;
    if (status / 100 == 2) {
      ack.mutable_position()->set_offset(seq);
    } else {
      ack.mutable_error()->set_message(error);
    }
    Account(out, room, ack);
  }
  return out;
}

// nats-server: PUB <room> on one NATS client connection, paced like the
// others but pipelined (no round trip per message; what is due at once is
// written at once). Payloads are PublishHttp's. After the window a PING/PONG
// confirms that the server processed every PUB: only those count as
// published (first/last are bench_seq values), the rest as errors.
PublishOutcome PublishNats(NatsPublisher& nats, const Flags& f,
                           const std::vector<std::string>& rooms,
                           const std::vector<uint64_t>& next_seq, double rate_per_room,
                           int64_t start_ns, int64_t end_ns) {
  PublishOutcome out(rooms.size());
  const std::string pad(std::max(0, f.payload - 45), 'x');
  const double total_rate = rate_per_room * static_cast<double>(rooms.size());
  SleepUntil(start_ns);
  const uint64_t base = nats.published();
  uint64_t n = 0;
  for (; WaitForTurn(n, total_rate, start_ns, end_ns); ++n) {
    const size_t room = n % rooms.size();
    const uint64_t seq = next_seq[room] + n / rooms.size();
    const std::string payload = GenericPayload(seq, pad);
    // Write now unless the next message is due already (rate 0, or late).
    const bool next_due =
        total_rate <= 0 ||
        start_ns + static_cast<int64_t>(static_cast<double>(n + 1) * 1e9 / total_rate) <= NowNs();
    if (!nats.Publish(rooms[room], payload, /*flush=*/!next_due)) break;
    ++out.sent;
  }
  // Bounded like Publish's stream: a server that stops reading cannot hold the harness forever.
  nats.Confirm(std::max(NowNs(), end_ns) + absl::ToInt64Nanoseconds(absl::Seconds(30)));
  const uint64_t accepted =
      std::min<uint64_t>(out.sent, nats.confirmed() > base ? nats.confirmed() - base : 0);
  out.acked = accepted;
  for (size_t r = 0; r < rooms.size(); ++r) {
    const uint64_t count = accepted / rooms.size() + (r < accepted % rooms.size() ? 1 : 0);
    if (count == 0) continue;
    out.first[r] = next_seq[r];
    out.last[r] = next_seq[r] + count - 1;
  }
  if (!nats.error().empty()) out.failure = absl::StrCat("nats publisher: ", nats.error());
  for (const auto& [e, count] : nats.TakeServerErrors()) {
    if (out.failure.empty()) out.failure = absl::StrCat("nats publisher: ", e);
    out.error_messages[e] += count;
  }
  if (out.sent > accepted) {
    out.errors = out.sent - accepted;
    out.error_messages[nats.error().empty() ? "no PONG within 30 s of the window's end"
                                            : nats.error()] += static_cast<int>(out.errors);
  }
  return out;
}

// Rooms.Publish, one call at a time: the rate it reaches is bounded by the
// round trip (a slow step says so as "publisher below 90%").
PublishOutcome PublishUnary(v1::Rooms::Stub& stub, const std::vector<std::string>& rooms,
                            double rate_per_room, int64_t start_ns, int64_t end_ns,
                            int payload_bytes) {
  PublishOutcome out(rooms.size());
  const std::string pad(std::max(0, payload_bytes - 30), 'x');
  const double total_rate = rate_per_room * static_cast<double>(rooms.size());
  SleepUntil(start_ns);
  v1::PublishRequest request;
  for (uint64_t seq = 0; WaitForTurn(seq, total_rate, start_ns, end_ns); ++seq) {
    const size_t room = seq % rooms.size();
    request.set_room(rooms[room]);
    request.set_data(Payload(NowNs(), payload_bytes, pad));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::PublishResponse response;
    grpc::Status status = stub.Publish(&ctx, request, &response);
    ++out.sent;
    v1::PublishAck ack;
    if (status.ok()) {
      *ack.mutable_position() = response.position();
    } else {
      ack.mutable_error()->set_code(status.error_code());
      ack.mutable_error()->set_message(status.error_message());
    }
    Account(out, room, ack);
  }
  return out;
}

// Publishes round-robin over `rooms` on one PublishStream from `start_ns`
// until `end_ns`, at `rate_per_room` msgs/s per room or, at rate 0, as fast
// as the stream's flow control allows.
PublishOutcome Publish(v1::Rooms::Stub& stub, const std::vector<std::string>& rooms,
                       double rate_per_room, int64_t start_ns, int64_t end_ns, int payload_bytes) {
  PublishOutcome out(rooms.size());
  const std::string pad(std::max(0, payload_bytes - 30), 'x');
  grpc::ClientContext ctx;
  // Hard stop: a core that stops reading cannot hold the harness forever.
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::nanoseconds(std::max<int64_t>(0, end_ns - NowNs())) +
                   std::chrono::seconds(30));
  auto stream = stub.PublishStream(&ctx);
  std::thread reader([&] {
    v1::PublishAck ack;
    while (stream->Read(&ack)) Account(out, (ack.id() - 1) % rooms.size(), ack);
  });
  const double total_rate = rate_per_room * static_cast<double>(rooms.size());
  SleepUntil(start_ns);
  v1::PublishRequest request;
  for (uint64_t seq = 0; WaitForTurn(seq, total_rate, start_ns, end_ns); ++seq) {
    request.set_id(seq + 1);
    request.set_room(rooms[seq % rooms.size()]);
    request.set_data(Payload(NowNs(), payload_bytes, pad));
    if (!stream->Write(request)) {
      out.failure = "PublishStream write failed";
      break;
    }
    ++out.sent;
  }
  stream->WritesDone();
  reader.join();
  grpc::Status status = stream->Finish();
  if (!status.ok()) {
    out.failure = absl::StrCat("PublishStream: ", status.error_code(), " ", status.error_message());
  }
  return out;
}

// ---------------------------------------------------------------------------
// Steps and presets
// ---------------------------------------------------------------------------

std::string LoadAverage() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

class Runner {
 public:
  // Publishes with `stub`, with `poster` in generic target mode, or with
  // `nats` against nats-server (the others are null).
  Runner(const Flags& flags, RunReport& report, ClientPool& pool, v1::Rooms::Stub* stub,
         HttpPoster* poster, NatsPublisher* nats, std::vector<std::string> rooms)
      : flags_(flags),
        report_(report),
        pool_(pool),
        stub_(stub),
        poster_(poster),
        nats_(nats),
        rooms_(std::move(rooms)),
        published_upto_(rooms_.size(), 0) {}

  void Connect(int count) {
    std::cerr << absl::StrFormat("connecting %d subscribers...\n", count);
    ConnectReport c = pool_.Connect(count, rooms_, flags_.connect_timeout);
    std::cerr << absl::StrFormat("  %d joined, %d failed in %.2f s\n", c.joined, c.failed,
                                 c.seconds);
    if (c.presence_frames > 0 && !presence_noted_) {
      presence_noted_ = true;
      report_.notes.push_back(
          "presence is on in the rooms' namespace: every join sends a JOIN event to every member "
          "already there (N^2/2 frames while connecting). Use a namespace with presence=false "
          "(core --presence=false, or --room-prefix ns:bench with "
          "--namespaces='ns:presence=false') "
          "to measure without it");
    }
    report_.connects.push_back(std::move(c));
  }

  // One publishing step; appends its report and returns it.
  // `judge_latency`: whether p99 > --max-p99 makes the step unsustainable.
  // `during(start_ns, end_ns)`, if set, runs on this thread while the
  // publisher publishes (churn).
  const StepReport& Step(const std::string& label, double rate, absl::Duration warmup,
                         absl::Duration duration, bool judge_latency = true,
                         const std::function<void(int64_t, int64_t)>& during = nullptr) {
    StepReport s;
    s.label = label;
    s.rate_per_room = rate;
    s.rooms = static_cast<int>(rooms_.size());
    const ProcessSample edge0 = SampleProcess(flags_.edge_pid);
    const ProcessSample core0 = SampleProcess(flags_.core_pid);
    const double cpu0 = SelfCpuSeconds();
    const int64_t wall0 = NowNs();

    const int64_t start = NowNs() + 20'000'000;
    const int64_t measure_from = start + absl::ToInt64Nanoseconds(warmup);
    const int64_t end = measure_from + absl::ToInt64Nanoseconds(duration);
    pool_.BeginStep(published_upto_, measure_from);
    s.subscribers = pool_.open();
    PublishOutcome p(rooms_.size());
    // The generic and nats targets number their messages themselves.
    std::vector<uint64_t> next_seq = published_upto_;
    for (uint64_t& seq : next_seq) ++seq;
    std::thread publisher([&] {
      if (poster_ != nullptr) {
        p = PublishHttp(*poster_, flags_, rooms_, next_seq, rate, start, end);
      } else if (nats_ != nullptr) {
        p = PublishNats(*nats_, flags_, rooms_, next_seq, rate, start, end);
      } else if (flags_.publish == "unary") {
        p = PublishUnary(*stub_, rooms_, rate, start, end, flags_.payload);
      } else {
        p = Publish(*stub_, rooms_, rate, start, end, flags_.payload);
      }
    });
    if (during) during(start, end);
    publisher.join();

    const int64_t drain_start = NowNs();
    const int64_t drain_end = drain_start + absl::ToInt64Nanoseconds(flags_.drain);
    int behind = pool_.CountBehind(p.last);
    while (behind > 0 && NowNs() < drain_end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      behind = pool_.CountBehind(p.last);
    }
    s.drained = behind == 0;
    s.drain_seconds = static_cast<double>(NowNs() - drain_start) / 1e9;
    s.delivery = pool_.EndStep(p.first, p.last);
    for (size_t r = 0; r < rooms_.size(); ++r) {
      published_upto_[r] = std::max(published_upto_[r], p.last[r]);
    }

    s.wall_seconds = static_cast<double>(NowNs() - wall0) / 1e9;
    s.generator_cpu_seconds = SelfCpuSeconds() - cpu0;
    s.edge_after = SampleProcess(flags_.edge_pid);
    s.core_after = SampleProcess(flags_.core_pid);
    if (edge0.ok && s.edge_after.ok)
      s.edge_cpu_seconds = s.edge_after.cpu_seconds - edge0.cpu_seconds;
    if (core0.ok && s.core_after.ok)
      s.core_cpu_seconds = s.core_after.cpu_seconds - core0.cpu_seconds;
    s.warmup_seconds = absl::ToDoubleSeconds(warmup);
    // Rates over the scheduled windows (a late publisher shows as a low rate).
    s.measure_seconds = static_cast<double>(end - measure_from) / 1e9;
    s.published = p.acked;
    s.publish_errors = p.errors;
    const double publish_seconds = static_cast<double>(end - start) / 1e9;
    s.published_per_second = publish_seconds > 0 ? p.acked / publish_seconds : 0;
    s.delivered_per_second =
        s.measure_seconds > 0 ? s.delivery.latency.count() / s.measure_seconds : 0;

    std::vector<std::string> problems;
    if (!p.failure.empty()) problems.push_back(p.failure);
    if (p.errors > 0) {
      problems.push_back(
          absl::StrCat(p.errors, " publish errors (", p.error_messages.begin()->first, ")"));
    }
    if (s.subscribers == 0) problems.push_back("no subscriber open");
    if (s.delivery.lost > 0) problems.push_back("loss");
    if (s.delivery.duplicated > 0) problems.push_back("duplicates");
    if (s.delivery.disconnected > 0) problems.push_back("disconnects");
    if (!s.drained) problems.push_back("not drained");
    if (judge_latency &&
        s.delivery.latency.Percentile(99) > absl::ToInt64Nanoseconds(flags_.max_p99)) {
      problems.push_back(absl::StrCat("p99 > ", absl::FormatDuration(flags_.max_p99)));
    }
    const double target = rate * static_cast<double>(rooms_.size());
    if (rate > 0 && s.published_per_second < 0.9 * target) {
      problems.push_back("publisher below 90% of the target rate");
    }
    s.sustainable = problems.empty();
    s.verdict = s.sustainable ? "ok" : absl::StrJoin(problems, "; ");
    std::cerr << absl::StrFormat(
        "  %s: published %d (%.0f/s), delivered %.0f/s, p50 %.2f ms p99 %.2f ms max %.2f ms, "
        "lost %d, dup %d, disconnected %d -> %s\n",
        s.label, s.published, s.published_per_second, s.delivered_per_second,
        s.delivery.latency.Percentile(50) / 1e6, s.delivery.latency.Percentile(99) / 1e6,
        s.delivery.latency.max() / 1e6, s.delivery.lost, s.delivery.duplicated,
        s.delivery.disconnected, s.verdict);
    report_.steps.push_back(std::move(s));
    return report_.steps.back();
  }

  // RSS after the (first) connect phase.
  void SampleConnected() {
    report_.edge_connected = SampleProcess(flags_.edge_pid);
    report_.core_connected = SampleProcess(flags_.core_pid);
  }

 private:
  const Flags& flags_;
  RunReport& report_;
  ClientPool& pool_;
  v1::Rooms::Stub* const stub_;
  HttpPoster* const poster_;
  NatsPublisher* const nats_;
  const std::vector<std::string> rooms_;
  std::vector<uint64_t> published_upto_;  // Per room: highest offset seen acked.
  bool presence_noted_ = false;
};

std::string RateLabel(double rate) {
  return rate == 0 ? std::string("rate=max") : absl::StrFormat("rate=%g", rate);
}

void RunFanout(const Flags& f, RunReport& report, Runner& runner) {
  const int subscribers = f.subscribers.value_or(1000);
  runner.Connect(subscribers);
  runner.SampleConnected();
  const absl::Duration duration = f.duration.value_or(absl::Seconds(3));
  std::vector<double> rates = f.rate ? std::vector<double>{*f.rate} : f.rates;
  for (double rate : rates) {
    const StepReport& s = runner.Step(RateLabel(rate), rate, f.warmup, duration);
    if (!s.sustainable) break;
    report.highest_sustainable_rate = rate;
  }
}

void RunRooms(const Flags& f, RunReport& report, Runner& runner) {
  runner.Connect(f.subscribers.value_or(1000));
  runner.SampleConnected();
  const double rate = f.rate.value_or(10);
  runner.Step(RateLabel(rate), rate, f.warmup, f.duration.value_or(absl::Seconds(3)));
}

void RunLadder(const Flags& f, RunReport& report, Runner& runner) {
  const int most = f.subscribers.value_or(2500);
  std::vector<int> rungs;
  for (int n : {100, 250, 500, 1000, 2500, 5000, 10000, 20000}) {
    if (n < most) rungs.push_back(n);
  }
  rungs.push_back(most);
  const double rate = f.rate.value_or(10);
  int connected = 0;
  for (int rung : rungs) {
    runner.Connect(rung - connected);
    connected = rung;
    if (report.connects.size() == 1) runner.SampleConnected();
    const StepReport& s = runner.Step(absl::StrCat("subs=", rung), rate, f.warmup,
                                      f.duration.value_or(absl::Seconds(3)));
    if (!s.sustainable) break;
    report.highest_sustainable_subscribers = rung;
  }
}

void RunChurn(const Flags& f, RunReport& report, Runner& runner, ClientPool& pool,
              const std::vector<std::string>& rooms) {
  runner.Connect(f.subscribers.value_or(1000));
  runner.SampleConnected();
  const double rate = f.rate.value_or(10);
  constexpr int64_t kTickNs = 100'000'000;
  double churn_seconds = 0;
  runner.Step(absl::StrFormat("churn=%g/s", f.churn_rate), rate, f.warmup,
              f.duration.value_or(absl::Seconds(10)), /*judge_latency=*/true,
              [&](int64_t start, int64_t end) {
                churn_seconds = static_cast<double>(end - start) / 1e9;
                double owed = 0;
                for (int64_t tick = start; tick < end; tick += kTickNs) {
                  const int64_t now = NowNs();
                  if (tick > now) std::this_thread::sleep_for(std::chrono::nanoseconds(tick - now));
                  owed += f.churn_rate * kTickNs / 1e9;
                  const int count = static_cast<int>(owed);
                  owed -= count;
                  if (count > 0) pool.Replace(count, rooms);
                }
              });
  report.connects.push_back(pool.TakeReplaceReport(f.connect_timeout));
  report.connects.back().seconds = churn_seconds;  // Replacements were spread over the step.
  const ConnectReport& c = report.connects.back();
  std::cerr << absl::StrFormat("  replaced %d: %d joined, %d failed\n", c.requested, c.joined,
                               c.failed);
}

void RunIdle(const Flags& f, RunReport& report, Runner& runner) {
  runner.Connect(f.subscribers.value_or(10000));
  const absl::Duration hold = f.duration.value_or(absl::Seconds(5));
  std::cerr << "holding idle connections for " << absl::FormatDuration(hold) << "\n";
  absl::SleepFor(hold);
  runner.SampleConnected();
  // One message per room: every idle connection must still deliver.
  runner.Step("check", 1, absl::ZeroDuration(), absl::Seconds(1), /*judge_latency=*/false);
}

int Main(int argc, char** argv) {
  const Flags f = ParseFlags(argc, argv);
  // Thousands of sockets: use every descriptor we may.
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }

  RunReport report;
  report.preset = f.preset;
  const bool nats = IsNatsTarget(f);
  const bool generic = !f.target.empty() && !nats;
  report.transport = nats ? "nats-ws" : generic ? "generic" : f.transport;
  report.publish = nats ? "nats" : generic ? "http" : f.publish;
  report.edge = generic || nats ? f.target : f.edge;
  report.core = f.core;
  report.started_at = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
  report.host_load = LoadAverage();
  report.client_threads = f.threads;
  report.payload_bytes = static_cast<int>(
      Payload(10'000'000'000, f.payload, std::string(std::max(0, f.payload - 30), 'x')).size());
  report.edge_pid = f.edge_pid;
  report.core_pid = f.core_pid;
  report.edge_before = SampleProcess(f.edge_pid);
  report.core_before = SampleProcess(f.core_pid);
  if (f.edge_pid && !report.edge_before.ok)
    UsageError(absl::StrCat("--edge-pid ", f.edge_pid, ": cannot read /proc"));
  if (f.core_pid && !report.core_before.ok)
    UsageError(absl::StrCat("--core-pid ", f.core_pid, ": cannot read /proc"));

  std::unique_ptr<v1::Rooms::Stub> stub;
  std::unique_ptr<HttpPoster> poster;
  std::unique_ptr<NatsPublisher> nats_publisher;
  if (nats) {
    report.core = f.nats_publish;
    auto [host, port] = SplitHostPort(f.nats_publish, "nats-publish");
    nats_publisher = std::make_unique<NatsPublisher>(host, port);
    if (!nats_publisher->Connect()) {
      std::cerr << "roomcast-bench: cannot publish to nats-server at " << f.nats_publish << ": "
                << nats_publisher->error() << "\n";
      return 1;
    }
  } else if (generic) {
    report.core = f.publish_url;
    Url publish = ParseUrl(f.publish_url, "http", "publish-url");
    poster = std::make_unique<HttpPoster>(publish.host, publish.port, publish.target);
  } else {
    auto channel = grpc::CreateChannel(f.core, grpc::InsecureChannelCredentials());
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
      std::cerr << "roomcast-bench: cannot reach the core at " << f.core << "\n";
      return 1;
    }
    stub = v1::Rooms::NewStub(channel);
  }

  const int num_rooms = f.rooms.value_or(f.preset == "rooms" ? 100 : 1);
  std::mt19937_64 rng(std::random_device{}());
  const std::string run_id = absl::StrFormat("%08x", static_cast<uint32_t>(rng()));
  std::vector<std::string> rooms;
  for (int i = 0; i < num_rooms; ++i)
    rooms.push_back(absl::StrCat(f.room_prefix, "-", run_id, "-", i));

  ClientOptions options;
  if (nats) {
    Url target = ParseUrl(f.target, kNatsScheme, "target");
    options.host = target.host;
    options.port = target.port;
    options.generic.path = target.target;
  } else if (generic) {
    Url target = ParseUrl(f.target, "ws", "target");
    options.host = target.host;
    options.port = target.port;
    options.generic.path = target.target;
    options.generic.subscribe_frame = f.subscribe_frame;
    options.generic.message_match = f.message_match;
    options.generic.joined_match = f.joined_match;
  } else {
    std::tie(options.host, options.port) = SplitHostPort(f.edge, "edge");
  }
  options.transport = f.transport == "ws"          ? Transport::kWebSocketJson
                      : f.transport == "ws-binary" ? Transport::kWebSocketBinary
                      : f.transport == "sse"       ? Transport::kSse
                                                   : Transport::kGrpc;
  if (generic) options.transport = Transport::kGenericWs;
  if (nats) options.transport = Transport::kNatsWebSocket;
  options.core = f.core;
  options.threads = f.threads;
  options.max_connecting = f.max_connecting;

  const double cpu0 = SelfCpuSeconds();
  const int64_t wall0 = NowNs();
  {
    ClientPool pool(options);
    Runner runner(f, report, pool, stub.get(), poster.get(), nats_publisher.get(), rooms);
    if (f.preset == "fanout") {
      RunFanout(f, report, runner);
    } else if (f.preset == "rooms") {
      RunRooms(f, report, runner);
    } else if (f.preset == "ladder") {
      RunLadder(f, report, runner);
    } else if (f.preset == "churn") {
      RunChurn(f, report, runner, pool, rooms);
    } else if (f.preset == "idle") {
      RunIdle(f, report, runner);
    }
    pool.CloseAll();
  }
  report.generator_cpu_seconds = SelfCpuSeconds() - cpu0;
  report.wall_seconds = static_cast<double>(NowNs() - wall0) / 1e9;

  std::cout << FormatTable(report) << std::flush;
  if (!f.json.empty()) {
    std::ofstream out(f.json);
    out << FormatJson(report);
    if (!out) {
      std::cerr << "roomcast-bench: cannot write " << f.json << "\n";
      return 1;
    }
  }
  if (!f.plot.empty()) {
    std::ofstream out(f.plot);
    out << RenderPlotSvg(report);
    if (!out) {
      std::cerr << "roomcast-bench: cannot write " << f.plot << "\n";
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace roomcast::bench

int main(int argc, char** argv) { return roomcast::bench::Main(argc, argv); }
