#include "core/broker_factory.h"

#include "absl/strings/str_cat.h"
#include "core/memory_broker.h"

namespace roomcast::core {

bool IsKnownBroker(absl::string_view name) { return name == "memory"; }

absl::StatusOr<std::unique_ptr<Broker>> MakeBroker(const CoreOptions& options, const Policy* policy,
                                                   Clock* clock) {
  if (options.broker == "memory") {
    MemoryBrokerOptions memory;
    memory.sweep_interval = options.sweep_interval;
    memory.sweep_rooms_per_pass = options.sweep_rooms_per_pass;
    return std::make_unique<MemoryBroker>(policy, clock, memory);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown broker \"", options.broker, "\" (known: memory)"));
}

}  // namespace roomcast::core
