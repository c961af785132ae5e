// SyncBroker: drives a Broker through its asynchronous interface the way the
// engine tests want to read it, one call and its result at a time. Each call
// waits for the completion with a deadline (a completion that never comes
// fails the test instead of hanging it) and checks that it ran exactly once.
// Join also checks that on_joined ran once, before `done`, on success only.
// Thread-safe like the broker underneath; completions may come from any
// thread.
#ifndef ROOMCAST_TESTS_CORE_SYNC_BROKER_H_
#define ROOMCAST_TESTS_CORE_SYNC_BROKER_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/broker.h"
#include "core/policy.h"
#include "gtest/gtest.h"

namespace roomcast::core {

// Receives one completion; Wait() returns it, or nullopt after the deadline.
template <class T>
class Awaited {
 public:
  // The completion to hand the broker. Keeps the state alive even if the
  // test gave up waiting.
  Completion<T> Callback() {
    return [state = state_](T value) {
      absl::MutexLock lock(&state->mu);
      if (++state->calls == 1) state->value.emplace(std::move(value));
    };
  }

  std::optional<T> Wait(absl::Duration timeout = absl::Seconds(10)) {
    State& s = *state_;
    absl::MutexLock lock(&s.mu);
    auto called = [&s]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) { return s.calls > 0; };
    if (!s.mu.AwaitWithTimeout(absl::Condition(&called), timeout)) {
      ADD_FAILURE() << "the broker did not complete within " << timeout;
      return std::nullopt;
    }
    // A second call would come inline or right after the first.
    EXPECT_EQ(s.calls, 1) << "completion ran more than once";
    return std::move(s.value);
  }

  int calls() const {
    absl::MutexLock lock(&state_->mu);
    return state_->calls;
  }

 private:
  struct State {
    mutable absl::Mutex mu;
    int calls ABSL_GUARDED_BY(mu) = 0;
    std::optional<T> value ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

class SyncBroker {
 public:
  SyncBroker(Broker& broker, const Policy& policy) : broker_(broker), policy_(policy) {}

  Broker& async() { return broker_; }

  absl::StatusOr<v1::Position> Publish(absl::string_view room, std::string data,
                                       const v1::ClientInfo* publisher) {
    Awaited<absl::StatusOr<v1::Position>> done;
    PublishArgs args{std::string(room), std::move(data), std::nullopt};
    if (publisher != nullptr) args.publisher = *publisher;
    broker_.Publish(std::move(args), done.Callback());
    return Or(done.Wait());
  }

  absl::Status Join(absl::string_view room, const v1::Position* since, Subscriber* subscriber,
                    const v1::ClientInfo* member,
                    absl::FunctionRef<void(const JoinResult&)> on_joined) {
    struct Order {
      absl::Mutex mu;
      int joined ABSL_GUARDED_BY(mu) = 0;
      int joined_at_done ABSL_GUARDED_BY(mu) = -1;
    };
    auto order = std::make_shared<Order>();
    Awaited<absl::Status> done;
    JoinArgs args{std::string(room), std::nullopt, std::nullopt};
    if (since != nullptr) args.since = *since;
    if (member != nullptr) args.member = *member;
    broker_.Join(
        std::move(args), subscriber,
        [order, on_joined](const JoinResult& result) {
          {
            absl::MutexLock lock(&order->mu);
            ++order->joined;
          }
          on_joined(result);
        },
        [order, cb = done.Callback()](absl::Status status) mutable {
          {
            absl::MutexLock lock(&order->mu);
            order->joined_at_done = order->joined;
          }
          std::move(cb)(std::move(status));
        });
    absl::Status status = Or(done.Wait());
    absl::MutexLock lock(&order->mu);
    EXPECT_EQ(order->joined_at_done, status.ok() ? 1 : 0)
        << "on_joined must run exactly once before done on success, never on failure";
    return status;
  }

  void Leave(absl::string_view room, Subscriber* subscriber, absl::string_view member_client_id) {
    Awaited<absl::Status> done;
    broker_.Leave(LeaveArgs{std::string(room), std::string(member_client_id)}, subscriber,
                  done.Callback());
    absl::Status status = Or(done.Wait());
    EXPECT_TRUE(status.ok()) << status;
  }

  absl::StatusOr<HistoryResult> History(absl::string_view room, const v1::Position* since,
                                        uint32_t limit, bool reverse) {
    Awaited<absl::StatusOr<HistoryResult>> done;
    HistoryArgs args{std::string(room), std::nullopt, limit, reverse};
    if (since != nullptr) args.since = *since;
    broker_.History(std::move(args), done.Callback());
    return Or(done.Wait());
  }

  absl::StatusOr<std::vector<v1::ClientInfo>> Presence(absl::string_view room) {
    Awaited<absl::StatusOr<std::vector<v1::ClientInfo>>> done;
    broker_.Presence(std::string(room), done.Callback());
    return Or(done.Wait());
  }

  std::vector<RoomSummary> ListRooms(absl::string_view prefix) {
    Awaited<absl::StatusOr<std::vector<RoomSummary>>> done;
    broker_.ListRooms(std::string(prefix), done.Callback());
    absl::StatusOr<std::vector<RoomSummary>> rooms = Or(done.Wait());
    EXPECT_TRUE(rooms.ok()) << rooms.status();
    return rooms.value_or(std::vector<RoomSummary>{});
  }

  BrokerStats Stats() {
    Awaited<BrokerStats> done;
    broker_.Stats(done.Callback());
    return done.Wait().value_or(BrokerStats{});
  }

  // Policy, not storage: kept here so the tests read as before.
  absl::Status CheckClientPublish(absl::string_view room) {
    return policy_.CheckClientPublish(room);
  }

  void Sweep() { broker_.MaintainNow(); }

 private:
  template <class T>
  static T Or(std::optional<T> value) {
    if (value.has_value()) return *std::move(value);
    return T(absl::DeadlineExceededError("test: no completion"));
  }

  Broker& broker_;
  const Policy& policy_;
};

}  // namespace roomcast::core

#endif  // ROOMCAST_TESTS_CORE_SYNC_BROKER_H_
