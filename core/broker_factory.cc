#include "core/broker_factory.h"

#include "absl/strings/str_cat.h"
#include "core/memory_broker.h"
#include "core/nats_broker.h"

namespace roomcast::core {

bool IsKnownBroker(absl::string_view name) { return name == "memory" || name == "nats"; }

absl::StatusOr<std::unique_ptr<Broker>> MakeBroker(const CoreOptions& options, const Policy* policy,
                                                   Clock* clock) {
  if (options.broker == "memory") {
    MemoryBrokerOptions memory;
    memory.sweep_interval = options.sweep_interval;
    memory.sweep_rooms_per_pass = options.sweep_rooms_per_pass;
    return std::make_unique<MemoryBroker>(policy, clock, memory);
  }
  if (options.broker == "nats") {
    NatsBrokerOptions nats;
    nats.url = options.nats_url;
    nats.node_name = options.node_name;
    nats.request_timeout = options.nats_request_timeout;
    nats.maintain_interval = options.sweep_interval;
    return std::make_unique<NatsBroker>(policy, clock, nats);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown broker \"", options.broker, "\" (known: memory, nats)"));
}

}  // namespace roomcast::core
