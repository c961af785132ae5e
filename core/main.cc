// roomcast-core: rooms, history, presence and fan-out over gRPC.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/options.h"
#include "core/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC listen address; port 0 picks a free port");
ABSL_FLAG(std::string, node_name, "core", "name of this node in logs and EdgeWelcome");
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
ABSL_FLAG(std::string, stats_room, "",
          "publish this node's stats as JSON to this room every second (the demo dashboard)");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(5),
          "how long streams get to finish on SIGTERM/SIGINT");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("roomcast-core: rooms, history, presence and fan-out over gRPC");
  absl::ParseCommandLine(argc, argv);

  roomcast::core::CoreOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.node_name = absl::GetFlag(FLAGS_node_name);
  roomcast::core::NamespaceOptions& ns = options.engine.default_namespace;
  ns.history_size = absl::GetFlag(FLAGS_history_size);
  ns.history_ttl = absl::GetFlag(FLAGS_history_ttl);
  ns.presence = absl::GetFlag(FLAGS_presence);
  ns.join_leave = absl::GetFlag(FLAGS_join_leave);
  ns.client_publish = absl::GetFlag(FLAGS_client_publish);
  auto namespaces = roomcast::core::ParseNamespaces(absl::GetFlag(FLAGS_namespaces), ns);
  if (!namespaces.ok()) {
    std::fprintf(stderr, "roomcast-core: --namespaces: %s\n",
                 std::string(namespaces.status().message()).c_str());
    return 2;
  }
  options.engine.namespaces = *std::move(namespaces);
  options.engine.max_payload_bytes = absl::GetFlag(FLAGS_max_payload_bytes);
  options.engine.max_rooms = absl::GetFlag(FLAGS_max_rooms);
  options.subscribe_queue.max_bytes = absl::GetFlag(FLAGS_subscribe_queue_bytes);
  options.edge_queue.max_bytes = absl::GetFlag(FLAGS_edge_queue_bytes);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
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
    std::fprintf(stderr, "roomcast-core: %s\n", std::string(address.status().message()).c_str());
    return 1;
  }
  std::printf("listening on %s\n", address->c_str());
  std::fflush(stdout);

  int signal = 0;
  sigwait(&signals, &signal);
  std::fprintf(stderr, "roomcast-core: signal %d, shutting down\n", signal);
  server.Shutdown();
  return 0;
}
