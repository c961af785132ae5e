// The asynchronous Broker contract (core/broker.h), checked through the
// interface only so that every broker MakeBroker knows runs the same cases:
// each completion runs exactly once; on_joined runs before `done` and before
// any later event of the room; `done` may call the broker again; after a
// Leave completes nothing more arrives; maintenance runs on its own.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/broker.h"
#include "core/broker_factory.h"
#include "core/policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/fake_clock.h"
#include "tests/core/nats_server.h"
#include "tests/core/sync_broker.h"

namespace roomcast::core {
namespace {

// Records joins and events in one log, in the order the broker handed them.
class LogSubscriber final : public Subscriber {
 public:
  void OnEvent(const RoomEventPtr& event) override {
    absl::MutexLock lock(&mu_);
    if (event->has_message()) log_.push_back(absl::StrCat(event->message().position().offset()));
  }
  void Joined(const JoinResult& result) {
    absl::MutexLock lock(&mu_);
    log_.push_back(absl::StrCat("joined@", result.position.offset()));
  }
  std::vector<std::string> log() {
    absl::MutexLock lock(&mu_);
    return log_;
  }
  size_t size() {
    absl::MutexLock lock(&mu_);
    return log_.size();
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
};

template <class Pred>
bool WaitUntil(Pred done, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

class BrokerContractTest : public ::testing::TestWithParam<const char*> {
 protected:
  BrokerContractTest() : policy_(Engine()) {
    CoreOptions options;
    options.broker = GetParam();
    options.sweep_interval = absl::Milliseconds(5);
    options.sweep_rooms_per_pass = 1;  // Several passes per round.
    if (options.broker == "nats") {
      // A real nats-server -js per test, on a free port with an empty store.
      if (!NatsServer::Available()) return;
      server_ = std::make_unique<NatsServer>();
      EXPECT_TRUE(server_->Start());
      options.nats_url = server_->url();
    }
    absl::StatusOr<std::unique_ptr<Broker>> broker = MakeBroker(options, &policy_, &clock_);
    EXPECT_TRUE(broker.ok()) << broker.status();
    if (broker.ok()) broker_ = *std::move(broker);
    // A network broker connects in Start (the memory broker needs none).
    if (broker_ != nullptr && options.broker == "nats") {
      EXPECT_TRUE(broker_->Start().ok());
    }
  }
  ~BrokerContractTest() override {
    if (broker_ != nullptr) broker_->Stop();
  }

  void SetUp() override {
    if (broker_ == nullptr && std::string(GetParam()) == "nats") {
      GTEST_SKIP() << "no nats-server";
    }
  }

  static EngineOptions Engine() {
    EngineOptions options;
    NamespaceOptions live;  // No history: rooms are empty once nobody is in them.
    live.history_size = 0;
    options.namespaces = {{"live", live}};
    return options;
  }

  Broker& broker() { return *broker_; }
  SyncBroker sync() { return SyncBroker(*broker_, policy_); }

  FakeClock clock_;
  Policy policy_;
  std::unique_ptr<NatsServer> server_;  // Outlives broker_ (declared first).
  std::unique_ptr<Broker> broker_;
};

TEST_P(BrokerContractTest, EveryCompletionRunsExactlyOnce) {
  std::atomic<int> publish_ok{0}, publish_bad{0}, join_done{0}, joined{0}, leave_done{0},
      history{0}, presence{0}, rooms{0}, stats{0};
  LogSubscriber s;
  broker().Publish(PublishArgs{"lobby", "x", std::nullopt},
                   [&](absl::StatusOr<v1::Position>) { ++publish_ok; });
  broker().Publish(PublishArgs{"bad name", "x", std::nullopt}, [&](absl::StatusOr<v1::Position> p) {
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    ++publish_bad;
  });
  broker().Join(
      JoinArgs{"lobby", std::nullopt, std::nullopt}, &s, [&](const JoinResult&) { ++joined; },
      [&](absl::Status) { ++join_done; });
  broker().Leave(LeaveArgs{"lobby", ""}, &s, [&](absl::Status) { ++leave_done; });
  broker().History(HistoryArgs{"lobby", std::nullopt, 0, false},
                   [&](absl::StatusOr<HistoryResult>) { ++history; });
  broker().Presence("lobby", [&](absl::StatusOr<std::vector<v1::ClientInfo>>) { ++presence; });
  broker().ListRooms("", [&](absl::StatusOr<std::vector<RoomSummary>>) { ++rooms; });
  broker().Stats([&](BrokerStats) { ++stats; });
  ASSERT_TRUE(WaitUntil([&] {
    return publish_ok + publish_bad + join_done + leave_done + history + presence + rooms + stats ==
           8;
  }));
  absl::SleepFor(absl::Milliseconds(50));  // Room for a wrong second call to show up.
  for (int n : {publish_ok.load(), publish_bad.load(), join_done.load(), joined.load(),
                leave_done.load(), history.load(), presence.load(), rooms.load(), stats.load()}) {
    EXPECT_EQ(n, 1);
  }
}

TEST_P(BrokerContractTest, FailedJoinRunsNoOnJoinedAndSubscribesNothing) {
  LogSubscriber s;
  SyncBroker b = sync();
  v1::Position end = b.Publish("lobby", "1", nullptr).value_or(v1::Position());
  v1::Position past = end;
  past.set_offset(end.offset() + 5);
  EXPECT_EQ(b.Join("lobby", &past, &s, nullptr, [&](const JoinResult& r) { s.Joined(r); }).code(),
            absl::StatusCode::kOutOfRange);
  ASSERT_TRUE(b.Publish("lobby", "2", nullptr).ok());
  EXPECT_THAT(s.log(), ::testing::IsEmpty());
  EXPECT_EQ(b.Stats().subscriptions, 0u);
}

TEST_P(BrokerContractTest, JoinedComesBeforeEveryLaterEventWhilePublishersRun) {
  // Joins race a publisher flat out: each subscriber's log must start with
  // its join at position P, followed by P+1, P+2, ... with no gap.
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    while (!stop) {
      broker().Publish(PublishArgs{"race", "", std::nullopt}, [](absl::StatusOr<v1::Position>) {});
    }
  });
  std::vector<std::unique_ptr<LogSubscriber>> subscribers;
  SyncBroker b = sync();
  for (int k = 0; k < 50; ++k) {
    subscribers.push_back(std::make_unique<LogSubscriber>());
    LogSubscriber* s = subscribers.back().get();
    ASSERT_TRUE(
        b.Join("race", nullptr, s, nullptr, [s](const JoinResult& r) { s->Joined(r); }).ok());
  }
  bool enough = WaitUntil([&] { return subscribers.back()->size() > 100; });
  for (auto& s : subscribers) b.Leave("race", s.get(), "");
  stop = true;
  publisher.join();
  ASSERT_TRUE(enough) << "the publisher stalled";
  for (size_t k = 0; k < subscribers.size(); ++k) {
    std::vector<std::string> log = subscribers[k]->log();
    ASSERT_FALSE(log.empty());
    ASSERT_EQ(log[0].rfind("joined@", 0), 0u)
        << "subscriber " << k << " got " << log[0] << " first";
    uint64_t at = std::stoull(log[0].substr(7));
    for (size_t i = 1; i < log.size(); ++i) {
      ASSERT_EQ(log[i], absl::StrCat(at + i)) << "subscriber " << k << " entry " << i;
    }
  }
}

TEST_P(BrokerContractTest, DoneMayCallTheBrokerAgain) {
  LogSubscriber s;
  absl::Notification published;
  std::thread caller([&] {
    broker().Join(
        JoinArgs{"lobby", std::nullopt, std::nullopt}, &s,
        [&s](const JoinResult& r) { s.Joined(r); },
        [&](absl::Status status) {
          EXPECT_TRUE(status.ok()) << status;
          broker().Publish(PublishArgs{"lobby", "from done", std::nullopt},
                           [&](absl::StatusOr<v1::Position> p) {
                             EXPECT_TRUE(p.ok()) << p.status();
                             published.Notify();
                           });
        });
  });
  bool ok = published.WaitForNotificationWithTimeout(absl::Seconds(10));
  if (!ok) {
    caller.detach();  // Deadlocked inside the broker: fail instead of hanging.
    FAIL() << "a broker call from a done callback did not complete";
  }
  caller.join();
  EXPECT_THAT(s.log(), ::testing::ElementsAre("joined@0", "1"));
  sync().Leave("lobby", &s, "");
}

TEST_P(BrokerContractTest, NothingArrivesAfterLeaveCompleted) {
  LogSubscriber s;
  SyncBroker b = sync();
  ASSERT_TRUE(
      b.Join("lobby", nullptr, &s, nullptr, [&](const JoinResult& r) { s.Joined(r); }).ok());
  ASSERT_TRUE(b.Publish("lobby", "1", nullptr).ok());
  b.Leave("lobby", &s, "");
  const size_t at_leave = s.size();
  ASSERT_TRUE(b.Publish("lobby", "2", nullptr).ok());
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(s.size(), at_leave);
  EXPECT_THAT(s.log(), ::testing::ElementsAre("joined@0", "1"));
}

TEST_P(BrokerContractTest, MaintainNowRemovesEveryEmptyRoomInBoundedPasses) {
  SyncBroker b = sync();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(b.Publish(absl::StrCat("live:r", i), "x", nullptr).ok());
  ASSERT_EQ(b.Stats().rooms, 5u);
  broker().MaintainNow();  // One pass visits one room; a round visits all.
  EXPECT_EQ(b.Stats().rooms, 0u);
}

TEST_P(BrokerContractTest, StartedBrokerMaintainsItselfAndStopIsIdempotent) {
  SyncBroker b = sync();
  ASSERT_TRUE(broker().Start().ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(b.Publish(absl::StrCat("live:r", i), "x", nullptr).ok());
  EXPECT_TRUE(WaitUntil([&] { return b.Stats().rooms == 0; })) << b.Stats().rooms << " rooms left";
  broker().Stop();
  broker().Stop();
}

INSTANTIATE_TEST_SUITE_P(Brokers, BrokerContractTest, ::testing::Values("memory", "nats"));

TEST(BrokerFactoryTest, UnknownBrokerIsInvalidArgument) {
  CoreOptions options;
  options.broker = "carrier-pigeon";
  Policy policy(options.engine);
  FakeClock clock;
  absl::StatusOr<std::unique_ptr<Broker>> broker = MakeBroker(options, &policy, &clock);
  EXPECT_EQ(broker.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(broker.status().message()), ::testing::HasSubstr("carrier-pigeon"));
  EXPECT_FALSE(IsKnownBroker("carrier-pigeon"));
  EXPECT_TRUE(IsKnownBroker("memory"));
  EXPECT_TRUE(IsKnownBroker("nats"));
}

}  // namespace
}  // namespace roomcast::core
