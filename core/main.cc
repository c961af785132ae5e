// roomcast-core: rooms, history, presence and fan-out over gRPC.
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "core/broker_factory.h"
#include "core/options.h"
#include "core/server.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC listen address; port 0 picks a free port");
ABSL_FLAG(std::string, node_name, "",
          "name of this node in logs, EdgeWelcome and NATS (default: \"core\"; with "
          "--broker=nats, host name + pid)");
ABSL_FLAG(std::string, broker, "memory",
          "where rooms live: memory (embedded, the default) or nats (NATS JetStream shared by "
          "every core node; docs/cluster.md)");
ABSL_FLAG(std::string, nats_url, "nats://127.0.0.1:4222",
          "NATS server URL(s), comma-separated (--broker=nats)");
ABSL_FLAG(absl::Duration, nats_request_timeout, absl::Seconds(2),
          "longest a JetStream request may take before the operation fails (--broker=nats)");
ABSL_FLAG(uint64_t, history_size, 100, "messages kept per room in the default namespace");
ABSL_FLAG(absl::Duration, history_ttl, absl::Minutes(5), "age after which messages leave history");
ABSL_FLAG(bool, presence, true, "track presence in the default namespace");
ABSL_FLAG(bool, join_leave, true,
          "send JOIN/LEAVE events in the default namespace (N joins cost N²/2 events: "
          "turn off for large rooms; presence lists still work)");
ABSL_FLAG(bool, client_publish, true, "browsers may publish in the default namespace");
ABSL_FLAG(std::string, namespaces, "",
          "namespaces, e.g. \"chat:history_size=500,history_ttl=1h;feed:client_publish=false\"; "
          "unset fields take the default namespace's values");
ABSL_FLAG(uint64_t, max_payload_bytes, 64 * 1024, "largest message payload accepted");
ABSL_FLAG(uint64_t, max_rooms, 1'000'000, "most rooms that may exist at once");
ABSL_FLAG(uint64_t, subscribe_queue_bytes, 8 << 20,
          "outbound queue limit of one Subscribe stream before it ends as a slow consumer");
ABSL_FLAG(uint64_t, edge_queue_bytes, 64 << 20,
          "outbound queue limit of one edge link before it ends as a slow consumer");
ABSL_FLAG(uint64_t, subscribe_queue_events, 50'000,
          "outbound queue limit of one Subscribe stream, in events");
ABSL_FLAG(uint64_t, edge_queue_events, 200'000, "outbound queue limit of one edge link, in events");
ABSL_FLAG(uint64_t, max_room_name_bytes, 200, "longest room name, namespace included");
ABSL_FLAG(uint64_t, max_client_info_bytes, 4096, "largest ClientInfo.info, serialized");
ABSL_FLAG(uint64_t, max_client_id_bytes, 256, "longest client_id and user_id");
ABSL_FLAG(uint32_t, max_history_limit, 1000, "most messages one History call returns");
ABSL_FLAG(uint64_t, max_rooms_per_subscribe, 100, "most rooms in one Subscribe request");
ABSL_FLAG(uint64_t, max_pending_acks, 1024,
          "unacknowledged PublishStream requests before the core stops reading");
ABSL_FLAG(uint64_t, max_events_per_edge_batch, 512,
          "most room events batched into one write to an edge");
ABSL_FLAG(uint64_t, max_envelope_bytes, 64 * 1024,
          "bytes a request may carry beyond its payload and client info");
ABSL_FLAG(absl::Duration, sweep_interval, absl::Seconds(1),
          "how often expired history and empty rooms are swept");
ABSL_FLAG(uint64_t, sweep_rooms_per_pass, 10'000, "most rooms one sweep pass visits");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Seconds(30),
          "ping a gRPC connection idle for this long");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(10),
          "drop a connection whose keepalive ping is not answered within this");
ABSL_FLAG(absl::Duration, min_client_ping_interval, absl::Seconds(10),
          "clients may ping this often without being refused");
ABSL_FLAG(absl::Duration, stats_interval, absl::Seconds(1), "how often --stats_room gets stats");
ABSL_FLAG(std::string, stats_room, "",
          "publish this node's stats as JSON to this room every --stats_interval (the demo "
          "dashboard)");
