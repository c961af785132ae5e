#include "core/server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/memory_broker.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace roomcast::core {

CoreServer::CoreServer(CoreOptions options, Clock* clock)
    : options_(std::move(options)),
      broker_(std::make_unique<MemoryBroker>(options_.engine, clock)),
      context_{.options = &options_,
               .broker = broker_.get(),
               .registry = &registry_,
               .gauges = &gauges_},
      rooms_(&context_),
      edge_link_(&context_) {}

CoreServer::~CoreServer() { Shutdown(); }

absl::StatusOr<std::string> CoreServer::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options_.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&rooms_);
  builder.RegisterService(&edge_link_);
  // Find dead peers: ping idle connections every 30 s, drop them after 10 s
  // without an answer; and let clients (edges) ping every 10 s themselves
  // without being told "too many pings".
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // Payloads are capped by max_payload_bytes; leave room for the envelope.
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      options_.engine.max_payload_bytes + options_.engine.max_client_info_bytes + 64 * 1024));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen));
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  sweeper_ = std::thread([this] {
    while (!stop_sweeper_.WaitForNotificationWithTimeout(options_.sweep_interval)) {
      broker_->Sweep();
      if (!options_.stats_room.empty()) PublishStats();
    }
  });
  std::string host = options_.listen.substr(0, options_.listen.rfind(':'));
  return absl::StrCat(host, ":", port);
}

void CoreServer::Shutdown() {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    registry_.ShutdownAll();
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(options_.shutdown_grace));
  }
  stop_sweeper_.Notify();
  if (sweeper_.joinable()) sweeper_.join();
  done_.Notify();
}

void CoreServer::Wait() { done_.WaitForNotification(); }

std::shared_ptr<grpc::Channel> CoreServer::InProcessChannel() {
  return server_->InProcessChannel(grpc::ChannelArguments());
}

void CoreServer::SweepNow() { broker_->Sweep(); }

void CoreServer::PublishStats() {
  v1::StatsResponse stats = CollectStats(context_);
  std::string json = absl::StrCat(
      "{\"rooms\":", stats.rooms(), ",\"subscriptions\":", stats.subscriptions(),
      ",\"edge_links\":", stats.edge_links(), ",\"edge_clients\":", stats.edge_clients(),
      ",\"subscribe_streams\":", stats.subscribe_streams(),
      ",\"messages_published_total\":", stats.messages_published_total(),
      ",\"unix_ms\":", absl::ToUnixMillis(absl::Now()), "}");
  broker_->Publish(options_.stats_room, std::move(json), nullptr).status().IgnoreError();
}

}  // namespace roomcast::core
