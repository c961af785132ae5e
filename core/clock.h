// Time source for the core, injectable so tests control history expiry.
#ifndef ROOMCAST_CORE_CLOCK_H_
#define ROOMCAST_CORE_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace roomcast::core {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // The process-wide wall clock; never destroyed.
  static Clock* Real();
};

}  // namespace roomcast::core

#endif  // ROOMCAST_CORE_CLOCK_H_
