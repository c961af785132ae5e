// NatsBroker against a real `nats-server -js` started by the test on a free
// loopback port: positions gap-free and shared by two brokers ("nodes") on
// one server, history and epochs surviving a broker restart, a join's
// replay followed by live events in order, the message bus, and NATS down
// failing fast with UNAVAILABLE then recovering by itself.
#include "core/nats_broker.h"

#include <nats/nats.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/fake_clock.h"
#include "tests/core/nats_server.h"
#include "tests/core/sync_broker.h"

namespace roomcast::core {
namespace {

using ::testing::ElementsAre;

// Records message offsets (and the join) in the order the broker handed them.
class Recorder final : public Subscriber {
 public:
  void OnEvent(const RoomEventPtr& event) override {
    absl::MutexLock lock(&mu_);
    if (event->has_message()) {
      log_.push_back(
          absl::StrCat(event->message().position().offset(), ":", event->message().data()));
    } else if (event->has_presence()) {
      log_.push_back(absl::StrCat(v1::PresenceEvent::Kind_Name(event->presence().kind()), " ",
                                  event->presence().client().client_id()));
    }
  }
  void Joined(const JoinResult& r) {
    absl::MutexLock lock(&mu_);
    log_.push_back(absl::StrCat("joined@", r.position.offset(), r.recovered ? "" : " lost"));
    for (const RoomEventPtr& e : r.replayed) {
      log_.push_back(
          absl::StrCat("replay ", e->message().position().offset(), ":", e->message().data()));
    }
  }
  std::vector<std::string> log() {
    absl::MutexLock lock(&mu_);
    return log_;
  }
  bool WaitForSize(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return log_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
};

class NatsBrokerTest : public ::testing::Test {
 protected:
  NatsBrokerTest() : policy_(Engine()) {}

  static EngineOptions Engine() {
    EngineOptions options;
    options.namespaces = {{"chat", NamespaceOptions{}}};
    return options;
  }

  void SetUp() override {
    if (!NatsServer::Available()) GTEST_SKIP() << "no nats-server at " << NatsServer::Binary();
    ASSERT_TRUE(server_.Start()) << "nats-server did not start";
  }
  void TearDown() override {
    for (auto& b : brokers_) b->Stop();
  }

  // A started broker ("node") on the test's server.
  NatsBroker& Node(absl::Duration timeout = absl::Seconds(2)) {
    NatsBrokerOptions options;
    options.url = server_.url();
    options.node_name = absl::StrCat("node", brokers_.size());
    options.request_timeout = timeout;
    brokers_.push_back(std::make_unique<NatsBroker>(&policy_, &clock_, options));
    absl::Status started = brokers_.back()->Start();
    EXPECT_TRUE(started.ok()) << started;
    return *brokers_.back();
  }
  SyncBroker Sync(NatsBroker& b) { return SyncBroker(b, policy_); }

