// FakeClock: a Clock that only moves when a test says so, so history expiry
// (history_ttl) and Sweep() can be tested without sleeping. Starts at a fixed
// instant so message times are reproducible. Thread-safe: Now() may be read
// by broker threads while the test thread calls Advance().
#ifndef ROOMCAST_TESTS_CORE_FAKE_CLOCK_H_
#define ROOMCAST_TESTS_CORE_FAKE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"

namespace roomcast::core {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  FakeClock(const FakeClock&) = delete;
  FakeClock& operator=(const FakeClock&) = delete;

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }

  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace roomcast::core

#endif  // ROOMCAST_TESTS_CORE_FAKE_CLOCK_H_
