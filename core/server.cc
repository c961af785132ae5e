#include "core/server.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/broker_factory.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/impl/server_builder_option.h"
#include "grpcpp/impl/server_builder_plugin.h"
#include "spdlog/spdlog.h"

namespace roomcast::core {
namespace {

// Takes the reflection plugin out of a ServerBuilder: linking
// grpc++_reflection registers it for every server of the process (a static
// initializer), so leaving it out takes this, not just not asking for it.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->erase(
        std::remove_if(plugins->begin(), plugins->end(),
                       [](const std::unique_ptr<grpc::ServerBuilderPlugin>& plugin) {
                         return dynamic_cast<grpc::reflection::ProtoServerReflectionPlugin*>(
                                    plugin.get()) != nullptr;
                       }),
        plugins->end());
  }
};

std::unique_ptr<Broker> BrokerOrNull(absl::StatusOr<std::unique_ptr<Broker>> broker,
                                     absl::Status& status) {
  if (!broker.ok()) {
    status = broker.status();
    return nullptr;
  }
  return *std::move(broker);
}

int Millis(absl::Duration d) { return static_cast<int>(absl::ToInt64Milliseconds(d)); }

}  // namespace

CoreServer::CoreServer(CoreOptions options, Clock* clock)
    : options_(std::move(options)),
      policy_(options_.engine),
      broker_(BrokerOrNull(MakeBroker(options_, &policy_, clock), broker_status_)),
      context_{.options = &options_,
               .policy = &policy_,
               .broker = broker_.get(),
               .registry = &registry_,
               .gauges = &gauges_},
      rooms_(&context_),
      edge_link_(&context_) {}

CoreServer::~CoreServer() { Shutdown(); }

absl::StatusOr<std::string> CoreServer::Start() {
  if (!broker_status_.ok()) return broker_status_;
  if (absl::Status s = broker_->Start(); !s.ok()) return s;
  grpc::EnableDefaultHealthCheckService(true);
  if (options_.reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!options_.reflection) builder.SetOption(std::make_unique<WithoutReflection>());
  int port = 0;
  builder.AddListeningPort(options_.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&rooms_);
  builder.RegisterService(&edge_link_);
  // Find dead peers (keepalive_time / keepalive_timeout), and let clients
  // (edges) ping as often as min_client_ping_interval without being told
  // "too many pings".
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(options_.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(options_.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             Millis(options_.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // Payloads are capped by max_payload_bytes; leave room for the envelope.
  builder.SetMaxReceiveMessageSize(static_cast<int>(options_.engine.max_payload_bytes +
                                                    options_.engine.max_client_info_bytes +
                                                    options_.max_envelope_bytes));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen));
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  if (!options_.stats_room.empty()) {
    stats_thread_ = std::thread([this] {
      while (!stop_stats_.WaitForNotificationWithTimeout(options_.stats_interval)) PublishStats();
    });
  }
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
  stop_stats_.Notify();
  if (stats_thread_.joinable()) stats_thread_.join();
  if (broker_ != nullptr) broker_->Stop();
  done_.Notify();
}

void CoreServer::Wait() { done_.WaitForNotification(); }

std::shared_ptr<grpc::Channel> CoreServer::InProcessChannel() {
  return server_->InProcessChannel(grpc::ChannelArguments());
}

void CoreServer::SweepNow() {
  if (broker_ != nullptr) broker_->MaintainNow();
}

void CoreServer::PublishStats() {
  CollectStats(context_, [this](v1::StatsResponse stats) {
    std::string json = absl::StrCat(
        "{\"rooms\":", stats.rooms(), ",\"subscriptions\":", stats.subscriptions(),
        ",\"edge_links\":", stats.edge_links(), ",\"edge_clients\":", stats.edge_clients(),
        ",\"subscribe_streams\":", stats.subscribe_streams(),
        ",\"messages_published_total\":", stats.messages_published_total(),
        ",\"unix_ms\":", absl::ToUnixMillis(absl::Now()), "}");
    broker_->Publish(PublishArgs{options_.stats_room, std::move(json), std::nullopt},
                     [this](absl::StatusOr<v1::Position> position) {
                       // A failure repeats every interval: log when it starts
                       // and when it ends, not every time.
                       bool was_failing = stats_failing_.exchange(!position.ok());
                       if (!position.ok() && !was_failing) {
                         spdlog::warn("stats publish failed room={} error={}", options_.stats_room,
                                      position.status().ToString());
                       } else if (position.ok() && was_failing) {
                         spdlog::info("stats publish recovered room={}", options_.stats_room);
                       }
                     });
  });
}

}  // namespace roomcast::core