  NatsServer server_;
  FakeClock clock_;
  Policy policy_;
  std::vector<std::unique_ptr<NatsBroker>> brokers_;
};

TEST(RoomSubjectTokenTest, DotsAndPercentAreEncodedAndDecoded) {
  EXPECT_EQ(RoomSubjectToken("chat:a.b"), "chat:a%2Eb");
  EXPECT_EQ(RoomFromSubjectToken("chat:a%2Eb"), "chat:a.b");
  EXPECT_EQ(RoomFromSubjectToken("chat:a.b"), "chat:a.b");  // Multi-token subject.
  EXPECT_EQ(RoomSubjectToken("a/b=c@d+e-f_g"), "a/b=c@d+e-f_g");
}

TEST_F(NatsBrokerTest, PublishesGetConsecutiveOffsetsInOneEpoch) {
  SyncBroker b = Sync(Node());
  std::string epoch;
  for (uint64_t i = 1; i <= 5; ++i) {
    absl::StatusOr<v1::Position> p = b.Publish("lobby", "x", nullptr);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->offset(), i);
    if (i == 1) epoch = p->epoch();
    EXPECT_EQ(p->epoch(), epoch);
  }
  EXPECT_FALSE(epoch.empty());
}

TEST_F(NatsBrokerTest, TwoNodesPublishingAtOnceShareOneGapFreeSequence) {
  NatsBroker& a = Node();
  NatsBroker& b = Node();
  absl::Mutex mu;
  std::set<uint64_t> offsets;
  std::set<std::string> epochs;
  std::atomic<int> done{0}, failed{0};
  constexpr int kPerNode = 40;
  auto publish = [&](NatsBroker& node) {
    for (int i = 0; i < kPerNode; ++i) {
      node.Publish(PublishArgs{"race", "x", std::nullopt}, [&](absl::StatusOr<v1::Position> p) {
        if (p.ok()) {
          absl::MutexLock lock(&mu);
          offsets.insert(p->offset());
          epochs.insert(p->epoch());
        } else {
          ++failed;
        }
        ++done;
      });
    }
  };
  publish(a);
  publish(b);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (done < 2 * kPerNode && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(done.load(), 2 * kPerNode);
  EXPECT_EQ(failed.load(), 0);
  absl::MutexLock lock(&mu);
  EXPECT_EQ(offsets.size(), 2u * kPerNode);  // No offset taken twice...
  EXPECT_EQ(*offsets.begin(), 1u);           // ...and none skipped.
  EXPECT_EQ(*offsets.rbegin(), 2u * kPerNode);
  EXPECT_EQ(epochs.size(), 1u);
}

TEST_F(NatsBrokerTest, JoinWithSinceReplaysThenDeliversLiveInOrderAcrossNodes) {
  SyncBroker a = Sync(Node());
  SyncBroker b = Sync(Node());
  absl::StatusOr<v1::Position> first = a.Publish("chat:lobby", "one", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(a.Publish("chat:lobby", "two", nullptr).ok());
  ASSERT_TRUE(a.Publish("chat:lobby", "three", nullptr).ok());
  Recorder r;
  ASSERT_TRUE(
      b.Join("chat:lobby", &*first, &r, nullptr, [&](const JoinResult& j) { r.Joined(j); }).ok());
  ASSERT_TRUE(a.Publish("chat:lobby", "four", nullptr).ok());
  ASSERT_TRUE(b.Publish("chat:lobby", "five", nullptr).ok());
  ASSERT_TRUE(r.WaitForSize(5));
  EXPECT_THAT(r.log(),
              ElementsAre("joined@3", "replay 2:two", "replay 3:three", "4:four", "5:five"));
  b.Leave("chat:lobby", &r, "");
}

TEST_F(NatsBrokerTest, JoinFromAnotherEpochIsNotRecovered) {
  SyncBroker a = Sync(Node());
  ASSERT_TRUE(a.Publish("lobby", "one", nullptr).ok());
  v1::Position stale;
  stale.set_epoch("not-this-one");
  stale.set_offset(1);
  Recorder r;
  ASSERT_TRUE(a.Join("lobby", &stale, &r, nullptr, [&](const JoinResult& j) { r.Joined(j); }).ok());
  EXPECT_THAT(r.log(), ElementsAre("joined@1 lost"));
  a.Leave("lobby", &r, "");
}

TEST_F(NatsBrokerTest, HistoryIsTheSameFromEitherNode) {
  SyncBroker a = Sync(Node());
  SyncBroker b = Sync(Node());
  for (const char* d : {"a", "b", "c"}) ASSERT_TRUE(a.Publish("lobby", d, nullptr).ok());
  absl::StatusOr<HistoryResult> from_a = a.History("lobby", nullptr, 0, false);
  absl::StatusOr<HistoryResult> from_b = b.History("lobby", nullptr, 2, true);
  ASSERT_TRUE(from_a.ok()) << from_a.status();
  ASSERT_TRUE(from_b.ok()) << from_b.status();
  ASSERT_EQ(from_a->messages.size(), 3u);
  EXPECT_EQ(from_a->messages[0]->message().data(), "a");
  EXPECT_EQ(from_a->position.offset(), 3u);
  ASSERT_EQ(from_b->messages.size(), 2u);
  EXPECT_EQ(from_b->messages[0]->message().position().offset(), 3u);  // Newest first.
  EXPECT_EQ(from_b->position.SerializeAsString(), from_a->position.SerializeAsString());
}

TEST_F(NatsBrokerTest, RestartedNodeKeepsHistoryEpochAndOffsets) {
  std::string epoch;
  {
    NatsBroker& first = Node();
    SyncBroker a = Sync(first);
    ASSERT_TRUE(a.Publish("lobby", "1", nullptr).ok());
    absl::StatusOr<v1::Position> p = a.Publish("lobby", "2", nullptr);
    ASSERT_TRUE(p.ok());
    epoch = p->epoch();
    first.Stop();
  }
  SyncBroker again = Sync(Node());
  absl::StatusOr<v1::Position> p = again.Publish("lobby", "3", nullptr);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->epoch(), epoch);
  EXPECT_EQ(p->offset(), 3u);
  absl::StatusOr<HistoryResult> h = again.History("lobby", nullptr, 0, false);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->messages.size(), 3u);
}

TEST_F(NatsBrokerTest, NatsDownFailsFastWithUnavailableThenRecovers) {
  NatsBroker& node = Node();
  SyncBroker b = Sync(node);
  ASSERT_TRUE(b.Publish("lobby", "before", nullptr).ok());
  server_.Kill();
  const absl::Time noticed_by = absl::Now() + absl::Seconds(10);
  while (node.Connected() && absl::Now() < noticed_by) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_FALSE(node.Connected());
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::Position> p = b.Publish("lobby", "during", nullptr);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kUnavailable) << p.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  Recorder r;
  EXPECT_EQ(b.Join("lobby", nullptr, &r, nullptr, [&](const JoinResult& j) { r.Joined(j); }).code(),
            absl::StatusCode::kUnavailable);