ABSL_FLAG(bool, reflection, false,
          "serve gRPC server reflection (advertises every service; off by default)");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(5),
          "how long streams get to finish on SIGTERM/SIGINT");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("roomcast-core: rooms, history, presence and fan-out over gRPC");
  // --help lists this program's own flags (those defined in this file);
  // --helpfull adds the libraries' ones. File names are shown relative to
  // the source tree.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "core/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.normalize_filename = [](absl::string_view file) {
    while (absl::ConsumePrefix(&file, "../")) {
    }
    return std::string(file);
  };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  // Logs go to stderr: stdout carries only the "listening on" line that
  // scripts and tests read.
  spdlog::set_default_logger(spdlog::stderr_color_mt("roomcast-core"));

  roomcast::core::CoreOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.broker = absl::GetFlag(FLAGS_broker);
  if (!roomcast::core::IsKnownBroker(options.broker)) {
    spdlog::critical("unknown broker broker={} known=memory,nats", options.broker);
    return 2;
  }
  options.node_name = absl::GetFlag(FLAGS_node_name);
  if (options.node_name.empty() && options.broker == "nats") {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    options.node_name = std::string(host) + "-" + std::to_string(getpid());
  } else if (options.node_name.empty()) {
    options.node_name = "core";
  }
  options.nats_url = absl::GetFlag(FLAGS_nats_url);
  options.nats_request_timeout = absl::GetFlag(FLAGS_nats_request_timeout);
  roomcast::core::NamespaceOptions& ns = options.engine.default_namespace;
  ns.history_size = absl::GetFlag(FLAGS_history_size);
  ns.history_ttl = absl::GetFlag(FLAGS_history_ttl);
  ns.presence = absl::GetFlag(FLAGS_presence);
  ns.join_leave = absl::GetFlag(FLAGS_join_leave);
  ns.client_publish = absl::GetFlag(FLAGS_client_publish);
  auto namespaces = roomcast::core::ParseNamespaces(absl::GetFlag(FLAGS_namespaces), ns);
  if (!namespaces.ok()) {
    spdlog::critical("invalid flag flag=--namespaces error={}", namespaces.status().ToString());
    return 2;
  }
  options.engine.namespaces = *std::move(namespaces);
  options.engine.max_payload_bytes = absl::GetFlag(FLAGS_max_payload_bytes);
  options.engine.max_rooms = absl::GetFlag(FLAGS_max_rooms);
  options.subscribe_queue.max_bytes = absl::GetFlag(FLAGS_subscribe_queue_bytes);
  options.edge_queue.max_bytes = absl::GetFlag(FLAGS_edge_queue_bytes);
  options.subscribe_queue.max_events = absl::GetFlag(FLAGS_subscribe_queue_events);
  options.edge_queue.max_events = absl::GetFlag(FLAGS_edge_queue_events);
  options.engine.max_room_name_bytes = absl::GetFlag(FLAGS_max_room_name_bytes);
  options.engine.max_client_info_bytes = absl::GetFlag(FLAGS_max_client_info_bytes);
  options.engine.max_client_id_bytes = absl::GetFlag(FLAGS_max_client_id_bytes);
  options.engine.max_history_limit = absl::GetFlag(FLAGS_max_history_limit);
  options.max_rooms_per_subscribe = absl::GetFlag(FLAGS_max_rooms_per_subscribe);
  options.max_pending_acks = absl::GetFlag(FLAGS_max_pending_acks);
  options.max_events_per_edge_batch = absl::GetFlag(FLAGS_max_events_per_edge_batch);
  options.max_envelope_bytes = absl::GetFlag(FLAGS_max_envelope_bytes);
  options.sweep_interval = absl::GetFlag(FLAGS_sweep_interval);
  options.sweep_rooms_per_pass = absl::GetFlag(FLAGS_sweep_rooms_per_pass);
  options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  options.min_client_ping_interval = absl::GetFlag(FLAGS_min_client_ping_interval);
  options.stats_interval = absl::GetFlag(FLAGS_stats_interval);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.reflection = absl::GetFlag(FLAGS_reflection);
  options.stats_room = absl::GetFlag(FLAGS_stats_room);

  // Block the stop signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  roomcast::core::CoreServer server(options);
  absl::StatusOr<std::string> address = server.Start();
  if (!address.ok()) {
    spdlog::critical("core start failed error={}", address.status().ToString());
    return address.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::printf("listening on %s\n", address->c_str());
  std::fflush(stdout);

  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("core shutting down signal={}", signal);
  server.Shutdown();
  return 0;
}
