// DeferredBroker: a Broker that behaves like a network broker on top of a
// MemoryBroker. Every call returns at once and runs later, in call order, on
// the broker's own thread, where its completions run too (on_joined under the
// room lock, as the memory broker does). Pause() holds operations back so a
// test can make a join still pending when its client goes away; Resume()
// lets them run. Stop() runs what is queued (pause or not) and joins the
// thread, so every completion has run when it returns. Thread-safe.
#ifndef ROOMCAST_TESTS_CORE_DEFERRED_BROKER_H_
#define ROOMCAST_TESTS_CORE_DEFERRED_BROKER_H_

#include <deque>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "core/broker.h"
#include "core/clock.h"
#include "core/memory_broker.h"
#include "core/policy.h"

namespace roomcast::core {

class DeferredBroker final : public Broker {
 public:
  DeferredBroker(const Policy* policy, Clock* clock)
      : inner_(policy, clock), worker_([this] { Run(); }) {}
  ~DeferredBroker() override { Stop(); }

  void Pause() {
    absl::MutexLock lock(&mu_);
    paused_ = true;
  }
  void Resume() {
    absl::MutexLock lock(&mu_);
    paused_ = false;
  }
  size_t queued() {
    absl::MutexLock lock(&mu_);
    return ops_.size();
  }

  absl::Status Start() override { return absl::OkStatus(); }
  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    worker_.join();
  }
  void MaintainNow() override { inner_.MaintainNow(); }

  void Publish(PublishArgs args, Completion<absl::StatusOr<v1::Position>> done) override {
    Post([this, args = std::move(args), done = std::move(done)]() mutable {
      inner_.Publish(std::move(args), std::move(done));
    });
  }
  void Join(JoinArgs args, Subscriber* subscriber, JoinedCallback on_joined,
            Completion<absl::Status> done) override {
    Post([this, args = std::move(args), subscriber, on_joined = std::move(on_joined),
          done = std::move(done)]() mutable {
      inner_.Join(std::move(args), subscriber, std::move(on_joined), std::move(done));
    });
  }
  void Leave(LeaveArgs args, Subscriber* subscriber, Completion<absl::Status> done) override {
    Post([this, args = std::move(args), subscriber, done = std::move(done)]() mutable {
      inner_.Leave(std::move(args), subscriber, std::move(done));
    });
  }
  void History(HistoryArgs args, Completion<absl::StatusOr<HistoryResult>> done) override {
    Post([this, args = std::move(args), done = std::move(done)]() mutable {
      inner_.History(std::move(args), std::move(done));
    });
  }
  void Presence(std::string room,
                Completion<absl::StatusOr<std::vector<v1::ClientInfo>>> done) override {
    Post([this, room = std::move(room), done = std::move(done)]() mutable {
      inner_.Presence(std::move(room), std::move(done));
    });
  }
  void ListRooms(std::string prefix,
                 Completion<absl::StatusOr<std::vector<RoomSummary>>> done) override {
    Post([this, prefix = std::move(prefix), done = std::move(done)]() mutable {
      inner_.ListRooms(std::move(prefix), std::move(done));
    });
  }
  // Stats answer at once: tests poll them while operations are held back.
  void Stats(Completion<BrokerStats> done) override { inner_.Stats(std::move(done)); }

 private:
  using Op = absl::AnyInvocable<void() &&>;

  void Post(Op op) {
    absl::MutexLock lock(&mu_);
    ops_.push_back(std::move(op));
  }

  void Run() {
    for (;;) {
      Op op;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &DeferredBroker::Runnable));
        if (ops_.empty()) return;  // Stopping with nothing left.
        op = std::move(ops_.front());
        ops_.pop_front();
      }
      std::move(op)();
    }
  }

  bool Runnable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || (!paused_ && !ops_.empty());
  }

  MemoryBroker inner_;
  absl::Mutex mu_;
  std::deque<Op> ops_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;  // Last: starts once the state above exists.
};

}  // namespace roomcast::core

#endif  // ROOMCAST_TESTS_CORE_DEFERRED_BROKER_H_