  ASSERT_TRUE(server_.Restart());
  const absl::Time back_by = absl::Now() + absl::Seconds(10);
  while (!node.Connected() && absl::Now() < back_by) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_TRUE(node.Connected()) << "the broker did not reconnect";
  p = b.Publish("lobby", "after", nullptr);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->offset(), 2u);  // The store kept "before": no offset lost or reused.
}

TEST_F(NatsBrokerTest, SubscriberKeepsReceivingInOrderAfterNatsRestarts) {
  NatsBroker& node = Node();
  SyncBroker b = Sync(node);
  Recorder r;
  ASSERT_TRUE(
      b.Join("lobby", nullptr, &r, nullptr, [&](const JoinResult& j) { r.Joined(j); }).ok());
  ASSERT_TRUE(b.Publish("lobby", "before", nullptr).ok());
  ASSERT_TRUE(r.WaitForSize(2));
  ASSERT_TRUE(server_.Restart());
  // Publishes fail with UNAVAILABLE until the node is back; then they go on.
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  absl::StatusOr<v1::Position> p = absl::UnavailableError("not tried");
  while (!p.ok() && absl::Now() < deadline) {
    p = b.Publish("lobby", "after", nullptr);
    if (!p.ok()) {
      EXPECT_EQ(p.status().code(), absl::StatusCode::kUnavailable) << p.status();
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(r.WaitForSize(3, absl::Seconds(15))) << "the room's consumer did not resume";
  EXPECT_THAT(r.log(), ElementsAre("joined@0", "1:before", "2:after"));
  b.Leave("lobby", &r, "");
}

TEST_F(NatsBrokerTest, PresenceIsTheSameOnEveryNode) {
  SyncBroker a = Sync(Node());
  SyncBroker b = Sync(Node());
  Recorder r;
  v1::ClientInfo alice;
  alice.set_client_id("c1");
  alice.set_user_id("alice");
  ASSERT_TRUE(
      a.Join("chat:x.y", nullptr, &r, &alice, [&](const JoinResult& j) { r.Joined(j); }).ok());
  absl::StatusOr<std::vector<v1::ClientInfo>> on_b = b.Presence("chat:x.y");
  ASSERT_TRUE(on_b.ok()) << on_b.status();
  ASSERT_EQ(on_b->size(), 1u);
  EXPECT_EQ((*on_b)[0].user_id(), "alice");
  EXPECT_TRUE(b.Presence("chat:x").value_or(std::vector<v1::ClientInfo>{{}}).empty());
  a.Leave("chat:x.y", &r, "c1");
  on_b = b.Presence("chat:x.y");
  ASSERT_TRUE(on_b.ok()) << on_b.status();
  EXPECT_TRUE(on_b->empty());
}

TEST_F(NatsBrokerTest, JoinAndLeaveEventsReachSubscribersOnOtherNodes) {
  SyncBroker a = Sync(Node());
  SyncBroker b = Sync(Node());
  Recorder on_b, member;
  ASSERT_TRUE(
      b.Join("lobby", nullptr, &on_b, nullptr, [&](const JoinResult& j) { on_b.Joined(j); }).ok());
  v1::ClientInfo alice;
  alice.set_client_id("c1");
  ASSERT_TRUE(a.Join("lobby", nullptr, &member, &alice, [&](const JoinResult& j) {
                 member.Joined(j);
               }).ok());
  a.Leave("lobby", &member, "c1");
  ASSERT_TRUE(on_b.WaitForSize(3));
  EXPECT_THAT(on_b.log(), ElementsAre("joined@0", "JOIN c1", "LEAVE c1"));
  EXPECT_THAT(member.log(), ElementsAre("joined@0", "JOIN c1"));  // Its own, once.
  b.Leave("lobby", &on_b, "");
}

TEST_F(NatsBrokerTest, PlainNatsPublishOnTheBusEntersTheRoom) {
  SyncBroker b = Sync(Node());
  Recorder r;
  ASSERT_TRUE(
      b.Join("chat:a.b", nullptr, &r, nullptr, [&](const JoinResult& j) { r.Joined(j); }).ok());
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, server_.url().c_str()), NATS_OK);
  natsMsg* reply = nullptr;
  const char kData[] = R"({"hello":1})";
  ASSERT_EQ(natsConnection_Request(&reply, nc, "roomcast.publish.chat:a.b", kData,
                                   sizeof(kData) - 1, 5000),
            NATS_OK);
  std::string answer(natsMsg_GetData(reply), natsMsg_GetDataLength(reply));
  natsMsg_Destroy(reply);
  natsConnection_Destroy(nc);
  EXPECT_THAT(answer, ::testing::HasSubstr(R"("offset":1)"));
  ASSERT_TRUE(r.WaitForSize(2));
  EXPECT_THAT(r.log(), ElementsAre("joined@0", R"(1:{"hello":1})"));
  b.Leave("chat:a.b", &r, "");
}

TEST_F(NatsBrokerTest, NothingArrivesAfterLeaveAndTheConsumerStops) {
  SyncBroker b = Sync(Node());
  Recorder r;
  ASSERT_TRUE(
      b.Join("lobby", nullptr, &r, nullptr, [&](const JoinResult& j) { r.Joined(j); }).ok());
  ASSERT_TRUE(b.Publish("lobby", "1", nullptr).ok());
  ASSERT_TRUE(r.WaitForSize(2));
  b.Leave("lobby", &r, "");
  ASSERT_TRUE(b.Publish("lobby", "2", nullptr).ok());
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_THAT(r.log(), ElementsAre("joined@0", "1:1"));
  EXPECT_EQ(b.Stats().subscriptions, 0u);
}

}  // namespace
}  // namespace roomcast::core
