// MakeBroker: the one place that maps a broker name (CoreOptions::broker,
// flag --broker) to a Broker implementation. Adding a broker means adding a
// branch here; the services and CoreServer only see the Broker interface.
//
// Ownership: the caller owns the returned broker and must keep `policy` and
// `clock` alive longer. The broker is not started (call Start()).
// Errors: INVALID_ARGUMENT for an unknown name (main.cc exits 2 on it).
#ifndef ROOMCAST_CORE_BROKER_FACTORY_H_
#define ROOMCAST_CORE_BROKER_FACTORY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/options.h"
#include "core/policy.h"

namespace roomcast::core {

// Whether `name` names a broker MakeBroker knows ("memory", "nats").
bool IsKnownBroker(absl::string_view name);

absl::StatusOr<std::unique_ptr<Broker>> MakeBroker(const CoreOptions& options, const Policy* policy,
                                                   Clock* clock);

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_BROKER_FACTORY_H_
